package listener

// MQTT over WebSocket, MQTT 5.0 §6 (the same in 3.1.1 §6): the client
// offers the subprotocol "mqtt" [MQTT-6.0.0-3] and the server selects it
// [MQTT-6.0.0-4]; MQTT packets travel in binary frames only, a text frame
// closes the connection [MQTT-6.0.0-1]; a packet may span frames and a
// frame may hold several packets [MQTT-6.0.0-2], so the connection is a
// byte stream over the frames' payloads.
//
// The WebSocket library is gorilla/websocket: its read deadline stops a
// read and keeps the connection open for writes, which the broker needs
// (it stops reading, then writes DISCONNECT with a reason code).
// coder/websocket's NetConn closes the whole connection when a read
// deadline fires during a read.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Subprotocols are the WebSocket subprotocols accepted, in order of
// preference: "mqtt" (MQTT 3.1.1 and 5.0) and "mqttv3.1" (what MQTT 3.1
// clients such as MQTT.js with protocolVersion 3 offer).
var Subprotocols = []string{"mqtt", "mqttv3.1"}

// Paths are the HTTP paths of the WebSocket endpoint: /mqtt (what MQTT.js,
// Paho JavaScript and most clients use) and / (some embedded clients).
var Paths = []string{"/mqtt", "/"}

// closeWait bounds the close frame written when a connection closes.
const closeWait = 500 * time.Millisecond

// ErrTextFrame is returned by a WebSocket connection's Read when the client
// sends a text frame: MQTT travels in binary frames only [MQTT-6.0.0-1].
var ErrTextFrame = errors.New("websocket: text frame (MQTT needs binary frames)")

// NewWebSocket returns a listener for MQTT over WebSocket on inner (which
// it owns from now on); with a TLS configuration, over secure WebSocket
// (wss). Call Start, then hand it to the broker.
func NewWebSocket(inner net.Listener, cfg *tls.Config, opts Options) (*Listener, error) {
	kind := "ws"
	if cfg != nil {
		kind = "wss"
	}
	l, err := newListener(inner, kind, cfg, opts)
	if err != nil {
		return nil, err
	}
	l.ws = newWSServer(l)
	return l, nil
}

// handshakeWSS completes the TLS handshake, then hands the connection to
// the HTTP server for the WebSocket upgrade.
func (l *Listener) handshakeWSS(pc *permitConn) {
	tc := l.handshake(pc)
	if tc == nil {
		return
	}
	if !l.ws.offer(tc) {
		tc.Close()
	}
}

// sniffHTTP reads the first byte of a ws:// connection and hands it to the
// HTTP server if it can start an HTTP request (a method: an upper-case
// letter). Anything else — plain MQTT (a CONNECT starts with 0x10), TLS
// (0x16) — is closed at once with a log line, rather than after the
// HTTP server's header timeout.
func (l *Listener) sniffHTTP(pc *permitConn) {
	var b [1]byte
	pc.SetReadDeadline(time.Now().Add(l.opts.HandshakeTimeout))
	if _, err := io.ReadFull(pc, b[:]); err != nil {
		pc.Close()
		if l.ctx.Err() == nil && !isEOF(err) {
			l.log.Info("WebSocket connection closed before its HTTP request", "remote", pc.RemoteAddr().String(), "err", err)
		}
		return
	}
	pc.SetReadDeadline(time.Time{})
	if b[0] < 'A' || b[0] > 'Z' {
		pc.Close()
		why := "not an HTTP request"
		switch b[0] {
		case 0x10:
			why = "plain MQTT on the WebSocket port (MQTT over WebSocket needs an HTTP upgrade to /mqtt)"
		case 0x16:
			why = "TLS on the plain WebSocket port (wss:// is on its own port)"
		}
		l.log.Info("WebSocket connection refused: "+why, "remote", pc.RemoteAddr().String(), "first_byte", fmt.Sprintf("0x%02x", b[0]))
		return
	}
	c := &sniffedConn{permitConn: pc, first: b[0], unread: true}
	if !l.ws.offer(c) {
		c.Close()
	}
}

// sniffedConn gives back the byte sniffHTTP read.
type sniffedConn struct {
	*permitConn
	first  byte
	unread bool
}

func (c *sniffedConn) Read(p []byte) (int, error) {
	if c.unread && len(p) > 0 {
		p[0], c.unread = c.first, false
		return 1, nil
	}
	return c.permitConn.Read(p)
}

// ---------------------------------------------------------------------------
// The HTTP server that upgrades

type connKey struct{}

// wsServer is the HTTP server of a WebSocket listener. It serves
// connections the listener has accepted (and, for wss, handshaken), handed
// over through a channel.
type wsServer struct {
	l     *Listener
	conns chan net.Conn
	srv   *http.Server
	up    websocket.Upgrader
}

func newWSServer(l *Listener) *wsServer {
	s := &wsServer{l: l, conns: make(chan net.Conn)}
	s.up = websocket.Upgrader{
		HandshakeTimeout: l.opts.HandshakeTimeout,
		Subprotocols:     Subprotocols,
		// Pooled write buffers: an idle connection holds none.
		WriteBufferPool: &sync.Pool{},
		// MQTT clients in browsers connect from any origin; they
		// authenticate in CONNECT, never with cookies.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			s.refuse(w, r, status, reason.Error())
		},
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: l.opts.HandshakeTimeout,
		ReadTimeout:       l.opts.HandshakeTimeout,
		IdleTimeout:       l.opts.HandshakeTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		// HTTP/1.1 only: a WebSocket upgrade is an HTTP/1.1 request.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	return s
}

// start serves HTTP until close. l.mu is held.
func (s *wsServer) start(l *Listener) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		err := s.srv.Serve(&chanListener{conns: s.conns, stop: l.stop, addr: l.inner.Addr()})
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			l.log.Error("WebSocket HTTP server stopped", "err", err)
		}
	}()
}

// offer hands a connection to the HTTP server; false if the listener is
// closing.
func (s *wsServer) offer(c net.Conn) bool {
	select {
	case s.conns <- c:
		return true
	case <-s.l.stop:
		return false
	}
}

// close closes the HTTP server and every connection not yet upgraded.
func (s *wsServer) close() { s.srv.Close() }

// refuse answers a request that is not an MQTT WebSocket upgrade, closes
// the connection, and logs one line.
func (s *wsServer) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	s.l.log.Info("WebSocket request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"subprotocols", r.Header.Get("Sec-WebSocket-Protocol"), "status", status, "why", why)
	w.Header().Set("Connection", "close")
	http.Error(w, why, status)
}

// ServeHTTP upgrades an MQTT WebSocket request and hands the connection to
// Accept.
func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := s.l
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()

	if !validPath(r.URL.Path) {
		s.refuse(w, r, http.StatusNotFound, "MQTT over WebSocket is served at /mqtt")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		s.refuse(w, r, http.StatusUpgradeRequired, "this port speaks MQTT over WebSocket: open a WebSocket to /mqtt with subprotocol mqtt")
		return
	}
	if !offersMQTT(websocket.Subprotocols(r)) {
		s.refuse(w, r, http.StatusBadRequest, "WebSocket subprotocol mqtt required (MQTT-6.0.0-3)")
		return
	}
	name := normalizeHost(r.Host)
	if r.TLS != nil {
		if sni := normalizeHost(r.TLS.ServerName); sni != "" {
			// The tenant comes from the name the certificate was chosen
			// for; a request for another host on this connection is
			// refused, as HTTP/2 servers do (RFC 9110 §15.5.20).
			if name != "" && name != sni {
				s.refuse(w, r, http.StatusMisdirectedRequest, "Host header does not match the TLS server name")
				return
			}
			name = sni
		}
	}
	ws, err := s.up.Upgrade(w, r, nil) // on failure, Error has answered
	if err != nil {
		return
	}
	ws.SetReadLimit(l.opts.MaxMessageSize)
	ws.NetConn().SetDeadline(time.Time{}) // the HTTP server's deadlines
	c := newWSConn(ws, name, r.TLS)
	// The connection's handshake permit (held by *permitConn, under a
	// *tls.Conn or a *sniffedConn).
	pc, _ := r.Context().Value(connKey{}).(interface{ release() })
	select {
	case l.ready <- c:
		if pc != nil {
			pc.release()
		}
	case <-l.stop:
		c.Close()
	}
}

func validPath(p string) bool {
	for _, v := range Paths {
		if p == v {
			return true
		}
	}
	return false
}

func offersMQTT(offered []string) bool {
	for _, o := range offered {
		for _, s := range Subprotocols {
			if o == s {
				return true
			}
		}
	}
	return false
}

// chanListener is the net.Listener the HTTP server accepts from: the
// connections the Listener hands over.
type chanListener struct {
	conns <-chan net.Conn
	stop  <-chan struct{}
	addr  net.Addr
}

func (c *chanListener) Accept() (net.Conn, error) {
	select {
	case nc := <-c.conns:
		return nc, nil
	case <-c.stop:
		return nil, net.ErrClosed
	}
}

func (c *chanListener) Close() error   { return nil } // the Listener closes
func (c *chanListener) Addr() net.Addr { return c.addr }

// ---------------------------------------------------------------------------
// The connection

// wsConn is an MQTT connection over WebSocket: a byte stream over the
// payloads of binary messages. Read is for one goroutine at a time, and so
// is Write; the deadline setters and Close may be called from any
// goroutine.
type wsConn struct {
	ws         *websocket.Conn
	serverName string
	tls        *tls.ConnectionState // nil on ws://

	// Reader side.
	r       io.Reader // the current message
	readErr error     // sticky: gorilla panics on reading a failed connection again

	// Writer side.
	wmu       sync.Mutex
	wDeadline atomic.Int64 // Unix nanoseconds; 0: none

	closeOnce sync.Once
	closeErr  error
}

var _ Conn = (*wsConn)(nil)

func newWSConn(ws *websocket.Conn, serverName string, st *tls.ConnectionState) *wsConn {
	return &wsConn{ws: ws, serverName: serverName, tls: st}
}

// ServerName implements Conn: the TLS SNI, else the Host header.
func (c *wsConn) ServerName() string { return c.serverName }

// ConnectionState implements Conn.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.tls == nil {
		return tls.ConnectionState{}
	}
	return *c.tls
}

// Read reads the payload of binary messages as one stream. Ping frames
// are answered with pong and close frames echoed (RFC 6455 §5.5) while it
// reads. A text frame ends the connection (close status 1003).
func (c *wsConn) Read(p []byte) (int, error) {
	if c.readErr != nil {
		return 0, c.readErr
	}
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				c.readErr = readError(err)
				return 0, c.readErr
			}
			if typ != websocket.BinaryMessage {
				c.readErr = ErrTextFrame
				c.ws.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseUnsupportedData, "MQTT needs binary frames"),
					time.Now().Add(closeWait))
				return 0, c.readErr
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil // end of this message; the stream goes on
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			c.readErr = readError(err)
			return n, c.readErr
		}
		return n, nil
	}
}

// readError maps the client's normal close to io.EOF.
func readError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived:
			return io.EOF
		}
		return fmt.Errorf("websocket closed by client: %w", err)
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return fmt.Errorf("websocket message larger than the limit: %w", err)
	}
	return err
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// gorilla applies its deadline at every frame; it is only set here,
	// under wmu, from the value the setters store.
	var dl time.Time
	if ns := c.wDeadline.Load(); ns != 0 {
		dl = time.Unix(0, ns)
	}
	c.ws.SetWriteDeadline(dl)
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a close frame (status 1000, best effort, bounded) and
// closes the connection. It is idempotent.
func (c *wsConn) Close() error {
	c.closeOnce.Do(func() {
		c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(closeWait))
		c.closeErr = c.ws.Close()
	})
	return c.closeErr
}

// LocalAddr returns the server's address.
func (c *wsConn) LocalAddr() net.Addr { return c.ws.LocalAddr() }

// RemoteAddr returns the client's TCP address (X-Forwarded-For is not
// trusted).
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// SetDeadline sets both deadlines.
func (c *wsConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline makes reads fail after t; the connection stays open
// for writes.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline makes writes fail after t, including one in progress.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.wDeadline.Store(ns)
	// Interrupt a write in progress now; the next Write applies it too.
	return c.ws.NetConn().SetWriteDeadline(t)
}
