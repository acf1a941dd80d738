package dashboard

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Caches and limits of the JSON API. Each table has its own mutex, a leaf:
// none is held while taking another or doing I/O.

// ---------------------------------------------------------------------------
// Throttle of failed API keys

// throttle counts wrong API keys per source address (an IPv6 address by
// its /64): after throttleFailures within throttleWindow the address is
// refused (429) for throttleFirstBlock, doubling with each further block up
// to throttleMaxBlock. The table holds at most throttleMaxEntries
// addresses; when full it forgets expired ones, and past that tracks no
// new ones (failing open rather than locking everyone out).
type throttle struct {
	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures     int
	first        time.Time
	blockedUntil time.Time
	strikes      int
}

const (
	throttleFailures   = 10
	throttleWindow     = time.Minute
	throttleFirstBlock = 2 * time.Second
	throttleMaxBlock   = 5 * time.Minute
	throttleMaxEntries = 1 << 14
)

func newThrottle() *throttle { return &throttle{entries: map[string]*throttleEntry{}} }

// addrKey is the throttle key of a remote "host:port".
func addrKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// blocked returns how long addr is still refused (0: not).
func (t *throttle) blocked(addr string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[addr]; e != nil && now.Before(e.blockedUntil) {
		return e.blockedUntil.Sub(now)
	}
	return 0
}

// fail records a wrong key from addr.
func (t *throttle) fail(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[addr]
	if e == nil {
		if len(t.entries) >= throttleMaxEntries {
			for k, old := range t.entries {
				if now.Sub(old.first) > throttleWindow && now.After(old.blockedUntil.Add(throttleMaxBlock)) {
					delete(t.entries, k)
				}
			}
			if len(t.entries) >= throttleMaxEntries {
				return
			}
		}
		e = &throttleEntry{first: now}
		t.entries[addr] = e
	}
	if now.Sub(e.first) > throttleWindow {
		e.failures, e.first = 0, now
		if now.After(e.blockedUntil.Add(throttleMaxBlock)) {
			e.strikes = 0 // well behaved for a while: start over
		}
	}
	e.failures++
	if e.failures >= throttleFailures {
		block := min(throttleFirstBlock<<e.strikes, throttleMaxBlock)
		e.blockedUntil = now.Add(block)
		e.strikes = min(e.strikes+1, 16)
		e.failures, e.first = 0, now
	}
}

// ---------------------------------------------------------------------------
// Verified API keys

// keyCache remembers verified API keys (by SHA-256 of the whole key) for
// APIDeps.KeyCacheTTL, so that a busy integration does not cost three
// database reads per request. At most keyCacheMax keys; full, it starts
// over. Every forget bumps the epoch, and a key verified under an older
// epoch is not stored: a verification that started before a revocation
// made through the API must not put the key back.
type keyCache struct {
	mu    sync.Mutex
	m     map[[32]byte]keyEntry
	epoch uint64
}

type keyEntry struct {
	caller      Caller
	prefix, app string
	at          time.Time
}

const keyCacheMax = 1 << 14

func (c *keyCache) get(key string, now time.Time, ttl time.Duration) (keyEntry, bool) {
	if ttl < 0 {
		return keyEntry{}, false
	}
	h := sha256.Sum256([]byte(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok || now.Sub(e.at) > ttl {
		return keyEntry{}, false
	}
	return e, true
}

// currentEpoch is read before verifying a key, and handed to put.
func (c *keyCache) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put stores a key verified under epoch, unless a forget came since.
func (c *keyCache) put(key string, e keyEntry, epoch uint64) {
	h := sha256.Sum256([]byte(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if len(c.m) >= keyCacheMax {
		clear(c.m)
	}
	c.m[h] = e
}

// forget drops the keys of a tenant (prefix "" for all of them), or every
// key (tenantID "").
func (c *keyCache) forget(tenantID, prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for h, e := range c.m {
		if tenantID == "" || (e.caller.TenantID == tenantID && (prefix == "" || e.prefix == prefix)) {
			delete(c.m, h)
		}
	}
}

// ---------------------------------------------------------------------------
// Compiled ACL of API keys

// ruleCache holds each API key's compiled rules for APIDeps.RulesTTL, by
// tenant and key prefix; changes made through the API drop the tenant's
// entries at once, and bump the epoch: rules loaded under an older epoch
// are used by the request that loaded them but not stored (they may
// predate the change).
type ruleCache struct {
	mu    sync.Mutex
	m     map[string]map[string]ruleEntry // tenant → prefix → rules
	n     int
	epoch uint64
}

type ruleEntry struct {
	rs *auth.RuleSet
	at time.Time
}

const ruleCacheMax = 1 << 14

// ownerRules are a dashboard user's: every topic of the tenant.
var ownerRules = auth.AllowAll()

// rulesFor returns the ACL a message route applies to the caller: an API
// key's app rules, or, for a dashboard user (the tenant's owner), every
// topic of the tenant.
func (a *apiState) rulesFor(ctx context.Context, tn Tenancy, k *Caller, ki *keyInfo) (*auth.RuleSet, error) {
	if ki == nil {
		return ownerRules, nil
	}
	now := time.Now()
	c := &a.rules
	c.mu.Lock()
	e, ok := c.m[k.Tenant][ki.prefix]
	epoch := c.epoch
	c.mu.Unlock()
	if ok && now.Sub(e.at) <= a.deps.RulesTTL {
		return e.rs, nil
	}
	rules, err := tn.APIKeyRules(ctx, k.Tenant, ki.prefix, ki.app)
	if err != nil {
		return nil, fmt.Errorf("%w: loading rules: %w", ErrUnavailable, err)
	}
	rs := auth.Compile(rules, "", ki.prefix)
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return rs, nil
	}
	if c.n >= ruleCacheMax {
		clear(c.m)
		c.n = 0
	}
	if c.m[k.Tenant] == nil {
		c.m[k.Tenant] = map[string]ruleEntry{}
	}
	if _, had := c.m[k.Tenant][ki.prefix]; !had {
		c.n++
	}
	c.m[k.Tenant][ki.prefix] = ruleEntry{rs: rs, at: now}
	return rs, nil
}

// forget drops a tenant's compiled rules.
func (c *ruleCache) forget(tenantSlug string) {
	c.mu.Lock()
	c.epoch++
	c.n -= len(c.m[tenantSlug])
	delete(c.m, tenantSlug)
	c.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Publish rate per tenant

// limiterTable holds each tenant's token bucket for HTTP publishes; a
// bucket's rate follows the tenant's max_message_rate (re-read every
// limiterRefresh).
type limiterTable struct {
	mu sync.Mutex
	m  map[string]*limiterEntry
}

type limiterEntry struct {
	lim     *rate.Limiter
	checked time.Time
	used    time.Time
}

const (
	limiterRefresh = 10 * time.Second
	limiterMax     = 1 << 14
)

// take takes n tokens of the tenant's bucket, or returns a
// *RateLimitError saying when n will be there (tenant.ErrInvalid if n is
// over the bucket's burst: they never will).
func (a *apiState) take(ctx context.Context, tn Tenancy, slug string, n int) error {
	now := time.Now()
	t := &a.limits
	t.mu.Lock()
	e := t.m[slug]
	stale := e == nil || now.Sub(e.checked) > limiterRefresh
	if e != nil {
		e.used = now
	}
	t.mu.Unlock()
	if stale {
		r := a.deps.PublishRate
		burst := a.deps.PublishBurst
		if tt, err := tn.Tenant(ctx, slug); err == nil && tt.Limits.MaxMessageRate > 0 && float64(tt.Limits.MaxMessageRate) < r {
			r = float64(tt.Limits.MaxMessageRate)
			burst = max(1, min(burst, 2*tt.Limits.MaxMessageRate))
		}
		t.mu.Lock()
		if e = t.m[slug]; e == nil {
			if len(t.m) >= limiterMax {
				for k, old := range t.m {
					if now.Sub(old.used) > time.Minute {
						delete(t.m, k)
					}
				}
			}
			e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(r), burst), used: now}
			t.m[slug] = e
		} else {
			e.lim.SetLimitAt(now, rate.Limit(r))
			e.lim.SetBurstAt(now, burst)
		}
		e.checked = now
		t.mu.Unlock()
	}
	if n > e.lim.Burst() {
		// Never possible, however long the caller waits: not a 429.
		return fmt.Errorf("%w: %d messages at once exceed the tenant's burst of %d: send smaller batches", tenant.ErrInvalid, n, e.lim.Burst())
	}
	res := e.lim.ReserveN(now, n)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return &RateLimitError{RetryAfter: d, Reason: "the tenant's HTTP publish rate is exceeded"}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Live watches

// watchTable counts each tenant's live watches and knows their filters
// (they count as subscribers of HTTP publishes from this process).
type watchTable struct {
	mu sync.Mutex
	m  map[string][]string // tenant → filters of its watches
}

func (w *watchTable) add(tenant, filter string, max int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m[tenant]) >= max {
		return false
	}
	w.m[tenant] = append(w.m[tenant], filter)
	return true
}

func (w *watchTable) remove(tenant, filter string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fs := w.m[tenant]
	for i, f := range fs {
		if f == filter {
			fs = append(fs[:i], fs[i+1:]...)
			break
		}
	}
	if len(fs) == 0 {
		delete(w.m, tenant)
	} else {
		w.m[tenant] = fs
	}
}

// matches reports whether a watch of the tenant matches topic t.
func (w *watchTable) matches(tenant string, t []byte, match func(string, []byte) bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.m[tenant] {
		if match(f, t) {
			return true
		}
	}
	return false
}
