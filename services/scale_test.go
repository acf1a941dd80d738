package services

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/internal/testlog"
	"github.com/relaymq/relay/natsbus"
)

// TestPersistentSessionsScale holds 10,000 persistent sessions (each with
// two QoS 1 subscriptions, so 10,000 JetStream consumers) on one node,
// fans a message out to all of them while they are offline, sends each its
// own message, and checks that every session gets both on reconnect.
// RELAY_SCALE_SESSIONS overrides the count; -short uses 1,000.
func TestPersistentSessionsScale(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	if v := os.Getenv("RELAY_SCALE_SESSIONS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	srv, err := NewServer(ServeConfig{
		DataDir:  t.TempDir(),
		Logger:   scaleLogger(t),
		Edge:     EdgeConfig{MQTTAddr: "127.0.0.1:0", AllowAnonymous: true, NodeID: "scale"},
		NATSAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	addr := srv.Edge().MQTTAddr().String()
	const workers = 32

	// Phase 1: create the sessions.
	start := time.Now()
	parallel(t, n, workers, func(i int) error {
		c, present, err := rawConnect(addr, "s-"+strconv.Itoa(i), false)
		if err != nil {
			return err
		}
		defer c.Close()
		if present {
			return fmt.Errorf("session %d present before it was created", i)
		}
		if err := c.subscribe(1, "dev/"+strconv.Itoa(i)+"/cmd", "all/#"); err != nil {
			return err
		}
		return c.disconnect()
	})
	created := time.Since(start)
	t.Logf("created %d persistent sessions in %v (%.0f sessions/s)", n, created.Round(time.Millisecond), float64(n)/created.Seconds())

	nc, err := nats.Connect(srv.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	queue, err := js.Stream(context.Background(), natsbus.StreamQueue)
	if err != nil {
		t.Fatal(err)
	}
	streamState := func() jetstream.StreamState {
		t.Helper()
		si, err := queue.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return si.State
	}
	waitState := func(what string, ok func(jetstream.StreamState) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for st := streamState(); !ok(st); st = streamState() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: queue stream has %d messages on %d subjects, %d consumers", what, st.Msgs, st.NumSubjects, st.Consumers)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Offline sessions hold no JetStream consumer.
	waitState("offline sessions hold consumers", func(st jetstream.StreamState) bool { return st.Consumers == 0 })

	// Phase 2: while all are offline, one broadcast and one message each.
	start = time.Now()
	pub, _, err := rawConnect(addr, "publisher", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.publish1(1, "all/news", []byte("to everyone")); err != nil {
		t.Fatal(err)
	}
	parallel(t, n, workers, func(i int) error {
		c, _, err := rawConnect(addr, "p-"+strconv.Itoa(i), true)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.publish1(1, "dev/"+strconv.Itoa(i)+"/cmd", []byte("for "+strconv.Itoa(i))); err != nil {
			return err
		}
		return c.disconnect()
	})
	pub.Close()
	t.Logf("queued %d messages (%d session-queue copies) for offline sessions in %v", n+1, 2*n, time.Since(start).Round(time.Millisecond))
	if st := streamState(); st.Msgs != uint64(2*n) || st.NumSubjects != uint64(n) {
		t.Fatalf("queue stream holds %d messages on %d subjects, want %d on %d", st.Msgs, st.NumSubjects, 2*n, n)
	}

	// Phase 3: every session comes back and finds both messages.
	start = time.Now()
	var got atomic.Int64
	parallel(t, n, workers, func(i int) error {
		c, present, err := rawConnect(addr, "s-"+strconv.Itoa(i), false)
		if err != nil {
			return err
		}
		defer c.Close()
		if !present {
			return fmt.Errorf("session %d lost", i)
		}
		want := map[string]string{"all/news": "to everyone", "dev/" + strconv.Itoa(i) + "/cmd": "for " + strconv.Itoa(i)}
		for len(want) > 0 {
			p, err := c.readPublish(10 * time.Second)
			if err != nil {
				return fmt.Errorf("session %d: %w (still waiting for %v)", i, err, want)
			}
			if w, ok := want[string(p.Topic)]; !ok || w != string(p.Payload) {
				return fmt.Errorf("session %d: unexpected %q %q", i, p.Topic, p.Payload)
			}
			delete(want, string(p.Topic))
			got.Add(1)
		}
		return c.disconnect()
	})
	resumed := time.Since(start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("resumed %d sessions and received %d messages in %v (%.0f sessions/s); heap in use %d MiB (test process incl. NATS)",
		n, got.Load(), resumed.Round(time.Millisecond), float64(n)/resumed.Seconds(), ms.HeapInuse>>20)
	if got.Load() != int64(2*n) {
		t.Fatalf("received %d messages, want %d", got.Load(), 2*n)
	}
	// Acknowledged messages are purged from the queues.
	waitState("after every session acknowledged", func(st jetstream.StreamState) bool { return st.Msgs == 0 && st.Consumers == 0 })
	start = time.Now()
	srv.Close()
	t.Logf("server shut down in %v; CONNECTs retried after \"server unavailable\": %d", time.Since(start).Round(time.Millisecond), retries.Load())
}

// parallel runs fn(0..n-1) on workers goroutines and fails t on the first
// error.
func parallel(t *testing.T, n, workers int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// rawClient is a minimal MQTT 3.1.1 client on the broker's own codec, light
// enough to drive thousands of sessions from one test.
type rawClient struct {
	net.Conn
	rd *packet.Reader
	bw *bufio.Writer
}

func rawConnect(addr, id string, clean bool) (*rawClient, bool, error) {
	// Like a real device, retry "server unavailable" (an overloaded
	// backbone) a few times with backoff.
	for wait := 100 * time.Millisecond; ; wait *= 2 {
		c, present, err := rawConnectOnce(addr, id, clean)
		if err == nil || !errors.Is(err, errUnavailable) || wait > 2*time.Second {
			return c, present, err
		}
		retries.Add(1)
		time.Sleep(wait)
	}
}

var (
	errUnavailable = errors.New("CONNACK server unavailable")
	retries        atomic.Int64
)

func rawConnectOnce(addr, id string, clean bool) (*rawClient, bool, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	c := &rawClient{Conn: nc, rd: packet.NewReader(bufio.NewReader(nc), 0), bw: bufio.NewWriter(nc)}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	p := packet.Connect{ProtocolName: "MQTT", ProtocolVersion: packet.V311, CleanStart: clean, KeepAlive: 60, ClientID: id}
	if err := c.write(&p); err != nil {
		nc.Close()
		return nil, false, err
	}
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		nc.Close()
		return nil, false, fmt.Errorf("CONNACK for %s: %w", id, err)
	}
	var ack packet.Connack
	if fh.Type != packet.CONNACK || ack.Decode(packet.V311, fh, body) != nil || ack.ReasonCode != 0 {
		nc.Close()
		if ack.ReasonCode == packet.ConnRefusedServerUnavailable {
			return nil, false, fmt.Errorf("connect %s: %w", id, errUnavailable)
		}
		return nil, false, fmt.Errorf("connect %s refused: %v %v", id, fh.Type, ack.ReasonCode)
	}
	return c, ack.SessionPresent, nil
}

type encoder interface {
	Encode(dst []byte, version byte) ([]byte, error)
}

func (c *rawClient) write(p encoder) error {
	buf, err := p.Encode(nil, packet.V311)
	if err != nil {
		return err
	}
	if _, err := c.bw.Write(buf); err != nil {
		return err
	}
	return c.bw.Flush()
}

func (c *rawClient) subscribe(qos byte, filters ...string) error {
	s := packet.Subscribe{PacketID: 1}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, packet.Subscription{Filter: f, QoS: qos})
	}
	if err := c.write(&s); err != nil {
		return err
	}
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return err
	}
	var ack packet.Suback
	if fh.Type != packet.SUBACK || ack.Decode(packet.V311, fh, body) != nil {
		return fmt.Errorf("want SUBACK, got %v", fh.Type)
	}
	for i, rc := range ack.ReasonCodes {
		if rc != packet.ReasonCode(qos) {
			return fmt.Errorf("SUBACK %d for %q: %v", i, filters[i], rc)
		}
	}
	return nil
}

func (c *rawClient) publish1(id uint16, topic string, payload []byte) error {
	if err := c.write(&packet.Publish{QoS: 1, PacketID: id, Topic: []byte(topic), Payload: payload}); err != nil {
		return err
	}
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return err
	}
	var ack packet.Ack
	if fh.Type != packet.PUBACK || ack.Decode(packet.V311, fh, body) != nil || ack.PacketID != id {
		return fmt.Errorf("want PUBACK %d, got %v", id, fh.Type)
	}
	return nil
}

// readPublish reads the next PUBLISH and acknowledges it.
func (c *rawClient) readPublish(timeout time.Duration) (*packet.Publish, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return nil, err
	}
	if fh.Type != packet.PUBLISH {
		return nil, fmt.Errorf("want PUBLISH, got %v", fh.Type)
	}
	p := &packet.Publish{}
	if err := p.Decode(packet.V311, fh, body); err != nil {
		return nil, err
	}
	p.Topic = append([]byte(nil), p.Topic...)
	p.Payload = append([]byte(nil), p.Payload...)
	if p.QoS == 1 {
		if err := c.write(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (c *rawClient) disconnect() error {
	c.bw.Write([]byte{0xE0, 0})
	return c.bw.Flush()
}

// scaleLogger logs warnings and errors to the test log (testlog).
func scaleLogger(t *testing.T) *slog.Logger { return testlog.New(t, slog.LevelWarn) }
