package services

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/dashboard"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services/inspect"
	"github.com/relaymq/relay/tenant"
)

// APIConfig tunes the HTTP API's backend (relay serve, relay control).
// Zero values take the defaults of dashboard.APIDeps and inspect.Options.
type APIConfig struct {
	// UsageInterval is how often every tenant's usage is sampled for the
	// charts (GET /api/v1/metrics). Default 10 s; 6 h are kept.
	UsageInterval time.Duration
	// PublishRate and PublishBurst are each tenant's HTTP publish token
	// bucket (messages per second). Defaults 1000 and 2000.
	PublishRate  float64
	PublishBurst int
	// InspectTimeout bounds the wait for the edges' answers. Default
	// 300 ms.
	InspectTimeout time.Duration
	// MaxWatchers caps each tenant's live watches; WatchHeartbeat is
	// their keep-alive comment interval; WatchRecheck how often each
	// checks that its caller may still watch. Defaults 10, 15 s and 5 s.
	MaxWatchers    int
	WatchHeartbeat time.Duration
	WatchRecheck   time.Duration
	// ReadTimeout bounds the reading of a request, headers and body (a
	// client that sends its body slowly is cut off). Default 30 s.
	ReadTimeout time.Duration
	// TrustedProxies are the reverse proxies in front of the HTTP port:
	// client addresses (for throttling) are then taken from their
	// X-Forwarded-For (dashboard.Config.TrustedProxies).
	TrustedProxies []netip.Prefix
}

// HTTP server limits of the dashboard and API port. There is no
// WriteTimeout, which would end live watches: the dashboard gives every
// response a write deadline of its own.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpIdleTimeout       = 120 * time.Second
	httpMaxHeaderBytes    = 64 << 10
	httpShutdownTimeout   = 5 * time.Second
)

// newHTTPServer returns the HTTP server of the dashboard and API.
func newHTTPServer(h http.Handler, cfg APIConfig, log *slog.Logger) *http.Server {
	rt := cfg.ReadTimeout
	if rt <= 0 {
		rt = 30 * time.Second
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(httpReadHeaderTimeout, rt),
		ReadTimeout:       rt,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// shutdownHTTP stops srv: it waits up to httpShutdownTimeout for requests
// in progress, then closes every connection left (a client that stopped
// reading must not hold the process).
func shutdownHTTP(srv *http.Server, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("HTTP requests still in progress at shutdown: closing their connections", "err", err)
		return srv.Close()
	}
	return nil
}

// apiBackend is what the JSON API uses in one process: a backbone node
// (the in-process edge's Bus, or a Bus of its own in relay control), and
// the cluster inspector.
type apiBackend struct {
	bus       *natsbus.Bus
	nc        *nats.Conn
	insp      *inspect.Inspector
	nodeID    string
	maxPacket int
	cfg       APIConfig
}

// newAPIBackend starts the inspector on nc for the node of bus.
func newAPIBackend(ctx context.Context, nc *nats.Conn, bus *natsbus.Bus, nodeID string, maxPacket int, cfg APIConfig, log *slog.Logger) (*apiBackend, error) {
	insp, err := inspect.New(inspect.Options{
		Conn: nc, Timeout: cfg.InspectTimeout, SampleInterval: cfg.UsageInterval, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if err := insp.Start(ctx); err != nil {
		return nil, err
	}
	return &apiBackend{bus: bus, nc: nc, insp: insp, nodeID: nodeID, maxPacket: maxPacket, cfg: cfg}, nil
}

// Close stops the inspector. It is idempotent.
func (b *apiBackend) Close() error {
	if b == nil {
		return nil
	}
	return b.insp.Close()
}

// deps returns the API's dependencies.
func (b *apiBackend) deps() dashboard.APIDeps {
	if b == nil {
		return dashboard.APIDeps{}
	}
	return dashboard.APIDeps{
		Backbone:       busBackbone{Bus: b.bus, nc: b.nc},
		Cluster:        clusterView{b.insp},
		NodeID:         b.nodeID,
		MaxPacketSize:  b.maxPacket,
		PublishRate:    b.cfg.PublishRate,
		PublishBurst:   b.cfg.PublishBurst,
		MaxWatchers:    b.cfg.MaxWatchers,
		WatchHeartbeat: b.cfg.WatchHeartbeat,
		WatchRecheck:   b.cfg.WatchRecheck,
	}
}

// dashboardAPIDeps assembles the JSON API's dependencies.
func (s *Server) dashboardAPIDeps() dashboard.APIDeps { return s.api.deps() }

// startAPIBackend starts, if the HTTP API is served, its backbone node and
// the cluster inspector (the in-process edge answers inspection requests
// itself: Edge.Start).
func (s *Server) startAPIBackend(ctx context.Context) (*apiBackend, error) {
	if s.cfg.HTTPAddr == "" {
		return nil, nil
	}
	return newAPIBackend(ctx, s.edge.nc, s.edge.bus, s.edge.NodeID(), s.cfg.Edge.Broker.MaxPacketSize, s.cfg.API, s.log)
}

// ---------------------------------------------------------------------------
// Adapters

// busBackbone is the API's dashboard.Backbone: the Bus, and its
// connection's state.
type busBackbone struct {
	*natsbus.Bus
	nc *nats.Conn
}

// Subscribe implements dashboard.Backbone: a live watch sees every
// message, also those the Bus's own node publishes (which the edge's
// routes get from its local delivery instead).
func (b busBackbone) Subscribe(tenant string, f topic.Filter, class broker.Class, h broker.Handler) (broker.Route, error) {
	return b.Bus.Watch(tenant, f, class, h)
}

// Ready implements dashboard.Backbone.
func (b busBackbone) Ready() error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w: NATS connection %s", broker.ErrBackboneUnavailable, b.nc.Status())
	}
	return nil
}

// clusterView is the API's dashboard.Cluster on the inspector.
type clusterView struct{ in *inspect.Inspector }

var _ dashboard.Cluster = clusterView{}

func clientInfo(c *inspect.Client) dashboard.ClientInfo {
	ci := dashboard.ClientInfo{
		ClientID: c.ClientID, Username: c.Username, CredentialID: c.CredentialID, App: c.App,
		Node: c.Node, RemoteAddr: c.RemoteAddr, ProtoVer: c.ProtoVer, ConnectedAt: c.ConnectedAt,
		KeepAlive: int(c.KeepAlive / time.Second), Persistent: c.Persistent,
		Queued: c.Queued, Inflight: c.Inflight, MessagesIn: c.MessagesIn, MessagesOut: c.MessagesOut,
	}
	ci.Subscriptions = subscriptions(c.Subscriptions)
	return ci
}

func subscriptions(in []inspect.Subscription) []dashboard.Subscription {
	out := make([]dashboard.Subscription, len(in))
	for i, s := range in {
		out[i] = dashboard.Subscription{Filter: s.Filter, QoS: s.QoS}
	}
	return out
}

func (v clusterView) Clients(ctx context.Context, tn string, limit int) ([]dashboard.ClientInfo, bool, error) {
	cs, truncated, err := v.in.Clients(ctx, tn, limit)
	if err != nil {
		return nil, false, err
	}
	out := make([]dashboard.ClientInfo, len(cs))
	for i := range cs {
		out[i] = clientInfo(&cs[i])
	}
	return out, truncated, nil
}

func (v clusterView) Client(ctx context.Context, tn, id string) (*dashboard.ClientInfo, error) {
	c, ok, err := v.in.Client(ctx, tn, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: client %q is not connected", tenant.ErrNotFound, id)
	}
	ci := clientInfo(&c)
	return &ci, nil
}

func (v clusterView) Kick(ctx context.Context, tn, id string) error {
	ok, err := v.in.Kick(ctx, tn, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: client %q is not connected", tenant.ErrNotFound, id)
	}
	return nil
}

func (v clusterView) Sessions(ctx context.Context, tn string, limit int) ([]dashboard.SessionInfo, bool, error) {
	ss, truncated, err := v.in.Sessions(ctx, tn, true, limit)
	if err != nil {
		return nil, false, err
	}
	out := make([]dashboard.SessionInfo, len(ss))
	for i, s := range ss {
		out[i] = dashboard.SessionInfo{
			ClientID: s.ClientID, LastSeen: s.LastSeen, Queued: s.Queued,
			Subscriptions: subscriptions(s.Subscriptions),
		}
		if !s.ExpiresAt.IsZero() {
			t := s.ExpiresAt
			out[i].ExpiresAt = &t
		}
	}
	return out, truncated, nil
}

func (v clusterView) Topics(ctx context.Context, tn string) ([]dashboard.TopicInfo, error) {
	ts, err := v.in.Topics(ctx, tn)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.TopicInfo, len(ts))
	for i, t := range ts {
		out[i] = dashboard.TopicInfo{Filter: t.Filter, Subscribers: t.Subscribers, Messages: t.Messages, RatePerS: t.RatePerS}
	}
	return out, nil
}

func (v clusterView) Usage(tn string, window time.Duration) dashboard.Usage {
	interval, ss := v.in.Usage(tn, window)
	u := dashboard.Usage{IntervalS: max(1, int(interval/time.Second)), Samples: make([]dashboard.UsageSample, len(ss))}
	for i, s := range ss {
		u.Samples[i] = dashboard.UsageSample{
			T: s.T.UTC(), Connections: s.Connections, MessagesIn: s.MessagesIn, MessagesOut: s.MessagesOut,
			BytesIn: s.BytesIn, BytesOut: s.BytesOut, Dropped: s.Dropped,
		}
	}
	return u
}

func (v clusterView) Connections(ctx context.Context) (map[string]int64, error) {
	all, err := v.in.AllStats(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(all))
	for tn, s := range all {
		out[tn] = s.Connections
	}
	return out, nil
}

func (v clusterView) Health(ctx context.Context) dashboard.ClusterHealth {
	h := dashboard.ClusterHealth{NATS: "ok", JetStream: "ok"}
	if err := v.in.Ready(); err != nil {
		h.NATS = err.Error()
	}
	if err := v.in.JetStreamOK(ctx); err != nil {
		h.JetStream = err.Error()
	}
	for _, n := range v.in.Nodes() {
		h.Nodes = append(h.Nodes, dashboard.NodeHealth{ID: n.ID, Alive: n.Alive, LastBeat: n.LastBeat.UTC()})
	}
	return h
}

func (v clusterView) Matches(ctx context.Context, tn, origin string, t []byte, qos byte) bool {
	return v.in.Matches(ctx, tn, origin, t, qos)
}

func (v clusterView) RetainedTimes(ctx context.Context, tn string, topics []string) (map[string]time.Time, error) {
	return v.in.RetainedTimes(ctx, tn, topics)
}
