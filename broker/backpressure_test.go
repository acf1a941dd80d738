package broker

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// publishN writes n QoS 0 PUBLISHes to topic from c, numbered in their
// first 8 payload bytes, and returns once all are written (TCP pushes
// back on it while the broker holds the publisher back). It reports
// errors on errc.
func publishN(c *rawClient, topic string, n, size int, errc chan<- error) {
	var buf []byte
	payload := make([]byte, size)
	for i := range n {
		binary.BigEndian.PutUint64(payload, uint64(i))
		buf, _ = (&packet.Publish{Topic: []byte(topic), Payload: payload}).Encode(buf[:0], packet.V311)
		c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.conn.Write(buf); err != nil {
			errc <- err
			return
		}
	}
	errc <- nil
}

// A publisher on this edge faster than its subscriber is held back (its
// socket is not read while the subscriber's queue is full) instead of
// losing QoS 0 messages, as long as the subscriber keeps reading: the
// subscriber's queue holds 50 messages, the publisher sends 5,000 at
// once, the subscriber reads them slowly and gets every one, in order.
func TestLocalPublisherHeldBack(t *testing.T) {
	const total = 5000
	b, addr := startEdge(t, Options{MaxQueued: 50})
	sub := dialEdge(t, addr, packet.V311, "sub", 0)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "slow/#", QoS: 0}}})
	if fh, _ := sub.read(); fh.Type != packet.SUBACK {
		t.Fatalf("got %v, want SUBACK", fh.Type)
	}
	pub := dialEdge(t, addr, packet.V311, "pub", 0)
	errc := make(chan error, 1)
	go publishN(pub, "slow/a", total, 200, errc)
	for i := range total {
		if i%500 == 0 {
			time.Sleep(5 * time.Millisecond) // a slow but live reader
		}
		fh, body := sub.read()
		var p packet.Publish
		if fh.Type != packet.PUBLISH || p.Decode(packet.V311, fh, body) != nil {
			t.Fatalf("message %d: got %v", i, fh.Type)
		}
		if got := binary.BigEndian.Uint64(p.Payload); got != uint64(i) {
			t.Fatalf("message %d: got message %d (dropped %d so far)", i, got, b.Stats().Dropped.Load())
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if d := b.Stats().Dropped.Load(); d != 0 {
		t.Fatalf("%d messages dropped", d)
	}
}

// A subscriber that stops reading holds a publisher back only for a
// while (maxQueueWait without progress); then its messages are dropped
// and counted, and the other subscriber of the same topic — and the
// publisher — carry on: the healthy one gets all of them.
func TestStalledSubscriberDoesNotStopOthers(t *testing.T) {
	const total = 3000
	b, addr := startEdge(t, Options{MaxQueued: 20})
	for i, id := range []string{"stalled", "healthy"} {
		c := dialEdge(t, addr, packet.V311, id, 0)
		c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "s/#", QoS: 0}}})
		if fh, _ := c.read(); fh.Type != packet.SUBACK {
			t.Fatalf("got %v, want SUBACK", fh.Type)
		}
		if i == 1 {
			pub := dialEdge(t, addr, packet.V311, "pub", 0)
			errc := make(chan error, 1)
			// 16 KiB payloads: the stalled reader's socket buffers fill
			// after a few hundred.
			go publishN(pub, "s/x", total, 16<<10, errc)
			for n := range total {
				fh, body := c.read()
				var p packet.Publish
				if fh.Type != packet.PUBLISH || p.Decode(packet.V311, fh, body) != nil {
					t.Fatalf("message %d: got %v", n, fh.Type)
				}
				if got := binary.BigEndian.Uint64(p.Payload); got != uint64(n) {
					t.Fatalf("healthy subscriber: message %d: got message %d", n, got)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
	}
	if b.Stats().Dropped.Load() == 0 {
		t.Fatal("nothing dropped for the subscriber that stopped reading")
	}
}

// A subscriber whose QoS 1 queue cannot move (it acknowledges nothing, its
// inflight window is full) while its socket still carries other packets
// (PUBACKs of its own QoS 1 telemetry) makes no progress: the publisher
// held back by it is released after maxQueueWait and its other messages
// flow (review finding: control packets once counted as progress).
func TestStuckQoS1SubscriberReleasesPublisher(t *testing.T) {
	_, addr := startEdge(t, Options{MaxQueued: 10, MaxInflight: 2})

	healthy := dialEdge(t, addr, packet.V311, "healthy", 0)
	healthy.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "other", QoS: 0}}})
	if fh, _ := healthy.read(); fh.Type != packet.SUBACK {
		t.Fatalf("got %v, want SUBACK", fh.Type)
	}

	stuck := dialEdge(t, addr, packet.V311, "stuck", 0)
	stuck.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "cmd", QoS: 1}}})
	if fh, _ := stuck.read(); fh.Type != packet.SUBACK {
		t.Fatalf("got %v, want SUBACK", fh.Type)
	}
	stop := make(chan struct{})
	defer close(stop)
	// The stuck device reads everything but acknowledges no command; it
	// keeps publishing QoS 1 telemetry (the broker PUBACKs it).
	go func() {
		for {
			stuck.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, _, err := stuck.rd.ReadPacket(); err != nil {
				return
			}
		}
	}()
	go func() {
		id := uint16(1)
		var buf []byte
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			buf, _ = (&packet.Publish{QoS: 1, PacketID: id, Topic: []byte("tele"), Payload: []byte("t")}).Encode(buf[:0], packet.V311)
			stuck.conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := stuck.conn.Write(buf); err != nil {
				return
			}
			id = id%60000 + 1
		}
	}()

	pub := dialEdge(t, addr, packet.V311, "pub", 0)
	go func() {
		var buf []byte
		for i := range 50 {
			buf, _ = (&packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: []byte("cmd"), Payload: []byte("c")}).Encode(buf[:0], packet.V311)
			pub.conn.Write(buf)
		}
		buf, _ = (&packet.Publish{Topic: []byte("other"), Payload: []byte("hello")}).Encode(buf[:0], packet.V311)
		pub.conn.Write(buf)
	}()
	healthy.conn.SetReadDeadline(time.Now().Add(6 * time.Second))
	fh, _, err := healthy.rd.ReadPacket()
	if err != nil {
		t.Fatalf("the publisher is still held back after 6 s by a subscriber whose queue has not moved (maxQueueWait is %v): %v", maxQueueWait, err)
	}
	if fh.Type != packet.PUBLISH {
		t.Fatalf("got %v", fh.Type)
	}
}
