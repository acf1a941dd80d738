// Package tenant holds Relay's tenancy domain: tenants, their apps,
// credentials, API keys and audit records, and the Store interface that
// persists them. It imports nothing of Relay's and no technology; the GORM
// implementation lives in tenant/gormstore.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Errors returned by a Store and by validation.
var (
	// ErrNotFound means the tenant, app, credential or key does not exist
	// (in this tenant).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique name (slug, app name, username, key
	// prefix) is taken.
	ErrConflict = errors.New("already exists")
	// ErrInvalid means a value does not pass validation.
	ErrInvalid = errors.New("invalid")
)

// Status is a tenant's state.
type Status string

const (
	// Active tenants' clients connect and publish.
	Active Status = "active"
	// Suspended tenants' credentials stop working and their clients are
	// disconnected.
	Suspended Status = "suspended"
)

// DefaultSlug is the tenant of anonymous clients (--allow-anonymous).
const DefaultSlug = "default"

// Limits are a tenant's plan limits; 0 means unlimited.
type Limits struct {
	// MaxConnections caps the tenant's live MQTT connections (all edges).
	MaxConnections int `json:"max_connections"`
	// MaxMessageRate caps each client's publishes per second.
	MaxMessageRate int `json:"max_message_rate"`
	// MaxRetained caps the tenant's retained messages.
	MaxRetained int `json:"max_retained"`
	// MaxSessionQueue caps the messages queued for one offline session.
	MaxSessionQueue int `json:"max_session_queue"`
}

// Tenant is one customer: its own topic namespace, client IDs, sessions,
// retained messages, apps and credentials.
type Tenant struct {
	// ID is an opaque random identifier.
	ID string
	// Slug names the tenant in host names (<slug>.<base-domain>), MQTT
	// usernames (<user>@<slug>) and NATS subjects: see ValidSlug.
	Slug string
	// Name is the display name.
	Name string
	// Status is Active or Suspended.
	Status Status
	// Limits are the plan limits.
	Limits Limits
	// ClientCertAuth lets a client log in with a client certificate
	// (verified against the edge's --client-ca) that names one of the
	// tenant's credentials, without a password. Off by default.
	ClientCertAuth bool
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// App groups a tenant's credentials and API keys; ACL rules can be given
// to an app as a whole.
type App struct {
	ID        string
	TenantID  string
	Name      string
	CreatedAt time.Time
}

// Hash schemes of credential secrets.
const (
	// SchemeKeyed is HMAC-SHA-256 under the server's secret key, used for
	// secrets Relay generates (≥ 128 random bits): as hard to guess as
	// the key, and cheap to verify in a reconnect storm.
	SchemeKeyed = "hmac-sha256"
	// SchemeArgon2id is for secrets people choose.
	SchemeArgon2id = "argon2id"
)

// Credential is an MQTT username and password of an app.
type Credential struct {
	ID       string
	TenantID string
	AppID    string
	// Username is unique within the tenant; on plain TCP a client sends
	// Username + "@" + tenant slug.
	Username string
	// SecretHash is the hashed password; the password itself is shown
	// once, at creation.
	SecretHash []byte
	// HashScheme is SchemeKeyed or SchemeArgon2id.
	HashScheme string
	// ClientIDPattern, if set, restricts the client IDs the credential may
	// use: an MQTT-style filter over the client ID where %u is the
	// username (e.g. "%u-+" or "sensor-#" treat '-' as a level separator).
	ClientIDPattern string
	Revoked         bool
	CreatedAt       time.Time
	RevokedAt       time.Time
}

// APIKey authenticates the HTTP API as an app. The key a caller sends is
// Prefix + "." + secret; Prefix is public and unique.
type APIKey struct {
	ID         string
	TenantID   string
	AppID      string
	Prefix     string
	SecretHash []byte
	// Scope is what the key may do (ScopePublish if empty).
	Scope     APIKeyScope
	Revoked   bool
	CreatedAt time.Time
	RevokedAt time.Time
}

// APIKeyScope is what an API key may do. Whatever its scope, a key's
// messages (publish, retained, watch) are checked against its app's ACL.
type APIKeyScope string

// API key scopes.
const (
	// ScopePublish is the data plane: publish, retained messages, live
	// watches, and reading the tenant and its live clients, sessions,
	// topics and usage. The default.
	ScopePublish APIKeyScope = "publish"
	// ScopeAdmin is also the tenant's management: apps, credentials, API
	// keys, ACL rules, kicking clients.
	ScopeAdmin APIKeyScope = "admin"
)

// ParseAPIKeyScope returns the scope named s ("" is ScopePublish), or
// ErrInvalid.
func ParseAPIKeyScope(s string) (APIKeyScope, error) {
	switch APIKeyScope(s) {
	case "", ScopePublish:
		return ScopePublish, nil
	case ScopeAdmin:
		return ScopeAdmin, nil
	}
	return "", fmt.Errorf("%w: API key scope %q: want publish or admin", ErrInvalid, s)
}

// AuditRecord is one change to a tenant's configuration.
type AuditRecord struct {
	ID       string
	TenantID string
	// Actor is who made the change ("cli", a dashboard user's email).
	Actor string
	// Action names the change ("credential.create", "acl.add", …).
	Action string
	// Target is what was changed (a username, an app name, a rule).
	Target string
	// Detail is free text; never a secret.
	Detail string
	At     time.Time
}

// Store persists tenants and everything that belongs to them. Every method
// that takes a tenant ID only sees that tenant's rows.
type Store interface {
	// CreateTenant stores t (ID, timestamps set by the store). ErrConflict
	// if the slug is taken; ErrInvalid if it is not a valid slug.
	CreateTenant(ctx context.Context, t *Tenant) error
	// TenantBySlug returns the tenant or ErrNotFound.
	TenantBySlug(ctx context.Context, slug string) (*Tenant, error)
	// TenantByID returns the tenant or ErrNotFound.
	TenantByID(ctx context.Context, id string) (*Tenant, error)
	// ListTenants returns every tenant, by slug.
	ListTenants(ctx context.Context) ([]Tenant, error)
	// UpdateTenant stores t's name, status, limits and settings
	// (ClientCertAuth). ErrNotFound.
	UpdateTenant(ctx context.Context, t *Tenant) error

	// CreateApp stores a. ErrConflict if the tenant has an app of that name.
	CreateApp(ctx context.Context, a *App) error
	// AppByName returns the tenant's app or ErrNotFound.
	AppByName(ctx context.Context, tenantID, name string) (*App, error)
	// AppByID returns the tenant's app or ErrNotFound.
	AppByID(ctx context.Context, tenantID, id string) (*App, error)
	// ListApps returns the tenant's apps, by name.
	ListApps(ctx context.Context, tenantID string) ([]App, error)

	// CreateCredential stores c. ErrConflict if the username is taken in
	// the tenant.
	CreateCredential(ctx context.Context, c *Credential) error
	// CredentialByUsername returns the tenant's credential (revoked ones
	// too) or ErrNotFound.
	CredentialByUsername(ctx context.Context, tenantID, username string) (*Credential, error)
	// ListCredentials returns the tenant's credentials (of one app if appID
	// is not empty), by username.
	ListCredentials(ctx context.Context, tenantID, appID string) ([]Credential, error)
	// CredentialsAfter returns at most limit of the tenant's credentials
	// with usernames after after ("" from the first), by username: a page
	// of a tenant that may hold very many. ErrInvalid if limit < 1.
	CredentialsAfter(ctx context.Context, tenantID, after string, limit int) ([]Credential, error)
	// RevokeCredential marks the credential revoked. ErrNotFound.
	RevokeCredential(ctx context.Context, tenantID, username string) error

	// CreateAPIKey stores k. ErrConflict if the prefix is taken.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// APIKeyByPrefix returns the key (any tenant: the prefix is global) or
	// ErrNotFound.
	APIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, error)
	// ListAPIKeys returns the tenant's keys, newest first.
	ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error)
	// RevokeAPIKey marks the tenant's key revoked. ErrNotFound.
	RevokeAPIKey(ctx context.Context, tenantID, prefix string) error

	// AddAudit stores r (ID and time set by the store).
	AddAudit(ctx context.Context, r *AuditRecord) error
	// ListAudit returns the tenant's newest records, at most limit.
	ListAudit(ctx context.Context, tenantID string, limit int) ([]AuditRecord, error)
	// AuditSince returns the records of every tenant with At >= since,
	// oldest first, at most limit. The control plane polls it as its feed
	// of changes to push to edges (whoever made them: CLI, dashboard, API).
	AuditSince(ctx context.Context, since time.Time, limit int) ([]AuditRecord, error)
}

var slugPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// ValidSlug reports whether s can be a tenant slug: 1-32 lower-case
// letters, digits and inner hyphens (a DNS label that is also a NATS
// subject token).
func ValidSlug(s string) bool { return slugPattern.MatchString(s) }

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// ValidName reports whether s can be an app name or a username: 1-63
// letters, digits, '_' and '-', not starting with '_' or '-' (no '@', so
// that "<user>@<tenant>" splits unambiguously).
func ValidName(s string) bool { return namePattern.MatchString(s) }
