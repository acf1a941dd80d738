package natsbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// startBus runs a real NATS server with JetStream on a random port and a
// started Bus on it.
func startBus(t testing.TB, node string) (*Bus, *server.Server) {
	t.Helper()
	ns := startNATS(t)
	return newBus(t, ns, node), ns
}

// startNATS runs a real NATS server with JetStream on a random port until
// the test ends.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		MaxControlLine: 256 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func newBus(t testing.TB, ns *server.Server, node string) *Bus {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := New(Options{Conn: nc, NodeID: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxControlLine: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func publish(t testing.TB, b *Bus, m *broker.Message) {
	t.Helper()
	errc := make(chan error, 1)
	if err := b.Publish(m, func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("publish not confirmed")
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	props := &packet.Properties{}
	props.Set(packet.PropContentType)
	props.ContentType = "application/json"
	props.Set(packet.PropCorrelationData)
	props.CorrelationData = []byte{1, 2, 3}
	props.Set(packet.PropPayloadFormat)
	props.PayloadFormat = 1
	props.UserProperties = []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}
	tests := []struct {
		name      string
		m         broker.Message
		withTopic bool
	}{
		{"plain", broker.Message{QoS: 1, Payload: []byte("hi"), Origin: "n1", ClientID: "c1"}, false},
		{"retained empty", broker.Message{QoS: 0, Retain: true, Origin: "n1"}, false},
		{"expiry and props", broker.Message{QoS: 2, Payload: []byte("x"), Expiry: time.Unix(1700000000, 5), Props: props}, false},
		{"with topic", broker.Message{QoS: 1, Topic: []byte("a//b"), Payload: []byte("p"), Origin: "n"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := appendEnvelope(nil, &tt.m, tt.withTopic)
			var got broker.Message
			if err := decodeEnvelope(&got, env, nil); err != nil {
				t.Fatal(err)
			}
			want := tt.m
			if !tt.withTopic {
				want.Topic = nil
			}
			if got.QoS != want.QoS || got.Retain != want.Retain || got.Origin != want.Origin || got.ClientID != want.ClientID ||
				string(got.Payload) != string(want.Payload) || string(got.Topic) != string(want.Topic) || !got.Expiry.Equal(want.Expiry) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			if (got.Props == nil) != (want.Props == nil) {
				t.Fatalf("props: got %v, want %v", got.Props, want.Props)
			}
			if want.Props != nil && (got.Props.ContentType != want.Props.ContentType || string(got.Props.CorrelationData) != "\x01\x02\x03" ||
				got.Props.PayloadFormat != 1 || !slices.Equal(got.Props.UserProperties, want.Props.UserProperties)) {
				t.Fatalf("props: got %+v", got.Props)
			}
		})
	}
	for n := range len(appendEnvelope(nil, &tests[2].m, true)) {
		var m broker.Message
		decodeEnvelope(&m, appendEnvelope(nil, &tests[2].m, true)[:n], nil) // must not panic
	}
}

func TestSessionIndex(t *testing.T) {
	x := newSessionIndex()
	x.set("t1", "s1", []broker.Subscription{{Filter: "a/+/c", QoS: 1}, {Filter: "a/b/c", QoS: 2}, {Filter: "x/#", QoS: 0}}, 0)
	x.set("t1", "s2", []broker.Subscription{{Filter: "a/#", QoS: 1}, {Filter: "$share/g/a/b/c", QoS: 2}}, 0)
	x.set("t2", "s3", []broker.Subscription{{Filter: "#", QoS: 2}}, 0)
	match := func(tenant, tp string) []string {
		var out []string
		for _, e := range x.match(nil, tenant, []byte(tp)) {
			out = append(out, fmt.Sprintf("%s:%d", e.sid, e.qos))
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		tenant, topic string
		want          []string
	}{
		{"t1", "a/b/c", []string{"s1:2", "s2:1"}}, // highest QoS per session [MQTT-3.3.5-1]
		{"t1", "a/z/c", []string{"s1:1", "s2:1"}},
		{"t1", "a", []string{"s2:1"}}, // '#' matches the parent [MQTT-4.7.1-2]
		{"t1", "x/y", nil},            // QoS 0 subscriptions are not queued
		{"t2", "a/b/c", []string{"s3:2"}},
		{"t2", "$SYS/x", nil}, // [MQTT-4.7.2-1]
		{"t3", "a/b/c", nil},  // tenants never mix
	}
	for _, tt := range tests {
		if got := match(tt.tenant, tt.topic); !slices.Equal(got, tt.want) {
			t.Errorf("match(%s, %s) = %v, want %v", tt.tenant, tt.topic, got, tt.want)
		}
	}
	x.set("t1", "s1", []broker.Subscription{{Filter: "q", QoS: 1}}, 0)
	if got := match("t1", "a/b/c"); !slices.Equal(got, []string{"s2:1"}) {
		t.Errorf("after replacing s1's subscriptions: %v", got)
	}
	x.remove("t1", "s2", 0)
	x.remove("t1", "s1", 0)
	if len(x.tenants) != 1 {
		t.Errorf("empty tenant kept: %v", x.tenants)
	}
}

func TestConsumerlessRetainedLookup(t *testing.T) {
	b, _ := startBus(t, "n1")
	ctx := context.Background()
	// More topics than one batched direct get may return (1,024), so that
	// the consumer fallback runs too; and one cleared topic.
	const n = 1100
	for i := range n {
		publish(t, b, &broker.Message{Tenant: "acme", Topic: fmt.Appendf(nil, "dev/%d/state", i), Payload: []byte("on"), Retain: true, QoS: 1})
	}
	publish(t, b, &broker.Message{Tenant: "acme", Topic: []byte("dev/7/state"), Retain: true, QoS: 1})
	publish(t, b, &broker.Message{Tenant: "other", Topic: []byte("dev/1/state"), Payload: []byte("theirs"), Retain: true})
	count := func(filter string) (int, map[string]bool) {
		seen := map[string]bool{}
		err := b.Retained(ctx, "acme", filter, func(m *broker.Message) error {
			if string(m.Payload) != "on" || !m.Retain || !topic.Match(filter, m.Topic) {
				return fmt.Errorf("unexpected retained %q %q", m.Topic, m.Payload)
			}
			seen[string(m.Topic)] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(seen), seen
	}
	if got, seen := count("dev/+/state"); got != n-1 || seen["dev/7/state"] {
		t.Errorf("dev/+/state: %d retained (cleared one present: %v), want %d", got, seen["dev/7/state"], n-1)
	}
	if got, _ := count("dev/1/#"); got != 1 {
		t.Errorf("dev/1/#: %d, want 1", got)
	}
	if got, _ := count("dev/3/state"); got != 1 {
		t.Errorf("dev/3/state: %d, want 1", got)
	}
	if got, _ := count("dev/7/state"); got != 0 {
		t.Errorf("cleared dev/7/state: %d, want 0", got)
	}
	// No consumer is left behind on the retained stream.
	info, err := b.retained.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s", info.State.Consumers, StreamRetained)
	}
}

func TestPublishRoutesToSessionQueues(t *testing.T) {
	b, ns := startBus(t, "n1")
	other := newBus(t, ns, "n2") // learns sessions through the KV watch
	ctx := context.Background()
	st := &broker.SessionState{Tenant: "acme", ClientID: "dev-1", Subscriptions: []broker.Subscription{{Filter: "cmd/#", QoS: 2}}}
	if _, err := b.SaveSession(ctx, st, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(other.index.match(nil, "acme", []byte("cmd/x"))) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("session never reached the other node's index")
		}
		time.Sleep(10 * time.Millisecond)
	}
	publish(t, other, &broker.Message{Tenant: "acme", Topic: []byte("cmd/x"), Payload: []byte("1"), QoS: 1})
	publish(t, other, &broker.Message{Tenant: "acme", Topic: []byte("cmd"), Payload: []byte("2"), QoS: 2})
	publish(t, other, &broker.Message{Tenant: "other", Topic: []byte("cmd/x"), Payload: []byte("no"), QoS: 2})
	publish(t, other, &broker.Message{Tenant: "acme", Topic: []byte("evt/x"), Payload: []byte("no"), QoS: 2})

	q, err := b.OpenQueue(ctx, st, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		topic, payload string
		qos            byte
	}{{"cmd/x", "1", 1}, {"cmd", "2", 2}} {
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := q.Next(nctx)
		cancel()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		m := d.Message()
		if string(m.Topic) != want.topic || string(m.Payload) != want.payload || m.QoS != want.qos || d.Redelivered() {
			t.Fatalf("message %d: %q %q qos %d redelivered %v", i, m.Topic, m.Payload, m.QoS, d.Redelivered())
		}
		if i == 0 {
			d.Ack()
		}
	}
	q.Close()
	// Reopened (as after a reconnect on any edge): only the unacknowledged
	// message is left, and it is marked as sent before.
	q, err = other.OpenQueue(ctx, st, false)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d, err := q.Next(nctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Message().Payload) != "2" || !d.Redelivered() {
		t.Fatalf("after reopen: %q redelivered %v, want \"2\" redelivered", d.Message().Payload, d.Redelivered())
	}
	if err := d.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	info, _ := b.queue.Info(ctx)
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages left in the queue after settling", info.State.Msgs)
	}
}

func TestOriginInterning(t *testing.T) {
	var o originTable
	id := []byte("edge-1")
	first := o.intern(id)
	if got := o.intern([]byte("edge-1")); got != first || got != "edge-1" {
		t.Fatalf("intern = %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { o.intern(id) }); n != 0 {
		t.Fatalf("interning a known node ID allocates %v times", n)
	}
	if got := (*originTable)(nil).intern(id); got != "edge-1" {
		t.Fatalf("nil table: %q", got)
	}
}

// TestNewNodeCountedAtOnce: a node that starts says hello, and the nodes
// already running count it at once — not at their next heartbeat (5 s
// with the default TTL) — so their subscription barriers wait for it.
func TestNewNodeCountedAtOnce(t *testing.T) {
	a, ns := startBus(t, "hello-a")
	if n := a.othersAlive.Load(); n != 0 {
		t.Fatalf("a alone counts %d others", n)
	}
	start := time.Now()
	newBus(t, ns, "hello-b")
	for a.othersAlive.Load() != 1 {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("a counts %d others 2 s after b started (heartbeat every %v)", a.othersAlive.Load(), a.opts.NodeTTL/3)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("a counted b %v after b's start began", time.Since(start).Round(time.Millisecond))
}
