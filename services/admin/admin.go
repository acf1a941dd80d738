// Package admin is the tenancy operations the CLI, the dashboard and the
// HTTP API share: each one validates, writes the store and the policies,
// and leaves an audit record, which is also the change feed the control
// plane pushes to edges.
package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

// Admin performs tenancy operations.
type Admin struct {
	// onChange is called after each change (see OnChange).
	onChange atomic.Pointer[func(tenantID string)]
	store    tenant.Store
	pol      *auth.Policies
	keyed    *auth.Keyed
}

// New returns an Admin over the store, policies and secret hasher.
func New(store tenant.Store, pol *auth.Policies, keyed *auth.Keyed) *Admin {
	return &Admin{store: store, pol: pol, keyed: keyed}
}

func (a *Admin) audit(ctx context.Context, t *tenant.Tenant, actor, action, target, detail string) error {
	err := a.store.AddAudit(ctx, &tenant.AuditRecord{TenantID: t.ID, Actor: actor, Action: action, Target: target, Detail: detail})
	if h := a.onChange.Load(); h != nil {
		// Also when the record failed: the change itself was made.
		(*h)(t.ID)
	}
	return err
}

// OnChange registers fn to be called, in this process, right after every
// change to a tenant (with its ID) — before the change feed, which other
// processes read, carries it. The control plane uses it to drop cached
// rows at once.
func (a *Admin) OnChange(fn func(tenantID string)) { a.onChange.Store(&fn) }

// CreateTenant creates an active tenant.
func (a *Admin) CreateTenant(ctx context.Context, actor, slug, name string) (*tenant.Tenant, error) {
	if !tenant.ValidSlug(slug) {
		return nil, fmt.Errorf("%w: tenant slug %q: use 1-32 lower-case letters, digits and inner hyphens", tenant.ErrInvalid, slug)
	}
	if tenant.ReservedSlug(slug) {
		// Also mqtt, www, api, …: <slug>.<base-domain> must not take
		// over a host name the platform itself may use.
		return nil, fmt.Errorf("%w: tenant slug %q is reserved", tenant.ErrInvalid, slug)
	}
	if name == "" {
		name = slug
	}
	t := &tenant.Tenant{Slug: slug, Name: name, Status: tenant.Active}
	if err := a.store.CreateTenant(ctx, t); err != nil {
		return nil, err
	}
	return t, a.audit(ctx, t, actor, "tenant.create", slug, "")
}

// Tenant returns the tenant with this slug.
func (a *Admin) Tenant(ctx context.Context, slug string) (*tenant.Tenant, error) {
	return a.store.TenantBySlug(ctx, slug)
}

// ListTenants returns every tenant.
func (a *Admin) ListTenants(ctx context.Context) ([]tenant.Tenant, error) {
	return a.store.ListTenants(ctx)
}

// SetStatus suspends or resumes a tenant. Suspending disconnects its
// clients and stops its credentials from working.
func (a *Admin) SetStatus(ctx context.Context, actor, slug string, st tenant.Status) (*tenant.Tenant, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	t.Status = st
	if err := a.store.UpdateTenant(ctx, t); err != nil {
		return nil, err
	}
	action := "tenant.resume"
	if st == tenant.Suspended {
		action = "tenant.suspend"
	}
	return t, a.audit(ctx, t, actor, action, slug, "")
}

// SetLimits changes a tenant's plan limits (they apply to connections made
// from then on).
func (a *Admin) SetLimits(ctx context.Context, actor, slug string, l tenant.Limits) (*tenant.Tenant, error) {
	if l.MaxConnections < 0 || l.MaxMessageRate < 0 || l.MaxRetained < 0 || l.MaxSessionQueue < 0 {
		return nil, fmt.Errorf("%w: limits must not be negative", tenant.ErrInvalid)
	}
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	t.Limits = l
	if err := a.store.UpdateTenant(ctx, t); err != nil {
		return nil, err
	}
	return t, a.audit(ctx, t, actor, "tenant.limits", slug, fmt.Sprintf("%+v", l))
}

// SetClientCertAuth turns client-certificate logins on or off for a
// tenant: a client certificate verified against an edge's client CA that
// names one of the tenant's credentials then replaces the password. It
// applies to connections made from then on.
func (a *Admin) SetClientCertAuth(ctx context.Context, actor, slug string, on bool) (*tenant.Tenant, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	t.ClientCertAuth = on
	if err := a.store.UpdateTenant(ctx, t); err != nil {
		return nil, err
	}
	detail := "off"
	if on {
		detail = "on"
	}
	return t, a.audit(ctx, t, actor, "tenant.client_cert_auth", slug, detail)
}

// VerifyAPIKey returns the tenant, app and key of a valid, unrevoked API
// key "<prefix>.<secret>", or auth.ErrBadCredentials (whatever was wrong),
// or auth.ErrNotAuthorized if its tenant is suspended.
func (a *Admin) VerifyAPIKey(ctx context.Context, key string) (*tenant.Tenant, *tenant.App, *tenant.APIKey, error) {
	prefix, secret, ok := strings.Cut(key, ".")
	if !ok {
		a.keyed.Verify(a.keyed.Hash(nil), []byte(secret))
		return nil, nil, nil, auth.ErrBadCredentials
	}
	k, err := a.store.APIKeyByPrefix(ctx, prefix)
	if err != nil {
		a.keyed.Verify(a.keyed.Hash(nil), []byte(secret))
		if errors.Is(err, tenant.ErrNotFound) {
			return nil, nil, nil, auth.ErrBadCredentials
		}
		return nil, nil, nil, err
	}
	if !a.keyed.Verify(k.SecretHash, []byte(secret)) || k.Revoked {
		return nil, nil, nil, auth.ErrBadCredentials
	}
	t, err := a.store.TenantByID(ctx, k.TenantID)
	if err != nil {
		return nil, nil, nil, err
	}
	if t.Status != tenant.Active {
		return nil, nil, nil, auth.ErrNotAuthorized
	}
	app, err := a.store.AppByID(ctx, t.ID, k.AppID)
	if err != nil {
		return nil, nil, nil, err
	}
	return t, app, k, nil
}

// CreateApp creates an app with the default rule (publish and subscribe on
// all of the tenant's topics), visible and editable like any other.
func (a *Admin) CreateApp(ctx context.Context, actor, slug, name string) (*tenant.App, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	if !tenant.ValidName(name) {
		return nil, fmt.Errorf("%w: app name %q: use letters, digits, '_' and '-'", tenant.ErrInvalid, name)
	}
	app := &tenant.App{TenantID: t.ID, Name: name}
	if err := a.store.CreateApp(ctx, app); err != nil {
		return nil, err
	}
	for _, r := range auth.DefaultAppRules() {
		if err := a.pol.AddRule(ctx, slug, "app:"+name, r); err != nil {
			return nil, err
		}
	}
	return app, a.audit(ctx, t, actor, "acl.add", "app:"+name, "default rule")
}

// NewCredential is a credential just created, with its secret (shown once).
type NewCredential struct {
	// Username is what a client sends as MQTT username on plain TCP
	// (<user>@<tenant>); on a tenant host name the part before '@' is
	// enough.
	Username string `json:"username"`
	// Password is the generated secret; Relay keeps only a keyed hash.
	Password string `json:"password"`
	// Tenant and App name where it belongs.
	Tenant string `json:"tenant"`
	App    string `json:"app"`
}

// CreateCredential generates a username and a secret for the app.
func (a *Admin) CreateCredential(ctx context.Context, actor, slug, appName, clientIDPattern string) (*NewCredential, error) {
	c, secret, err := a.IssueCredential(ctx, actor, slug, appName, "", clientIDPattern)
	if err != nil {
		return nil, err
	}
	return &NewCredential{Username: c.Username + "@" + slug, Password: secret, Tenant: slug, App: appName}, nil
}

// IssueCredential creates a credential of the app and returns it with its
// generated secret (shown once; Relay keeps only a keyed hash). username ""
// generates one ("<app>-<8 hex>"); a chosen one must be a valid name
// (tenant.ValidName) not starting with "rk_", which API key prefixes use.
// Errors: tenant.ErrNotFound (tenant, app), tenant.ErrInvalid,
// tenant.ErrConflict (username taken in the tenant).
func (a *Admin) IssueCredential(ctx context.Context, actor, slug, appName, username, clientIDPattern string) (*tenant.Credential, string, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, "", err
	}
	app, err := a.store.AppByName(ctx, t.ID, appName)
	if err != nil {
		return nil, "", err
	}
	if clientIDPattern != "" {
		if err := topic.ValidateFilter(strings.ReplaceAll(strings.ReplaceAll(clientIDPattern, "%u", "u"), "-", "/")); err != nil {
			return nil, "", fmt.Errorf("%w: client ID pattern %q: %w", tenant.ErrInvalid, clientIDPattern, err)
		}
	}
	user := username
	if user == "" {
		var b [4]byte
		rand.Read(b[:])
		prefix := appName
		if len(prefix) > 40 { // usernames are at most 63 characters
			prefix = prefix[:40]
		}
		user = prefix + "-" + hex.EncodeToString(b[:])
	} else if !tenant.ValidName(user) || strings.HasPrefix(user, apiKeyPrefix) {
		return nil, "", fmt.Errorf("%w: username %q: use 1-63 letters, digits, '_' and '-' (not starting with %q)", tenant.ErrInvalid, user, apiKeyPrefix)
	}
	secret := auth.NewSecret()
	c := &tenant.Credential{
		TenantID: t.ID, AppID: app.ID, Username: user, SecretHash: a.keyed.Hash([]byte(secret)),
		HashScheme: tenant.SchemeKeyed, ClientIDPattern: clientIDPattern,
	}
	if err := a.store.CreateCredential(ctx, c); err != nil {
		return nil, "", err
	}
	if err := a.pol.LinkCredential(ctx, slug, user, appName); err != nil {
		return nil, "", err
	}
	if err := a.audit(ctx, t, actor, "credential.create", user, "app "+appName); err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// SecretRotator is implemented by stores that can replace a credential's
// secret hash (tenant.Store has no such update yet; services wraps its
// GORM store with one).
type SecretRotator interface {
	// SetCredentialSecret replaces the secret hash of the tenant's
	// unrevoked credential. tenant.ErrNotFound if there is none.
	SetCredentialSecret(ctx context.Context, tenantID, username string, hash []byte, scheme string) error
}

// RotateCredential gives a credential a new generated secret (returned,
// shown once) and keeps its username; clients still connected with the old
// secret are disconnected through the change feed, as for a revocation.
// username may carry the "@<tenant>" suffix. Errors: tenant.ErrNotFound,
// tenant.ErrConflict for a revoked credential.
func (a *Admin) RotateCredential(ctx context.Context, actor, slug, username string) (string, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return "", err
	}
	username = strings.TrimSuffix(username, "@"+slug)
	c, err := a.store.CredentialByUsername(ctx, t.ID, username)
	if err != nil {
		return "", err
	}
	if c.Revoked {
		return "", fmt.Errorf("%w: credential %q is revoked", tenant.ErrConflict, username)
	}
	rot, ok := a.store.(SecretRotator)
	if !ok {
		return "", errors.New("admin: this store cannot rotate secrets")
	}
	secret := auth.NewSecret()
	if err := rot.SetCredentialSecret(ctx, t.ID, username, a.keyed.Hash([]byte(secret)), tenant.SchemeKeyed); err != nil {
		return "", err
	}
	// The change feed disconnects the credential's clients on a rotation
	// as on a revocation (services/authsvc classify): they hold the old
	// secret.
	return secret, a.audit(ctx, t, actor, "credential.rotate", username, "secret rotated: the old one no longer works")
}

// ListApps returns the tenant's apps, by name.
func (a *Admin) ListApps(ctx context.Context, slug string) ([]tenant.App, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	return a.store.ListApps(ctx, t.ID)
}

// ListCredentials returns the tenant's credentials (of one app if appName
// is not empty), by username; revoked ones too. tenant.ErrNotFound for an
// unknown tenant or app.
func (a *Admin) ListCredentials(ctx context.Context, slug, appName string) ([]tenant.Credential, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	appID := ""
	if appName != "" {
		app, err := a.store.AppByName(ctx, t.ID, appName)
		if err != nil {
			return nil, err
		}
		appID = app.ID
	}
	return a.store.ListCredentials(ctx, t.ID, appID)
}

// RevokeCredential revokes a credential and disconnects its clients.
// username may carry the "@<tenant>" suffix.
func (a *Admin) RevokeCredential(ctx context.Context, actor, slug, username string) error {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return err
	}
	username = strings.TrimSuffix(username, "@"+slug)
	if err := a.store.RevokeCredential(ctx, t.ID, username); err != nil {
		return err
	}
	return a.audit(ctx, t, actor, "credential.revoke", username, "")
}

// NewAPIKey is an API key just created (shown once).
type NewAPIKey struct {
	// Key is sent as "Authorization: Bearer <key>".
	Key    string             `json:"key"`
	Prefix string             `json:"prefix"`
	Tenant string             `json:"tenant"`
	App    string             `json:"app"`
	Scope  tenant.APIKeyScope `json:"scope"`
}

// apiKeyPrefix starts every API key's public prefix.
const apiKeyPrefix = "rk_"

// CreateAPIKey creates an HTTP API key for the app with this scope
// (tenant.ScopePublish if empty).
func (a *Admin) CreateAPIKey(ctx context.Context, actor, slug, appName string, scope tenant.APIKeyScope) (*NewAPIKey, error) {
	k, key, err := a.IssueAPIKey(ctx, actor, slug, appName, scope)
	if err != nil {
		return nil, err
	}
	return &NewAPIKey{Key: key, Prefix: k.Prefix, Tenant: slug, App: appName, Scope: k.Scope}, nil
}

// IssueAPIKey creates an HTTP API key for the app with this scope
// (tenant.ScopePublish if empty) and returns it with the whole key
// "<prefix>.<secret>" (shown once). Errors: tenant.ErrNotFound,
// tenant.ErrInvalid (an unknown scope).
func (a *Admin) IssueAPIKey(ctx context.Context, actor, slug, appName string, scope tenant.APIKeyScope) (*tenant.APIKey, string, error) {
	scope, err := tenant.ParseAPIKeyScope(string(scope))
	if err != nil {
		return nil, "", err
	}
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, "", err
	}
	app, err := a.store.AppByName(ctx, t.ID, appName)
	if err != nil {
		return nil, "", err
	}
	var b [6]byte
	rand.Read(b[:])
	prefix := apiKeyPrefix + hex.EncodeToString(b[:])
	secret := auth.NewSecret()
	k := &tenant.APIKey{TenantID: t.ID, AppID: app.ID, Prefix: prefix, SecretHash: a.keyed.Hash([]byte(secret)), Scope: scope}
	if err := a.store.CreateAPIKey(ctx, k); err != nil {
		return nil, "", err
	}
	if err := a.audit(ctx, t, actor, "apikey.create", prefix, "app "+appName+", scope "+string(scope)); err != nil {
		return nil, "", err
	}
	return k, prefix + "." + secret, nil
}

// ListAPIKeys returns the tenant's API keys, newest first (revoked ones
// too).
func (a *Admin) ListAPIKeys(ctx context.Context, slug string) ([]tenant.APIKey, error) {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	return a.store.ListAPIKeys(ctx, t.ID)
}

// RevokeAPIKey revokes the tenant's API key with this prefix; it stops
// working at once. tenant.ErrNotFound, also for another tenant's key.
func (a *Admin) RevokeAPIKey(ctx context.Context, actor, slug, prefix string) error {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return err
	}
	if err := a.store.RevokeAPIKey(ctx, t.ID, prefix); err != nil {
		return err
	}
	return a.audit(ctx, t, actor, "apikey.revoke", prefix, "")
}

// APIKeyRules returns the effective ACL rules of an API key: those of its
// app (and the app's roles), and any given to "cred:<prefix>". Compile them
// (auth.Compile) with the prefix as username and no client ID.
func (a *Admin) APIKeyRules(ctx context.Context, slug, prefix, appName string) ([]auth.Rule, error) {
	return a.pol.RulesFor(ctx, slug, prefix, appName)
}

// AddRule adds an ACL rule for a subject ("app:<name>", "cred:<username>"
// or "role:<name>") of the tenant.
func (a *Admin) AddRule(ctx context.Context, actor, slug, subject string, r auth.Rule) error {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return err
	}
	if err := auth.ValidateSubject(subject); err != nil {
		return err
	}
	if err := auth.ValidateRule(r); err != nil {
		return err
	}
	if err := a.pol.AddRule(ctx, slug, subject, r); err != nil {
		return err
	}
	return a.audit(ctx, t, actor, "acl.add", subject, RuleString(r))
}

// RemoveRule removes an ACL rule.
func (a *Admin) RemoveRule(ctx context.Context, actor, slug, subject string, r auth.Rule) error {
	t, err := a.store.TenantBySlug(ctx, slug)
	if err != nil {
		return err
	}
	if err := a.pol.RemoveRule(ctx, slug, subject, r); err != nil {
		return err
	}
	return a.audit(ctx, t, actor, "acl.remove", subject, RuleString(r))
}

// ListRules returns the tenant's rules.
func (a *Admin) ListRules(ctx context.Context, slug string) ([]auth.SubjectRule, error) {
	if _, err := a.store.TenantBySlug(ctx, slug); err != nil {
		return nil, err
	}
	return a.pol.ListRules(ctx, slug)
}

// RuleString formats a rule as "allow|deny publish|subscribe|all FILTER".
func RuleString(r auth.Rule) string {
	eff := "allow"
	if r.Effect == auth.Deny {
		eff = "deny"
	}
	act := map[auth.Action]string{auth.Publish: "publish", auth.Subscribe: "subscribe", auth.PubSub: "all"}[r.Action]
	return eff + " " + act + " " + r.Filter
}

// ParseRule parses "allow|deny publish|subscribe|all FILTER".
func ParseRule(effect, action, filter string) (auth.Rule, error) {
	var r auth.Rule
	switch effect {
	case "allow":
		r.Effect = auth.Allow
	case "deny":
		r.Effect = auth.Deny
	default:
		return r, fmt.Errorf("%w: effect %q: use allow or deny", tenant.ErrInvalid, effect)
	}
	switch action {
	case "publish", "pub":
		r.Action = auth.Publish
	case "subscribe", "sub":
		r.Action = auth.Subscribe
	case "all", "pubsub":
		r.Action = auth.PubSub
	default:
		return r, fmt.Errorf("%w: action %q: use publish, subscribe or all", tenant.ErrInvalid, action)
	}
	r.Filter = filter
	return r, nil
}
