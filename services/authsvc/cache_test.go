package authsvc

import (
	"testing"
	"time"

	"github.com/relaymq/relay/tenant"
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
