package authsvc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/relaymq/relay/tenant"
)

// lookupCache keeps the rows a CONNECT check reads (tenant by slug,
// credential by username, app by ID), so that a reconnect storm costs a
// keyed hash per client rather than three database queries.
//
// Consistency: the change feed (every audit record, from any process)
// invalidates the record's tenant before its change is pushed to edges, and
// a check only ever trusts the cache to say yes — a refusal based on cached
// rows is decided again on fresh ones (check). So a new secret, a resumed
// tenant or a new credential work at once; what can still succeed from the
// cache, for at most one feed poll, is a secret that was just rotated or
// revoked (cached, or preloaded), and any credential of a tenant that was
// just suspended or had a setting turned off (the tenant row is cached and
// serves credentials read later too) — and those clients are then
// disconnected by the pushed change, as clients connected before the
// change are. TTL bounds the life of an
// entry whatever the feed does: the feed reads audit records by their
// writers' clocks with a few seconds of overlap, so a record from a process
// whose clock is further behind is never read — then only the TTL ends a
// revoked credential's cached yes.
type lookupCache struct {
	ttl        time.Duration
	maxEntries int
	// preloadAfter and preloadMax: see the constants.
	preloadAfter, preloadMax int

	mu sync.Mutex
	// epoch is bumped by every invalidation; a fill that read the
	// database under an older epoch is not stored (it may predate the
	// change).
	epoch   uint64
	entries int
	bySlug  map[string]*tenantEntry
	byID    map[string]*tenantEntry
}

// tenantEntry is one tenant's cached rows.
type tenantEntry struct {
	t       *tenant.Tenant
	expires time.Time
	creds   map[string]*tenant.Credential // by username
	apps    map[string]*tenant.App        // by ID

	// misses counts existing credentials read one by one into the entry
	// (unknown usernames do not count); at
	// preloadAfter the tenant's credentials are read all at once
	// (preload), and then complete says creds holds every one of them as
	// of that read. loading: a preload is under way; tooBig: the tenant
	// has more than preloadMax credentials (or the cache has no room).
	misses   int
	complete bool
	loading  bool
	tooBig   bool
}

// A reconnect storm of a fleet whose devices have a credential each would
// cost a query per device: after preloadAfter of them in one tenant entry,
// the tenant's credentials (at most preloadMax) and apps are read in one
// go, and the rest of the storm is answered from memory.
const (
	preloadAfter = 32
	preloadMax   = 50_000
)

func newLookupCache(ttl time.Duration, maxEntries int) *lookupCache {
	return &lookupCache{
		ttl: ttl, maxEntries: maxEntries, preloadAfter: preloadAfter, preloadMax: preloadMax,
		bySlug: make(map[string]*tenantEntry), byID: make(map[string]*tenantEntry),
	}
}

// snapshot is what one check read: the rows and whether they came from the
// cache.
type snapshot struct {
	t      *tenant.Tenant
	c      *tenant.Credential
	app    *tenant.App
	cached bool
}

// load returns the tenant, credential and app rows of slug/user, from the
// cache unless fresh is set. The app is nil when the credential's app no
// longer exists (left to the caller). Errors are the store's
// (tenant.ErrNotFound for an unknown tenant or username).
func (lc *lookupCache) load(ctx context.Context, store tenant.Store, slug, user string, fresh bool) (snapshot, error) {
	now := time.Now()
	// A credential not cached yet (a fleet of devices with a credential
	// each, reconnecting) still takes its tenant and app from the cache:
	// one query per new credential instead of three, and none once the
	// tenant's credentials were preloaded.
	if snap, ok, err := lc.cached(ctx, store, slug, user, fresh, now); ok {
		return snap, err
	}
	var t *tenant.Tenant
	lc.mu.Lock()
	epoch := lc.epoch
	if e := lc.bySlug[slug]; !fresh && e != nil && now.Before(e.expires) {
		t = e.t
	}
	lc.mu.Unlock()
	cached := t != nil
	if t == nil {
		var err error
		if t, err = store.TenantBySlug(ctx, slug); err != nil {
			return snapshot{}, err
		}
	}
	c, err := store.CredentialByUsername(ctx, t.ID, user)
	if err != nil {
		return snapshot{t: t, cached: cached}, err
	}
	var app *tenant.App
	if !fresh {
		lc.mu.Lock()
		if e := lc.bySlug[slug]; e != nil && e.t == t && now.Before(e.expires) {
			app = e.apps[c.AppID]
		}
		lc.mu.Unlock()
	}
	if app != nil {
		cached = true
	} else if app, err = store.AppByID(ctx, t.ID, c.AppID); err != nil {
		return snapshot{t: t, c: c, cached: cached}, err
	}
	lc.store(epoch, now, t, c, app)
	return snapshot{t: t, c: c, app: app, cached: cached}, nil
}

// cached answers load from the tenant's entry when it can: the rows, or
// tenant.ErrNotFound for a username the tenant's preloaded credentials do
// not hold (a refusal, which check decides again on fresh rows). It starts
// the preload of a tenant with preloadAfter misses and answers from it.
func (lc *lookupCache) cached(ctx context.Context, store tenant.Store, slug, user string, fresh bool, now time.Time) (snapshot, bool, error) {
	if fresh {
		return snapshot{}, false, nil
	}
	lc.mu.Lock()
	e := lc.bySlug[slug]
	if e == nil || !now.Before(e.expires) {
		lc.mu.Unlock()
		return snapshot{}, false, nil
	}
	snap, ok, err := e.lookup(user)
	preload := !ok && !e.complete && !e.loading && !e.tooBig && e.misses >= lc.preloadAfter
	if preload {
		e.loading = true
	}
	lc.mu.Unlock()
	if !preload {
		return snap, ok, err
	}
	lc.preload(ctx, store, e)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.bySlug[slug] != e {
		return snapshot{}, false, nil // invalidated or replaced meanwhile
	}
	return e.lookup(user)
}

// lookup answers from the entry; lc.mu is held. ok is false when the
// database must be asked.
func (e *tenantEntry) lookup(user string) (snapshot, bool, error) {
	c := e.creds[user]
	if c == nil {
		if e.complete {
			return snapshot{t: e.t, cached: true}, true, fmt.Errorf("%w: username %q", tenant.ErrNotFound, user)
		}
		return snapshot{}, false, nil
	}
	app := e.apps[c.AppID]
	if app == nil {
		return snapshot{}, false, nil
	}
	return snapshot{t: e.t, c: c, app: app, cached: true}, true, nil
}

// preload reads every credential and app of e's tenant into e, unless the
// tenant was invalidated meanwhile or has more than preloadMax credentials.
func (lc *lookupCache) preload(ctx context.Context, store tenant.Store, e *tenantEntry) {
	creds, err := store.CredentialsAfter(ctx, e.t.ID, "", lc.preloadMax+1)
	var apps []tenant.App
	if err == nil && len(creds) <= lc.preloadMax {
		apps, err = store.ListApps(ctx, e.t.ID)
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	e.loading = false
	switch {
	// An invalidation of this tenant (or the cache starting over)
	// removes the entry: the rows read may predate it. Changes of other
	// tenants do not matter here, unlike for store's single rows.
	case err != nil, lc.bySlug[e.t.Slug] != e, lc.byID[e.t.ID] != e:
		// Tried again after as many misses again, on fresh rows.
		e.misses = 0
		return
	case len(creds) > lc.preloadMax, lc.entries+len(creds)+len(apps) > lc.maxEntries:
		e.tooBig = true
		return
	}
	for i := range creds {
		if _, ok := e.creds[creds[i].Username]; !ok {
			lc.entries++
		}
		e.creds[creds[i].Username] = &creds[i]
	}
	for i := range apps {
		if _, ok := e.apps[apps[i].ID]; !ok {
			lc.entries++
		}
		e.apps[apps[i].ID] = &apps[i]
	}
	e.complete = true
}

// store caches rows read under epoch, unless an invalidation came since.
func (lc *lookupCache) store(epoch uint64, now time.Time, t *tenant.Tenant, c *tenant.Credential, app *tenant.App) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if epoch != lc.epoch {
		return
	}
	if lc.entries >= lc.maxEntries {
		// Rare (more live credentials than the bound): start over
		// rather than track recency on every hit.
		clear(lc.bySlug)
		clear(lc.byID)
		lc.entries = 0
	}
	e := lc.bySlug[t.Slug]
	if e == nil || !now.Before(e.expires) || e.t.ID != t.ID {
		if e != nil {
			lc.entries -= 1 + len(e.creds) + len(e.apps)
			delete(lc.byID, e.t.ID)
		}
		e = &tenantEntry{
			t: t, expires: now.Add(lc.ttl),
			creds: make(map[string]*tenant.Credential), apps: make(map[string]*tenant.App),
		}
		lc.bySlug[t.Slug] = e
		lc.byID[t.ID] = e
		lc.entries++
	}
	if _, ok := e.creds[c.Username]; !ok {
		lc.entries++
		e.misses++ // a credential that exists, read on its own
	}
	e.creds[c.Username] = c
	if _, ok := e.apps[app.ID]; !ok {
		lc.entries++
	}
	e.apps[app.ID] = app
}

// invalidate forgets everything cached of the tenant with this ID, and
// keeps fills that started before from being stored.
func (lc *lookupCache) invalidate(tenantID string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.epoch++
	if e := lc.byID[tenantID]; e != nil {
		lc.entries -= 1 + len(e.creds) + len(e.apps)
		delete(lc.byID, tenantID)
		if lc.bySlug[e.t.Slug] == e {
			delete(lc.bySlug, e.t.Slug)
		}
	}
}
