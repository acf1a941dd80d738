package services

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/dashboard"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/services/authsvc"
	"github.com/relaymq/relay/services/inspect"
	"github.com/relaymq/relay/tenant"
	"github.com/relaymq/relay/tenant/gormstore"
)

// ControlConfig configures the control plane: the tenancy store, the ACL
// policies and the authentication service edges ask at CONNECT.
type ControlConfig struct {
	// DatabaseURL is postgres://… for PostgreSQL, or a SQLite file path
	// (sqlite:///path or a plain path).
	DatabaseURL string
	// SecretKeyFile holds the 32-byte key of the keyed hash of generated
	// secrets; created if missing. Every control process of a deployment
	// must use the same key.
	SecretKeyFile string
	// BaseDomain: <slug>.<BaseDomain> host names select the tenant.
	BaseDomain string
	// ChangePollInterval is how often the change feed (the audit records
	// every process writes) is read, for changes made by other processes;
	// changes made through this one reach the edges at once. Default
	// 250 ms.
	ChangePollInterval time.Duration
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

// DataDirDefaults fills an empty DatabaseURL and SecretKeyFile with the
// embedded defaults under dataDir: SQLite in relay.db, the key in
// secret.key.
func (c *ControlConfig) DataDirDefaults(dataDir string) {
	if c.DatabaseURL == "" {
		c.DatabaseURL = filepath.Join(dataDir, "relay.db")
	}
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(dataDir, "secret.key")
	}
}

// Control is an open control plane.
type Control struct {
	cfg   ControlConfig
	log   *slog.Logger
	store *gormstore.Store
	pol   *auth.Policies
	keyed *auth.Keyed
	adm   *admin.Admin
	svc   *authsvc.Service
	http  *controlHTTP // the dashboard and HTTP API, if served
}

// OpenControl opens (and migrates) the store and loads the policies.
func OpenControl(ctx context.Context, cfg ControlConfig) (*Control, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DatabaseURL == "" || cfg.SecretKeyFile == "" {
		return nil, errors.New("control: database URL and secret key file are required")
	}
	if !strings.Contains(cfg.DatabaseURL, "://") {
		if err := os.MkdirAll(filepath.Dir(cfg.DatabaseURL), 0o750); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
	}
	key, err := auth.LoadOrCreateKey(cfg.SecretKeyFile)
	if err != nil {
		return nil, fmt.Errorf("control: secret key: %w", err)
	}
	keyed, err := auth.NewKeyed(key)
	if err != nil {
		return nil, fmt.Errorf("control: secret key: %w", err)
	}
	store, err := gormstore.Open(ctx, cfg.DatabaseURL, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	pol, err := auth.NewPolicies(ctx, store.DB(), cfg.Logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return &Control{cfg: cfg, log: cfg.Logger, store: store, pol: pol, keyed: keyed, adm: admin.New(rotatingStore{store}, pol, keyed)}, nil
}

// Admin returns the tenancy operations.
func (c *Control) Admin() *admin.Admin { return c.adm }

// Serve starts answering edges on nc.
func (c *Control) Serve(ctx context.Context, nc *nats.Conn) error {
	svc, err := authsvc.NewService(authsvc.ServiceOptions{
		Conn: nc, Store: c.store, Policies: c.pol, Keyed: c.keyed, BaseDomain: c.cfg.BaseDomain, Logger: c.log,
		PollInterval: c.cfg.ChangePollInterval,
	})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	c.adm.OnChange(svc.Invalidate)
	c.svc = svc
	return nil
}

// Close stops the HTTP server and the service and closes the store; it is
// idempotent.
func (c *Control) Close() error {
	var errs []error
	if c.http != nil {
		errs = append(errs, c.http.close())
		c.http = nil
	}
	if c.svc != nil {
		errs = append(errs, c.svc.Close())
		c.svc = nil
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
		c.store = nil
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------------------
// Secret rotation

// rotatingStore adds secret rotation (admin.SecretRotator) to the GORM
// store, whose tenant.Store interface has no update of a credential's
// secret yet.
type rotatingStore struct{ *gormstore.Store }

var _ admin.SecretRotator = rotatingStore{}

// SetCredentialSecret implements admin.SecretRotator (hashes are stored as
// lower-case hex, see migrations/001_init.sql).
func (s rotatingStore) SetCredentialSecret(ctx context.Context, tenantID, username string, hash []byte, scheme string) error {
	res := s.DB().WithContext(ctx).Table("credentials").
		Where("tenant_id = ? AND username = ? AND revoked = ?", tenantID, username, false).
		Updates(map[string]any{"secret_hash": hex.EncodeToString(hash), "hash_scheme": scheme})
	if res.Error != nil {
		return fmt.Errorf("rotating credential %q: %w", username, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("credential %q: %w", username, tenant.ErrNotFound)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Dashboard and HTTP API in relay control

// ControlHTTPConfig configures the dashboard and HTTP API of a control
// process. The process joins the backbone as a node of its own (a
// natsbus.Bus without a broker): HTTP-published messages take the same
// path as an edge's, and its session index finds the persistent sessions
// to queue them for.
type ControlHTTPConfig struct {
	// Addr is the HTTP listen address.
	Addr string
	// NodeID names the process's backbone node. Default: "control-" plus
	// DefaultNodeID().
	NodeID string
	// MaxPacketSize is the edges' maximum packet size (HTTP messages
	// beyond it are refused). Default 1 MiB.
	MaxPacketSize int
	// Bus holds backbone settings (as the edges'); Conn, NodeID and
	// Logger are filled in.
	Bus natsbus.Options
	// API tunes the API's backend.
	API APIConfig
}

// controlHTTP is the running dashboard of a control process.
type controlHTTP struct {
	log  *slog.Logger
	bus  *natsbus.Bus
	resp *inspect.Responder
	api  *apiBackend
	dash *dashboard.Server
	srv  *http.Server
	l    net.Listener
	done chan struct{}
}

// ServeHTTP serves the dashboard and HTTP API on cfg.Addr, using nc (the
// connection Serve uses). Close stops it.
func (c *Control) ServeHTTP(ctx context.Context, nc *nats.Conn, cfg ControlHTTPConfig) error {
	if cfg.NodeID == "" {
		cfg.NodeID = "control-" + DefaultNodeID()
	}
	if !nodeIDPattern.MatchString(cfg.NodeID) {
		return fmt.Errorf("node ID %q: use 1-64 letters, digits, '-' or '_'", cfg.NodeID)
	}
	h := &controlHTTP{log: c.log, done: make(chan struct{})}
	bo := cfg.Bus
	bo.Conn, bo.NodeID, bo.Logger = nc, cfg.NodeID, c.log
	var err error
	if h.bus, err = natsbus.New(bo); err != nil {
		return err
	}
	if err := h.bus.Start(ctx); err != nil {
		return fmt.Errorf("control backbone: %w", err)
	}
	// The node answers inspections with nothing, so that gatherers know
	// every live node has answered without waiting.
	if h.resp, err = inspect.StartResponder(inspect.ResponderOptions{Conn: nc, NodeID: cfg.NodeID, Logger: c.log}); err != nil {
		h.close()
		return err
	}
	if h.api, err = newAPIBackend(ctx, nc, h.bus, cfg.NodeID, cfg.MaxPacketSize, cfg.API, c.log); err != nil {
		h.close()
		return err
	}
	// The pages: users and sessions in the control plane's database; the
	// connect instructions show the default MQTT port.
	web := dashboard.WebDeps{Store: c.store, Keyed: c.keyed}
	if h.dash, err = dashboard.New(dashboard.Config{
		Tenancy: c.adm, API: h.api.deps(), Web: web, BaseDomain: c.cfg.BaseDomain, Logger: c.log,
		TrustedProxies: cfg.API.TrustedProxies,
		Health:         func(context.Context) error { return busBackbone{nc: nc}.Ready() },
	}); err != nil {
		h.close()
		return err
	}
	if h.l, err = net.Listen("tcp", cfg.Addr); err != nil {
		h.close()
		return fmt.Errorf("HTTP listener: %w", err)
	}
	h.srv = newHTTPServer(h.dash.Handler(), cfg.API, c.log)
	h.srv.RegisterOnShutdown(h.dash.EndStreams)
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(h.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("HTTP server stopped", "err", err)
		}
	}()
	c.http = h
	c.log.Info("HTTP listening", "addr", h.l.Addr().String(), "node", cfg.NodeID)
	return nil
}

// HTTPAddr returns the address ServeHTTP listens on (nil if none).
func (c *Control) HTTPAddr() net.Addr {
	if c.http == nil || c.http.l == nil {
		return nil
	}
	return c.http.l.Addr()
}

// close stops the HTTP server, the dashboard, the inspector and the
// backbone node, in that order.
func (h *controlHTTP) close() error {
	var errs []error
	if h.srv != nil {
		errs = append(errs, shutdownHTTP(h.srv, h.log))
		<-h.done
	}
	if h.dash != nil {
		errs = append(errs, h.dash.Close())
	}
	errs = append(errs, h.api.Close())
	if h.resp != nil {
		errs = append(errs, h.resp.Close())
	}
	if h.bus != nil {
		errs = append(errs, h.bus.Close())
	}
	return errors.Join(errs...)
}
