package inspect

import (
	"errors"
	"fmt"
	"time"

	"github.com/relaymq/relay/broker"
)

// Subjects of the protocol.
const (
	// SubjectPrefix + "<tenant>.<what>": a per-tenant request every node
	// answers.
	SubjectPrefix = "rly.ctl.inspect."
	// SubjectAllStats: every tenant's counters of every node.
	SubjectAllStats = "rly.ctl.inspectall.stats"
)

// What a per-tenant request asks for (the last subject token).
const (
	whatClients = "clients"
	whatClient  = "client"
	whatKick    = "kick"
	whatTopics  = "topics"
	whatStats   = "stats"
)

// ErrUnavailable means the backbone could not carry a request (NATS
// disconnected, JetStream not answering). It wraps
// broker.ErrBackboneUnavailable.
var ErrUnavailable = fmt.Errorf("inspect: %w", broker.ErrBackboneUnavailable)

// unavailable wraps err as ErrUnavailable unless it is the caller's own
// cancellation.
func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// request is the body of a per-tenant request.
type request struct {
	// ClientID names the client of "client" and "kick".
	ClientID string `json:"id,omitempty"`
	// Limit caps the clients of "clients" (per node).
	Limit int `json:"limit,omitempty"`
}

// reply is one node's answer.
type reply struct {
	Node      string           `json:"node"`
	Clients   []Client         `json:"clients,omitempty"`
	Truncated bool             `json:"truncated,omitempty"`
	Found     bool             `json:"found,omitempty"`
	Routes    []Route          `json:"routes,omitempty"`
	Stats     *Stats           `json:"stats,omitempty"`
	Tenants   map[string]Stats `json:"tenants,omitempty"`
}

// Limits of one reply.
const (
	// DefaultClientLimit and MaxClientLimit bound the clients one request
	// lists (per node, and merged).
	DefaultClientLimit = 1000
	MaxClientLimit     = 10000
	// maxSubscriptions is the most subscriptions listed per client.
	maxSubscriptions = 256
)

// Subscription is one subscription of a client or session.
type Subscription struct {
	Filter string `json:"filter"`
	QoS    byte   `json:"qos"`
}

// Client is a snapshot of one live connection.
type Client struct {
	// Node is the edge holding the connection.
	Node     string `json:"node"`
	ClientID string `json:"client_id"`
	// Username is as sent in CONNECT.
	Username string `json:"username,omitempty"`
	// CredentialID and App identify the credential (empty: anonymous).
	CredentialID string `json:"credential_id,omitempty"`
	App          string `json:"app,omitempty"`
	RemoteAddr   string `json:"remote_addr"`
	// ProtoVer is the MQTT protocol level: 3, 4 or 5.
	ProtoVer    byte          `json:"proto_ver"`
	ConnectedAt time.Time     `json:"connected_at"`
	KeepAlive   time.Duration `json:"keepalive"`
	Persistent  bool          `json:"persistent"`
	// Subscriptions are at most 256, by filter; SubscriptionsTruncated
	// says there were more.
	Subscriptions          []Subscription `json:"subscriptions"`
	SubscriptionsTruncated bool           `json:"subscriptions_truncated,omitempty"`
	// Queued is the connection's outbound queue, Inflight its
	// unacknowledged QoS ≥ 1 messages.
	Queued      int    `json:"queued"`
	Inflight    int    `json:"inflight"`
	MessagesIn  uint64 `json:"messages_in"`
	MessagesOut uint64 `json:"messages_out"`
}

func clientOf(node string, ci *broker.ClientInfo) Client {
	c := Client{
		Node: node, ClientID: ci.ClientID, Username: ci.Username, CredentialID: ci.Credential, App: ci.App,
		RemoteAddr: ci.RemoteAddr, ProtoVer: ci.Version, ConnectedAt: ci.ConnectedAt, KeepAlive: ci.KeepAlive,
		Persistent: ci.Persistent, Queued: ci.Queued, Inflight: ci.Inflight,
		MessagesIn: ci.MessagesIn, MessagesOut: ci.MessagesOut,
	}
	subs := ci.Subscriptions
	if len(subs) > maxSubscriptions {
		subs, c.SubscriptionsTruncated = subs[:maxSubscriptions], true
	}
	c.Subscriptions = make([]Subscription, len(subs))
	for i, s := range subs {
		c.Subscriptions[i] = Subscription{Filter: s.Filter, QoS: s.QoS}
	}
	return c
}

// Stats are a tenant's counters: cumulative per node (messages and payload
// bytes in and out, dropped deliveries), live connections a gauge.
type Stats struct {
	Connections int64  `json:"connections"`
	MessagesIn  uint64 `json:"messages_in"`
	MessagesOut uint64 `json:"messages_out"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
	Dropped     uint64 `json:"dropped"`
}

func statsOf(s broker.TenantStats) Stats {
	return Stats{
		Connections: s.Connections, MessagesIn: s.MessagesIn, MessagesOut: s.MessagesOut,
		BytesIn: s.BytesIn, BytesOut: s.BytesOut, Dropped: s.Dropped,
	}
}

func (s *Stats) add(o Stats) {
	s.Connections += o.Connections
	s.MessagesIn += o.MessagesIn
	s.MessagesOut += o.MessagesOut
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.Dropped += o.Dropped
}

// Route is one subscription route of an edge: filter as clients wrote it
// ($share/… included), local subscribers, messages delivered through it.
type Route struct {
	Filter      string `json:"filter"`
	Subscribers int    `json:"subscribers"`
	Delivered   uint64 `json:"delivered"`
	// Node is filled in by the Inspector.
	Node string `json:"-"`
}

// Topic is a filter's routes merged over every edge.
type Topic struct {
	Filter      string
	Subscribers int
	// Messages counts deliveries through the filter's routes (one per
	// message per local subscriber) since the edges started.
	Messages uint64
	// RatePerS is deliveries per second between this call and an earlier
	// one for the tenant (at least a second before, at most
	// rateWindow); 0 on the first call.
	RatePerS float64
}

// Session is a stored persistent session.
type Session struct {
	ClientID      string
	Connected     bool
	Node          string
	LastSeen      time.Time
	Created       time.Time
	ExpiresAt     time.Time // zero: never (or connected)
	Subscriptions []Subscription
	// Queued is how many messages wait in the session's durable queue
	// (unacknowledged QoS ≥ 1 messages).
	Queued uint64
}

// Node is a node of the cluster as its heartbeats show it.
type Node struct {
	ID       string
	LastBeat time.Time
	TTL      time.Duration
	Alive    bool
}

// Sample is one interval of a tenant's usage: the connections at its end,
// and the counters' growth during it, summed over every edge.
type Sample struct {
	T           time.Time
	Connections int64
	MessagesIn  uint64
	MessagesOut uint64
	BytesIn     uint64
	BytesOut    uint64
	Dropped     uint64
}

func (s *Sample) zero() bool {
	return s.Connections == 0 && s.MessagesIn == 0 && s.MessagesOut == 0 && s.BytesIn == 0 && s.BytesOut == 0 && s.Dropped == 0
}
