package gormstore

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/casbin/casbin/v2/model"
	gormadapter "github.com/casbin/gorm-adapter/v3"
)

// table is what TestSchemaEquivalence compares of one table.
type table struct {
	Columns map[string]string // name -> "type" or "type not null"
	Primary string            // primary-key columns, comma-separated
	Unique  []string          // other unique constraints/indexes: columns, sorted
	Indexes []string          // non-unique indexes: columns, sorted
	Foreign []string          // "cols -> table(cols) on delete X", sorted
}

// TestSchemaEquivalence applies the migrations to an empty SQLite and an
// empty PostgreSQL database and checks that they made the same tables,
// columns, types, nullability, keys, indexes and foreign keys.
func TestSchemaEquivalence(t *testing.T) {
	ctx := context.Background()
	lite, pg := openStore(t, SQLite), openStore(t, Postgres)
	liteDB, _ := lite.DB().DB()
	pgDB, _ := pg.DB().DB()
	got := map[string]map[string]table{
		SQLite:   sqliteSchema(t, ctx, liteDB),
		Postgres: postgresSchema(t, ctx, pgDB),
	}
	want := []string{"api_keys", "apps", "audit_records", "casbin_rule", "credentials", "schema_migrations", "tenants", "users", "web_sessions"}
	for d, schema := range got {
		var names []string
		for n := range schema {
			names = append(names, n)
		}
		slices.Sort(names)
		if !reflect.DeepEqual(names, want) {
			t.Errorf("%s tables %v, want %v", d, names, want)
		}
		// Only the portable types: an unexpected one means a migration
		// wrote something that the two databases may treat differently.
		for tn, tb := range schema {
			for cn, ty := range tb.Columns {
				base, _, _ := strings.Cut(ty, " not null")
				if !slices.Contains([]string{"text", "bigint", "boolean", "timestamp"}, base) {
					t.Errorf("%s: %s.%s has type %q", d, tn, cn, ty)
				}
			}
		}
	}
	for _, tn := range want {
		l, p := got[SQLite][tn], got[Postgres][tn]
		if !reflect.DeepEqual(l, p) {
			t.Errorf("table %s differs:\n sqlite:   %+v\n postgres: %+v", tn, l, p)
		}
	}
	if t.Failed() {
		return
	}
	// Spot checks, so that an empty introspection cannot pass.
	tn := got[SQLite]["credentials"]
	if tn.Columns["secret_hash"] != "text not null" || tn.Columns["revoked_at"] != "timestamp" ||
		!slices.Contains(tn.Unique, "tenant_id,username") ||
		!slices.Contains(tn.Foreign, "tenant_id,app_id -> apps(tenant_id,id) on delete cascade") {
		t.Errorf("credentials: %+v", tn)
	}
	if ak := got[SQLite]["api_keys"]; ak.Columns["scope"] != "text not null" {
		t.Errorf("api_keys: %+v", ak)
	}
	if cr := got[SQLite]["casbin_rule"]; cr.Primary != "id" || !slices.Contains(cr.Unique, "ptype,v0,v1,v2,v3,v4,v5") {
		t.Errorf("casbin_rule: %+v", cr)
	}
}

// normType maps a column type to the portable spelling. SQLite's INTEGER
// is a 64-bit integer like BIGINT; the schema spells it INTEGER only where
// SQLite needs that (casbin_rule.id, the rowid).
func normType(ty string) string {
	ty = strings.ToLower(strings.TrimSpace(ty))
	switch ty {
	case "integer":
		return "bigint"
	case "timestamp without time zone":
		return "timestamp"
	}
	return ty
}

func column(ty string, notNull bool) string {
	if notNull {
		return normType(ty) + " not null"
	}
	return normType(ty)
}

func queryRows(t *testing.T, ctx context.Context, db *sql.DB, q string, args []any, scan func(*sql.Rows) error) {
	t.Helper()
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func sqliteSchema(t *testing.T, ctx context.Context, db *sql.DB) map[string]table {
	t.Helper()
	out := map[string]table{}
	var names []string
	queryRows(t, ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`, nil,
		func(r *sql.Rows) error {
			var n string
			err := r.Scan(&n)
			names = append(names, n)
			return err
		})
	for _, tn := range names {
		tb := table{Columns: map[string]string{}}
		pk := map[int]string{}
		queryRows(t, ctx, db, `SELECT name, type, "notnull", pk FROM pragma_table_info(?)`, []any{tn},
			func(r *sql.Rows) error {
				var name, ty string
				var notNull, pkPos int
				if err := r.Scan(&name, &ty, &notNull, &pkPos); err != nil {
					return err
				}
				tb.Columns[name] = column(ty, notNull == 1)
				if pkPos > 0 {
					pk[pkPos] = name
				}
				return nil
			})
		for i := 1; i <= len(pk); i++ {
			tb.Primary = joinComma(tb.Primary, pk[i])
		}
		type index struct {
			name   string
			unique bool
			origin string
		}
		var idx []index
		queryRows(t, ctx, db, `SELECT name, "unique", origin FROM pragma_index_list(?)`, []any{tn},
			func(r *sql.Rows) error {
				var ix index
				err := r.Scan(&ix.name, &ix.unique, &ix.origin)
				idx = append(idx, ix)
				return err
			})
		for _, ix := range idx {
			if ix.origin == "pk" {
				continue
			}
			var cols string
			queryRows(t, ctx, db, `SELECT name FROM pragma_index_info(?) ORDER BY seqno`, []any{ix.name},
				func(r *sql.Rows) error {
					var c string
					err := r.Scan(&c)
					cols = joinComma(cols, c)
					return err
				})
			if ix.unique {
				tb.Unique = append(tb.Unique, cols)
			} else {
				tb.Indexes = append(tb.Indexes, cols)
			}
		}
		fks := map[int]*[4]string{} // id -> from, table, to, on delete
		queryRows(t, ctx, db, `SELECT id, "table", "from", "to", on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq`, []any{tn},
			func(r *sql.Rows) error {
				var id int
				var ref, from, to, onDelete string
				if err := r.Scan(&id, &ref, &from, &to, &onDelete); err != nil {
					return err
				}
				fk := fks[id]
				if fk == nil {
					fk = &[4]string{"", ref, "", strings.ToLower(onDelete)}
					fks[id] = fk
				}
				fk[0], fk[2] = joinComma(fk[0], from), joinComma(fk[2], to)
				return nil
			})
		for _, fk := range fks {
			tb.Foreign = append(tb.Foreign, fmt.Sprintf("%s -> %s(%s) on delete %s", fk[0], fk[1], fk[2], fk[3]))
		}
		out[tn] = tb.sorted()
	}
	return out
}

func postgresSchema(t *testing.T, ctx context.Context, db *sql.DB) map[string]table {
	t.Helper()
	out := map[string]table{}
	queryRows(t, ctx, db, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`, nil,
		func(r *sql.Rows) error {
			var n string
			err := r.Scan(&n)
			out[n] = table{Columns: map[string]string{}}
			return err
		})
	queryRows(t, ctx, db, `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
		WHERE table_schema = current_schema()`, nil,
		func(r *sql.Rows) error {
			var tn, cn, ty, nullable string
			if err := r.Scan(&tn, &cn, &ty, &nullable); err != nil {
				return err
			}
			out[tn].Columns[cn] = column(ty, nullable == "NO")
			return nil
		})
	queryRows(t, ctx, db, `
		SELECT t.relname, ix.indisprimary, ix.indisunique,
			(SELECT string_agg(a.attname, ',' ORDER BY k.n)
			 FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
			 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum)
		FROM pg_index ix
		JOIN pg_class t ON t.oid = ix.indrelid
		JOIN pg_namespace ns ON ns.oid = t.relnamespace
		WHERE ns.nspname = current_schema()`, nil,
		func(r *sql.Rows) error {
			var tn, cols string
			var primary, unique bool
			if err := r.Scan(&tn, &primary, &unique, &cols); err != nil {
				return err
			}
			tb := out[tn]
			switch {
			case primary:
				tb.Primary = cols
			case unique:
				tb.Unique = append(tb.Unique, cols)
			default:
				tb.Indexes = append(tb.Indexes, cols)
			}
			out[tn] = tb
			return nil
		})
	queryRows(t, ctx, db, `
		SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, c.confdeltype,
			(SELECT string_agg(a.attname, ',' ORDER BY k.n)
			 FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
			 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
			(SELECT string_agg(a.attname, ',' ORDER BY k.n)
			 FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
			 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum)
		FROM pg_constraint c
		JOIN pg_namespace ns ON ns.oid = c.connamespace
		WHERE c.contype = 'f' AND ns.nspname = current_schema()`, nil,
		func(r *sql.Rows) error {
			var tn, ref, del, from, to string
			if err := r.Scan(&tn, &ref, &del, &from, &to); err != nil {
				return err
			}
			action := map[string]string{"a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}[del]
			tb := out[tn]
			tb.Foreign = append(tb.Foreign, fmt.Sprintf("%s -> %s(%s) on delete %s", from, ref, to, action))
			out[tn] = tb
			return nil
		})
	for tn, tb := range out {
		out[tn] = tb.sorted()
	}
	return out
}

func (tb table) sorted() table {
	slices.Sort(tb.Unique)
	slices.Sort(tb.Indexes)
	slices.Sort(tb.Foreign)
	return tb
}

func joinComma(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// ---------------------------------------------------------------------------
// casbin_rule

const casbinModel = `
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
`

// TestCasbinAdapter drives github.com/casbin/gorm-adapter/v3, with its
// automatic migration off, against the migrated casbin_rule table.
func TestCasbinAdapter(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		adb := s.DB().WithContext(ctx)
		gormadapter.TurnOffAutoMigrate(adb)
		a, err := gormadapter.NewAdapterByDB(adb)
		if err != nil {
			t.Fatal(err)
		}
		long := "tenant/acme/" + strings.Repeat("x", 200) + "/#" // past the adapter's size:100 hint
		rules := [][]string{
			{"p", "alice", "data1", "read"},
			{"p", "bob", long, "write"},
			{"g", "carol", "alice"},
		}
		for _, r := range rules {
			if err := a.AddPolicyCtx(ctx, "p", r[0], r[1:]); err != nil {
				t.Fatalf("AddPolicy %v: %v", r, err)
			}
		}
		// Duplicates are ignored (ON CONFLICT DO NOTHING on idx_casbin_rule).
		if err := a.AddPolicyCtx(ctx, "p", "p", []string{"alice", "data1", "read"}); err != nil {
			t.Fatalf("AddPolicy duplicate: %v", err)
		}
		if err := a.AddPolicies("p", "p", [][]string{{"dave", "d", "read"}, {"erin", "e", "read"}}); err != nil {
			t.Fatalf("AddPolicies: %v", err)
		}
		countRules := func() int64 {
			var n int64
			if err := s.DB().WithContext(ctx).Table("casbin_rule").Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := countRules(); n != 5 {
			t.Errorf("%d rows after adding 5 distinct rules and a duplicate", n)
		}

		load := func() model.Model {
			m, err := model.NewModelFromString(casbinModel)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.LoadPolicyCtx(ctx, m); err != nil {
				t.Fatalf("LoadPolicy: %v", err)
			}
			return m
		}
		m := load()
		pol, _ := m.GetPolicy("p", "p")
		want := [][]string{{"alice", "data1", "read"}, {"bob", long, "write"}, {"dave", "d", "read"}, {"erin", "e", "read"}}
		if !reflect.DeepEqual(pol, want) {
			t.Errorf("loaded p = %v, want %v (in insertion order)", pol, want)
		}
		if g, _ := m.GetPolicy("g", "g"); !reflect.DeepEqual(g, [][]string{{"carol", "alice"}}) {
			t.Errorf("loaded g = %v", g)
		}

		if err := a.RemovePolicyCtx(ctx, "p", "p", []string{"alice", "data1", "read"}); err != nil {
			t.Fatalf("RemovePolicy: %v", err)
		}
		if err := a.RemoveFilteredPolicyCtx(ctx, "p", "p", 0, "dave"); err != nil {
			t.Fatalf("RemoveFilteredPolicy: %v", err)
		}
		if n := countRules(); n != 3 {
			t.Errorf("%d rows after removing 2 of 5", n)
		}

		// SavePolicy empties the table (DELETE on SQLite, TRUNCATE … RESTART
		// IDENTITY on PostgreSQL) and writes the model back.
		m = load()
		if err := a.SavePolicyCtx(ctx, m); err != nil {
			t.Fatalf("SavePolicy: %v", err)
		}
		if n := countRules(); n != 3 {
			t.Errorf("%d rows after SavePolicy of 3", n)
		}
		if err := a.AddPolicyCtx(ctx, "p", "p", []string{"frank", "f", "read"}); err != nil {
			t.Fatalf("AddPolicy after SavePolicy: %v", err)
		}
		if pol, _ := load().GetPolicy("p", "p"); len(pol) != 3 || pol[2][0] != "frank" {
			t.Errorf("after SavePolicy and AddPolicy: %v", pol)
		}
	})
}
