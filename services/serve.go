package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/dashboard"
)

// ServeConfig configures the all-in-one server.
type ServeConfig struct {
	// DataDir holds all state (JetStream files). Created if missing.
	DataDir string
	// NATSAddr exposes the embedded NATS to other edges ("" keeps it
	// in process).
	NATSAddr string
	// HTTPAddr serves health checks ("" disables it). The dashboard and
	// HTTP API come here.
	HTTPAddr string
	// Edge configures the in-process edge; NATSURLs are ignored. With no
	// TLS certificate configured (Edge.TLS), its TLS listeners use a
	// development CA generated under DataDir/tls; an empty
	// Edge.TLS.BaseDomain is Control.BaseDomain (and the other way round).
	Edge EdgeConfig
	// Control configures the in-process control plane; an empty database
	// URL or key file means SQLite and a key file in DataDir.
	Control ControlConfig
	// API tunes the HTTP API's backend.
	API APIConfig
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

// Server is the running all-in-one process.
type Server struct {
	cfg  ServeConfig
	log  *slog.Logger
	ns   *server.Server
	ctl  *Control
	cnc  *nats.Conn
	edge *Edge
	http *http.Server
	dash *dashboard.Server
	api  *apiBackend // the HTTP API's backbone node and inspector
	hl   net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

// NewServer validates cfg.
func NewServer(cfg ServeConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("data directory is required")
	}
	cfg.Edge.Logger = cfg.Logger
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

// Start starts the embedded NATS, the edge and the HTTP listener.
func (s *Server) Start(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	ns, err := StartEmbeddedNATS(EmbeddedNATSConfig{DataDir: s.cfg.DataDir, Addr: s.cfg.NATSAddr, Logger: s.log})
	if err != nil {
		return err
	}
	s.ns = ns
	if s.cfg.NATSAddr != "" {
		s.log.Info("NATS backbone listening for other edges", "url", ns.ClientURL())
	}
	cc := s.cfg.Control
	cc.DataDirDefaults(s.cfg.DataDir)
	cc.Logger = s.log
	if cc.ChangePollInterval == 0 {
		// Changes made through this process reach the edge at once; the
		// feed only carries those of other processes (the CLI on the same
		// database). Each look costs an SQLite read (ChangeMark, ~0.2 ms)
		// on the core that also serves MQTT; the full read at 250 ms was
		// the largest part of the QoS 0 p99 latency at 1,000 msg/s
		// (bench/RESULTS.md).
		cc.ChangePollInterval = time.Second
	}
	// One base domain for the host → tenant mapping and the certificates.
	if cc.BaseDomain == "" {
		cc.BaseDomain = s.cfg.Edge.TLS.BaseDomain
	}
	if s.ctl, err = OpenControl(ctx, cc); err != nil {
		s.Close()
		return err
	}
	if s.cnc, err = nats.Connect("", nats.InProcessServer(ns), nats.Name("relay-control"), nats.MaxReconnects(-1)); err != nil {
		s.Close()
		return fmt.Errorf("control: %w", err)
	}
	if err := s.ctl.Serve(ctx, s.cnc); err != nil {
		s.Close()
		return err
	}
	ec := s.cfg.Edge
	ec.NATSOptions = append(ec.NATSOptions, nats.InProcessServer(ns))
	if ec.TLS.BaseDomain == "" {
		ec.TLS.BaseDomain = cc.BaseDomain
	}
	if ec.TLS.DevCADir == "" {
		// No certificate configured: TLS with a development CA.
		ec.TLS.DevCADir = filepath.Join(s.cfg.DataDir, "tls")
	}
	ec.Bus.MaxControlLine = embeddedMaxControlLine
	if s.edge, err = NewEdge(ec); err != nil {
		s.Close()
		return err
	}
	if err := s.edge.Start(ctx); err != nil {
		s.Close()
		return err
	}
	if s.ctl.svc != nil && s.edge.auth != nil {
		// Changes made here reach the edge's login cache before the
		// operation returns.
		s.ctl.svc.AttachLocal(s.edge.auth)
	}
	if s.api, err = s.startAPIBackend(ctx); err != nil {
		s.Close()
		return err
	}
	if s.cfg.HTTPAddr != "" {
		l, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			s.Close()
			return fmt.Errorf("HTTP listener: %w", err)
		}
		s.hl = l
		if s.dash, err = s.newDashboard(); err != nil {
			s.Close()
			return err
		}
		s.http = newHTTPServer(s.dash.Handler(), s.cfg.API, s.log)
		s.http.RegisterOnShutdown(s.dash.EndStreams)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("HTTP server stopped", "err", err)
			}
		}()
		s.log.Info("HTTP listening", "addr", l.Addr().String())
	}
	return nil
}

// Control returns the in-process control plane.
func (s *Server) Control() *Control { return s.ctl }

// Edge returns the in-process edge.
func (s *Server) Edge() *Edge { return s.edge }

// NATSURL returns the embedded NATS's client URL if it listens.
func (s *Server) NATSURL() string {
	if s.ns == nil || s.cfg.NATSAddr == "" {
		return ""
	}
	return s.ns.ClientURL()
}

// HTTPAddr returns the HTTP listener's address (nil if none).
func (s *Server) HTTPAddr() net.Addr {
	if s.hl == nil {
		return nil
	}
	return s.hl.Addr()
}

// Close shuts everything down in order: HTTP, the edge (clients, backbone
// drain), then NATS. It is idempotent.
func (s *Server) Close() error {
	var errs []error
	s.once.Do(func() {
		if s.http != nil {
			errs = append(errs, shutdownHTTP(s.http, s.log))
		}
		s.wg.Wait()
		if s.dash != nil {
			errs = append(errs, s.dash.Close())
		}
		errs = append(errs, s.api.Close())
		if s.edge != nil {
			errs = append(errs, s.edge.Close())
		}
		if s.ctl != nil {
			errs = append(errs, s.ctl.Close())
		}
		if s.cnc != nil {
			s.cnc.Drain()
		}
		if s.ns != nil {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}
	})
	return errors.Join(errs...)
}
