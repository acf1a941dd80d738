package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sync"
	"time"
)

// throttle slows CONNECT brute force: it counts failed authentications
// (bad credentials only) per key and refuses a key for a while once it has
// failed its limit within window; each further block doubles, up to
// maxBlock. The keys are the (username, address) pair — limit 5, so that
// guessing one device's password is slow while the same username from
// other addresses is not locked out by an attacker — and the address alone
// (an IPv6 address by its /64) — limit 20, against guessing many
// usernames. Usernames are keyed by a hash, so an entry is small whatever
// the client sends. It holds at most maxEntries keys; when full it forgets
// expired ones, and past that does not track new keys (failing open, so
// that a flood of addresses cannot lock everyone out).
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
	throttleUserFailures = 5
	throttleAddrFailures = 20
	throttleWindow       = time.Minute
	throttleFirstBlock   = 2 * time.Second
	throttleMaxBlock     = 5 * time.Minute
	throttleMaxEntries   = 1 << 14
)

func newThrottle() *throttle { return &throttle{entries: make(map[string]*throttleEntry)} }

// addrKey is the throttle key of a remote address: its IP, or the /64 of
// an IPv6 address (one host can hold a whole /64).
func addrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return "ip:" + host
}

// userKey is the throttle key of a username from an address.
func userKey(username, addr string) string {
	sum := sha256.Sum256([]byte(username))
	return "u:" + hex.EncodeToString(sum[:12]) + "|" + addr
}

// blocked reports whether any key is blocked now.
func (t *throttle) blocked(now time.Time, keys ...string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if e := t.entries[k]; e != nil && now.Before(e.blockedUntil) {
			return true
		}
	}
	return false
}

// fail records a failed authentication for key, which is blocked after
// limit failures within the window.
func (t *throttle) fail(now time.Time, key string, limit int) {
	if key == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil {
		if len(t.entries) >= throttleMaxEntries {
			t.sweep(now)
			if len(t.entries) >= throttleMaxEntries {
				return
			}
		}
		e = &throttleEntry{first: now}
		t.entries[key] = e
	}
	if now.Sub(e.first) > throttleWindow {
		e.failures, e.first = 0, now
	}
	e.failures++
	if e.failures >= limit {
		block := min(throttleFirstBlock<<min(e.strikes, 16), throttleMaxBlock)
		e.blockedUntil = now.Add(block)
		e.strikes++
		e.failures, e.first = 0, now
	}
}

// succeed forgets the key's failures.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	delete(t.entries, key)
	t.mu.Unlock()
}

// sweep drops entries whose window and block are over; t.mu is held.
func (t *throttle) sweep(now time.Time) {
	for k, e := range t.entries {
		if now.After(e.blockedUntil) && now.Sub(e.first) > throttleWindow && now.Sub(e.blockedUntil) > throttleMaxBlock {
			delete(t.entries, k)
		}
	}
}
