package pgtest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestStart checks that each Start gives a new, empty, reachable database.
func TestStart(t *testing.T) {
	ctx := context.Background()
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two Starts gave the same database %s", a)
	}
	for _, u := range []string{a, b} {
		db, err := sql.Open("pgx", u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		var tables int
		if err := db.QueryRowContext(ctx,
			"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if tables != 0 {
			t.Errorf("%s: %d tables in a new database", u, tables)
		}
		var version int
		if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
			t.Fatal(err)
		}
		if version < MinVersion*10000 {
			t.Errorf("server version %d, want >= %d", version, MinVersion*10000)
		}
	}
}

// TestFindBinariesMissing: without PostgreSQL the message says what to run.
func TestFindBinariesMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := debianBinDirs
	debianBinDirs = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { debianBinDirs = old })
	_, err := findBinaries()
	if err == nil || !strings.Contains(err.Error(), "./scripts/deps.sh") {
		t.Errorf("error %v, want one that points to ./scripts/deps.sh", err)
	}
}

func TestVersionMajor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", 15},
		{"postgres (PostgreSQL) 17.2\n", 17},
		{"something else", 0},
	} {
		if got := versionMajor(tc.in); got != tc.want {
			t.Errorf("versionMajor(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
