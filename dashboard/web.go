package dashboard

// The dashboard pages: server-rendered Go templates (templates/) with a
// little vanilla JavaScript (static/) that reads and changes data through
// the JSON API (/api/v1) with the session cookie and the session's CSRF
// token. Sign-up, sign-in and sign-out are plain HTML forms handled here
// (web_session.go).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

//go:embed templates static
var webFS embed.FS

// WebStore is what the dashboard pages need of the database: users and
// sessions, and lookups that scope a page to the session's tenant.
// tenant/gormstore.Store implements it.
type WebStore interface {
	tenant.UserStore
	// TenantByID returns the tenant or tenant.ErrNotFound.
	TenantByID(ctx context.Context, id string) (*tenant.Tenant, error)
	// AppByName returns the tenant's app or tenant.ErrNotFound.
	AppByName(ctx context.Context, tenantID, name string) (*tenant.App, error)
}

// WebDeps are the dashboard pages' dependencies.
type WebDeps struct {
	// Store holds users and sessions. Nil disables the pages and
	// sign-in with a session cookie (the API then takes API keys only).
	Store WebStore
	// Keyed hashes session tokens (the server key of generated secrets);
	// required with Store.
	Keyed *auth.Keyed
	// MQTTPort is the MQTT TCP port shown in the connect instructions
	// (default 1883).
	MQTTPort int
	// MQTTSPort, WSPort and WSSPort are the ports of MQTT over TLS, over
	// WebSocket and over secure WebSocket, shown when not 0.
	MQTTSPort, WSPort, WSSPort int
	// Now returns the current time (tests move it). Default time.Now.
	Now func() time.Time
}

// Session lifetimes.
const (
	// sessionIdle ends a session unused this long.
	sessionIdle = 12 * time.Hour
	// sessionMax ends a session this long after sign-in, used or not.
	sessionMax = 7 * 24 * time.Hour
	// sessionTouch is how stale LastSeen may get before a request
	// updates it (one write a minute per active session, not one per
	// request).
	sessionTouch = time.Minute
	// sweepEvery is how often expired sessions and throttle entries are
	// removed.
	sweepEvery = 10 * time.Minute
)

// Throttles (attempts per window; a successful sign-in is not counted).
// Sign-in: per account at one address (5/min), per address (20/min), and
// per account from anywhere (30/min: more than one address can try, so a
// third party at one address cannot lock an owner out, while a guesser
// with many addresses is still slowed). Sign-up: per address (each
// sign-up creates a tenant; probes of existing emails count too).
var (
	loginPerAccountAddr = loginLimit{burst: 5, window: time.Minute}
	loginPerAccount     = loginLimit{burst: 30, window: time.Minute}
	loginPerAddr        = loginLimit{burst: 20, window: time.Minute}
	signupPerAddr       = loginLimit{burst: 10, window: time.Hour}
)

// webState is the dashboard pages' state.
type webState struct {
	deps     WebDeps
	pages    map[string]*template.Template
	static   map[string]staticFile
	throttle *loginThrottle
	// argon bounds concurrent argon2id hashes and verifications (19 MiB
	// each): see argon2.
	argon chan struct{}
	// dummyHash is verified for unknown emails, so that they cost as much
	// as a wrong password.
	dummyHash string

	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// staticFile is an embedded asset with its validator.
type staticFile struct {
	body []byte
	etag string
	ct   string
}

func (w *webState) close() error {
	if w == nil || w.quit == nil {
		return nil
	}
	w.closeOnce.Do(func() {
		close(w.quit)
		w.wg.Wait()
	})
	return nil
}

func (w *webState) now() time.Time { return w.deps.Now() }

// enabled reports whether the pages and session sign-in are on.
func (w *webState) enabled() bool { return w != nil && w.deps.Store != nil }

// routesWeb registers the dashboard pages.
func (s *Server) routesWeb(e *echo.Echo) (*webState, error) {
	d := s.cfg.Web
	if d.Store == nil {
		return &webState{}, nil
	}
	if d.Keyed == nil {
		return nil, errors.New("dashboard: Web.Keyed is required with Web.Store")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MQTTPort == 0 {
		d.MQTTPort = 1883
	}
	dummy, err := auth.HashPassword(auth.NewSecret())
	if err != nil {
		return nil, err
	}
	w := &webState{
		deps:      d,
		throttle:  newLoginThrottle(16384),
		argon:     make(chan struct{}, max(2, min(runtime.NumCPU(), 8))),
		dummyHash: dummy,
		quit:      make(chan struct{}),
	}
	if w.static, err = loadStatic(); err != nil {
		return nil, err
	}
	if w.pages, err = parsePages(w.static); err != nil {
		return nil, err
	}

	e.GET("/static/*", w.serveStatic)
	e.GET("/favicon.ico", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/static/favicon.svg") })
	e.GET("/", s.root)
	e.GET("/login", s.loginPage)
	e.POST("/login", s.login)
	e.GET("/signup", s.signupPage)
	e.POST("/signup", s.signup)
	e.POST("/logout", s.logout)

	p := e.Group("", s.requirePage)
	p.GET("/overview", s.tenantPage("overview", "Overview"))
	p.GET("/apps", s.tenantPage("apps", "Apps & credentials"))
	p.GET("/apps/:app", s.appPage)
	p.GET("/clients", s.tenantPage("clients", "Clients"))
	p.GET("/retained", s.tenantPage("retained", "Retained messages"))
	p.GET("/console", s.tenantPage("console", "Console"))
	p.GET("/usage", s.tenantPage("usage", "Usage"))
	p.GET("/operator", s.operatorPage)
	e.RouteNotFound("/*", s.notFound)

	w.wg.Add(1)
	go w.sweep(s)
	return w, nil
}

// sweep removes expired sessions and refilled throttle entries until
// close.
func (w *webState) sweep(s *Server) {
	defer w.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
			now := w.now()
			w.throttle.sweep(now)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			n, err := w.deps.Store.DeleteExpiredSessions(ctx, now, now.Add(-sessionIdle))
			cancel()
			if err != nil {
				s.log.Warn("removing expired dashboard sessions", "err", err)
			} else if n > 0 {
				s.log.Debug("removed expired dashboard sessions", "count", n)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Templates and static files

// layouts are parsed with every page of their kind.
var (
	appLayout  = []string{"templates/layout.html", "templates/icons.html"}
	authLayout = []string{"templates/auth_layout.html", "templates/icons.html"}
)

// pageFiles maps a page name to its template file and layout.
var pageFiles = map[string][]string{
	"overview": appLayout,
	"apps":     appLayout,
	"app":      appLayout,
	"clients":  appLayout,
	"retained": appLayout,
	"console":  appLayout,
	"usage":    appLayout,
	"operator": appLayout,
	"error":    appLayout,
	"login":    authLayout,
	"signup":   authLayout,
	"message":  authLayout,
}

func parsePages(static map[string]staticFile) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		// asset returns the URL of a static file with its content hash,
		// so that browsers may cache it for good and never use a stale
		// copy.
		"asset": func(name string) string {
			if f, ok := static[name]; ok {
				return "/static/" + name + "?v=" + strings.Trim(f.etag, `"`)
			}
			return "/static/" + name
		},
		// initial is the first letter of a name, upper-case (avatars).
		"initial": func(s string) string {
			for _, r := range s {
				return strings.ToUpper(string(r))
			}
			return "?"
		},
	}
	pages := map[string]*template.Template{}
	for name, layout := range pageFiles {
		files := append(append([]string(nil), layout...), "templates/"+name+".html")
		t, err := template.New(path.Base(layout[0])).Funcs(funcs).ParseFS(webFS, files...)
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func loadStatic() (map[string]staticFile, error) {
	out := map[string]staticFile{}
	err := fs.WalkDir(webFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := map[string]string{
			".css": "text/css; charset=utf-8",
			".js":  "text/javascript; charset=utf-8",
			".svg": "image/svg+xml",
			".png": "image/png",
		}[path.Ext(p)]
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		out[strings.TrimPrefix(p, "static/")] = staticFile{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ct: ct}
		return nil
	})
	return out, err
}

// serveStatic serves an embedded asset. A request with the asset's
// version (?v=, as the templates write it) may be cached for good.
func (w *webState) serveStatic(c echo.Context) error {
	f, ok := w.static[c.Param("*")]
	if !ok {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	h.Set("ETag", f.etag)
	if v := c.QueryParam("v"); v != "" && `"`+v+`"` == f.etag {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if c.Request().Header.Get("If-None-Match") == f.etag {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, f.ct, f.body)
}

// ---------------------------------------------------------------------------
// Rendering

// page is what every template gets.
type page struct {
	// Title is the page title; Nav the sidebar entry to highlight.
	Title string
	Nav   string
	// CSRF is the session's token (app pages) or the pre-session
	// double-submit token (sign-in and sign-up forms).
	CSRF string
	// User and Tenant are the signed-in user and their tenant (nil for
	// an operator).
	User   *tenant.User
	Tenant *tenant.Tenant
	// Operator shows the operator pages.
	Operator bool
	// Host is the tenant's MQTT host name; BaseDomain its parent;
	// MQTTPort the MQTT port.
	Host       string
	BaseDomain string
	MQTTPort   int
	// Endpoints are the tenant's other transports (TLS, WebSocket).
	Endpoints []endpoint
	// Script is the page's own script under static/ ("" for none).
	Script string
	// Data is page-specific.
	Data any
}

// render writes a page with status.
func (s *Server) render(c echo.Context, status int, name string, p page) error {
	t := s.web.pages[name]
	if t == nil {
		return fmt.Errorf("dashboard: no page %q", name)
	}
	p.BaseDomain = s.cfg.BaseDomain
	p.MQTTPort = s.web.deps.MQTTPort
	if p.Tenant != nil {
		p.Host = p.Tenant.Slug + "." + s.cfg.BaseDomain
		p.Endpoints = s.web.endpoints(p.Host)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		return fmt.Errorf("dashboard: rendering %s: %w", name, err)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, buf.Bytes())
}

// endpoint is one way to reach a tenant's MQTT service.
type endpoint struct {
	ID, Label, URL string
}

// endpoints lists the transports other than plain MQTT that the edges
// serve, as URLs for the tenant's host name.
func (w *webState) endpoints(host string) []endpoint {
	var out []endpoint
	d := w.deps
	if d.MQTTSPort != 0 {
		out = append(out, endpoint{"ep-mqtts", "MQTT over TLS", fmt.Sprintf("mqtts://%s:%d", host, d.MQTTSPort)})
	}
	if d.WSSPort != 0 {
		out = append(out, endpoint{"ep-wss", "Secure WebSocket", fmt.Sprintf("wss://%s:%d/mqtt", host, d.WSSPort)})
	}
	if d.WSPort != 0 {
		out = append(out, endpoint{"ep-ws", "WebSocket", fmt.Sprintf("ws://%s:%d/mqtt", host, d.WSPort)})
	}
	return out
}
