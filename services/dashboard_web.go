package services

import "github.com/relaymq/relay/dashboard"

// dashboardWebDeps assembles the dashboard pages' dependencies.
func (s *Server) dashboardWebDeps() dashboard.WebDeps { return dashboard.WebDeps{} }
