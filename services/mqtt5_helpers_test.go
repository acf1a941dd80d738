package services_test

// Helpers for the MQTT 5.0 tests: paho.golang clients (github.com/eclipse/
// paho.golang) for what a real MQTT 5 client sees, and MQTT 5 additions to
// the raw client for what must be checked on the wire (several subscription
// identifiers on one PUBLISH, topic aliases, packets paho refuses to send).

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/tenant"
)

// ---------------------------------------------------------------------------
// paho.golang clients

// v5Client is a connected paho.golang client with everything it received.
type v5Client struct {
	t       testing.TB
	c       *paho.Client
	connack *paho.Connack
	in      *v5Inbox
	disc    chan *paho.Disconnect // DISCONNECTs from the server (cap 1)
}

// v5Option changes the CONNECT a paho.golang client sends.
type v5Option func(*paho.Connect)

// v5Props returns the CONNECT's properties, creating them with Request
// Problem Information on (paho's zero value would send it off).
func v5Props(cp *paho.Connect) *paho.ConnectProperties {
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{RequestProblemInfo: true}
	}
	return cp.Properties
}

// sessionExpiry sets the Session Expiry Interval.
func sessionExpiry(secs uint32) v5Option {
	return func(cp *paho.Connect) { v5Props(cp).SessionExpiryInterval = &secs }
}

// resume connects with Clean Start 0.
func resume() v5Option { return func(cp *paho.Connect) { cp.CleanStart = false } }

// keepAlive sets the Keep Alive.
func keepAlive(secs uint16) v5Option { return func(cp *paho.Connect) { cp.KeepAlive = secs } }

// receiveMaximum sets the client's Receive Maximum.
func receiveMaximum(n uint16) v5Option {
	return func(cp *paho.Connect) { v5Props(cp).ReceiveMaximum = &n }
}

// willV5 sets a will with the given delay and message expiry (0: absent).
func willV5(topic, payload string, qos byte, delay, expiry uint32) v5Option {
	return func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte(payload), QoS: qos}
		cp.WillProperties = &paho.WillProperties{}
		if delay > 0 {
			cp.WillProperties.WillDelayInterval = &delay
		}
		if expiry > 0 {
			cp.WillProperties.MessageExpiry = &expiry
		}
	}
}

// dialV5 opens a paho.golang client on a fresh TCP connection; it is closed
// when the test ends.
func dialV5(t testing.TB, addr string) *v5Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	v := &v5Client{t: t, in: newV5Inbox(), disc: make(chan *paho.Disconnect, 1)}
	v.c = paho.NewClient(paho.ClientConfig{
		Conn:              nc,
		PacketTimeout:     waitTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){v.in.handle},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case v.disc <- d:
			default:
			}
		},
		OnClientError: func(error) {},
	})
	t.Cleanup(func() {
		v.c.Disconnect(&paho.Disconnect{})
		nc.Close()
	})
	return v
}

// tryConnectV5 connects a paho.golang client (MQTT 5, Clean Start 1,
// keep-alive 30 s, Request Problem Information on) and returns it with the
// CONNACK and Connect's error (set when the CONNACK refused).
func tryConnectV5(t testing.TB, addr, id string, opts ...v5Option) (*v5Client, *paho.Connack, error) {
	t.Helper()
	v := dialV5(t, addr)
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{RequestProblemInfo: true}}
	for _, o := range opts {
		o(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	ca, err := v.c.Connect(ctx, cp)
	v.connack = ca
	return v, ca, err
}

// connectV5 connects and fails the test unless CONNACK accepts.
func connectV5(t testing.TB, addr, id string, opts ...v5Option) *v5Client {
	t.Helper()
	v, ca, err := tryConnectV5(t, addr, id, opts...)
	if err != nil {
		code := -1
		if ca != nil {
			code = int(ca.ReasonCode)
		}
		t.Fatalf("MQTT 5 client %q: connect: %v (reason code 0x%02X)", id, err, code)
	}
	return v
}

// subscribe subscribes with the given options and checks that the SUBACK
// grants each at its QoS. id is the subscription identifier (0: none).
func (v *v5Client) subscribe(id int, subs ...paho.SubscribeOptions) *paho.Suback {
	v.t.Helper()
	s := &paho.Subscribe{Subscriptions: subs}
	if id > 0 {
		s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := v.c.Subscribe(ctx, s)
	if err != nil {
		v.t.Fatalf("SUBSCRIBE %v: %v", subs, err)
	}
	for i, r := range sa.Reasons {
		if r != subs[i].QoS {
			v.t.Fatalf("SUBACK for %q: 0x%02X, want QoS %d", subs[i].Topic, r, subs[i].QoS)
		}
	}
	return sa
}

// sub subscribes to one filter at qos without options.
func (v *v5Client) sub(filter string, qos byte) {
	v.t.Helper()
	v.subscribe(0, paho.SubscribeOptions{Topic: filter, QoS: qos})
}

// publish publishes p and waits for its flow to complete; it returns the
// PUBACK / PUBREC's answer (nil for QoS 0).
func (v *v5Client) publish(p *paho.Publish) *paho.PublishResponse {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r, err := v.c.Publish(ctx, p)
	if err != nil && (r == nil || r.ReasonCode < 0x80) {
		v.t.Fatalf("PUBLISH %q: %v", p.Topic, err)
	}
	return r
}

// pub publishes a plain message.
func (v *v5Client) pub(topic string, qos byte, retain bool, payload string) {
	v.t.Helper()
	if r := v.publish(&paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)}); r != nil && r.ReasonCode >= 0x80 {
		v.t.Fatalf("PUBLISH %q refused: 0x%02X", topic, r.ReasonCode)
	}
}

// disconnect sends DISCONNECT with the given properties (nil: none).
func (v *v5Client) disconnect(props *paho.DisconnectProperties) {
	v.t.Helper()
	if err := v.c.Disconnect(&paho.Disconnect{Properties: props}); err != nil {
		v.t.Fatalf("DISCONNECT: %v", err)
	}
}

// waitOffline waits until the server has finished with the connection of
// client ID id (tenant default): its session is stored, its will handled.
// A test that reconnects or publishes right after a DISCONNECT waits for
// this, since the server reads the DISCONNECT on its own time.
func waitOffline(t testing.TB, srv *services.Server, id string) {
	t.Helper()
	waitUntil(t, id+" is offline", func() bool {
		_, on := srv.Edge().Broker().Client(tenant.DefaultSlug, id)
		return !on
	})
}

// drop closes the connection without DISCONNECT (a lost connection).
func (v *v5Client) drop() { v.c.TerminateConnectionForTest() }

// expectServerDisconnect waits for a DISCONNECT from the server and checks
// its reason code.
func (v *v5Client) expectServerDisconnect(want packet.ReasonCode) *paho.Disconnect {
	v.t.Helper()
	select {
	case d := <-v.disc:
		if d.ReasonCode != byte(want) {
			v.t.Fatalf("server DISCONNECT 0x%02X, want 0x%02X (%v)", d.ReasonCode, byte(want), want)
		}
		return d
	case <-time.After(waitTimeout):
		v.t.Fatalf("no DISCONNECT 0x%02X from the server", byte(want))
		return nil
	}
}

// v5Inbox collects the PUBLISHes a paho.golang client receives.
type v5Inbox struct {
	mu     sync.Mutex
	msgs   []*paho.Publish
	notify chan struct{} // cap 1
}

func newV5Inbox() *v5Inbox { return &v5Inbox{notify: make(chan struct{}, 1)} }

func (in *v5Inbox) handle(pr paho.PublishReceived) (bool, error) {
	in.mu.Lock()
	in.msgs = append(in.msgs, pr.Packet)
	in.mu.Unlock()
	select {
	case in.notify <- struct{}{}:
	default:
	}
	return true, nil
}

func (in *v5Inbox) all() []*paho.Publish {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

// wait waits until n messages have arrived and returns them.
func (in *v5Inbox) wait(t testing.TB, n int) []*paho.Publish {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		if got := in.all(); len(got) >= n {
			return got
		}
		select {
		case <-in.notify:
		case <-timer.C:
			got := in.all()
			t.Fatalf("timed out waiting for %d MQTT 5 messages; got %d: %v", n, len(got), topicsOf(got))
			return nil
		}
	}
}

// exactly waits for n messages and then checks that no more come within
// quietPeriod.
func (in *v5Inbox) exactly(t testing.TB, n int) []*paho.Publish {
	t.Helper()
	in.wait(t, n)
	time.Sleep(quietPeriod)
	got := in.all()
	if len(got) != n {
		t.Fatalf("got %d MQTT 5 messages, want exactly %d: %v", len(got), n, topicsOf(got))
	}
	return got
}

func topicsOf(ps []*paho.Publish) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Topic + "=" + string(p.Payload)
	}
	return out
}

// ---------------------------------------------------------------------------
// Raw MQTT 5 client

// v5Connect returns an MQTT 5 CONNECT with Clean Start and keep-alive 30 s.
func v5Connect(id string) packet.Connect {
	return packet.Connect{ProtocolVersion: packet.V5, ClientID: id, CleanStart: true, KeepAlive: 30}
}

// dialRawV5 connects a raw MQTT 5 client with CONNECT p and fails unless
// it is accepted.
func dialRawV5(t testing.TB, addr string, p packet.Connect) (*rawClient, packet.Connack) {
	t.Helper()
	c := dialRaw(t, addr)
	p.ProtocolVersion = packet.V5
	ack := c.connect(p)
	return c, ack
}

// expectDisconnect reads a DISCONNECT, checks its reason code, and waits
// for the connection to close. It returns the DISCONNECT.
func (c *rawClient) expectDisconnect(want packet.ReasonCode) packet.Disconnect {
	c.t.Helper()
	fh, body := c.skipPublishes(packet.DISCONNECT)
	var d packet.Disconnect
	if err := d.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding DISCONNECT: %v", err)
	}
	if d.ReasonCode != want {
		c.t.Fatalf("DISCONNECT %v (%q), want %v", d.ReasonCode, d.Properties.ReasonString, want)
	}
	c.expectClosed(waitTimeout)
	return d
}

// expectAck5 reads an ack of type typ for packet ID id and returns it.
func (c *rawClient) expectAck5(typ packet.Type, id uint16) packet.Ack {
	c.t.Helper()
	fh, body := c.skipPublishes(typ)
	var a packet.Ack
	if err := a.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding %v: %v", typ, err)
	}
	if a.PacketID != id {
		c.t.Fatalf("%v for packet ID %d, want %d", typ, a.PacketID, id)
	}
	return a
}

// suback5 sends SUBSCRIBE s and returns the SUBACK.
func (c *rawClient) suback5(s *packet.Subscribe) packet.Suback {
	c.t.Helper()
	c.sendPacket(s)
	fh, body := c.skipPublishes(packet.SUBACK)
	var ack packet.Suback
	if err := ack.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding SUBACK: %v", err)
	}
	if ack.PacketID != s.PacketID {
		c.t.Fatalf("SUBACK packet ID %d, want %d", ack.PacketID, s.PacketID)
	}
	return ack
}

// expectPublishWithin reads a PUBLISH within d; false if none came (the
// connection stays open).
func (c *rawClient) expectPublishWithin(d time.Duration) (packet.Publish, bool) {
	c.t.Helper()
	fh, body, err := c.read(d)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return packet.Publish{}, false
		}
		c.t.Fatalf("waiting for PUBLISH: %v", err)
	}
	if fh.Type != packet.PUBLISH {
		c.t.Fatalf("got %v, want PUBLISH", fh.Type)
	}
	var p packet.Publish
	if err := p.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding PUBLISH: %v", err)
	}
	p.Topic = slices.Clone(p.Topic)
	p.Payload = slices.Clone(p.Payload)
	p.Properties.CorrelationData = slices.Clone(p.Properties.CorrelationData)
	return p, true
}

// u32p and similar return pointers for paho.golang's optional properties.
func u32p(v uint32) *uint32 { return &v }
func u16p(v uint16) *uint16 { return &v }
func bytep(v byte) *byte    { return &v }
