package tenant

import (
	"context"
	"net/mail"
	"strings"
	"time"
)

// Role is what a dashboard user may do.
type Role string

const (
	// RoleOwner manages one tenant: its apps, credentials, keys, rules and
	// data.
	RoleOwner Role = "owner"
	// RoleOperator runs the platform: it sees every tenant, suspends and
	// resumes them, and sees platform health. An operator belongs to no
	// tenant.
	RoleOperator Role = "operator"
)

// User is a person who signs in to the dashboard.
type User struct {
	// ID is an opaque random identifier.
	ID string
	// Email is the sign-in name, stored as NormalizeEmail made it: unique
	// regardless of case.
	Email string
	// PasswordHash is an argon2id PHC string (auth.HashPassword).
	PasswordHash string
	// TenantID is the owner's tenant; empty for an operator.
	TenantID string
	// Role is RoleOwner or RoleOperator.
	Role      Role
	CreatedAt time.Time
}

// Session is a signed-in dashboard session. The browser holds a random
// token; the store holds only its keyed hash, so a leaked table does not
// let anyone sign in.
type Session struct {
	// ID is the keyed hash of the session token, lower-case hex.
	ID string
	// UserID is the signed-in user.
	UserID string
	// CSRFToken must come with every state-changing request of the session.
	CSRFToken string
	CreatedAt time.Time
	// ExpiresAt is the absolute end of the session, whatever its use.
	ExpiresAt time.Time
	// LastSeen is the last time the session was used (updated at most
	// about once a minute); an idle session ends earlier than ExpiresAt.
	LastSeen time.Time
}

// UserStore persists dashboard users and their sessions. It is separate
// from Store: MQTT authentication never needs it.
type UserStore interface {
	// CreateUser stores u (ID and CreatedAt set by the store; Email
	// normalised). ErrInvalid for a bad email, role or missing hash, or
	// an owner without a tenant; ErrConflict if the email is taken;
	// ErrNotFound if the tenant does not exist.
	CreateUser(ctx context.Context, u *User) error
	// UserByEmail returns the user (email matched regardless of case) or
	// ErrNotFound.
	UserByEmail(ctx context.Context, email string) (*User, error)
	// UserByID returns the user or ErrNotFound.
	UserByID(ctx context.Context, id string) (*User, error)
	// SetPasswordHash replaces a user's password hash. ErrNotFound.
	SetPasswordHash(ctx context.Context, userID, hash string) error

	// CreateSession stores s (CreatedAt and LastSeen set by the store
	// when zero). ErrNotFound if the user does not exist; ErrConflict if
	// the ID is taken.
	CreateSession(ctx context.Context, s *Session) error
	// SessionUser returns the session with this ID and its user, or
	// ErrNotFound. It does not check expiry: the caller decides.
	SessionUser(ctx context.Context, id string) (*Session, *User, error)
	// TouchSession sets the session's LastSeen. ErrNotFound.
	TouchSession(ctx context.Context, id string, at time.Time) error
	// DeleteSession removes a session; removing a missing one is not an
	// error (signing out twice is fine).
	DeleteSession(ctx context.Context, id string) error
	// DeleteUserSessions removes every session of a user and returns how
	// many there were.
	DeleteUserSessions(ctx context.Context, userID string) (int64, error)
	// DeleteExpiredSessions removes sessions with ExpiresAt before now or
	// LastSeen before idleSince, and returns how many.
	DeleteExpiredSessions(ctx context.Context, now, idleSince time.Time) (int64, error)
}

// NormalizeEmail returns the canonical form of an email address (trimmed,
// lower-case) and whether it is a plain address (local@domain, no display
// name, at most 254 bytes, a dot in the domain). Addresses are compared in
// this form, so Ann@Example.com and ann@example.com are one user.
func NormalizeEmail(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > 254 {
		return s, false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return s, false
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return s, false
	}
	return s, true
}
