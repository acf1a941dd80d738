package gormstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/relaymq/relay/tenant"
)

// Every method that takes a tenant ID puts it in its WHERE clause (or, for
// inserts, the (tenant_id, app_id) foreign keys check it): no statement
// here reaches another tenant's rows.

// maxText bounds free-text fields (tenant names, audit fields).
const maxText = 1024

// ---------------------------------------------------------------------------
// Tenants

// CreateTenant stores t, setting its ID and timestamps. An empty Status
// becomes tenant.Active and an empty Name the slug. ErrInvalid for a bad
// slug, status or negative limit; ErrConflict if the slug is taken.
func (s *Store) CreateTenant(ctx context.Context, t *tenant.Tenant) error {
	if !tenant.ValidSlug(t.Slug) {
		return invalid("tenant slug %q", t.Slug)
	}
	if t.Status == "" {
		t.Status = tenant.Active
	}
	if t.Name == "" {
		t.Name = t.Slug
	}
	if err := validTenant(t); err != nil {
		return err
	}
	now := s.now()
	row := tenantRow{
		ID:              newID(),
		Slug:            t.Slug,
		Name:            t.Name,
		Status:          string(t.Status),
		MaxConnections:  int64(t.Limits.MaxConnections),
		MaxMessageRate:  int64(t.Limits.MaxMessageRate),
		MaxRetained:     int64(t.Limits.MaxRetained),
		MaxSessionQueue: int64(t.Limits.MaxSessionQueue),
		ClientCertAuth:  t.ClientCertAuth,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return dbErr(err, fmt.Sprintf("tenant %q", t.Slug))
	}
	t.ID, t.CreatedAt, t.UpdatedAt = row.ID, now, now
	return nil
}

// validTenant checks what UpdateTenant may change.
func validTenant(t *tenant.Tenant) error {
	if t.Status != tenant.Active && t.Status != tenant.Suspended {
		return invalid("tenant status %q", t.Status)
	}
	if !validText(t.Name) || t.Name == "" {
		return invalid("tenant name %q", t.Name)
	}
	l := t.Limits
	if l.MaxConnections < 0 || l.MaxMessageRate < 0 || l.MaxRetained < 0 || l.MaxSessionQueue < 0 {
		return invalid("negative limit in %+v", l)
	}
	return nil
}

// TenantBySlug returns the tenant or ErrNotFound.
func (s *Store) TenantBySlug(ctx context.Context, slug string) (*tenant.Tenant, error) {
	var row tenantRow
	if err := s.db.WithContext(ctx).Where("slug = ?", slug).Take(&row).Error; err != nil {
		return nil, dbErr(err, fmt.Sprintf("tenant %q", slug))
	}
	return row.domain(), nil
}

// TenantByID returns the tenant or ErrNotFound.
func (s *Store) TenantByID(ctx context.Context, id string) (*tenant.Tenant, error) {
	var row tenantRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		return nil, dbErr(err, fmt.Sprintf("tenant id %q", id))
	}
	return row.domain(), nil
}

// ListTenants returns every tenant, by slug.
func (s *Store) ListTenants(ctx context.Context) ([]tenant.Tenant, error) {
	var rows []tenantRow
	if err := s.db.WithContext(ctx).Order("slug").Find(&rows).Error; err != nil {
		return nil, dbErr(err, "tenants")
	}
	out := make([]tenant.Tenant, len(rows))
	for i := range rows {
		out[i] = *rows[i].domain()
	}
	return out, nil
}

// UpdateTenant stores t's name, status, limits and settings (not its slug) and sets
// t.UpdatedAt. ErrInvalid as for CreateTenant; ErrNotFound if there is no
// tenant with t.ID.
func (s *Store) UpdateTenant(ctx context.Context, t *tenant.Tenant) error {
	if err := validTenant(t); err != nil {
		return err
	}
	now := s.now()
	res := s.db.WithContext(ctx).Model(&tenantRow{}).Where("id = ?", t.ID).Updates(map[string]any{
		"name":              t.Name,
		"status":            string(t.Status),
		"max_connections":   int64(t.Limits.MaxConnections),
		"max_message_rate":  int64(t.Limits.MaxMessageRate),
		"max_retained":      int64(t.Limits.MaxRetained),
		"max_session_queue": int64(t.Limits.MaxSessionQueue),
		"client_cert_auth":  t.ClientCertAuth,
		"updated_at":        now,
	})
	if res.Error != nil {
		return dbErr(res.Error, fmt.Sprintf("tenant id %q", t.ID))
	}
	if res.RowsAffected == 0 {
		return dbErr(gorm.ErrRecordNotFound, fmt.Sprintf("tenant id %q", t.ID))
	}
	t.UpdatedAt = now
	return nil
}

// ---------------------------------------------------------------------------
// Apps

// CreateApp stores a, setting its ID and CreatedAt. ErrInvalid for a bad
// name; ErrNotFound if the tenant does not exist; ErrConflict if the tenant
// has an app of that name.
func (s *Store) CreateApp(ctx context.Context, a *tenant.App) error {
	if !tenant.ValidName(a.Name) {
		return invalid("app name %q", a.Name)
	}
	if a.TenantID == "" {
		return invalid("app %q without a tenant", a.Name)
	}
	row := appRow{ID: newID(), TenantID: a.TenantID, Name: a.Name, CreatedAt: s.now()}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return dbErr(err, fmt.Sprintf("app %q of tenant %s", a.Name, a.TenantID))
	}
	a.ID, a.CreatedAt = row.ID, row.CreatedAt
	return nil
}

// AppByName returns the tenant's app or ErrNotFound.
func (s *Store) AppByName(ctx context.Context, tenantID, name string) (*tenant.App, error) {
	var row appRow
	err := s.db.WithContext(ctx).Where("tenant_id = ? AND name = ?", tenantID, name).Take(&row).Error
	if err != nil {
		return nil, dbErr(err, fmt.Sprintf("app %q", name))
	}
	return row.domain(), nil
}

// AppByID returns the tenant's app or ErrNotFound.
func (s *Store) AppByID(ctx context.Context, tenantID, id string) (*tenant.App, error) {
	var row appRow
	err := s.db.WithContext(ctx).Where("tenant_id = ? AND id = ?", tenantID, id).Take(&row).Error
	if err != nil {
		return nil, dbErr(err, fmt.Sprintf("app id %q", id))
	}
	return row.domain(), nil
}

// ListApps returns the tenant's apps, by name.
func (s *Store) ListApps(ctx context.Context, tenantID string) ([]tenant.App, error) {
	var rows []appRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ?", tenantID).Order("name").Find(&rows).Error; err != nil {
		return nil, dbErr(err, "apps")
	}
	out := make([]tenant.App, len(rows))
	for i := range rows {
		out[i] = *rows[i].domain()
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Credentials

// CreateCredential stores c, setting its ID and CreatedAt. ErrInvalid for
// a bad username, an empty hash or an unknown hash scheme; ErrNotFound if
// c.AppID is not an app of c.TenantID; ErrConflict if the username is taken
// in the tenant.
func (s *Store) CreateCredential(ctx context.Context, c *tenant.Credential) error {
	if !tenant.ValidName(c.Username) {
		return invalid("username %q", c.Username)
	}
	if c.TenantID == "" || c.AppID == "" {
		return invalid("credential %q needs a tenant and an app", c.Username)
	}
	if len(c.SecretHash) == 0 {
		return invalid("credential %q without a secret hash", c.Username)
	}
	if c.HashScheme != tenant.SchemeKeyed && c.HashScheme != tenant.SchemeArgon2id {
		return invalid("hash scheme %q", c.HashScheme)
	}
	if !validText(c.ClientIDPattern) {
		return invalid("client ID pattern %q", c.ClientIDPattern)
	}
	row := credentialRow{
		ID:              newID(),
		TenantID:        c.TenantID,
		AppID:           c.AppID,
		Username:        c.Username,
		SecretHash:      hex.EncodeToString(c.SecretHash),
		HashScheme:      c.HashScheme,
		ClientIDPattern: c.ClientIDPattern,
		Revoked:         c.Revoked,
		CreatedAt:       s.now(),
		RevokedAt:       toNull(c.RevokedAt),
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		if isForeignKeyViolation(err) {
			return dbErr(err, fmt.Sprintf("app id %q", c.AppID))
		}
		return dbErr(err, fmt.Sprintf("username %q", c.Username))
	}
	c.ID, c.CreatedAt = row.ID, row.CreatedAt
	return nil
}

// CredentialByUsername returns the tenant's credential (revoked ones too)
// or ErrNotFound.
func (s *Store) CredentialByUsername(ctx context.Context, tenantID, username string) (*tenant.Credential, error) {
	var row credentialRow
	err := s.db.WithContext(ctx).Where("tenant_id = ? AND username = ?", tenantID, username).Take(&row).Error
	if err != nil {
		return nil, dbErr(err, fmt.Sprintf("username %q", username))
	}
	return row.domain()
}

// ListCredentials returns the tenant's credentials (of one app if appID is
// not empty), by username.
func (s *Store) ListCredentials(ctx context.Context, tenantID, appID string) ([]tenant.Credential, error) {
	q := s.db.WithContext(ctx).Where("tenant_id = ?", tenantID)
	if appID != "" {
		q = q.Where("app_id = ?", appID)
	}
	var rows []credentialRow
	if err := q.Order("username").Find(&rows).Error; err != nil {
		return nil, dbErr(err, "credentials")
	}
	return decodeRows(rows, (*credentialRow).domain)
}

// CredentialsAfter returns at most limit of the tenant's credentials with
// usernames after after, by username (the unique (tenant_id, username)
// index serves it). ErrInvalid if limit < 1.
func (s *Store) CredentialsAfter(ctx context.Context, tenantID, after string, limit int) ([]tenant.Credential, error) {
	if limit < 1 {
		return nil, invalid("credentials limit %d", limit)
	}
	var rows []credentialRow
	err := s.db.WithContext(ctx).Where("tenant_id = ? AND username > ?", tenantID, after).
		Order("username").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, dbErr(err, "credentials")
	}
	return decodeRows(rows, (*credentialRow).domain)
}

// RevokeCredential marks the tenant's credential revoked (once: revoking it
// again keeps the first RevokedAt). ErrNotFound.
func (s *Store) RevokeCredential(ctx context.Context, tenantID, username string) error {
	res := s.db.WithContext(ctx).Model(&credentialRow{}).
		Where("tenant_id = ? AND username = ? AND revoked = ?", tenantID, username, false).
		Updates(map[string]any{"revoked": true, "revoked_at": s.now()})
	if res.Error != nil {
		return dbErr(res.Error, fmt.Sprintf("username %q", username))
	}
	if res.RowsAffected == 0 {
		// Already revoked, or not there?
		_, err := s.CredentialByUsername(ctx, tenantID, username)
		return err
	}
	return nil
}

// ---------------------------------------------------------------------------
// API keys

// CreateAPIKey stores k, setting its ID and CreatedAt (and an empty Scope
// to ScopePublish). ErrInvalid for a bad prefix (tenant.ValidName: no '.',
// which separates it from the secret), an empty hash or an unknown scope; ErrNotFound if k.AppID is not an app of k.TenantID;
// ErrConflict if the prefix is taken (by any tenant).
func (s *Store) CreateAPIKey(ctx context.Context, k *tenant.APIKey) error {
	if !tenant.ValidName(k.Prefix) {
		return invalid("API key prefix %q", k.Prefix)
	}
	if k.TenantID == "" || k.AppID == "" {
		return invalid("API key %q needs a tenant and an app", k.Prefix)
	}
	if len(k.SecretHash) == 0 {
		return invalid("API key %q without a secret hash", k.Prefix)
	}
	scope, err := tenant.ParseAPIKeyScope(string(k.Scope))
	if err != nil {
		return err
	}
	row := apiKeyRow{
		ID:         newID(),
		TenantID:   k.TenantID,
		AppID:      k.AppID,
		Prefix:     k.Prefix,
		SecretHash: hex.EncodeToString(k.SecretHash),
		Scope:      string(scope),
		Revoked:    k.Revoked,
		CreatedAt:  s.now(),
		RevokedAt:  toNull(k.RevokedAt),
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		if isForeignKeyViolation(err) {
			return dbErr(err, fmt.Sprintf("app id %q", k.AppID))
		}
		return dbErr(err, fmt.Sprintf("API key prefix %q", k.Prefix))
	}
	k.ID, k.CreatedAt, k.Scope = row.ID, row.CreatedAt, scope
	return nil
}

// APIKeyByPrefix returns the key (any tenant: the prefix is global) or
// ErrNotFound. The caller checks TenantID before trusting it for a tenant.
func (s *Store) APIKeyByPrefix(ctx context.Context, prefix string) (*tenant.APIKey, error) {
	var row apiKeyRow
	if err := s.db.WithContext(ctx).Where("prefix = ?", prefix).Take(&row).Error; err != nil {
		return nil, dbErr(err, fmt.Sprintf("API key prefix %q", prefix))
	}
	return row.domain()
}

// ListAPIKeys returns the tenant's keys, newest first.
func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]tenant.APIKey, error) {
	var rows []apiKeyRow
	err := s.db.WithContext(ctx).Where("tenant_id = ?", tenantID).
		Order("created_at DESC").Order("id DESC").Find(&rows).Error
	if err != nil {
		return nil, dbErr(err, "API keys")
	}
	return decodeRows(rows, (*apiKeyRow).domain)
}

// RevokeAPIKey marks the tenant's key revoked (once: revoking it again
// keeps the first RevokedAt). ErrNotFound, also for another tenant's key.
func (s *Store) RevokeAPIKey(ctx context.Context, tenantID, prefix string) error {
	res := s.db.WithContext(ctx).Model(&apiKeyRow{}).
		Where("tenant_id = ? AND prefix = ? AND revoked = ?", tenantID, prefix, false).
		Updates(map[string]any{"revoked": true, "revoked_at": s.now()})
	if res.Error != nil {
		return dbErr(res.Error, fmt.Sprintf("API key prefix %q", prefix))
	}
	if res.RowsAffected > 0 {
		return nil
	}
	var n int64
	err := s.db.WithContext(ctx).Model(&apiKeyRow{}).
		Where("tenant_id = ? AND prefix = ?", tenantID, prefix).Count(&n).Error
	if err != nil {
		return dbErr(err, fmt.Sprintf("API key prefix %q", prefix))
	}
	if n == 0 {
		return dbErr(gorm.ErrRecordNotFound, fmt.Sprintf("API key prefix %q", prefix))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Audit

// AddAudit stores r, setting its ID and At. ErrInvalid without a tenant or
// an action, or for over-long fields; ErrNotFound if the tenant does not
// exist.
func (s *Store) AddAudit(ctx context.Context, r *tenant.AuditRecord) error {
	if r.TenantID == "" || r.Action == "" {
		return invalid("audit record needs a tenant and an action")
	}
	for _, f := range []string{r.Actor, r.Action, r.Target, r.Detail} {
		if !validText(f) {
			return invalid("audit record field %q", f)
		}
	}
	row := auditRow{
		ID:       newID(),
		TenantID: r.TenantID,
		Actor:    r.Actor,
		Action:   r.Action,
		Target:   r.Target,
		Detail:   r.Detail,
		At:       s.now(),
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return dbErr(err, fmt.Sprintf("tenant id %q", r.TenantID))
	}
	r.ID, r.At = row.ID, row.At
	return nil
}

// ListAudit returns the tenant's newest records, at most limit (ErrInvalid
// if limit < 1), newest first.
func (s *Store) ListAudit(ctx context.Context, tenantID string, limit int) ([]tenant.AuditRecord, error) {
	if limit < 1 {
		return nil, invalid("audit limit %d", limit)
	}
	var rows []auditRow
	err := s.db.WithContext(ctx).Where("tenant_id = ?", tenantID).
		Order("at DESC").Order("id DESC").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, dbErr(err, "audit records")
	}
	out := make([]tenant.AuditRecord, len(rows))
	for i := range rows {
		out[i] = rows[i].domain()
	}
	return out, nil
}

// AuditSince returns the records of every tenant with At >= since, oldest
// first, at most limit (ErrInvalid if limit < 1).
//
// At is set by the process that writes the record, before its commit: a
// reader polling with since = the latest At it has seen can miss a record
// of another process that committed late with an earlier At. Poll with
// some overlap and skip IDs already seen.
func (s *Store) AuditSince(ctx context.Context, since time.Time, limit int) ([]tenant.AuditRecord, error) {
	if limit < 1 {
		return nil, invalid("audit limit %d", limit)
	}
	var rows []auditRow
	err := s.db.WithContext(ctx).Where("at >= ?", since.UTC().Truncate(time.Microsecond)).
		Order("at").Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, dbErr(err, "audit records")
	}
	out := make([]tenant.AuditRecord, len(rows))
	for i := range rows {
		out[i] = rows[i].domain()
	}
	return out, nil
}

// validText accepts valid UTF-8 of at most maxText bytes without NUL
// (which PostgreSQL's TEXT cannot hold).
func validText(s string) bool {
	if len(s) > maxText || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return false
		}
	}
	return true
}

// decodeRows converts stored rows whose secrets must decode into domain
// values, failing on the first that does not.
func decodeRows[R, T any](rows []R, domain func(*R) (*T, error)) ([]T, error) {
	out := make([]T, len(rows))
	for i := range rows {
		v, err := domain(&rows[i])
		if err != nil {
			return nil, err
		}
		out[i] = *v
	}
	return out, nil
}
