package broker

import (
	"context"
	"errors"
	"time"

	"github.com/relaymq/relay/broker/topic"
)

// The broker reaches everything outside one edge through the interfaces in
// this file; package natsbus implements them on NATS and JetStream. They are
// small on purpose: each names exactly what the broker consumes.

// Errors returned by backbone implementations.
var (
	// ErrBackboneUnavailable means the backbone could not take the request
	// (NATS disconnected, JetStream unavailable or timed out).
	ErrBackboneUnavailable = errors.New("backbone unavailable")
	// ErrSessionNotFound means there is no stored session for the client.
	ErrSessionNotFound = errors.New("session not found")
	// ErrSessionConflict means a stored session changed since it was read
	// (another edge took it over).
	ErrSessionConflict = errors.New("session changed concurrently")
	// ErrTooLarge means the message or its topic exceeds what the backbone
	// carries (NATS max_payload / max_control_line).
	ErrTooLarge = errors.New("message too large for the backbone")
	// ErrQueueClosed is returned by Queue.Next once the queue is closed.
	ErrQueueClosed = errors.New("queue closed")
)

// Handler receives a live message from a route. Calls for one route are
// sequential and in backbone order; m is shared and must not be modified.
type Handler func(m *Message)

// Class selects which live messages a route receives.
type Class uint8

const (
	// ClassAll receives messages of every QoS.
	ClassAll Class = iota
	// ClassQoS0 receives only messages published with QoS 0: a persistent
	// session takes its QoS ≥ 1 messages from its durable Queue instead.
	ClassQoS0
)

// Router carries live messages between all edges.
type Router interface {
	// Publish sends m to every matching route on every edge; retained
	// messages are also stored (an empty payload clears the topic's retained
	// message). Publish has encoded m when it returns, so the caller may
	// reuse m. For QoS ≥ 1, done is called once the message (and its
	// retained copy) is durably stored, with nil or an error wrapping
	// ErrBackboneUnavailable; for QoS 0 done may be nil and is called after
	// the message is handed to the backbone. Publish itself returns an
	// error wrapping ErrBackboneUnavailable when the message could not be
	// sent at all (done is then not called).
	Publish(m *Message, done func(error)) error
	// Subscribe opens a route that calls h for every live message of the
	// tenant matching f. Shared filters form one group across all edges:
	// each message goes to one route of the group. Local filters are
	// delivered by the broker's own check of Message.Origin.
	Subscribe(tenant string, f topic.Filter, class Class, h Handler) (Route, error)
	// Sync returns once every route opened before the call receives the
	// messages any edge publishes after it returns, or with ctx's error or
	// one wrapping ErrBackboneUnavailable. The broker calls it before
	// SUBACK when a SUBSCRIBE opened a route, so that a message published
	// right after SUBACK is not missed [MQTT-3.8.4-3].
	Sync(ctx context.Context) error
	// LocalDelivery asks the Router to hand every message Publish sends
	// to h as well, synchronously, after the live publish succeeded and
	// before Publish returns (m is then the caller's: h copies what it
	// keeps); routes then receive only messages published elsewhere (other
	// edges, the HTTP API). The broker delivers its own publishes to its
	// own subscribers without a round trip through the backbone. It
	// reports false if the Router cannot keep the two apart: h is then
	// never called and routes receive every message.
	LocalDelivery(h Handler) bool
}

// Route is an open subscription on the Router.
type Route interface {
	// Close stops the route; no calls to its handler start after Close.
	Close() error
}

// RetainStore reads retained messages.
type RetainStore interface {
	// Retained calls fn for the retained message of every topic of the
	// tenant matching filter (a plain filter, no $share prefix), in no
	// particular order, until fn returns an error, which Retained returns.
	Retained(ctx context.Context, tenant, filter string, fn func(*Message) error) error
}

// SessionStore keeps persistent sessions and their durable message queues.
type SessionStore interface {
	// LoadSession returns the stored session and its revision, or
	// ErrSessionNotFound.
	LoadSession(ctx context.Context, tenant, clientID string) (*SessionState, uint64, error)
	// SaveSession stores s if the stored revision is still rev (0: must not
	// exist) and returns the new revision, or ErrSessionConflict.
	SaveSession(ctx context.Context, s *SessionState, rev uint64) (uint64, error)
	// DeleteSession removes the session, its queue and its QoS 2 state.
	// Deleting a missing session is not an error.
	DeleteSession(ctx context.Context, tenant, clientID string) error
	// OpenQueue opens the session's durable queue of QoS ≥ 1 messages. The
	// queue is fed by the session's stored QoS ≥ 1 subscriptions (as of
	// the last SaveSession); it starts with the oldest unacknowledged
	// message.
	// unclean says the session's previous connection ended without
	// releasing it (its edge died), so that messages it may have sent go
	// out again with DUP set.
	OpenQueue(ctx context.Context, s *SessionState, unclean bool) (Queue, error)
	// MarkQoS2 adds (set) or removes packet ID id in the session's QoS 2
	// state of the given kind; for QoS2Released, seq is the queue sequence
	// of the message (0 if it did not come from the queue).
	MarkQoS2(ctx context.Context, tenant, clientID string, kind QoS2Kind, id uint16, seq uint64, set bool) error
	// QoS2 returns the session's QoS 2 state.
	QoS2(ctx context.Context, tenant, clientID string) (QoS2State, error)
}

// QoS2Kind names one half of a session's QoS 2 state.
type QoS2Kind uint8

const (
	// QoS2Received: the client's QoS 2 PUBLISH was received and
	// published, PUBREL not yet received [MQTT-4.3.3-2].
	QoS2Received QoS2Kind = iota
	// QoS2Released: PUBREC received for a QoS 2 message sent to the
	// client, PUBREL sent, PUBCOMP not yet received [MQTT-4.3.3-1].
	QoS2Released
)

// QoS2State is what a persistent session must remember of its QoS 2 flows
// across connections [MQTT-4.4.0-1].
type QoS2State struct {
	Received []uint16   `json:"in,omitempty"`
	Released []Released `json:"rel,omitempty"`
}

// Released is an outbound QoS 2 flow at the PUBREL stage.
type Released struct {
	ID  uint16 `json:"id"`
	Seq uint64 `json:"seq,omitempty"` // queue sequence of the message, 0 if none
}

// Queue is a session's durable queue of QoS ≥ 1 messages. Messages stay in
// the queue until acknowledged and come back (Redelivered) when the queue
// is reopened, by any edge.
type Queue interface {
	// Next blocks until a message is available, ctx is done, or the queue
	// is closed (ErrQueueClosed).
	Next(ctx context.Context) (Delivery, error)
	// Pending reports how many messages wait in the queue.
	Pending(ctx context.Context) (uint64, error)
	// Close stops the queue (messages stay stored); it is idempotent.
	Close() error
}

// Delivery is one message taken from a Queue.
type Delivery interface {
	// Message is the message. It must not be modified.
	Message() *Message
	// Seq is the message's position in the backbone, stable across
	// redeliveries.
	Seq() uint64
	// Redelivered reports whether the message was delivered before.
	Redelivered() bool
	// Ack removes the message from the queue (the backbone may batch the
	// removal: after a crash, recently acknowledged messages can return).
	Ack() error
	// Settle removes the message from the queue at once (QoS 2: it must
	// never be sent as PUBLISH again).
	Settle(ctx context.Context) error
	// Nak makes the message available again at once.
	Nak() error
}

// WillStore keeps the wills of live connections so that a surviving node
// publishes them when an edge dies (see Cluster).
type WillStore interface {
	// PutWill stores w for its connection.
	PutWill(ctx context.Context, w *Will) error
	// DeleteWill removes the will of the given connection, if it is still
	// the stored one.
	DeleteWill(ctx context.Context, tenant, clientID, connID string) error
	// CancelWill removes the will that connection connID of (tenant,
	// clientID) stored on node, if it is still there (a delayed will whose
	// session was resumed [MQTT-3.1.3-9]). It returns an error wrapping
	// ErrBackboneUnavailable if the store cannot be reached.
	CancelWill(ctx context.Context, node, tenant, clientID, connID string) error
	// FireWill publishes the will that connection connID of (tenant,
	// clientID) stored on node, if it is still there and allow accepts its
	// message (nil: no check), and removes it. Exactly one caller across
	// all edges wins the will. It reports whether the will was published;
	// errors wrap ErrBackboneUnavailable (the will then stays stored).
	FireWill(ctx context.Context, node, tenant, clientID, connID string, allow func(*Message) bool) (bool, error)
}

// KickFunc closes the local connection of (tenant, clientID) unless it is
// connID or, when connected is not zero, unless it connected after
// connected (a late takeover broadcast must not close a newer connection);
// it reports whether it closed one. With wait it returns once that
// connection is cleaned up (its session saved and released); without, it
// does not block.
type KickFunc func(tenant, clientID, connID string, connected time.Time, wait bool) bool

// Cluster connects the edges to each other.
type Cluster interface {
	// HandleKicks registers the function other edges' Kick calls reach.
	HandleKicks(fn KickFunc)
	// Kick asks every other edge to close its connection of (tenant,
	// clientID) that connected before connected (the time of connID's
	// CONNECT), soon but without waiting. When node is non-empty, Kick also
	// asks that node to close its connection unless it is connID, and waits
	// until it has done so or is known to be gone.
	Kick(ctx context.Context, tenant, clientID, connID string, connected time.Time, node string) error
}

// Presence counts live connections per tenant across all edges.
type Presence interface {
	// Connected adds delta to this edge's connections of the tenant.
	Connected(tenant string, delta int)
	// Connections returns the tenant's connections on all edges (other
	// edges' counts may be up to a second old).
	Connections(tenant string) int
}

// Backbone is everything the broker needs from the NATS backbone.
type Backbone interface {
	Router
	RetainStore
	SessionStore
	WillStore
	Cluster
	Presence
}
