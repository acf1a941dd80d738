package gormstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymq/relay/migrations"
	"github.com/relaymq/relay/tenant"
)

var idPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkNew checks what a Create… sets: a 128-bit hex ID and a UTC time at
// microsecond precision.
func checkNew(t *testing.T, what, id string, at time.Time) {
	t.Helper()
	if !idPattern.MatchString(id) {
		t.Errorf("%s: ID %q is not 32 hex digits", what, id)
	}
	if at.IsZero() || at.Location() != time.UTC || at.Nanosecond()%1000 != 0 {
		t.Errorf("%s: time %v is not a UTC time at µs precision", what, at)
	}
}

// ---------------------------------------------------------------------------
// Tenants

func TestTenants(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		acme := mkTenant(t, s, "acme")
		checkNew(t, "CreateTenant", acme.ID, acme.CreatedAt)
		if acme.Status != tenant.Active || acme.Name != "acme" || !acme.UpdatedAt.Equal(acme.CreatedAt) {
			t.Errorf("defaults: %+v", acme)
		}

		for _, tc := range []struct {
			name string
			in   tenant.Tenant
			want error
		}{
			{"with name, status and limits", tenant.Tenant{Slug: "beta-2", Name: "Beta Two GmbH", Status: tenant.Suspended,
				Limits: tenant.Limits{MaxConnections: 10, MaxMessageRate: 20, MaxRetained: 30, MaxSessionQueue: 3_000_000_000}}, nil},
			{"one character", tenant.Tenant{Slug: "x"}, nil},
			{"taken slug", tenant.Tenant{Slug: "acme"}, tenant.ErrConflict},
			{"empty slug", tenant.Tenant{}, tenant.ErrInvalid},
			{"upper case", tenant.Tenant{Slug: "Acme"}, tenant.ErrInvalid},
			{"leading hyphen", tenant.Tenant{Slug: "-acme"}, tenant.ErrInvalid},
			{"dot", tenant.Tenant{Slug: "a.b"}, tenant.ErrInvalid},
			{"underscore", tenant.Tenant{Slug: "a_b"}, tenant.ErrInvalid},
			{"33 characters", tenant.Tenant{Slug: strings.Repeat("a", 33)}, tenant.ErrInvalid},
			{"unknown status", tenant.Tenant{Slug: "paused", Status: "paused"}, tenant.ErrInvalid},
			{"negative limit", tenant.Tenant{Slug: "neg", Limits: tenant.Limits{MaxRetained: -1}}, tenant.ErrInvalid},
			{"NUL in name", tenant.Tenant{Slug: "nul", Name: "a\x00b"}, tenant.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.in
				err := s.CreateTenant(ctx, &in)
				wantErr(t, "CreateTenant", err, tc.want)
				if err != nil {
					return
				}
				got, err := s.TenantBySlug(ctx, in.Slug)
				if err != nil {
					t.Fatalf("TenantBySlug: %v", err)
				}
				if !reflect.DeepEqual(got, &in) {
					t.Errorf("TenantBySlug = %+v, want %+v", got, &in)
				}
			})
		}

		for _, tc := range []struct {
			name, slug, id string
			want           error
		}{
			{"by slug", "acme", "", nil},
			{"by ID", "", acme.ID, nil},
			{"unknown slug", "nope", "", tenant.ErrNotFound},
			{"unknown ID", "", "00000000000000000000000000000000", tenant.ErrNotFound},
		} {
			t.Run("get "+tc.name, func(t *testing.T) {
				var got *tenant.Tenant
				var err error
				if tc.slug != "" {
					got, err = s.TenantBySlug(ctx, tc.slug)
				} else {
					got, err = s.TenantByID(ctx, tc.id)
				}
				wantErr(t, "get", err, tc.want)
				if err == nil && !reflect.DeepEqual(got, acme) {
					t.Errorf("got %+v, want %+v", got, acme)
				}
			})
		}

		all, err := s.ListTenants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var slugs []string
		for _, tn := range all {
			slugs = append(slugs, tn.Slug)
		}
		if want := []string{"acme", "beta-2", "x"}; !reflect.DeepEqual(slugs, want) {
			t.Errorf("ListTenants slugs = %v, want %v", slugs, want)
		}

		for _, tc := range []struct {
			name   string
			change func(*tenant.Tenant)
			want   error
		}{
			{"name, status, limits", func(tn *tenant.Tenant) {
				tn.Name, tn.Status = "ACME Corp", tenant.Suspended
				tn.Limits = tenant.Limits{MaxConnections: 1, MaxMessageRate: 2, MaxRetained: 3, MaxSessionQueue: 4}
			}, nil},
			{"back to active", func(tn *tenant.Tenant) { tn.Status = tenant.Active }, nil},
			{"unknown ID", func(tn *tenant.Tenant) { tn.ID = "nope" }, tenant.ErrNotFound},
			{"bad status", func(tn *tenant.Tenant) { tn.Status = "gone" }, tenant.ErrInvalid},
			{"empty name", func(tn *tenant.Tenant) { tn.Name = "" }, tenant.ErrInvalid},
			{"negative limit", func(tn *tenant.Tenant) { tn.Limits.MaxConnections = -5 }, tenant.ErrInvalid},
		} {
			t.Run("update "+tc.name, func(t *testing.T) {
				before, err := s.TenantByID(ctx, acme.ID)
				if err != nil {
					t.Fatal(err)
				}
				upd := *before
				tc.change(&upd)
				upd.Slug = "ignored" // the slug never changes
				err = s.UpdateTenant(ctx, &upd)
				wantErr(t, "UpdateTenant", err, tc.want)
				after, gerr := s.TenantByID(ctx, acme.ID)
				if gerr != nil {
					t.Fatal(gerr)
				}
				if err != nil {
					if !reflect.DeepEqual(after, before) {
						t.Errorf("failed update changed the tenant: %+v -> %+v", before, after)
					}
					return
				}
				if !upd.UpdatedAt.After(before.UpdatedAt) {
					t.Errorf("UpdatedAt %v not after %v", upd.UpdatedAt, before.UpdatedAt)
				}
				upd.Slug = "acme"
				if !reflect.DeepEqual(after, &upd) {
					t.Errorf("after update %+v, want %+v", after, &upd)
				}
			})
		}
	})
}

// ---------------------------------------------------------------------------
// Apps

func TestApps(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mkTenant(t, s, "a"), mkTenant(t, s, "b")
		web := mkApp(t, s, a.ID, "web")
		checkNew(t, "CreateApp", web.ID, web.CreatedAt)

		for _, tc := range []struct {
			name string
			in   tenant.App
			want error
		}{
			{"second app", tenant.App{TenantID: a.ID, Name: "Sensors_2"}, nil},
			{"same name, other tenant", tenant.App{TenantID: b.ID, Name: "web"}, nil},
			{"taken name", tenant.App{TenantID: a.ID, Name: "web"}, tenant.ErrConflict},
			{"unknown tenant", tenant.App{TenantID: "nope", Name: "x"}, tenant.ErrNotFound},
			{"no tenant", tenant.App{Name: "x"}, tenant.ErrInvalid},
			{"empty name", tenant.App{TenantID: a.ID}, tenant.ErrInvalid},
			{"at sign", tenant.App{TenantID: a.ID, Name: "a@b"}, tenant.ErrInvalid},
			{"leading underscore", tenant.App{TenantID: a.ID, Name: "_x"}, tenant.ErrInvalid},
			{"64 characters", tenant.App{TenantID: a.ID, Name: strings.Repeat("a", 64)}, tenant.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.in
				err := s.CreateApp(ctx, &in)
				wantErr(t, "CreateApp", err, tc.want)
				if err != nil {
					return
				}
				byName, err := s.AppByName(ctx, in.TenantID, in.Name)
				if err != nil || !reflect.DeepEqual(byName, &in) {
					t.Errorf("AppByName = %+v, %v; want %+v", byName, err, &in)
				}
				byID, err := s.AppByID(ctx, in.TenantID, in.ID)
				if err != nil || !reflect.DeepEqual(byID, &in) {
					t.Errorf("AppByID = %+v, %v; want %+v", byID, err, &in)
				}
			})
		}

		if _, err := s.AppByName(ctx, a.ID, "nope"); !errors.Is(err, tenant.ErrNotFound) {
			t.Errorf("AppByName(unknown) error %v", err)
		}
		if _, err := s.AppByID(ctx, a.ID, "nope"); !errors.Is(err, tenant.ErrNotFound) {
			t.Errorf("AppByID(unknown) error %v", err)
		}
		apps, err := s.ListApps(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, app := range apps {
			names = append(names, app.Name)
		}
		if want := []string{"Sensors_2", "web"}; !reflect.DeepEqual(names, want) {
			t.Errorf("ListApps = %v, want %v", names, want)
		}
		if apps, _ := s.ListApps(ctx, "nope"); len(apps) != 0 {
			t.Errorf("ListApps(unknown tenant) = %v", apps)
		}
	})
}

// ---------------------------------------------------------------------------
// Credentials

func TestCredentials(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mkTenant(t, s, "a"), mkTenant(t, s, "b")
		web, iot := mkApp(t, s, a.ID, "web"), mkApp(t, s, a.ID, "iot")
		bApp := mkApp(t, s, b.ID, "web")
		dev := mkCredential(t, s, a.ID, web.ID, "dev")
		checkNew(t, "CreateCredential", dev.ID, dev.CreatedAt)

		good := func(c tenant.Credential) tenant.Credential {
			if c.TenantID == "" {
				c.TenantID = a.ID
			}
			if c.AppID == "" {
				c.AppID = iot.ID
			}
			if c.SecretHash == nil {
				c.SecretHash = []byte("$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA")
			}
			if c.HashScheme == "" {
				c.HashScheme = tenant.SchemeArgon2id
			}
			return c
		}
		for _, tc := range []struct {
			name string
			in   tenant.Credential
			want error
		}{
			{"with client ID pattern", good(tenant.Credential{Username: "sensor-1", ClientIDPattern: "%u-+"}), nil},
			{"created revoked", good(tenant.Credential{Username: "old", Revoked: true,
				RevokedAt: time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)}), nil},
			{"same username, other tenant", good(tenant.Credential{TenantID: b.ID, AppID: bApp.ID, Username: "dev"}), nil},
			{"taken username", good(tenant.Credential{Username: "dev"}), tenant.ErrConflict},
			{"taken username, other app", good(tenant.Credential{AppID: web.ID, Username: "dev"}), tenant.ErrConflict},
			{"unknown app", good(tenant.Credential{AppID: "nope", Username: "x"}), tenant.ErrNotFound},
			{"unknown tenant", good(tenant.Credential{TenantID: "nope", Username: "x"}), tenant.ErrNotFound},
			{"bad username", good(tenant.Credential{Username: "x@a"}), tenant.ErrInvalid},
			{"empty username", good(tenant.Credential{}), tenant.ErrInvalid},
			{"empty hash", good(tenant.Credential{Username: "x", SecretHash: []byte{}}), tenant.ErrInvalid},
			{"unknown scheme", good(tenant.Credential{Username: "x", HashScheme: "md5"}), tenant.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.in
				err := s.CreateCredential(ctx, &in)
				wantErr(t, "CreateCredential", err, tc.want)
				if err != nil {
					return
				}
				got, err := s.CredentialByUsername(ctx, in.TenantID, in.Username)
				if err != nil || !reflect.DeepEqual(got, &in) {
					t.Errorf("CredentialByUsername = %+v, %v; want %+v", got, err, &in)
				}
			})
		}

		t.Run("round trip", func(t *testing.T) {
			got, err := s.CredentialByUsername(ctx, a.ID, "dev")
			if err != nil || !reflect.DeepEqual(got, dev) {
				t.Errorf("CredentialByUsername = %+v, %v; want %+v", got, err, dev)
			}
			if _, err := s.CredentialByUsername(ctx, a.ID, "nope"); !errors.Is(err, tenant.ErrNotFound) {
				t.Errorf("unknown username: error %v", err)
			}
		})

		for _, tc := range []struct {
			name, app string
			want      []string
		}{
			{"all apps", "", []string{"dev", "old", "sensor-1"}},
			{"one app", web.ID, []string{"dev"}},
			{"other app", iot.ID, []string{"old", "sensor-1"}},
			{"unknown app", "nope", nil},
		} {
			t.Run("list "+tc.name, func(t *testing.T) {
				cs, err := s.ListCredentials(ctx, a.ID, tc.app)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range cs {
					got = append(got, c.Username)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("ListCredentials = %v, want %v", got, tc.want)
				}
			})
		}

		t.Run("revoke", func(t *testing.T) {
			if err := s.RevokeCredential(ctx, a.ID, "dev"); err != nil {
				t.Fatal(err)
			}
			got, err := s.CredentialByUsername(ctx, a.ID, "dev")
			if err != nil {
				t.Fatal(err)
			}
			if !got.Revoked || got.RevokedAt.Before(got.CreatedAt) || got.RevokedAt.Location() != time.UTC {
				t.Errorf("after revoke: %+v", got)
			}
			// Again: no error, first RevokedAt kept.
			if err := s.RevokeCredential(ctx, a.ID, "dev"); err != nil {
				t.Fatal(err)
			}
			again, _ := s.CredentialByUsername(ctx, a.ID, "dev")
			if !again.RevokedAt.Equal(got.RevokedAt) {
				t.Errorf("second revoke moved RevokedAt %v -> %v", got.RevokedAt, again.RevokedAt)
			}
			wantErr(t, "revoke unknown", s.RevokeCredential(ctx, a.ID, "nope"), tenant.ErrNotFound)
			// b's "dev" is untouched.
			bdev, _ := s.CredentialByUsername(ctx, b.ID, "dev")
			if bdev == nil || bdev.Revoked {
				t.Errorf("revoking a's dev touched b's: %+v", bdev)
			}
		})
	})
}

// TestConcurrentCreateCredential: of several simultaneous creations of one
// username exactly one wins and the others get ErrConflict.
func TestConcurrentCreateCredential(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		tn := mkTenant(t, s, "acme")
		app := mkApp(t, s, tn.ID, "web")
		const n = 8
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.CreateCredential(ctx, &tenant.Credential{
					TenantID: tn.ID, AppID: app.ID, Username: "dev",
					SecretHash: []byte{byte(i)}, HashScheme: tenant.SchemeKeyed,
				})
			})
		}
		close(start)
		wg.Wait()
		var ok, conflict int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, tenant.ErrConflict):
				conflict++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 1 || conflict != n-1 {
			t.Errorf("%d created, %d conflicts; want 1 and %d", ok, conflict, n-1)
		}
		if cs, _ := s.ListCredentials(ctx, tn.ID, ""); len(cs) != 1 {
			t.Errorf("%d credentials stored, want 1", len(cs))
		}
	})
}

// ---------------------------------------------------------------------------
// API keys

func TestAPIKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mkTenant(t, s, "a"), mkTenant(t, s, "b")
		web, bApp := mkApp(t, s, a.ID, "web"), mkApp(t, s, b.ID, "web")
		k1 := mkAPIKey(t, s, a.ID, web.ID, "rk_one")
		checkNew(t, "CreateAPIKey", k1.ID, k1.CreatedAt)

		for _, tc := range []struct {
			name string
			in   tenant.APIKey
			want error
		}{
			{"second key", tenant.APIKey{TenantID: a.ID, AppID: web.ID, Prefix: "rk_two", SecretHash: []byte{9}}, nil},
			{"admin scope", tenant.APIKey{TenantID: a.ID, AppID: web.ID, Prefix: "rk_adm", SecretHash: []byte{9}, Scope: tenant.ScopeAdmin}, nil},
			{"unknown scope", tenant.APIKey{TenantID: a.ID, AppID: web.ID, Prefix: "rk_x", SecretHash: []byte{9}, Scope: "root"}, tenant.ErrInvalid},
			{"other tenant", tenant.APIKey{TenantID: b.ID, AppID: bApp.ID, Prefix: "rk_b", SecretHash: []byte{9}}, nil},
			{"prefix taken by other tenant", tenant.APIKey{TenantID: b.ID, AppID: bApp.ID, Prefix: "rk_one", SecretHash: []byte{9}}, tenant.ErrConflict},
			{"unknown app", tenant.APIKey{TenantID: a.ID, AppID: "nope", Prefix: "rk_x", SecretHash: []byte{9}}, tenant.ErrNotFound},
			{"dot in prefix", tenant.APIKey{TenantID: a.ID, AppID: web.ID, Prefix: "rk.x", SecretHash: []byte{9}}, tenant.ErrInvalid},
			{"empty prefix", tenant.APIKey{TenantID: a.ID, AppID: web.ID, SecretHash: []byte{9}}, tenant.ErrInvalid},
			{"empty hash", tenant.APIKey{TenantID: a.ID, AppID: web.ID, Prefix: "rk_x"}, tenant.ErrInvalid},
			{"no app", tenant.APIKey{TenantID: a.ID, Prefix: "rk_x", SecretHash: []byte{9}}, tenant.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.in
				err := s.CreateAPIKey(ctx, &in)
				wantErr(t, "CreateAPIKey", err, tc.want)
				if err != nil {
					return
				}
				if want := cmp.Or(tc.in.Scope, tenant.ScopePublish); in.Scope != want {
					t.Errorf("scope %q, want %q", in.Scope, want)
				}
				got, err := s.APIKeyByPrefix(ctx, in.Prefix)
				if err != nil || !reflect.DeepEqual(got, &in) {
					t.Errorf("APIKeyByPrefix = %+v, %v; want %+v", got, err, &in)
				}
			})
		}
		if _, err := s.APIKeyByPrefix(ctx, "nope"); !errors.Is(err, tenant.ErrNotFound) {
			t.Errorf("APIKeyByPrefix(unknown) error %v", err)
		}

		keys, err := s.ListAPIKeys(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		var prefixes []string
		for _, k := range keys {
			prefixes = append(prefixes, k.Prefix)
		}
		if want := []string{"rk_adm", "rk_two", "rk_one"}; !reflect.DeepEqual(prefixes, want) {
			t.Errorf("ListAPIKeys = %v, want newest first %v", prefixes, want)
		}

		wantErr(t, "RevokeAPIKey", s.RevokeAPIKey(ctx, a.ID, "rk_one"), nil)
		got, _ := s.APIKeyByPrefix(ctx, "rk_one")
		if got == nil || !got.Revoked || got.RevokedAt.IsZero() {
			t.Errorf("after revoke: %+v", got)
		}
		wantErr(t, "RevokeAPIKey again", s.RevokeAPIKey(ctx, a.ID, "rk_one"), nil)
		again, _ := s.APIKeyByPrefix(ctx, "rk_one")
		if again == nil || !again.RevokedAt.Equal(got.RevokedAt) {
			t.Errorf("second revoke moved RevokedAt: %+v -> %+v", got, again)
		}
		wantErr(t, "RevokeAPIKey unknown", s.RevokeAPIKey(ctx, a.ID, "nope"), tenant.ErrNotFound)
	})
}

// ---------------------------------------------------------------------------
// Audit

func TestAudit(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mkTenant(t, s, "a"), mkTenant(t, s, "b")
		start := time.Now().UTC().Add(-time.Second)
		var recs []tenant.AuditRecord
		for i, tc := range []struct {
			tenant *tenant.Tenant
			action string
		}{
			{a, "app.create"}, {b, "app.create"}, {a, "credential.create"}, {a, "credential.revoke"}, {b, "acl.add"},
		} {
			r := tenant.AuditRecord{TenantID: tc.tenant.ID, Actor: "cli", Action: tc.action, Target: "t" + string(rune('0'+i)), Detail: "d"}
			if err := s.AddAudit(ctx, &r); err != nil {
				t.Fatalf("AddAudit: %v", err)
			}
			checkNew(t, "AddAudit", r.ID, r.At)
			recs = append(recs, r)
		}
		for _, tc := range []struct {
			name string
			in   tenant.AuditRecord
			want error
		}{
			{"unknown tenant", tenant.AuditRecord{TenantID: "nope", Action: "x"}, tenant.ErrNotFound},
			{"no tenant", tenant.AuditRecord{Action: "x"}, tenant.ErrInvalid},
			{"no action", tenant.AuditRecord{TenantID: a.ID}, tenant.ErrInvalid},
			{"bad UTF-8", tenant.AuditRecord{TenantID: a.ID, Action: "x", Detail: "\xff"}, tenant.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in := tc.in
				wantErr(t, "AddAudit", s.AddAudit(ctx, &in), tc.want)
			})
		}

		for _, tc := range []struct {
			name    string
			tenant  string
			limit   int
			want    []tenant.AuditRecord
			wantErr error
		}{
			{"all of a", a.ID, 10, []tenant.AuditRecord{recs[3], recs[2], recs[0]}, nil},
			{"newest two of a", a.ID, 2, []tenant.AuditRecord{recs[3], recs[2]}, nil},
			{"b", b.ID, 10, []tenant.AuditRecord{recs[4], recs[1]}, nil},
			{"unknown tenant", "nope", 10, []tenant.AuditRecord{}, nil},
			{"zero limit", a.ID, 0, nil, tenant.ErrInvalid},
		} {
			t.Run("ListAudit "+tc.name, func(t *testing.T) {
				got, err := s.ListAudit(ctx, tc.tenant, tc.limit)
				wantErr(t, "ListAudit", err, tc.wantErr)
				if err == nil && !reflect.DeepEqual(got, tc.want) {
					t.Errorf("ListAudit = %+v, want %+v", got, tc.want)
				}
			})
		}

		for _, tc := range []struct {
			name    string
			since   time.Time
			limit   int
			want    []tenant.AuditRecord
			wantErr error
		}{
			{"all tenants", start, 10, recs, nil},
			{"limit", start, 2, recs[:2], nil},
			{"since is inclusive", recs[3].At, 10, recs[3:], nil},
			{"since in another zone", recs[3].At.In(time.FixedZone("X", 7200)), 10, recs[3:], nil},
			{"future", time.Now().Add(time.Hour), 10, []tenant.AuditRecord{}, nil},
			{"zero limit", start, 0, nil, tenant.ErrInvalid},
		} {
			t.Run("AuditSince "+tc.name, func(t *testing.T) {
				got, err := s.AuditSince(ctx, tc.since, tc.limit)
				wantErr(t, "AuditSince", err, tc.wantErr)
				if err == nil && !reflect.DeepEqual(got, tc.want) {
					t.Errorf("AuditSince = %+v, want %+v", got, tc.want)
				}
			})
		}
	})
}

// ---------------------------------------------------------------------------
// Tenant isolation

// TestTenantIsolation: tenant b can never read, list or revoke tenant a's
// apps, credentials or keys, by name or by ID, nor attach its own
// credentials or keys to a's apps.
func TestTenantIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mkTenant(t, s, "a"), mkTenant(t, s, "b")
		aApp := mkApp(t, s, a.ID, "secret-app")
		mkCredential(t, s, a.ID, aApp.ID, "admin")
		mkAPIKey(t, s, a.ID, aApp.ID, "rk_a")
		if err := s.AddAudit(ctx, &tenant.AuditRecord{TenantID: a.ID, Actor: "cli", Action: "app.create"}); err != nil {
			t.Fatal(err)
		}
		bApp := mkApp(t, s, b.ID, "mine")

		notFound := []struct {
			name string
			err  error
		}{
			{"AppByName", second(s.AppByName(ctx, b.ID, "secret-app"))},
			{"AppByID", second(s.AppByID(ctx, b.ID, aApp.ID))},
			{"CredentialByUsername", second(s.CredentialByUsername(ctx, b.ID, "admin"))},
			{"RevokeCredential", s.RevokeCredential(ctx, b.ID, "admin")},
			{"RevokeAPIKey", s.RevokeAPIKey(ctx, b.ID, "rk_a")},
			{"CreateCredential on a's app", s.CreateCredential(ctx, &tenant.Credential{
				TenantID: b.ID, AppID: aApp.ID, Username: "intruder", SecretHash: []byte{1}, HashScheme: tenant.SchemeKeyed})},
			{"CreateAPIKey on a's app", s.CreateAPIKey(ctx, &tenant.APIKey{
				TenantID: b.ID, AppID: aApp.ID, Prefix: "rk_intruder", SecretHash: []byte{1}})},
		}
		for _, tc := range notFound {
			t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.name, tc.err, tenant.ErrNotFound) })
		}

		t.Run("lists", func(t *testing.T) {
			if apps, err := s.ListApps(ctx, b.ID); err != nil || len(apps) != 1 || apps[0].ID != bApp.ID {
				t.Errorf("ListApps(b) = %+v, %v", apps, err)
			}
			for _, app := range []string{"", aApp.ID} {
				if cs, err := s.ListCredentials(ctx, b.ID, app); err != nil || len(cs) != 0 {
					t.Errorf("ListCredentials(b, %q) = %+v, %v", app, cs, err)
				}
			}
			if ks, err := s.ListAPIKeys(ctx, b.ID); err != nil || len(ks) != 0 {
				t.Errorf("ListAPIKeys(b) = %+v, %v", ks, err)
			}
			if rs, err := s.ListAudit(ctx, b.ID, 100); err != nil || len(rs) != 0 {
				t.Errorf("ListAudit(b) = %+v, %v", rs, err)
			}
		})

		t.Run("a unchanged", func(t *testing.T) {
			c, err := s.CredentialByUsername(ctx, a.ID, "admin")
			if err != nil || c.Revoked {
				t.Errorf("a's credential: %+v, %v", c, err)
			}
			k, err := s.APIKeyByPrefix(ctx, "rk_a")
			if err != nil || k.Revoked || k.TenantID != a.ID {
				t.Errorf("a's key: %+v, %v", k, err)
			}
			if _, err := s.CredentialByUsername(ctx, a.ID, "intruder"); !errors.Is(err, tenant.ErrNotFound) {
				t.Errorf("intruder credential exists: %v", err)
			}
		})

		t.Run("same names in b are b's own", func(t *testing.T) {
			bSame := mkApp(t, s, b.ID, "secret-app")
			mkCredential(t, s, b.ID, bSame.ID, "admin")
			got, err := s.AppByName(ctx, b.ID, "secret-app")
			if err != nil || got.ID != bSame.ID || got.ID == aApp.ID {
				t.Errorf("b's app: %+v, %v", got, err)
			}
			if err := s.RevokeCredential(ctx, b.ID, "admin"); err != nil {
				t.Fatal(err)
			}
			ac, _ := s.CredentialByUsername(ctx, a.ID, "admin")
			if ac == nil || ac.Revoked {
				t.Errorf("revoking b's admin revoked a's: %+v", ac)
			}
		})
	})
}

func second[T any](_ T, err error) error { return err }

// ---------------------------------------------------------------------------
// Open, Migrate, Close

func TestDialectorFor(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tc := range []struct {
		dsn         string
		dialect     string
		where       string // for SQLite: the path; for PostgreSQL: must not contain "secret"
		wantInvalid bool
	}{
		{dsn: "postgres://relay:secret@db:5432/relay?sslmode=disable", dialect: Postgres},
		{dsn: "postgresql://relay:secret@db/relay", dialect: Postgres},
		{dsn: "sqlite://" + filepath.Join(dir, "abs", "relay.db"), dialect: SQLite, where: filepath.Join(dir, "abs", "relay.db")},
		{dsn: "sqlite://rel/relay.db", dialect: SQLite, where: "rel/relay.db"},
		{dsn: "plain.db", dialect: SQLite, where: "plain.db"},
		{dsn: "sqlite://q.db?_pragma=cache_size(-2000)", dialect: SQLite, where: "q.db"},
		{dsn: "mysql://u@h/db", wantInvalid: true},
		{dsn: ":memory:", wantInvalid: true},
		{dsn: "sqlite://:memory:", wantInvalid: true},
		{dsn: "", wantInvalid: true},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			_, dialect, where, err := dialectorFor(tc.dsn)
			if tc.wantInvalid {
				if !errors.Is(err, tenant.ErrInvalid) {
					t.Errorf("error %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dialect != tc.dialect {
				t.Errorf("dialect %q, want %q", dialect, tc.dialect)
			}
			if strings.Contains(where, "secret") {
				t.Errorf("where %q shows the password", where)
			}
			if tc.dialect == SQLite {
				if where != tc.where {
					t.Errorf("where %q, want %q", where, tc.where)
				}
				fi, err := os.Stat(where)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", where, fi.Mode().Perm())
				}
			}
		})
	}
}

// TestSQLitePragmas: every pooled connection has WAL, foreign keys and a
// busy timeout.
func TestSQLitePragmas(t *testing.T) {
	s := openStore(t, SQLite)
	ctx := context.Background()
	sqlDB, _ := s.DB().DB()
	// Hold several connections at once so that more than one is checked.
	var conns []interface{ Close() error }
	for range 3 {
		c, err := sqlDB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var mode string
		var fk, busy int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || fk != 1 || busy != 5000 {
			t.Errorf("journal_mode=%s foreign_keys=%d busy_timeout=%d; want wal, 1, 5000", mode, fk, busy)
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// TestMigrateIdempotent: a migrated database needs nothing more, from the
// same store or a new one, and keeps its rows.
func TestMigrateIdempotent(t *testing.T) {
	for _, dialect := range []string{SQLite, Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := newDSN(t, dialect)
			s, err := Open(ctx, dsn, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if s.Dialect() != dialect {
				t.Errorf("Dialect() = %q, want %q", s.Dialect(), dialect)
			}
			mkTenant(t, s, "acme")
			for i := range 2 {
				applied, err := s.Migrate(ctx)
				if err != nil || len(applied) != 0 {
					t.Errorf("Migrate #%d = %v, %v; want nothing applied", i+2, applied, err)
				}
			}
			sqlDB, _ := s.DB().DB()
			if p, err := migrations.Pending(ctx, sqlDB); err != nil || len(p) != 0 {
				t.Errorf("Pending = %v, %v", p, err)
			}
			var n int64
			if err := s.DB().WithContext(ctx).Table("schema_migrations").Count(&n).Error; err != nil {
				t.Fatal(err)
			}
			all, _ := migrations.List(dialect)
			if int(n) != len(all) {
				t.Errorf("schema_migrations has %d rows, want %d", n, len(all))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}

			s2, err := Open(ctx, dsn, testLogger(t))
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s2.Close()
			if _, err := s2.TenantBySlug(ctx, "acme"); err != nil {
				t.Errorf("after reopen: %v", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "mysql://x", nil); !errors.Is(err, tenant.ErrInvalid) {
		t.Errorf("mysql: error %v", err)
	}
	// Nothing listens on port 1.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://relay:secret@127.0.0.1:1/relay?sslmode=disable&connect_timeout=5", nil)
	if err == nil {
		t.Fatal("Open on a closed port: no error")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the password: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestQueryLog: at Debug every query is logged, with placeholders and
// never the arguments (secret hashes); conflicts are not errors in the log.
func TestQueryLog(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	s, err := Open(ctx, newDSN(t, SQLite), log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tn := mkTenant(t, s, "acme")
	app := mkApp(t, s, tn.ID, "web")
	secret := []byte("very-secret-hash-bytes")
	for range 2 { // the second one conflicts
		_ = s.CreateCredential(ctx, &tenant.Credential{TenantID: tn.ID, AppID: app.ID, Username: "dev",
			SecretHash: secret, HashScheme: tenant.SchemeKeyed})
	}
	out := buf.String()
	if !strings.Contains(out, "INSERT INTO") || !strings.Contains(out, "credentials") {
		t.Errorf("no INSERT logged at Debug:\n%s", out)
	}
	if strings.Contains(out, hex.EncodeToString(secret)) || strings.Contains(out, string(secret)) {
		t.Errorf("the secret hash reached the log:\n%s", out)
	}
	if strings.Contains(out, "level=ERROR") || strings.Contains(out, "level=WARN") {
		t.Errorf("a conflict was logged above Debug:\n%s", out)
	}
}

// TestChangeMark: on SQLite the mark stands still while nothing is
// committed and moves on a commit of this Store or of another process's
// (a second Store on the same file); PostgreSQL cannot tell.
func TestChangeMark(t *testing.T) {
	ctx := context.Background()
	t.Run(Postgres, func(t *testing.T) {
		s := openStore(t, Postgres)
		if _, ok, err := s.ChangeMark(ctx); ok || err != nil {
			t.Fatalf("ChangeMark on PostgreSQL = ok %v, err %v; want not ok, no error", ok, err)
		}
	})
	t.Run(SQLite, func(t *testing.T) {
		dsn := newDSN(t, SQLite)
		s, err := Open(ctx, dsn, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		other, err := Open(ctx, dsn, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		mark := func() uint64 {
			t.Helper()
			m, ok, err := s.ChangeMark(ctx)
			if !ok || err != nil {
				t.Fatalf("ChangeMark = ok %v, err %v", ok, err)
			}
			return m
		}
		m0 := mark()
		if _, err := s.TenantBySlug(ctx, "nope"); !errors.Is(err, tenant.ErrNotFound) {
			t.Fatalf("TenantBySlug: %v", err)
		}
		if m := mark(); m != m0 {
			t.Fatalf("mark moved on a read: %d → %d", m0, m)
		}
		mkTenant(t, s, "mine")
		m1 := mark()
		if m1 == m0 {
			t.Fatal("mark stood still over this store's commit")
		}
		if m := mark(); m != m1 {
			t.Fatalf("mark moved with nothing committed: %d → %d", m1, m)
		}
		mkTenant(t, other, "theirs")
		if m := mark(); m == m1 {
			t.Fatal("mark stood still over another process's commit")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.ChangeMark(ctx); ok || err == nil {
			t.Fatalf("ChangeMark after Close = ok %v, err %v; want an error", ok, err)
		}
	})
}

// TestCredentialsAfter pages through one tenant's credentials by username,
// never showing another tenant's.
func TestCredentialsAfter(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a, b := mkTenant(t, s, "a"), mkTenant(t, s, "b")
		appA, appB := mkApp(t, s, a.ID, "app"), mkApp(t, s, b.ID, "app")
		for _, u := range []string{"d", "b", "e", "a", "c"} {
			mkCredential(t, s, a.ID, appA.ID, u)
		}
		mkCredential(t, s, b.ID, appB.ID, "bb") // between a's b and c
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			page, err := s.CredentialsAfter(ctx, a.ID, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			if len(page) > 2 || pages > 3 {
				t.Fatalf("page of %d after %q (page %d)", len(page), after, pages)
			}
			for _, c := range page {
				if c.TenantID != a.ID {
					t.Fatalf("credential %q of tenant %s in a's pages", c.Username, c.TenantID)
				}
				got = append(got, c.Username)
			}
			after = page[len(page)-1].Username
		}
		if strings.Join(got, ",") != "a,b,c,d,e" {
			t.Errorf("pages gave %v, want a..e in order", got)
		}
		if _, err := s.CredentialsAfter(ctx, a.ID, "", 0); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("limit 0: err = %v, want ErrInvalid", err)
		}
		if page, err := s.CredentialsAfter(ctx, "no-such-tenant", "", 10); err != nil || len(page) != 0 {
			t.Errorf("unknown tenant: %v, %v; want nothing", page, err)
		}
	})
}
