package gormstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/relaymq/relay/tenant"
)

var _ tenant.UserStore = (*Store)(nil)

// ---------------------------------------------------------------------------
// Rows (migration 003_users)

type userRow struct {
	ID           string         `gorm:"column:id;primaryKey"`
	Email        string         `gorm:"column:email"`
	PasswordHash string         `gorm:"column:password_hash"`
	TenantID     sql.NullString `gorm:"column:tenant_id"` // NULL for operators
	Role         string         `gorm:"column:role"`
	CreatedAt    time.Time      `gorm:"column:created_at"`
}

func (userRow) TableName() string { return "users" }

func (r *userRow) domain() *tenant.User {
	return &tenant.User{
		ID:           r.ID,
		Email:        r.Email,
		PasswordHash: r.PasswordHash,
		TenantID:     r.TenantID.String,
		Role:         tenant.Role(r.Role),
		CreatedAt:    r.CreatedAt.UTC(),
	}
}

type sessionRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	UserID    string    `gorm:"column:user_id"`
	CSRFToken string    `gorm:"column:csrf_token"`
	CreatedAt time.Time `gorm:"column:created_at"`
	ExpiresAt time.Time `gorm:"column:expires_at"`
	LastSeen  time.Time `gorm:"column:last_seen"`
}

func (sessionRow) TableName() string { return "web_sessions" }

func (r *sessionRow) domain() *tenant.Session {
	return &tenant.Session{
		ID:        r.ID,
		UserID:    r.UserID,
		CSRFToken: r.CSRFToken,
		CreatedAt: r.CreatedAt.UTC(),
		ExpiresAt: r.ExpiresAt.UTC(),
		LastSeen:  r.LastSeen.UTC(),
	}
}

// ---------------------------------------------------------------------------
// Users

// CreateUser stores u, setting its ID and CreatedAt and normalising its
// email. ErrInvalid for a bad email or role, an empty password hash, an
// owner without a tenant or an operator with one; ErrConflict if the
// email is taken; ErrNotFound if the tenant does not exist.
func (s *Store) CreateUser(ctx context.Context, u *tenant.User) error {
	email, ok := tenant.NormalizeEmail(u.Email)
	if !ok || !validText(email) {
		return invalid("email %q", u.Email)
	}
	if u.PasswordHash == "" || !validText(u.PasswordHash) {
		return invalid("user %q without a password hash", email)
	}
	switch {
	case u.Role == tenant.RoleOwner && u.TenantID == "":
		return invalid("owner %q without a tenant", email)
	case u.Role == tenant.RoleOperator && u.TenantID != "":
		return invalid("operator %q with a tenant", email)
	case u.Role != tenant.RoleOwner && u.Role != tenant.RoleOperator:
		return invalid("role %q", u.Role)
	}
	row := userRow{
		ID:           newID(),
		Email:        email,
		PasswordHash: u.PasswordHash,
		TenantID:     sql.NullString{String: u.TenantID, Valid: u.TenantID != ""},
		Role:         string(u.Role),
		CreatedAt:    s.now(),
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		if isForeignKeyViolation(err) {
			return dbErr(err, fmt.Sprintf("tenant id %q", u.TenantID))
		}
		return dbErr(err, fmt.Sprintf("user %q", email))
	}
	u.ID, u.Email, u.CreatedAt = row.ID, email, row.CreatedAt
	return nil
}

// UserByEmail returns the user (the email is normalised first) or
// ErrNotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (*tenant.User, error) {
	email, _ = tenant.NormalizeEmail(email)
	var row userRow
	if err := s.db.WithContext(ctx).Where("email = ?", email).Take(&row).Error; err != nil {
		return nil, dbErr(err, fmt.Sprintf("user %q", email))
	}
	return row.domain(), nil
}

// UserByID returns the user or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id string) (*tenant.User, error) {
	var row userRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		return nil, dbErr(err, fmt.Sprintf("user id %q", id))
	}
	return row.domain(), nil
}

// SetPasswordHash replaces the user's password hash. ErrInvalid for an
// empty hash; ErrNotFound.
func (s *Store) SetPasswordHash(ctx context.Context, userID, hash string) error {
	if hash == "" || !validText(hash) {
		return invalid("empty password hash")
	}
	res := s.db.WithContext(ctx).Model(&userRow{}).Where("id = ?", userID).Update("password_hash", hash)
	if res.Error != nil {
		return dbErr(res.Error, fmt.Sprintf("user id %q", userID))
	}
	if res.RowsAffected == 0 {
		return dbErr(gorm.ErrRecordNotFound, fmt.Sprintf("user id %q", userID))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Sessions

// CreateSession stores sess; a zero CreatedAt or LastSeen becomes now.
// ErrInvalid without an ID, user, CSRF token or expiry; ErrNotFound if the
// user does not exist; ErrConflict if the ID is taken.
func (s *Store) CreateSession(ctx context.Context, sess *tenant.Session) error {
	if sess.ID == "" || sess.UserID == "" || sess.CSRFToken == "" || sess.ExpiresAt.IsZero() ||
		!validText(sess.ID) || !validText(sess.CSRFToken) {
		return invalid("session needs an ID, a user, a CSRF token and an expiry")
	}
	now := s.now()
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now
	}
	if sess.LastSeen.IsZero() {
		sess.LastSeen = now
	}
	row := sessionRow{
		ID:        sess.ID,
		UserID:    sess.UserID,
		CSRFToken: sess.CSRFToken,
		CreatedAt: sess.CreatedAt.UTC().Truncate(time.Microsecond),
		ExpiresAt: sess.ExpiresAt.UTC().Truncate(time.Microsecond),
		LastSeen:  sess.LastSeen.UTC().Truncate(time.Microsecond),
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		if isForeignKeyViolation(err) {
			return dbErr(err, fmt.Sprintf("user id %q", sess.UserID))
		}
		return dbErr(err, "session")
	}
	sess.CreatedAt, sess.ExpiresAt, sess.LastSeen = row.CreatedAt, row.ExpiresAt, row.LastSeen
	return nil
}

// sessionUserRow is a session joined with its user.
type sessionUserRow struct {
	ID           string         `gorm:"column:id"`
	UserID       string         `gorm:"column:user_id"`
	CSRFToken    string         `gorm:"column:csrf_token"`
	CreatedAt    time.Time      `gorm:"column:created_at"`
	ExpiresAt    time.Time      `gorm:"column:expires_at"`
	LastSeen     time.Time      `gorm:"column:last_seen"`
	Email        string         `gorm:"column:email"`
	PasswordHash string         `gorm:"column:password_hash"`
	TenantID     sql.NullString `gorm:"column:tenant_id"`
	Role         string         `gorm:"column:role"`
	UserCreated  time.Time      `gorm:"column:user_created_at"`
}

// SessionUser returns the session and its user in one query, or
// ErrNotFound. Expiry is the caller's to check.
func (s *Store) SessionUser(ctx context.Context, id string) (*tenant.Session, *tenant.User, error) {
	var rows []sessionUserRow
	err := s.db.WithContext(ctx).Raw(strings.Join([]string{
		"SELECT s.id, s.user_id, s.csrf_token, s.created_at, s.expires_at, s.last_seen,",
		"u.email, u.password_hash, u.tenant_id, u.role, u.created_at AS user_created_at",
		"FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?",
	}, " "), id).Scan(&rows).Error
	if err != nil {
		return nil, nil, dbErr(err, "session")
	}
	if len(rows) == 0 {
		return nil, nil, dbErr(gorm.ErrRecordNotFound, "session")
	}
	r := rows[0]
	u := userRow{ID: r.UserID, Email: r.Email, PasswordHash: r.PasswordHash, TenantID: r.TenantID, Role: r.Role, CreatedAt: r.UserCreated}
	sr := sessionRow{ID: r.ID, UserID: r.UserID, CSRFToken: r.CSRFToken, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastSeen: r.LastSeen}
	return sr.domain(), u.domain(), nil
}

// TouchSession sets the session's LastSeen. ErrNotFound.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	res := s.db.WithContext(ctx).Model(&sessionRow{}).Where("id = ?", id).
		Update("last_seen", at.UTC().Truncate(time.Microsecond))
	if res.Error != nil {
		return dbErr(res.Error, "session")
	}
	if res.RowsAffected == 0 {
		return dbErr(gorm.ErrRecordNotFound, "session")
	}
	return nil
}

// DeleteSession removes a session; a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return dbErr(s.db.WithContext(ctx).Where("id = ?", id).Delete(&sessionRow{}).Error, "session")
}

// DeleteUserSessions removes every session of a user.
func (s *Store) DeleteUserSessions(ctx context.Context, userID string) (int64, error) {
	res := s.db.WithContext(ctx).Where("user_id = ?", userID).Delete(&sessionRow{})
	return res.RowsAffected, dbErr(res.Error, "sessions")
}

// DeleteExpiredSessions removes sessions past their absolute expiry or
// idle since before idleSince.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now, idleSince time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Where("expires_at < ? OR last_seen < ?",
		now.UTC().Truncate(time.Microsecond), idleSince.UTC().Truncate(time.Microsecond)).Delete(&sessionRow{})
	return res.RowsAffected, dbErr(res.Error, "sessions")
}
