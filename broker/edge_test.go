package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// ---------------------------------------------------------------------------
// An edge on an in-memory backbone (clean sessions only), and raw MQTT
// clients, for tests of the connection machinery: goroutines, buffers,
// ordering, keep-alive and shutdown.

// memBackbone is one edge's backbone: every publish goes to the broker's
// local delivery (Router.LocalDelivery), on the publisher's goroutine;
// with noLocal it goes to the matching routes instead, with a copy of
// the message (as NATS would).
type memBackbone struct {
	noLocal bool
	local   Handler
	mu      sync.Mutex
	routes  map[*memRoute]struct{}
}

func (bb *memBackbone) LocalDelivery(h Handler) bool {
	if bb.noLocal {
		return false
	}
	bb.local = h
	return true
}

type memRoute struct {
	bb     *memBackbone
	tenant string
	filter string
	h      Handler
}

func (r *memRoute) Close() error {
	r.bb.mu.Lock()
	delete(r.bb.routes, r)
	r.bb.mu.Unlock()
	return nil
}

func (bb *memBackbone) Publish(m *Message, done func(error)) error {
	if bb.local != nil {
		bb.local(m)
		if done != nil {
			done(nil)
		}
		return nil
	}
	bb.mu.Lock()
	var hs []Handler
	for r := range bb.routes {
		if r.tenant == m.Tenant && topic.Match(r.filter, m.Topic) {
			hs = append(hs, r.h)
		}
	}
	bb.mu.Unlock()
	for _, h := range hs {
		c := *m
		c.Topic = append([]byte(nil), m.Topic...)
		c.Payload = append([]byte(nil), m.Payload...)
		h(&c)
	}
	if done != nil {
		done(nil)
	}
	return nil
}

func (bb *memBackbone) Subscribe(tenant string, f topic.Filter, _ Class, h Handler) (Route, error) {
	r := &memRoute{bb: bb, tenant: tenant, filter: f.Topic, h: h}
	bb.mu.Lock()
	if bb.routes == nil {
		bb.routes = make(map[*memRoute]struct{})
	}
	bb.routes[r] = struct{}{}
	bb.mu.Unlock()
	return r, nil
}

func (*memBackbone) Sync(context.Context) error                                           { return nil }
func (*memBackbone) Retained(context.Context, string, string, func(*Message) error) error { return nil }
func (*memBackbone) LoadSession(context.Context, string, string) (*SessionState, uint64, error) {
	return nil, 0, ErrSessionNotFound
}
func (*memBackbone) SaveSession(context.Context, *SessionState, uint64) (uint64, error) {
	return 0, ErrBackboneUnavailable
}
func (*memBackbone) DeleteSession(context.Context, string, string) error { return nil }
func (*memBackbone) OpenQueue(context.Context, *SessionState, bool) (Queue, error) {
	return nil, ErrBackboneUnavailable
}
func (*memBackbone) MarkQoS2(context.Context, string, string, QoS2Kind, uint16, uint64, bool) error {
	return nil
}
func (*memBackbone) QoS2(context.Context, string, string) (QoS2State, error) { return QoS2State{}, nil }
func (*memBackbone) PutWill(context.Context, *Will) error                    { return nil }
func (*memBackbone) DeleteWill(context.Context, string, string, string) error {
	return nil
}
func (*memBackbone) CancelWill(context.Context, string, string, string, string) error { return nil }
func (*memBackbone) FireWill(context.Context, string, string, string, string, func(*Message) bool) (bool, error) {
	return false, nil
}
func (*memBackbone) HandleKicks(KickFunc) {}
func (*memBackbone) Kick(context.Context, string, string, string, time.Time, string) error {
	return nil
}
func (*memBackbone) Connected(string, int)  {}
func (*memBackbone) Connections(string) int { return 0 }

// startEdge serves a broker on a loopback port and returns it with its
// address; it is closed at the end of the test.
func startEdge(tb testing.TB, opts Options) (*Broker, string) {
	tb.Helper()
	opts.NodeID = "test"
	opts.Backbone = &memBackbone{}
	opts.Authenticator = Anonymous{Allow: true}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		b.Serve(l)
	}()
	tb.Cleanup(func() {
		b.Close()
		<-served
	})
	return b, l.Addr().String()
}

// rawClient is a test MQTT client speaking raw packets.
type rawClient struct {
	tb      testing.TB
	conn    net.Conn
	rd      *packet.Reader
	version byte
}

// dialEdge connects a client with the given version, client ID and
// keep-alive (seconds) and reads its CONNACK.
func dialEdge(tb testing.TB, addr string, version byte, id string, keepAlive uint16) *rawClient {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	c := &rawClient{tb: tb, conn: conn, rd: packet.NewReader(bufio.NewReader(conn), 0), version: version}
	name := "MQTT"
	if version == packet.V31 {
		name = "MQIsdp"
	}
	c.send(&packet.Connect{ProtocolName: name, ProtocolVersion: version, CleanStart: true, KeepAlive: keepAlive, ClientID: id})
	fh, body := c.read()
	var ack packet.Connack
	if fh.Type != packet.CONNACK || ack.Decode(version, fh, body) != nil || ack.ReasonCode != packet.Success {
		tb.Fatalf("%s: CONNACK %v %+v", id, fh.Type, ack)
	}
	return c
}

func (c *rawClient) send(p interface {
	Encode([]byte, byte) ([]byte, error)
}) {
	c.tb.Helper()
	b, err := p.Encode(nil, c.version)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.write(b)
}

func (c *rawClient) write(b []byte) {
	c.tb.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.tb.Fatal(err)
	}
}

func (c *rawClient) read() (packet.FixedHeader, []byte) {
	c.tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		c.tb.Fatal(err)
	}
	return fh, body
}

// waitGoroutines waits until at most n goroutines run, not counting the
// broker's parked workers (workers.go).
func waitGoroutines(tb testing.TB, b *Broker, n int, what string) {
	tb.Helper()
	count := func() int { return runtime.NumGoroutine() - int(b.work.parked.Load()) }
	deadline := time.Now().Add(5 * time.Second)
	for count() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			tb.Fatalf("%s: %d goroutines, want at most %d\n%s", what, count(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleConnectionGoroutines: an idle connection has one goroutine (its
// reader, parked in the poller without a buffer); the writer runs only
// while something is sent — a PINGRESP — and is gone afterwards.
func TestIdleConnectionGoroutines(t *testing.T) {
	b, addr := startEdge(t, Options{})
	time.Sleep(20 * time.Millisecond)
	base := runtime.NumGoroutine()
	const n = 50
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialEdge(t, addr, packet.V311, fmt.Sprint("idle-", i), 0)
	}
	waitGoroutines(t, b, base+n, "idle after CONNACK")
	for _, c := range clients {
		c.write(packet.AppendPingreq(nil))
	}
	for _, c := range clients {
		if fh, _ := c.read(); fh.Type != packet.PINGRESP {
			t.Fatalf("got %v, want PINGRESP", fh.Type)
		}
	}
	waitGoroutines(t, b, base+n, "idle after PINGRESP")
	for _, c := range clients {
		c.conn.Close()
	}
	waitGoroutines(t, b, base, "after the clients left")
}

// TestQoS1Order: a publisher pipelines QoS 1 messages while a subscriber
// acknowledges as it goes; every PUBACK comes in order [MQTT-4.6.0-2] and
// the subscriber gets every message once, in order, with at most the
// inflight window outstanding — while the writers of both come and go.
func TestQoS1Order(t *testing.T) {
	const total = 3000
	_, addr := startEdge(t, Options{MaxInflight: 8})
	sub := dialEdge(t, addr, packet.V5, "sub", 0)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "order/#", QoS: 1}}})
	if fh, _ := sub.read(); fh.Type != packet.SUBACK {
		t.Fatalf("got %v, want SUBACK", fh.Type)
	}
	pub := dialEdge(t, addr, packet.V311, "pub", 0)

	errc := make(chan error, 2)
	go func() { // the publisher's writes
		var buf []byte
		for i := range total {
			var payload [8]byte
			binary.BigEndian.PutUint64(payload[:], uint64(i))
			buf, _ = (&packet.Publish{QoS: 1, PacketID: uint16(i%60000 + 1), Topic: []byte("order/a"), Payload: payload[:]}).Encode(buf[:0], packet.V311)
			if _, err := pub.conn.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	go func() { // the publisher's PUBACKs
		for i := range total {
			pub.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			fh, body, err := pub.rd.ReadPacket()
			if err != nil {
				errc <- err
				return
			}
			var a packet.Ack
			if fh.Type != packet.PUBACK || a.Decode(packet.V311, fh, body) != nil || a.PacketID != uint16(i%60000+1) {
				errc <- fmt.Errorf("PUBACK %d: got %v for packet %d", i, fh.Type, a.PacketID)
				return
			}
		}
		errc <- nil
	}()
	for i := range total {
		fh, body := sub.read()
		var p packet.Publish
		if fh.Type != packet.PUBLISH || p.Decode(packet.V5, fh, body) != nil {
			t.Fatalf("message %d: got %v", i, fh.Type)
		}
		if got := binary.BigEndian.Uint64(p.Payload); got != uint64(i) || p.QoS != 1 {
			t.Fatalf("message %d: got message %d at QoS %d", i, got, p.QoS)
		}
		sub.send(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestKeepAliveAndShutdown: a silent client is closed after 1.5 × its
// keep-alive with DISCONNECT 0x8D (MQTT 5) [MQTT-3.1.2-24]; at Close, the
// others get DISCONNECT 0x8B (MQTT 5) or just the end of the connection.
func TestKeepAliveAndShutdown(t *testing.T) {
	b, addr := startEdge(t, Options{})
	silent := dialEdge(t, addr, packet.V5, "silent", 1)
	v5 := dialEdge(t, addr, packet.V5, "v5", 0)
	v3 := dialEdge(t, addr, packet.V311, "v3", 0)

	start := time.Now()
	fh, body := silent.read()
	var d packet.Disconnect
	if fh.Type != packet.DISCONNECT || d.Decode(packet.V5, fh, body) != nil || d.ReasonCode != packet.KeepAliveTimeout {
		t.Fatalf("silent client: got %v %+v, want DISCONNECT 0x8D", fh.Type, d)
	}
	if el := time.Since(start); el < time.Second || el > 3*time.Second {
		t.Fatalf("closed after %v, want about 1.5 s", el)
	}

	go b.Close()
	fh, body = v5.read()
	if fh.Type != packet.DISCONNECT || d.Decode(packet.V5, fh, body) != nil || d.ReasonCode != packet.ServerShuttingDown {
		t.Fatalf("v5 client: got %v %+v, want DISCONNECT 0x8B", fh.Type, d)
	}
	v3.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := v3.rd.ReadPacket(); err != io.EOF {
		t.Fatalf("3.1.1 client: %v, want the connection closed", err)
	}
}

// TestKickOnlyOlder: another edge's takeover broadcast closes the local
// connection of its client ID only if that one connected first — a
// broadcast that arrives late must not close a newer connection.
func TestKickOnlyOlder(t *testing.T) {
	b, addr := startEdge(t, Options{})
	before := time.Now()
	c := dialEdge(t, addr, packet.V5, "dev", 0)
	if b.kickLocal("default", "dev", "elsewhere", before, false) {
		t.Fatal("a kick from a connection older than the local one closed it")
	}
	c.write(packet.AppendPingreq(nil))
	if fh, _ := c.read(); fh.Type != packet.PINGRESP {
		t.Fatalf("got %v, want PINGRESP", fh.Type)
	}
	if !b.kickLocal("default", "dev", "elsewhere", time.Now(), true) {
		t.Fatal("a kick from a newer connection left the local one open")
	}
	fh, body := c.read()
	var d packet.Disconnect
	if fh.Type != packet.DISCONNECT || d.Decode(packet.V5, fh, body) != nil || d.ReasonCode != packet.SessionTakenOver {
		t.Fatalf("got %v %+v, want DISCONNECT 0x8E", fh.Type, d)
	}
}

// TestYieldingConnections: connections that publish and subscribe go on
// reading on fresh goroutines when they go idle (one goroutine each
// still), keep working, and keep their keep-alive.
func TestYieldingConnections(t *testing.T) {
	b, addr := startEdge(t, Options{})
	time.Sleep(20 * time.Millisecond)
	base := runtime.NumGoroutine()
	sub := dialEdge(t, addr, packet.V311, "sub", 0)
	pub := dialEdge(t, addr, packet.V5, "pub", 1)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "y/#"}}})
	if fh, _ := sub.read(); fh.Type != packet.SUBACK {
		t.Fatalf("got %v, want SUBACK", fh.Type)
	}
	for i := range 20 {
		pub.send(&packet.Publish{Topic: []byte(fmt.Sprint("y/", i)), Payload: []byte("x")})
		if fh, _ := sub.read(); fh.Type != packet.PUBLISH {
			t.Fatalf("got %v, want PUBLISH", fh.Type)
		}
		time.Sleep(5 * time.Millisecond) // idle between messages: the readers yield
	}
	waitGoroutines(t, b, base+2, "idle after yields")
	// The publisher now stays silent: closed after 1.5 × its keep-alive.
	fh, body := pub.read()
	var d packet.Disconnect
	if fh.Type != packet.DISCONNECT || d.Decode(packet.V5, fh, body) != nil || d.ReasonCode != packet.KeepAliveTimeout {
		t.Fatalf("got %v %+v, want DISCONNECT 0x8D", fh.Type, d)
	}
}
