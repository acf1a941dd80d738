package authsvc

import (
	"context"
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
// revoked — and those clients are then disconnected by the pushed change,
// as clients connected before the change are. TTL bounds the life of an
// entry whatever the feed does: the feed reads audit records by their
// writers' clocks with a few seconds of overlap, so a record from a process
// whose clock is further behind is never read — then only the TTL ends a
// revoked credential's cached yes.
type lookupCache struct {
	ttl        time.Duration
	maxEntries int

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
}

func newLookupCache(ttl time.Duration, maxEntries int) *lookupCache {
	return &lookupCache{
		ttl: ttl, maxEntries: maxEntries,
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
	// one query per new credential instead of three.
	var t *tenant.Tenant
	lc.mu.Lock()
	epoch := lc.epoch
	if !fresh {
		if e := lc.bySlug[slug]; e != nil && now.Before(e.expires) {
			if c := e.creds[user]; c != nil {
				if app := e.apps[c.AppID]; app != nil {
					lc.mu.Unlock()
					return snapshot{t: e.t, c: c, app: app, cached: true}, nil
				}
			}
			t = e.t
		}
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
