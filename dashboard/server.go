package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

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
	// TrustedProxies are the addresses of the reverse proxies in front of
	// the dashboard (TLS terminators, load balancers). The client address
	// that throttles are keyed on is then taken from X-Forwarded-For, up
	// to the first hop that is not one of them; without any, it is the
	// connection's address and X-Forwarded-For is ignored.
	TrustedProxies []netip.Prefix
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
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
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
		// Strict-Transport-Security over TLS (or behind a proxy that says
		// so); not for subdomains, which are tenants' MQTT host names.
		HSTSMaxAge:            365 * 24 * 60 * 60,
		HSTSExcludeSubdomains: true,
	}))
	e.Use(s.limitRequest)
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

// ipExtractor returns how the client's address is found: the connection's,
// or, behind trusted proxies, the last X-Forwarded-For hop that is not one
// of them. Echo trusts loopback and private addresses by default; here only
// the configured ranges are.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		p = p.Masked()
		bits := 32
		if p.Addr().Is6() {
			bits = 128
		}
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// clientIP is the address of the client that sent the request (see
// Config.TrustedProxies).
func (s *Server) clientIP(c echo.Context) string { return c.RealIP() }

// Request limits: every response must be written within writeTimeout
// (live watches extend it per write), and a page's request body (a form)
// is at most formBody bytes; the API's bodies are at most the largest
// publish batch, and each route applies its own, smaller limit as it reads
// one.
const (
	writeTimeout = 60 * time.Second
	formBody     = 64 << 10
)

// limitRequest bounds the request body and the time to write the response:
// the HTTP server has no WriteTimeout, which would end live watches, so
// each request gets a write deadline of its own.
func (s *Server) limitRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		limit := int64(formBody)
		if strings.HasPrefix(r.URL.Path, "/api/") && s.api != nil {
			limit = s.api.batchBodyLimit()
		}
		if r.ContentLength > limit {
			return &http.MaxBytesError{Limit: limit}
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
		// Not every ResponseWriter has deadlines (httptest's): then
		// there is nothing to bound.
		_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(writeTimeout))
		return next(c)
	}
}

// parseForm reads a form post's body (bounded by limitRequest): a body
// over the limit is 413 rather than a form without fields.
func parseForm(c echo.Context) error {
	r := c.Request()
	ct := r.Header.Get(echo.HeaderContentType)
	var err error
	if strings.HasPrefix(ct, echo.MIMEMultipartForm) {
		err = r.ParseMultipartForm(formBody)
	} else {
		err = r.ParseForm()
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return nil
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
// methods) and records the Caller; 401 otherwise. A suspended tenant's
// owner may look but not change anything: unsafe methods are 403 (a
// suspended tenant's API keys do not authenticate at all; live watches,
// GET requests, are refused in watchTopic).
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
		if k.Suspended && unsafeMethod(c.Request().Method) {
			return fmt.Errorf("%w: the tenant is suspended: nothing can be changed until a platform operator resumes it", ErrForbidden)
		}
		setCaller(c, k)
		return next(c)
	}
}
