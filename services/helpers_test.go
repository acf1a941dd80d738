package services_test

// Shared helpers for the single-node MQTT conformance tests: a real
// all-in-one Server on a random port, paho clients, a raw TCP client built
// on broker/packet for what paho cannot do, and message collectors that
// wait on channels with deadlines instead of sleeping.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/internal/testlog"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/tenant"
)

// Timeouts. They are generous for -race on a loaded CI machine; the tests
// wait on events, so a healthy run never waits for them.
const (
	// waitTimeout bounds every wait for something that must happen.
	waitTimeout = 5 * time.Second
	// quietPeriod is how long a test watches for something that must not
	// happen (a message that must not be delivered).
	quietPeriod = 300 * time.Millisecond
)

// ---------------------------------------------------------------------------
// Server

// serverOption changes the test server's configuration.
type serverOption func(*services.ServeConfig)

// withBroker changes the broker options.
func withBroker(f func(*broker.Options)) serverOption {
	return func(c *services.ServeConfig) { f(&c.Edge.Broker) }
}

// withoutAnonymous refuses clients without credentials.
func withoutAnonymous() serverOption {
	return func(c *services.ServeConfig) { c.Edge.AllowAnonymous = false }
}

// withNATSListener exposes the embedded NATS on a random port.
func withNATSListener() serverOption {
	return func(c *services.ServeConfig) { c.NATSAddr = "127.0.0.1:0" }
}

// startServer starts an all-in-one Server with an MQTT listener on a random
// local port and returns it with the listener's address. It is closed when
// the test ends.
func startServer(t testing.TB, opts ...serverOption) (*services.Server, string) {
	t.Helper()
	cfg := services.ServeConfig{
		DataDir:  t.TempDir(),
		HTTPAddr: "",
		Edge: services.EdgeConfig{
			NodeID:         "test-node",
			MQTTAddr:       "127.0.0.1:0",
			AllowAnonymous: true,
		},
		Logger: testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := services.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing server: %v", err)
		}
	})
	a := srv.Edge().MQTTAddr()
	if a == nil {
		t.Fatal("server has no MQTT listener")
	}
	return srv, a.String()
}

// testLogger returns a logger writing to t.Log at Info (testlog).
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelInfo) }

// injectMessage puts m on the server's backbone as another edge would,
// bypassing the MQTT edge (which refuses client publishes to "$" topics).
// The server must run withNATSListener.
func injectMessage(t testing.TB, srv *services.Server, m *broker.Message) {
	t.Helper()
	url := srv.NATSURL()
	if url == "" {
		t.Fatal("injectMessage needs a server started withNATSListener")
	}
	nc, err := nats.Connect(url, nats.Name("test-injector"))
	if err != nil {
		t.Fatalf("connecting to NATS: %v", err)
	}
	defer nc.Close()
	bus, err := natsbus.New(natsbus.Options{Conn: nc, NodeID: "injector", Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("natsbus.New: %v", err)
	}
	if m.Tenant == "" {
		m.Tenant = tenant.DefaultSlug
	}
	if m.QoS != 0 || m.Retain {
		t.Fatal("injectMessage sends live QoS 0 messages only")
	}
	if err := bus.Publish(m, nil); err != nil {
		t.Fatalf("injecting %q: %v", m.Topic, err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flushing NATS: %v", err)
	}
}

// waitUntil polls cond until it holds or waitTimeout passes.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// paho clients

// clientOption changes a paho client's options.
type clientOption func(*mqtt.ClientOptions)

func persistent() clientOption {
	return func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }
}

func protocol31() clientOption {
	return func(o *mqtt.ClientOptions) { o.SetProtocolVersion(3) }
}

// onMessage routes every message without a subscription handler (such as
// those of a resumed persistent session) to in.
func onMessage(in *inbox) clientOption {
	return func(o *mqtt.ClientOptions) { o.SetDefaultPublishHandler(in.handler) }
}

func withWill(topic, payload string, qos byte, retain bool) clientOption {
	return func(o *mqtt.ClientOptions) { o.SetWill(topic, payload, qos, retain) }
}

// onLost closes the returned channel when the connection is lost.
func onLost(lost chan<- error) clientOption {
	return func(o *mqtt.ClientOptions) {
		o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	}
}

// pahoOptions returns paho options for one connection attempt: MQTT 3.1.1,
// clean session, no reconnects, short timeouts.
func pahoOptions(addr, id string, opts ...clientOption) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitTimeout).
		SetWriteTimeout(waitTimeout).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(waitTimeout).
		SetOrderMatters(true)
	for _, f := range opts {
		f(o)
	}
	return o
}

// tryConnect connects a paho client and returns it with its CONNECT token
// (whose error and return code the caller checks).
func tryConnect(t testing.TB, addr, id string, opts ...clientOption) (mqtt.Client, *mqtt.ConnectToken) {
	t.Helper()
	c := mqtt.NewClient(pahoOptions(addr, id, opts...))
	tok := c.Connect()
	if !tok.WaitTimeout(2 * waitTimeout) {
		t.Fatalf("client %q: CONNECT timed out", id)
	}
	t.Cleanup(func() {
		if c.IsConnectionOpen() {
			c.Disconnect(50)
		}
	})
	return c, tok.(*mqtt.ConnectToken)
}

// connect connects a paho client and fails the test if it is refused.
func connect(t testing.TB, addr, id string, opts ...clientOption) mqtt.Client {
	t.Helper()
	c, tok := tryConnect(t, addr, id, opts...)
	if err := tok.Error(); err != nil {
		t.Fatalf("client %q: connect: %v (return code %d)", id, err, tok.ReturnCode())
	}
	return c
}

// connectSession connects and returns the CONNACK's Session Present flag.
func connectSession(t testing.TB, addr, id string, opts ...clientOption) (mqtt.Client, bool) {
	t.Helper()
	c, tok := tryConnect(t, addr, id, opts...)
	if err := tok.Error(); err != nil {
		t.Fatalf("client %q: connect: %v", id, err)
	}
	return c, tok.SessionPresent()
}

// disconnect sends DISCONNECT and closes the client.
func disconnect(c mqtt.Client) { c.Disconnect(100) }

// subscribe subscribes c to filter and checks that the SUBACK grants qos.
// A nil inbox leaves messages to the client's default handler (needed for
// filters paho cannot match, such as "$local/…", and for overlapping
// filters, since paho hands a message to every matching handler).
func subscribe(t testing.TB, c mqtt.Client, filter string, qos byte, in *inbox) {
	t.Helper()
	var h mqtt.MessageHandler
	if in != nil {
		h = in.handler
	}
	tok := c.Subscribe(filter, qos, h)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("SUBSCRIBE %q timed out", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("SUBSCRIBE %q: %v", filter, err)
	}
	// paho keys the result by the filter without a "$share/<group>/" or
	// "$queue/" prefix.
	key := filter
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			key = f
		}
	}
	key = strings.TrimPrefix(key, "$queue/")
	got, ok := tok.(*mqtt.SubscribeToken).Result()[key]
	if !ok || got != qos {
		t.Fatalf("SUBACK for %q granted %d (present %v), want %d", filter, got, ok, qos)
	}
}

// publish publishes and waits for the QoS flow to complete (PUBACK or
// PUBCOMP; for QoS 0 until the packet is written).
func publish(t testing.TB, c mqtt.Client, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatalf("PUBLISH %q QoS %d timed out", topic, qos)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("PUBLISH %q QoS %d: %v", topic, qos, err)
	}
}

// ---------------------------------------------------------------------------
// Collecting messages

// received is one delivered message as a test compares it.
type received struct {
	Topic    string
	Payload  string
	QoS      byte
	Retained bool
}

func (r received) String() string {
	return fmt.Sprintf("%s=%q(q%d,r%v)", r.Topic, r.Payload, r.QoS, r.Retained)
}

// inbox collects the messages of one or more subscriptions.
type inbox struct {
	mu     sync.Mutex
	msgs   []received
	notify chan struct{} // cap 1
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1)} }

func (in *inbox) handler(_ mqtt.Client, m mqtt.Message) {
	in.add(received{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retained: m.Retained()})
}

func (in *inbox) add(r received) {
	in.mu.Lock()
	in.msgs = append(in.msgs, r)
	in.mu.Unlock()
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// all returns a copy of what arrived so far.
func (in *inbox) all() []received {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

// wait waits until at least n messages arrived and returns them all; it
// fails the test, listing what arrived, after waitTimeout.
func (in *inbox) wait(t testing.TB, n int) []received {
	t.Helper()
	return in.waitFor(t, n, waitTimeout)
}

func (in *inbox) waitFor(t testing.TB, n int, d time.Duration) []received {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if got := in.all(); len(got) >= n {
			return got
		}
		select {
		case <-in.notify:
		case <-timer.C:
			got := in.all()
			t.Fatalf("timed out after %v waiting for %d messages; got %d: %v", d, n, len(got), got)
			return nil
		}
	}
}

// exactly waits for n messages, then watches for quietPeriod and fails if
// any more arrive.
func (in *inbox) exactly(t testing.TB, n int) []received {
	t.Helper()
	return in.exactlyWithin(t, n, waitTimeout)
}

// exactlyWithin is exactly with a longer wait, for bulk deliveries.
func (in *inbox) exactlyWithin(t testing.TB, n int, d time.Duration) []received {
	t.Helper()
	in.waitFor(t, n, d)
	time.Sleep(quietPeriod)
	got := in.all()
	if len(got) != n {
		t.Fatalf("got %d messages, want exactly %d: %v", len(got), n, got)
	}
	return got
}

// none fails if any message arrives within quietPeriod.
func (in *inbox) none(t testing.TB) {
	t.Helper()
	time.Sleep(quietPeriod)
	if got := in.all(); len(got) != 0 {
		t.Fatalf("got %d messages, want none: %v", len(got), got)
	}
}

// sortedStrings returns the messages formatted and sorted, for comparing
// sets of deliveries.
func sortedStrings(msgs []received) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.String()
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------------
// Raw MQTT client

// encoder is every packet type's Encode method.
type encoder interface {
	Encode(dst []byte, version byte) ([]byte, error)
}

// rawClient speaks MQTT over a plain TCP connection, packet by packet, for
// flows and malformed input that paho hides or refuses.
type rawClient struct {
	t       testing.TB
	nc      net.Conn
	rd      *packet.Reader
	version byte
}

// dialRaw opens a TCP connection to addr; it is closed when the test ends.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, rd: packet.NewReader(bufio.NewReader(nc), 0), version: packet.V311}
}

// writeBytes writes b and returns the error, which tests of bad input
// may expect (the server may already have closed).
func (c *rawClient) writeBytes(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
	_, err := c.nc.Write(b)
	return err
}

// send writes b and fails the test on error.
func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if err := c.writeBytes(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// encode encodes p for the client's protocol version.
func (c *rawClient) encode(p encoder) []byte {
	c.t.Helper()
	b, err := p.Encode(nil, c.version)
	if err != nil {
		c.t.Fatalf("encoding %T: %v", p, err)
	}
	return b
}

// sendPacket encodes and writes p.
func (c *rawClient) sendPacket(p encoder) { c.t.Helper(); c.send(c.encode(p)) }

// read reads the next packet within d.
func (c *rawClient) read(d time.Duration) (packet.FixedHeader, []byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	return c.rd.ReadPacket()
}

// expect reads the next packet and fails unless it has type typ.
func (c *rawClient) expect(typ packet.Type) (packet.FixedHeader, []byte) {
	c.t.Helper()
	fh, body, err := c.read(waitTimeout)
	if err != nil {
		c.t.Fatalf("waiting for %v: %v", typ, err)
	}
	if fh.Type != typ {
		c.t.Fatalf("got %v (flags %04b, %d bytes), want %v", fh.Type, fh.Flags, fh.Remaining, typ)
	}
	return fh, body
}

// expectAck reads an ack of type typ and checks its packet ID and, for
// PUBREL, its reserved flags [MQTT-3.6.1-1].
func (c *rawClient) expectAck(typ packet.Type, id uint16) {
	c.t.Helper()
	fh, body := c.expect(typ)
	var a packet.Ack
	if err := a.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding %v: %v", typ, err)
	}
	if a.PacketID != id {
		c.t.Fatalf("%v for packet ID %d, want %d", typ, a.PacketID, id)
	}
}

// expectPublish reads a PUBLISH and decodes it; the topic and payload are
// copied.
func (c *rawClient) expectPublish() packet.Publish {
	c.t.Helper()
	fh, body := c.expect(packet.PUBLISH)
	var p packet.Publish
	if err := p.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding PUBLISH: %v", err)
	}
	p.Topic = slices.Clone(p.Topic)
	p.Payload = slices.Clone(p.Payload)
	return p
}

// expectNothing fails if a packet arrives within d (the connection must
// stay open and silent).
func (c *rawClient) expectNothing(d time.Duration) {
	c.t.Helper()
	fh, _, err := c.read(d)
	if err == nil {
		c.t.Fatalf("unexpected %v (flags %04b)", fh.Type, fh.Flags)
	}
	if !isTimeout(err) {
		c.t.Fatalf("connection ended: %v", err)
	}
}

// connack sends CONNECT p and returns the CONNACK.
func (c *rawClient) connack(p packet.Connect) packet.Connack {
	c.t.Helper()
	if p.ProtocolVersion == 0 {
		p.ProtocolVersion = c.version
	}
	c.version = p.ProtocolVersion
	c.sendPacket(&p)
	fh, body := c.expect(packet.CONNACK)
	var ack packet.Connack
	if err := ack.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding CONNACK: %v", err)
	}
	return ack
}

// connect sends CONNECT p and fails unless it is accepted.
func (c *rawClient) connect(p packet.Connect) packet.Connack {
	c.t.Helper()
	ack := c.connack(p)
	if ack.ReasonCode != packet.ConnAccepted {
		c.t.Fatalf("CONNACK return code 0x%02X, want 0", byte(ack.ReasonCode))
	}
	return ack
}

// ping checks that the connection is alive: PINGREQ gets PINGRESP.
func (c *rawClient) ping() {
	c.t.Helper()
	c.send(packet.AppendPingreq(nil))
	c.expect(packet.PINGRESP)
}

// expectClosed fails unless the server closes the connection within d
// without sending another packet. It returns how long that took.
func (c *rawClient) expectClosed(d time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	fh, _, err := c.read(d)
	took := time.Since(start)
	switch {
	case err == nil:
		c.t.Fatalf("got %v (flags %04b, %d bytes), want the connection closed", fh.Type, fh.Flags, fh.Remaining)
	case isTimeout(err):
		c.t.Fatalf("connection still open after %v", d)
	case !isClosed(err):
		c.t.Fatalf("read: %v, want the connection closed", err)
	}
	return took
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isClosed reports whether err is the peer closing the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// publishPacket returns a PUBLISH (MQTT 3.1.1).
func publishPacket(topic string, qos byte, id uint16, payload string) *packet.Publish {
	return &packet.Publish{Topic: []byte(topic), QoS: qos, PacketID: id, Payload: []byte(payload)}
}

// subscribePacket returns a SUBSCRIBE with one filter per (filter, QoS).
func subscribePacket(id uint16, subs ...packet.Subscription) *packet.Subscribe {
	return &packet.Subscribe{PacketID: id, Subscriptions: subs}
}

// rawSubscribe subscribes and checks that SUBACK grants exactly want.
func (c *rawClient) rawSubscribe(id uint16, want []packet.ReasonCode, subs ...packet.Subscription) {
	c.t.Helper()
	c.sendPacket(subscribePacket(id, subs...))
	fh, body := c.expect(packet.SUBACK)
	var ack packet.Suback
	if err := ack.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding SUBACK: %v", err)
	}
	if ack.PacketID != id {
		c.t.Fatalf("SUBACK packet ID %d, want %d", ack.PacketID, id)
	}
	if !slices.Equal(ack.ReasonCodes, want) {
		c.t.Fatalf("SUBACK return codes %v, want %v", ack.ReasonCodes, want)
	}
}
