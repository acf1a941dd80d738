package services_test

import (
	"errors"
	"testing"

	"github.com/relaymq/relay/tenant"
)

// TestReservedSlugs: host-name labels the platform may use itself
// (mqtt.<base-domain>, www, api, …) and the default tenant's slug cannot
// be taken by a tenant; ordinary ones can.
func TestReservedSlugs(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	for _, slug := range []string{"default", "mqtt", "www", "api", "dashboard", "status"} {
		if _, err := e.adm.CreateTenant(opCtx(t), actor, slug, ""); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("CreateTenant(%q) = %v, want tenant.ErrInvalid", slug, err)
		}
	}
	if _, err := e.adm.CreateTenant(opCtx(t), actor, "mqtt-lab", ""); err != nil {
		t.Errorf("CreateTenant(mqtt-lab): %v", err)
	}
}
