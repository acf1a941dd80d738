package natsbus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// willWatch counts the live messages of the tenant "t" on topic w/#.
func willWatch(t *testing.T, b *Bus) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	f, err := topic.ParseFilter("w/#")
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Subscribe("t", f, broker.ClassAll, func(m *broker.Message) {
		if m.Expiry.IsZero() {
			t.Errorf("will %s published without its message expiry", m.Topic)
		}
		n.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &n
}

func delayedWill(node, client, conn string, due time.Time) *broker.Will {
	return &broker.Will{
		Message: broker.Message{Tenant: "t", Topic: []byte("w/" + client), Payload: []byte("gone"), QoS: 1, ClientID: client, Origin: node},
		Node:    node, ConnID: conn, Delay: time.Minute, Due: due, MessageExpiry: time.Minute,
	}
}

// TestDelayedWills: a delayed will (MQTT 5 Will Delay Interval) stored by
// one node can be cancelled or published by any other; exactly one node
// publishes it; a dead node's reaper leaves it until it is due.
func TestDelayedWills(t *testing.T) {
	a, ns := startBus(t, "node-a")
	b := newBus(t, ns, "node-b")
	seen := willWatch(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("cancelled from another node", func(t *testing.T) {
		if err := a.PutWill(ctx, delayedWill("node-a", "c1", "conn1", time.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		if err := b.CancelWill(ctx, "node-a", "t", "c1", "other-conn"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.wills.Get(ctx, willKey("node-a", "t", "c1")); err != nil {
			t.Fatal("another connection's cancel removed the will")
		}
		if err := b.CancelWill(ctx, "node-a", "t", "c1", "conn1"); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.FireWill(ctx, "node-a", "t", "c1", "conn1", nil); ok || err != nil {
			t.Fatalf("FireWill after cancel: %v, %v", ok, err)
		}
	})

	t.Run("published exactly once", func(t *testing.T) {
		before := seen.Load()
		if err := a.PutWill(ctx, delayedWill("node-a", "c2", "conn2", time.Now())); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var wins atomic.Int32
		for _, n := range []*Bus{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := n.FireWill(ctx, "node-a", "t", "c2", "conn2", nil)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d nodes published the will, want 1", wins.Load())
		}
		waitFor(t, func() bool { return seen.Load() == before+1 })
	})

	t.Run("refused by allow", func(t *testing.T) {
		if err := a.PutWill(ctx, delayedWill("node-a", "c3", "conn3", time.Now())); err != nil {
			t.Fatal(err)
		}
		ok, err := a.FireWill(ctx, "node-a", "t", "c3", "conn3", func(*broker.Message) bool { return false })
		if ok || err != nil {
			t.Fatalf("FireWill with a refusing allow: %v, %v", ok, err)
		}
		if _, err := a.wills.Get(ctx, willKey("node-a", "t", "c3")); err == nil {
			t.Fatal("refused will still stored")
		}
	})

	t.Run("dead node's will waits until due", func(t *testing.T) {
		before := seen.Load()
		due := time.Now().Add(700 * time.Millisecond)
		if _, err := a.members.Put(ctx, "ghost", nil); err != nil {
			t.Fatal(err)
		}
		if err := a.PutWill(ctx, delayedWill("ghost", "c4", "conn4", due)); err != nil {
			t.Fatal(err)
		}
		b.reap(ctx)
		if _, err := b.members.Get(ctx, "ghost"); err != nil {
			t.Fatal("dead member removed while its delayed will waits")
		}
		time.Sleep(200 * time.Millisecond)
		if seen.Load() != before {
			t.Fatal("delayed will of a dead node published before it was due")
		}
		time.Sleep(time.Until(due))
		b.reap(ctx)
		waitFor(t, func() bool { return seen.Load() == before+1 })
		if _, err := b.members.Get(ctx, "ghost"); err == nil {
			t.Fatal("dead member kept after its last will")
		}
	})
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWillReady: a will's message expiry starts at publication; a delayed
// will is not ready before it is due.
func TestWillReady(t *testing.T) {
	now := time.Now()
	w := broker.Will{Message: broker.Message{Topic: []byte("x")}, MessageExpiry: time.Minute, Due: now.Add(time.Second)}
	if _, ok := w.Ready(now); ok {
		t.Fatal("ready before due")
	}
	m, ok := w.Ready(now.Add(2 * time.Second))
	if !ok || !m.Expiry.Equal(now.Add(2*time.Second+time.Minute)) {
		t.Fatalf("ready %v, expiry %v", ok, m.Expiry)
	}
	old := broker.Will{Message: broker.Message{Expiry: now.Add(-time.Second)}}
	if _, ok := old.Ready(now); ok {
		t.Fatal("expired will ready")
	}
}

// TestOrphanedWills: wills a node left when it died are published by the
// same node ID when it comes back (nobody else would: it is alive again),
// unless a new connection of the client has replaced them.
func TestOrphanedWills(t *testing.T) {
	first, ns := startBus(t, "node-r")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []string{"o1", "o2"} {
		if err := first.PutWill(ctx, delayedWill("node-r", c, "old-"+c, time.Time{})); err != nil {
			t.Fatal(err)
		}
	}
	first.Close()

	again := newBus(t, ns, "node-r")
	seen := willWatch(t, again)
	if len(again.orphans) != 2 {
		t.Fatalf("orphans %v, want the two wills", again.orphans)
	}
	// o2 has connected again meanwhile: its will is the new connection's.
	if err := again.PutWill(ctx, delayedWill("node-r", "o2", "new-o2", time.Time{})); err != nil {
		t.Fatal(err)
	}
	again.reapOrphans(ctx)
	waitFor(t, func() bool { return seen.Load() == 1 })
	time.Sleep(100 * time.Millisecond)
	if seen.Load() != 1 || len(again.orphans) != 0 {
		t.Fatalf("published %d wills, orphans left %v; want o1's only", seen.Load(), again.orphans)
	}
	if _, err := again.wills.Get(ctx, willKey("node-r", "t", "o2")); err != nil {
		t.Fatal("the new connection's will was removed")
	}
}
