package inspect

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/natsbus"
)

// fakeSource is one edge's broker state.
type fakeSource struct {
	mu      sync.Mutex
	stats   map[string]broker.TenantStats
	clients map[string][]broker.ClientInfo
	routes  map[string][]Route
	kicked  []string
}

func (f *fakeSource) TenantStats(tn string) broker.TenantStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats[tn]
}

func (f *fakeSource) EachTenantStats(fn func(string, broker.TenantStats)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for tn, s := range f.stats {
		fn(tn, s)
	}
}

func (f *fakeSource) Clients(tn string, fn func(broker.ClientInfo) bool) {
	for _, c := range f.clients[tn] {
		if !fn(c) {
			return
		}
	}
}

func (f *fakeSource) Client(tn, id string) (broker.ClientInfo, bool) {
	for _, c := range f.clients[tn] {
		if c.ClientID == id {
			return c, true
		}
	}
	return broker.ClientInfo{}, false
}

func (f *fakeSource) Kick(tn, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.Client(tn, id); ok {
		f.kicked = append(f.kicked, tn+"/"+id)
		return true
	}
	return false
}

func (f *fakeSource) EachRoute(tn string, fn func(string, int, uint64)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.routes[tn] {
		fn(r.Filter, r.Subscribers, r.Delivered)
	}
}

func (f *fakeSource) add(tn string, d broker.TenantStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats[tn]
	s.Connections = d.Connections
	s.MessagesIn += d.MessagesIn
	s.MessagesOut += d.MessagesOut
	f.stats[tn] = s
}

func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestGather runs two responding edges, a live node that never answers
// and a dead one, and checks what the inspector merges.
func TestGather(t *testing.T) {
	nc := startNATS(t)
	ctx := t.Context()
	js, _ := jetstream.New(nc)
	nodes, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsbus.BucketNodes})
	if err != nil {
		t.Fatal(err)
	}
	for node, ttl := range map[string]string{"edge-a": "1m", "edge-b": "1m", "edge-silent": "1m", "edge-dead": "1ns"} {
		nodes.Put(ctx, node, []byte(ttl))
	}
	at := time.Now().Add(-time.Minute)
	a := &fakeSource{
		stats: map[string]broker.TenantStats{"acme": {Connections: 2, MessagesIn: 10}, "beta": {Connections: 1}},
		clients: map[string][]broker.ClientInfo{"acme": {
			{ClientID: "c1", ConnectedAt: at, Subscriptions: []broker.Subscription{{Filter: "a/#", QoS: 1}}},
			{ClientID: "dup", ConnectedAt: at},
		}},
		routes: map[string][]Route{"acme": {{Filter: "a/#", Subscribers: 1, Delivered: 5}, {Filter: "$local/l", Subscribers: 1}}},
	}
	b := &fakeSource{
		stats:   map[string]broker.TenantStats{"acme": {Connections: 1, MessagesIn: 5}},
		clients: map[string][]broker.ClientInfo{"acme": {{ClientID: "c2", ConnectedAt: at}, {ClientID: "dup", ConnectedAt: at.Add(time.Second)}}},
		routes:  map[string][]Route{"acme": {{Filter: "a/#", Subscribers: 2, Delivered: 7}}},
	}
	for node, src := range map[string]*fakeSource{"edge-a": a, "edge-b": b} {
		r, err := StartResponder(ResponderOptions{Conn: nc, NodeID: node, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	in, err := New(Options{Conn: nc, Timeout: 200 * time.Millisecond, SampleInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	in.Start(ctx)
	t.Cleanup(func() { in.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for len(in.Nodes()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ns := in.Nodes()
	if len(ns) != 4 || ns[0].ID != "edge-a" || !ns[0].Alive || ns[1].ID != "edge-b" || ns[2].ID != "edge-dead" || ns[2].Alive {
		t.Fatalf("nodes %+v", ns)
	}

	t.Run("clients", func(t *testing.T) {
		cs, truncated, err := in.Clients(ctx, "acme", 0)
		if err != nil || truncated {
			t.Fatal(err, truncated)
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.Node+":"+c.ClientID)
		}
		// dup is on both nodes (a takeover in progress): the newer wins.
		if want := []string{"edge-a:c1", "edge-b:c2", "edge-b:dup"}; !slices.Equal(ids, want) {
			t.Fatalf("clients %v, want %v", ids, want)
		}
		if cs[0].Subscriptions[0] != (Subscription{Filter: "a/#", QoS: 1}) {
			t.Fatalf("subscriptions %+v", cs[0].Subscriptions)
		}
		cs, truncated, _ = in.Clients(ctx, "acme", 2)
		if len(cs) != 2 || !truncated {
			t.Fatalf("limit 2: %d clients, truncated %v", len(cs), truncated)
		}
		if cs, _, _ := in.Clients(ctx, "beta", 0); len(cs) != 0 {
			t.Fatalf("beta's clients: %+v", cs)
		}
	})

	t.Run("client and kick", func(t *testing.T) {
		c, ok, err := in.Client(ctx, "acme", "c2")
		if err != nil || !ok || c.Node != "edge-b" {
			t.Fatalf("client c2: %+v %v %v", c, ok, err)
		}
		if _, ok, _ := in.Client(ctx, "beta", "c2"); ok {
			t.Fatal("beta sees acme's c2")
		}
		if ok, err := in.Kick(ctx, "acme", "c1"); !ok || err != nil {
			t.Fatalf("kick c1: %v %v", ok, err)
		}
		if ok, _ := in.Kick(ctx, "beta", "c1"); ok {
			t.Fatal("beta kicked acme's c1")
		}
		if !slices.Equal(a.kicked, []string{"acme/c1"}) || len(b.kicked) != 0 {
			t.Fatalf("kicked a %v b %v", a.kicked, b.kicked)
		}
	})

	t.Run("topics", func(t *testing.T) {
		ts, err := in.Topics(ctx, "acme")
		if err != nil || len(ts) != 2 || ts[1].Filter != "a/#" || ts[1].Subscribers != 3 || ts[1].Messages != 12 {
			t.Fatalf("topics %+v %v", ts, err)
		}
		// Rates come from the deliveries between calls a second apart.
		in.rates.mu.Lock()
		in.rates.m["acme"].at = in.rates.m["acme"].at.Add(-2 * time.Second)
		in.rates.mu.Unlock()
		a.mu.Lock()
		a.routes["acme"][0].Delivered += 20
		a.mu.Unlock()
		ts, _ = in.Topics(ctx, "acme")
		if r := ts[1].RatePerS; r < 9 || r > 10.1 {
			t.Fatalf("rate %v, want about 10/s", r)
		}
	})

	t.Run("stats", func(t *testing.T) {
		s, err := in.Stats(ctx, "acme")
		if err != nil || s.Connections != 3 || s.MessagesIn != 15 {
			t.Fatalf("stats %+v %v", s, err)
		}
		all, err := in.AllStats(ctx)
		if err != nil || all["acme"].Connections != 3 || all["beta"].Connections != 1 {
			t.Fatalf("all stats %+v %v", all, err)
		}
	})

	t.Run("matches", func(t *testing.T) {
		// No sessions bucket: session filters cannot be read, so the
		// inspector assumes a match rather than say "nobody" (and keeps
		// that answer for MatchTTL).
		if !in.Matches(ctx, "beta", "edge-x", []byte("zzz"), 0) {
			t.Fatal("no sessions bucket: want the safe answer true")
		}
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsbus.BucketSessions}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			topic, origin string
			want          bool
		}{
			{"a/b", "edge-x", true},
			{"b", "edge-x", false},
			{"l", "edge-x", false}, // $local on edge-a only
			{"l", "edge-a", true},
		} {
			if got := in.Matches(ctx, "acme", tc.origin, []byte(tc.topic), 1); got != tc.want {
				t.Errorf("Matches(%q from %s) = %v, want %v", tc.topic, tc.origin, got, tc.want)
			}
		}
		// A route made just now is seen: no match is checked on fresh data.
		b.mu.Lock()
		b.routes["acme"] = append(b.routes["acme"], Route{Filter: "new/+", Subscribers: 1})
		b.mu.Unlock()
		if !in.Matches(ctx, "acme", "edge-x", []byte("new/x"), 0) {
			t.Fatal("a route made before the publish is not seen")
		}
	})

	t.Run("usage", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, ss := in.Usage("acme", time.Minute)
			if len(ss) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no samples")
			}
			time.Sleep(20 * time.Millisecond)
		}
		a.add("acme", broker.TenantStats{Connections: 4, MessagesIn: 100})
		var in100 uint64
		for deadline := time.Now().Add(5 * time.Second); in100 < 100 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			in100 = 0
			_, ss := in.Usage("acme", time.Minute)
			for _, s := range ss {
				in100 += s.MessagesIn
			}
		}
		if in100 != 100 {
			t.Fatalf("messages in over the samples: %d, want 100 (deltas, counted once)", in100)
		}
		interval, ss := in.Usage("acme", time.Minute)
		if interval != 50*time.Millisecond || ss[len(ss)-1].Connections != 5 {
			t.Fatalf("interval %v, last sample %+v", interval, ss[len(ss)-1])
		}
	})
}

// TestHistory checks the usage ring's arithmetic: deltas per node, a
// restarted node's counters, a node's first answer as baseline, the ring's
// bound.
func TestHistory(t *testing.T) {
	h := newHistory(time.Second, 5*time.Second)
	t0 := time.Now().Add(-20 * time.Second)
	rep := func(node string, in uint64, conns int64) reply {
		return reply{Node: node, Tenants: map[string]Stats{"acme": {Connections: conns, MessagesIn: in}}}
	}
	h.record(t0, []reply{rep("a", 100, 1)})                                    // baseline
	h.record(t0.Add(time.Second), []reply{rep("a", 150, 2), rep("b", 40, 1)})  // b: baseline
	h.record(t0.Add(2*time.Second), []reply{rep("a", 10, 2), rep("b", 50, 1)}) // a restarted
	h.record(t0.Add(3*time.Second), []reply{{Node: "a", Tenants: map[string]Stats{"acme": {Connections: 2, MessagesIn: 10}, "new": {MessagesIn: 7}}}})
	in := &Inspector{hist: h}
	_, ss := in.Usage("acme", time.Hour)
	var got []uint64
	var conns []int64
	for _, s := range ss {
		got = append(got, s.MessagesIn)
		conns = append(conns, s.Connections)
	}
	if want := []uint64{0, 50, 20, 0}; !slices.Equal(got, want) {
		t.Fatalf("messages in %v, want %v", got, want)
	}
	if want := []int64{1, 3, 3, 2}; !slices.Equal(conns, want) {
		t.Fatalf("connections %v, want %v", conns, want)
	}
	if _, ss := in.Usage("new", time.Hour); ss[3].MessagesIn != 7 {
		t.Fatalf("a tenant new on a known node counts from 0: %+v", ss)
	}
	for i := 4; i < 20; i++ {
		h.record(t0.Add(time.Duration(i)*time.Second), nil)
	}
	if _, ss := in.Usage("acme", time.Hour); len(ss) != 5 {
		t.Fatalf("%d samples kept, want 5", len(ss))
	}
	if _, ss := in.Usage("acme", 1500*time.Millisecond); len(ss) > 2 {
		t.Fatalf("window of 1.5 s: %d samples", len(ss))
	}
}

func TestSessionID(t *testing.T) {
	// The layout natsbus uses (ARCHITECTURE.md): SHA-256(tenant, 0, client ID), 128 bits, hex.
	if got := sessionID("acme", "dev-1"); len(got) != 32 {
		t.Fatalf("session id %q", got)
	}
	if sessionID("acme", "dev-1") == sessionID("acm", "edev-1") {
		t.Fatal("tenant and client ID are not separated")
	}
	_ = context.Background
}
