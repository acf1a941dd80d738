package services_test

import (
	"testing"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// TestDelayedWillFollowsTenancy: a delayed will (MQTT 5 Will Delay
// Interval) waiting on this edge after its connection ended still follows
// the tenant's changes: a rule that now denies its topic, a revoked
// credential or a suspended tenant publishes no will; an unchanged one is
// published when due.
func TestDelayedWillFollowsTenancy(t *testing.T) {
	t.Parallel()
	env := startTenancy(t)
	dev := env.setup(t, "acme")
	watcher := env.newCred(t, "acme", "devices", "")
	w := rawLoginV5(t, env.addr, "watcher", watcher)
	if codes := w.subackCodes(1, "will/#"); codes[0] != 1 {
		t.Fatalf("SUBACK %v", codes)
	}

	// goOffline connects client id of dev with a will on will/<id> delayed
	// 2 s, then loses the connection.
	goOffline := func(id string) {
		t.Helper()
		d := dialRaw(t, env.addr)
		p := credLogin(packet.V5, id, dev)
		p.Properties.Set(packet.PropSessionExpiry)
		p.Properties.SessionExpiry = 60
		p.WillFlag, p.WillTopic, p.WillPayload, p.WillQoS = true, "will/"+id, []byte("gone"), 1
		p.WillProperties.Set(packet.PropWillDelay)
		p.WillProperties.WillDelay = 2
		d.connect(p)
		d.nc.Close()
		waitUntil(t, id+" offline", func() bool {
			_, on := env.srv.Edge().Broker().Client("acme", id)
			return !on
		})
	}

	goOffline("kept")
	if m, ok := w.expectPublishWithin(5 * time.Second); !ok || string(m.Topic) != "will/kept" {
		t.Fatalf("unchanged delayed will: got %v (%v), want will/kept", m, ok)
	}

	goOffline("denied")
	env.addRule(t, "acme", "cred:"+userOf(dev), denyPublish("will/denied"))
	if m, ok := w.expectPublishWithin(4 * time.Second); ok {
		t.Fatalf("delayed will published although the rules now deny it: %q", m.Topic)
	}

	goOffline("revoked")
	if err := env.adm.RevokeCredential(opCtx(t), actor, "acme", userOf(dev)); err != nil {
		t.Fatal(err)
	}
	if m, ok := w.expectPublishWithin(4 * time.Second); ok {
		t.Fatalf("revoked credential's delayed will published: %q", m.Topic)
	}
}
