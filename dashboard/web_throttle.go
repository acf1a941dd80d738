package dashboard

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// loginThrottle counts attempts per key (an account, an address, an
// account at an address) in token buckets: a key has burst tokens, each
// attempt takes one before it is checked (take) and a successful one gives
// it back (refund); tokens come back at burst per window. A key without
// tokens is blocked until one is back. The table is bounded: when it is full, buckets that have refilled
// are forgotten, and if none has, new keys are not tracked (fail open: a
// flood of distinct keys must not lock everyone out, and each key is still
// limited by the address loginBucket of the same attempt).
type loginThrottle struct {
	mu      sync.Mutex
	buckets map[string]*loginBucket
	max     int
}

type loginBucket struct {
	tokens float64
	at     time.Time // when tokens was computed
	burst  float64
	per    time.Duration // time for one token to come back
}

// loginLimit is a loginBucket's shape: burst failures per window.
type loginLimit struct {
	burst  int
	window time.Duration
}

func newLoginThrottle(maxKeys int) *loginThrottle {
	return &loginThrottle{buckets: map[string]*loginBucket{}, max: maxKeys}
}

func (b *loginBucket) refill(now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(b.burst, b.tokens+float64(d)/float64(b.per))
		b.at = now
	}
}

// limitKey is one bucket an attempt takes a token from.
type limitKey struct {
	key   string
	limit loginLimit
}

// take counts one attempt against every key at once, before the attempt is
// checked (so that parallel attempts cannot all pass a check made before
// any of them is counted): if any key has no token left it takes none and
// returns how long until all of them have one again; otherwise it takes a
// token from each and returns 0. A success gives them back (refund).
func (t *loginThrottle) take(now time.Time, keys ...limitKey) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		if b := t.buckets[k.key]; b != nil {
			b.refill(now)
			if b.tokens < 1 {
				wait = max(wait, time.Duration((1-b.tokens)*float64(b.per)))
			}
		}
	}
	if wait > 0 {
		return wait
	}
	for _, k := range keys {
		b := t.buckets[k.key]
		if b == nil {
			if len(t.buckets) >= t.max {
				t.sweepLocked(now)
				if len(t.buckets) >= t.max {
					continue // fail open for this key; the others still count
				}
			}
			l := k.limit
			b = &loginBucket{tokens: float64(l.burst), at: now, burst: float64(l.burst), per: l.window / time.Duration(l.burst)}
			t.buckets[k.key] = b
		}
		b.tokens = math.Max(0, b.tokens-1)
	}
	return 0
}

// refund gives back the tokens an attempt took (it succeeded, or it never
// reached the check it was counted for).
func (t *loginThrottle) refund(now time.Time, keys ...limitKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if b := t.buckets[k.key]; b != nil {
			b.refill(now)
			b.tokens = math.Min(b.burst, b.tokens+1)
		}
	}
}

// reset forgets key (after a successful sign-in).
func (t *loginThrottle) reset(key string) {
	t.mu.Lock()
	delete(t.buckets, key)
	t.mu.Unlock()
}

// sweep forgets buckets that have refilled.
func (t *loginThrottle) sweep(now time.Time) {
	t.mu.Lock()
	t.sweepLocked(now)
	t.mu.Unlock()
}

func (t *loginThrottle) sweepLocked(now time.Time) {
	for k, b := range t.buckets {
		b.refill(now)
		if b.tokens >= b.burst {
			delete(t.buckets, k)
		}
	}
}

// loginAddrKey is the throttling key of a remote address: the IP, or for IPv6
// its /64 (one host usually has a whole /64).
func loginAddrKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "ip:" + host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}
