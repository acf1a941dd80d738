package broker

import (
	"net"
	"sync"
	"time"
)

// throttle slows CONNECT brute force: it counts failed authentications per
// key (the source address, and the username) and refuses a key for a
// while once it has failed maxFailures times within window. Each further
// block doubles, up to maxBlock. It holds at most maxEntries keys; when
// full it forgets expired ones, and past that does not track new keys
// (failing open, so that a flood of addresses cannot lock everyone out).
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
	throttleMaxFailures = 5
	throttleWindow      = time.Minute
	throttleFirstBlock  = 2 * time.Second
	throttleMaxBlock    = 5 * time.Minute
	throttleMaxEntries  = 1 << 16
)

func newThrottle() *throttle { return &throttle{entries: make(map[string]*throttleEntry)} }

// addrKey is the throttle key of a remote address (its IP).
func addrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return "ip:" + a.String()
	}
	return "ip:" + host
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

// fail records a failed authentication for every key.
func (t *throttle) fail(now time.Time, keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if k == "" {
			continue
		}
		e := t.entries[k]
		if e == nil {
			if len(t.entries) >= throttleMaxEntries {
				t.sweep(now)
				if len(t.entries) >= throttleMaxEntries {
					continue
				}
			}
			e = &throttleEntry{first: now}
			t.entries[k] = e
		}
		if now.Sub(e.first) > throttleWindow {
			e.failures, e.first = 0, now
		}
		e.failures++
		if e.failures >= throttleMaxFailures {
			block := min(throttleFirstBlock<<min(e.strikes, 16), throttleMaxBlock)
			e.blockedUntil = now.Add(block)
			e.strikes++
			e.failures, e.first = 0, now
		}
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
