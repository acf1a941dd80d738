package gormstore

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/relaymq/relay/internal/pgtest"
	"github.com/relaymq/relay/internal/testlog"
	"github.com/relaymq/relay/tenant"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// forEachStore runs fn against a new, migrated store on each database:
// SQLite in a temporary file and PostgreSQL (internal/pgtest).
func forEachStore(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	for _, dialect := range []string{SQLite, Postgres} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			fn(t, openStore(t, dialect))
		})
	}
}

// openStore opens a new, migrated store of dialect, closed when t ends.
func openStore(t testing.TB, dialect string) *Store {
	t.Helper()
	s, err := Open(context.Background(), newDSN(t, dialect), testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newDSN returns the address of a new, empty database of dialect.
func newDSN(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case SQLite:
		return "sqlite://" + filepath.Join(t.TempDir(), "relay.db")
	case Postgres:
		return pgtest.Start(t)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return ""
}

// testLogger logs warnings and errors to t (testlog).
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelWarn) }

// fixtures

func mkTenant(t *testing.T, s *Store, slug string) *tenant.Tenant {
	t.Helper()
	tn := &tenant.Tenant{Slug: slug}
	if err := s.CreateTenant(context.Background(), tn); err != nil {
		t.Fatalf("CreateTenant(%q): %v", slug, err)
	}
	return tn
}

func mkApp(t *testing.T, s *Store, tenantID, name string) *tenant.App {
	t.Helper()
	a := &tenant.App{TenantID: tenantID, Name: name}
	if err := s.CreateApp(context.Background(), a); err != nil {
		t.Fatalf("CreateApp(%q): %v", name, err)
	}
	return a
}

func mkCredential(t *testing.T, s *Store, tenantID, appID, username string) *tenant.Credential {
	t.Helper()
	c := &tenant.Credential{
		TenantID:   tenantID,
		AppID:      appID,
		Username:   username,
		SecretHash: []byte{0, 1, 2, 0xfe, 0xff},
		HashScheme: tenant.SchemeKeyed,
	}
	if err := s.CreateCredential(context.Background(), c); err != nil {
		t.Fatalf("CreateCredential(%q): %v", username, err)
	}
	return c
}

func mkAPIKey(t *testing.T, s *Store, tenantID, appID, prefix string) *tenant.APIKey {
	t.Helper()
	k := &tenant.APIKey{TenantID: tenantID, AppID: appID, Prefix: prefix, SecretHash: []byte("hash-of-" + prefix)}
	if err := s.CreateAPIKey(context.Background(), k); err != nil {
		t.Fatalf("CreateAPIKey(%q): %v", prefix, err)
	}
	return k
}

// wantErr fails t unless err is want (nil: no error).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}
