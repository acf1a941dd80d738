package natsbus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// kickLog records the kicks a node receives.
type kickLog struct {
	mu    sync.Mutex
	kicks []string
}

func (l *kickLog) handle(tenant, clientID, connID string, connected time.Time, wait bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := int64(0)
	if !connected.IsZero() {
		at = connected.UnixNano()
	}
	l.kicks = append(l.kicks, fmt.Sprintf("%s/%s/%s/%d/%v", tenant, clientID, connID, at, wait))
	return false
}

func (l *kickLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.kicks)
}

// TestKickBatches: takeover broadcasts reach every other edge, in order,
// in far fewer NATS messages than kicks; the sender does not kick itself;
// a kick addressed to a node is waited for.
func TestKickBatches(t *testing.T) {
	a, ns := startBus(t, "a")
	b := newBus(t, ns, "b")
	var la, lb kickLog
	a.HandleKicks(la.handle)
	b.HandleKicks(lb.handle)

	// Count the broadcast messages on the wire.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var msgs atomic.Int32
	if _, err := nc.Subscribe(subjKicks, func(*nats.Msg) { msgs.Add(1) }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	ctx := context.Background()
	var want []string
	at := time.Unix(1700000000, 123456789)
	for i := range 500 {
		id := fmt.Sprintf("dev-%d/\n÷", i) // any UTF-8 client ID
		if err := b.Kick(ctx, "acme", id, "c1", at, ""); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("acme/%s/c1/%d/false", id, at.UnixNano()))
	}
	waitFor(t, func() bool { return len(la.list()) >= len(want) })
	if got := la.list(); !slices.Equal(got, want) {
		t.Fatalf("node a got %d kicks, want %d in order (first %q)", len(got), len(want), got[:min(3, len(got))])
	}
	if n := msgs.Load(); n == 0 || n >= int32(len(want)/2) {
		t.Fatalf("%d kicks took %d messages", len(want), n)
	}
	if got := lb.list(); len(got) != 0 {
		t.Fatalf("the sender kicked itself: %q", got)
	}

	// A kick for the holder of a session waits for it.
	if err := b.Kick(ctx, "acme", "held", "c2", at, "a"); err != nil {
		t.Fatal(err)
	}
	if got := la.list(); !slices.Contains(got, "acme/held/c2/0/true") {
		t.Fatalf("the holder was not asked and waited for: %q", got[len(got)-1])
	}
}

// TestKickAfterClose: a kick queued while the bus closes still goes out.
func TestKickAfterClose(t *testing.T) {
	a, ns := startBus(t, "a")
	b := newBus(t, ns, "b")
	var la kickLog
	a.HandleKicks(la.handle)
	b.Kick(context.Background(), "acme", "x", "c1", time.Now(), "")
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(la.list()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := la.list(); len(got) != 1 {
		t.Fatalf("kicks received: %q", got)
	}
}
