package migrations

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	_ "github.com/glebarez/go-sqlite"  // the "sqlite" driver
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/relaymq/relay/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// forEachDB runs fn against a new, empty database of each dialect.
func forEachDB(t *testing.T, fn func(t *testing.T, db *sql.DB, dialect string)) {
	t.Helper()
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			fn(t, openDB(t, dialect), dialect)
		})
	}
}

func openDB(t *testing.T, dialect string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	switch dialect {
	case SQLite:
		path := filepath.Join(t.TempDir(), "m.db")
		db, err = sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	case Postgres:
		db, err = sql.Open("pgx", pgtest.Start(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func versions(ms []Migration) []string {
	var v []string
	for _, m := range ms {
		v = append(v, m.Version)
	}
	return v
}

// TestList checks the embedded files: both dialects get the same versions,
// each its own file where there are dialect files.
func TestList(t *testing.T) {
	pg, err := List(Postgres)
	if err != nil {
		t.Fatal(err)
	}
	lite, err := List(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if len(pg) == 0 || !reflect.DeepEqual(versions(pg), versions(lite)) {
		t.Fatalf("versions differ: postgres %v, sqlite %v", versions(pg), versions(lite))
	}
	if pg[0] != (Migration{Version: "001_init", File: "001_init.sql"}) || lite[0] != pg[0] {
		t.Errorf("first migration: %+v, %+v", pg[0], lite[0])
	}
	for i := range pg {
		if strings.Contains(pg[i].File, ".sqlite.") || strings.Contains(lite[i].File, ".postgres.") {
			t.Errorf("%s: wrong dialect file: %s, %s", pg[i].Version, pg[i].File, lite[i].File)
		}
	}
	if _, err := List("mysql"); err == nil {
		t.Error("List(mysql): no error")
	}
}

func TestListRules(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name    string
		files   []string
		want    []Migration // for SQLite
		wantErr string
	}{
		{"order by number", []string{"010_c.sql", "002_b.sql", "001_a.sql", "README.md"},
			[]Migration{{"001_a", "001_a.sql"}, {"002_b", "002_b.sql"}, {"010_c", "010_c.sql"}}, ""},
		{"dialect files", []string{"001_a.sql", "002_b.postgres.sql", "002_b.sqlite.sql"},
			[]Migration{{"001_a", "001_a.sql"}, {"002_b", "002_b.sqlite.sql"}}, ""},
		{"bad name", []string{"1_a.sql"}, nil, "bad file name"},
		{"unknown dialect", []string{"001_a.mysql.sql"}, nil, "bad file name"},
		{"upper case", []string{"001_Init.sql"}, nil, "bad file name"},
		{"number twice", []string{"001_a.sql", "001_b.sql"}, nil, "two names"},
		{"plain and dialect", []string{"001_a.sql", "001_a.sqlite.sql"}, nil, "both"},
		{"dialect missing", []string{"001_a.postgres.sql"}, nil, "none for sqlite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tc.files {
				fsys[f] = sql
			}
			got, err := list(fsys, SQLite)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("list = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestApplyIdempotent: Apply applies everything once; again, nothing.
func TestApplyIdempotent(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB, dialect string) {
		ctx := context.Background()
		all, _ := List(dialect)
		pending, err := Pending(ctx, db)
		if err != nil || !reflect.DeepEqual(pending, versions(all)) {
			t.Fatalf("Pending on an empty database = %v, %v; want %v", pending, err, versions(all))
		}
		applied, err := Apply(ctx, db, dialect)
		if err != nil || !reflect.DeepEqual(applied, versions(all)) {
			t.Fatalf("Apply = %v, %v; want %v", applied, err, versions(all))
		}
		for i := range 2 {
			applied, err := Apply(ctx, db, dialect)
			if err != nil || len(applied) != 0 {
				t.Errorf("Apply #%d = %v, %v; want nothing", i+2, applied, err)
			}
		}
		if pending, err := Pending(ctx, db); err != nil || len(pending) != 0 {
			t.Errorf("Pending = %v, %v; want none", pending, err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(all) {
			t.Errorf("schema_migrations: %d rows, %v; want %d", n, err, len(all))
		}
	})
}

// TestApplyRollback: a failing migration leaves nothing of itself behind
// and the ones before it applied; once fixed, it applies.
func TestApplyRollback(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB, dialect string) {
		ctx := context.Background()
		fsys := fstest.MapFS{
			"001_a.sql": {Data: []byte("CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY);")},
			"002_b.sql": {Data: []byte("CREATE TABLE b (id TEXT NOT NULL PRIMARY KEY);\nINSERT INTO a (id) VALUES ('x');\nTHIS IS NOT SQL;")},
		}
		applied, err := apply(ctx, db, dialect, fsys)
		if err == nil || !strings.Contains(err.Error(), "002_b") {
			t.Fatalf("Apply error %v, want one naming 002_b", err)
		}
		if !reflect.DeepEqual(applied, []string{"001_a"}) {
			t.Errorf("applied %v, want [001_a]", applied)
		}
		if _, err := db.ExecContext(ctx, "SELECT count(*) FROM b"); err == nil {
			t.Error("table b exists after its migration failed")
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM a").Scan(&n); err != nil || n != 0 {
			t.Errorf("a has %d rows, %v; want 0 (the insert rolled back)", n, err)
		}
		fsys["002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE b (id TEXT NOT NULL PRIMARY KEY);")}
		applied, err = apply(ctx, db, dialect, fsys)
		if err != nil || !reflect.DeepEqual(applied, []string{"002_b"}) {
			t.Errorf("after the fix: Apply = %v, %v; want [002_b]", applied, err)
		}
	})
}

// TestApplyConcurrent: several processes starting at once apply each
// migration exactly once between them, and none fails.
func TestApplyConcurrent(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sql.DB, dialect string) {
		ctx := context.Background()
		const n = 4
		var wg sync.WaitGroup
		var mu sync.Mutex
		var all []string
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				applied, err := Apply(ctx, db, dialect)
				if err != nil {
					t.Errorf("Apply: %v", err)
				}
				mu.Lock()
				all = append(all, applied...)
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		slices.Sort(all)
		want, _ := List(dialect)
		if !reflect.DeepEqual(all, versions(want)) {
			t.Errorf("applied between them %v, want each of %v once", all, versions(want))
		}
	})
}
