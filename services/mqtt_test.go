package services_test

// MQTT 3.1 / 3.1.1 conformance of one all-in-one node, seen from real
// clients: paho.mqtt.golang, and a raw client for what must be observed on
// the wire. Spec references are to MQTT 3.1.1 (OASIS, 2014) unless noted.

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
)

// ---------------------------------------------------------------------------
// QoS

// TestQoSDelivery publishes at each QoS to a subscription of each QoS: the
// message arrives once, with the minimum of the two [MQTT-3.8.4-6]; the
// publisher's flow completes (PUBACK / PUBREC-PUBREL-PUBCOMP, which paho's
// token waits for) [MQTT-4.3.2-2] [MQTT-4.3.3-2].
func TestQoSDelivery(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connect(t, addr, "qos-pub")
	tests := []struct {
		pub, sub, want byte
	}{
		{pub: 0, sub: 0, want: 0},
		{pub: 0, sub: 1, want: 0},
		{pub: 0, sub: 2, want: 0},
		{pub: 1, sub: 0, want: 0},
		{pub: 1, sub: 1, want: 1},
		{pub: 1, sub: 2, want: 1},
		{pub: 2, sub: 0, want: 0},
		{pub: 2, sub: 1, want: 1},
		{pub: 2, sub: 2, want: 2},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("pub%d_sub%d", tt.pub, tt.sub)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			topic := "qos/" + name
			in := newInbox()
			sub := connect(t, addr, "qos-sub-"+name)
			subscribe(t, sub, topic, tt.sub, in)
			publish(t, pub, topic, tt.pub, false, "payload-"+name)
			got := in.exactly(t, 1)
			want := received{Topic: topic, Payload: "payload-" + name, QoS: tt.want}
			if got[0] != want {
				t.Fatalf("got %v, want %v", got[0], want)
			}
		})
	}
}

// TestQoSFlowsOnTheWire checks the acknowledgement packets themselves with
// a raw client, in both directions.
func TestQoSFlowsOnTheWire(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)

	t.Run("inbound QoS 1", func(t *testing.T) {
		t.Parallel()
		in := newInbox()
		subscribe(t, connect(t, addr, "wire1-sub"), "wire/in1", 2, in)
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "wire1-pub", CleanStart: true, KeepAlive: 30})
		c.sendPacket(publishPacket("wire/in1", 1, 4711, "one"))
		c.expectAck(packet.PUBACK, 4711) // [MQTT-4.3.2-2] same packet ID [MQTT-2.3.1-6]
		got := in.exactly(t, 1)
		if want := (received{Topic: "wire/in1", Payload: "one", QoS: 1}); got[0] != want {
			t.Fatalf("got %v, want %v", got[0], want)
		}
	})

	t.Run("inbound QoS 2 with DUP resend", func(t *testing.T) {
		t.Parallel()
		in := newInbox()
		subscribe(t, connect(t, addr, "wire2-sub"), "wire/in2", 2, in)
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "wire2-pub", CleanStart: true, KeepAlive: 30})

		p := publishPacket("wire/in2", 2, 7, "exactly-once")
		c.sendPacket(p)
		c.expectAck(packet.PUBREC, 7) // [MQTT-4.3.3-2]
		// The PUBREC "was lost": the client sends the PUBLISH again with DUP
		// set and the same packet ID. The server answers PUBREC again and
		// must not deliver the message a second time [MQTT-4.3.3-2].
		p.Dup = true
		c.sendPacket(p)
		c.expectAck(packet.PUBREC, 7)
		c.sendPacket(&packet.Ack{Type: packet.PUBREL, PacketID: 7})
		c.expectAck(packet.PUBCOMP, 7) // [MQTT-4.3.3-2]

		// After PUBCOMP the packet ID is free: the same ID now carries a new
		// message, which is delivered [MQTT-2.3.1-3].
		c.sendPacket(publishPacket("wire/in2", 2, 7, "second"))
		c.expectAck(packet.PUBREC, 7)
		c.sendPacket(&packet.Ack{Type: packet.PUBREL, PacketID: 7})
		c.expectAck(packet.PUBCOMP, 7)

		got := in.exactly(t, 2)
		want := []received{
			{Topic: "wire/in2", Payload: "exactly-once", QoS: 2},
			{Topic: "wire/in2", Payload: "second", QoS: 2},
		}
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})

	t.Run("outbound QoS 1", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "wire3-sub", CleanStart: true, KeepAlive: 30})
		c.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "wire/out1", QoS: 1})
		publish(t, connect(t, addr, "wire3-pub"), "wire/out1", 2, false, "to-raw")
		p := c.expectPublish()
		if p.QoS != 1 || p.Dup || p.Retain || p.PacketID == 0 || string(p.Topic) != "wire/out1" || string(p.Payload) != "to-raw" {
			t.Fatalf("got PUBLISH %+v", p)
		}
		c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
		c.ping() // nothing else (no redelivery) came first
	})

	t.Run("UNSUBSCRIBE", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "wire5-sub", CleanStart: true, KeepAlive: 30})
		c.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "wire/unsub", QoS: 1})
		c.sendPacket(&packet.Unsubscribe{PacketID: 9, Filters: []string{"wire/unsub"}})
		fh, body := c.expect(packet.UNSUBACK)
		var ua packet.Unsuback
		if err := ua.Decode(c.version, fh, body); err != nil || ua.PacketID != 9 {
			t.Fatalf("UNSUBACK %+v (%v), want packet ID 9 [MQTT-3.10.4-4]", ua, err)
		}
		publish(t, connect(t, addr, "wire5-pub"), "wire/unsub", 1, false, "gone")
		c.expectNothing(quietPeriod) // [MQTT-3.10.4-1] no longer delivered
	})

	t.Run("outbound QoS 2", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "wire4-sub", CleanStart: true, KeepAlive: 30})
		c.rawSubscribe(1, []packet.ReasonCode{2}, packet.Subscription{Filter: "wire/out2", QoS: 2})
		pub := connect(t, addr, "wire4-pub")
		for i, payload := range []string{"first", "second"} {
			publish(t, pub, "wire/out2", 2, false, payload)
			p := c.expectPublish()
			if p.QoS != 2 || p.Dup || p.PacketID == 0 || string(p.Topic) != "wire/out2" || string(p.Payload) != payload {
				t.Fatalf("message %d: got PUBLISH %+v", i, p)
			}
			c.sendPacket(&packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID})
			c.expectAck(packet.PUBREL, p.PacketID) // flags 0010 checked by Decode [MQTT-3.6.1-1]
			c.sendPacket(&packet.Ack{Type: packet.PUBCOMP, PacketID: p.PacketID})
		}
		c.ping()
	})
}

// TestQoS1Ordering sends 1,000 QoS 1 messages from one publisher; every
// subscriber receives all of them in publishing order [MQTT-4.6.0-6],
// whether its session is clean (live routes) or persistent (durable queue).
func TestQoS1Ordering(t *testing.T) {
	t.Parallel()
	const n = 1000
	_, addr := startServer(t)
	clean, durable := newInbox(), newInbox()
	subscribe(t, connect(t, addr, "order-clean"), "order/t", 1, clean)
	subscribe(t, connect(t, addr, "order-durable", persistent()), "order/t", 1, durable)

	pub := connect(t, addr, "order-pub")
	toks := make([]mqtt.Token, 0, n)
	for i := range n {
		toks = append(toks, pub.Publish("order/t", 1, false, strconv.Itoa(i)))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(4 * waitTimeout) {
			t.Fatalf("PUBLISH %d: no PUBACK", i)
		}
		if err := tok.Error(); err != nil {
			t.Fatalf("PUBLISH %d: %v", i, err)
		}
	}
	for name, in := range map[string]*inbox{"clean": clean, "persistent": durable} {
		got := in.exactlyWithin(t, n, 4*waitTimeout)
		for i, m := range got {
			if m.Payload != strconv.Itoa(i) || m.QoS != 1 {
				t.Errorf("%s subscriber: message %d is %v, want payload %d at QoS 1", name, i, m, i)
				break
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Topics and wildcards

// TestWildcards subscribes one client per filter, publishes to every topic
// and checks that each client receives exactly the matching topics. The
// expected sets are written out by hand from the specification's examples
// (§4.7), not computed.
func TestWildcards(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t, withNATSListener())
	topics := []string{
		"sport",
		"sport/tennis/player1",
		"sport/tennis/player1/ranking",
		"sport/",
		"/finance",
		"a/x",
	}
	// Clients cannot publish to "$" topics [MQTT-4.7.2-1 note]; the server
	// can, so they are injected on the backbone.
	sysTopics := []string{"$SYS/x", "$SYS/monitor/clients"}

	tests := []struct {
		filter string
		want   []string
		ref    string
	}{
		// [MQTT-4.7.1-3] + matches exactly one level, including an empty one.
		{"sport/tennis/+", []string{"sport/tennis/player1"}, "4.7.1.3"},
		{"sport/+", []string{"sport/"}, "4.7.1.3: sport/+ does not match sport"},
		{"+", []string{"sport"}, "4.7.1.3"},
		{"+/+", []string{"/finance", "a/x", "sport/"}, "4.7.1.3"},
		{"/+", []string{"/finance"}, "4.7.1.3"},
		{"+/tennis/#", []string{"sport/tennis/player1", "sport/tennis/player1/ranking"}, "4.7.1.3"},
		// [MQTT-4.7.1-2] # matches the parent level too: sport/# matches sport.
		{"sport/#", []string{"sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking"}, "MQTT-4.7.1-2"},
		// [MQTT-4.7.2-1] filters starting with a wildcard never match $ topics.
		{"#", []string{"/finance", "a/x", "sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking"}, "MQTT-4.7.2-1"},
		{"+/x", []string{"a/x"}, "MQTT-4.7.2-1"},
		{"+/monitor/clients", nil, "MQTT-4.7.2-1"},
		{"$SYS/#", []string{"$SYS/monitor/clients", "$SYS/x"}, "4.7.2"},
		{"$SYS/x", []string{"$SYS/x"}, "4.7.2"},
	}
	inboxes := make([]*inbox, len(tests))
	for i, tt := range tests {
		inboxes[i] = newInbox()
		subscribe(t, connect(t, addr, fmt.Sprintf("wild-%d", i)), tt.filter, 1, inboxes[i])
	}
	pub := connect(t, addr, "wild-pub")
	for _, tp := range topics {
		publish(t, pub, tp, 1, false, "to "+tp)
	}
	for _, tp := range sysTopics {
		injectMessage(t, srv, &broker.Message{Topic: []byte(tp), Payload: []byte("to " + tp), Origin: "elsewhere"})
	}
	for i, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			in := inboxes[i]
			if len(tt.want) > 0 {
				in.wait(t, len(tt.want))
			}
			time.Sleep(quietPeriod)
			var got []string
			for _, m := range in.all() {
				got = append(got, m.Topic)
				if m.Payload != "to "+m.Topic {
					t.Errorf("payload %q on %q", m.Payload, m.Topic)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("filter %q (%s): got topics %q, want %q", tt.filter, tt.ref, got, tt.want)
			}
		})
	}
}

// TestOverlappingSubscriptions: a client whose subscriptions overlap gets
// the message at the highest granted QoS; it may get one copy per matching
// subscription, but no more [MQTT-3.3.5-1]. A raw client counts the copies
// (paho would hand each copy to every matching handler).
func TestOverlappingSubscriptions(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	c := dialRaw(t, addr)
	c.connect(packet.Connect{ClientID: "overlap-sub", CleanStart: true, KeepAlive: 30})
	c.rawSubscribe(1, []packet.ReasonCode{0, 2, 1},
		packet.Subscription{Filter: "ov/#", QoS: 0},
		packet.Subscription{Filter: "ov/+/t", QoS: 2},
		packet.Subscription{Filter: "ov/a/t", QoS: 1})
	pub := connect(t, addr, "overlap-pub")

	// collect reads PUBLISHes (acknowledging them) until quietPeriod
	// passes without one.
	collect := func() []packet.Publish {
		t.Helper()
		var got []packet.Publish
		for {
			fh, body, err := c.read(quietPeriod)
			if isTimeout(err) {
				return got
			}
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			switch fh.Type {
			case packet.PUBLISH:
				var p packet.Publish
				if err := p.Decode(c.version, fh, body); err != nil {
					t.Fatal(err)
				}
				p.Topic, p.Payload = slices.Clone(p.Topic), slices.Clone(p.Payload)
				got = append(got, p)
				switch p.QoS {
				case 1:
					c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
				case 2:
					c.sendPacket(&packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID})
				}
			case packet.PUBREL:
				var a packet.Ack
				if err := a.Decode(c.version, fh, body); err != nil {
					t.Fatal(err)
				}
				c.sendPacket(&packet.Ack{Type: packet.PUBCOMP, PacketID: a.PacketID})
			default:
				t.Fatalf("unexpected %v", fh.Type)
			}
		}
	}

	publish(t, pub, "ov/a/t", 2, false, "all three")
	got := collect()
	if len(got) < 1 || len(got) > 3 {
		t.Fatalf("got %d copies, want 1 to 3 (one per matching subscription): %+v", len(got), got)
	}
	var best byte
	for _, p := range got {
		if string(p.Topic) != "ov/a/t" || string(p.Payload) != "all three" {
			t.Fatalf("unexpected message %+v", p)
		}
		best = max(best, p.QoS)
	}
	if best != 2 {
		t.Fatalf("highest delivered QoS %d, want 2 [MQTT-3.3.5-1]", best)
	}

	// A topic only one of the subscriptions matches arrives once, at that
	// subscription's QoS.
	publish(t, pub, "ov/a/b", 2, false, "one")
	got = collect()
	if len(got) != 1 || got[0].QoS != 0 || string(got[0].Topic) != "ov/a/b" || string(got[0].Payload) != "one" {
		t.Fatalf("got %+v, want one copy at QoS 0", got)
	}
}

// ---------------------------------------------------------------------------
// Retained messages

// TestRetained walks one topic through a retained message's life.
func TestRetained(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connect(t, addr, "ret-pub")
	const tp = "ret/a"

	// Stored and sent to a new subscription with RETAIN=1 [MQTT-3.3.1-5]
	// [MQTT-3.3.1-6] [MQTT-3.3.1-8], at the minimum QoS [MQTT-3.8.4-6].
	publish(t, pub, tp, 1, true, "one")
	first := newInbox()
	subscribe(t, connect(t, addr, "ret-sub1"), tp, 2, first)
	got := first.exactly(t, 1)
	if want := (received{Topic: tp, Payload: "one", QoS: 1, Retained: true}); got[0] != want {
		t.Fatalf("new subscription: got %v, want %v", got[0], want)
	}
	low := newInbox()
	subscribe(t, connect(t, addr, "ret-sub0"), tp, 0, low)
	got = low.exactly(t, 1)
	if want := (received{Topic: tp, Payload: "one", QoS: 0, Retained: true}); got[0] != want {
		t.Fatalf("QoS 0 subscription: got %v, want %v", got[0], want)
	}

	// A retained publish to an established subscription is sent with
	// RETAIN=0 [MQTT-3.3.1-9] and replaces the stored message [MQTT-3.3.1-5].
	publish(t, pub, tp, 2, true, "two")
	got = first.exactly(t, 2)
	if want := (received{Topic: tp, Payload: "two", QoS: 2}); got[1] != want {
		t.Fatalf("live delivery: got %v, want %v", got[1], want)
	}
	second := newInbox()
	subscribe(t, connect(t, addr, "ret-sub2"), tp, 2, second)
	got = second.exactly(t, 1)
	if want := (received{Topic: tp, Payload: "two", QoS: 2, Retained: true}); got[0] != want {
		t.Fatalf("after replacement: got %v, want %v", got[0], want)
	}

	// A zero-length retained publish is delivered as usual [MQTT-3.3.1-10]
	// and clears the topic: new subscriptions get nothing [MQTT-3.3.1-11].
	publish(t, pub, tp, 1, true, "")
	got = first.exactly(t, 3)
	if want := (received{Topic: tp, Payload: "", QoS: 1}); got[2] != want {
		t.Fatalf("clearing publish: got %v, want %v", got[2], want)
	}
	cleared := newInbox()
	subscribe(t, connect(t, addr, "ret-sub3"), tp, 2, cleared)
	cleared.none(t)

	// A non-retained publish is not stored [MQTT-3.3.1-12].
	publish(t, pub, "ret/plain", 1, false, "not kept")
	plain := newInbox()
	subscribe(t, connect(t, addr, "ret-sub4"), "ret/plain", 1, plain)
	plain.none(t)
}

// TestRetainedWildcardLookup stores retained messages on many topics and
// subscribes with wildcard filters: each gets every matching retained
// message exactly once, with RETAIN=1, and none of the others.
func TestRetainedWildcardLookup(t *testing.T) {
	t.Parallel()
	const n = 150
	_, addr := startServer(t)
	pub := connect(t, addr, "retw-pub")
	want := make([]string, 0, n)
	for i := range n {
		tp := fmt.Sprintf("retw/%d/v", i)
		publish(t, pub, tp, 1, true, "v"+strconv.Itoa(i))
		if i != 7 {
			want = append(want, received{Topic: tp, Payload: "v" + strconv.Itoa(i), QoS: 1, Retained: true}.String())
		}
	}
	publish(t, pub, "retw/7/v", 1, true, "") // cleared
	publish(t, pub, "retwx/1/v", 1, true, "other tree")
	publish(t, pub, "retw/1/w", 0, true, "other leaf")
	slices.Sort(want)

	for _, filter := range []string{"retw/+/v", "+/+/v"} {
		t.Run(filter, func(t *testing.T) {
			in := newInbox()
			subscribe(t, connect(t, addr, "retw-sub-"+filter), filter, 1, in)
			w := want
			if filter == "+/+/v" {
				w = append(slices.Clone(want), received{Topic: "retwx/1/v", Payload: "other tree", QoS: 1, Retained: true}.String())
				slices.Sort(w)
			}
			got := sortedStrings(in.exactly(t, len(w)))
			if !slices.Equal(got, w) {
				t.Fatalf("got %d retained messages, want %d:\n got %v\nwant %v", len(got), len(w), got, w)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Sessions

// TestSessionPresent checks the CONNACK Session Present flag.
func TestSessionPresent(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	tests := []struct {
		name          string
		first, second bool // CleanSession of the two connections
		want          bool
		ref           string
	}{
		{"persistent then persistent", false, false, true, "MQTT-3.2.2-2"},
		{"persistent then clean", false, true, false, "MQTT-3.2.2-1"},
		{"clean then persistent", true, false, false, "MQTT-3.2.2-3"},
		{"clean then clean", true, true, false, "MQTT-3.2.2-1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("present-%d", i)
			opts := func(clean bool) []clientOption {
				if clean {
					return nil
				}
				return []clientOption{persistent()}
			}
			c, present := connectSession(t, addr, id, opts(tt.first)...)
			if present {
				t.Fatalf("first connection: session present, want not [MQTT-3.2.2-3]")
			}
			subscribe(t, c, "present/t", 1, newInbox())
			disconnect(c)
			_, present = connectSession(t, addr, id, opts(tt.second)...)
			if present != tt.want {
				t.Fatalf("second connection: session present %v, want %v [%s]", present, tt.want, tt.ref)
			}
		})
	}
}

// TestCleanSessionDiscardsSubscriptions: a clean session's subscriptions end
// with its connection, and connecting clean discards a stored session
// [MQTT-3.1.2-6].
func TestCleanSessionDiscardsSubscriptions(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connect(t, addr, "clean-pub")

	t.Run("clean session ends with the connection", func(t *testing.T) {
		t.Parallel()
		c := connect(t, addr, "clean-1")
		subscribe(t, c, "clean/1", 1, newInbox())
		disconnect(c)
		in := newInbox()
		connect(t, addr, "clean-1", onMessage(in))
		publish(t, pub, "clean/1", 1, false, "nobody listens")
		in.none(t)
	})

	t.Run("clean connect discards a stored session", func(t *testing.T) {
		t.Parallel()
		c := connect(t, addr, "clean-2", persistent())
		subscribe(t, c, "clean/2", 1, newInbox())
		disconnect(c)
		// Queued while offline, then discarded with the session.
		publish(t, pub, "clean/2", 1, false, "queued then discarded")

		in := newInbox()
		c, present := connectSession(t, addr, "clean-2", onMessage(in))
		if present {
			t.Fatal("clean connect: session present [MQTT-3.2.2-1]")
		}
		publish(t, pub, "clean/2", 1, false, "after clean connect")
		in.none(t)
		disconnect(c)

		in2 := newInbox()
		_, present = connectSession(t, addr, "clean-2", persistent(), onMessage(in2))
		if present {
			t.Fatal("persistent connect after a clean one: session present [MQTT-3.1.2-6]")
		}
		publish(t, pub, "clean/2", 1, false, "after persistent reconnect")
		in2.none(t)
	})
}

// TestPersistentSession: a persistent session keeps its subscriptions and
// stores QoS 1 and 2 messages while its client is away [MQTT-3.1.2-4]
// [MQTT-3.1.2-5], delivered when it comes back.
func TestPersistentSession(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	c := connect(t, addr, "ps-1", persistent())
	subscribe(t, c, "ps/q1", 1, nil)
	subscribe(t, c, "ps/q2", 2, nil)
	disconnect(c)

	pub := connect(t, addr, "ps-pub")
	publish(t, pub, "ps/q1", 1, false, "a")
	publish(t, pub, "ps/q2", 2, false, "b")
	publish(t, pub, "ps/q1", 2, false, "c") // delivered at the granted QoS 1
	publish(t, pub, "ps/other", 1, false, "not subscribed")

	in := newInbox()
	c, present := connectSession(t, addr, "ps-1", persistent(), onMessage(in))
	if !present {
		t.Fatal("session present = false, want true [MQTT-3.2.2-2]")
	}
	got := in.exactly(t, 3)
	want := []received{
		{Topic: "ps/q1", Payload: "a", QoS: 1},
		{Topic: "ps/q2", Payload: "b", QoS: 2},
		{Topic: "ps/q1", Payload: "c", QoS: 1},
	}
	if !slices.Equal(sortedStrings(got), sortedStrings(want)) {
		t.Fatalf("queued messages: got %v, want %v", got, want)
	}

	// The restored subscriptions keep working live, without SUBSCRIBE.
	publish(t, pub, "ps/q2", 2, false, "live")
	got = in.exactly(t, 4)
	if w := (received{Topic: "ps/q2", Payload: "live", QoS: 2}); got[3] != w {
		t.Fatalf("live after resume: got %v, want %v", got[3], w)
	}
	disconnect(c)
}

// TestPersistentSessionResend: when a persistent session reconnects, the
// server re-sends unacknowledged PUBLISH packets with DUP=1 and PUBREL
// packets, with their original packet identifiers [MQTT-4.4.0-1]
// [MQTT-3.3.1-1]; once PUBREC has been received it must not send the
// PUBLISH again [MQTT-4.3.3-1].
func TestPersistentSessionResend(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connect(t, addr, "resend-pub")
	tests := []struct {
		name   string
		qos    byte
		pubrec bool // answer PUBREC (and get PUBREL) before going away
	}{
		{"QoS 1 without PUBACK", 1, false},
		{"QoS 2 without PUBREC", 2, false},
		{"QoS 2 after PUBREC", 2, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("resend-%d", i)
			tp := fmt.Sprintf("resend/%d", i)
			c := dialRaw(t, addr)
			c.connect(packet.Connect{ClientID: id, KeepAlive: 30})
			c.rawSubscribe(1, []packet.ReasonCode{packet.ReasonCode(tt.qos)}, packet.Subscription{Filter: tp, QoS: tt.qos})
			publish(t, pub, tp, tt.qos, false, "unacknowledged")
			p := c.expectPublish()
			if p.QoS != tt.qos || p.Dup || string(p.Payload) != "unacknowledged" {
				t.Fatalf("first delivery: %+v", p)
			}
			if tt.pubrec {
				c.sendPacket(&packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID})
				c.expectAck(packet.PUBREL, p.PacketID)
			}
			c.sendPacket(&packet.Disconnect{})
			c.nc.Close()

			c2 := dialRaw(t, addr)
			ack := c2.connect(packet.Connect{ClientID: id, KeepAlive: 30})
			if !ack.SessionPresent {
				t.Fatal("session present = false, want true")
			}
			if tt.pubrec {
				c2.expectAck(packet.PUBREL, p.PacketID) // not the PUBLISH again
				c2.sendPacket(&packet.Ack{Type: packet.PUBCOMP, PacketID: p.PacketID})
			} else {
				r := c2.expectPublish()
				if r.QoS != tt.qos || !r.Dup || r.PacketID != p.PacketID || string(r.Payload) != "unacknowledged" {
					t.Fatalf("resent PUBLISH: dup %v id %d qos %d payload %q; want dup true id %d qos %d", r.Dup, r.PacketID, r.QoS, r.Payload, p.PacketID, tt.qos)
				}
				if tt.qos == 1 {
					c2.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: r.PacketID})
				} else {
					c2.sendPacket(&packet.Ack{Type: packet.PUBREC, PacketID: r.PacketID})
					c2.expectAck(packet.PUBREL, r.PacketID)
					c2.sendPacket(&packet.Ack{Type: packet.PUBCOMP, PacketID: r.PacketID})
				}
			}
			c2.expectNothing(quietPeriod)
		})
	}
}

// TestClientIdentifier covers zero-length client IDs and MQTT 3.1.
func TestClientIdentifier(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	tests := []struct {
		name    string
		connect packet.Connect
		want    packet.ReasonCode
	}{
		// [MQTT-3.1.3-6] [MQTT-3.1.3-7] the server assigns an ID.
		{"empty ID clean", packet.Connect{CleanStart: true}, packet.ConnAccepted},
		// [MQTT-3.1.3-8] CONNACK 0x02, then close.
		{"empty ID persistent", packet.Connect{CleanStart: false}, packet.ConnRefusedIdentifier},
		// MQTT 3.1 ("MQIsdp", level 3) is spoken.
		{"MQTT 3.1", packet.Connect{ProtocolVersion: packet.V31, ClientID: "old-client", CleanStart: true}, packet.ConnAccepted},
		// MQTT 3.1 requires 1 to 23 characters.
		{"MQTT 3.1 empty ID", packet.Connect{ProtocolVersion: packet.V31, CleanStart: true}, packet.ConnRefusedIdentifier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			tt.connect.KeepAlive = 30
			ack := c.connack(tt.connect)
			if ack.ReasonCode != tt.want || ack.SessionPresent {
				t.Fatalf("CONNACK code 0x%02X session present %v, want 0x%02X and false", byte(ack.ReasonCode), ack.SessionPresent, byte(tt.want))
			}
			if tt.want != packet.ConnAccepted {
				c.expectClosed(waitTimeout) // [MQTT-3.2.2-5]
				return
			}
			c.ping()
			c.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "cid/" + tt.name, QoS: 1})
			c.sendPacket(publishPacket("cid/"+tt.name, 1, 2, "echo"))
			// PUBACK and the echoed PUBLISH may come in either order.
			var gotAck, gotPub bool
			for !gotAck || !gotPub {
				fh, body, err := c.read(waitTimeout)
				if err != nil {
					t.Fatalf("waiting for PUBACK and PUBLISH: %v", err)
				}
				switch fh.Type {
				case packet.PUBACK:
					gotAck = true
				case packet.PUBLISH:
					var p packet.Publish
					if err := p.Decode(c.version, fh, body); err != nil {
						t.Fatal(err)
					}
					if string(p.Payload) != "echo" || p.QoS != 1 {
						t.Fatalf("echo: %+v", p)
					}
					gotPub = true
				default:
					t.Fatalf("unexpected %v", fh.Type)
				}
			}
		})
	}
}

// TestMQTT31Client: paho speaking MQTT 3.1 exchanges messages with a 3.1.1
// client in both directions.
func TestMQTT31Client(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	oldIn, newIn := newInbox(), newInbox()
	old := connect(t, addr, "v31", protocol31())
	cur := connect(t, addr, "v311")
	subscribe(t, old, "v31/in", 2, oldIn)
	subscribe(t, cur, "v31/out", 2, newIn)
	for q := byte(0); q <= 2; q++ {
		publish(t, cur, "v31/in", q, false, fmt.Sprint("to 3.1 at ", q))
		publish(t, old, "v31/out", q, false, fmt.Sprint("from 3.1 at ", q))
	}
	for name, in := range map[string]*inbox{"v31/in": oldIn, "v31/out": newIn} {
		got := in.exactly(t, 3)
		var want []received
		for q := byte(0); q <= 2; q++ {
			p := "to 3.1 at "
			if name == "v31/out" {
				p = "from 3.1 at "
			}
			want = append(want, received{Topic: name, Payload: fmt.Sprint(p, q), QoS: q})
		}
		if !slices.Equal(sortedStrings(got), sortedStrings(want)) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
}

// ---------------------------------------------------------------------------
// Will

// TestWill publishes wills from raw clients that go away in different ways.
func TestWill(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	tests := []struct {
		name       string
		retain     bool
		disconnect bool // send DISCONNECT before closing
		want       bool
		ref        string
	}{
		{"abnormal close", false, false, true, "MQTT-3.1.2-8"},
		{"DISCONNECT", false, true, false, "MQTT-3.1.2-10"},
		{"abnormal close with retain", true, false, true, "MQTT-3.1.2-17"},
		{"DISCONNECT with retain", true, true, false, "MQTT-3.14.4-3"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tp := fmt.Sprintf("will/%d", i)
			live := newInbox()
			subscribe(t, connect(t, addr, fmt.Sprintf("will-watch-%d", i)), tp, 2, live)

			c := dialRaw(t, addr)
			c.connect(packet.Connect{
				ClientID: fmt.Sprintf("will-%d", i), CleanStart: true, KeepAlive: 30,
				WillFlag: true, WillTopic: tp, WillPayload: []byte("gone " + tt.name), WillQoS: 1, WillRetain: tt.retain,
			})
			c.ping()
			if tt.disconnect {
				c.sendPacket(&packet.Disconnect{})
			}
			c.nc.Close()

			if !tt.want {
				live.none(t)
				later := newInbox()
				subscribe(t, connect(t, addr, fmt.Sprintf("will-late-%d", i)), tp, 2, later)
				later.none(t)
				return
			}
			// Live subscribers get it with RETAIN=0 [MQTT-3.3.1-9], at the
			// will's QoS.
			got := live.exactly(t, 1)
			if want := (received{Topic: tp, Payload: "gone " + tt.name, QoS: 1}); got[0] != want {
				t.Fatalf("[%s] got %v, want %v", tt.ref, got[0], want)
			}
			// A retained will is stored [MQTT-3.1.2-17]; otherwise not
			// [MQTT-3.1.2-16].
			later := newInbox()
			subscribe(t, connect(t, addr, fmt.Sprintf("will-late-%d", i)), tp, 2, later)
			if !tt.retain {
				later.none(t)
				return
			}
			got = later.exactly(t, 1)
			if want := (received{Topic: tp, Payload: "gone " + tt.name, QoS: 1, Retained: true}); got[0] != want {
				t.Fatalf("retained will: got %v, want %v", got[0], want)
			}
		})
	}
}

// TestWillPaho: a paho client's will is published when its TCP connection
// breaks [MQTT-3.1.2-8] and not when it disconnects [MQTT-3.1.2-10].
func TestWillPaho(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	in := newInbox()
	subscribe(t, connect(t, addr, "pwill-watch"), "pwill/#", 1, in)

	c := connect(t, addr, "pwill-clean", withWill("pwill/clean", "should not appear", 1, false))
	disconnect(c)

	var mu sync.Mutex
	var conn net.Conn
	connect(t, addr, "pwill-lost", withWill("pwill/lost", "connection lost", 2, false),
		func(o *mqtt.ClientOptions) {
			o.SetCustomOpenConnectionFn(func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
				nc, err := net.DialTimeout("tcp", uri.Host, waitTimeout)
				mu.Lock()
				conn = nc
				mu.Unlock()
				return nc, err
			})
		})
	mu.Lock()
	conn.Close()
	mu.Unlock()

	got := in.exactly(t, 1)
	if want := (received{Topic: "pwill/lost", Payload: "connection lost", QoS: 1}); got[0] != want {
		t.Fatalf("got %v, want %v", got[0], want)
	}
}

// ---------------------------------------------------------------------------
// Takeover

// TestTakeover: a second connection with the same client ID closes the
// first [MQTT-3.1.4-2]; a persistent session moves to it with its
// subscriptions.
func TestTakeover(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	pub := connect(t, addr, "tk-pub")

	t.Run("clean", func(t *testing.T) {
		t.Parallel()
		lost := make(chan error, 1)
		first := connect(t, addr, "tk-clean", onLost(lost))
		subscribe(t, first, "tk/clean", 1, newInbox())
		second := connect(t, addr, "tk-clean")
		select {
		case <-lost:
		case <-time.After(waitTimeout):
			t.Fatal("first connection still open after takeover [MQTT-3.1.4-2]")
		}
		in := newInbox()
		subscribe(t, second, "tk/clean2", 1, in)
		publish(t, pub, "tk/clean2", 1, false, "to second")
		got := in.exactly(t, 1)
		if want := (received{Topic: "tk/clean2", Payload: "to second", QoS: 1}); got[0] != want {
			t.Fatalf("got %v, want %v", got[0], want)
		}
	})

	t.Run("persistent", func(t *testing.T) {
		t.Parallel()
		lost := make(chan error, 1)
		firstIn := newInbox()
		first := connect(t, addr, "tk-persist", persistent(), onLost(lost), onMessage(firstIn))
		subscribe(t, first, "tk/persist", 1, nil)
		in := newInbox()
		_, present := connectSession(t, addr, "tk-persist", persistent(), onMessage(in))
		if !present {
			t.Fatal("takeover: session present = false, want true")
		}
		select {
		case <-lost:
		case <-time.After(waitTimeout):
			t.Fatal("first connection still open after takeover [MQTT-3.1.4-2]")
		}
		publish(t, pub, "tk/persist", 1, false, "moved")
		got := in.exactly(t, 1)
		if want := (received{Topic: "tk/persist", Payload: "moved", QoS: 1}); got[0] != want {
			t.Fatalf("got %v, want %v", got[0], want)
		}
		if n := len(firstIn.all()); n != 0 {
			t.Fatalf("first connection got %d messages after takeover", n)
		}
	})

	t.Run("raw first connection sees the close", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "tk-raw", CleanStart: true, KeepAlive: 30})
		connect(t, addr, "tk-raw")
		c.expectClosed(waitTimeout)
	})
}

// ---------------------------------------------------------------------------
// Keep-alive

// TestKeepAlive: the server closes a connection that is silent for one and
// a half keep-alive periods and publishes its will [MQTT-3.1.2-24]; a
// client that pings in time stays connected.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)

	t.Run("silent client", func(t *testing.T) {
		t.Parallel()
		in := newInbox()
		subscribe(t, connect(t, addr, "ka-watch"), "ka/will", 1, in)
		c := dialRaw(t, addr)
		c.connect(packet.Connect{
			ClientID: "ka-silent", CleanStart: true, KeepAlive: 1,
			WillFlag: true, WillTopic: "ka/will", WillPayload: []byte("timed out"), WillQoS: 1,
		})
		took := c.expectClosed(4 * time.Second)
		if took < 1250*time.Millisecond || took > 3*time.Second {
			t.Fatalf("closed after %v, want about 1.5 s", took)
		}
		got := in.exactly(t, 1)
		if want := (received{Topic: "ka/will", Payload: "timed out", QoS: 1}); got[0] != want {
			t.Fatalf("will: got %v, want %v", got[0], want)
		}
	})

	t.Run("pinging client", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		c.connect(packet.Connect{ClientID: "ka-pinger", CleanStart: true, KeepAlive: 1})
		for range 5 {
			time.Sleep(500 * time.Millisecond)
			c.ping()
		}
	})
}

// ---------------------------------------------------------------------------
// Authentication

// TestAnonymousRefused: without AllowAnonymous a client without credentials
// gets CONNACK 0x05 and the connection is closed [MQTT-3.2.2-5].
func TestAnonymousRefused(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, withoutAnonymous())

	c := dialRaw(t, addr)
	ack := c.connack(packet.Connect{ClientID: "anon", CleanStart: true, KeepAlive: 30})
	if ack.ReasonCode != packet.ConnRefusedNotAuthorized || ack.SessionPresent {
		t.Fatalf("CONNACK code 0x%02X session present %v, want 0x05 and false", byte(ack.ReasonCode), ack.SessionPresent)
	}
	c.expectClosed(waitTimeout)

	_, tok := tryConnect(t, addr, "anon-paho")
	if tok.Error() == nil || tok.ReturnCode() != 5 {
		t.Fatalf("paho: error %v return code %d, want refusal with 5", tok.Error(), tok.ReturnCode())
	}
}

// ---------------------------------------------------------------------------
// Shared and local subscriptions

// TestSharedSubscriptions: each message to a share group goes to exactly
// one member (MQTT 5 §4.8.2, EMQ's $queue/); other groups and plain
// subscribers each get every message.
func TestSharedSubscriptions(t *testing.T) {
	t.Parallel()
	const n = 40
	_, addr := startServer(t)
	tests := []struct {
		name, topic string
		filters     []string // one member per filter
	}{
		{"share group", "sh/t", []string{"$share/g/sh/t", "$share/g/sh/t", "$share/g/sh/+"}},
		{"queue", "qu/t", []string{"$queue/qu/t", "$queue/qu/t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The third "$share/g/sh/+" member is a different share (group
			// and filter identify a share), so it gets every message.
			group := newInbox()
			var members int
			var other *inbox
			for i, f := range tt.filters {
				c := connect(t, addr, fmt.Sprintf("%s-member-%d", tt.topic, i))
				if f == "$share/g/sh/+" {
					other = newInbox()
					subscribe(t, c, f, 1, other)
					continue
				}
				subscribe(t, c, f, 1, group)
				members++
			}
			plain := newInbox()
			subscribe(t, connect(t, addr, tt.topic+"-plain"), tt.topic, 1, plain)

			pub := connect(t, addr, tt.topic+"-pub")
			var want []string
			for i := range n {
				publish(t, pub, tt.topic, 1, false, strconv.Itoa(i))
				want = append(want, received{Topic: tt.topic, Payload: strconv.Itoa(i), QoS: 1}.String())
			}
			slices.Sort(want)

			if got := sortedStrings(plain.exactly(t, n)); !slices.Equal(got, want) {
				t.Fatalf("plain subscriber: got %v, want %v", got, want)
			}
			if other != nil {
				if got := sortedStrings(other.exactly(t, n)); !slices.Equal(got, want) {
					t.Fatalf("second share: got %v, want %v", got, want)
				}
			}
			group.wait(t, n)
			time.Sleep(quietPeriod)
			if got := sortedStrings(group.all()); !slices.Equal(got, want) {
				t.Fatalf("share group of %d members: got %d deliveries, want each of the %d messages exactly once: %v", members, len(got), n, got)
			}
		})
	}
}

// TestLocalSubscription: "$local/<filter>" receives messages published on
// the same node.
func TestLocalSubscription(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	in := newInbox()
	// paho does not know "$local/" and passes its messages to the default
	// handler.
	subscribe(t, connect(t, addr, "local-sub", onMessage(in)), "$local/lc/+", 1, nil)
	pub := connect(t, addr, "local-pub")
	publish(t, pub, "lc/a", 1, false, "here")
	publish(t, pub, "other/a", 1, false, "not matching")
	got := in.exactly(t, 1)
	if want := (received{Topic: "lc/a", Payload: "here", QoS: 1}); got[0] != want {
		t.Fatalf("got %v, want %v", got[0], want)
	}
}
