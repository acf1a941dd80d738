package services_test

import (
	"testing"
	"time"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/tenant"
)

// TestAuthCacheFollowsChanges: the control plane caches what CONNECT checks
// read, and no change waits for the cache. A rotation in the same process
// takes effect at the next CONNECT (new secret in, old one out); one made
// by another process (the CLI on the same database) lets the new secret in
// at once and keeps the old one out within the change feed's poll; a
// suspension by another process likewise.
func TestAuthCacheFollowsChanges(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	cred := e.setup(t, "acme")
	other := e.setup(t, "globex")
	for range 3 { // warm the cache
		rawLogin(t, e.addr, "warm", cred).nc.Close()
	}

	// Same process.
	old := cred.Password
	secret, err := e.adm.RotateCredential(opCtx(t), actor, "acme", cred.Username)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	expectConnack(t, e.addr, "old secret right after a rotation", login(packet.V311, "c1", cred.Username, old), packet.ConnRefusedBadCredentials)
	expectConnack(t, e.addr, "new secret right after a rotation", login(packet.V311, "c1", cred.Username, secret), packet.ConnAccepted)
	cred.Password = secret

	// Another process: the new secret works at once (a refusal is decided
	// again on fresh rows), the old one stops within the feed's poll.
	rawLogin(t, e.addr, "warm", other).nc.Close()
	ctl := e.openControl(t)
	old = other.Password
	secret, err = ctl.Admin().RotateCredential(opCtx(t), "cli", "globex", other.Username)
	if err != nil {
		t.Fatalf("rotate through a second control plane: %v", err)
	}
	expectConnack(t, e.addr, "new secret right after a rotation elsewhere", login(packet.V311, "g1", other.Username, secret), packet.ConnAccepted)
	// (That refusal-then-fresh-read also refreshed the cache, so the old
	// secret is usually refused at once; the feed would do it anyway.)
	waitRefused(t, e.addr, "old secret after a rotation elsewhere", login(packet.V311, "g2", other.Username, old), packet.ConnRefusedBadCredentials)

	// Suspension by another process.
	rawLogin(t, e.addr, "warm", cred).nc.Close()
	if _, err := ctl.Admin().SetStatus(opCtx(t), "cli", "acme", tenant.Suspended); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	waitRefused(t, e.addr, "suspended elsewhere", login(packet.V311, "c2", cred.Username, cred.Password), packet.ConnRefusedNotAuthorized)
	// And back: a refusal from the cache is checked again, so resuming
	// works at the next CONNECT.
	if _, err := ctl.Admin().SetStatus(opCtx(t), "cli", "acme", tenant.Active); err != nil {
		t.Fatalf("resume: %v", err)
	}
	expectConnack(t, e.addr, "resumed elsewhere", login(packet.V311, "c3", cred.Username, cred.Password), packet.ConnAccepted)
}

// waitRefused polls CONNECT p until it gets code want, for at most the
// change feed's promise (liveChange).
func waitRefused(t testing.TB, addr, what string, p packet.Connect, want packet.ReasonCode) {
	t.Helper()
	start := time.Now()
	for {
		got, c := connackCode(t, addr, p)
		if got == want {
			t.Logf("%s: refused after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if got == packet.Success {
			c.nc.Close()
		}
		if time.Since(start) > liveChange {
			t.Fatalf("%s: still CONNACK 0x%02X after %v, want 0x%02X", what, byte(got), liveChange, byte(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
