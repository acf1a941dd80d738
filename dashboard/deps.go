package dashboard

import (
	"context"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Tenancy performs tenancy operations; services/admin.Admin implements it.
// Each operation that changes something writes an audit record (actor =
// Caller.Actor). Errors wrap tenant.ErrNotFound, tenant.ErrConflict,
// tenant.ErrInvalid, auth.ErrBadCredentials or auth.ErrNotAuthorized where
// the operation says so; anything else is a database error.
type Tenancy interface {
	CreateTenant(ctx context.Context, actor, slug, name string) (*tenant.Tenant, error)
	Tenant(ctx context.Context, slug string) (*tenant.Tenant, error)
	ListTenants(ctx context.Context) ([]tenant.Tenant, error)
	SetStatus(ctx context.Context, actor, slug string, st tenant.Status) (*tenant.Tenant, error)
	SetLimits(ctx context.Context, actor, slug string, l tenant.Limits) (*tenant.Tenant, error)
	// VerifyAPIKey returns the tenant, app and key of a valid API key;
	// auth.ErrBadCredentials for a wrong, unknown or revoked one,
	// auth.ErrNotAuthorized if its tenant is suspended.
	VerifyAPIKey(ctx context.Context, key string) (*tenant.Tenant, *tenant.App, *tenant.APIKey, error)
	AddRule(ctx context.Context, actor, slug, subject string, r auth.Rule) error
	RemoveRule(ctx context.Context, actor, slug, subject string, r auth.Rule) error
	ListRules(ctx context.Context, slug string) ([]auth.SubjectRule, error)

	// Apps, credentials and API keys (the HTTP API and the pages).

	// ListApps returns the tenant's apps, by name.
	ListApps(ctx context.Context, slug string) ([]tenant.App, error)
	// CreateApp creates an app with the default rule (all of the tenant's
	// topics). tenant.ErrInvalid, tenant.ErrConflict.
	CreateApp(ctx context.Context, actor, slug, name string) (*tenant.App, error)
	// ListCredentials returns the tenant's credentials (of one app if app
	// is not empty; tenant.ErrNotFound for an unknown app).
	ListCredentials(ctx context.Context, slug, app string) ([]tenant.Credential, error)
	// IssueCredential creates a credential of the app (username "" makes
	// one up) and returns it with its secret, shown once.
	IssueCredential(ctx context.Context, actor, slug, app, username, clientIDPattern string) (*tenant.Credential, string, error)
	// RotateCredential replaces a credential's secret and returns the new
	// one; clients using the old one are disconnected. tenant.ErrConflict
	// for a revoked credential.
	RotateCredential(ctx context.Context, actor, slug, username string) (string, error)
	// RevokeCredential revokes a credential and disconnects its clients.
	RevokeCredential(ctx context.Context, actor, slug, username string) error
	// ListAPIKeys returns the tenant's API keys, newest first.
	ListAPIKeys(ctx context.Context, slug string) ([]tenant.APIKey, error)
	// IssueAPIKey creates an API key of the app with this scope and
	// returns it with the whole key "<prefix>.<secret>", shown once.
	// tenant.ErrInvalid for an unknown scope.
	IssueAPIKey(ctx context.Context, actor, slug, app string, scope tenant.APIKeyScope) (*tenant.APIKey, string, error)
	// RevokeAPIKey revokes the tenant's key with this prefix.
	RevokeAPIKey(ctx context.Context, actor, slug, prefix string) error
	// APIKeyRules returns the ACL rules of an API key of the app.
	APIKeyRules(ctx context.Context, slug, prefix, app string) ([]auth.Rule, error)
}
