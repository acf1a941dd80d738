package services

import "github.com/relaymq/relay/dashboard"

// dashboardAPIDeps assembles the JSON API's dependencies.
func (s *Server) dashboardAPIDeps() dashboard.APIDeps { return dashboard.APIDeps{} }
