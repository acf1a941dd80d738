package broker

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/relaymq/relay/broker/packet"
)

// writerClient returns a client of the given version whose writer goes to
// io.Discard, for tests of writeItem.
func writerClient(version byte) *client {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &Broker{log: lg}
	nc, _ := net.Pipe()
	return &client{b: b, nc: nc, version: version, bw: bufio.NewWriterSize(io.Discard, 4096),
		tc: &tenantCounters{}, problemInfo: true, slotFree: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
}

// TestWritePublishAllocs: sending a QoS 0 PUBLISH — with MQTT 5 properties,
// a subscription identifier, a topic alias and a Maximum Packet Size check
// — allocates nothing once the alias is assigned.
func TestWritePublishAllocs(t *testing.T) {
	props := &packet.Properties{}
	props.Set(packet.PropContentType)
	props.ContentType = "application/json"
	m := &Message{Topic: []byte("tenant/devices/d1/telemetry"), Payload: make([]byte, 256), Props: props}
	for _, tc := range []struct {
		name    string
		version byte
		setup   func(*client)
	}{
		{"v3", packet.V311, func(*client) {}},
		{"v5", packet.V5, func(*client) {}},
		{"v5 max size, alias, sub ID", packet.V5, func(c *client) { c.maxOut = 1 << 20; c.aliasMax = 8 }},
		{"v5 dropped for size", packet.V5, func(c *client) { c.maxOut = 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := writerClient(tc.version)
			tc.setup(c)
			it := outItem{typ: packet.PUBLISH, msg: m, subID: 7}
			if err := c.writeItem(&it); err != nil { // assigns the alias
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(200, func() {
				if err := c.writeItem(&it); err != nil {
					t.Fatal(err)
				}
				c.bw.Flush()
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per QoS 0 PUBLISH, want 0", allocs)
			}
		})
	}
}

// TestOutboundTopicAliases: aliases are assigned in order up to the
// client's maximum [MQTT-3.3.2-11] and reused with an empty topic; a
// message dropped for its size gets none (the client never learns it)
// [MQTT-3.1.2-25].
func TestOutboundTopicAliases(t *testing.T) {
	c := writerClient(packet.V5)
	c.aliasMax = 2
	c.maxOut = 200
	var out bytes.Buffer
	c.bw = bufio.NewWriter(&out)
	send := func(topic string, size int) (p packet.Publish, sent bool) {
		t.Helper()
		out.Reset()
		it := outItem{typ: packet.PUBLISH, msg: &Message{Topic: []byte(topic), Payload: make([]byte, size)}}
		if err := c.writeItem(&it); err != nil {
			t.Fatal(err)
		}
		c.bw.Flush()
		if out.Len() == 0 {
			return p, false
		}
		fh, body, err := packet.NewReader(bufio.NewReader(&out), 0).ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Decode(packet.V5, fh, body); err != nil {
			t.Fatal(err)
		}
		return p, true
	}
	if _, sent := send("big", 500); sent {
		t.Fatal("sent a PUBLISH over the client's maximum packet size")
	}
	steps := []struct {
		topic string
		alias uint16
		wire  string // topic name on the wire
	}{{"a", 1, "a"}, {"b", 2, "b"}, {"c", 0, "c"}, {"a", 1, ""}, {"b", 2, ""}, {"big", 0, "big"}}
	for _, s := range steps {
		p, sent := send(s.topic, 10)
		if !sent || p.Properties.TopicAlias != s.alias || string(p.Topic) != s.wire {
			t.Fatalf("%s: sent %v, alias %d, topic %q; want alias %d, topic %q", s.topic, sent, p.Properties.TopicAlias, p.Topic, s.alias, s.wire)
		}
	}
	if d := c.tc.dropped.Load(); d != 1 {
		t.Fatalf("dropped %d, want 1", d)
	}
}

// BenchmarkWritePublish is the writer's per-message cost for a QoS 0
// PUBLISH with a 256-byte payload: properties, alias and size check
// included for MQTT 5.
func BenchmarkWritePublish(b *testing.B) {
	m := &Message{Topic: []byte("tenant/devices/d1/telemetry"), Payload: make([]byte, 256)}
	for _, tc := range []struct {
		name    string
		version byte
		setup   func(*client)
	}{
		{"v3", packet.V311, func(*client) {}},
		{"v5", packet.V5, func(*client) {}},
		{"v5_limits", packet.V5, func(c *client) { c.maxOut = 1 << 20; c.aliasMax = 8 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := writerClient(tc.version)
			tc.setup(c)
			it := outItem{typ: packet.PUBLISH, msg: m, subID: 3}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.writeItem(&it); err != nil {
					b.Fatal(err)
				}
				if c.bw.Buffered() > 3000 {
					c.bw.Flush()
				}
			}
		})
	}
}
