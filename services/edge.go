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
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services/authsvc"
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

// Edge is a running edge node.
type Edge struct {
	cfg    EdgeConfig
	log    *slog.Logger
	nc     *nats.Conn
	bus    *natsbus.Bus
	broker *broker.Broker
	auth   *authsvc.Client
	mqtt   net.Listener

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

	bo := e.cfg.Bus
	bo.Conn, bo.NodeID, bo.Logger = nc, e.cfg.NodeID, e.cfg.Logger
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
	if e.cfg.MQTTAddr != "" {
		l, err := net.Listen("tcp", e.cfg.MQTTAddr)
		if err != nil {
			e.Close()
			return fmt.Errorf("MQTT listener: %w", err)
		}
		e.mqtt = l
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := e.broker.Serve(l); err != nil {
				e.log.Error("MQTT listener stopped", "err", err)
			}
		}()
		e.log.Info("MQTT listening", "addr", l.Addr().String())
	}
	return nil
}

// MQTTAddr returns the MQTT listener's address (nil if none).
func (e *Edge) MQTTAddr() net.Addr {
	if e.mqtt == nil {
		return nil
	}
	return e.mqtt.Addr()
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
		if e.auth != nil {
			errs = append(errs, e.auth.Close())
		}
		if e.broker != nil {
			errs = append(errs, e.broker.Close())
		}
		e.wg.Wait()
		if e.bus != nil {
			errs = append(errs, e.bus.Close())
		}
		if e.nc != nil {
			done := make(chan struct{})
			e.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
			if err := e.nc.Drain(); err != nil {
				e.nc.Close()
			} else {
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					e.nc.Close()
				}
			}
		}
	})
	return errors.Join(errs...)
}
