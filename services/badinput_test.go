package services_test

// Bad input from raw TCP clients: each bad connection is closed (or gets
// the code the specification gives), while a healthy publisher and
// subscriber on the same server keep working and lose nothing.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
)

// Limits of the bad-input server.
const (
	badMaxPacket      = 1024
	badConnectTimeout = 500 * time.Millisecond
)

// connectBytes hand-encodes a CONNECT with any protocol name, level and
// flags (the codec refuses to encode invalid ones).
func connectBytes(name string, level, flags byte, clientID string) []byte {
	var body []byte
	body = append(body, byte(len(name)>>8), byte(len(name)))
	body = append(body, name...)
	body = append(body, level, flags, 0, 30) // keep-alive 30 s
	body = append(body, byte(len(clientID)>>8), byte(len(clientID)))
	body = append(body, clientID...)
	return append(packet.AppendVarint([]byte{0x10}, len(body)), body...)
}

// publishBytes hand-encodes a PUBLISH with any topic bytes and flags.
func publishBytes(flags byte, topic string, id uint16, payload string) []byte {
	var body []byte
	body = append(body, byte(len(topic)>>8), byte(len(topic)))
	body = append(body, topic...)
	if flags&0x06 != 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, payload...)
	return append(packet.AppendVarint([]byte{0x30 | flags}, len(body)), body...)
}

// subscribeBytes hand-encodes a SUBSCRIBE with one filter.
func subscribeBytes(first byte, id uint16, filter string, opts byte) []byte {
	body := []byte{byte(id >> 8), byte(id), byte(len(filter) >> 8), byte(len(filter))}
	body = append(body, filter...)
	body = append(body, opts)
	return append(packet.AppendVarint([]byte{first}, len(body)), body...)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t, withBroker(func(o *broker.Options) {
		o.MaxPacketSize = badMaxPacket
		o.ConnectTimeout = badConnectTimeout
	}))

	// Healthy traffic runs through every bad case.
	healthy := newInbox()
	subscribe(t, connect(t, addr, "healthy-sub"), "healthy/t", 1, healthy)
	hp := connect(t, addr, "healthy-pub")
	// Nothing a bad client sends may be delivered; wills of bad clients go
	// to badwill/.
	leaked, wills := newInbox(), newInbox()
	obs := connect(t, addr, "bad-observer")
	subscribe(t, obs, "bad/#", 1, leaked)
	subscribe(t, obs, "badwill/#", 1, wills)
	const healthyConns = 3

	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	var sent int
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				sent = i
				pubDone <- nil
				return
			default:
			}
			tok := hp.Publish("healthy/t", 1, false, strconv.Itoa(i))
			if !tok.WaitTimeout(waitTimeout) {
				pubDone <- fmt.Errorf("healthy PUBLISH %d: no PUBACK", i)
				return
			}
			if err := tok.Error(); err != nil {
				pubDone <- fmt.Errorf("healthy PUBLISH %d: %w", i, err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	validConnect := func(id string) packet.Connect {
		return packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	}
	big := strings.Repeat("x", badMaxPacket)

	tests := []struct {
		name    string
		ref     string
		connect bool // send a valid CONNECT (with a will) first
		stays   bool // the connection stays up: no will is published
		run     func(t *testing.T, c *rawClient)
	}{
		{
			name: "PUBLISH before CONNECT", ref: "MQTT-3.1.0-1",
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0, "bad/early", 0, "x"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PINGREQ before CONNECT", ref: "MQTT-3.1.0-1",
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(packet.AppendPingreq(nil))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "HTTP request", ref: "MQTT-3.1.0-1",
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes([]byte("GET /mqtt HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n\r\n"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "0xFF garbage", ref: "MQTT-1.5.5 (remaining length over 4 bytes)",
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "reserved packet type 0", ref: "2.2.1",
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes([]byte{0x00, 0x00})
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "remaining length over 4 bytes before CONNECT", ref: "2.2.3",
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes([]byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "truncated CONNECT then close", ref: "no panic",
			run: func(t *testing.T, c *rawClient) {
				b := c.encode(&packet.Connect{ProtocolVersion: packet.V311, ClientID: "trunc", CleanStart: true})
				c.writeBytes(b[:len(b)/2])
				c.nc.Close()
			},
		},
		{
			name: "oversize CONNECT", ref: "MaxPacketSize",
			run: func(t *testing.T, c *rawClient) {
				p := packet.Connect{ProtocolVersion: packet.V311, ClientID: "big", CleanStart: true,
					WillFlag: true, WillTopic: "badwill/big", WillPayload: []byte(big)}
				c.writeBytes(c.encode(&p))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "unsupported protocol level", ref: "MQTT-3.1.2-2",
			run: func(t *testing.T, c *rawClient) {
				c.send(connectBytes("MQTT", 6, 0x02, "level6"))
				fh, body := c.expect(packet.CONNACK)
				if !slices.Equal(body, []byte{0, 1}) || fh.Flags != 0 {
					t.Fatalf("CONNACK body % X, want 00 01", body)
				}
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "CONNECT reserved flag", ref: "MQTT-3.1.2-3",
			run: func(t *testing.T, c *rawClient) {
				c.send(connectBytes("MQTT", 4, 0x03, "reserved"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "client ID not UTF-8", ref: "MQTT-1.5.3-1",
			run: func(t *testing.T, c *rawClient) {
				c.send(connectBytes("MQTT", 4, 0x02, "bad\xff\xfeid"))
				// Either closed at once, or refused with a non-zero code.
				fh, body, err := c.read(waitTimeout)
				if err == nil {
					if fh.Type != packet.CONNACK || len(body) != 2 || body[1] == 0 {
						t.Fatalf("got %v % X, want the connection closed or refused", fh.Type, body)
					}
					c.expectClosed(waitTimeout)
				} else if !isClosed(err) {
					t.Fatalf("read: %v, want the connection closed", err)
				}
			},
		},
		{
			name: "slow loris: silent", ref: "ConnectTimeout",
			run: func(t *testing.T, c *rawClient) {
				took := c.expectClosed(waitTimeout)
				if took < badConnectTimeout*3/4 || took > badConnectTimeout+2*time.Second {
					t.Fatalf("closed after %v, want about %v", took, badConnectTimeout)
				}
			},
		},
		{
			name: "slow loris: dribbled CONNECT", ref: "ConnectTimeout",
			run: func(t *testing.T, c *rawClient) {
				b := c.encode(&packet.Connect{ProtocolVersion: packet.V311, ClientID: "a-rather-long-dribbling-client-id", CleanStart: true})
				done := make(chan struct{})
				defer close(done)
				go func() {
					for i := range b {
						select {
						case <-done:
							return
						case <-time.After(100 * time.Millisecond):
						}
						if c.writeBytes(b[i:i+1]) != nil {
							return
						}
					}
				}()
				took := c.expectClosed(waitTimeout)
				if took > badConnectTimeout+2*time.Second {
					t.Fatalf("closed after %v; the dribble (%d bytes at 100 ms) kept it open", took, len(b))
				}
			},
		},
		{
			name: "truncated PUBLISH then close publishes the will", ref: "MQTT-3.1.2-8", connect: true,
			run: func(t *testing.T, c *rawClient) {
				b := c.encode(publishPacket("bad/trunc", 1, 1, "truncated payload"))
				c.send(b[:6])
				c.nc.Close()
			},
		},
		{
			name: "remaining length over 4 bytes after CONNECT", ref: "2.2.3", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "second CONNECT", ref: "MQTT-3.1.0-2", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(c.encode(&packet.Connect{ProtocolVersion: packet.V311, ClientID: "again", CleanStart: true}))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "oversize PUBLISH", ref: "MaxPacketSize", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(c.encode(publishPacket("bad/big", 1, 1, big)))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH topic with +", ref: "MQTT-3.3.2-2", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x02, "bad/+/x", 1, "wild"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH topic with #", ref: "MQTT-3.3.2-2", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x00, "bad/#", 0, "wild"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH topic not UTF-8", ref: "MQTT-1.5.3-1", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x02, "bad/\xff\xfe", 1, "utf8"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH topic with U+0000", ref: "MQTT-1.5.3-2", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x02, "bad/a\x00b", 1, "nul"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH surrogate code point in topic", ref: "MQTT-1.5.3-1", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x02, "bad/\xed\xa0\x80", 1, "surrogate"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH empty topic", ref: "MQTT-4.7.3-1", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x02, "", 1, "empty"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH QoS 3", ref: "MQTT-3.3.1-4", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x06, "bad/qos3", 1, "three"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "PUBLISH QoS 1 with packet ID 0", ref: "MQTT-2.3.1-1", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(publishBytes(0x02, "bad/id0", 0, "zero"))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "SUBSCRIBE reserved flags", ref: "MQTT-3.8.1-1", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(subscribeBytes(0x80, 1, "bad/flags", 1))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "SUBSCRIBE QoS 3", ref: "MQTT-3-8.3-4", connect: true,
			run: func(t *testing.T, c *rawClient) {
				c.writeBytes(subscribeBytes(0x82, 1, "bad/qos3", 3))
				c.expectClosed(waitTimeout)
			},
		},
		{
			name: "SUBSCRIBE invalid filters", ref: "MQTT-3.9.3-2 MQTT-4.7.1-2 MQTT-4.7.1-3", connect: true, stays: true,
			run: func(t *testing.T, c *rawClient) {
				// Each invalid filter gets 0x80; the valid one is granted and
				// the connection stays up.
				c.rawSubscribe(1, []packet.ReasonCode{0x80, 1, 0x80, 0x80, 0x80},
					packet.Subscription{Filter: "subok/#/x", QoS: 1},
					packet.Subscription{Filter: "subok/t", QoS: 1},
					packet.Subscription{Filter: "subok+", QoS: 1},
					packet.Subscription{Filter: "subok/a#", QoS: 1},
					packet.Subscription{Filter: "$share/g+/subok", QoS: 1})
				c.ping()
				publish(t, connect(t, addr, "subok-pub"), "subok/t", 1, false, "still here")
				p := c.expectPublish()
				if string(p.Topic) != "subok/t" || string(p.Payload) != "still here" || p.QoS != 1 {
					t.Fatalf("got %+v", p)
				}
				c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
				c.ping()
			},
		},
	}

	t.Run("cases", func(t *testing.T) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				t.Cleanup(func() {
					if t.Failed() {
						t.Logf("spec: %s", tt.ref)
					}
				})
				c := dialRaw(t, addr)
				if tt.connect {
					p := validConnect(fmt.Sprintf("bad-%d", i))
					p.WillFlag, p.WillQoS = true, 1
					p.WillTopic = fmt.Sprintf("badwill/%d", i)
					p.WillPayload = []byte("will of " + tt.name)
					c.connect(p)
				}
				tt.run(t, c)
				if tt.connect && !tt.stays {
					// The server closed the connection (or it broke): the
					// will is published [MQTT-3.1.2-8].
					wt := fmt.Sprintf("badwill/%d", i)
					got := waitWill(t, wills, wt)
					if want := (received{Topic: wt, Payload: "will of " + tt.name, QoS: 1}); got != want {
						t.Fatalf("will: got %v, want %v", got, want)
					}
				}
			})
		}
	})

	close(stop)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	if sent < 10 {
		t.Fatalf("healthy publisher sent only %d messages", sent)
	}
	got := healthy.exactly(t, sent)
	for i, m := range got {
		if m.Payload != strconv.Itoa(i) || m.Topic != "healthy/t" || m.QoS != 1 {
			t.Fatalf("healthy message %d is %v; the healthy client lost or reordered messages", i, m)
		}
	}
	if got := leaked.all(); len(got) != 0 {
		t.Fatalf("messages from bad clients were delivered: %v", got)
	}
	// Every bad connection is gone; only the healthy ones remain.
	st := srv.Edge().Broker().Stats()
	waitUntil(t, fmt.Sprintf("only the %d healthy connections remain (now %d)", healthyConns, st.Connections.Load()),
		func() bool { return st.Connections.Load() == healthyConns })
	t.Logf("healthy publisher sent %d messages during %d bad cases", sent, len(tests))
}

// waitWill waits for the will on topic among the collected wills.
func waitWill(t *testing.T, wills *inbox, topic string) received {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		for _, m := range wills.all() {
			if m.Topic == topic {
				return m
			}
		}
		select {
		case <-wills.notify:
		case <-deadline:
			t.Fatalf("no will on %q; got %v", topic, wills.all())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
