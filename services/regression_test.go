package services_test

import (
	"strings"
	"testing"
	"time"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
)

// Regressions found in review.

// A PUBLISH larger than the write buffer, as the first write after the
// connection was idle longer than WriteTimeout, must not hit a stale write
// deadline.
func TestLargePublishAfterIdle(t *testing.T) {
	_, addr := startServer(t, withBroker(func(o *broker.Options) { o.WriteTimeout = 300 * time.Millisecond }))
	sub := dialRaw(t, addr)
	sub.connect(packet.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 60})
	sub.rawSubscribe(1, []packet.ReasonCode{0}, packet.Subscription{Filter: "big", QoS: 0})
	time.Sleep(700 * time.Millisecond)
	pub := connect(t, addr, "pub")
	publish(t, pub, "big", 0, false, strings.Repeat("x", 8000))
	fh, _, err := sub.read(3 * time.Second)
	if err != nil {
		t.Fatalf("subscriber lost: %v", err)
	}
	if fh.Type != packet.PUBLISH {
		t.Fatalf("got %v, want PUBLISH", fh.Type)
	}
}

// A persistent session's QoS 2 message that the client takes longer than
// the backbone's ack wait to PUBREC is offered again by JetStream; it must
// not reach the client a second time [MQTT-4.3.3-1].
func TestSlowPubrecNoRedelivery(t *testing.T) {
	_, addr := startServer(t, func(c *services.ServeConfig) { c.Edge.Bus.AckWait = time.Second })
	sub := dialRaw(t, addr)
	sub.connect(packet.Connect{ClientID: "psub", CleanStart: false, KeepAlive: 60})
	sub.rawSubscribe(1, []packet.ReasonCode{2}, packet.Subscription{Filter: "q", QoS: 2})
	pub := connect(t, addr, "pub")
	publish(t, pub, "q", 2, false, "once")
	p := sub.expectPublish()
	t.Logf("first PUBLISH id %d dup %v", p.PacketID, p.Dup)
	time.Sleep(2500 * time.Millisecond)
	sub.sendPacket(&packet.Ack{Type: packet.PUBREC, PacketID: p.PacketID})
	sub.expectAck(packet.PUBREL, p.PacketID)
	sub.sendPacket(&packet.Ack{Type: packet.PUBCOMP, PacketID: p.PacketID})
	for {
		fh, body, err := sub.read(2 * time.Second)
		if err != nil {
			t.Logf("nothing more: %v", err)
			return
		}
		var q packet.Publish
		q.Decode(packet.V311, fh, body)
		t.Errorf("after PUBCOMP got %v id %d dup %v payload %q", fh.Type, q.PacketID, q.Dup, q.Payload)
		if fh.Type == packet.PUBLISH {
			sub.sendPacket(&packet.Ack{Type: packet.PUBREC, PacketID: q.PacketID})
		}
	}
}
