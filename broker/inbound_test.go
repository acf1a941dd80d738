package broker

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/relaymq/relay/broker/packet"
)

// When a later QoS 1 PUBLISH fails before an earlier one succeeds, a 3.1.1
// client gets the earlier PUBACK only, and the connection closes so that it
// sends the failed one again [MQTT-4.6.0-2].
func TestFailedQoS1ClosesConnection(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &Broker{log: lg}
	b.opts.MaxQueued = 10
	nc, peer := net.Pipe()
	defer nc.Close()
	defer peer.Close()
	c := &client{b: b, nc: nc, version: packet.V311, inSem: make(chan struct{}, 3),
		quit: make(chan struct{}), done: make(chan struct{})}
	for range 3 {
		c.inSem <- struct{}{}
	}
	c.acks = []pendingAck{{id: 1}, {id: 2}, {id: 3}}
	c.completeAck(1, ErrBackboneUnavailable) // the second fails first
	c.completeAck(2, nil)
	c.completeAck(0, nil) // the first succeeds
	if len(c.ctrl) != 1 || c.ctrl[0].id != 1 {
		t.Fatalf("PUBACKs queued: %+v, want only packet 1", c.ctrl)
	}
	if len(c.acks) != 0 || len(c.inSem) != 0 {
		t.Fatalf("%d acks pending, %d inbound slots held; want 0 and 0", len(c.acks), len(c.inSem))
	}
	select {
	case <-c.quit:
	default:
		t.Fatal("a 3.1.1 publish failed, but the connection stays open")
	}
}
