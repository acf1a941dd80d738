package dashboard

import (
	"context"
	"time"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// APIDeps are the JSON API's dependencies. Without a Backbone and Cluster
// the routes that need them answer 503.
type APIDeps struct {
	// Backbone publishes messages, reads retained ones and watches topics,
	// exactly as an edge does (natsbus.Bus).
	Backbone Backbone
	// Cluster inspects live state across every edge (services/inspect).
	Cluster Cluster
	// NodeID is the Origin of messages published over HTTP: the node
	// whose Backbone publishes them.
	NodeID string
	// MaxPacketSize is the edges' largest MQTT packet; a message whose
	// topic and payload exceed it is refused (413). Default 1 MiB.
	MaxPacketSize int
	// PublishRate and PublishBurst are each tenant's token bucket for
	// HTTP publishes (messages per second; a batch takes one token per
	// message). A tenant's max_message_rate limit, if lower, replaces
	// PublishRate. Defaults 1000 and 2000.
	PublishRate  float64
	PublishBurst int
	// PublishTimeout bounds the wait for JetStream to store a QoS ≥ 1 or
	// retained message. Default 10 s.
	PublishTimeout time.Duration
	// MaxWatchers caps a tenant's concurrent live watches (SSE). Default
	// 10.
	MaxWatchers int
	// WatchBuffer is each watch's buffer, in messages; beyond it messages
	// are dropped and counted. Default 256.
	WatchBuffer int
	// WatchHeartbeat is the interval of SSE comment lines that keep idle
	// proxies from closing a watch. Default 15 s.
	WatchHeartbeat time.Duration
	// WatchRecheck is how often a live watch checks its caller again (an
	// API key revoked, a tenant suspended, a session ended elsewhere).
	// Default 5 s.
	WatchRecheck time.Duration
	// WatchWriteTimeout bounds each write to a live watch: a client that
	// stops reading is cut off after it. Default 10 s.
	WatchWriteTimeout time.Duration
	// RulesTTL is how long an API key's compiled ACL is cached; changes
	// made through this API apply at once, others within it. Default 2 s.
	RulesTTL time.Duration
	// KeyCacheTTL is how long a verified API key is trusted without
	// asking the database again (a revocation made elsewhere takes up to
	// this long; one made through this API applies at once). Default 1 s;
	// negative disables the cache.
	KeyCacheTTL time.Duration
}

func (d *APIDeps) setDefaults() {
	if d.MaxPacketSize <= 0 {
		d.MaxPacketSize = 1 << 20
	}
	if d.PublishRate <= 0 {
		d.PublishRate = 1000
	}
	if d.PublishBurst <= 0 {
		d.PublishBurst = 2000
	}
	if d.PublishTimeout <= 0 {
		d.PublishTimeout = 10 * time.Second
	}
	if d.MaxWatchers <= 0 {
		d.MaxWatchers = 10
	}
	if d.WatchBuffer <= 0 {
		d.WatchBuffer = 256
	}
	if d.WatchHeartbeat <= 0 {
		d.WatchHeartbeat = 15 * time.Second
	}
	if d.WatchRecheck <= 0 {
		d.WatchRecheck = 5 * time.Second
	}
	if d.WatchWriteTimeout <= 0 {
		d.WatchWriteTimeout = 10 * time.Second
	}
	if d.RulesTTL <= 0 {
		d.RulesTTL = 2 * time.Second
	}
	if d.KeyCacheTTL == 0 {
		d.KeyCacheTTL = time.Second
	}
}

// Backbone is the part of the NATS backbone the API uses; natsbus.Bus
// implements the first three (broker.Router and broker.RetainStore).
type Backbone interface {
	// Publish is broker.Router.Publish: done reports when a QoS ≥ 1 or
	// retained message is stored; errors wrap
	// broker.ErrBackboneUnavailable or broker.ErrTooLarge.
	Publish(m *broker.Message, done func(error)) error
	// Subscribe is broker.Router.Subscribe.
	Subscribe(tenant string, f topic.Filter, class broker.Class, h broker.Handler) (broker.Route, error)
	// Retained is broker.RetainStore.Retained.
	Retained(ctx context.Context, tenant, filter string, fn func(*broker.Message) error) error
	// Ready reports whether the backbone connection is up; an error
	// wrapping broker.ErrBackboneUnavailable if not.
	Ready() error
}

// Cluster reads live state across every edge and JetStream. Errors wrap
// broker.ErrBackboneUnavailable when NATS or JetStream cannot answer.
type Cluster interface {
	// Clients lists the tenant's live connections, by client ID, at most
	// limit; truncated says there were more.
	Clients(ctx context.Context, tenant string, limit int) (cs []ClientInfo, truncated bool, err error)
	// Client returns the tenant's live connection with this client ID;
	// tenant.ErrNotFound if none.
	Client(ctx context.Context, tenant, clientID string) (*ClientInfo, error)
	// Kick disconnects it; tenant.ErrNotFound if none.
	Kick(ctx context.Context, tenant, clientID string) error
	// Sessions lists the tenant's offline persistent sessions.
	Sessions(ctx context.Context, tenant string, limit int) (ss []SessionInfo, truncated bool, err error)
	// Topics lists the tenant's subscription filters over every edge.
	Topics(ctx context.Context, tenant string) ([]TopicInfo, error)
	// Usage returns the tenant's usage samples of the last window.
	Usage(tenant string, window time.Duration) Usage
	// Connections returns every tenant's live connections.
	Connections(ctx context.Context) (map[string]int64, error)
	// Health reports the nodes and JetStream.
	Health(ctx context.Context) ClusterHealth
	// Matches reports whether a message of the tenant on topic t with
	// this QoS, published by node origin, has any subscriber (cached:
	// see services/inspect).
	Matches(ctx context.Context, tenant, origin string, t []byte, qos byte) bool
	// RetainedTimes returns when the tenant's retained messages of these
	// topics were stored.
	RetainedTimes(ctx context.Context, tenant string, topics []string) (map[string]time.Time, error)
}

// ClientInfo is a live connection as the API shows it.
type ClientInfo struct {
	ClientID string `json:"client_id"`
	// Username is as the client sent it in CONNECT.
	Username string `json:"username"`
	// Credential is the username of the credential it authenticated with
	// (filled in by the API from CredentialID; empty for anonymous).
	Credential   string `json:"credential"`
	CredentialID string `json:"-"`
	// App is the credential's app.
	App         string    `json:"app,omitempty"`
	Node        string    `json:"node"`
	RemoteAddr  string    `json:"remote_addr"`
	ProtoVer    byte      `json:"proto_ver"`
	ConnectedAt time.Time `json:"connected_at"`
	// KeepAlive in seconds.
	KeepAlive     int            `json:"keepalive"`
	Persistent    bool           `json:"persistent"`
	Subscriptions []Subscription `json:"subscriptions"`
	// Queued is the connection's outbound queue; Inflight its
	// unacknowledged QoS ≥ 1 messages.
	Queued      int    `json:"queued"`
	Inflight    int    `json:"inflight"`
	MessagesIn  uint64 `json:"messages_in"`
	MessagesOut uint64 `json:"messages_out"`
}

// Subscription is a filter and its granted QoS.
type Subscription struct {
	Filter string `json:"filter"`
	QoS    byte   `json:"qos"`
}

// SessionInfo is an offline persistent session.
type SessionInfo struct {
	ClientID string `json:"client_id"`
	// ExpiresAt is when it is deleted unless it reconnects (nil: never).
	ExpiresAt     *time.Time     `json:"expires_at"`
	LastSeen      time.Time      `json:"last_seen"`
	Subscriptions []Subscription `json:"subscriptions"`
	// Queued is how many messages wait for it in JetStream.
	Queued uint64 `json:"queued"`
}

// TopicInfo is a subscription filter merged over every edge.
type TopicInfo struct {
	Filter      string `json:"filter"`
	Subscribers int    `json:"subscribers"`
	// Messages counts deliveries through the filter (one per message per
	// subscriber) since the edges started; RatePerS is their rate.
	Messages uint64  `json:"messages"`
	RatePerS float64 `json:"rate_per_s"`
}

// Usage is a tenant's usage over time.
type Usage struct {
	IntervalS int           `json:"interval_s"`
	Samples   []UsageSample `json:"samples"`
}

// UsageSample is one interval: connections at its end (a gauge), the
// counters' growth during it.
type UsageSample struct {
	T           time.Time `json:"t"`
	Connections int64     `json:"connections"`
	MessagesIn  uint64    `json:"messages_in"`
	MessagesOut uint64    `json:"messages_out"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
	Dropped     uint64    `json:"dropped"`
}

// ClusterHealth is the state of the backbone.
type ClusterHealth struct {
	NATS      string       `json:"nats"`
	JetStream string       `json:"jetstream"`
	Nodes     []NodeHealth `json:"nodes"`
}

// NodeHealth is one node's heartbeat.
type NodeHealth struct {
	ID       string    `json:"id"`
	Alive    bool      `json:"alive"`
	LastBeat time.Time `json:"last_heartbeat"`
}
