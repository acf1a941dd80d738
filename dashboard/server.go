package dashboard

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// Config configures the dashboard and HTTP API.
type Config struct {
	// Tenancy performs tenancy operations (services/admin).
	Tenancy Tenancy
	// API are the dependencies of the JSON API (see api_deps.go).
	API APIDeps
	// Web are the dependencies of the dashboard pages (see web_deps.go).
	Web WebDeps
	// BaseDomain is the parent of tenant host names
	// (<slug>.<base-domain>).
	BaseDomain string
	// SecureCookies marks session cookies Secure. Set it whenever the
	// dashboard is reached over HTTPS (always in production).
	SecureCookies bool
	// Health reports whether the backbone is usable (GET /healthz).
	Health func(ctx context.Context) error
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

// Server is the dashboard and HTTP API as an http.Handler.
type Server struct {
	cfg  Config
	log  *slog.Logger
	echo *echo.Echo
	web  *webState
	api  *apiState
}

// New validates cfg and builds the handler.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Tenancy == nil {
		return nil, errors.New("dashboard: Tenancy is required")
	}
	if cfg.BaseDomain == "" {
		cfg.BaseDomain = "relay.localhost"
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.log.Error("handler panic", "err", err, "path", c.Path(), "stack", string(stack))
			return err
		},
	}))
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		ReferrerPolicy:        "same-origin",
		ContentSecurityPolicy: "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
	}))
	e.GET("/healthz", s.healthz)
	var err error
	if s.api, err = s.routesAPI(e.Group("/api/v1")); err != nil {
		return nil, err
	}
	if s.web, err = s.routesWeb(e); err != nil {
		return nil, err
	}
	s.echo = e
	return s, nil
}

// Handler returns the HTTP handler serving the dashboard and API.
func (s *Server) Handler() http.Handler { return s.echo }

// Close stops background work (session sweeps, live watches). It is
// idempotent.
func (s *Server) Close() error {
	return errors.Join(s.api.close(), s.web.close())
}

func (s *Server) healthz(c echo.Context) error {
	if s.cfg.Health != nil {
		if err := s.cfg.Health(c.Request().Context()); err != nil {
			return errors.Join(ErrUnavailable, err)
		}
	}
	return c.String(http.StatusOK, "ok\n")
}

// requireCaller authenticates the request with an API key (Authorization
// header) or a dashboard session cookie (with a CSRF token on unsafe
// methods) and records the Caller; 401 otherwise.
func (s *Server) requireCaller(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		k, err := s.apiKeyCaller(c)
		if err != nil {
			return err
		}
		if k == nil {
			if k, err = s.sessionCaller(c); err != nil {
				return err
			}
		}
		if k == nil {
			return ErrUnauthenticated
		}
		setCaller(c, k)
		return next(c)
	}
}
