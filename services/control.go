package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/services/authsvc"
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
	return &Control{cfg: cfg, log: cfg.Logger, store: store, pol: pol, keyed: keyed, adm: admin.New(store, pol, keyed)}, nil
}

// Admin returns the tenancy operations.
func (c *Control) Admin() *admin.Admin { return c.adm }

// Serve starts answering edges on nc.
func (c *Control) Serve(ctx context.Context, nc *nats.Conn) error {
	svc, err := authsvc.NewService(authsvc.ServiceOptions{
		Conn: nc, Store: c.store, Policies: c.pol, Keyed: c.keyed, BaseDomain: c.cfg.BaseDomain, Logger: c.log,
	})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	c.svc = svc
	return nil
}

// Close stops the service and closes the store; it is idempotent.
func (c *Control) Close() error {
	var errs []error
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
