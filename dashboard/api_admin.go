package dashboard

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/tenant"
)

// Operator routes (/api/v1/admin): every tenant, suspending and resuming
// one, platform health. Only callers with Caller.Operator reach them.

type adminTenantView struct {
	tenantView
	Connections int64 `json:"connections"`
}

// adminTenants handles GET /api/v1/admin/tenants: every tenant with its
// live connections over every edge (0 when the backbone cannot say).
func (s *Server) adminTenants(c echo.Context) error {
	ctx := c.Request().Context()
	ts, err := s.cfg.Tenancy.ListTenants(ctx)
	if err != nil {
		return err
	}
	var conns map[string]int64
	if cl, err := s.api.cluster(); err == nil {
		if conns, err = cl.Connections(ctx); err != nil {
			s.log.Debug("tenant connections", "err", err)
		}
	}
	out := make([]adminTenantView, len(ts))
	for i := range ts {
		out[i] = adminTenantView{tenantView: s.tenantView(&ts[i]), Connections: conns[ts[i].Slug]}
	}
	return c.JSON(http.StatusOK, out)
}

// adminSuspend handles POST /api/v1/admin/tenants/:slug/suspend: its
// clients are disconnected (within a second, through the change feed), its
// credentials and API keys stop working.
func (s *Server) adminSuspend(c echo.Context) error { return s.setStatus(c, tenant.Suspended) }

// adminResume handles POST /api/v1/admin/tenants/:slug/resume.
func (s *Server) adminResume(c echo.Context) error { return s.setStatus(c, tenant.Active) }

func (s *Server) setStatus(c echo.Context, st tenant.Status) error {
	k := callerOf(c)
	slug, err := pathParam(c, "slug")
	if err != nil {
		return err
	}
	t, err := s.cfg.Tenancy.SetStatus(c.Request().Context(), k.Actor, slug, st)
	if err != nil {
		return err
	}
	s.api.keys.forget(t.ID, "")
	s.api.notify()
	return c.JSON(http.StatusOK, s.tenantView(t))
}

// healthView is GET /api/v1/admin/health.
type healthView struct {
	// Status is "ok" when the database, NATS, JetStream and at least one
	// node are, "degraded" otherwise.
	Status   string `json:"status"`
	Database string `json:"database"`
	ClusterHealth
	Tenants map[string]int64 `json:"tenants"`
	Time    time.Time        `json:"time"`
}

// adminHealth handles GET /api/v1/admin/health.
func (s *Server) adminHealth(c echo.Context) error {
	ctx := c.Request().Context()
	h := healthView{Status: "ok", Database: "ok", Time: time.Now().UTC(), Tenants: map[string]int64{}}
	if _, err := s.cfg.Tenancy.Tenant(ctx, tenant.DefaultSlug); err != nil && !isNotFound(err) {
		h.Database = err.Error()
	}
	if s.api.deps.Cluster == nil {
		h.NATS, h.JetStream = "not configured", "not configured"
	} else {
		h.ClusterHealth = s.api.deps.Cluster.Health(ctx)
		if conns, err := s.api.deps.Cluster.Connections(ctx); err == nil {
			for tn, n := range conns {
				if n > 0 {
					h.Tenants[tn] = n
				}
			}
		}
	}
	alive := 0
	for _, n := range h.Nodes {
		if n.Alive {
			alive++
		}
	}
	if h.Nodes == nil {
		h.Nodes = []NodeHealth{}
	}
	if h.Database != "ok" || h.NATS != "ok" || h.JetStream != "ok" || alive == 0 {
		h.Status = "degraded"
	}
	return c.JSON(http.StatusOK, h)
}
