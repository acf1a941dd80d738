package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// ---------------------------------------------------------------------------
// A minimal MQTT client on broker/packet
// ---------------------------------------------------------------------------

// Buffer sizes of a publishing or subscribing client: large, so that a
// busy connection reads and writes in few system calls.
const (
	readBufSize  = 64 << 10
	writeBufSize = 64 << 10
)

// ErrRefused is wrapped by the error of a connection the broker refused
// (CONNACK with an error code, or a SUBACK refusing the subscription).
var ErrRefused = errors.New("refused by the broker")

// client is one MQTT connection of the generator. Its reader belongs to
// one goroutine; its writer is shared (the publishing goroutine, the
// reader's acknowledgements, the keep-alive pinger) under wmu.
type client struct {
	conn    net.Conn
	br      *bufio.Reader
	rd      *packet.Reader
	version byte

	wmu   sync.Mutex
	bw    *bufio.Writer
	wrote atomic.Bool // something was written since the last keep-alive tick

	// receiveMax is the broker's Receive Maximum (MQTT 5), 0 if none.
	receiveMax int
}

// dialOptions are the per-connection parts of a CONNECT.
type dialOptions struct {
	clientID           string
	username, password string
	persistent         bool
	n                  int // the client's index among all clients
}

// dial connects, sends CONNECT and waits for a successful CONNACK, all
// within cfg.ConnectTimeout.
func dial(ctx context.Context, cfg *Config, o dialOptions) (*client, error) {
	deadline := time.Now().Add(cfg.ConnectTimeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := dialBroker(ctx, cfg, o.n)
	if err != nil {
		return nil, err
	}
	c := &client{
		conn:    conn,
		br:      bufio.NewReaderSize(conn, readBufSize),
		bw:      bufio.NewWriterSize(conn, writeBufSize),
		version: cfg.Version,
	}
	c.rd = packet.NewReader(c.br, 0)
	_ = conn.SetDeadline(deadline)
	if err := c.connect(cfg, o); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// connectPacket builds the CONNECT for o.
func connectPacket(cfg *Config, o dialOptions) *packet.Connect {
	cp := &packet.Connect{
		ProtocolVersion: cfg.Version,
		CleanStart:      !o.persistent,
		KeepAlive:       uint16(cfg.KeepAlive / time.Second),
		ClientID:        o.clientID,
	}
	if o.username != "" {
		cp.UsernameFlag, cp.Username = true, o.username
		if o.password != "" {
			cp.PasswordFlag, cp.Password = true, []byte(o.password)
		}
	}
	if cfg.Version == packet.V5 && o.persistent {
		cp.Properties.SessionExpiry = 3600
		cp.Properties.Set(packet.PropSessionExpiry)
	}
	return cp
}

// connect writes CONNECT and reads CONNACK.
func (c *client) connect(cfg *Config, o dialOptions) error {
	b, err := connectPacket(cfg, o).Encode(c.bw.AvailableBuffer(), cfg.Version)
	if err != nil {
		return err
	}
	if _, err := c.bw.Write(b); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return fmt.Errorf("reading CONNACK: %w", err)
	}
	var ack packet.Connack
	if fh.Type != packet.CONNACK {
		return fmt.Errorf("got %v instead of CONNACK", fh.Type)
	}
	if err := ack.Decode(cfg.Version, fh, body); err != nil {
		return fmt.Errorf("CONNACK: %w", err)
	}
	if ack.ReasonCode != packet.Success {
		return fmt.Errorf("%w: CONNACK 0x%02X (%v)", ErrRefused, byte(ack.ReasonCode), ack.ReasonCode)
	}
	if ack.Properties.Has(packet.PropReceiveMaximum) {
		c.receiveMax = int(ack.Properties.ReceiveMaximum)
	}
	return nil
}

// subscribe subscribes to filter and waits for a granting SUBACK; it must
// run before the reader goroutine starts. Publishes that arrive first (a
// persistent session's queue) are an error: the run IDs make them
// impossible.
func (c *client) subscribe(filter string, qos byte, timeout time.Duration) error {
	s := packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}}
	b, err := s.Encode(c.bw.AvailableBuffer(), c.version)
	if err != nil {
		return err
	}
	_ = c.conn.SetDeadline(time.Now().Add(timeout))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.bw.Write(b); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return fmt.Errorf("reading SUBACK: %w", err)
	}
	if fh.Type != packet.SUBACK {
		return fmt.Errorf("got %v instead of SUBACK", fh.Type)
	}
	var ack packet.Suback
	if err := ack.Decode(c.version, fh, body); err != nil {
		return fmt.Errorf("SUBACK: %w", err)
	}
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0].IsError() {
		return fmt.Errorf("%w: SUBACK %v for %q", ErrRefused, ack.ReasonCodes, filter)
	}
	return nil
}

// writeLocked appends raw packet bytes to the write buffer; wmu is held.
func (c *client) writeLocked(b []byte) error {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	_, err := c.bw.Write(b)
	return err
}

// write writes raw packet bytes and flushes.
func (c *client) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeLocked(b); err != nil {
		return err
	}
	return c.bw.Flush()
}

// keepAlive sends PINGREQ if nothing was written since the last call.
func (c *client) keepAlive() {
	if c.wrote.Swap(false) {
		return
	}
	_ = c.write(packet.AppendPingreq(nil))
}

// close sends DISCONNECT (best effort, bounded by a short deadline) and
// closes the connection, which ends the reader goroutine.
func (c *client) close() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	d := packet.Disconnect{}
	if b, err := d.Encode(nil, c.version); err == nil {
		_ = c.write(b)
	}
	c.conn.Close()
}
