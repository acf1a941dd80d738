package services

import (
	"context"
	"net"

	"github.com/relaymq/relay/dashboard"
	"github.com/relaymq/relay/tenant"
)

// dashboardWebDeps assembles the dashboard pages' dependencies: the
// control plane's store (users, sessions, tenant and app lookups) and
// server key (session tokens), and the MQTT port for the connect
// instructions.
func (s *Server) dashboardWebDeps() dashboard.WebDeps {
	d := dashboard.WebDeps{Store: s.ctl.store, Keyed: s.ctl.keyed}
	if s.edge != nil {
		if a, ok := s.edge.MQTTAddr().(*net.TCPAddr); ok && a != nil {
			d.MQTTPort = a.Port
		}
	}
	return d
}

// Users returns the store of dashboard users and sessions.
func (c *Control) Users() tenant.UserStore { return c.store }

// CreateUser creates a dashboard user who signs in with email and
// password: the owner of the tenant with this slug, or, if slug is "", a
// platform operator (who sees every tenant). Errors wrap tenant.ErrInvalid
// (a bad email, a password shorter than dashboard.MinPasswordLength),
// tenant.ErrConflict (the email has an account) or tenant.ErrNotFound (no
// such tenant).
func (c *Control) CreateUser(ctx context.Context, email, password, slug string) (*tenant.User, error) {
	tenantID := ""
	if slug != "" {
		t, err := c.store.TenantBySlug(ctx, slug)
		if err != nil {
			return nil, err
		}
		tenantID = t.ID
	}
	u, err := dashboard.NewUser(email, password, tenantID)
	if err != nil {
		return nil, err
	}
	if err := c.store.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}
