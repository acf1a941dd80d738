package broker

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// discardBackbone takes every publish and does nothing with it.
type discardBackbone struct{ *memBackbone }

func (discardBackbone) Publish(_ *Message, done func(error)) error {
	if done != nil {
		done(nil)
	}
	return nil
}

// TestQoS0PathAllocs: a QoS 0 PUBLISH from a client, decoded, checked and
// handed to the backbone, and a live message from a route queued for a
// subscriber, allocate nothing (writing it: TestWritePublishAllocs).
func TestQoS0PathAllocs(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &Broker{log: lg, bb: discardBackbone{&memBackbone{}}}
	b.opts.MaxQueued = 1 << 20
	nc, peer := net.Pipe()
	defer nc.Close()
	defer peer.Close()
	c := &client{b: b, nc: nc, version: packet.V311, tenant: "default", id: "pub",
		principal: AnonymousPrincipal(), tc: &tenantCounters{}, quit: make(chan struct{}), done: make(chan struct{})}

	raw, _ := (&packet.Publish{Topic: []byte("sensors/7/temp"), Payload: make([]byte, 64)}).Encode(nil, packet.V311)
	fh := packet.FixedHeader{Type: packet.PUBLISH, Remaining: len(raw) - 2}
	body := raw[2:]
	if allocs := testing.AllocsPerRun(1000, func() {
		if err := c.handlePublish(fh, body); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("inbound QoS 0 PUBLISH: %v allocations, want 0", allocs)
	}

	f, _ := topic.ParseFilter("sensors/+/temp")
	rt := &route{f: f, b: b, subs: []routeSub{{c: c, sub: Subscription{Filter: "sensors/+/temp"}}}}
	m := &Message{Tenant: "default", Topic: []byte("sensors/7/temp"), Payload: make([]byte, 64)}
	c.pubs = make([]outItem, 0, 2000)
	if allocs := testing.AllocsPerRun(1000, func() {
		rt.deliver(m)
	}); allocs != 0 {
		t.Fatalf("live delivery to a subscriber: %v allocations, want 0", allocs)
	}
}

// TestLocalDeliveryAllocs: a message published on this edge reaches its
// local subscribers with one allocation (the copy they share), however
// many there are; matching the routes allocates nothing.
func TestLocalDeliveryAllocs(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &Broker{log: lg, bb: discardBackbone{&memBackbone{}}}
	b.opts.MaxQueued = 1 << 20
	f, _ := topic.ParseFilter("sensors/+/temp")
	rt := &route{key: routeKey{tenant: "default", filter: f.Topic}, f: f, b: b}
	for i := range 3 {
		nc, peer := net.Pipe()
		defer nc.Close()
		defer peer.Close()
		c := &client{b: b, nc: nc, version: packet.V311, tenant: "default", id: "sub" + string(rune('0'+i)),
			principal: AnonymousPrincipal(), tc: &tenantCounters{}, quit: make(chan struct{}), done: make(chan struct{})}
		c.pubs = make([]outItem, 0, 4000)
		rt.subs = append(rt.subs, routeSub{c: c, sub: Subscription{Filter: "sensors/+/temp"}})
	}
	b.local.add("default", rt)
	m := &Message{Tenant: "default", Topic: []byte("sensors/7/temp"), Payload: make([]byte, 64), paced: true}
	if allocs := testing.AllocsPerRun(1000, func() {
		b.dispatchLocal(m)
	}); allocs != 1 {
		t.Fatalf("local delivery to 3 subscribers: %v allocations, want 1", allocs)
	}
}
