package broker

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Read-only inspection of one edge, for the dashboard and the HTTP API:
// per-tenant counters, live connections and routes. Nothing here changes
// broker state; every call takes a snapshot under the usual locks (Broker.mu,
// then route.mu or client.mu, never the reverse) and calls the caller's
// function with no lock held.

// TenantStats are one tenant's counters on this edge (cumulative, except
// Connections).
type TenantStats struct {
	// Connections is the tenant's number of live connections on this edge.
	Connections int64
	// MessagesIn and MessagesOut count PUBLISH packets received from and
	// sent to the tenant's clients.
	MessagesIn, MessagesOut uint64
	// BytesIn and BytesOut count the application payload bytes of those
	// PUBLISH packets (not the MQTT framing, topics or properties).
	BytesIn, BytesOut uint64
	// Dropped counts messages for the tenant's clients that were dropped:
	// queue full, expired, or larger than the client's Maximum Packet Size.
	Dropped uint64
}

// tenantCounters are the live counters behind TenantStats. A connection
// caches a pointer to its tenant's counters at CONNECT, so the hot path is
// a few atomic adds and no map lookup.
type tenantCounters struct {
	conns                      atomic.Int64
	msgsIn, msgsOut            atomic.Uint64
	bytesIn, bytesOut, dropped atomic.Uint64
}

func (t *tenantCounters) snapshot() TenantStats {
	return TenantStats{
		Connections: t.conns.Load(),
		MessagesIn:  t.msgsIn.Load(), MessagesOut: t.msgsOut.Load(),
		BytesIn: t.bytesIn.Load(), BytesOut: t.bytesOut.Load(),
		Dropped: t.dropped.Load(),
	}
}

// tenantTable maps tenant → counters. Entries are never removed: the
// counters are cumulative for the life of the edge, and the table grows by
// one small entry per tenant that ever connected to this edge (bounded by
// the number of tenants, not by connections).
type tenantTable struct {
	mu sync.RWMutex
	m  map[string]*tenantCounters
}

// get returns the tenant's counters, creating them.
func (t *tenantTable) get(tenant string) *tenantCounters {
	t.mu.RLock()
	tc := t.m[tenant]
	t.mu.RUnlock()
	if tc != nil {
		return tc
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc = t.m[tenant]; tc == nil {
		if t.m == nil {
			t.m = make(map[string]*tenantCounters)
		}
		tc = &tenantCounters{}
		t.m[tenant] = tc
	}
	return tc
}

// TenantStats returns the tenant's counters on this edge (zero for a tenant
// that never connected here).
func (b *Broker) TenantStats(tenant string) TenantStats {
	b.tenants.mu.RLock()
	tc := b.tenants.m[tenant]
	b.tenants.mu.RUnlock()
	if tc == nil {
		return TenantStats{}
	}
	return tc.snapshot()
}

// EachTenantStats calls fn with the counters of every tenant that has
// connected to this edge since it started, in tenant order.
func (b *Broker) EachTenantStats(fn func(tenant string, s TenantStats)) {
	type entry struct {
		tenant string
		tc     *tenantCounters
	}
	b.tenants.mu.RLock()
	es := make([]entry, 0, len(b.tenants.m))
	for t, tc := range b.tenants.m {
		es = append(es, entry{t, tc})
	}
	b.tenants.mu.RUnlock()
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.tenant, b.tenant) })
	for _, e := range es {
		fn(e.tenant, e.tc.snapshot())
	}
}

// ClientInfo is a snapshot of one live connection on this edge.
type ClientInfo struct {
	// Tenant, ClientID and Username identify the connection (Username as
	// sent in CONNECT; empty if none).
	Tenant, ClientID, Username string
	// Credential is the ID of the credential the client authenticated
	// with, and App the app it belongs to (both empty for anonymous
	// clients).
	Credential string
	App        string
	// RemoteAddr is the client's network address.
	RemoteAddr string
	// Version is the MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5.
	Version byte
	// ConnectedAt is when the CONNECT was accepted.
	ConnectedAt time.Time
	// Persistent says the session outlives the connection.
	Persistent bool
	// KeepAlive is the keep-alive in force (after the server's cap).
	KeepAlive time.Duration
	// Subscriptions are the session's subscriptions, by filter.
	Subscriptions []Subscription
	// Queued is how many messages wait in the client's outbound queue.
	Queued int
	// Inflight is how many outbound QoS ≥ 1 messages are unacknowledged.
	Inflight int
	// MessagesIn and MessagesOut count PUBLISH packets received from and
	// sent to this connection.
	MessagesIn, MessagesOut uint64
}

// Clients calls fn with a snapshot of every live connection of the tenant
// ("" for every tenant) on this edge, ordered by tenant and client ID,
// until fn returns false.
func (b *Broker) Clients(tenant string, fn func(ClientInfo) bool) {
	b.mu.Lock()
	cs := make([]*client, 0, 16)
	for k, c := range b.clients {
		if tenant == "" || k.tenant == tenant {
			cs = append(cs, c)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(cs, func(x, y *client) int {
		if c := strings.Compare(x.tenant, y.tenant); c != 0 {
			return c
		}
		return strings.Compare(x.id, y.id)
	})
	for _, c := range cs {
		info, ok := c.info()
		if ok && !fn(info) {
			return
		}
	}
}

// Client returns a snapshot of the live connection (tenant, clientID) on
// this edge, if there is one.
func (b *Broker) Client(tenant, clientID string) (ClientInfo, bool) {
	b.mu.Lock()
	c := b.clients[clientKey{tenant, clientID}]
	b.mu.Unlock()
	if c == nil {
		return ClientInfo{}, false
	}
	return c.info()
}

// info returns the connection's snapshot; false while it is still
// connecting (CONNACK not sent yet).
func (c *client) info() (ClientInfo, bool) {
	if !c.live.Load() {
		return ClientInfo{}, false
	}
	// Everything set by connect is read-only once live is set.
	ci := ClientInfo{
		Tenant: c.tenant, ClientID: c.id, Username: c.username,
		RemoteAddr: c.nc.RemoteAddr().String(), Version: c.version,
		ConnectedAt: c.connected, Persistent: c.persist, KeepAlive: c.keepAlive,
		MessagesIn: c.msgsIn.Load(), MessagesOut: c.msgsOut.Load(),
	}
	if p := c.principal; p != nil {
		ci.Credential, ci.App = p.CredentialID, p.App
	}
	c.mu.Lock()
	ci.Subscriptions = make([]Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		ci.Subscriptions = append(ci.Subscriptions, s)
	}
	ci.Queued = len(c.pubs)
	ci.Inflight = len(c.inflight)
	c.mu.Unlock()
	slices.SortFunc(ci.Subscriptions, func(a, b Subscription) int { return strings.Compare(a.Filter, b.Filter) })
	return ci, true
}

// EachRoute reports this edge's subscription routes of a tenant: filter,
// local subscriber count, messages delivered through it (one per message
// handed to a local subscriber). Filters are as clients wrote them
// ($share/… included); a filter with routes of both classes (live-only QoS 0
// for persistent sessions, and all messages) is reported once, summed.
// Routes come in filter order.
func (b *Broker) EachRoute(tenant string, fn func(filter string, subscribers int, delivered uint64)) {
	type agg struct {
		filter    string
		subs      int
		delivered uint64
	}
	b.mu.Lock()
	rs := make([]*route, 0, 16)
	for k, rt := range b.routes {
		if k.tenant == tenant {
			rs = append(rs, rt)
		}
	}
	b.mu.Unlock()
	byFilter := make(map[string]*agg, len(rs))
	var out []*agg
	for _, rt := range rs {
		rt.mu.RLock()
		n := len(rt.subs)
		rt.mu.RUnlock()
		a := byFilter[rt.key.filter]
		if a == nil {
			a = &agg{filter: rt.key.filter}
			byFilter[rt.key.filter] = a
			out = append(out, a)
		}
		a.subs += n
		a.delivered += rt.delivered.Load()
	}
	slices.SortFunc(out, func(x, y *agg) int { return strings.Compare(x.filter, y.filter) })
	for _, a := range out {
		fn(a.filter, a.subs, a.delivered)
	}
}
