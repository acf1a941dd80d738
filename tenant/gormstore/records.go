package gormstore

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/relaymq/relay/tenant"
)

// Rows as stored: one struct per table, private to this package, so that
// the domain types carry no GORM tags and the schema is the migrations'
// alone. Column tags are explicit so that a renamed Go field cannot
// silently point at another column.

type tenantRow struct {
	ID              string    `gorm:"column:id;primaryKey"`
	Slug            string    `gorm:"column:slug"`
	Name            string    `gorm:"column:name"`
	Status          string    `gorm:"column:status"`
	MaxConnections  int64     `gorm:"column:max_connections"`
	MaxMessageRate  int64     `gorm:"column:max_message_rate"`
	MaxRetained     int64     `gorm:"column:max_retained"`
	MaxSessionQueue int64     `gorm:"column:max_session_queue"`
	ClientCertAuth  bool      `gorm:"column:client_cert_auth"` // 004
	CreatedAt       time.Time `gorm:"column:created_at"`
	UpdatedAt       time.Time `gorm:"column:updated_at"`
}

func (tenantRow) TableName() string { return "tenants" }

func (r *tenantRow) domain() *tenant.Tenant {
	return &tenant.Tenant{
		ID:     r.ID,
		Slug:   r.Slug,
		Name:   r.Name,
		Status: tenant.Status(r.Status),
		Limits: tenant.Limits{
			MaxConnections:  int(r.MaxConnections),
			MaxMessageRate:  int(r.MaxMessageRate),
			MaxRetained:     int(r.MaxRetained),
			MaxSessionQueue: int(r.MaxSessionQueue),
		},
		ClientCertAuth: r.ClientCertAuth,
		CreatedAt:      r.CreatedAt.UTC(),
		UpdatedAt:      r.UpdatedAt.UTC(),
	}
}

type appRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	TenantID  string    `gorm:"column:tenant_id"`
	Name      string    `gorm:"column:name"`
	CreatedAt time.Time `gorm:"column:created_at"`
}

func (appRow) TableName() string { return "apps" }

func (r *appRow) domain() *tenant.App {
	return &tenant.App{ID: r.ID, TenantID: r.TenantID, Name: r.Name, CreatedAt: r.CreatedAt.UTC()}
}

type credentialRow struct {
	ID              string       `gorm:"column:id;primaryKey"`
	TenantID        string       `gorm:"column:tenant_id"`
	AppID           string       `gorm:"column:app_id"`
	Username        string       `gorm:"column:username"`
	SecretHash      string       `gorm:"column:secret_hash"` // lower-case hex
	HashScheme      string       `gorm:"column:hash_scheme"`
	ClientIDPattern string       `gorm:"column:client_id_pattern"`
	Revoked         bool         `gorm:"column:revoked"`
	CreatedAt       time.Time    `gorm:"column:created_at"`
	RevokedAt       sql.NullTime `gorm:"column:revoked_at"`
}

func (credentialRow) TableName() string { return "credentials" }

func (r *credentialRow) domain() (*tenant.Credential, error) {
	hash, err := hex.DecodeString(r.SecretHash)
	if err != nil {
		return nil, fmt.Errorf("gormstore: credential %s: secret_hash is not hex: %w", r.ID, err)
	}
	return &tenant.Credential{
		ID:              r.ID,
		TenantID:        r.TenantID,
		AppID:           r.AppID,
		Username:        r.Username,
		SecretHash:      hash,
		HashScheme:      r.HashScheme,
		ClientIDPattern: r.ClientIDPattern,
		Revoked:         r.Revoked,
		CreatedAt:       r.CreatedAt.UTC(),
		RevokedAt:       fromNull(r.RevokedAt),
	}, nil
}

type apiKeyRow struct {
	ID         string       `gorm:"column:id;primaryKey"`
	TenantID   string       `gorm:"column:tenant_id"`
	AppID      string       `gorm:"column:app_id"`
	Prefix     string       `gorm:"column:prefix"`
	SecretHash string       `gorm:"column:secret_hash"` // lower-case hex
	Scope      string       `gorm:"column:scope"`       // migration 005
	Revoked    bool         `gorm:"column:revoked"`
	CreatedAt  time.Time    `gorm:"column:created_at"`
	RevokedAt  sql.NullTime `gorm:"column:revoked_at"`
}

func (apiKeyRow) TableName() string { return "api_keys" }

func (r *apiKeyRow) domain() (*tenant.APIKey, error) {
	hash, err := hex.DecodeString(r.SecretHash)
	if err != nil {
		return nil, fmt.Errorf("gormstore: API key %s: secret_hash is not hex: %w", r.ID, err)
	}
	scope, err := tenant.ParseAPIKeyScope(r.Scope)
	if err != nil {
		// A scope this binary does not know (a newer one wrote it): the
		// narrowest.
		scope = tenant.ScopePublish
	}
	return &tenant.APIKey{
		ID:         r.ID,
		TenantID:   r.TenantID,
		AppID:      r.AppID,
		Prefix:     r.Prefix,
		SecretHash: hash,
		Scope:      scope,
		Revoked:    r.Revoked,
		CreatedAt:  r.CreatedAt.UTC(),
		RevokedAt:  fromNull(r.RevokedAt),
	}, nil
}

type auditRow struct {
	ID       string    `gorm:"column:id;primaryKey"`
	TenantID string    `gorm:"column:tenant_id"`
	Actor    string    `gorm:"column:actor"`
	Action   string    `gorm:"column:action"`
	Target   string    `gorm:"column:target"`
	Detail   string    `gorm:"column:detail"`
	At       time.Time `gorm:"column:at"`
}

func (auditRow) TableName() string { return "audit_records" }

func (r *auditRow) domain() tenant.AuditRecord {
	return tenant.AuditRecord{
		ID:       r.ID,
		TenantID: r.TenantID,
		Actor:    r.Actor,
		Action:   r.Action,
		Target:   r.Target,
		Detail:   r.Detail,
		At:       r.At.UTC(),
	}
}

// toNull stores the zero time as NULL.
func toNull(t time.Time) sql.NullTime {
	if t.IsZero() {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: t.UTC().Truncate(time.Microsecond), Valid: true}
}

// fromNull reads NULL as the zero time.
func fromNull(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}
