package broker

import (
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// Message is one application message as it crosses the backbone. A Message
// handed to a Handler is shared by every local subscriber and must not be
// modified.
type Message struct {
	// Tenant owns the topic namespace the message lives in.
	Tenant string
	// Topic is the MQTT topic name.
	Topic []byte
	// Payload is the application payload.
	Payload []byte
	// QoS is the QoS the message was published with.
	QoS byte
	// Retain is set on messages sent because of a retained-message lookup,
	// and on publishes that asked for the message to be retained.
	Retain bool
	// Origin is the node ID of the edge that received the message from a
	// client; $local subscriptions deliver only messages whose Origin is
	// their own node.
	Origin string
	// ClientID is the publisher's client ID (used for MQTT 5 No Local).
	ClientID string
	// Expiry is when the message expires (zero: never). [MQTT-3.3.2-5]
	Expiry time.Time
	// Props carries MQTT 5 publish properties that travel end to end
	// (content type, response topic, correlation data, user properties,
	// payload format). Nil when there are none.
	Props *packet.Properties

	// paced is set on a message a client's read loop publishes: its
	// local delivery may wait for room in subscribers' queues (pushing
	// back on that client), which no other publisher (wills, the reaper,
	// the HTTP API) may do.
	paced bool
}

// Subscription is one topic filter a session holds, with its options.
type Subscription struct {
	// Filter is the filter as the client sent it, including any
	// $share/<group>/, $queue/ or $local/ prefix.
	Filter string `json:"f"`
	// QoS is the maximum QoS granted.
	QoS byte `json:"q"`
	// NoLocal, RetainAsPublished and RetainHandling are MQTT 5 options.
	NoLocal           bool `json:"nl,omitempty"`
	RetainAsPublished bool `json:"rap,omitempty"`
	RetainHandling    byte `json:"rh,omitempty"`
	// ID is the MQTT 5 subscription identifier (0: none).
	ID int `json:"id,omitempty"`
}

// SessionState is the durable part of a persistent session, as the session
// store keeps it. Everything else a session has lives in the connection.
type SessionState struct {
	// Tenant and ClientID identify the session.
	Tenant   string `json:"t"`
	ClientID string `json:"c"`
	// Subscriptions are the session's subscriptions, in the order made.
	Subscriptions []Subscription `json:"s,omitempty"`
	// Expiry is how long the session outlives its connection.
	Expiry time.Duration `json:"e"`
	// Node and ConnID name the connection that holds the session;
	// Connected says whether it is live.
	Node      string `json:"n,omitempty"`
	ConnID    string `json:"cid,omitempty"`
	Connected bool   `json:"on,omitempty"`
	// LastSeen is when the session was last connected.
	LastSeen time.Time `json:"ls"`
	// WillDue is set while the last connection's will waits for its MQTT 5
	// Will Delay Interval: the will is stored for (Node, ConnID) and is
	// published then unless a connection resumes the session first
	// [MQTT-3.1.3-9]; a connection with Clean Start ends the session, so
	// the will is published at once.
	WillDue time.Time `json:"wd,omitzero"`
	// Created is when the session was first created.
	Created time.Time `json:"cr"`
}

// Will is a will message registered by a live connection, kept in the
// backbone so that a surviving node publishes it if the edge dies.
type Will struct {
	// Message is the will message to publish.
	Message Message `json:"m"`
	// Node and ConnID name the connection the will belongs to.
	Node   string `json:"n"`
	ConnID string `json:"cid"`
	// Delay is the MQTT 5 will delay interval.
	Delay time.Duration `json:"d,omitempty"`
	// Due is set once the connection has ended and the will waits for its
	// delay: it is published at Due (zero: at once, when the node dies).
	Due time.Time `json:"due,omitzero"`
	// MessageExpiry is the will's MQTT 5 Message Expiry Interval; it
	// starts when the will is published (Message.Expiry is set then,
	// MQTT 5 §3.1.3.2.4).
	MessageExpiry time.Duration `json:"me,omitempty"`
}

// Ready returns the will's message as it is published now: its expiry
// starts counting at publication. It reports false if the will's delay has
// not passed yet, or its message has already expired.
func (w *Will) Ready(now time.Time) (Message, bool) {
	m := w.Message
	if !w.Due.IsZero() && now.Before(w.Due) {
		return m, false
	}
	if w.MessageExpiry > 0 {
		m.Expiry = now.Add(w.MessageExpiry)
	}
	if !m.Expiry.IsZero() && now.After(m.Expiry) {
		return m, false
	}
	return m, true
}
