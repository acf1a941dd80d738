package inspect

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/natsbus"
)

// Options configure an Inspector.
type Options struct {
	// Conn is the NATS connection requests go out on. Required; not
	// closed.
	Conn *nats.Conn
	// Timeout bounds the wait for the nodes' replies. Default 300 ms.
	Timeout time.Duration
	// SampleInterval is how often usage is sampled. Default 10 s.
	SampleInterval time.Duration
	// History is how much usage is kept. Default 6 h.
	History time.Duration
	// MatchTTL is how long a tenant's subscriber filters are used before
	// they are refreshed. Default 2 s.
	MatchTTL time.Duration
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 300 * time.Millisecond
	}
	if o.SampleInterval <= 0 {
		o.SampleInterval = 10 * time.Second
	}
	if o.History <= 0 {
		o.History = 6 * time.Hour
	}
	if o.MatchTTL <= 0 {
		o.MatchTTL = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Inspector gathers and merges the nodes' answers, reads JetStream state
// and keeps the usage history. Its methods are safe for concurrent use.
//
// Lock order: Inspector.mu, nodeTable.mu, history.mu, matchCache.mu and
// rateCache.mu are leaves: none is held while taking another or doing I/O.
type Inspector struct {
	opts Options
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *slog.Logger

	mu      sync.Mutex // guards the handles below, opened on first use
	nodesKV jetstream.KeyValue
	sessKV  jetstream.KeyValue
	queue   jetstream.Stream

	nodes   nodeTable
	hist    *history
	matches matchCache
	rates   rateCache

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New validates opts.
func New(opts Options) (*Inspector, error) {
	opts.setDefaults()
	if opts.Conn == nil {
		return nil, errors.New("inspect: Conn is required")
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	in := &Inspector{
		opts: opts, nc: opts.Conn, js: js, log: opts.Logger.With("component", "inspect"),
		nodes: nodeTable{m: map[string]nodeEntry{}},
		hist:  newHistory(opts.SampleInterval, opts.History),
		quit:  make(chan struct{}),
	}
	in.matches.m = map[string]*matchEntry{}
	in.rates.m = map[string]*rateEntry{}
	return in, nil
}

// Start starts watching node heartbeats and sampling usage. Both retry
// by themselves while JetStream is unavailable.
func (in *Inspector) Start(ctx context.Context) error {
	in.wg.Add(2)
	go in.watchNodes()
	go in.sample()
	return nil
}

// Close stops the background work and waits for it. It is idempotent.
func (in *Inspector) Close() error {
	in.once.Do(func() {
		close(in.quit)
		in.wg.Wait()
	})
	return nil
}

// Ready reports whether the NATS connection is up (ErrUnavailable if
// not).
func (in *Inspector) Ready() error {
	if !in.nc.IsConnected() {
		return fmt.Errorf("%w: NATS %s", ErrUnavailable, strings.ToLower(in.nc.Status().String()))
	}
	return nil
}

// ---------------------------------------------------------------------------
// JetStream handles

func (in *Inspector) kv(ctx context.Context, dst *jetstream.KeyValue, bucket string) (jetstream.KeyValue, error) {
	in.mu.Lock()
	h := *dst
	in.mu.Unlock()
	if h != nil {
		return h, nil
	}
	h, err := in.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, unavailable(fmt.Errorf("bucket %s: %w", bucket, err))
	}
	in.mu.Lock()
	*dst = h
	in.mu.Unlock()
	return h, nil
}

func (in *Inspector) queueStream(ctx context.Context) (jetstream.Stream, error) {
	in.mu.Lock()
	s := in.queue
	in.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := in.js.Stream(ctx, natsbus.StreamQueue)
	if err != nil {
		return nil, unavailable(fmt.Errorf("stream %s: %w", natsbus.StreamQueue, err))
	}
	in.mu.Lock()
	in.queue = s
	in.mu.Unlock()
	return s, nil
}

// ---------------------------------------------------------------------------
// Nodes

// nodeTable is the last heartbeat of every node, from a watch on
// RELAY_NODES (value: the node's TTL; time: the server's timestamp).
type nodeTable struct {
	mu     sync.Mutex
	m      map[string]nodeEntry
	loaded bool
}

type nodeEntry struct {
	beat time.Time
	ttl  time.Duration
}

func (e nodeEntry) alive(now time.Time) bool { return now.Sub(e.beat) <= e.ttl }

// watchNodes keeps the node table current until Close, re-watching after
// any failure.
func (in *Inspector) watchNodes() {
	defer in.wg.Done()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := in.watchNodesOnce()
		select {
		case <-in.quit:
			return
		case <-time.After(wait):
		}
		if err != nil {
			in.log.Debug("watching node heartbeats; retrying", "err", err, "in", wait)
		}
	}
}

func (in *Inspector) watchNodesOnce() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-in.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	kv, err := in.kv(ctx, &in.nodesKV, natsbus.BucketNodes)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	for e := range w.Updates() {
		in.nodes.mu.Lock()
		if e == nil {
			in.nodes.loaded = true
		} else if e.Operation() != jetstream.KeyValuePut {
			delete(in.nodes.m, e.Key())
		} else {
			ttl, err := time.ParseDuration(string(e.Value()))
			if err != nil || ttl <= 0 {
				ttl = 15 * time.Second
			}
			in.nodes.m[e.Key()] = nodeEntry{beat: e.Created(), ttl: ttl}
		}
		in.nodes.mu.Unlock()
	}
	return errors.New("node watch ended")
}

// liveNodes returns the nodes whose heartbeat is current, and whether the
// table has been loaded at all.
func (in *Inspector) liveNodes() (map[string]bool, bool) {
	now := time.Now()
	in.nodes.mu.Lock()
	defer in.nodes.mu.Unlock()
	live := make(map[string]bool, len(in.nodes.m))
	for id, e := range in.nodes.m {
		if e.alive(now) {
			live[id] = true
		}
	}
	return live, in.nodes.loaded
}

// Nodes returns every node with a heartbeat in RELAY_NODES, by ID.
func (in *Inspector) Nodes() []Node {
	now := time.Now()
	in.nodes.mu.Lock()
	out := make([]Node, 0, len(in.nodes.m))
	for id, e := range in.nodes.m {
		out = append(out, Node{ID: id, LastBeat: e.beat, TTL: e.ttl, Alive: e.alive(now)})
	}
	in.nodes.mu.Unlock()
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ---------------------------------------------------------------------------
// Scatter-gather

// gather publishes a request on subject and collects the nodes' replies
// until every live node has answered or the timeout passes. It reports
// the live nodes that did not answer.
func (in *Inspector) gather(ctx context.Context, subject string, req *request) ([]reply, []string, error) {
	if err := in.Ready(); err != nil {
		return nil, nil, err
	}
	var data []byte
	if req != nil {
		data, _ = json.Marshal(req)
	}
	inbox := in.nc.NewRespInbox()
	sub, err := in.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, unavailable(err)
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, 64<<20)
	if err := in.nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, nil, unavailable(err)
	}
	want, loaded := in.liveNodes()
	pending := len(want)
	wctx, cancel := context.WithTimeout(ctx, in.opts.Timeout)
	defer cancel()
	var out []reply
	for !loaded || pending > 0 {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			break // timeout: some node did not answer
		}
		var r reply
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Node == "" {
			in.log.Debug("malformed inspection reply", "subject", subject, "err", err)
			continue
		}
		if want[r.Node] {
			delete(want, r.Node)
			pending--
		}
		out = append(out, r)
	}
	var missing []string
	for n := range want {
		missing = append(missing, n)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		in.log.Debug("nodes did not answer in time", "subject", subject, "nodes", missing)
	}
	return out, missing, nil
}

func tenantSubject(tenant, what string) string { return SubjectPrefix + tenant + "." + what }

// Clients returns the tenant's live connections on every node, by client
// ID, at most limit (DefaultClientLimit if ≤ 0); truncated says there were
// more.
func (in *Inspector) Clients(ctx context.Context, tenant string, limit int) (clients []Client, truncated bool, err error) {
	if limit <= 0 || limit > MaxClientLimit {
		limit = DefaultClientLimit
	}
	reps, _, err := in.gather(ctx, tenantSubject(tenant, whatClients), &request{Limit: limit})
	if err != nil {
		return nil, false, err
	}
	for _, r := range reps {
		truncated = truncated || r.Truncated
		clients = append(clients, r.Clients...)
	}
	clients = dedupClients(clients)
	if len(clients) > limit {
		clients, truncated = clients[:limit], true
	}
	return clients, truncated, nil
}

// dedupClients sorts by client ID and keeps, for a client ID two nodes
// report (a takeover in progress), the newer connection.
func dedupClients(cs []Client) []Client {
	slices.SortFunc(cs, func(a, b Client) int {
		if c := strings.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		return b.ConnectedAt.Compare(a.ConnectedAt) // newest first
	})
	return slices.CompactFunc(cs, func(a, b Client) bool { return a.ClientID == b.ClientID })
}

// Client returns the tenant's live connection with this client ID, if
// any node has one.
func (in *Inspector) Client(ctx context.Context, tenant, clientID string) (Client, bool, error) {
	reps, _, err := in.gather(ctx, tenantSubject(tenant, whatClient), &request{ClientID: clientID})
	if err != nil {
		return Client{}, false, err
	}
	var found []Client
	for _, r := range reps {
		if r.Found {
			found = append(found, r.Clients...)
		}
	}
	if found = dedupClients(found); len(found) == 0 {
		return Client{}, false, nil
	}
	return found[0], true, nil
}

// Kick disconnects the tenant's client with this ID (administrative
// action) on whichever node holds it; it reports whether one did.
func (in *Inspector) Kick(ctx context.Context, tenant, clientID string) (bool, error) {
	reps, _, err := in.gather(ctx, tenantSubject(tenant, whatKick), &request{ClientID: clientID})
	if err != nil {
		return false, err
	}
	for _, r := range reps {
		if r.Found {
			return true, nil
		}
	}
	return false, nil
}

// routes returns the tenant's routes on every node.
func (in *Inspector) routes(ctx context.Context, tenant string) ([]Route, error) {
	reps, _, err := in.gather(ctx, tenantSubject(tenant, whatTopics), nil)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range reps {
		for _, rt := range r.Routes {
			rt.Node = r.Node
			out = append(out, rt)
		}
	}
	return out, nil
}

// Topics returns the tenant's subscription filters merged over every
// edge, by filter, with delivery rates.
func (in *Inspector) Topics(ctx context.Context, tenant string) ([]Topic, error) {
	rs, err := in.routes(ctx, tenant)
	if err != nil {
		return nil, err
	}
	by := map[string]*Topic{}
	for _, r := range rs {
		t := by[r.Filter]
		if t == nil {
			t = &Topic{Filter: r.Filter}
			by[r.Filter] = t
		}
		t.Subscribers += r.Subscribers
		t.Messages += r.Delivered
	}
	out := make([]Topic, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Topic) int { return strings.Compare(a.Filter, b.Filter) })
	in.rates.apply(tenant, time.Now(), out)
	return out, nil
}

// Stats returns the tenant's counters summed over every node.
func (in *Inspector) Stats(ctx context.Context, tenant string) (Stats, error) {
	reps, _, err := in.gather(ctx, tenantSubject(tenant, whatStats), nil)
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	for _, r := range reps {
		if r.Stats != nil {
			s.add(*r.Stats)
		}
	}
	return s, nil
}

// AllStats returns every tenant's counters summed over every node.
func (in *Inspector) AllStats(ctx context.Context) (map[string]Stats, error) {
	reps, _, err := in.gather(ctx, SubjectAllStats, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]Stats{}
	for _, r := range reps {
		for tn, s := range r.Tenants {
			t := out[tn]
			t.add(s)
			out[tn] = t
		}
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Topic rates

// rateWindow is the longest a reference snapshot for rates is kept;
// rateTenants bounds the tenants remembered.
const (
	rateWindow  = 5 * time.Minute
	rateTenants = 4096
)

// rateCache keeps, per tenant, the deliveries per filter at the last
// Topics call at least a second older than the one before, so that rates
// are computed over at least a second.
type rateCache struct {
	mu sync.Mutex
	m  map[string]*rateEntry
}

type rateEntry struct {
	at    time.Time
	msgs  map[string]uint64
	rates map[string]float64 // rates computed at the last reference change
}

func (c *rateCache) apply(tenant string, now time.Time, ts []Topic) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[tenant]
	if e != nil && now.Sub(e.at) > rateWindow {
		e = nil
	}
	if e != nil && now.Sub(e.at) < time.Second {
		for i := range ts {
			ts[i].RatePerS = e.rates[ts[i].Filter]
		}
		return
	}
	cur := make(map[string]uint64, len(ts))
	rates := make(map[string]float64, len(ts))
	for i := range ts {
		t := &ts[i]
		cur[t.Filter] = t.Messages
		if e != nil {
			if prev, ok := e.msgs[t.Filter]; ok && t.Messages >= prev {
				t.RatePerS = float64(t.Messages-prev) / now.Sub(e.at).Seconds()
			}
		}
		rates[t.Filter] = t.RatePerS
	}
	if e == nil && len(c.m) >= rateTenants {
		for k, v := range c.m { // forget the stalest few
			if now.Sub(v.at) > rateWindow/5 {
				delete(c.m, k)
			}
		}
		if len(c.m) >= rateTenants {
			return
		}
	}
	c.m[tenant] = &rateEntry{at: now, msgs: cur, rates: rates}
}

// cmpTime orders times, for sorting.
func cmpTime(a, b time.Time) int { return cmp.Compare(a.UnixNano(), b.UnixNano()) }
