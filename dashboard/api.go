package dashboard

import "github.com/labstack/echo/v4"

// APIDeps are the JSON API's dependencies.
type APIDeps struct{}

// apiState is the JSON API's state.
type apiState struct{}

func (a *apiState) close() error { return nil }

// routesAPI registers the JSON API under g (/api/v1).
func (s *Server) routesAPI(g *echo.Group) (*apiState, error) {
	return &apiState{}, nil
}

// apiKeyCaller authenticates an API key from the Authorization header
// (Bearer <prefix>.<secret>, or Basic <prefix>:<secret>); nil, nil if the
// request has no Authorization header.
func (s *Server) apiKeyCaller(c echo.Context) (*Caller, error) {
	return nil, nil
}
