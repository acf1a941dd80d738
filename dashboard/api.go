package dashboard

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// The JSON API under /api/v1 (documented by openapi.yaml). Every route but
// the OpenAPI document needs a Caller (API key or dashboard session) and
// acts only within the caller's tenant: an ID of another tenant is "not
// found". Messages (publish, retained, watch) are checked against the ACL
// of the API key's app, as an MQTT client of that app would be; dashboard
// users are the tenant's owners and may use every topic of the tenant.
// Management routes (apps, credentials, API keys, ACL rules, kicking
// clients) need a caller that manages the tenant: a dashboard session or an
// admin-scoped API key (requireManage); a publish-scoped key gets 403
// there.

// apiState is the JSON API's state.
type apiState struct {
	deps     APIDeps
	throttle *throttle
	keys     keyCache
	rules    ruleCache
	limits   limiterTable
	watch    watchTable

	mu      sync.Mutex
	closed  bool
	quit    chan struct{}
	wg      sync.WaitGroup // live watches
	changed chan struct{}  // closed (and replaced) by notify
}

// changes returns a channel closed at the next notify.
func (a *apiState) changes() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// notify tells live watches that something they depend on may have
// changed (a key revoked, a tenant suspended, rules changed, a session
// ended): each checks its caller again at once.
func (a *apiState) notify() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.changed != nil {
		close(a.changed)
	}
	a.changed = make(chan struct{})
}

// track counts a live watch (false once closing); the watch calls
// a.wg.Done when it ends.
func (a *apiState) track() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	return true
}

// close ends every live watch and waits for them: at most
// WatchWriteTimeout plus a little (a watch blocked writing to a client
// that stopped reading gives up at its write deadline); past that it logs
// and returns. It is idempotent.
func (a *apiState) close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.quit)
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() {
		a.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(a.deps.WatchWriteTimeout + 5*time.Second)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return errors.New("dashboard: live watches did not end in time")
	}
}

// Body limits.
const (
	// smallBody bounds every request body but publishes.
	smallBody = 64 << 10
	// maxBatch is the most messages one batch publish carries.
	maxBatch = 100
	// bodyTimeout bounds the reading of a request body.
	bodyTimeout = 30 * time.Second
)

// routesAPI registers the JSON API under g (/api/v1).
func (s *Server) routesAPI(g *echo.Group) (*apiState, error) {
	deps := s.cfg.API
	deps.setDefaults()
	a := &apiState{
		deps:     deps,
		throttle: newThrottle(),
		quit:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
	a.keys.m = map[[32]byte]keyEntry{}
	a.rules.m = map[string]map[string]ruleEntry{}
	a.limits.m = map[string]*limiterEntry{}
	a.watch.m = map[string][]string{}
	s.api = a // the handlers below reach it through s

	g.GET("/openapi.yaml", s.openAPI)

	// Every other route needs a caller; middleware per route rather than
	// per group, since Echo v4 group middleware adds catch-all routes.
	route := func(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		g.Add(method, path, h, append([]echo.MiddlewareFunc{s.requireCaller}, m...)...)
	}
	route(http.MethodGet, "/tenant", s.getTenant)

	route(http.MethodPost, "/publish", s.publish)
	route(http.MethodPost, "/publish/batch", s.publishBatch)
	route(http.MethodPost, "/publish/bulk", s.publishBatch) // EMQX's name

	route(http.MethodGet, "/retained", s.listRetained)
	route(http.MethodGet, "/retained/message", s.getRetained)
	route(http.MethodPut, "/retained/message", s.putRetained)
	route(http.MethodDelete, "/retained/message", s.deleteRetained)

	route(http.MethodGet, "/clients", s.listClients)
	route(http.MethodDelete, "/clients", s.kickClient, requireManage) // ?clientid=: any ID, "." and ".." too
	route(http.MethodGet, "/clients/:clientid", s.getClient)
	route(http.MethodDelete, "/clients/:clientid", s.kickClient, requireManage)
	route(http.MethodGet, "/sessions", s.listSessions)
	route(http.MethodGet, "/topics", s.listTopics)
	route(http.MethodGet, "/metrics", s.getMetrics)
	route(http.MethodGet, "/watch", s.watchTopic)

	route(http.MethodGet, "/apps", s.listApps, requireManage)
	route(http.MethodPost, "/apps", s.createApp, requireManage)
	route(http.MethodGet, "/credentials", s.listCredentials, requireManage)
	route(http.MethodPost, "/credentials", s.createCredential, requireManage)
	route(http.MethodPost, "/credentials/:username/rotate", s.rotateCredential, requireManage)
	route(http.MethodDelete, "/credentials/:username", s.revokeCredential, requireManage)
	route(http.MethodGet, "/apikeys", s.listAPIKeys, requireManage)
	route(http.MethodPost, "/apikeys", s.createAPIKey, requireManage)
	route(http.MethodDelete, "/apikeys/:prefix", s.revokeAPIKey, requireManage)
	route(http.MethodGet, "/acl", s.listACL, requireManage)
	route(http.MethodPost, "/acl", s.addACL, requireManage)
	route(http.MethodDelete, "/acl", s.removeACL, requireManage)

	route(http.MethodGet, "/admin/tenants", s.adminTenants, requireOperator)
	route(http.MethodPost, "/admin/tenants/:slug/suspend", s.adminSuspend, requireOperator)
	route(http.MethodPost, "/admin/tenants/:slug/resume", s.adminResume, requireOperator)
	route(http.MethodGet, "/admin/health", s.adminHealth, requireOperator)

	// Anything else under /api/v1 is a JSON 404, never a dashboard page.
	g.RouteNotFound("/*", func(echo.Context) error { return echo.ErrNotFound })
	return a, nil
}

// ---------------------------------------------------------------------------
// Authentication

// keyInfo is what an API-key request knows about its key: the whole key
// (live watches verify it again), its prefix and app.
type keyInfo struct {
	key, prefix, app string
}

const keyInfoKey = "relay.apikey"

// apiKeyCaller authenticates an API key from the Authorization header
// (Bearer <prefix>.<secret>, or Basic <prefix>:<secret>); nil, nil if the
// request has no Authorization header. Wrong keys are counted per source
// address: past the throttle's limit the address gets 429 for a while.
func (s *Server) apiKeyCaller(c echo.Context) (*Caller, error) {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	if h == "" {
		return nil, nil
	}
	a := s.api
	addr := addrKey(s.clientIP(c))
	now := time.Now()
	if wait := a.throttle.blocked(addr, now); wait > 0 {
		return nil, &RateLimitError{RetryAfter: wait, Reason: "too many failed API key attempts from this address"}
	}
	key, ok := parseAuthorization(h)
	if !ok {
		a.throttle.fail(addr, now)
		return nil, fmt.Errorf("%w: Authorization must be Bearer <prefix>.<secret> or Basic <prefix>:<secret>", ErrUnauthenticated)
	}
	if e, ok := a.keys.get(key, now, a.deps.KeyCacheTTL); ok {
		c.Set(keyInfoKey, &keyInfo{key: key, prefix: e.prefix, app: e.app})
		k := e.caller
		return &k, nil
	}
	epoch := a.keys.currentEpoch()
	t, app, ak, err := s.cfg.Tenancy.VerifyAPIKey(c.Request().Context(), key)
	switch {
	case errors.Is(err, auth.ErrBadCredentials):
		a.throttle.fail(addr, now)
		return nil, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
	case errors.Is(err, auth.ErrNotAuthorized):
		return nil, fmt.Errorf("%w: the tenant is suspended", ErrForbidden)
	case err != nil:
		return nil, errors.Join(ErrUnavailable, err)
	}
	prefix, _, _ := strings.Cut(key, ".")
	k := Caller{TenantID: t.ID, Tenant: t.Slug, AppID: app.ID, Actor: "apikey:" + prefix, Scope: ak.Scope}
	a.keys.put(key, keyEntry{caller: k, prefix: prefix, app: app.Name, at: now}, epoch)
	c.Set(keyInfoKey, &keyInfo{key: key, prefix: prefix, app: app.Name})
	return &k, nil
}

// parseAuthorization returns the API key "<prefix>.<secret>" of a Bearer
// or Basic (user = prefix, password = secret) Authorization header.
func parseAuthorization(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
		return cred, strings.Contains(cred, ".")
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return "", false
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok || user == "" || pass == "" {
			return "", false
		}
		return user + "." + pass, true
	}
	return "", false
}

// tenantCaller returns the request's caller, which must act in a tenant.
func tenantCaller(c echo.Context) (*Caller, error) {
	k := callerOf(c)
	if k == nil {
		return nil, ErrUnauthenticated
	}
	if k.Tenant == "" {
		return nil, fmt.Errorf("%w: this route acts within a tenant", ErrForbidden)
	}
	return k, nil
}

// requireManage lets through only callers that manage their tenant
// (Caller.Manages): dashboard sessions and admin-scoped API keys.
func requireManage(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if k := callerOf(c); k == nil || !k.Manages() {
			return fmt.Errorf("%w: this API key has the publish scope; managing the tenant needs an admin key", ErrForbidden)
		}
		return next(c)
	}
}

// requireOperator lets only platform operators through.
func requireOperator(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if k := callerOf(c); k == nil || !k.Operator {
			return fmt.Errorf("%w: operators only", ErrForbidden)
		}
		return next(c)
	}
}

// ---------------------------------------------------------------------------
// Request helpers

// decodeJSON reads a JSON body of at most limit bytes into v, whatever the
// Content-Type says (curl -d sends form encoding): a body that is not JSON
// is a 400. Cross-site forms cannot abuse this: API keys come in a header
// a form cannot set, and session requests need a CSRF token.
func decodeJSON(c echo.Context, limit int64, v any) error {
	r := c.Request()
	// A body must arrive in bodyTimeout (the HTTP server has no
	// ReadTimeout, which would also end live watches).
	rc := http.NewResponseController(c.Response())
	if err := rc.SetReadDeadline(time.Now().Add(bodyTimeout)); err == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	body := http.MaxBytesReader(c.Response(), r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: empty body: send JSON", tenant.ErrInvalid)
		case errors.As(err, &te) && te.Field != "":
			return invalidField(te.Field, "want a JSON %s, not %s", te.Type, te.Value)
		case errors.As(err, &se), errors.As(err, &te):
			return fmt.Errorf("%w: malformed JSON: %v", tenant.ErrInvalid, err)
		}
		return fmt.Errorf("%w: reading body: %v", tenant.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: one JSON value expected", tenant.ErrInvalid)
	}
	return nil
}

// pathParam returns a path parameter unescaped (Echo routes on the raw
// path when the URL has escapes that differ from the default, and then
// hands out escaped parameters).
func pathParam(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", invalidField(name, "bad escape in path")
	}
	return u, nil
}

// intQuery parses an integer query parameter within [lo, hi] (def if
// absent).
func intQuery(c echo.Context, name string, def, lo, hi int) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, invalidField(name, "want an integer from %d to %d", lo, hi)
	}
	return n, nil
}

// noBackbone is the error of a message route without a backbone.
var noBackbone = fmt.Errorf("%w: no backbone configured", ErrUnavailable)

func (a *apiState) backbone() (Backbone, error) {
	if a.deps.Backbone == nil {
		return nil, noBackbone
	}
	if err := a.deps.Backbone.Ready(); err != nil {
		return nil, err
	}
	return a.deps.Backbone, nil
}

func (a *apiState) cluster() (Cluster, error) {
	if a.deps.Cluster == nil {
		return nil, noBackbone
	}
	if a.deps.Backbone != nil {
		if err := a.deps.Backbone.Ready(); err != nil {
			return nil, err
		}
	}
	return a.deps.Cluster, nil
}

func isNotFound(err error) bool { return errors.Is(err, tenant.ErrNotFound) }

// EndStreams ends the API's long-lived responses (live watches) so that an
// http.Server's Shutdown need not wait for them; register it with
// RegisterOnShutdown. Close does it too.
func (s *Server) EndStreams() { s.api.close() }
