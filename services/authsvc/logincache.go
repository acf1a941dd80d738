package authsvc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
	"sync"
	"time"
)

// loginCache is an edge's memory of the password logins the control plane
// accepted a moment ago, so that a credential presented again — a fleet
// that shares one credential, devices reconnecting after a network blip —
// is let in without a NATS round trip.
//
// What is kept: for a (host name, username) pair as the client sent them,
// the control plane's answer (tenant, credential, app, limits, rules,
// client ID pattern) and an HMAC-SHA-256 of the password that was accepted,
// under a key drawn at random for each cache (never stored, never sent), so
// the cache holds no password. A hit is a CONNECT with the same host name,
// username and a password whose HMAC equals the stored one (compared in
// constant time); its client ID is checked against the credential's pattern
// here, as the control plane would.
//
// What is never kept: refusals (a miss asks the control plane, which
// decides, so brute-force failures are counted by the broker as before),
// certificate logins, logins without a password, and answers of a control
// plane that does not mark them cacheable (an older version).
//
// Consistency: every change pushed for a tenant (rly.auth.v1.changed.<slug>:
// revocation, rotation, suspension, rules, limits, settings) drops all of
// the tenant's entries before anything else is done with it, and so does a
// change made in this process (Service.Invalidate, before the operation
// returns). An answer that was asked for before an invalidation is not
// stored (epoch), so a request in flight cannot bring back what a change
// removed. The TTL bounds an entry's life when an invalidation is lost: the
// Client also drops everything and stops using the cache while its NATS
// connection is down, and when its change subscription has dropped
// messages.
type loginCache struct {
	ttl        time.Duration
	maxEntries int
	key        []byte
	macs       sync.Pool // of hmac.New(sha256.New, key)

	mu sync.Mutex
	// epoch counts invalidations. An answer asked for at epoch e is not
	// stored if its tenant was invalidated since (by slug or ID: the
	// epoch then is in invalidated) or everything was (floor > e).
	// invalidated is bounded: past maxInvalidated tenants it is cleared
	// and floor raised, refusing every answer in flight.
	epoch       uint64
	floor       uint64
	invalidated map[string]uint64 // "s:"+slug or "i:"+tenant ID → epoch
	entries     map[loginKey]*loginEntry
	bySlug      map[string]map[loginKey]struct{} // tenant slug → its entries
	slugByID    map[string]string                // tenant ID → slug, for tenants with entries
	// byCred shares one answer among the entries of one credential (a
	// credential presented under many host names — any Host header a
	// WebSocket client likes — must not cost a copy of its rules each);
	// rules counts the rules of the shared answers, at most maxCachedRules.
	byCred map[string]*sharedReply
	rules  int
}

// sharedReply is an answer and how many entries hold it.
type sharedReply struct {
	rep  *connectReply
	refs int
}

// credKey names a credential across tenants.
func credKey(rep *connectReply) string { return rep.TenantID + "\x00" + rep.CredentialID }

// loginKey is what a client presents besides its password: the tenant and
// credential follow from it (see Service.check).
type loginKey struct {
	serverName string
	username   string
}

// loginEntry is one accepted login.
type loginEntry struct {
	digest  [sha256.Size]byte
	expires time.Time
	rep     *connectReply // read only once stored
}

// Defaults of the edge's login cache.
//
// loginTTL: changes invalidate entries at once, so the TTL only bounds an
// entry whose invalidation was lost (a push dropped while NATS hiccuped).
// 3 s covers the first reconnect attempt of common MQTT clients (1–2 s)
// and a reconnect storm's busiest seconds, and is short next to the 15 s
// the control plane trusts its own cached rows (lookupTTL). Each credential
// still goes to the control plane at least once per TTL.
//
// maxLoginEntries: logins accepted within one TTL; an edge that accepts
// more than 30,000 distinct logins a second is far beyond what one process
// does, so the bound is a safety net (about 0.5 KiB an entry).
//
// maxCachedRules bounds the rules of all distinct answers held (about
// 70 bytes each): a fleet of credentials with thousands of rules each is
// cached only up to it, the rest go to the control plane.
const (
	loginTTL        = 3 * time.Second
	maxLoginEntries = 100_000
	maxCachedRules  = 1_000_000
)

func newLoginCache(ttl time.Duration, maxEntries int) *loginCache {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand)
	return &loginCache{
		ttl: ttl, maxEntries: maxEntries, key: key,
		entries: make(map[loginKey]*loginEntry), bySlug: make(map[string]map[loginKey]struct{}),
		slugByID: make(map[string]string), invalidated: make(map[string]uint64),
		byCred: make(map[string]*sharedReply),
	}
}

// digest is the keyed hash of a password.
func (lc *loginCache) digest(password []byte) (d [sha256.Size]byte) {
	// A keyed HMAC resets to its keyed state without hashing the key
	// again: pooled, a digest is two SHA-256 blocks and no allocation
	// (hmac.New on every CONNECT was a tenth of a cached login's CPU).
	m, _ := lc.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, lc.key)
	}
	m.Write(password)
	m.Sum(d[:0])
	m.Reset()
	lc.macs.Put(m)
	return d
}

// get returns the answer stored for k if the password's digest d matches
// it and it has not expired; nil otherwise (ask the control plane).
func (lc *loginCache) get(k loginKey, d *[sha256.Size]byte, now time.Time) *connectReply {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	e := lc.entries[k]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) {
		lc.remove(k, e)
		return nil
	}
	// A wrong password is a miss, and the entry stays: the control
	// plane decides (and may accept a new secret, which replaces it).
	if subtle.ConstantTimeCompare(e.digest[:], d[:]) != 1 {
		return nil
	}
	return e.rep
}

// begin returns the epoch to pass to put for an answer about to be asked
// for.
func (lc *loginCache) begin() uint64 {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.epoch
}

// put stores an accepted login asked for under epoch, unless an
// invalidation came since.
func (lc *loginCache) put(epoch uint64, k loginKey, d *[sha256.Size]byte, rep *connectReply, now time.Time) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if rep.Tenant == "" || rep.TenantID == "" || epoch < lc.floor ||
		lc.invalidated["s:"+rep.Tenant] > epoch || lc.invalidated["i:"+rep.TenantID] > epoch {
		return
	}
	if old := lc.entries[k]; old != nil {
		lc.remove(k, old)
	} else if len(lc.entries) >= lc.maxEntries {
		// Full: forget an arbitrary entry (map order) — the cost is one
		// more round trip for that login.
		for ok, oe := range lc.entries {
			lc.remove(ok, oe)
			break
		}
	}
	if rep.CredentialID == "" {
		return
	}
	sh := lc.byCred[credKey(rep)]
	if sh == nil {
		if lc.rules+len(rep.Rules) > maxCachedRules {
			return // ask the control plane for this one
		}
		sh = &sharedReply{rep: rep}
		lc.byCred[credKey(rep)] = sh
		lc.rules += len(rep.Rules)
	}
	sh.refs++
	rep = sh.rep
	lc.entries[k] = &loginEntry{digest: *d, expires: now.Add(lc.ttl), rep: rep}
	set := lc.bySlug[rep.Tenant]
	if set == nil {
		set = make(map[loginKey]struct{})
		lc.bySlug[rep.Tenant] = set
	}
	set[k] = struct{}{}
	lc.slugByID[rep.TenantID] = rep.Tenant
}

// unshare drops e's hold on its shared answer; lc.mu is held.
func (lc *loginCache) unshare(e *loginEntry) {
	ck := credKey(e.rep)
	if sh := lc.byCred[ck]; sh != nil && sh.rep == e.rep {
		if sh.refs--; sh.refs <= 0 {
			delete(lc.byCred, ck)
			lc.rules -= len(sh.rep.Rules)
		}
	}
}

// remove deletes entry e of k; lc.mu is held.
func (lc *loginCache) remove(k loginKey, e *loginEntry) {
	delete(lc.entries, k)
	lc.unshare(e)
	slug := e.rep.Tenant
	if set := lc.bySlug[slug]; set != nil {
		delete(set, k)
		if len(set) == 0 {
			delete(lc.bySlug, slug)
			delete(lc.slugByID, e.rep.TenantID)
		}
	}
}

// invalidateSlug drops every entry of the tenant with this slug, and keeps
// answers about it asked for before from being stored.
func (lc *loginCache) invalidateSlug(slug string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.mark("s:" + slug)
	lc.dropSlug(slug)
}

// invalidateID is invalidateSlug for the tenant with this ID.
func (lc *loginCache) invalidateID(tenantID string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.mark("i:" + tenantID)
	if slug, ok := lc.slugByID[tenantID]; ok {
		lc.dropSlug(slug)
	}
}

// maxInvalidated bounds the tenants whose last invalidation is
// remembered.
const maxInvalidated = 1024

// mark records an invalidation of a tenant (tkey: "s:"+slug or "i:"+ID);
// lc.mu is held.
func (lc *loginCache) mark(tkey string) {
	lc.epoch++
	if len(lc.invalidated) >= maxInvalidated {
		clear(lc.invalidated)
		lc.floor = lc.epoch
	}
	lc.invalidated[tkey] = lc.epoch
}

// dropSlug deletes the tenant's entries; lc.mu is held.
func (lc *loginCache) dropSlug(slug string) {
	for k := range lc.bySlug[slug] {
		if e := lc.entries[k]; e != nil {
			delete(lc.entries, k)
			lc.unshare(e)
			delete(lc.slugByID, e.rep.TenantID)
		}
	}
	delete(lc.bySlug, slug)
}

// flush drops everything and keeps answers asked for before from being
// stored.
func (lc *loginCache) flush() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.epoch++
	lc.floor = lc.epoch
	clear(lc.invalidated)
	clear(lc.entries)
	clear(lc.bySlug)
	clear(lc.slugByID)
	clear(lc.byCred)
	lc.rules = 0
}

// sweep drops expired entries (their memory; get ignores them anyway).
func (lc *loginCache) sweep(now time.Time) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for k, e := range lc.entries {
		if !now.Before(e.expires) {
			lc.remove(k, e)
		}
	}
}

// len is the number of entries (tests).
func (lc *loginCache) len() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return len(lc.entries)
}
