package dashboard

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// The tenant's own configuration: its profile, apps, credentials, API keys
// and ACL rules. Every operation acts on the caller's tenant (names of
// another tenant are simply not found there) and is audited with the
// caller as actor.

// tenantView is GET /api/v1/tenant.
type tenantView struct {
	Slug      string        `json:"slug"`
	Name      string        `json:"name"`
	Status    tenant.Status `json:"status"`
	Hostname  string        `json:"hostname"`
	Limits    tenant.Limits `json:"limits"`
	CreatedAt time.Time     `json:"created_at"`
}

func (s *Server) tenantView(t *tenant.Tenant) tenantView {
	return tenantView{
		Slug: t.Slug, Name: t.Name, Status: t.Status, Hostname: t.Slug + "." + s.cfg.BaseDomain,
		Limits: t.Limits, CreatedAt: t.CreatedAt,
	}
}

// getTenant handles GET /api/v1/tenant.
func (s *Server) getTenant(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	t, err := s.cfg.Tenancy.Tenant(c.Request().Context(), k.Tenant)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.tenantView(t))
}

// ---------------------------------------------------------------------------
// Apps

type appView struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// listApps handles GET /api/v1/apps.
func (s *Server) listApps(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	apps, err := s.cfg.Tenancy.ListApps(c.Request().Context(), k.Tenant)
	if err != nil {
		return err
	}
	out := make([]appView, len(apps))
	for i, a := range apps {
		out[i] = appView{Name: a.Name, CreatedAt: a.CreatedAt}
	}
	return c.JSON(http.StatusOK, out)
}

// createApp handles POST /api/v1/apps {name}: 201, 409 if the name is
// taken.
func (s *Server) createApp(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(c, smallBody, &req); err != nil {
		return err
	}
	if !tenant.ValidName(req.Name) {
		return invalidField("name", "use 1-63 letters, digits, '_' and '-', starting with a letter or digit")
	}
	app, err := s.cfg.Tenancy.CreateApp(c.Request().Context(), k.Actor, k.Tenant, req.Name)
	if err != nil {
		return err
	}
	s.api.rules.forget(k.Tenant)
	return c.JSON(http.StatusCreated, appView{Name: app.Name, CreatedAt: app.CreatedAt})
}

// appNames maps the tenant's app IDs to names.
func (s *Server) appNames(c echo.Context, slug string) (map[string]string, error) {
	apps, err := s.cfg.Tenancy.ListApps(c.Request().Context(), slug)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(apps))
	for _, a := range apps {
		out[a.ID] = a.Name
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Credentials

// credentialView never holds a secret; Password is set only in the answer
// that creates or rotates it.
type credentialView struct {
	Username        string     `json:"username"`
	MQTTUsername    string     `json:"mqtt_username"`
	App             string     `json:"app"`
	ClientIDPattern string     `json:"client_id_pattern"`
	Revoked         bool       `json:"revoked"`
	CreatedAt       time.Time  `json:"created_at"`
	RevokedAt       *time.Time `json:"revoked_at,omitempty"`
	Password        string     `json:"password,omitempty"`
}

func credentialOf(cr *tenant.Credential, slug, app string) credentialView {
	v := credentialView{
		Username: cr.Username, MQTTUsername: cr.Username + "@" + slug, App: app,
		ClientIDPattern: cr.ClientIDPattern, Revoked: cr.Revoked, CreatedAt: cr.CreatedAt,
	}
	if !cr.RevokedAt.IsZero() {
		t := cr.RevokedAt
		v.RevokedAt = &t
	}
	return v
}

// listCredentials handles GET /api/v1/credentials?app=….
func (s *Server) listCredentials(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	creds, err := s.cfg.Tenancy.ListCredentials(c.Request().Context(), k.Tenant, c.QueryParam("app"))
	if err != nil {
		return err
	}
	apps, err := s.appNames(c, k.Tenant)
	if err != nil {
		return err
	}
	out := make([]credentialView, len(creds))
	for i := range creds {
		out[i] = credentialOf(&creds[i], k.Tenant, apps[creds[i].AppID])
	}
	return c.JSON(http.StatusOK, out)
}

// createCredential handles POST /api/v1/credentials {app, username?,
// client_id_pattern?}: 201 with the password, shown this once.
func (s *Server) createCredential(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	var req struct {
		App             string `json:"app"`
		Username        string `json:"username"`
		ClientIDPattern string `json:"client_id_pattern"`
	}
	if err := decodeJSON(c, smallBody, &req); err != nil {
		return err
	}
	if req.App == "" {
		return invalidField("app", "required")
	}
	if req.Username != "" && !tenant.ValidName(req.Username) {
		return invalidField("username", "use 1-63 letters, digits, '_' and '-', starting with a letter or digit")
	}
	cr, secret, err := s.cfg.Tenancy.IssueCredential(c.Request().Context(), k.Actor, k.Tenant, req.App, req.Username, req.ClientIDPattern)
	if err != nil {
		return err
	}
	v := credentialOf(cr, k.Tenant, req.App)
	v.Password = secret
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, v)
}

// rotateCredential handles POST /api/v1/credentials/:username/rotate: a
// new password for the same username (shown once); clients connected with
// the old one are disconnected within a second. 409 if revoked.
func (s *Server) rotateCredential(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	user, err := pathParam(c, "username")
	if err != nil {
		return err
	}
	user = strings.TrimSuffix(user, "@"+k.Tenant)
	secret, err := s.cfg.Tenancy.RotateCredential(c.Request().Context(), k.Actor, k.Tenant, user)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, map[string]string{
		"username": user, "mqtt_username": user + "@" + k.Tenant, "password": secret,
	})
}

// revokeCredential handles DELETE /api/v1/credentials/:username: 204; its
// clients are disconnected within a second.
func (s *Server) revokeCredential(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	user, err := pathParam(c, "username")
	if err != nil {
		return err
	}
	if err := s.cfg.Tenancy.RevokeCredential(c.Request().Context(), k.Actor, k.Tenant, strings.TrimSuffix(user, "@"+k.Tenant)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// ---------------------------------------------------------------------------
// API keys

type apiKeyView struct {
	Prefix    string             `json:"prefix"`
	App       string             `json:"app"`
	Scope     tenant.APIKeyScope `json:"scope"`
	Revoked   bool               `json:"revoked"`
	CreatedAt time.Time          `json:"created_at"`
	RevokedAt *time.Time         `json:"revoked_at,omitempty"`
	// Key is the whole key, set only in the answer that creates it.
	Key string `json:"key,omitempty"`
}

func apiKeyOf(k *tenant.APIKey, app string) apiKeyView {
	v := apiKeyView{Prefix: k.Prefix, App: app, Scope: k.Scope, Revoked: k.Revoked, CreatedAt: k.CreatedAt}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt
		v.RevokedAt = &t
	}
	return v
}

// listAPIKeys handles GET /api/v1/apikeys?app=… (all apps' keys without
// app; 404 for an unknown app).
func (s *Server) listAPIKeys(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	keys, err := s.cfg.Tenancy.ListAPIKeys(c.Request().Context(), k.Tenant)
	if err != nil {
		return err
	}
	apps, err := s.appNames(c, k.Tenant)
	if err != nil {
		return err
	}
	only := c.QueryParam("app")
	if only != "" && !slices.Contains(slices.Collect(maps.Values(apps)), only) {
		return fmt.Errorf("%w: app %q", tenant.ErrNotFound, only)
	}
	out := make([]apiKeyView, 0, len(keys))
	for i := range keys {
		if app := apps[keys[i].AppID]; only == "" || app == only {
			out = append(out, apiKeyOf(&keys[i], app))
		}
	}
	return c.JSON(http.StatusOK, out)
}

// createAPIKey handles POST /api/v1/apikeys {app, scope}: 201 with the
// key, shown this once. Scope is publish (default) or admin; only callers
// that manage the tenant reach this route, so only they make admin keys.
func (s *Server) createAPIKey(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	var req struct {
		App   string `json:"app"`
		Scope string `json:"scope"`
	}
	if err := decodeJSON(c, smallBody, &req); err != nil {
		return err
	}
	if req.App == "" {
		return invalidField("app", "required")
	}
	scope, err := tenant.ParseAPIKeyScope(req.Scope)
	if err != nil {
		return invalidField("scope", "want publish or admin")
	}
	if scope == tenant.ScopeAdmin && !k.Manages() {
		return fmt.Errorf("%w: only the tenant's owners and admin keys may create admin keys", ErrForbidden)
	}
	key, whole, err := s.cfg.Tenancy.IssueAPIKey(c.Request().Context(), k.Actor, k.Tenant, req.App, scope)
	if err != nil {
		return err
	}
	v := apiKeyOf(key, req.App)
	v.Key = whole
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, v)
}

// revokeAPIKey handles DELETE /api/v1/apikeys/:prefix: 204; the key stops
// working at once in this process (within APIDeps.KeyCacheTTL elsewhere).
func (s *Server) revokeAPIKey(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	prefix, err := pathParam(c, "prefix")
	if err != nil {
		return err
	}
	if err := s.cfg.Tenancy.RevokeAPIKey(c.Request().Context(), k.Actor, k.Tenant, prefix); err != nil {
		return err
	}
	s.api.keys.forget(k.TenantID, prefix)
	s.api.notify()
	return c.NoContent(http.StatusNoContent)
}

// ---------------------------------------------------------------------------
// ACL

// ruleView is an ACL rule: subject "app:<name>", "cred:<username>" or
// "role:<name>"; effect allow or deny; action publish, subscribe or all
// (pubsub); an MQTT filter in which %c and %u stand for the client ID and
// username.
type ruleView struct {
	Subject string `json:"subject"`
	Effect  string `json:"effect"`
	Action  string `json:"action"`
	Filter  string `json:"filter"`
}

func actionName(a auth.Action) string {
	if a == auth.PubSub {
		return "all"
	}
	return a.String()
}

// listACL handles GET /api/v1/acl.
func (s *Server) listACL(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	rules, err := s.cfg.Tenancy.ListRules(c.Request().Context(), k.Tenant)
	if err != nil {
		return err
	}
	out := make([]ruleView, len(rules))
	for i, r := range rules {
		out[i] = ruleView{Subject: r.Subject, Effect: r.Effect.String(), Action: actionName(r.Action), Filter: r.Filter}
	}
	return c.JSON(http.StatusOK, out)
}

// parseRule validates a rule body field by field.
func parseRule(c echo.Context) (string, auth.Rule, error) {
	var v ruleView
	if err := decodeJSON(c, smallBody, &v); err != nil {
		return "", auth.Rule{}, err
	}
	var r auth.Rule
	if err := auth.ValidateSubject(v.Subject); err != nil {
		return "", r, invalidField("subject", "want app:<name>, cred:<username> or role:<name>")
	}
	switch v.Effect {
	case "allow":
		r.Effect = auth.Allow
	case "deny":
		r.Effect = auth.Deny
	default:
		return "", r, invalidField("effect", "want allow or deny")
	}
	switch v.Action {
	case "publish", "pub":
		r.Action = auth.Publish
	case "subscribe", "sub":
		r.Action = auth.Subscribe
	case "all", "pubsub":
		r.Action = auth.PubSub
	default:
		return "", r, invalidField("action", "want publish, subscribe or all")
	}
	r.Filter = v.Filter
	return v.Subject, r, nil
}

// addACL handles POST /api/v1/acl: 201 with the rule.
func (s *Server) addACL(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	subject, r, err := parseRule(c)
	if err != nil {
		return err
	}
	if err := auth.ValidateRule(r); err != nil {
		return &FieldError{Field: "filter", Err: fmt.Errorf("%q is not a valid topic filter (wildcards + and # as whole levels, # last; %%c and %%u as whole levels): %w", r.Filter, err)}
	}
	if err := s.cfg.Tenancy.AddRule(c.Request().Context(), k.Actor, k.Tenant, subject, r); err != nil {
		return err
	}
	s.api.rules.forget(k.Tenant)
	s.api.notify()
	return c.JSON(http.StatusCreated, ruleView{Subject: subject, Effect: r.Effect.String(), Action: actionName(r.Action), Filter: r.Filter})
}

// removeACL handles DELETE /api/v1/acl with the rule as body: 204, 404 if
// the subject has no such rule.
func (s *Server) removeACL(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	subject, r, err := parseRule(c)
	if err != nil {
		return err
	}
	if err := s.cfg.Tenancy.RemoveRule(c.Request().Context(), k.Actor, k.Tenant, subject, r); err != nil {
		return err
	}
	s.api.rules.forget(k.Tenant)
	s.api.notify()
	return c.NoContent(http.StatusNoContent)
}
