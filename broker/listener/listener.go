// Package listener provides the transports of an MQTT edge beyond plain
// TCP, as net.Listeners for broker.Broker.Serve:
//
//   - MQTT over TLS (port 8883): NewTLS;
//   - MQTT over WebSocket (8083) and over secure WebSocket (8084):
//     NewWebSocket, at the path /mqtt (and /), subprotocol "mqtt" (or
//     "mqttv3.1"), binary frames only [MQTT-6.0.0-1..4];
//
// and the certificates they serve: Certificates (files or a directory of
// per-host certificates, reloaded when they change, optional client CA)
// and EnsureDevCA (a development CA and wildcard certificate).
//
// Every connection Accept returns is a Conn: it tells the broker which
// host name the client asked for (TLS SNI, or the WebSocket Host header),
// which selects the tenant <slug>.<base-domain>, and carries the TLS state
// with the client certificate chain verified against the client CA.
//
// Bad input never reaches the broker: a failed TLS handshake (plain MQTT
// or HTTP on a TLS port, an unknown CA, a timeout), an HTTP request
// without a WebSocket upgrade, a wrong path or subprotocol each end with a
// clean close (or an HTTP error status) and one log line. Connections in
// their TLS handshake or WebSocket upgrade are bounded (Options.
// MaxHandshakes): beyond that, the listener stops accepting until one
// finishes, so the kernel's backlog pushes back on new clients. One source
// address (an IPv6 /64) holds at most MaxHandshakesPerSource of them, so a
// single host opening idle sockets cannot keep everyone else out.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Conn is a client connection from a Listener.
type Conn interface {
	net.Conn
	// ServerName is the host name the client asked for, lower-case and
	// without port: the TLS SNI, else the WebSocket Host header; "" if
	// none.
	ServerName() string
	// ConnectionState is the connection's TLS state (the zero value on
	// plain WebSocket). Its VerifiedChains hold the client certificate's
	// chains verified against the client CA, if the client sent one.
	ConnectionState() tls.ConnectionState
}

// Defaults of Options.
const (
	// DefaultHandshakeTimeout bounds a TLS handshake and a WebSocket
	// upgrade.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxHandshakes bounds connections in their handshake at once.
	DefaultMaxHandshakes = 256
	// DefaultMaxHandshakesPerSource bounds one source address's share.
	DefaultMaxHandshakesPerSource = 16
	// DefaultMaxMessageSize is the largest WebSocket message accepted:
	// the broker's default maximum packet size plus slack.
	DefaultMaxMessageSize = 1<<20 + 4096
)

// Options configure a Listener. Zero values take the defaults.
type Options struct {
	// Logger receives a line per listener and per refused connection.
	// Default slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds the TLS handshake and, on WebSocket, the
	// HTTP request up to the upgrade. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the connections in their TLS handshake or
	// WebSocket upgrade at once; beyond it the listener waits before
	// accepting more. Default DefaultMaxHandshakes.
	MaxHandshakes int
	// MaxHandshakesPerSource bounds the handshakes of one source address
	// (IPv4 address, IPv6 /64) at once; a connection beyond it is closed
	// at once. Default DefaultMaxHandshakesPerSource.
	MaxHandshakesPerSource int
	// MaxMessageSize is the largest WebSocket message accepted, in bytes
	// (set it to the broker's maximum packet size plus some slack: an MQTT
	// packet usually travels in one message). A larger message closes the
	// connection with status 1009 (message too big, RFC 6455 §7.4.1).
	// Default DefaultMaxMessageSize.
	MaxMessageSize int64
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = DefaultMaxHandshakes
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxHandshakesPerSource <= 0 {
		o.MaxHandshakesPerSource = DefaultMaxHandshakesPerSource
	}
}

// Listener accepts MQTT connections over TLS or WebSocket. Its Accept
// returns Conn values whose handshake is complete. It implements
// net.Listener; Close is idempotent and waits for every goroutine the
// Listener started (connections already returned by Accept belong to the
// caller and stay open).
type Listener struct {
	inner  net.Listener
	kind   string // "mqtts", "ws" or "wss", for logs
	opts   Options
	log    *slog.Logger
	tlsCfg *tls.Config // nil for ws

	permits chan struct{}
	// bySource counts handshakes in progress per source (sourceKey);
	// refusedAt and refused rate-limit the log line of refusals.
	srcMu     sync.Mutex
	bySource  map[string]int
	refused   int
	refusedAt time.Time
	ready     chan net.Conn // handshaken connections for Accept
	ctx       context.Context
	cancel    context.CancelFunc

	// WebSocket only: the HTTP server that upgrades, fed by httpConns.
	ws *wsServer

	mu      sync.Mutex
	started bool
	closed  bool
	err     error         // why Accept fails: net.ErrClosed or the inner listener's error
	stop    chan struct{} // closed on Close or a permanent accept error
	wg      sync.WaitGroup
	once    sync.Once
}

var _ net.Listener = (*Listener)(nil)

// NewTLS returns a listener for MQTT over TLS on inner (which it owns from
// now on). cfg is the server's TLS configuration (Certificates.
// ServerConfig). Call Start, then hand it to the broker.
func NewTLS(inner net.Listener, cfg *tls.Config, opts Options) (*Listener, error) {
	if cfg == nil {
		return nil, errors.New("listener: TLS configuration required")
	}
	return newListener(inner, "mqtts", cfg, opts)
}

func newListener(inner net.Listener, kind string, cfg *tls.Config, opts Options) (*Listener, error) {
	if inner == nil {
		return nil, errors.New("listener: inner listener required")
	}
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Listener{
		inner: inner, kind: kind, opts: opts, tlsCfg: cfg,
		log:      opts.Logger.With("listener", kind, "addr", inner.Addr().String()),
		permits:  make(chan struct{}, opts.MaxHandshakes),
		bySource: make(map[string]int),
		ready:    make(chan net.Conn),
		ctx:      ctx, cancel: cancel,
		stop: make(chan struct{}),
	}, nil
}

// Start starts accepting connections. It returns an error if the
// listener is closed or already started.
func (l *Listener) Start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return net.ErrClosed
	}
	if l.started {
		return errors.New("listener: already started")
	}
	l.started = true
	if l.ws != nil {
		l.ws.start(l)
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return nil
}

// Accept waits for the next connection whose handshake is complete; it
// is a Conn. After Close it returns an error wrapping net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.stop:
		// A connection handed over just now is not lost: the sender
		// closes it when it sees stop.
		return nil, l.err
	}
}

// Addr returns the listener's network address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, aborts handshakes in progress and waits for the
// listener's goroutines. It is idempotent.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.fail(net.ErrClosed)
		err = l.inner.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		l.cancel() // aborts TLS handshakes in progress
		if l.ws != nil {
			l.ws.close()
		}
		l.wg.Wait()
	})
	return err
}

// fail makes Accept return err from now on (the first error wins).
func (l *Listener) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.err = err
	close(l.stop)
}

// spawn runs f in a goroutine Close waits for, unless the listener is
// closed (then it returns false and f does not run).
func (l *Listener) spawn(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
	return true
}

// acceptLoop accepts raw connections, one permit each, and hands each to
// its handshake.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		select {
		case l.permits <- struct{}{}:
		case <-l.stop:
			return
		}
		raw, err := l.inner.Accept()
		if err != nil {
			<-l.permits
			select {
			case <-l.stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors and the like: back off, as
				// net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-l.stop:
					return
				}
				continue
			}
			l.log.Error("listener stopped", "err", err)
			l.fail(fmt.Errorf("listener %s: accept: %w", l.kind, err))
			return
		}
		backoff = 0
		src, admitted := l.admitSource(raw.RemoteAddr())
		if !admitted {
			raw.Close()
			<-l.permits
			continue
		}
		pc := &permitConn{Conn: raw, permits: l.permits, done: func() { l.leaveSource(src) }}
		var ok bool
		switch l.kind {
		case "mqtts":
			ok = l.spawn(func() { l.handshakeMQTT(pc) })
		case "wss":
			ok = l.spawn(func() { l.handshakeWSS(pc) })
		default: // ws
			ok = l.spawn(func() { l.sniffHTTP(pc) })
		}
		if !ok {
			pc.Close()
			return
		}
	}
}

// handshake runs the TLS server handshake on pc, bounded by the
// handshake timeout and by Close. On failure it logs, closes pc and
// returns nil.
func (l *Listener) handshake(pc *permitConn) *tls.Conn {
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.HandshakeTimeout)
	defer cancel()
	// The deadline also bounds a client that stalls mid-handshake, and
	// HandshakeContext closes the connection when ctx ends.
	pc.SetDeadline(time.Now().Add(l.opts.HandshakeTimeout))
	tc := tls.Server(pc, l.tlsCfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		pc.Close()
		l.logHandshakeError(pc.RemoteAddr(), err)
		return nil
	}
	pc.SetDeadline(time.Time{})
	return tc
}

// logHandshakeError writes the one line a failed TLS handshake gets.
func (l *Listener) logHandshakeError(remote net.Addr, err error) {
	if l.ctx.Err() != nil {
		return // closing
	}
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		l.log.Info("TLS handshake failed: the client does not speak TLS (plain MQTT or HTTP on a TLS port?)", "remote", remote.String(), "err", err)
	case isEOF(err):
		l.log.Debug("TLS handshake: client closed the connection", "remote", remote.String(), "err", err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		l.log.Info("TLS handshake timed out", "remote", remote.String(), "timeout", l.opts.HandshakeTimeout)
	default:
		l.log.Info("TLS handshake failed", "remote", remote.String(), "err", err)
	}
}

// handshakeMQTT completes the TLS handshake of an MQTT connection and
// hands it to Accept.
func (l *Listener) handshakeMQTT(pc *permitConn) {
	tc := l.handshake(pc)
	if tc == nil {
		return
	}
	st := tc.ConnectionState()
	c := &tlsConn{Conn: tc, serverName: normalizeHost(st.ServerName)}
	l.deliver(c, pc)
}

// deliver hands c to Accept, then gives the handshake permit back (so a
// broker that stops accepting pushes back on new handshakes too).
func (l *Listener) deliver(c net.Conn, pc *permitConn) {
	select {
	case l.ready <- c:
		pc.release()
	case <-l.stop:
		c.Close()
	}
}

// ---------------------------------------------------------------------------
// Connections

// admitSource counts a new handshake against its source address, unless
// the source has MaxHandshakesPerSource in progress already.
func (l *Listener) admitSource(addr net.Addr) (string, bool) {
	key := sourceKey(addr)
	l.srcMu.Lock()
	defer l.srcMu.Unlock()
	if l.bySource[key] >= l.opts.MaxHandshakesPerSource {
		l.refused++
		if now := time.Now(); now.Sub(l.refusedAt) >= 10*time.Second {
			l.log.Warn("connections refused: too many handshakes in progress from one source",
				"source", key, "limit", l.opts.MaxHandshakesPerSource, "refused", l.refused)
			l.refusedAt, l.refused = now, 0
		}
		return "", false
	}
	l.bySource[key]++
	return key, true
}

// leaveSource ends a handshake counted by admitSource.
func (l *Listener) leaveSource(key string) {
	l.srcMu.Lock()
	defer l.srcMu.Unlock()
	if l.bySource[key]--; l.bySource[key] <= 0 {
		delete(l.bySource, key)
	}
}

// sourceKey is the address a handshake counts against: the IPv4 address,
// or the /64 of an IPv6 address (one host usually holds a whole /64).
func sourceKey(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// permitConn holds one of the listener's handshake permits (and its
// source's count) until it is released (handshake done) or closed.
type permitConn struct {
	net.Conn
	permits chan struct{}
	done    func()
	once    sync.Once
}

func (c *permitConn) release() {
	c.once.Do(func() {
		<-c.permits
		if c.done != nil {
			c.done()
		}
	})
}

// Close closes the connection and releases its permit.
func (c *permitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// tlsConn is an MQTT-over-TLS connection.
type tlsConn struct {
	*tls.Conn
	serverName string
}

var _ Conn = (*tlsConn)(nil)

// ServerName implements Conn: the TLS SNI.
func (c *tlsConn) ServerName() string { return c.serverName }

// isEOF reports whether err means the client went away.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// normalizeHost returns host lower-case, without a port and a final dot.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
