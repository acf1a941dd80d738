package services_test

// MQTT 5.0 (OASIS Standard, 2019) end to end against a real Relay: one test
// per feature, with paho.golang where a real MQTT 5 client shows it and the
// raw client where the wire must be checked. Spec rules are cited as
// [MQTT-x.y.z-n]. ARCHITECTURE.md ("MQTT 5.0 features") maps every feature
// to its test.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/tenant"
)

// ---------------------------------------------------------------------------
// CONNACK: limits, server keep alive, assigned client identifier

// TestMQTT5Connack checks what CONNACK tells an MQTT 5 client: the server's
// Receive Maximum, Maximum Packet Size and Topic Alias Maximum; Server Keep
// Alive when the server caps the keep-alive (MQTT 5 §3.2.2.3.14); the
// Session Expiry Interval in force when the server caps it (§3.2.2.3.2); an
// Assigned Client Identifier for an empty one [MQTT-3.2.2-16]; and that
// Request Response Information is honoured by sending none (optional).
func TestMQTT5Connack(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, withBroker(func(o *broker.Options) {
		o.MaxKeepAlive = 20 * time.Second
		o.SessionExpiry = time.Hour
		o.MaxInflight = 16
		o.MaxPacketSize = 64 << 10
	}))

	t.Run("limits and server keep alive", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "ca-limits", keepAlive(60))
		p := v.connack.Properties
		if p == nil || p.ReceiveMaximum == nil || *p.ReceiveMaximum != 16 {
			t.Fatalf("Receive Maximum %v, want 16", p.ReceiveMaximum)
		}
		if p.MaximumPacketSize == nil || *p.MaximumPacketSize != 64<<10 {
			t.Fatalf("Maximum Packet Size %v, want 65536", p.MaximumPacketSize)
		}
		if p.TopicAliasMaximum == nil || *p.TopicAliasMaximum == 0 {
			t.Fatalf("Topic Alias Maximum %v, want > 0", p.TopicAliasMaximum)
		}
		if p.ServerKeepAlive == nil || *p.ServerKeepAlive != 20 {
			t.Fatalf("Server Keep Alive %v, want 20 (the client asked 60)", p.ServerKeepAlive)
		}
		if p.MaximumQoS != nil {
			t.Fatalf("Maximum QoS %d sent; absent means 2 [MQTT-3.2.2-9]", *p.MaximumQoS)
		}
		if !p.WildcardSubAvailable || !p.SubIDAvailable || !p.SharedSubAvailable || !p.RetainAvailable {
			t.Fatalf("a feature is announced unavailable: %+v", p)
		}
	})
	t.Run("server keep alive for keep-alive 0", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "ca-ka0", keepAlive(0))
		if ka := v.connack.Properties.ServerKeepAlive; ka == nil || *ka != 20 {
			t.Fatalf("Server Keep Alive %v, want 20", ka)
		}
	})
	t.Run("within limits nothing is overridden", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "ca-ok", keepAlive(10), sessionExpiry(60))
		if p := v.connack.Properties; p.ServerKeepAlive != nil || p.SessionExpiryInterval != nil {
			t.Fatalf("CONNACK overrides keep-alive %v / session expiry %v", p.ServerKeepAlive, p.SessionExpiryInterval)
		}
	})
	t.Run("session expiry capped", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "ca-never", sessionExpiry(0xFFFFFFFF))
		if se := v.connack.Properties.SessionExpiryInterval; se == nil || *se != 3600 {
			t.Fatalf("Session Expiry Interval %v, want 3600 (the server's maximum)", se)
		}
	})
	t.Run("assigned client identifier", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "")
		id := v.connack.Properties.AssignedClientID
		if id == "" {
			t.Fatal("no Assigned Client Identifier for an empty client ID [MQTT-3.2.2-16]")
		}
		// The identifier is the connection's: a second client taking it
		// takes the connection over.
		connectV5(t, addr, id)
		v.expectServerDisconnect(packet.SessionTakenOver)
	})
	t.Run("request response information", func(t *testing.T) {
		t.Parallel()
		p := v5Connect("ca-rri")
		p.Properties.Set(packet.PropRequestResponseInfo)
		p.Properties.RequestResponseInfo = 1
		c, ack := dialRawV5(t, addr, p)
		if ack.Properties.Has(packet.PropResponseInfo) {
			t.Fatalf("response information %q: fine, but this test expects none", ack.Properties.ResponseInfo)
		}
		c.ping()
	})
}

// ---------------------------------------------------------------------------
// Reason codes and reason strings

// TestMQTT5ReasonCodes: refusals carry MQTT 5 reason codes and, when the
// client asks for problem information, reason strings: PUBACK/PUBREC 0x87
// for a topic the client may not publish to, SUBACK 0x87 / 0x8F, UNSUBACK
// 0x11, CONNACK 0x97 over a quota. With Request Problem Information 0 the
// reason strings stay away [MQTT-3.1.2-29].
func TestMQTT5ReasonCodes(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)

	t.Run("with problem information", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRawV5(t, addr, v5Connect("rc-1"))
		c.sendPacket(&packet.Publish{Topic: []byte("$internal/x"), QoS: 1, PacketID: 1, Payload: []byte("x")})
		if a := c.expectAck5(packet.PUBACK, 1); a.ReasonCode != packet.NotAuthorized || a.Properties.ReasonString == "" {
			t.Fatalf("PUBACK %v %q, want 0x87 with a reason string", a.ReasonCode, a.Properties.ReasonString)
		}
		c.sendPacket(&packet.Publish{Topic: []byte("$internal/x"), QoS: 2, PacketID: 2, Payload: []byte("x")})
		if a := c.expectAck5(packet.PUBREC, 2); a.ReasonCode != packet.NotAuthorized {
			t.Fatalf("PUBREC %v, want 0x87", a.ReasonCode)
		}
		ack := c.suback5(&packet.Subscribe{PacketID: 3, Subscriptions: []packet.Subscription{
			{Filter: "$other/#", QoS: 1}, {Filter: "rc/ok", QoS: 1}, {Filter: "rc/#/bad", QoS: 0},
		}})
		want := []packet.ReasonCode{packet.NotAuthorized, packet.GrantedQoS1, packet.TopicFilterInvalid}
		if !slices.Equal(ack.ReasonCodes, want) || ack.Properties.ReasonString == "" {
			t.Fatalf("SUBACK %v %q, want %v with a reason string", ack.ReasonCodes, ack.Properties.ReasonString, want)
		}
		c.sendPacket(&packet.Unsubscribe{PacketID: 4, Filters: []string{"rc/none", "rc/ok"}})
		fh, body := c.expect(packet.UNSUBACK)
		var ua packet.Unsuback
		if err := ua.Decode(packet.V5, fh, body); err != nil {
			t.Fatal(err)
		}
		if want := []packet.ReasonCode{packet.NoSubscriptionExisted, packet.Success}; !slices.Equal(ua.ReasonCodes, want) {
			t.Fatalf("UNSUBACK %v, want %v", ua.ReasonCodes, want)
		}
	})
	t.Run("without problem information", func(t *testing.T) {
		t.Parallel()
		p := v5Connect("rc-2")
		p.Properties.Set(packet.PropRequestProblemInfo)
		p.Properties.RequestProblemInfo = 0
		c, _ := dialRawV5(t, addr, p)
		c.sendPacket(&packet.Publish{Topic: []byte("$internal/x"), QoS: 1, PacketID: 1, Payload: []byte("x")})
		if a := c.expectAck5(packet.PUBACK, 1); a.ReasonCode != packet.NotAuthorized || a.Properties.Has(packet.PropReasonString) {
			t.Fatalf("PUBACK %v %q, want 0x87 without reason string [MQTT-3.1.2-29]", a.ReasonCode, a.Properties.ReasonString)
		}
		ack := c.suback5(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "$other/#", QoS: 1}}})
		if ack.ReasonCodes[0] != packet.NotAuthorized || ack.Properties.Has(packet.PropReasonString) {
			t.Fatalf("SUBACK %v %q, want 0x87 without reason string", ack.ReasonCodes, ack.Properties.ReasonString)
		}
	})
	t.Run("paho sees the codes", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "rc-paho")
		r := v.publish(&paho.Publish{Topic: "$internal/y", QoS: 1, Payload: []byte("x")})
		if r == nil || r.ReasonCode != byte(packet.NotAuthorized) || r.Properties == nil || r.Properties.ReasonString == "" {
			t.Fatalf("PUBACK %+v, want 0x87 with a reason string", r)
		}
	})
	t.Run("quota exceeded", func(t *testing.T) {
		t.Parallel()
		_, small := startServer(t, withBroker(func(o *broker.Options) { o.MaxConnections = 1 }))
		connectV5(t, small, "rc-q1")
		_, ca, err := tryConnectV5(t, small, "rc-q2")
		if err == nil || ca == nil || ca.ReasonCode != byte(packet.QuotaExceeded) {
			t.Fatalf("second connection: %v, CONNACK %+v; want 0x97", err, ca)
		}
		if ca.Properties == nil || ca.Properties.ReasonString == "" {
			t.Fatal("CONNACK 0x97 without a reason string")
		}
	})
}

// ---------------------------------------------------------------------------
// Session expiry

// storedSession reads a session record from the RELAY_SESSIONS bucket (the
// server must run withNATSListener); false if there is none.
func storedSession(t testing.TB, url, clientID string) (broker.SessionState, bool) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, natsbus.BucketSessions)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, tenant.DefaultSlug+"."+base64.RawURLEncoding.EncodeToString([]byte(clientID)))
	if err != nil {
		return broker.SessionState{}, false
	}
	var s broker.SessionState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		t.Fatal(err)
	}
	return s, true
}

// TestMQTT5SessionExpiry: the Session Expiry Interval replaces Clean
// Session (MQTT 5 §3.1.2.11.2): 0 ends the session with the connection, a
// longer one keeps it in the JetStream session store for that long; a
// DISCONNECT may change it, but not from 0 to non-zero [MQTT-3.14.2-2].
func TestMQTT5SessionExpiry(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t, withNATSListener())
	pub := connectV5(t, addr, "se-pub")

	t.Run("zero ends the session", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "se-zero")
		v.sub("se/zero", 1)
		v.disconnect(nil)
		waitOffline(t, srv, "se-zero")
		if _, ok := storedSession(t, srv.NATSURL(), "se-zero"); ok {
			t.Fatal("a session with expiry 0 was stored")
		}
		v = connectV5(t, addr, "se-zero", resume())
		if v.connack.SessionPresent {
			t.Fatal("session present after expiry 0")
		}
	})
	t.Run("kept while it lasts", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "se-keep", sessionExpiry(60))
		v.sub("se/keep", 1)
		v.disconnect(nil)
		waitOffline(t, srv, "se-keep")
		st, ok := storedSession(t, srv.NATSURL(), "se-keep")
		if !ok || st.Expiry != time.Minute || st.Connected {
			t.Fatalf("stored session %+v (found %v), want expiry 1m, offline", st, ok)
		}
		pub.pub("se/keep", 1, false, "while away")
		v = connectV5(t, addr, "se-keep", resume(), sessionExpiry(60))
		if !v.connack.SessionPresent {
			t.Fatal("session not present [MQTT-3.2.2-2]")
		}
		if got := v.in.wait(t, 1); string(got[0].Payload) != "while away" {
			t.Fatalf("got %v", topicsOf(got))
		}
	})
	t.Run("expires offline", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "se-short", sessionExpiry(1))
		v.sub("se/short", 1)
		v.disconnect(nil)
		waitOffline(t, srv, "se-short")
		time.Sleep(1200 * time.Millisecond) // the expiry itself
		v = connectV5(t, addr, "se-short", resume())
		if v.connack.SessionPresent {
			t.Fatal("session present after its expiry")
		}
	})
	t.Run("DISCONNECT sets it to zero", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "se-d0", sessionExpiry(60))
		v.sub("se/d0", 1)
		v.disconnect(&paho.DisconnectProperties{SessionExpiryInterval: u32p(0)})
		waitOffline(t, srv, "se-d0")
		v = connectV5(t, addr, "se-d0", resume(), sessionExpiry(60))
		if v.connack.SessionPresent {
			t.Fatal("session present after DISCONNECT set its expiry to 0")
		}
	})
	t.Run("DISCONNECT lengthens it", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "se-dl", sessionExpiry(1))
		v.sub("se/dl", 1)
		v.disconnect(&paho.DisconnectProperties{SessionExpiryInterval: u32p(60)})
		waitOffline(t, srv, "se-dl")
		if st, ok := storedSession(t, srv.NATSURL(), "se-dl"); !ok || st.Expiry != time.Minute {
			t.Fatalf("stored session %+v (found %v), want expiry 1m", st, ok)
		}
		time.Sleep(1200 * time.Millisecond) // past the CONNECT's expiry
		v = connectV5(t, addr, "se-dl", resume())
		if !v.connack.SessionPresent {
			t.Fatal("session gone although DISCONNECT lengthened its expiry")
		}
	})
	t.Run("DISCONNECT may not raise it from zero", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRawV5(t, addr, v5Connect("se-raise"))
		d := packet.Disconnect{}
		d.Properties.Set(packet.PropSessionExpiry)
		d.Properties.SessionExpiry = 60
		c.sendPacket(&d)
		c.expectDisconnect(packet.ProtocolError) // [MQTT-3.14.2-2]
	})
	t.Run("clean start 0 with expiry 0 resumes, then ends", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "se-last", sessionExpiry(60))
		v.sub("se/last", 1)
		v.disconnect(nil)
		waitOffline(t, srv, "se-last")
		v = connectV5(t, addr, "se-last", resume()) // expiry 0
		if !v.connack.SessionPresent {
			t.Fatal("stored session not resumed [MQTT-3.1.2-5]")
		}
		pub.pub("se/last", 1, false, "still subscribed")
		v.in.wait(t, 1)
		v.disconnect(nil)
		waitOffline(t, srv, "se-last")
		v = connectV5(t, addr, "se-last", resume())
		if v.connack.SessionPresent {
			t.Fatal("session survived a connection with expiry 0")
		}
	})
}

// ---------------------------------------------------------------------------
// Message expiry

// TestMQTT5MessageExpiry: a message with a Message Expiry Interval is
// delivered with the interval left [MQTT-3.3.2-6] — live, from a
// persistent session's queue and from the retained store — and not at all
// once it has expired [MQTT-3.3.2-5].
func TestMQTT5MessageExpiry(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t)
	pub := connectV5(t, addr, "me-pub")
	publish := func(topic string, retain bool, expiry uint32, payload string) {
		t.Helper()
		pub.publish(&paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload),
			Properties: &paho.PublishProperties{MessageExpiry: u32p(expiry)}})
	}
	checkLeft := func(t *testing.T, p *paho.Publish, max uint32) {
		t.Helper()
		if p.Properties == nil || p.Properties.MessageExpiry == nil {
			t.Fatalf("%s: no Message Expiry Interval", p.Topic)
		}
		if left := *p.Properties.MessageExpiry; left > max || left < max-10 {
			t.Fatalf("%s: Message Expiry Interval %d, want the time left, at most %d", p.Topic, left, max)
		}
	}

	t.Run("live", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "me-live")
		v.sub("me/live", 1)
		publish("me/live", false, 60, "x")
		checkLeft(t, v.in.wait(t, 1)[0], 60)
	})
	t.Run("queued and retained", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "me-queue", sessionExpiry(60))
		v.sub("me/q/#", 1)
		v.disconnect(nil)
		waitOffline(t, srv, "me-queue")
		before := srv.Edge().Broker().TenantStats(tenant.DefaultSlug).Dropped
		publish("me/q/short", false, 1, "short")
		publish("me/q/long", false, 60, "long")
		publish("me/r/short", true, 1, "short")
		publish("me/r/long", true, 60, "long")
		time.Sleep(1500 * time.Millisecond) // the short ones expire

		v = connectV5(t, addr, "me-queue", resume(), sessionExpiry(60))
		got := v.in.exactly(t, 1)
		if got[0].Topic != "me/q/long" {
			t.Fatalf("queued: got %v, want only me/q/long", topicsOf(got))
		}
		checkLeft(t, got[0], 59)
		if d := srv.Edge().Broker().TenantStats(tenant.DefaultSlug).Dropped; d <= before {
			t.Fatalf("expired queued message not counted as dropped (%d → %d)", before, d)
		}

		r := connectV5(t, addr, "me-ret")
		r.sub("me/r/#", 1)
		got = r.in.exactly(t, 1)
		if got[0].Topic != "me/r/long" || !got[0].Retain {
			t.Fatalf("retained: got %v, want only me/r/long", topicsOf(got))
		}
		checkLeft(t, got[0], 59)
	})
}

// ---------------------------------------------------------------------------
// Topic aliases

// TestMQTT5TopicAliases: inbound, a client sets and uses aliases up to our
// Topic Alias Maximum; over it the server sends DISCONNECT 0x94
// [MQTT-3.3.2-9]; an alias never set is a protocol error. Outbound, the
// server assigns aliases per connection, never over the client's Topic Alias
// Maximum [MQTT-3.3.2-11], and none to a client that has none.
func TestMQTT5TopicAliases(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)

	t.Run("inbound", func(t *testing.T) {
		t.Parallel()
		sub := connectV5(t, addr, "ta-sub")
		sub.sub("ta/in/#", 0)
		c, ack := dialRawV5(t, addr, v5Connect("ta-pub"))
		max := ack.Properties.TopicAliasMaximum
		if max == 0 {
			t.Fatal("no Topic Alias Maximum in CONNACK")
		}
		p := packet.Publish{Topic: []byte("ta/in/one"), Payload: []byte("1")}
		p.Properties.Set(packet.PropTopicAlias)
		p.Properties.TopicAlias = max
		c.sendPacket(&p)
		p.Topic, p.Payload = nil, []byte("2") // the alias alone
		c.sendPacket(&p)
		got := sub.in.wait(t, 2)
		for _, m := range got {
			if m.Topic != "ta/in/one" {
				t.Fatalf("aliased publish arrived on %q", m.Topic)
			}
		}
		p.Properties.TopicAlias = max + 1
		p.Topic = []byte("ta/in/two")
		c.sendPacket(&p)
		c.expectDisconnect(packet.TopicAliasInvalid) // [MQTT-3.3.2-9]
	})
	t.Run("inbound alias never set", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRawV5(t, addr, v5Connect("ta-unset"))
		p := packet.Publish{Payload: []byte("x")}
		p.Properties.Set(packet.PropTopicAlias)
		p.Properties.TopicAlias = 7
		c.sendPacket(&p)
		c.expectDisconnect(packet.ProtocolError)
	})
	t.Run("outbound", func(t *testing.T) {
		t.Parallel()
		cp := v5Connect("ta-out")
		cp.Properties.Set(packet.PropTopicAliasMaximum)
		cp.Properties.TopicAliasMaximum = 2
		c, _ := dialRawV5(t, addr, cp)
		c.rawSubscribe(1, []packet.ReasonCode{0}, packet.Subscription{Filter: "ta/out/#"})
		plain, _ := dialRawV5(t, addr, v5Connect("ta-plain"))
		plain.rawSubscribe(1, []packet.ReasonCode{0}, packet.Subscription{Filter: "ta/out/#"})

		pub := connectV5(t, addr, "ta-out-pub")
		topics := []string{"ta/out/a", "ta/out/b", "ta/out/c", "ta/out/a", "ta/out/b", "ta/out/c"}
		for i, tp := range topics {
			pub.pub(tp, 0, false, fmt.Sprint(i))
		}
		type wire struct {
			topic string
			alias uint16
		}
		want := []wire{{"ta/out/a", 1}, {"ta/out/b", 2}, {"ta/out/c", 0}, {"", 1}, {"", 2}, {"ta/out/c", 0}}
		for i, w := range want {
			p := c.expectPublish()
			got := wire{string(p.Topic), 0}
			if p.Properties.Has(packet.PropTopicAlias) {
				got.alias = p.Properties.TopicAlias
			}
			if got != w || string(p.Payload) != fmt.Sprint(i) {
				t.Fatalf("PUBLISH %d: topic %q alias %d payload %q, want %q alias %d", i, got.topic, got.alias, p.Payload, w.topic, w.alias)
			}
		}
		for range topics {
			if p := plain.expectPublish(); p.Properties.Has(packet.PropTopicAlias) || len(p.Topic) == 0 {
				t.Fatalf("topic alias %d sent to a client without Topic Alias Maximum", p.Properties.TopicAlias)
			}
		}
	})
	t.Run("outbound capped by the server", func(t *testing.T) {
		t.Parallel()
		// A client may offer 65,535 aliases; each keeps its topic for
		// the connection's life, so the server assigns at most its own
		// maximum (64).
		cp := v5Connect("ta-greedy")
		cp.Properties.Set(packet.PropTopicAliasMaximum)
		cp.Properties.TopicAliasMaximum = 65535
		c, _ := dialRawV5(t, addr, cp)
		c.rawSubscribe(1, []packet.ReasonCode{0}, packet.Subscription{Filter: "ta/many/#"})
		pub := connectV5(t, addr, "ta-greedy-pub")
		const n = 100
		for i := range n {
			pub.pub(fmt.Sprintf("ta/many/%d", i), 0, false, "x")
		}
		var highest uint16
		for range n {
			if p := c.expectPublish(); p.Properties.Has(packet.PropTopicAlias) {
				highest = max(highest, p.Properties.TopicAlias)
			}
		}
		if highest != 64 {
			t.Errorf("highest outbound alias %d for a client offering 65535, want the server's cap 64", highest)
		}
	})
}

// ---------------------------------------------------------------------------
// Request / response and the properties that travel with a message

// TestMQTT5RequestResponse: user properties (in order [MQTT-3.3.2-18]),
// content type, payload format indicator, response topic and correlation
// data reach the subscriber unchanged [MQTT-3.3.2-17..20], and a responder
// answers on the response topic with the correlation data. A payload that
// is not the UTF-8 its format indicator says is refused with 0x99; a
// response topic with wildcards is a protocol error [MQTT-3.3.2-14].
func TestMQTT5RequestResponse(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)

	t.Run("round trip", func(t *testing.T) {
		t.Parallel()
		responder := connectV5(t, addr, "rr-responder")
		responder.sub("rr/service", 1)
		requester := connectV5(t, addr, "rr-requester")
		requester.sub("rr/reply/requester", 1)

		user := paho.UserProperties{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "a", Value: "3"}}
		requester.publish(&paho.Publish{Topic: "rr/service", QoS: 1, Payload: []byte(`{"op":"ping"}`),
			Properties: &paho.PublishProperties{
				ResponseTopic: "rr/reply/requester", CorrelationData: []byte{0, 1, 2, 0xff},
				ContentType: "application/json", PayloadFormat: bytep(1), User: user,
			}})
		req := responder.in.wait(t, 1)[0]
		p := req.Properties
		if p == nil || p.ResponseTopic != "rr/reply/requester" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 2, 0xff}) ||
			p.ContentType != "application/json" || p.PayloadFormat == nil || *p.PayloadFormat != 1 || !slices.Equal(p.User, user) {
			t.Fatalf("request properties %+v", p)
		}
		responder.publish(&paho.Publish{Topic: p.ResponseTopic, QoS: 1, Payload: []byte("pong"),
			Properties: &paho.PublishProperties{CorrelationData: p.CorrelationData}})
		resp := requester.in.wait(t, 1)[0]
		if string(resp.Payload) != "pong" || resp.Properties == nil || !bytes.Equal(resp.Properties.CorrelationData, []byte{0, 1, 2, 0xff}) {
			t.Fatalf("response %q with %+v", resp.Payload, resp.Properties)
		}
	})
	t.Run("payload format invalid", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRawV5(t, addr, v5Connect("rr-pfi"))
		p := packet.Publish{Topic: []byte("rr/pfi"), QoS: 1, PacketID: 1, Payload: []byte{0xff, 0xfe}}
		p.Properties.Set(packet.PropPayloadFormat)
		p.Properties.PayloadFormat = 1
		c.sendPacket(&p)
		if a := c.expectAck5(packet.PUBACK, 1); a.ReasonCode != packet.PayloadFormatInvalid {
			t.Fatalf("PUBACK %v, want 0x99", a.ReasonCode)
		}
		p.QoS, p.PacketID = 0, 0 // no ack to say it with
		c.sendPacket(&p)
		c.expectDisconnect(packet.PayloadFormatInvalid)
	})
	t.Run("response topic with wildcard", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRawV5(t, addr, v5Connect("rr-wild"))
		p := packet.Publish{Topic: []byte("rr/x"), Payload: []byte("x")}
		p.Properties.Set(packet.PropResponseTopic)
		p.Properties.ResponseTopic = "rr/reply/+"
		c.sendPacket(&p)
		c.expectDisconnect(packet.ProtocolError) // [MQTT-3.3.2-14]
	})
}

// ---------------------------------------------------------------------------
// Subscription options and identifiers

// TestMQTT5SubscriptionOptions: No Local [MQTT-3.8.3-3], Retain As Published
// [MQTT-3.3.1-12] [MQTT-3.3.1-13] and Retain Handling 0, 1 and 2
// [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
func TestMQTT5SubscriptionOptions(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connectV5(t, addr, "so-pub")

	t.Run("no local", func(t *testing.T) {
		t.Parallel()
		self := connectV5(t, addr, "so-self")
		self.subscribe(0, paho.SubscribeOptions{Topic: "so/nl", QoS: 1, NoLocal: true})
		other := connectV5(t, addr, "so-other")
		other.sub("so/nl", 1)
		self.pub("so/nl", 1, false, "mine")
		pub.pub("so/nl", 1, false, "theirs")
		if got := other.in.exactly(t, 2); len(got) != 2 {
			t.Fatal(topicsOf(got))
		}
		got := self.in.exactly(t, 1)
		if string(got[0].Payload) != "theirs" {
			t.Fatalf("No Local subscriber got %v", topicsOf(got))
		}
	})
	t.Run("retain as published", func(t *testing.T) {
		t.Parallel()
		rap := connectV5(t, addr, "so-rap")
		rap.subscribe(0, paho.SubscribeOptions{Topic: "so/rap", QoS: 1, RetainAsPublished: true})
		plain := connectV5(t, addr, "so-norap")
		plain.sub("so/rap", 1)
		pub.pub("so/rap", 1, true, "kept")
		if m := rap.in.wait(t, 1)[0]; !m.Retain {
			t.Fatal("Retain As Published: RETAIN cleared [MQTT-3.3.1-12]")
		}
		if m := plain.in.wait(t, 1)[0]; m.Retain {
			t.Fatal("RETAIN set on a live delivery without Retain As Published [MQTT-3.3.1-13]")
		}
		pub.pub("so/rap", 1, true, "") // clear
	})
	t.Run("retain handling", func(t *testing.T) {
		t.Parallel()
		pub.pub("so/rh", 1, true, "retained")
		for _, rh := range []byte{0, 1, 2} {
			t.Run(fmt.Sprint(rh), func(t *testing.T) {
				v := connectV5(t, addr, fmt.Sprintf("so-rh%d", rh))
				opts := paho.SubscribeOptions{Topic: "so/rh", QoS: 1, RetainHandling: rh}
				v.subscribe(0, opts)
				v.subscribe(0, opts) // again: the subscription exists now
				want := map[byte]int{0: 2, 1: 1, 2: 0}[rh]
				if want == 0 {
					time.Sleep(quietPeriod)
					if got := v.in.all(); len(got) != 0 {
						t.Fatalf("retain handling 2 sent %v [MQTT-3.3.1-11]", topicsOf(got))
					}
					return
				}
				for _, m := range v.in.exactly(t, want) {
					if !m.Retain {
						t.Fatal("retained message without RETAIN [MQTT-3.3.1-8]")
					}
				}
			})
		}
	})
}

// subIDs returns a PUBLISH's subscription identifiers, sorted.
func subIDs(p packet.Publish) []int {
	ids := slices.Clone(p.Properties.SubscriptionIdentifiers)
	slices.Sort(ids)
	return ids
}

// TestMQTT5SubscriptionIdentifiers: a delivery carries the identifier of
// the subscription it is for [MQTT-3.3.4-5]; a persistent session's queued
// message, one copy for all its matching subscriptions, carries all their
// identifiers [MQTT-3.3.4-4]; retained messages carry the new
// subscription's; a subscription replaced without one loses it.
func TestMQTT5SubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connectV5(t, addr, "si-pub")
	sub := func(c *rawClient, pid uint16, id int, filter string, qos byte) {
		t.Helper()
		s := &packet.Subscribe{PacketID: pid, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}}
		if id > 0 {
			s.Properties.SubscriptionIdentifiers = []int{id}
		}
		if ack := c.suback5(s); ack.ReasonCodes[0] != packet.ReasonCode(qos) {
			t.Fatalf("SUBACK %v", ack.ReasonCodes)
		}
	}

	t.Run("live, one copy per subscription", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRawV5(t, addr, v5Connect("si-live"))
		sub(c, 1, 1, "si/#", 0)
		sub(c, 2, 2, "si/+/x", 0)
		sub(c, 3, 0, "si/a/+", 0)
		pub.pub("si/a/x", 0, false, "m")
		var got [][]int
		for range 3 {
			got = append(got, subIDs(c.expectPublish()))
		}
		slices.SortFunc(got, slices.Compare)
		if want := [][]int{{}, {1}, {2}}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("identifiers per copy %v, want %v", got, want)
		}
		c.expectNothing(quietPeriod)

		sub(c, 4, 0, "si/#", 0) // replaced without an identifier
		sub(c, 5, 0, "si/+/x", 0)
		pub.pub("si/a/x", 0, false, "m2")
		for range 3 {
			if ids := subIDs(c.expectPublish()); len(ids) != 0 {
				t.Fatalf("identifier %v after the subscription was replaced without one", ids)
			}
		}
	})
	t.Run("queued, one copy with all", func(t *testing.T) {
		t.Parallel()
		cp := v5Connect("si-queue")
		cp.Properties.Set(packet.PropSessionExpiry)
		cp.Properties.SessionExpiry = 60
		c, _ := dialRawV5(t, addr, cp)
		sub(c, 1, 5, "sq/#", 1)
		sub(c, 2, 6, "sq/+/x", 1)
		pub.pub("sq/a/x", 1, false, "m")
		p := c.expectPublish()
		if ids := subIDs(p); !slices.Equal(ids, []int{5, 6}) {
			t.Fatalf("queued copy has identifiers %v, want [5 6]", ids)
		}
		c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
		c.expectNothing(quietPeriod)
	})
	t.Run("retained", func(t *testing.T) {
		t.Parallel()
		pub.pub("sr/r", 1, true, "kept")
		c, _ := dialRawV5(t, addr, v5Connect("si-ret"))
		sub(c, 1, 9, "sr/r", 0)
		if p := c.expectPublish(); !p.Retain || !slices.Equal(subIDs(p), []int{9}) {
			t.Fatalf("retained PUBLISH retain=%v identifiers %v, want 9", p.Retain, subIDs(p))
		}
	})
}

// TestMQTT5SharedSubscriptions: a shared subscription hands each message to
// one member (MQTT 5 §4.8.2), sends no retained messages on subscribe, and
// No Local on it is a protocol error [MQTT-3.8.3-4].
func TestMQTT5SharedSubscriptions(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connectV5(t, addr, "sh-pub")
	pub.pub("sh/t", 1, true, "retained")

	m1 := connectV5(t, addr, "sh-m1")
	m1.sub("$share/g/sh/t", 1)
	m2 := connectV5(t, addr, "sh-m2")
	m2.sub("$share/g/sh/t", 1)
	all := connectV5(t, addr, "sh-all")
	all.sub("sh/t", 1)
	all.in.wait(t, 1) // its retained message
	const n = 20
	for i := range n {
		pub.pub("sh/t", 1, false, fmt.Sprint(i))
	}
	all.in.wait(t, 1+n)
	time.Sleep(quietPeriod)
	a, b := m1.in.all(), m2.in.all()
	if len(a)+len(b) != n || len(a) == 0 || len(b) == 0 {
		t.Fatalf("members got %d + %d messages, want %d in all, some each", len(a), len(b), n)
	}
	for _, m := range append(a, b...) {
		if m.Retain {
			t.Fatal("retained message sent to a shared subscription")
		}
	}

	c, _ := dialRawV5(t, addr, v5Connect("sh-nl"))
	c.sendPacket(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "$share/g/sh/t", QoS: 1, NoLocal: true}}})
	c.expectDisconnect(packet.ProtocolError) // [MQTT-3.8.3-4]
}

// ---------------------------------------------------------------------------
// Flow control and sizes

// TestMQTT5ReceiveMaximum: the server never has more unacknowledged QoS > 0
// PUBLISHes out to a client than its Receive Maximum [MQTT-3.3.4-9]; a
// client that sends more than the server's gets DISCONNECT 0x93
// [MQTT-3.3.4-7].
func TestMQTT5ReceiveMaximum(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, withBroker(func(o *broker.Options) { o.MaxInflight = 4 }))

	t.Run("outbound", func(t *testing.T) {
		t.Parallel()
		cp := v5Connect("rm-out")
		cp.Properties.Set(packet.PropReceiveMaximum)
		cp.Properties.ReceiveMaximum = 2
		c, _ := dialRawV5(t, addr, cp)
		c.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "rm/t", QoS: 1})
		pub := connectV5(t, addr, "rm-pub")
		for i := range 5 {
			pub.pub("rm/t", 1, false, fmt.Sprint(i))
		}
		var inflight []packet.Publish // sent, not yet acknowledged
		var payloads []string
		take := func() {
			p := c.expectPublish()
			inflight = append(inflight, p)
			payloads = append(payloads, string(p.Payload))
		}
		take()
		take()
		c.expectNothing(quietPeriod) // [MQTT-3.3.4-9]
		for len(payloads) < 5 {
			c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: inflight[0].PacketID})
			inflight = inflight[1:]
			take()
			c.expectNothing(50 * time.Millisecond) // still at most 2
		}
		if want := []string{"0", "1", "2", "3", "4"}; !slices.Equal(payloads, want) {
			t.Fatalf("payloads %q, want %q", payloads, want)
		}
	})
	t.Run("inbound", func(t *testing.T) {
		t.Parallel()
		c, ack := dialRawV5(t, addr, v5Connect("rm-in"))
		if ack.Properties.ReceiveMaximum != 4 {
			t.Fatalf("CONNACK Receive Maximum %d, want 4", ack.Properties.ReceiveMaximum)
		}
		for id := uint16(1); id <= 4; id++ {
			c.sendPacket(publishPacket("rm/in", 2, id, "x"))
			c.expectAck5(packet.PUBREC, id)
		}
		// A resend of an unreleased one is no new PUBLISH.
		c.sendPacket(&packet.Publish{Topic: []byte("rm/in"), QoS: 2, PacketID: 1, Dup: true, Payload: []byte("x")})
		c.expectAck5(packet.PUBREC, 1)
		c.sendPacket(&packet.Ack{Type: packet.PUBREL, PacketID: 1})
		c.expectAck5(packet.PUBCOMP, 1)
		c.sendPacket(publishPacket("rm/in", 2, 5, "x")) // 4 in flight again
		c.expectAck5(packet.PUBREC, 5)
		c.sendPacket(publishPacket("rm/in", 1, 6, "x")) // the fifth
		c.expectDisconnect(packet.ReceiveMaximumExceeded)
	})
}

// TestMQTT5MaximumPacketSize: CONNACK advertises the server's Maximum
// Packet Size and a larger packet gets DISCONNECT 0x95; the server never
// sends a client more than its Maximum Packet Size [MQTT-3.1.2-24]: a
// PUBLISH too large is dropped (counted) as if delivered [MQTT-3.1.2-25],
// and an ack or DISCONNECT first loses its reason string [MQTT-3.4.2-2]
// [MQTT-3.14.2-3].
func TestMQTT5MaximumPacketSize(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t, withBroker(func(o *broker.Options) { o.MaxPacketSize = 4096 }))

	t.Run("inbound", func(t *testing.T) {
		t.Parallel()
		c, ack := dialRawV5(t, addr, v5Connect("mps-in"))
		if ack.Properties.MaximumPacketSize != 4096 {
			t.Fatalf("CONNACK Maximum Packet Size %d, want 4096", ack.Properties.MaximumPacketSize)
		}
		c.sendPacket(publishPacket("mps/in", 0, 0, strings.Repeat("x", 5000)))
		c.expectDisconnect(packet.PacketTooLarge)
	})
	t.Run("outbound", func(t *testing.T) {
		t.Parallel()
		cp := v5Connect("mps-out")
		cp.Properties.Set(packet.PropMaximumPacketSize)
		cp.Properties.MaximumPacketSize = 200
		cp.Properties.Set(packet.PropReceiveMaximum)
		cp.Properties.ReceiveMaximum = 1 // a dropped QoS 1 message must free its slot
		c, _ := dialRawV5(t, addr, cp)
		c.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "mps/#", QoS: 1})
		b := srv.Edge().Broker()
		before := b.Stats().Dropped.Load()
		pub := connectV5(t, addr, "mps-pub")
		small, big := strings.Repeat("s", 50), strings.Repeat("b", 500)
		pub.pub("mps/big1", 1, false, big)
		pub.pub("mps/small1", 1, false, small)
		pub.pub("mps/big0", 0, false, big)
		pub.pub("mps/small0", 0, false, small)
		for _, want := range []string{"mps/small1", "mps/small0"} {
			fh, body := c.expect(packet.PUBLISH)
			if fh.Remaining+2 > 200 {
				t.Fatalf("sent a %d-byte packet to a client with maximum 200", fh.Remaining+2)
			}
			var p packet.Publish
			if err := p.Decode(packet.V5, fh, body); err != nil {
				t.Fatal(err)
			}
			if string(p.Topic) != want {
				t.Fatalf("got %q, want %q", p.Topic, want)
			}
			if p.QoS > 0 {
				c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
			}
		}
		c.expectNothing(quietPeriod)
		if d := b.Stats().Dropped.Load() - before; d != 2 {
			t.Fatalf("dropped %d, want 2", d)
		}
	})
	t.Run("reason strings go first", func(t *testing.T) {
		t.Parallel()
		cp := v5Connect("mps-rs")
		cp.Properties.Set(packet.PropMaximumPacketSize)
		cp.Properties.MaximumPacketSize = 32 // CONNACK fits, a reason string does not
		c, _ := dialRawV5(t, addr, cp)
		c.sendPacket(&packet.Publish{Topic: []byte("$internal/x"), QoS: 1, PacketID: 1, Payload: []byte("x")})
		if a := c.expectAck5(packet.PUBACK, 1); a.ReasonCode != packet.NotAuthorized || a.Properties.Has(packet.PropReasonString) {
			t.Fatalf("PUBACK %v %q, want 0x87 without its reason string", a.ReasonCode, a.Properties.ReasonString)
		}
		p := packet.Publish{Payload: []byte("x")}
		p.Properties.Set(packet.PropTopicAlias)
		p.Properties.TopicAlias = 7
		c.sendPacket(&p)
		if d := c.expectDisconnect(packet.ProtocolError); d.Properties.Has(packet.PropReasonString) {
			t.Fatalf("DISCONNECT reason string %q over the maximum packet size", d.Properties.ReasonString)
		}
	})
}

// ---------------------------------------------------------------------------
// Will delay

// TestMQTT5WillDelay: the will waits for its Will Delay Interval and is not
// sent if the session is resumed meanwhile [MQTT-3.1.3-9]; it goes out when
// the session ends if that comes first: at its expiry, at a Clean Start
// connection, or at once for a session that ends with its connection
// (MQTT 5 §3.1.3.2.2). Its Message Expiry Interval starts at publication.
func TestMQTT5WillDelay(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	watch := connectV5(t, addr, "wd-watch")
	watch.sub("wd/#", 1)
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	watch.c.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		mu.Lock()
		arrived[pr.Packet.Topic] = time.Now()
		mu.Unlock()
		return false, nil
	})
	// waitWill waits for the will on topic and returns when it came.
	waitWill := func(t *testing.T, topic string, within time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			mu.Lock()
			at, ok := arrived[topic]
			mu.Unlock()
			if ok {
				return at
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no will on %s within %v", topic, within)
		return time.Time{}
	}
	noWill := func(t *testing.T, topic string, d time.Duration) {
		t.Helper()
		time.Sleep(d)
		mu.Lock()
		_, ok := arrived[topic]
		mu.Unlock()
		if ok {
			t.Fatalf("will on %s was published", topic)
		}
	}

	t.Run("published after the delay", func(t *testing.T) {
		t.Parallel()
		// Raw: paho.golang drops a will's Message Expiry Interval.
		p := v5Connect("wd-1")
		p.Properties.Set(packet.PropSessionExpiry)
		p.Properties.SessionExpiry = 60
		p.WillFlag, p.WillTopic, p.WillPayload, p.WillQoS = true, "wd/1", []byte("gone"), 1
		p.WillProperties.Set(packet.PropWillDelay)
		p.WillProperties.WillDelay = 1
		p.WillProperties.Set(packet.PropMessageExpiry)
		p.WillProperties.MessageExpiry = 60
		c, _ := dialRawV5(t, addr, p)
		lost := time.Now()
		c.nc.Close()
		if took := waitWill(t, "wd/1", waitTimeout).Sub(lost); took < 900*time.Millisecond {
			t.Fatalf("will after %v, want the 1 s delay", took)
		}
		for _, m := range watch.in.all() {
			if m.Topic == "wd/1" && (m.Properties == nil || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry < 59) {
				t.Fatalf("will's Message Expiry Interval %v, want ~60 s from publication", m.Properties)
			}
		}
	})
	t.Run("cancelled by resuming the session", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "wd-2", sessionExpiry(60), willV5("wd/2", "gone", 1, 1, 0))
		v.drop()
		v = connectV5(t, addr, "wd-2", resume(), sessionExpiry(60), willV5("wd/2", "gone", 1, 1, 0))
		noWill(t, "wd/2", 1500*time.Millisecond)
		v.disconnect(nil)
	})
	t.Run("session expiry comes first", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "wd-3", sessionExpiry(1), willV5("wd/3", "gone", 1, 30, 0))
		lost := time.Now()
		v.drop()
		if took := waitWill(t, "wd/3", waitTimeout).Sub(lost); took < 900*time.Millisecond {
			t.Fatalf("will after %v, want the 1 s session expiry", took)
		}
	})
	t.Run("clean start ends the session", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "wd-4", sessionExpiry(60), willV5("wd/4", "gone", 1, 30, 0))
		v.drop()
		time.Sleep(100 * time.Millisecond) // let the edge see the loss
		connectV5(t, addr, "wd-4")         // Clean Start 1
		waitWill(t, "wd/4", 2*time.Second)
	})
	for _, tc := range []struct {
		name string
		rc   packet.ReasonCode
		will bool
	}{
		{"DISCONNECT 0x00 discards the will", packet.NormalDisconnection, false}, // [MQTT-3.14.4-3]
		{"DISCONNECT 0x04 keeps it", packet.DisconnectWithWill, true},
		{"DISCONNECT with an error keeps it", packet.UnspecifiedError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			topic := fmt.Sprintf("wd/rc%02x", byte(tc.rc))
			p := v5Connect("wd-rc" + topic[5:])
			p.WillFlag, p.WillTopic, p.WillPayload, p.WillQoS = true, topic, []byte("gone"), 1
			c, _ := dialRawV5(t, addr, p)
			c.sendPacket(&packet.Disconnect{ReasonCode: tc.rc})
			c.expectClosed(waitTimeout) // and no DISCONNECT back
			if tc.will {
				waitWill(t, topic, 2*time.Second)
			} else {
				noWill(t, topic, quietPeriod)
			}
		})
	}
	t.Run("no session, no delay", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "wd-5", willV5("wd/5", "gone", 1, 30, 0))
		v.drop()
		waitWill(t, "wd/5", 2*time.Second)
	})
}

// ---------------------------------------------------------------------------
// Server-initiated DISCONNECT, enhanced authentication

// TestMQTT5ServerDisconnect: the server tells an MQTT 5 client why it
// closes the connection [MQTT-4.13.2-1]: session taken over 0x8E
// [MQTT-3.1.4-3], keep-alive timeout 0x8D, administrative action 0x98,
// server shutting down 0x8B (on a graceful edge close, so that clients
// reconnect elsewhere); an MQTT 3.1.1 client is just closed.
func TestMQTT5ServerDisconnect(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t)

	t.Run("session taken over", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "sd-take")
		connectV5(t, addr, "sd-take")
		v.expectServerDisconnect(packet.SessionTakenOver)

		old := dialRaw(t, addr)
		old.connect(packet.Connect{ClientID: "sd-take3", CleanStart: true, KeepAlive: 30})
		dialRaw(t, addr).connect(packet.Connect{ClientID: "sd-take3", CleanStart: true, KeepAlive: 30})
		old.expectClosed(waitTimeout) // 3.1.1: no DISCONNECT
	})
	t.Run("keep alive timeout", func(t *testing.T) {
		t.Parallel()
		p := v5Connect("sd-ka")
		p.KeepAlive = 1
		c, _ := dialRawV5(t, addr, p)
		start := time.Now()
		c.expectDisconnect(packet.KeepAliveTimeout)
		if took := time.Since(start); took < time.Second {
			t.Fatalf("closed after %v, before 1.5 × keep-alive", took)
		}
	})
	t.Run("administrative action", func(t *testing.T) {
		t.Parallel()
		v := connectV5(t, addr, "sd-kick")
		if !srv.Edge().Broker().Kick(tenant.DefaultSlug, "sd-kick") {
			t.Fatal("Kick found no client")
		}
		v.expectServerDisconnect(packet.AdministrativeAction)
	})
	t.Run("server shutting down", func(t *testing.T) {
		t.Parallel()
		other, oaddr := startServer(t)
		v := connectV5(t, oaddr, "sd-down")
		v3 := dialRaw(t, oaddr)
		v3.connect(packet.Connect{ClientID: "sd-down3", CleanStart: true, KeepAlive: 30})
		other.Close()
		d := v.expectServerDisconnect(packet.ServerShuttingDown)
		if d.Properties == nil || d.Properties.ReasonString == "" {
			t.Fatal("DISCONNECT 0x8B without a reason string")
		}
		v3.expectClosed(waitTimeout)
	})
}

// TestMQTT5EnhancedAuth: enhanced authentication is not offered: a CONNECT
// with an Authentication Method is refused with 0x8C and closed, and an
// AUTH packet on a connection is a protocol error; nobody else notices.
func TestMQTT5EnhancedAuth(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	bystander, _ := dialRawV5(t, addr, v5Connect("ea-bystander"))

	p := v5Connect("ea-scram")
	p.Properties.Set(packet.PropAuthMethod)
	p.Properties.AuthMethod = "SCRAM-SHA-256"
	c := dialRaw(t, addr)
	if ack := c.connack(p); ack.ReasonCode != packet.BadAuthenticationMethod {
		t.Fatalf("CONNACK %v, want 0x8C", ack.ReasonCode)
	}
	c.expectClosed(waitTimeout)

	_, ca, err := tryConnectV5(t, addr, "ea-paho", func(cp *paho.Connect) { v5Props(cp).AuthMethod = "SCRAM-SHA-1" })
	if err == nil || ca == nil || ca.ReasonCode != byte(packet.BadAuthenticationMethod) {
		t.Fatalf("paho with an authentication method: %v, %+v; want CONNACK 0x8C", err, ca)
	}

	c, _ = dialRawV5(t, addr, v5Connect("ea-auth"))
	a := packet.Auth{ReasonCode: packet.ReAuthenticate}
	a.Properties.Set(packet.PropAuthMethod)
	a.Properties.AuthMethod = "SCRAM-SHA-256"
	c.sendPacket(&a)
	c.expectDisconnect(packet.ProtocolError)
	bystander.ping()
}

// ---------------------------------------------------------------------------
// Interoperability

// TestMQTT5Interop: MQTT 3.1.1 and 5.0 clients share topics, retained
// messages and persistent sessions. A 3.1.1 subscriber gets a 5.0 message
// without its properties; a 5.0 subscriber gets a 3.1.1 message with none.
func TestMQTT5Interop(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t)
	in3 := newInbox()
	v3 := connect(t, addr, "io-v3")
	subscribe(t, v3, "io/#", 2, in3)
	v5 := connectV5(t, addr, "io-v5")
	v5.sub("io/#", 2)

	v5.publish(&paho.Publish{Topic: "io/from5", QoS: 2, Payload: []byte("five"), Properties: &paho.PublishProperties{
		ContentType: "text/plain", User: paho.UserProperties{{Key: "k", Value: "v"}}, MessageExpiry: u32p(60)}})
	publish(t, v3, "io/from3", 1, false, "three")
	got3 := in3.wait(t, 2)
	if want := []string{`io/from3="three"(q1,rfalse)`, `io/from5="five"(q2,rfalse)`}; !slices.Equal(sortedStrings(got3), want) {
		t.Fatalf("3.1.1 subscriber got %v, want %v", sortedStrings(got3), want)
	}
	got5 := v5.in.wait(t, 2)
	for _, m := range got5 {
		switch m.Topic {
		case "io/from5":
			if m.QoS != 2 || m.Properties == nil || m.Properties.ContentType != "text/plain" || len(m.Properties.User) != 1 {
				t.Fatalf("5.0 message lost its properties: %+v", m.Properties)
			}
		case "io/from3":
			if m.QoS != 1 || string(m.Payload) != "three" || (m.Properties != nil && (m.Properties.ContentType != "" || len(m.Properties.User) > 0 || m.Properties.MessageExpiry != nil)) {
				t.Fatalf("3.1.1 message arrived as %+v with %+v", m, m.Properties)
			}
		}
	}

	// Retained and queued across versions.
	v5.pub("io/ret5", 1, true, "r5")
	publish(t, v3, "io/ret3", 1, true, "r3")
	late5 := connectV5(t, addr, "io-late5")
	late5.sub("io/ret3", 1)
	if m := late5.in.wait(t, 1)[0]; string(m.Payload) != "r3" || !m.Retain {
		t.Fatalf("5.0 client got %+v for a 3.1.1 retained message", m)
	}
	inLate := newInbox()
	subscribe(t, connect(t, addr, "io-late3"), "io/ret5", 1, inLate)
	if m := inLate.wait(t, 1)[0]; m.Payload != "r5" || !m.Retained {
		t.Fatalf("3.1.1 client got %v for a 5.0 retained message", m)
	}

	p3 := connect(t, addr, "io-p3", persistent())
	subscribe(t, p3, "io/q", 1, nil)
	disconnect(p3)
	waitOffline(t, srv, "io-p3")
	v5.pub("io/q", 1, false, "queued by 5")
	q3 := newInbox()
	connect(t, addr, "io-p3", persistent(), onMessage(q3))
	if m := q3.wait(t, 1)[0]; m.Payload != "queued by 5" {
		t.Fatalf("3.1.1 persistent session got %v", m)
	}
}

// TestMosquittoV5: mosquitto_pub and mosquitto_sub with -V 5: user
// properties, content type, response topic, correlation data and message
// expiry get through, and a session with an expiry interval (-x) keeps
// messages while the subscriber is away.
func TestMosquittoV5(t *testing.T) {
	t.Parallel()
	mosquittoTool(t, "mosquitto_sub")
	mosquittoTool(t, "mosquitto_pub")
	srv, addr := startServer(t)

	sub := startMosqSub(t, addr, "-V", "5", "-i", "mq5-sub", "-t", "mq5/#", "-q", "1", "-C", "1",
		"-F", "%t|%p|%C|%R|%D|%P|%E")
	mosqPub(t, addr, "-V", "5", "-i", "mq5-pub", "-t", "mq5/props", "-q", "1", "-m", "hello",
		"-D", "publish", "user-property", "site", "lab",
		"-D", "publish", "content-type", "text/plain",
		"-D", "publish", "response-topic", "mq5/reply",
		"-D", "publish", "correlation-data", "c42",
		"-D", "publish", "message-expiry-interval", "60")
	sub.waitFor(t, "the message", func() bool {
		return slices.ContainsFunc(sub.out, func(l string) bool { return strings.HasPrefix(l, "mq5/props|") })
	})
	var line string
	for _, l := range strings.Split(sub.output(), "\n") {
		if strings.HasPrefix(l, "mq5/props|") {
			line = l
		}
	}
	f := strings.Split(line, "|")
	if len(f) != 7 || f[1] != "hello" || f[2] != "text/plain" || f[3] != "mq5/reply" || f[4] != "c42" || f[5] != "site:lab" {
		t.Fatalf("mosquitto_sub -V 5 printed %q", line)
	}
	if e := f[6]; e != "60" && e != "59" {
		t.Fatalf("message expiry interval %q, want 60 (or 59)", e)
	}

	// A session with an expiry interval: mosquitto_sub -c -x.
	startMosqSub(t, addr, "-V", "5", "-i", "mq5-persist", "-c", "-x", "60", "-t", "mq5/q", "-q", "1", "-E")
	waitOffline(t, srv, "mq5-persist")
	mosqPub(t, addr, "-V", "5", "-t", "mq5/q", "-q", "1", "-m", "while away")
	// The queued message may come before the new SUBACK, so this one is
	// not started with startMosqSub (which waits for SUBACK).
	ctx, cancel := context.WithTimeout(context.Background(), mosquittoTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, mosquittoTool(t, "mosquitto_sub"), append(hostPort(t, addr),
		"-V", "5", "-i", "mq5-persist", "-c", "-x", "60", "-t", "mq5/q", "-q", "1", "-C", "1", "-W", "10", "-v")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "mq5/q while away" {
		t.Fatalf("resumed mosquitto_sub: %v, output %q", err, out)
	}
}
