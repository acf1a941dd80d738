package dashboard

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// loginThrottle counts failures per key (an email, an address) in token
// buckets: a key has burst tokens, each failure takes one, and they come
// back at burst per window. A key without tokens is blocked until one is
// back. The table is bounded: when it is full, buckets that have refilled
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

// wait returns how long key stays blocked (0: not blocked).
func (t *loginThrottle) wait(now time.Time, key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[key]
	if b == nil {
		return 0
	}
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(b.per))
}

// fail takes a token from key's loginBucket.
func (t *loginThrottle) fail(now time.Time, key string, l loginLimit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[key]
	if b == nil {
		if len(t.buckets) >= t.max {
			t.sweepLocked(now)
			if len(t.buckets) >= t.max {
				return
			}
		}
		b = &loginBucket{tokens: float64(l.burst), at: now, burst: float64(l.burst), per: l.window / time.Duration(l.burst)}
		t.buckets[key] = b
	}
	b.refill(now)
	b.tokens = math.Max(0, b.tokens-1)
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
