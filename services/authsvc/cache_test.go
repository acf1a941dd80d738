package authsvc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaymq/relay/tenant"
	"github.com/relaymq/relay/tenant/gormstore"
)

// TestLookupCacheAccounting: the entry count matches what the maps hold
// through expiries, replacements and invalidations, and a fill read before
// an invalidation is not stored.
func TestLookupCacheAccounting(t *testing.T) {
	lc := newLookupCache(time.Millisecond, 1000)
	tn := &tenant.Tenant{ID: "t1", Slug: "acme"}
	c := &tenant.Credential{Username: "u", AppID: "a"}
	app := &tenant.App{ID: "a"}
	count := func() int {
		n := 0
		for _, e := range lc.bySlug {
			n += 1 + len(e.creds) + len(e.apps)
		}
		return n
	}
	now := time.Now()
	for i := range 50 {
		lc.store(lc.epoch, now.Add(time.Duration(i)*time.Second), tn, c, app) // each one past the last's expiry
	}
	if lc.entries != count() || lc.entries != 3 {
		t.Fatalf("after expiries: entries = %d, maps hold %d, want 3", lc.entries, count())
	}
	lc.invalidate("t1")
	if lc.entries != 0 || count() != 0 {
		t.Fatalf("after invalidation: entries = %d, maps hold %d", lc.entries, count())
	}
	stale := lc.epoch - 1
	lc.store(stale, now, tn, c, app)
	if count() != 0 {
		t.Fatal("a fill read before the invalidation was stored")
	}
}

// TestLookupCacheNewCredentialOneQuery: on SQLite, a credential not cached
// yet in a tenant that is costs one query (its row), not three; a fresh
// load reads everything; a username of another tenant never resolves to
// this one's rows; an invalidation starts the tenant over.
func TestLookupCacheNewCredentialOneQuery(t *testing.T) {
	ctx := context.Background()
	store := openCountingStore(t)
	mk := func(slug string, users ...string) *tenant.Tenant { return mkTenantCreds(t, store.Store, slug, users) }
	acme := mk("acme", "u1", "u2", "u3")
	beta := mk("beta", "u1", "only-beta")
	lc := newLookupCache(time.Minute, 1000)
	load := func(slug, user string, fresh bool, wantQueries int64, wantCached bool) snapshot {
		t.Helper()
		before := store.lookups.Load()
		snap, err := lc.load(ctx, store, slug, user, fresh)
		if err != nil {
			t.Fatalf("load(%s, %s): %v", slug, user, err)
		}
		if n := store.lookups.Load() - before; n != wantQueries || snap.cached != wantCached {
			t.Errorf("load(%s, %s, fresh %v): %d queries, cached %v; want %d, %v", slug, user, fresh, n, snap.cached, wantQueries, wantCached)
		}
		if snap.t.Slug != slug || snap.c.TenantID != snap.t.ID || snap.c.Username != user || snap.app.TenantID != snap.t.ID {
			t.Errorf("load(%s, %s) = tenant %s, credential %s of %s, app of %s", slug, user, snap.t.Slug, snap.c.Username, snap.c.TenantID, snap.app.TenantID)
		}
		return snap
	}
	load("acme", "u1", false, 3, false) // cold: tenant, credential, app
	load("acme", "u2", false, 1, true)  // warm tenant: the credential only
	load("acme", "u2", false, 0, true)  // all cached
	load("acme", "u3", true, 3, false)  // fresh: everything again
	if s := load("beta", "u1", false, 3, false); s.t.ID != beta.ID {
		t.Errorf("beta's u1 resolved to tenant %s", s.t.ID)
	}
	load("beta", "u1", false, 0, true)
	if _, err := lc.load(ctx, store, "acme", "only-beta", false); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("acme/only-beta: err = %v, want ErrNotFound", err)
	}
	lc.invalidate(acme.ID)
	load("acme", "u2", false, 3, false)
	load("beta", "only-beta", false, 1, true) // beta untouched by acme's invalidation
}

// TestLookupCachePreload: after preloadAfter credentials read one by one,
// the tenant's credentials are read at once and the rest of a storm costs
// no query; a username the tenant does not have is a refusal from memory
// (which check decides again on fresh rows); another tenant's usernames
// never resolve; an invalidation starts over; a tenant with more than
// preloadMax credentials is never read whole.
func TestLookupCachePreload(t *testing.T) {
	ctx := context.Background()
	store := openCountingStore(t)
	mk := func(slug string, n int) *tenant.Tenant {
		users := make([]string, n)
		for i := range users {
			users[i] = fmt.Sprintf("%s%03d", slug, i)
		}
		return mkTenantCreds(t, store.Store, slug, users)
	}
	acme := mk("acme", 100)
	mk("beta", 5)
	lc := newLookupCache(time.Minute, 1000)
	lc.preloadAfter, lc.preloadMax = 8, 20
	queries := func(slug, user string, wantErr error) (int64, snapshot) {
		t.Helper()
		before := store.lookups.Load()
		snap, err := lc.load(ctx, store, slug, user, false)
		if !errors.Is(err, wantErr) {
			t.Fatalf("load(%s, %s): err = %v, want %v", slug, user, err, wantErr)
		}
		if err == nil && (snap.t.Slug != slug || snap.c.Username != user || snap.c.TenantID != snap.t.ID) {
			t.Fatalf("load(%s, %s) = %s of %s", slug, user, snap.c.Username, snap.t.Slug)
		}
		return store.lookups.Load() - before, snap
	}
	// With preloadMax 20, acme (100) is too big: one query per miss.
	var n int64
	for i := range 8 {
		q, _ := queries("acme", fmt.Sprintf("acme%03d", i), nil)
		n += q
		if i == 3 {
			// Unknown usernames do not count towards a preload.
			for range 6 {
				queries("acme", "ghost", tenant.ErrNotFound)
			}
		}
	}
	if n != 3+7 { // cold, then the credential only
		t.Errorf("first 8 of acme: %d queries, want 10", n)
	}
	// The 9th credential would preload, but acme has 100 > 20.
	if q, _ := queries("acme", "acme008", nil); q != 1+1 {
		t.Errorf("miss after a preload that found too many: %d queries, want 2 (the try, then the row)", q)
	}
	if q, _ := queries("acme", "acme009", nil); q != 1 {
		t.Errorf("miss of a tenant too big to preload: %d queries, want 1", q)
	}

	// Now with room: a fresh acme entry.
	lc.preloadMax = 200
	lc.invalidate(acme.ID)
	for i := range 8 {
		queries("acme", fmt.Sprintf("acme%03d", i), nil)
	}
	q, snap := queries("acme", "acme050", nil) // 9th credential: preload
	if q != 2 || !snap.cached {
		t.Errorf("preloading miss: %d queries (cached %v), want 2 (credentials, apps)", q, snap.cached)
	}
	for i := 8; i < 100; i++ {
		if q, _ := queries("acme", fmt.Sprintf("acme%03d", i), nil); q != 0 {
			t.Fatalf("acme%03d after the preload: %d queries", i, q)
		}
	}
	for _, u := range []string{"ghost", "beta001"} {
		if q, snap := queries("acme", u, tenant.ErrNotFound); q != 0 || !snap.cached {
			t.Errorf("acme/%s after the preload: %d queries, cached %v; want a cached refusal", u, q, snap.cached)
		}
	}
	if q, snap := queries("beta", "beta001", nil); q != 3 || snap.t.Slug != "beta" {
		t.Errorf("beta001: %d queries, tenant %s", q, snap.t.Slug)
	}
	// Fresh rows after an invalidation.
	lc.invalidate(acme.ID)
	if q, _ := queries("acme", "acme099", nil); q != 3 {
		t.Errorf("after invalidation: %d queries, want 3", q)
	}
	// A fresh load (check's second look at a refusal) reads the database.
	before := store.lookups.Load()
	if _, err := lc.load(ctx, store, "acme", "ghost", true); !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("fresh ghost: %v", err)
	}
	if store.lookups.Load() == before {
		t.Error("a fresh load was answered from the cache")
	}
}

// openCountingStore opens a counting store on a new SQLite file.
func openCountingStore(t *testing.T) *countingStore {
	t.Helper()
	st, err := gormstore.Open(context.Background(), filepath.Join(t.TempDir(), "relay.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &countingStore{Store: st}
}

// mkTenantCreds creates tenant slug with an app and a credential per user.
func mkTenantCreds(t *testing.T, st *gormstore.Store, slug string, users []string) *tenant.Tenant {
	t.Helper()
	ctx := context.Background()
	tn := &tenant.Tenant{Slug: slug}
	if err := st.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	app := &tenant.App{TenantID: tn.ID, Name: "devices"}
	if err := st.CreateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		c := &tenant.Credential{TenantID: tn.ID, AppID: app.ID, Username: u, HashScheme: tenant.SchemeKeyed, SecretHash: []byte(slug + u)}
		if err := st.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return tn
}
