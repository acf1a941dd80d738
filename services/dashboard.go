package services

import (
	"context"
	"errors"

	"github.com/relaymq/relay/dashboard"
)

// newDashboard assembles the dashboard and HTTP API of the all-in-one
// server from its control plane and edge.
func (s *Server) newDashboard() (*dashboard.Server, error) {
	return dashboard.New(dashboard.Config{
		Tenancy: s.ctl.Admin(),
		API:     s.dashboardAPIDeps(),
		Web:     s.dashboardWebDeps(),
		// Tenant host names in the pages' connect instructions.
		BaseDomain:     s.cfg.Control.BaseDomain,
		TrustedProxies: s.cfg.API.TrustedProxies,
		Health: func(context.Context) error {
			if !s.ns.JetStreamEnabled() {
				return errors.New("jetstream unavailable")
			}
			return nil
		},
		Logger: s.log,
	})
}
