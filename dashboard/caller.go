package dashboard

import (
	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/tenant"
)

// Caller is who is calling: an app's API key or a dashboard user.
type Caller struct {
	// TenantID and Tenant (slug) scope every handler. Empty for an
	// operator acting outside any tenant.
	TenantID string
	Tenant   string
	// Actor names the caller in audit records ("apikey:<prefix>",
	// a user's email).
	Actor string
	// AppID is set for API keys: the app the key belongs to.
	AppID string
	// Scope is an API key's scope: tenant.ScopePublish (messages and
	// live views) or tenant.ScopeAdmin (also the tenant's management).
	// Empty for sessions, whose owners manage their tenant.
	Scope tenant.APIKeyScope
	// UserID is set for dashboard sessions.
	UserID string
	// Operator is set for platform operators (dashboard users with the
	// operator role): they may use /api/v1/admin.
	Operator bool
	// Session is set when the caller authenticated with a session cookie;
	// unsafe methods then need a valid CSRF token.
	Session bool
	// SessionID is the stored ID of the session (live watches check that
	// it still exists).
	SessionID string
	// Suspended is set when the caller's tenant is suspended (sessions
	// only: a suspended tenant's API keys do not authenticate). Its owner
	// may still look, not change anything (see requireCaller).
	Suspended bool
}

// Manages reports whether the caller may manage its tenant (apps,
// credentials, API keys, ACL rules, kicking clients): a dashboard session
// (the tenant's owner) or an admin-scoped API key.
func (k *Caller) Manages() bool { return k.Session || k.Scope == tenant.ScopeAdmin }

const callerKey = "relay.caller"

// callerOf returns the authenticated caller of c, or nil.
func callerOf(c echo.Context) *Caller {
	v, _ := c.Get(callerKey).(*Caller)
	return v
}

// setCaller records the authenticated caller of c.
func setCaller(c echo.Context, k *Caller) { c.Set(callerKey, k) }
