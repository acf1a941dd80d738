package services_test

import (
	"testing"
	"time"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/tenant"
)

// TestInspect checks the broker's read-only inspection API (per-tenant
// counters, live clients, routes) against real clients on a real server.
func TestInspect(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t)
	b := srv.Edge().Broker()
	const tn = tenant.DefaultSlug
	before := b.TenantStats(tn)

	in := newInbox()
	sub := connect(t, addr, "inspect-sub", persistent(), onMessage(in))
	subscribe(t, sub, "inspect/+/x", 1, nil)
	subscribe(t, sub, "inspect/#", 0, nil)
	other := connect(t, addr, "inspect-other")
	subscribe(t, other, "inspect/#", 0, newInbox())
	pub := connect(t, addr, "inspect-pub")
	publish(t, pub, "inspect/a/x", 1, false, "12345") // both of sub's filters match
	publish(t, pub, "inspect/b/y", 0, false, "123")   // only the "#" ones
	in.wait(t, 3)

	t.Run("tenant stats", func(t *testing.T) {
		waitUntil(t, "counters settle", func() bool {
			s := b.TenantStats(tn)
			return s.MessagesOut-before.MessagesOut >= 5
		})
		s := b.TenantStats(tn)
		if got := s.MessagesIn - before.MessagesIn; got != 2 {
			t.Errorf("MessagesIn grew by %d, want 2", got)
		}
		if got := s.BytesIn - before.BytesIn; got != 8 {
			t.Errorf("BytesIn grew by %d, want 8", got)
		}
		// sub gets 3 (two for a/x through its two filters, one for b/y),
		// other gets 2.
		if got := s.MessagesOut - before.MessagesOut; got != 5 {
			t.Errorf("MessagesOut grew by %d, want 5", got)
		}
		if got := s.BytesOut - before.BytesOut; got != 5+5+3+5+3 {
			t.Errorf("BytesOut grew by %d, want 21", got)
		}
		if s.Connections != 3 {
			t.Errorf("Connections = %d, want 3", s.Connections)
		}
		found := false
		b.EachTenantStats(func(tenant string, st broker.TenantStats) {
			if tenant == tn {
				found = true
			}
		})
		if !found {
			t.Errorf("EachTenantStats did not report %q", tn)
		}
		if z := b.TenantStats("no-such-tenant"); z != (broker.TenantStats{}) {
			t.Errorf("unknown tenant has counters %+v", z)
		}
	})

	t.Run("clients", func(t *testing.T) {
		ci, ok := b.Client(tn, "inspect-sub")
		if !ok {
			t.Fatal("Client(inspect-sub) not found")
		}
		if ci.Tenant != tn || ci.ClientID != "inspect-sub" || ci.Version != 4 || !ci.Persistent ||
			ci.KeepAlive != 30*time.Second || ci.RemoteAddr == "" || time.Since(ci.ConnectedAt) > time.Minute {
			t.Errorf("unexpected info %+v", ci)
		}
		if len(ci.Subscriptions) != 2 || ci.Subscriptions[0].Filter != "inspect/#" || ci.Subscriptions[1].Filter != "inspect/+/x" || ci.Subscriptions[1].QoS != 1 {
			t.Errorf("subscriptions %+v", ci.Subscriptions)
		}
		if ci.MessagesOut != 3 || ci.MessagesIn != 0 {
			t.Errorf("sub counted %d in, %d out; want 0, 3", ci.MessagesIn, ci.MessagesOut)
		}
		waitUntil(t, "sub's PUBACK arrives", func() bool {
			ci, _ := b.Client(tn, "inspect-sub")
			return ci.Inflight == 0 && ci.Queued == 0
		})
		pi, _ := b.Client(tn, "inspect-pub")
		if pi.MessagesIn != 2 || pi.Persistent {
			t.Errorf("pub info %+v", pi)
		}
		var ids []string
		b.Clients(tn, func(ci broker.ClientInfo) bool {
			ids = append(ids, ci.ClientID)
			return true
		})
		if want := []string{"inspect-other", "inspect-pub", "inspect-sub"}; len(ids) != 3 || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
			t.Errorf("Clients = %v, want %v", ids, want)
		}
		n := 0
		b.Clients(tn, func(broker.ClientInfo) bool { n++; return false })
		if n != 1 {
			t.Errorf("Clients went on after fn returned false: %d calls", n)
		}
		if _, ok := b.Client(tn, "nobody"); ok {
			t.Error("Client(nobody) found")
		}
	})

	t.Run("routes", func(t *testing.T) {
		routes := map[string][2]uint64{}
		b.EachRoute(tn, func(filter string, subscribers int, delivered uint64) {
			routes[filter] = [2]uint64{uint64(subscribers), delivered}
		})
		// inspect/# is shared by two local clients: two messages each.
		if got := routes["inspect/#"]; got != [2]uint64{2, 4} {
			t.Errorf("route inspect/# = %v, want 2 subscribers, 4 delivered", got)
		}
		// inspect/+/x of a persistent session at QoS 1 is a QoS 0-only
		// route: its QoS 1 message came from the session queue.
		if got := routes["inspect/+/x"]; got[0] != 1 {
			t.Errorf("route inspect/+/x = %v, want 1 subscriber", got)
		}
	})

	t.Run("connections drop", func(t *testing.T) {
		disconnect(other)
		waitUntil(t, "connection count drops", func() bool { return b.TenantStats(tn).Connections == 2 })
	})
}
