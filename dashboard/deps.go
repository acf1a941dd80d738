package dashboard

import (
	"context"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Tenancy performs tenancy operations; services/admin.Admin implements it.
// Each operation writes an audit record (actor = Caller.Actor).
type Tenancy interface {
	CreateTenant(ctx context.Context, actor, slug, name string) (*tenant.Tenant, error)
	Tenant(ctx context.Context, slug string) (*tenant.Tenant, error)
	ListTenants(ctx context.Context) ([]tenant.Tenant, error)
	SetStatus(ctx context.Context, actor, slug string, st tenant.Status) (*tenant.Tenant, error)
	SetLimits(ctx context.Context, actor, slug string, l tenant.Limits) (*tenant.Tenant, error)
	VerifyAPIKey(ctx context.Context, key string) (*tenant.Tenant, *tenant.App, error)
	AddRule(ctx context.Context, actor, slug, subject string, r auth.Rule) error
	RemoveRule(ctx context.Context, actor, slug, subject string, r auth.Rule) error
	ListRules(ctx context.Context, slug string) ([]auth.SubjectRule, error)
}
