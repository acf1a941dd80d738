package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// Lock order (outer first): Broker.mu → route.mu → client.mu.
// A route's handler takes route.mu (read) and then client.mu to enqueue;
// nothing that holds client.mu takes route.mu or Broker.mu.

// Broker is one MQTT edge node: it accepts client connections and moves
// their messages over the Backbone. It keeps only live connection state.
type Broker struct {
	opts Options
	log  *slog.Logger
	bb   Backbone

	mu      sync.Mutex
	clients map[clientKey]*client
	routes  map[routeKey]*route
	// local indexes the non-shared routes for this edge's own publishes,
	// when the Router lets the broker deliver those (localindex.go).
	local     localIndex
	localOn   bool
	listeners map[net.Listener]struct{}
	closed    bool
	// wills are the timers of delayed wills (MQTT 5 Will Delay Interval)
	// of connections that ended on this edge, by connection ID.
	wills  map[string]*pendingWill
	willWG sync.WaitGroup // one per armed or running will timer

	conns    sync.WaitGroup // one per connection goroutine
	accepts  sync.WaitGroup // one per Serve loop
	quit     chan struct{}
	closeErr error
	once     sync.Once

	stats    Stats
	tenants  tenantTable // per-tenant counters (inspect.go)
	throttle *throttle
	connLog  connLog
	// work runs CONNECTs and writer runs on reused goroutines (workers.go).
	work *workers
}

// maxIdleWorkers is how many goroutines with grown stacks wait for the
// next CONNECT or writer run (see workers).
const maxIdleWorkers = 64

// Stats are the broker's counters. They only grow, except Connections.
type Stats struct {
	// Connections is the number of live client connections.
	Connections atomic.Int64
	// ConnectionsTotal counts accepted CONNECTs.
	ConnectionsTotal atomic.Uint64
	// MessagesIn counts PUBLISH packets received from clients.
	MessagesIn atomic.Uint64
	// MessagesOut counts PUBLISH packets sent to clients.
	MessagesOut atomic.Uint64
	// Dropped counts messages dropped because a client's queue was full
	// or the message expired.
	Dropped atomic.Uint64
	// Refused counts connections refused at CONNECT.
	Refused atomic.Uint64
	// RateLimited counts waits of clients over their message rate.
	RateLimited atomic.Uint64
}

type clientKey struct{ tenant, id string }

type routeKey struct {
	tenant string
	filter string // as the client wrote it, with $share/$local prefix
	class  Class
}

// New validates opts and returns a Broker that is not yet serving.
func New(opts Options) (*Broker, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("broker options: %w", err)
	}
	b := &Broker{
		opts:      opts,
		log:       opts.Logger.With("node", opts.NodeID),
		bb:        opts.Backbone,
		clients:   make(map[clientKey]*client),
		routes:    make(map[routeKey]*route),
		listeners: make(map[net.Listener]struct{}),
		wills:     make(map[string]*pendingWill),
		quit:      make(chan struct{}),
		throttle:  newThrottle(),
		work:      newWorkers(maxIdleWorkers),
	}
	b.bb.HandleKicks(b.kickLocal)
	b.localOn = b.bb.LocalDelivery(b.dispatchLocal)
	return b, nil
}

// Stats returns the broker's live counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// NodeID returns the broker's node ID.
func (b *Broker) NodeID() string { return b.opts.NodeID }

// Serve accepts connections on l until l fails or the broker closes. It
// returns nil after Close.
func (b *Broker) Serve(l net.Listener) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		l.Close()
		return nil
	}
	b.listeners[l] = struct{}{}
	b.accepts.Add(1)
	b.mu.Unlock()
	defer b.accepts.Done()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			select {
			case <-b.quit:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Temporary (EMFILE and friends): back off, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				b.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		if !b.ServeConn(nc) {
			return nil
		}
	}
}

// ServeConn serves one established connection (any transport that gives a
// net.Conn). It returns false, closing nc, if the broker is closed.
func (b *Broker) ServeConn(nc net.Conn) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		nc.Close()
		return false
	}
	b.conns.Add(1)
	b.mu.Unlock()
	b.work.run((*client).serve, newClient(b, nc)) // serve calls b.conns.Done
	return true
}

// Close stops accepting, disconnects every client (MQTT 5 clients get
// DISCONNECT "server shutting down" so that they reconnect elsewhere) and
// waits for every connection goroutine. Sessions stay in the backbone.
// Close is idempotent.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.quit)
		for l := range b.listeners {
			l.Close()
		}
		clients := make([]*client, 0, len(b.clients))
		for _, c := range b.clients {
			clients = append(clients, c)
		}
		b.mu.Unlock()
		b.accepts.Wait()
		for _, c := range clients {
			c.shutdown(packet.ServerShuttingDown) // [MQTT-4.13.2-1] 0x8B: reconnect elsewhere
		}
		b.conns.Wait()
		b.work.close()
		// Delayed wills stay stored under this node: once its heartbeat
		// is gone, a surviving node publishes them when due, unless their
		// sessions are resumed first.
		b.mu.Lock()
		for id, w := range b.wills {
			if w.timer.Stop() {
				b.willWG.Done()
			}
			delete(b.wills, id)
		}
		b.mu.Unlock()
		b.willWG.Wait()
		b.connLog.close(b)
	})
	return b.closeErr
}

// ---------------------------------------------------------------------------
// Connection log. At connection storms of 20,000 connects/s a log line per
// connect and per disconnect would cost a formatted record and a write(2)
// each (about a tenth of a core), so those lines are DEBUG; at INFO the
// edge logs one summary line per 10 s in which connections came or went.

// connLogInterval is how often the summary is logged, at most.
const connLogInterval = 10 * time.Second

type connLog struct {
	opened, closed, refused atomic.Uint64
	armed                   atomic.Bool // a summary is scheduled

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	wg      sync.WaitGroup // the scheduled summary
}

// Kinds of connection events for noteConnection.
const (
	connOpened = iota
	connClosed
	connRefused
)

// noteConnection counts a connection event for the summary.
func (b *Broker) noteConnection(kind int) {
	l := &b.connLog
	switch kind {
	case connOpened:
		l.opened.Add(1)
	case connClosed:
		l.closed.Add(1)
	default:
		l.refused.Add(1)
	}
	if l.armed.Load() || !l.armed.CompareAndSwap(false, true) {
		return
	}
	l.mu.Lock()
	if !l.stopped {
		l.wg.Add(1)
		l.timer = time.AfterFunc(connLogInterval, func() {
			defer l.wg.Done()
			l.armed.Store(false)
			l.log(b)
		})
	}
	l.mu.Unlock()
}

// log writes the summary of the events counted since the last one.
func (l *connLog) log(b *Broker) {
	o, c, r := l.opened.Swap(0), l.closed.Swap(0), l.refused.Swap(0)
	if o+c+r > 0 {
		b.log.Info("connections", "opened", o, "closed", c, "refused", r, "live", b.stats.Connections.Load())
	}
}

// close stops the summaries, logging the last one.
func (l *connLog) close(b *Broker) {
	l.mu.Lock()
	l.stopped = true
	if l.timer != nil && l.timer.Stop() {
		l.wg.Done()
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.log(b)
}

// scheduleWill arms the timer of a delayed will: after d this edge
// publishes the will stored for connection connID, if no connection has
// resumed the session meanwhile (which deletes it) [MQTT-3.1.3-9], and if
// the connection's rules still allow its topic.
// On a backbone error it tries again every second while the edge lives.
func (b *Broker) scheduleWill(d time.Duration, tenant, clientID, connID string, prin *auth.Principal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return // the will stays stored; see Close
	}
	if _, armed := b.wills[connID]; armed {
		return
	}
	b.willWG.Add(1)
	w := &pendingWill{tenant: tenant, clientID: clientID, prin: prin}
	b.wills[connID] = w
	w.timer = time.AfterFunc(d, func() {
		defer b.willWG.Done()
		b.mu.Lock()
		_, armed := b.wills[connID]
		delete(b.wills, connID)
		b.mu.Unlock()
		if !armed {
			return // stopped by Close
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.BackboneTimeout)
		defer cancel()
		published, err := b.bb.FireWill(ctx, b.opts.NodeID, tenant, clientID, connID, func(m *Message) bool {
			return prin.Rules().CanPublish(m.Topic)
		})
		switch {
		case err != nil:
			b.log.Warn("publishing delayed will; retrying", "tenant", tenant, "client", clientID, "err", err)
			b.scheduleWill(time.Second, tenant, clientID, connID, prin)
		case published:
			b.log.Info("delayed will published", "tenant", tenant, "client", clientID)
		}
	})
}

// pendingWill is a delayed will armed on this edge. Its principal keeps
// following the tenant's changes after the connection ended: rule
// refreshes reach it through ForEachClient, and a revocation or suspension
// (KickWhere) drops the will, as it would a live connection's.
type pendingWill struct {
	tenant, clientID string
	prin             *auth.Principal
	timer            *time.Timer
}

// dropWillsWhere cancels the delayed wills of the tenant whose principal
// matches pred (the connection is gone: this is what a kick does to it)
// and deletes them from the backbone; it returns how many.
func (b *Broker) dropWillsWhere(tenant string, pred func(clientID string, p *auth.Principal) bool) int {
	type drop struct{ connID, clientID string }
	var ds []drop
	b.mu.Lock()
	for id, w := range b.wills {
		if w.tenant == tenant && pred(w.clientID, w.prin) && w.timer.Stop() {
			b.willWG.Done()
			delete(b.wills, id)
			ds = append(ds, drop{id, w.clientID})
		}
	}
	b.mu.Unlock()
	for _, d := range ds {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.BackboneTimeout)
		if err := b.bb.CancelWill(ctx, b.opts.NodeID, tenant, d.clientID, d.connID); err != nil {
			b.log.Warn("dropping a delayed will after a revocation", "tenant", tenant, "client", d.clientID, "err", err)
		}
		cancel()
		b.log.Info("delayed will dropped: its credential was revoked or its tenant suspended", "tenant", tenant, "client", d.clientID)
	}
	return len(ds)
}

// ---------------------------------------------------------------------------
// Client registry and takeover

// register makes c the live connection of its (tenant, client ID) on this
// edge and returns the connection it replaced, if any.
func (b *Broker) register(c *client) (old *client, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errShuttingDown
	}
	k := clientKey{c.tenant, c.id}
	old = b.clients[k]
	if old == nil && b.opts.MaxConnections > 0 && len(b.clients) >= b.opts.MaxConnections {
		return nil, errTooManyConnections
	}
	b.clients[k] = c
	if old == nil {
		b.bb.Connected(c.tenant, 1)
	}
	return old, nil
}

// unregister removes c if it is still the registered connection.
func (b *Broker) unregister(c *client) {
	b.mu.Lock()
	k := clientKey{c.tenant, c.id}
	if b.clients[k] == c {
		delete(b.clients, k)
		b.bb.Connected(c.tenant, -1)
	}
	b.mu.Unlock()
}

// connectedHere reports whether the client ID is connected to this edge.
func (b *Broker) connectedHere(tenant, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clients[clientKey{tenant, id}] != nil
}

// kickLocal implements KickFunc for other edges' takeovers.
func (b *Broker) kickLocal(tenant, clientID, connID string, connected time.Time, wait bool) bool {
	b.mu.Lock()
	c := b.clients[clientKey{tenant, clientID}]
	b.mu.Unlock()
	if c == nil || c.connID == connID || !c.olderThan(connected, connID) {
		return false
	}
	b.log.Info("client taken over by another edge", "tenant", tenant, "client", clientID)
	c.shutdown(packet.SessionTakenOver)
	if wait {
		<-c.done // the session is saved and released before we answer
	}
	return true
}

// olderThan reports whether c connected before another connection of its
// client ID (connection connID, which connected at t; zero: unknown, so c
// is taken as older). Wall-clock times, since the other may be on another
// edge; a tie goes by connection ID, so that exactly one of the two stays.
func (c *client) olderThan(t time.Time, connID string) bool {
	if t.IsZero() {
		return true
	}
	mine, theirs := c.connected.UnixNano(), t.UnixNano()
	return mine < theirs || (mine == theirs && c.connID < connID)
}

// Kick disconnects the client (tenant, clientID) from this edge with an
// administrative-action DISCONNECT. It reports whether it was connected.
func (b *Broker) Kick(tenant, clientID string) bool {
	b.mu.Lock()
	c := b.clients[clientKey{tenant, clientID}]
	b.mu.Unlock()
	if c == nil {
		return false
	}
	c.shutdown(packet.AdministrativeAction)
	<-c.done
	return true
}

// Tenants returns the tenants with live connections on this edge.
func (b *Broker) Tenants() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for k := range b.clients {
		if !seen[k.tenant] {
			seen[k.tenant] = true
			out = append(out, k.tenant)
		}
	}
	return out
}

// ForEachClient calls fn for every live connection of the tenant (with its
// client ID and principal), and for the principal of every delayed will
// still pending here (so that rule refreshes reach it). fn must not block.
func (b *Broker) ForEachClient(tenant string, fn func(clientID string, p *auth.Principal)) {
	b.mu.Lock()
	cs := make([]*client, 0, 16)
	for k, c := range b.clients {
		if k.tenant == tenant {
			cs = append(cs, c)
		}
	}
	type willPrin struct {
		clientID string
		prin     *auth.Principal
	}
	var ws []willPrin
	for _, w := range b.wills {
		if w.tenant == tenant {
			ws = append(ws, willPrin{w.clientID, w.prin})
		}
	}
	b.mu.Unlock()
	for _, c := range cs {
		fn(c.id, c.principal)
	}
	// Delayed wills are checked against their connection's rules when
	// due: keep those current too.
	for _, w := range ws {
		fn(w.clientID, w.prin)
	}
}

// KickWhere disconnects (administrative action) every live connection of
// the tenant for which pred is true, waits until they are closed, and
// returns how many there were. Delayed wills pending here whose principal
// matches pred are dropped too (a revoked credential or a suspended tenant
// publishes no will).
func (b *Broker) KickWhere(tenant string, pred func(clientID string, p *auth.Principal) bool) int {
	var cs []*client
	b.mu.Lock()
	for k, c := range b.clients {
		if k.tenant == tenant && pred(c.id, c.principal) {
			cs = append(cs, c)
		}
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.shutdown(packet.AdministrativeAction)
	}
	for _, c := range cs {
		<-c.done
	}
	// A connection already gone may have left a delayed will: a revoked
	// credential or suspended tenant publishes none.
	b.dropWillsWhere(tenant, pred)
	return len(cs)
}

// ---------------------------------------------------------------------------
// Routes: one backbone subscription per distinct (tenant, filter, class) on
// this edge, shared by every local client that subscribes to it.

type route struct {
	key   routeKey
	f     topic.Filter
	b     *Broker
	r     Route
	local bool // $local: only messages from this node
	// dollar is set when the filter starts with a wildcard, so that topics
	// starting with '$' must be dropped [MQTT-4.7.2-1].
	dollar bool
	// synced: the backbone delivers to the route whatever is published
	// from now on (Router.Sync returned after it was opened).
	synced atomic.Bool

	mu   sync.RWMutex
	subs []routeSub
	next atomic.Uint32 // round-robin position of a shared route
	// delivered counts messages handed to local subscribers (EachRoute).
	delivered atomic.Uint64
}

type routeSub struct {
	c   *client
	sub Subscription
}

// addRoute subscribes c to the route for (tenant, sub.Filter, class),
// opening the backbone subscription if c is the first. Until the route is
// synced (see syncRoutes) a message published elsewhere may not reach it
// yet.
func (b *Broker) addRoute(c *client, f topic.Filter, sub Subscription, class Class) (*route, error) {
	k := routeKey{c.tenant, sub.Filter, class}
	b.mu.Lock()
	defer b.mu.Unlock()
	rt := b.routes[k]
	if rt == nil {
		rt = &route{key: k, f: f, b: b, local: f.Kind == topic.Local, dollar: topic.NeedsDollarCheck(f.Topic)}
		r, err := b.bb.Subscribe(c.tenant, f, class, rt.deliver)
		if err != nil {
			return nil, err
		}
		rt.r = r
		b.routes[k] = rt
		if b.localOn && f.Kind != topic.Shared {
			b.local.add(c.tenant, rt)
		}
	}
	rt.mu.Lock()
	for i := range rt.subs {
		if rt.subs[i].c == c {
			rt.subs[i].sub = sub
			rt.mu.Unlock()
			return rt, nil
		}
	}
	rt.subs = append(rt.subs, routeSub{c, sub})
	rt.mu.Unlock()
	return rt, nil
}

// syncRoutes waits (outside Broker.mu) until the backbone delivers to the
// routes that are not synced yet, and marks them synced. A route another
// connection just opened counts too: its subscriber's SUBACK must wait just
// the same. On a backbone error the routes stay unsynced (the next
// subscriber waits again) and the error is returned.
func (b *Broker) syncRoutes(ctx context.Context, rts []*route) error {
	pending := false
	for _, rt := range rts {
		if !rt.synced.Load() {
			pending = true
			break
		}
	}
	if !pending {
		return nil
	}
	if err := b.bb.Sync(ctx); err != nil {
		return err
	}
	for _, rt := range rts {
		rt.synced.Store(true)
	}
	return nil
}

// removeRoute unsubscribes c from the route, closing the backbone
// subscription when c was the last.
func (b *Broker) removeRoute(c *client, filter string, class Class) {
	k := routeKey{c.tenant, filter, class}
	b.mu.Lock()
	rt := b.routes[k]
	if rt == nil {
		b.mu.Unlock()
		return
	}
	rt.mu.Lock()
	for i := range rt.subs {
		if rt.subs[i].c == c {
			last := len(rt.subs) - 1
			rt.subs[i] = rt.subs[last]
			rt.subs[last] = routeSub{}
			rt.subs = rt.subs[:last]
			break
		}
	}
	empty := len(rt.subs) == 0
	rt.mu.Unlock()
	if empty {
		delete(b.routes, k)
		if b.localOn && rt.f.Kind != topic.Shared {
			b.local.remove(k.tenant, rt)
		}
	}
	b.mu.Unlock()
	if empty {
		if err := rt.r.Close(); err != nil {
			b.log.Warn("closing route", "filter", filter, "err", err)
		}
	}
}

// deliver is the route's Handler: it hands m, from the backbone, to every
// local subscriber, dropping it for those whose queue is full (the
// backbone's delivery goroutine must not wait for one client).
func (rt *route) deliver(m *Message) { rt.deliverFrom(m, false) }

// deliverFrom hands m to every local subscriber; with canWait (m comes
// from a local client's read loop), for a full queue it waits for room
// (client.waitRoom) after releasing the route's lock.
func (rt *route) deliverFrom(m *Message, canWait bool) {
	if rt.local && m.Origin != rt.b.opts.NodeID {
		return
	}
	if rt.dollar && len(m.Topic) > 0 && m.Topic[0] == '$' {
		return // [MQTT-4.7.2-1]
	}
	var arr [4]routeSub
	full := arr[:0]
	rt.mu.RLock()
	if rt.f.Kind == topic.Shared {
		// The backbone picked this edge; pick one local member of the
		// group [MQTT-4.8.2].
		if n := len(rt.subs); n > 0 {
			s := &rt.subs[int(rt.next.Add(1)%uint32(n))]
			s.c.deliverLive(m, &s.sub, false)
			rt.delivered.Add(1)
		}
		rt.mu.RUnlock()
		return
	}
	for i := range rt.subs {
		s := &rt.subs[i]
		if s.c.deliverLive(m, &s.sub, canWait) {
			full = append(full, *s)
		}
	}
	rt.delivered.Add(uint64(len(rt.subs)))
	rt.mu.RUnlock()
	for i := range full {
		s := &full[i]
		for s.c.deliverLive(m, &s.sub, s.c.waitRoom()) {
		}
	}
}
