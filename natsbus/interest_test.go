package natsbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// The view a node publishes by: a tenant is skipped only while every other
// live node's picture is complete and none wants it.
func TestInterestView(t *testing.T) {
	in := newInterest("self")
	now := time.Now()
	if !in.needsNATS("t1") {
		t.Fatal("before the first heartbeat everything must go to NATS")
	}
	in.setAlive(nil, now)
	if in.needsNATS("t1") {
		t.Fatal("alone: nothing needs NATS")
	}
	// A live node not heard from yet: everything.
	in.setAlive([]string{"b"}, now)
	if !in.needsNATS("t1") {
		t.Fatal("an unknown live node may want anything")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e1", Seq: 1, Full: true, On: []string{"t1"}}, now)
	if !in.needsNATS("t1") || in.needsNATS("t2") {
		t.Fatal("after b's snapshot: t1 only")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e1", Seq: 2, On: []string{"t2"}}, now)
	in.apply(&interestMsg{Node: "b", Epoch: "e1", Seq: 3, Off: []string{"t1"}}, now)
	if in.needsNATS("t1") || !in.needsNATS("t2") {
		t.Fatal("after b's changes: t2 only")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e1", Seq: 2, On: []string{"t9"}}, now) // a duplicate
	if in.needsNATS("t9") {
		t.Fatal("an old change was applied again")
	}
	// A gap: b wants everything until its next snapshot.
	in.apply(&interestMsg{Node: "b", Epoch: "e1", Seq: 5, On: []string{"t3"}}, now)
	if !in.needsNATS("t1") {
		t.Fatal("after a gap everything must go to NATS")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e1", Seq: 5, Full: true, On: []string{"t2", "t3"}}, now)
	if in.needsNATS("t1") || !in.needsNATS("t3") {
		t.Fatal("the snapshot after a gap restores the picture")
	}
	// b restarted (new epoch), first heard of through a change: unknown.
	in.apply(&interestMsg{Node: "b", Epoch: "e2", Seq: 1, On: []string{"t4"}}, now)
	if !in.needsNATS("t1") {
		t.Fatal("a restarted node's picture starts incomplete")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e2", Seq: 1, Full: true, On: []string{"t4"}}, now)
	// Our own reconnect: everything until the snapshots.
	in.reset()
	if !in.needsNATS("t1") {
		t.Fatal("after a reconnect everything must go to NATS")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e2", Seq: 1, Full: true, On: []string{"t4"}}, now)
	if in.needsNATS("t1") {
		t.Fatal("snapshot after reconnect")
	}
	// A barrier from a node never heard of makes it unknown at once.
	if ok, _ := in.confirmed("c", "x", 3); !ok || !in.needsNATS("t1") {
		t.Fatal("a barrier from an unknown node must count it as wanting everything")
	}
	// Silent nodes are forgotten; if still alive they are unknown.
	in.setAlive([]string{"b"}, now.Add(2*interestStale))
	if !in.needsNATS("t1") {
		t.Fatal("a live node silent for long must count as unknown")
	}
	in.setAlive(nil, now.Add(3*interestStale))
	if in.needsNATS("t1") {
		t.Fatal("dead silent nodes are forgotten")
	}
	// Own subscriptions on the echoing connection need NATS.
	in.add("t5", true)
	if !in.needsNATS("t5") {
		t.Fatal("own shared subscription or watch needs NATS")
	}
	in.add("t6", false)
	if in.needsNATS("t6") {
		t.Fatal("own routes on the data connection are served locally")
	}
}

// An edge publishes a tenant's live messages to NATS only while another
// node wants that tenant: a NATS client that is no node sees nothing; once
// another node subscribes (and its Sync returned) every message reaches
// it, other tenants' still do not go out, and when it unsubscribes they
// stop again.
func TestInterestSkipsNATS(t *testing.T) {
	ns := startNATS(t)
	// Edge a: data connection without echo, local delivery on.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	dc, err := nats.Connect(ns.ClientURL(), nats.NoEcho())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dc.Close)
	a, err := New(Options{Conn: nc, DataConn: dc, NodeID: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var localMu sync.Mutex
	local := 0
	if !a.LocalDelivery(func(*broker.Message) { localMu.Lock(); local++; localMu.Unlock() }) {
		t.Fatal("local delivery refused with a data connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	// A plain NATS client (no node) counts what goes out per tenant.
	sniff, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sniff.Close)
	var mu sync.Mutex
	seen := map[string]int{}
	if _, err := sniff.Subscribe("rly.msg.>", func(m *nats.Msg) {
		tn, _, _ := splitMsgSubject(m.Subject)
		mu.Lock()
		seen[tn]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	sniff.Flush()
	count := func(tn string) int { mu.Lock(); defer mu.Unlock(); return seen[tn] }
	pub := func(tn string, n int) {
		t.Helper()
		for range n {
			if err := a.Publish(&broker.Message{Tenant: tn, Topic: []byte("x/1"), Payload: []byte("p"), Origin: "a"}, nil); err != nil {
				t.Fatal(err)
			}
		}
		dc.Flush()
		sniff.Flush()
	}

	pub("t1", 10)
	if c := count("t1"); c != 0 {
		t.Fatalf("%d messages went to NATS with nobody else interested", c)
	}
	localMu.Lock()
	if local != 10 {
		t.Fatalf("local delivery got %d of 10", local)
	}
	localMu.Unlock()

	// Node b subscribes in t1.
	b := newBus(t, ns, "b")
	got := make(chan struct{}, 100)
	f, _ := topic.ParseFilter("x/#")
	r, err := b.Subscribe("t1", f, broker.ClassAll, func(*broker.Message) { got <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	pub("t1", 10)
	pub("t2", 10)
	for i := range 10 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("node b got %d of 10 messages published right after its Sync", i)
		}
	}
	if c := count("t2"); c != 0 {
		t.Fatalf("%d messages of tenant t2 went to NATS although only t1 is wanted", c)
	}

	r.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := count("t1")
		pub("t1", 1)
		if count("t1") == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still publishing t1 to NATS after the only other subscriber left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Review finding: a snapshot published late (taken before changes that a
// gap made this node count as "wants everything") must not be applied as
// complete over them, or a tenant the node subscribed to is skipped.
func TestInterestLateSnapshotAfterGap(t *testing.T) {
	in := newInterest("self")
	now := time.Now()
	in.setAlive([]string{"b"}, now)
	in.apply(&interestMsg{Node: "b", Epoch: "e", Seq: 2, Full: true}, now)
	in.apply(&interestMsg{Node: "b", Epoch: "e", Seq: 4, On: []string{"t2"}}, now) // 3 not seen yet: gap
	if !in.needsNATS("t2") {
		t.Fatal("after a gap everything must go to NATS")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e", Seq: 3, On: []string{"t1"}}, now)
	in.apply(&interestMsg{Node: "b", Epoch: "e", Seq: 2, Full: true}, now) // late
	if !in.needsNATS("t1") || !in.needsNATS("t2") {
		t.Fatal("a late snapshot erased tenants of later changes")
	}
	in.apply(&interestMsg{Node: "b", Epoch: "e", Seq: 4, Full: true, On: []string{"t1", "t2"}}, now)
	if !in.needsNATS("t1") || !in.needsNATS("t2") || in.needsNATS("t3") {
		t.Fatal("the current snapshot must restore the exact picture")
	}
}

// Announcements leave in the order of their numbers, whichever goroutine
// makes them (they are sent under the interest lock).
func TestInterestAnnouncementsInOrder(t *testing.T) {
	in := newInterest("a")
	var mu sync.Mutex
	var seqs []uint64
	in.send = func(m *interestMsg) { mu.Lock(); seqs = append(seqs, m.Seq); mu.Unlock() }
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				tn := fmt.Sprintf("t%d-%d", i, j%5)
				in.add(tn, false)
				if j%3 == 0 {
					in.sendSnapshot()
				}
				in.remove(tn, false)
			}
		}()
	}
	wg.Wait()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			t.Fatalf("announcement %d numbered %d after %d", i, seqs[i], seqs[i-1])
		}
	}
}
