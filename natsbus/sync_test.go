package natsbus

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// TestSyncNewRoute: a message published on another NATS connection right
// after Sync reaches a subscription made just before it.
func TestSyncNewRoute(t *testing.T) {
	a, ns := startBus(t, "a")
	b := newBus(t, ns, "b")
	ctx := context.Background()
	got := make(chan string, 1)
	for i := range 200 {
		name := fmt.Sprintf("sync/%d", i)
		f, _ := topic.ParseFilter(name)
		r, err := a.Subscribe("acme", f, broker.ClassAll, func(m *broker.Message) {
			select {
			case got <- string(m.Topic):
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(&broker.Message{Tenant: "acme", Topic: []byte(name), Payload: []byte("x"), Origin: "b"}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case topic := <-got:
			if topic != name {
				t.Fatalf("got %q, want %q", topic, name)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("subscription %d missed a message published right after Sync", i)
		}
		r.Close()
	}
}

// TestSubackAcrossEdges: on two edges with their own NATS connections, a
// QoS 0 message published on edge B right after edge A sent SUBACK for a
// new topic reaches A's subscriber — every time.
func TestSubackAcrossEdges(t *testing.T) {
	busA, ns := startBus(t, "a")
	busB := newBus(t, ns, "b")
	addrA := serveEdge(t, ns, busA, "a")
	addrB := serveEdge(t, ns, busB, "b")
	sub := mqttDial(t, addrA, "sub")
	pub := mqttDial(t, addrB, "pub")
	for i := range 100 {
		name := fmt.Sprintf("fresh/%d", i)
		sub.send(&packet.Subscribe{PacketID: uint16(i + 1), Subscriptions: []packet.Subscription{{Filter: name}}})
		if fh, _ := sub.read(); fh.Type != packet.SUBACK {
			t.Fatalf("got %v, want SUBACK", fh.Type)
		}
		pub.send(&packet.Publish{Topic: []byte(name), Payload: []byte("hello")})
		fh, body := sub.read()
		var p packet.Publish
		if fh.Type != packet.PUBLISH || p.Decode(packet.V311, fh, body) != nil || string(p.Topic) != name {
			t.Fatalf("topic %d: got %v %q", i, fh.Type, p.Topic)
		}
	}
}

// serveEdge runs a broker on bus, listening on a loopback port.
func serveEdge(t *testing.T, _ *server.Server, bus *Bus, node string) string {
	t.Helper()
	br, err := broker.New(broker.Options{
		NodeID: node, Backbone: bus, Authenticator: broker.Anonymous{Allow: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		br.Serve(l)
	}()
	t.Cleanup(func() {
		br.Close()
		<-done
	})
	return l.Addr().String()
}

// mqttClient is a minimal MQTT 3.1.1 client for these tests.
type mqttClient struct {
	t    *testing.T
	conn net.Conn
	rd   *packet.Reader
}

func mqttDial(t *testing.T, addr, id string) *mqttClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &mqttClient{t: t, conn: conn, rd: packet.NewReader(bufio.NewReader(conn), 0)}
	c.send(&packet.Connect{ProtocolName: "MQTT", ProtocolVersion: packet.V311, CleanStart: true, ClientID: id})
	if fh, _ := c.read(); fh.Type != packet.CONNACK {
		t.Fatalf("got %v, want CONNACK", fh.Type)
	}
	return c
}

func (c *mqttClient) send(p interface {
	Encode([]byte, byte) ([]byte, error)
}) {
	c.t.Helper()
	b, err := p.Encode(nil, packet.V311)
	if err == nil {
		_, err = c.conn.Write(b)
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *mqttClient) read() (packet.FixedHeader, []byte) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		c.t.Fatal(err)
	}
	return fh, body
}
