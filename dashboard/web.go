package dashboard

import "github.com/labstack/echo/v4"

// WebDeps are the dashboard pages' dependencies.
type WebDeps struct{}

// webState is the dashboard pages' state.
type webState struct{}

func (w *webState) close() error { return nil }

// routesWeb registers the dashboard pages.
func (s *Server) routesWeb(e *echo.Echo) (*webState, error) {
	return &webState{}, nil
}

// sessionCaller authenticates a dashboard session cookie, checking the
// CSRF token on unsafe methods; nil, nil if there is no session cookie.
func (s *Server) sessionCaller(c echo.Context) (*Caller, error) {
	return nil, nil
}
