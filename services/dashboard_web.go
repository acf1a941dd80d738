package services

import (
	"context"
	"net"

	"github.com/relaymq/relay/dashboard"
	"github.com/relaymq/relay/tenant"
)

// dashboardWebDeps assembles the dashboard pages' dependencies: the
// control plane's store (users, sessions, tenant and app lookups) and
// server key (session tokens), and the edge's ports for the connect
// instructions.
func (s *Server) dashboardWebDeps() dashboard.WebDeps {
	d := dashboard.WebDeps{Store: s.ctl.store, Keyed: s.ctl.keyed}
	if s.edge != nil {
		d.MQTTPort = portOf(s.edge.MQTTAddr())
		d.MQTTSPort = portOf(s.edge.MQTTSAddr())
		d.WSPort = portOf(s.edge.WSAddr())
		d.WSSPort = portOf(s.edge.WSSAddr())
	}
	return d
}

// portOf is a TCP listener's port (0 for none).
func portOf(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok && t != nil {
		return t.Port
	}
	return 0
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
