package services

import (
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
