package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/relaymq/relay/migrations"
	"github.com/relaymq/relay/tenant"
)

// openTestDB opens a new SQLite file database with the production schema
// (the migrations create casbin_rule).
func openTestDB(t testing.TB) *gorm.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.db")
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Apply(t.Context(), sqlDB, migrations.SQLite); err != nil {
		t.Fatal(err)
	}
	return db
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestPolicies(t testing.TB, db *gorm.DB) *Policies {
	t.Helper()
	p, err := NewPolicies(t.Context(), db, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustDo fails the test on err.
func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPoliciesWithoutTable(t *testing.T) {
	db, err := gorm.Open(sqlite.Open(filepath.Join(t.TempDir(), "empty.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	before := *db
	if _, err := NewPolicies(t.Context(), db, nil); err == nil {
		t.Fatal("NewPolicies without casbin_rule succeeded: automatic migration is not off")
	}
	if db.Statement != before.Statement || db.Statement.Context != before.Statement.Context {
		t.Error("NewPolicies modified the caller's *gorm.DB")
	}
	if db.Migrator().HasTable("casbin_rule") {
		t.Error("NewPolicies created casbin_rule")
	}
}

func TestPoliciesAddListRemove(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t)
	p := newTestPolicies(t, db)

	r1 := allow(PubSub, "#")
	r2 := deny(Publish, "secret/#")
	r3 := allow(Subscribe, "devices/%c/cmd")
	mustDo(t, p.AddRule(ctx, "acme", "app:web", r1))
	mustDo(t, p.AddRule(ctx, "acme", "app:web", r2))
	mustDo(t, p.AddRule(ctx, "acme", "cred:dev-1", r3))
	mustDo(t, p.AddRule(ctx, "acme", "app:web", r1)) // again: no-op

	want := []SubjectRule{{"app:web", r1}, {"app:web", r2}, {"cred:dev-1", r3}}
	got, err := p.ListRules(ctx, "acme")
	mustDo(t, err)
	if !slices.Equal(got, want) {
		t.Fatalf("ListRules = %+v, want %+v", got, want)
	}

	long := allow(Publish, strings.Repeat("x/", MaxFilterLen/2-1)+"#")
	mustDo(t, p.AddRule(ctx, "acme", "role:long", long))
	mustDo(t, p.RemoveRule(ctx, "acme", "role:long", long))

	// Persisted: a second store on the same database sees the same.
	p2 := newTestPolicies(t, db)
	got, err = p2.ListRules(ctx, "acme")
	mustDo(t, err)
	if !slices.Equal(got, want) {
		t.Fatalf("reopened ListRules = %+v, want %+v", got, want)
	}

	mustDo(t, p.RemoveRule(ctx, "acme", "app:web", r2))
	if err := p.RemoveRule(ctx, "acme", "app:web", r2); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("RemoveRule(absent) = %v, want ErrNotFound", err)
	}
	got, _ = p.ListRules(ctx, "acme")
	if want := []SubjectRule{{"app:web", r1}, {"cred:dev-1", r3}}; !slices.Equal(got, want) {
		t.Fatalf("after remove ListRules = %+v, want %+v", got, want)
	}

	// Reload picks up what the other process did.
	mustDo(t, p2.AddRule(ctx, "acme", "role:ops", r2))
	mustDo(t, p.Reload(ctx))
	got, _ = p.ListRules(ctx, "acme")
	if want := []SubjectRule{{"app:web", r1}, {"cred:dev-1", r3}, {"role:ops", r2}}; !slices.Equal(got, want) {
		t.Fatalf("after reload ListRules = %+v, want %+v", got, want)
	}
}

func TestPoliciesValidation(t *testing.T) {
	ctx := t.Context()
	p := newTestPolicies(t, openTestDB(t))
	tests := []struct {
		name string
		err  error
	}{
		{"bad slug", p.AddRule(ctx, "Acme!", "app:web", allow(Publish, "a"))},
		{"bad subject kind", p.AddRule(ctx, "acme", "user:web", allow(Publish, "a"))},
		{"bad subject name", p.AddRule(ctx, "acme", "app:a@b", allow(Publish, "a"))},
		{"bad filter", p.AddRule(ctx, "acme", "app:web", allow(Publish, "a/#/b"))},
		{"placeholder inside a level", p.AddRule(ctx, "acme", "app:web", allow(Publish, "d-%c"))},
		{"bad action", p.AddRule(ctx, "acme", "app:web", allow(0, "a"))},
		{"bad link", p.LinkCredential(ctx, "acme", "dev/1", "web")},
		{"role not a role", p.AssignRole(ctx, "acme", "app:web", "app:other")},
		{"bad tenant delete", p.DeleteTenant(ctx, "")},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tenant.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, tt.err)
		}
	}
	if _, err := p.Enforce("acme", "app:web", "a", PubSub); !errors.Is(err, tenant.ErrInvalid) {
		t.Errorf("Enforce(PubSub) = %v, want ErrInvalid", err)
	}
}

// setupACME gives tenant acme an app "web" (default rule plus a deny), a
// credential linked to it with a rule of its own, and a role given to the
// app; tenant other reuses every subject name with different rules.
func setupACME(t testing.TB, p *Policies) {
	t.Helper()
	ctx := context.Background()
	for _, step := range []error{
		p.AddRule(ctx, "acme", "app:web", allow(PubSub, "#")),
		p.AddRule(ctx, "acme", "app:web", deny(PubSub, "admin/#")),
		p.AddRule(ctx, "acme", "cred:dev-1", allow(Publish, "devices/%c/#")),
		p.AddRule(ctx, "acme", "cred:dev-1", deny(Subscribe, "devices/+/secret")),
		p.AddRule(ctx, "acme", "role:sys", allow(Subscribe, "$SYS/#")),
		p.LinkCredential(ctx, "acme", "dev-1", "web"),
		p.AssignRole(ctx, "acme", "app:web", "role:sys"),

		p.AddRule(ctx, "other", "app:web", allow(Publish, "other-only/#")),
		p.AddRule(ctx, "other", "cred:dev-1", allow(Subscribe, "other-cred/#")),
		p.AddRule(ctx, "other", "role:sys", allow(PubSub, "other-role/#")),
		p.AssignRole(ctx, "other", "cred:dev-1", "role:sys"),
	} {
		mustDo(t, step)
	}
}

func TestPoliciesRulesFor(t *testing.T) {
	ctx := t.Context()
	p := newTestPolicies(t, openTestDB(t))
	setupACME(t, p)

	acme := []Rule{
		allow(Publish, "devices/%c/#"), deny(Subscribe, "devices/+/secret"), // credential
		allow(PubSub, "#"), deny(PubSub, "admin/#"), // app
		allow(Subscribe, "$SYS/#"), // role of the app
	}
	tests := []struct {
		name, tenant, user, app string
		want                    []Rule
	}{
		{"linked credential", "acme", "dev-1", "", acme},
		{"linked credential, app named", "acme", "dev-1", "web", acme},
		{"unlinked credential, app named", "acme", "dev-2", "web", acme[2:]},
		{"unknown credential", "acme", "nobody", "", nil},
		{"other tenant, same names", "other", "dev-1", "web", []Rule{
			allow(Subscribe, "other-cred/#"), allow(PubSub, "other-role/#"), allow(Publish, "other-only/#"),
		}},
		{"other tenant, no link", "other", "dev-1", "", []Rule{allow(Subscribe, "other-cred/#"), allow(PubSub, "other-role/#")}},
		{"third tenant", "third", "dev-1", "web", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.RulesFor(ctx, tt.tenant, tt.user, tt.app)
			mustDo(t, err)
			if !sameRules(got, tt.want) {
				t.Errorf("RulesFor(%s, %s, %s) = %v, want %v", tt.tenant, tt.user, tt.app, got, tt.want)
			}
		})
	}

	// Tenant isolation of listing.
	for _, r := range mustList(t, p, "other") {
		if slices.Contains(acme, r.Rule) {
			t.Errorf("ListRules(other) contains acme's %v", r)
		}
	}

	// Unlinking and role removal take effect.
	mustDo(t, p.UnlinkCredential(ctx, "acme", "dev-1", "web"))
	if err := p.UnlinkCredential(ctx, "acme", "dev-1", "web"); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("UnlinkCredential(again) = %v, want ErrNotFound", err)
	}
	got, _ := p.RulesFor(ctx, "acme", "dev-1", "")
	if !sameRules(got, acme[:2]) {
		t.Errorf("after unlink RulesFor = %v, want %v", got, acme[:2])
	}
	mustDo(t, p.UnassignRole(ctx, "acme", "app:web", "role:sys"))
	got, _ = p.RulesFor(ctx, "acme", "dev-1", "web")
	if !sameRules(got, acme[:4]) {
		t.Errorf("after unassign RulesFor = %v, want %v", got, acme[:4])
	}
}

func TestPoliciesDelete(t *testing.T) {
	ctx := t.Context()
	db := openTestDB(t)
	p := newTestPolicies(t, db)
	setupACME(t, p)

	mustDo(t, p.DeleteSubject(ctx, "acme", "role:sys"))
	got, _ := p.RulesFor(ctx, "acme", "dev-1", "")
	if slices.Contains(got, allow(Subscribe, "$SYS/#")) {
		t.Errorf("role rules survive DeleteSubject: %v", got)
	}
	if got, _ := p.RulesFor(ctx, "other", "dev-1", ""); !slices.Contains(got, allow(PubSub, "other-role/#")) {
		t.Errorf("DeleteSubject(acme, role:sys) touched tenant other: %v", got)
	}

	mustDo(t, p.DeleteTenant(ctx, "acme"))
	mustDo(t, p.DeleteTenant(ctx, "acme")) // idempotent
	if rules := mustList(t, p, "acme"); len(rules) != 0 {
		t.Errorf("after DeleteTenant ListRules = %v", rules)
	}
	if got, _ := p.RulesFor(ctx, "acme", "dev-1", "web"); len(got) != 0 {
		t.Errorf("after DeleteTenant RulesFor = %v", got)
	}
	var rows []struct{ V1, V2 string }
	mustDo(t, db.Raw("SELECT v1, v2 FROM casbin_rule WHERE v1 = 'acme' OR v2 = 'acme'").Scan(&rows).Error)
	if len(rows) != 0 {
		t.Errorf("rows of acme left in casbin_rule: %v", rows)
	}
	if rules := mustList(t, p, "other"); len(rules) != 3 {
		t.Errorf("DeleteTenant(acme) touched other: %v", rules)
	}
}

// TestEnforceAgreesWithRuleSet checks that the Casbin enforcer with the
// mqttMatch function answers like the compiled RuleSet of the same
// credential (no client ID: "%c" unusable), on a table and on every
// generated topic and filter.
func TestEnforceAgreesWithRuleSet(t *testing.T) {
	ctx := t.Context()
	p := newTestPolicies(t, openTestDB(t))
	setupACME(t, p)
	mustDo(t, p.AddRule(ctx, "acme", "cred:dev-1", allow(Publish, "users/%u/+")))
	mustDo(t, p.AddRule(ctx, "acme", "cred:dev-1", deny(Publish, "users/%u/locked")))
	mustDo(t, p.AddRule(ctx, "acme", "app:web", deny(Subscribe, "devices/%c/private")))

	rules, err := p.RulesFor(ctx, "acme", "dev-1", "web")
	mustDo(t, err)
	rs := Compile(rules, "", "dev-1")

	table := []aclCase{
		pub("a/b", true), pub("admin/x", false), pub("admin", false), pub("$SYS/x", false),
		pub("users/dev-1/x", true), pub("users/dev-1/locked", false), pub("users/dev-2/x", true),
		sub("#", false), sub("a/#", true), sub("admin/+", false), sub("$SYS/#", true),
		sub("devices/x/secret", false), sub("other/+/public", true),
		// No client ID: the deny "devices/%c/private" fails closed, as
		// "devices/#".
		sub("devices/+/public", false), sub("devices/#", false),
		sub("x", true), sub("a/#/b", false),
	}
	for _, c := range table {
		got, err := p.Enforce("acme", "cred:dev-1", c.obj, c.act)
		mustDo(t, err)
		if got != c.want {
			t.Errorf("Enforce(%v %q) = %v, want %v", c.act, c.obj, got, c.want)
		}
		c.check(t, rs)
	}

	// Same names in the other tenant get the other tenant's answer.
	if ok, _ := p.Enforce("other", "cred:dev-1", "a/b", Publish); ok {
		t.Error("Enforce(other, a/b) = true: acme's rules leak")
	}
	if ok, _ := p.Enforce("other", "cred:dev-1", "other-role/x", Publish); !ok {
		t.Error("Enforce(other, other-role/x) = false")
	}

	alphabet := []string{"a", "admin", "devices", "users", "dev-1", "secret", "locked", "$SYS", "", "+", "#"}
	n := 0
	for _, f := range genFilters(alphabet, 3) {
		for _, act := range []Action{Publish, Subscribe} {
			got, err := p.Enforce("acme", "cred:dev-1", f, act)
			mustDo(t, err)
			var want bool
			if act == Publish {
				want = validTopic(f) && rs.CanPublish([]byte(f))
			} else {
				want = rs.CanSubscribe(f)
			}
			if got != want {
				t.Fatalf("Enforce(%v %q) = %v, RuleSet says %v", act, f, got, want)
			}
			n++
		}
	}
	t.Logf("%d cases agree", n)
}

func validTopic(s string) bool {
	for i := range len(s) {
		if s[i] == '+' || s[i] == '#' {
			return false
		}
	}
	return s != ""
}

// sameRules reports whether a and b hold the same rules, in any order.
func sameRules(a, b []Rule) bool {
	key := func(r Rule) string { return fmt.Sprint(r) }
	as, bs := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(as, func(x, y Rule) int { return cmpString(key(x), key(y)) })
	slices.SortFunc(bs, func(x, y Rule) int { return cmpString(key(x), key(y)) })
	return slices.Equal(as, bs)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func mustList(t testing.TB, p *Policies, slug string) []SubjectRule {
	t.Helper()
	rules, err := p.ListRules(context.Background(), slug)
	mustDo(t, err)
	return rules
}

func BenchmarkEnforce(b *testing.B) {
	p := newTestPolicies(b, openTestDB(b))
	setupACME(b, p)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = p.Enforce("acme", "cred:dev-1", "devices/x/temp", Publish)
	}
}

// TestPoliciesConcurrent runs readers and writers at once (run with -race).
func TestPoliciesConcurrent(t *testing.T) {
	ctx := t.Context()
	p := newTestPolicies(t, openTestDB(t))
	setupACME(t, p)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				r := allow(Publish, fmt.Sprintf("w%d/%d", i, j))
				if err := p.AddRule(ctx, "acme", "app:web", r); err != nil {
					t.Error(err)
					return
				}
				if j%2 == 0 {
					if err := p.RemoveRule(ctx, "acme", "app:web", r); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
		wg.Go(func() {
			for range 50 {
				if _, err := p.Enforce("acme", "cred:dev-1", "a/b", Publish); err != nil {
					t.Error(err)
				}
				if _, err := p.RulesFor(ctx, "acme", "dev-1", "web"); err != nil {
					t.Error(err)
				}
				if _, err := p.ListRules(ctx, "acme"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := p.Reload(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	rules := mustList(t, p, "acme")
	n := 0
	for _, r := range rules {
		if r.Subject == "app:web" && r.Filter[0] == 'w' {
			n++
		}
	}
	if n != 40 {
		t.Errorf("%d added rules left, want 40", n)
	}
}
