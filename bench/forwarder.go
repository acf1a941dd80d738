package bench

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// ---------------------------------------------------------------------------
// Forwarder: the trivial broker that measures the generator's ceiling
// ---------------------------------------------------------------------------

// ForwarderOptions configure a Forwarder.
type ForwarderOptions struct {
	// Addr is the listen address. Default "127.0.0.1:0".
	Addr string
	// MaxPending bounds the bytes waiting to be written to one connection;
	// a publisher whose message would go beyond it waits (back-pressure,
	// nothing is dropped). Default 4 MiB.
	MaxPending int
	// Logger receives connection errors at debug level. Default
	// slog.Default().
	Logger *slog.Logger
}

// Forwarder is the least an MQTT broker can do: it accepts any CONNECT,
// grants any SUBSCRIBE, acknowledges every PUBLISH at once and copies it to
// every matching subscription, with no sessions, retained messages, ACLs,
// flow control or queues beyond a bounded write buffer per connection. It
// exists to show that the generator is not the bottleneck: what it
// measures against a Forwarder is the generator's ceiling.
type Forwarder struct {
	opts ForwarderOptions
	log  *slog.Logger
	ln   net.Listener

	mu    sync.Mutex
	conns map[*fwdConn]struct{}
	subs  atomic.Pointer[[]fwdSub] // copy on write

	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once
}

// fwdSub is one subscription.
type fwdSub struct {
	filter string
	qos    byte
	c      *fwdConn
}

// fwdConn is one connection. Everything it sends goes through its pending
// buffer, drained by its writer goroutine.
type fwdConn struct {
	f       *Forwarder
	conn    net.Conn
	version byte

	mu      sync.Mutex
	space   sync.Cond // signalled when the writer took the pending bytes
	pending []byte
	nextID  uint16
	dead    bool
	wake    chan struct{} // one token: pending is not empty
}

// NewForwarder validates opts and applies defaults.
func NewForwarder(opts ForwarderOptions) (*Forwarder, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = 4 << 20
	}
	if opts.MaxPending < 0 {
		return nil, fmt.Errorf("%w: forwarder MaxPending %d", ErrConfig, opts.MaxPending)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Forwarder{opts: opts, log: opts.Logger, conns: map[*fwdConn]struct{}{}}
	f.subs.Store(&[]fwdSub{})
	return f, nil
}

// Start listens and accepts connections until Close.
func (f *Forwarder) Start() error {
	ln, err := net.Listen("tcp", f.opts.Addr)
	if err != nil {
		return fmt.Errorf("forwarder: %w", err)
	}
	f.ln = ln
	f.wg.Go(f.accept)
	return nil
}

// Addr returns the listen address (nil before Start).
func (f *Forwarder) Addr() net.Addr {
	if f.ln == nil {
		return nil
	}
	return f.ln.Addr()
}

// Close stops accepting, closes every connection and waits for every
// goroutine. It is safe to call more than once.
func (f *Forwarder) Close() error {
	f.once.Do(func() {
		f.closed.Store(true)
		if f.ln != nil {
			f.ln.Close()
		}
		f.mu.Lock()
		for c := range f.conns {
			c.conn.Close()
			c.kill()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return nil
}

func (f *Forwarder) accept() {
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			if !f.closed.Load() {
				f.log.Error("forwarder accept", "err", err)
			}
			return
		}
		c := &fwdConn{f: f, conn: conn, wake: make(chan struct{}, 1)}
		c.space.L = &c.mu
		f.mu.Lock()
		if f.closed.Load() {
			f.mu.Unlock()
			conn.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.wg.Add(2)
		f.mu.Unlock()
		go c.serve()
		go c.writeLoop()
	}
}

// serve reads the connection's packets until it ends.
func (c *fwdConn) serve() {
	f := c.f
	defer f.wg.Done()
	defer func() {
		c.conn.Close()
		c.kill()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		f.unsubscribeAll(c)
	}()
	rd := packet.NewReader(bufio.NewReaderSize(c.conn, fwdReadBufSize), 0)
	fh, body, err := rd.ReadPacket()
	if err != nil {
		return
	}
	var cp packet.Connect
	if fh.Type != packet.CONNECT || cp.Decode(0, fh, body) != nil {
		return
	}
	c.version = cp.ProtocolVersion
	ack := packet.Connack{}
	if !c.send(func(b []byte) []byte { b, _ = ack.Encode(b, c.version); return b }) {
		return
	}
	var pub packet.Publish
	var a packet.Ack
	for {
		fh, body, err := rd.ReadPacket()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.Debug("forwarder connection", "err", err)
			}
			return
		}
		switch fh.Type {
		case packet.PUBLISH:
			if pub.Decode(c.version, fh, body) != nil {
				return
			}
			f.forward(&pub)
			switch pub.QoS {
			case 1:
				a = packet.Ack{Type: packet.PUBACK, PacketID: pub.PacketID}
			case 2:
				a = packet.Ack{Type: packet.PUBREC, PacketID: pub.PacketID}
			}
			if pub.QoS > 0 && !c.send(func(b []byte) []byte { b, _ = a.Encode(b, c.version); return b }) {
				return
			}
		case packet.PUBREL, packet.PUBREC:
			if a.Decode(c.version, fh, body) != nil {
				return
			}
			t := packet.PUBCOMP
			if fh.Type == packet.PUBREC {
				t = packet.PUBREL
			}
			a = packet.Ack{Type: t, PacketID: a.PacketID}
			if !c.send(func(b []byte) []byte { b, _ = a.Encode(b, c.version); return b }) {
				return
			}
		case packet.PUBACK, packet.PUBCOMP:
			// Nothing is kept in flight.
		case packet.SUBSCRIBE:
			var s packet.Subscribe
			if s.Decode(c.version, fh, body) != nil {
				return
			}
			sa := packet.Suback{PacketID: s.PacketID}
			for _, sub := range s.Subscriptions {
				if topic.ValidateFilter(sub.Filter) != nil {
					sa.ReasonCodes = append(sa.ReasonCodes, packet.SubackFailure)
					continue
				}
				f.subscribe(fwdSub{filter: sub.Filter, qos: sub.QoS, c: c})
				sa.ReasonCodes = append(sa.ReasonCodes, packet.ReasonCode(sub.QoS))
			}
			if !c.send(func(b []byte) []byte { b, _ = sa.Encode(b, c.version); return b }) {
				return
			}
		case packet.PINGREQ:
			if !c.send(packet.AppendPingresp) {
				return
			}
		default: // DISCONNECT, UNSUBSCRIBE, AUTH: not needed to measure
			return
		}
	}
}

// forward copies pub to every matching subscription.
func (f *Forwarder) forward(pub *packet.Publish) {
	subs := *f.subs.Load()
	for i := range subs {
		s := &subs[i]
		if !topic.Match(s.filter, pub.Topic) {
			continue
		}
		out := packet.Publish{QoS: min(pub.QoS, s.qos), Topic: pub.Topic, Payload: pub.Payload}
		s.c.send(func(b []byte) []byte {
			if out.QoS > 0 {
				if s.c.nextID++; s.c.nextID == 0 {
					s.c.nextID = 1
				}
				out.PacketID = s.c.nextID
			}
			b, _ = out.Encode(b, s.c.version)
			return b
		})
	}
}

func (f *Forwarder) subscribe(s fwdSub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.subs.Load()
	subs := make([]fwdSub, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, s)
	f.subs.Store(&subs)
}

func (f *Forwarder) unsubscribeAll(c *fwdConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var subs []fwdSub
	for _, s := range *f.subs.Load() {
		if s.c != c {
			subs = append(subs, s)
		}
	}
	f.subs.Store(&subs)
}

// send appends a packet to the pending bytes under the lock (enc may use
// the connection's packet ID counter), waiting while they are over the
// limit. It returns false once the connection is dead.
func (c *fwdConn) send(enc func([]byte) []byte) bool {
	c.mu.Lock()
	for len(c.pending) >= c.f.opts.MaxPending && !c.dead {
		c.space.Wait()
	}
	if c.dead {
		c.mu.Unlock()
		return false
	}
	wasEmpty := len(c.pending) == 0
	c.pending = enc(c.pending)
	c.mu.Unlock()
	if wasEmpty {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// kill marks the connection dead and releases waiting senders.
func (c *fwdConn) kill() {
	c.mu.Lock()
	c.dead = true
	c.space.Broadcast()
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop swaps the pending bytes out and writes them, until the
// connection dies.
func (c *fwdConn) writeLoop() {
	defer c.f.wg.Done()
	var spare []byte
	for range c.wake {
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			return
		}
		out := c.pending
		c.pending = spare[:0]
		c.space.Broadcast()
		c.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.conn.Write(out); err != nil {
			c.conn.Close()
			c.kill()
			return
		}
		spare = out
	}
}

// fwdReadBufSize is a forwarder connection's read buffer: enough to read
// bursts of small PUBLISHes in one system call, small enough that idle
// connections are cheap.
const fwdReadBufSize = 16 << 10
