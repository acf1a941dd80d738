package dashboard

import (
	"github.com/labstack/echo/v4"
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
	// UserID is set for dashboard sessions.
	UserID string
	// Operator is set for platform operators (dashboard users with the
	// operator role): they may use /api/v1/admin.
	Operator bool
	// Session is set when the caller authenticated with a session cookie;
	// unsafe methods then need a valid CSRF token.
	Session bool
}

const callerKey = "relay.caller"

// callerOf returns the authenticated caller of c, or nil.
func callerOf(c echo.Context) *Caller {
	v, _ := c.Get(callerKey).(*Caller)
	return v
}

// setCaller records the authenticated caller of c.
func setCaller(c echo.Context, k *Caller) { c.Set(callerKey, k) }
