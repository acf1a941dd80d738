// Package services assembles Relay's long-running processes: an MQTT edge
// on a NATS backbone (Edge), and the all-in-one server with an embedded
// NATS (Serve).
package services

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/listener"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services/authsvc"
	"github.com/relaymq/relay/services/inspect"
)

// EdgeConfig configures one edge node.
type EdgeConfig struct {
	// NodeID names the node; default: host name plus a random suffix.
	NodeID string
	// NATSURLs are the backbone's servers (ignored when NATSOptions has
	// an in-process server).
	NATSURLs []string
	// NATSOptions are extra NATS connection options.
	NATSOptions []nats.Option
	// MQTTAddr is the TCP address for MQTT ("" disables it).
	MQTTAddr string
	// MQTTSAddr is the address for MQTT over TLS ("" disables it).
	MQTTSAddr string
	// WSAddr is the address for MQTT over WebSocket, at /mqtt ("" disables
	// it).
	WSAddr string
	// WSSAddr is the address for MQTT over secure WebSocket, at /mqtt (""
	// disables it).
	WSSAddr string
	// TLS configures the certificates of MQTTSAddr and WSSAddr.
	TLS TLSConfig
	// AllowAnonymous lets clients without credentials into the default
	// tenant. Clients with credentials are checked by the control plane
	// (relay control, or the one inside relay serve).
	AllowAnonymous bool
	// Broker holds the broker's limits; NodeID, Logger, Backbone and
	// Authenticator are filled in by the edge.
	Broker broker.Options
	// Bus holds backbone settings; Conn, NodeID and Logger are filled in.
	Bus natsbus.Options
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultBaseDomain is the default base domain: tenant host names are
// <slug>.relay.localhost.
const DefaultBaseDomain = "relay.localhost"

// TLSConfig configures an edge's TLS certificates: one certificate
// (CertFile and KeyFile), a directory of per-host certificates (CertDir),
// or, with neither, a development CA in DevCADir. With none of them the
// TLS listeners are disabled (logged).
type TLSConfig struct {
	// CertFile and KeyFile are a PEM certificate chain and its key.
	CertFile, KeyFile string
	// CertDir holds per-host certificates, chosen by SNI (see
	// listener.CertOptions.CertDir).
	CertDir string
	// ClientCAFile is a PEM bundle of CAs for client certificates: with
	// it, TLS clients are asked for a certificate, and a verified one can
	// replace the password in tenants that allow it.
	ClientCAFile string
	// BaseDomain: tenant host names are <slug>.<BaseDomain>; it picks the
	// default certificate of CertDir and names the development
	// certificate. Default DefaultBaseDomain.
	BaseDomain string
	// DevCADir, used when no certificate is configured, holds a
	// development CA and a certificate for *.<BaseDomain>, <BaseDomain>
	// and localhost, generated on first start (listener.EnsureDevCA).
	DevCADir string
	// ReloadInterval is how often certificate files are checked for
	// changes. Default listener.DefaultReloadInterval.
	ReloadInterval time.Duration
	// HandshakeTimeout bounds a TLS handshake or WebSocket upgrade.
	// Default listener.DefaultHandshakeTimeout (10 s).
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the handshakes and upgrades in progress at once
	// per listener. Default listener.DefaultMaxHandshakes (256).
	MaxHandshakes int
}

// configured reports whether certificate files are given.
func (c *TLSConfig) configured() bool {
	return c.CertFile != "" || c.KeyFile != "" || c.CertDir != ""
}

// wsSlack is what a WebSocket message may hold beyond the largest MQTT
// packet (a client may put more than one packet in a message).
const wsSlack = 16 << 10

// Edge is a running edge node.
type Edge struct {
	cfg    EdgeConfig
	log    *slog.Logger
	nc     *nats.Conn
	dc     *nats.Conn // live messages, without echo (natsbus.Options.DataConn)
	bus    *natsbus.Bus
	broker *broker.Broker
	insp   *inspect.Responder
	auth   *authsvc.Client
	mqtt   net.Listener
	mqtts  net.Listener
	ws     net.Listener
	wss    net.Listener
	certs  *listener.Certificates
	devCA  *listener.DevCA
	// closers are the listeners, closed (again) after the broker: one
	// that failed to start is not the broker's.
	closers []io.Closer

	wg   sync.WaitGroup
	once sync.Once
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// DefaultNodeID returns the host name (made token-safe) with a random
// suffix, so that restarted nodes never reuse a dead node's identity.
func DefaultNodeID() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, h)
	if len(h) > 40 {
		h = h[:40]
	}
	if h == "" {
		h = "edge"
	}
	var b [4]byte
	rand.Read(b[:])
	return h + "-" + hex.EncodeToString(b[:])
}

// NewEdge validates cfg.
func NewEdge(cfg EdgeConfig) (*Edge, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeID == "" {
		cfg.NodeID = DefaultNodeID()
	}
	if !nodeIDPattern.MatchString(cfg.NodeID) {
		return nil, fmt.Errorf("node ID %q: use 1-64 letters, digits, '-' or '_'", cfg.NodeID)
	}
	return &Edge{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID)}, nil
}

// Start connects to NATS, prepares the backbone and starts listening.
func (e *Edge) Start(ctx context.Context) error {
	opts := append([]nats.Option{
		nats.Name("relay-edge " + e.cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				e.log.Warn("backbone connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			e.log.Info("backbone reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			e.log.Warn("backbone error", "subject", subj, "err", err)
		}),
	}, e.cfg.NATSOptions...)
	url := strings.Join(e.cfg.NATSURLs, ",")
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connecting to NATS %s: %w", url, err)
	}
	e.nc = nc
	// Live messages travel on a second connection that does not echo, so
	// that the broker hands its own publishes to its own subscribers
	// directly and NATS carries them only to the other edges (it also
	// keeps a flood of messages from delaying JetStream and control
	// traffic on the first connection).
	dopts := append(opts[:len(opts):len(opts)], nats.Name("relay-edge "+e.cfg.NodeID+" data"), nats.NoEcho())
	if e.dc, err = nats.Connect(url, dopts...); err != nil {
		e.Close()
		return fmt.Errorf("connecting to NATS %s: %w", url, err)
	}

	bo := e.cfg.Bus
	bo.Conn, bo.DataConn, bo.NodeID, bo.Logger = nc, e.dc, e.cfg.NodeID, e.cfg.Logger
	if bo.MessageMaxAge == 0 && e.cfg.Broker.SessionExpiry > 0 {
		bo.MessageMaxAge = e.cfg.Broker.SessionExpiry
	}
	if e.bus, err = natsbus.New(bo); err != nil {
		e.Close()
		return err
	}
	if err := e.bus.Start(ctx); err != nil {
		e.Close()
		return fmt.Errorf("starting backbone: %w", err)
	}
	brOpts := e.cfg.Broker
	brOpts.NodeID, brOpts.Logger, brOpts.Backbone = e.cfg.NodeID, e.cfg.Logger, e.bus
	if brOpts.Authenticator == nil {
		// Clients with a username are checked by the control plane over
		// NATS; the others are anonymous (default tenant) if allowed.
		e.auth = authsvc.NewClient(nc, e.cfg.AllowAnonymous, e.cfg.Logger)
		brOpts.Authenticator = e.auth
	}
	if e.broker, err = broker.New(brOpts); err != nil {
		e.Close()
		return err
	}
	if e.auth != nil {
		if err := e.auth.Attach(e.broker); err != nil {
			e.Close()
			return err
		}
	}
	// Dashboards (in this process or another) see this edge's clients,
	// routes and counters through its inspection responder.
	if e.insp, err = inspect.StartResponder(inspect.ResponderOptions{
		Conn: e.nc, NodeID: e.cfg.NodeID, Source: e.broker, Logger: e.log,
	}); err != nil {
		e.Close()
		return err
	}
	if err := e.listen(); err != nil {
		e.Close()
		return err
	}
	return nil
}

// listen opens the listeners the configuration asks for and serves them.
func (e *Edge) listen() error {
	if e.cfg.MQTTAddr != "" {
		// No TCP keep-alive probes: MQTT has its own keep-alive, and
		// setting them costs system calls on every accept.
		lc := net.ListenConfig{KeepAlive: -1}
		l, err := lc.Listen(context.Background(), "tcp", e.cfg.MQTTAddr)
		if err != nil {
			return fmt.Errorf("MQTT listener: %w", err)
		}
		e.mqtt = l
		e.serve("MQTT", l, nil)
	}
	tc := e.cfg.TLS
	maxPacket := e.cfg.Broker.MaxPacketSize
	if maxPacket <= 0 {
		maxPacket = 1 << 20 // the broker's default
	}
	lo := listener.Options{
		Logger: e.log, HandshakeTimeout: tc.HandshakeTimeout, MaxHandshakes: tc.MaxHandshakes,
		MaxMessageSize: int64(maxPacket) + wsSlack,
	}
	if e.cfg.MQTTSAddr != "" || e.cfg.WSSAddr != "" {
		if err := e.loadCertificates(); err != nil {
			return err
		}
	}
	if e.cfg.MQTTSAddr != "" && e.certs != nil {
		l, err := e.open("MQTT over TLS", e.cfg.MQTTSAddr, func(raw net.Listener) (*listener.Listener, error) {
			return listener.NewTLS(raw, e.certs.ServerConfig(), lo)
		})
		if err != nil {
			return err
		}
		e.mqtts = l
		e.serve("MQTT over TLS", l, nil)
	}
	if e.cfg.WSAddr != "" {
		l, err := e.open("MQTT over WebSocket", e.cfg.WSAddr, func(raw net.Listener) (*listener.Listener, error) {
			return listener.NewWebSocket(raw, nil, lo)
		})
		if err != nil {
			return err
		}
		e.ws = l
		e.serve("MQTT over WebSocket", l, []any{"path", listener.Paths[0]})
	}
	if e.cfg.WSSAddr != "" && e.certs != nil {
		l, err := e.open("MQTT over secure WebSocket", e.cfg.WSSAddr, func(raw net.Listener) (*listener.Listener, error) {
			return listener.NewWebSocket(raw, e.certs.ServerConfig("http/1.1"), lo)
		})
		if err != nil {
			return err
		}
		e.wss = l
		e.serve("MQTT over secure WebSocket", l, []any{"path", listener.Paths[0]})
	}
	return nil
}

// loadCertificates loads the configured certificates (or the development
// CA's) and starts watching them; with none configured and no DevCADir it
// leaves e.certs nil: TLS listeners are disabled.
func (e *Edge) loadCertificates() error {
	tc := e.cfg.TLS
	if tc.BaseDomain == "" {
		tc.BaseDomain = DefaultBaseDomain
	}
	if !tc.configured() {
		if tc.DevCADir == "" {
			e.log.Warn("TLS listeners disabled: no certificate configured (--tls-cert and --tls-key, or --tls-cert-dir)",
				"mqtts_addr", e.cfg.MQTTSAddr, "wss_addr", e.cfg.WSSAddr)
			return nil
		}
		dev, err := listener.EnsureDevCA(tc.DevCADir, tc.BaseDomain, time.Now())
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		e.devCA = dev
		e.log.Info("TLS uses a development CA (configure --tls-cert/--tls-key or --tls-cert-dir in production); clients trust it with --cafile",
			"ca", dev.CAFile, "cert", dev.CertFile, "names", "*."+tc.BaseDomain+", "+tc.BaseDomain+", localhost", "generated", dev.Created)
		tc.CertFile, tc.KeyFile = dev.CertFile, dev.KeyFile
	}
	certs, err := listener.NewCertificates(listener.CertOptions{
		CertFile: tc.CertFile, KeyFile: tc.KeyFile, CertDir: tc.CertDir, ClientCAFile: tc.ClientCAFile,
		BaseDomain: tc.BaseDomain, ReloadInterval: tc.ReloadInterval, Logger: e.log,
	})
	if err != nil {
		return err
	}
	e.certs = certs
	certs.Start()
	return nil
}

// open listens on addr and wraps the listener.
func (e *Edge) open(name, addr string, wrap func(net.Listener) (*listener.Listener, error)) (net.Listener, error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	l, err := wrap(raw)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	e.closers = append(e.closers, l)
	if err := l.Start(); err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return l, nil
}

// serve hands l to the broker.
func (e *Edge) serve(name string, l net.Listener, attrs []any) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.broker.Serve(l); err != nil {
			e.log.Error(name+" listener stopped", "err", err)
		}
	}()
	e.log.Info(name+" listening", append([]any{"addr", l.Addr().String()}, attrs...)...)
}

// MQTTAddr returns the MQTT listener's address (nil if none).
func (e *Edge) MQTTAddr() net.Addr { return addrOf(e.mqtt) }

// MQTTSAddr returns the MQTT-over-TLS listener's address (nil if none).
func (e *Edge) MQTTSAddr() net.Addr { return addrOf(e.mqtts) }

// WSAddr returns the MQTT-over-WebSocket listener's address (nil if none).
func (e *Edge) WSAddr() net.Addr { return addrOf(e.ws) }

// WSSAddr returns the MQTT-over-secure-WebSocket listener's address (nil
// if none).
func (e *Edge) WSSAddr() net.Addr { return addrOf(e.wss) }

// DevCAFile returns the development CA certificate's path if the TLS
// listeners use the development CA, else "".
func (e *Edge) DevCAFile() string {
	if e.devCA == nil {
		return ""
	}
	return e.devCA.CAFile
}

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

// Broker returns the edge's broker.
func (e *Edge) Broker() *broker.Broker { return e.broker }

// NodeID returns the edge's node ID.
func (e *Edge) NodeID() string { return e.cfg.NodeID }

// Close stops listening, disconnects clients (their sessions stay in the
// backbone), stops the backbone and drains the NATS connection so that
// in-flight publishes and acks reach JetStream. It is idempotent.
func (e *Edge) Close() error {
	var errs []error
	e.once.Do(func() {
		if e.insp != nil {
			errs = append(errs, e.insp.Close())
		}
		if e.auth != nil {
			errs = append(errs, e.auth.Close())
		}
		if e.broker != nil {
			errs = append(errs, e.broker.Close())
		}
		for _, c := range e.closers {
			c.Close() // closed by the broker already, unless it never served it
		}
		e.wg.Wait()
		if e.certs != nil {
			errs = append(errs, e.certs.Close())
		}
		if e.bus != nil {
			errs = append(errs, e.bus.Close())
		}
		drain(e.dc)
		drain(e.nc)
	})
	return errors.Join(errs...)
}

// drain drains nc (nil: nothing) and waits until it is closed, at most 10 s.
func drain(nc *nats.Conn) {
	if nc == nil {
		return
	}
	done := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		nc.Close()
	}
}
