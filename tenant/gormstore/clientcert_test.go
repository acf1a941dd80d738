package gormstore

import (
	"context"
	"testing"

	"github.com/relaymq/relay/tenant"
)

// TestTenantClientCertAuth: the client-certificate opt-in (migration 004)
// is off for a new tenant, round-trips through UpdateTenant, and a limits
// change keeps it, on both databases.
func TestTenantClientCertAuth(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		tn := &tenant.Tenant{Slug: "certs"}
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		get := func() *tenant.Tenant {
			t.Helper()
			got, err := s.TenantBySlug(ctx, "certs")
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if get().ClientCertAuth {
			t.Fatal("new tenant: ClientCertAuth on, want off")
		}
		tn.ClientCertAuth = true
		if err := s.UpdateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if !get().ClientCertAuth {
			t.Fatal("after enabling: ClientCertAuth off")
		}
		got := get()
		got.Limits.MaxConnections = 7
		if err := s.UpdateTenant(ctx, got); err != nil {
			t.Fatal(err)
		}
		if got := get(); !got.ClientCertAuth || got.Limits.MaxConnections != 7 {
			t.Fatalf("after a limits change: %+v", got)
		}
		tn.ClientCertAuth = false
		if err := s.UpdateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if get().ClientCertAuth {
			t.Fatal("after disabling: ClientCertAuth on")
		}
	})
}
