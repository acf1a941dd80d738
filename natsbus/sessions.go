package natsbus

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// Session records live in the RELAY_SESSIONS bucket under
// "<tenant>.<base64url(client ID)>". A persistent session's queue is ONE
// durable consumer on RELAY_MSGS (not one per subscription), whose filter
// subjects are the session's QoS ≥ 1 subscriptions; its name is derived
// from the session key.

// sessionKey returns the bucket key of a session.
func sessionKey(tenant, clientID string) string {
	return tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

// consumerName returns the durable consumer name of a session's queue.
func consumerName(tenant, clientID string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + clientID))
	return "s_" + hex.EncodeToString(sum[:16])
}

// LoadSession implements broker.SessionStore. A disconnected session whose
// expiry has passed counts as not found.
func (b *Bus) LoadSession(ctx context.Context, tenant, clientID string) (*broker.SessionState, uint64, error) {
	e, err := b.sessions.Get(ctx, sessionKey(tenant, clientID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, broker.ErrSessionNotFound
	}
	if err != nil {
		return nil, 0, unavailable(err)
	}
	var s broker.SessionState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, 0, fmt.Errorf("session record %s: %w", e.Key(), err)
	}
	if s.Tenant != tenant || s.ClientID != clientID {
		return nil, 0, fmt.Errorf("session record %s belongs to %s/%s", e.Key(), s.Tenant, s.ClientID)
	}
	if !s.Connected && s.Expiry > 0 && time.Since(s.LastSeen) > s.Expiry {
		// Expired while offline [MQTT-3.1.2-23 analogue]: start afresh.
		if err := b.DeleteSession(ctx, tenant, clientID); err != nil {
			return nil, 0, err
		}
		return nil, 0, broker.ErrSessionNotFound
	}
	return &s, e.Revision(), nil
}

// SaveSession implements broker.SessionStore.
func (b *Bus) SaveSession(ctx context.Context, s *broker.SessionState, rev uint64) (uint64, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return 0, err
	}
	key := sessionKey(s.Tenant, s.ClientID)
	var nrev uint64
	if rev == 0 {
		nrev, err = b.sessions.Create(ctx, key, data)
	} else {
		nrev, err = b.sessions.Update(ctx, key, data, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, broker.ErrSessionConflict
	case err != nil && strings.Contains(err.Error(), "wrong last sequence"):
		return 0, broker.ErrSessionConflict
	case err != nil:
		return 0, unavailable(err)
	}
	return nrev, nil
}

// DeleteSession implements broker.SessionStore.
func (b *Bus) DeleteSession(ctx context.Context, tenant, clientID string) error {
	err := b.js.DeleteConsumer(ctx, StreamMessages, consumerName(tenant, clientID))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return unavailable(err)
	}
	if err := b.clearQoS2(ctx, tenant, clientID); err != nil {
		return err
	}
	if err := b.sessions.Purge(ctx, sessionKey(tenant, clientID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return unavailable(err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// QoS 2 inbound state: one RELAY_QOS2 entry per session (the session key),
// whose value lists the received, unreleased packet IDs. Only the
// connection holding the session writes it, so a read-modify-write is safe;
// loading it at connect is one direct get.

// MarkQoS2 implements broker.SessionStore.
func (b *Bus) MarkQoS2(ctx context.Context, tenant, clientID string, id uint16, set bool) error {
	key := sessionKey(tenant, clientID)
	ids, err := b.QoS2(ctx, tenant, clientID)
	if err != nil {
		return err
	}
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	if set {
		out = append(out, id)
	}
	if len(out) == 0 {
		err = b.qos2.Purge(ctx, key)
	} else {
		_, err = b.qos2.Put(ctx, key, formatIDs(out))
	}
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// QoS2 implements broker.SessionStore.
func (b *Bus) QoS2(ctx context.Context, tenant, clientID string) ([]uint16, error) {
	e, err := b.qos2.Get(ctx, sessionKey(tenant, clientID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err)
	}
	var ids []uint16
	for _, f := range strings.Split(string(e.Value()), ",") {
		if n, err := strconv.Atoi(f); err == nil && n > 0 && n <= 65535 {
			ids = append(ids, uint16(n))
		}
	}
	return ids, nil
}

func formatIDs(ids []uint16) []byte {
	var b []byte
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(id), 10)
	}
	return b
}

func (b *Bus) clearQoS2(ctx context.Context, tenant, clientID string) error {
	if err := b.qos2.Purge(ctx, sessionKey(tenant, clientID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return unavailable(err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Session queues.

// OpenQueue implements broker.SessionStore.
func (b *Bus) OpenQueue(ctx context.Context, s *broker.SessionState) (broker.Queue, error) {
	q := &queue{
		b: b, tenant: s.Tenant, name: consumerName(s.Tenant, s.ClientID), expiry: s.Expiry,
		changed: make(chan struct{}, 1), closed: make(chan struct{}),
	}
	var subs []broker.Subscription
	for _, sub := range s.Subscriptions {
		if sub.QoS > 0 {
			if f, err := topic.ParseFilter(sub.Filter); err == nil && f.Kind == topic.Normal {
				subs = append(subs, sub)
			}
		}
	}
	if len(subs) == 0 {
		// Update would delete a consumer that cannot exist: a session
		// without QoS ≥ 1 subscriptions never keeps one.
		return q, nil
	}
	if err := q.Update(ctx, subs); err != nil {
		return nil, err
	}
	return q, nil
}

// queue is a session's durable queue: one pull consumer, or none while the
// session has no QoS ≥ 1 subscription.
type queue struct {
	b      *Bus
	tenant string
	name   string
	expiry time.Duration

	mu      sync.Mutex
	cons    jetstream.Consumer // nil: no consumer
	filters []string
	iter    jetstream.MessagesContext
	changed chan struct{} // cap 1: cons changed
	// resentUpTo is the last stream sequence delivered before a Reset.
	resentUpTo uint64
	closed     chan struct{}
	once       sync.Once
}

// Update implements broker.Queue.
func (q *queue) Update(ctx context.Context, subs []broker.Subscription) error {
	filters := consumerFilters(q.tenant, subs)
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(filters) == 0 {
		if q.iter != nil {
			q.iter.Stop()
			q.iter = nil
		}
		q.cons = nil
		q.filters = nil
		err := q.b.js.DeleteConsumer(ctx, StreamMessages, q.name)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return unavailable(err)
		}
		return nil
	}
	if q.cons != nil && equalStrings(filters, q.filters) {
		return nil
	}
	cfg := jetstream.ConsumerConfig{
		Durable:           q.name,
		Description:       "Relay session queue",
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           q.b.opts.AckWait,
		MaxDeliver:        -1,
		MaxAckPending:     65535,
		FilterSubjects:    filters,
		InactiveThreshold: q.expiry,
	}
	if len(filters) == 1 {
		cfg.FilterSubject, cfg.FilterSubjects = filters[0], nil
	}
	cons, err := q.b.js.CreateOrUpdateConsumer(ctx, StreamMessages, cfg)
	if err != nil {
		return unavailable(fmt.Errorf("session consumer %s: %w", q.name, err))
	}
	first := q.cons == nil
	q.cons, q.filters = cons, filters
	if first {
		select {
		case q.changed <- struct{}{}:
		default:
		}
	}
	return nil
}

// consumerFilters returns non-overlapping consumer filter subjects that
// receive every stored message matching subs. JetStream rejects
// overlapping filters (error 10138), so filters covered by another are
// dropped; if partial overlaps remain, the whole tenant is used and the
// broker filters (it checks every queued message against its subscriptions).
func consumerFilters(tenant string, subs []broker.Subscription) []string {
	var all []string
	for _, s := range subs {
		f, err := topic.ParseFilter(s.Filter)
		if err != nil || f.Kind != topic.Normal {
			continue
		}
		for _, t := range topic.FilterSubjects(f.Topic) {
			all = append(all, prefixMsg+tenant+".1."+t)
		}
	}
	var out []string
	for i, a := range all {
		covered := false
		for j, o := range all {
			if i != j && subjectSubset(a, o) && (!subjectSubset(o, a) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, a)
		}
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if subjectsCollide(out[i], out[j]) {
				return []string{prefixMsg + tenant + ".1.>"}
			}
		}
	}
	return out
}

// subjectSubset reports whether every subject matched by a is matched by b.
func subjectSubset(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, x := range bt {
		if x == ">" {
			return len(at) > i
		}
		if i >= len(at) {
			return false
		}
		switch {
		case at[i] == ">":
			return false
		case x == "*":
		case at[i] == "*" || at[i] != x:
			return false
		}
	}
	return len(at) == len(bt)
}

// subjectsCollide reports whether some subject matches both a and b.
func subjectsCollide(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		ae, be := i >= len(at), i >= len(bt)
		switch {
		case ae && be:
			return true
		case ae:
			return false
		case be:
			return false
		}
		if at[i] == ">" || bt[i] == ">" {
			return true
		}
		if at[i] != "*" && bt[i] != "*" && at[i] != bt[i] {
			return false
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Next implements broker.Queue.
func (q *queue) Next(ctx context.Context) (broker.Delivery, error) {
	for {
		q.mu.Lock()
		it, cons := q.iter, q.cons
		if it == nil && cons != nil {
			var err error
			it, err = cons.Messages(jetstream.PullMaxMessages(64))
			if err != nil {
				q.mu.Unlock()
				return nil, unavailable(err)
			}
			q.iter = it
		}
		q.mu.Unlock()
		if it == nil {
			select {
			case <-q.changed:
				continue
			case <-q.closed:
				return nil, broker.ErrQueueClosed
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		stop := context.AfterFunc(ctx, it.Stop)
		msg, err := it.Next()
		stop()
		if err != nil {
			select {
			case <-q.closed:
				return nil, broker.ErrQueueClosed
			default:
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			q.mu.Lock()
			if q.iter == it {
				q.iter = nil
			}
			q.mu.Unlock()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				continue // filters changed or consumer removed
			}
			return nil, unavailable(err)
		}
		d, err := q.delivery(msg)
		if err != nil {
			q.b.log.Warn("dropping malformed queued message", "subject", msg.Subject(), "err", err)
			msg.Term()
			continue
		}
		return d, nil
	}
}

func (q *queue) delivery(msg jetstream.Msg) (*delivery, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	tn, tail, ok := splitMsgSubject(msg.Subject())
	if !ok || tn != q.tenant {
		return nil, fmt.Errorf("subject %q outside tenant %q", msg.Subject(), q.tenant)
	}
	m, err := decodeMessage(tn, tail, msg.Data())
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	resent := meta.Sequence.Stream <= q.resentUpTo
	q.mu.Unlock()
	return &delivery{msg: msg, m: m, seq: meta.Sequence.Stream, redelivered: meta.NumDelivered > 1 || resent}, nil
}

// Pending implements broker.Queue.
func (q *queue) Pending(ctx context.Context) (uint64, error) {
	q.mu.Lock()
	cons := q.cons
	q.mu.Unlock()
	if cons == nil {
		return 0, nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, unavailable(err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Reset makes every unacknowledged message deliverable at once (used when
// the session's previous connection died with its edge).
func (q *queue) Reset(ctx context.Context) error {
	q.mu.Lock()
	has := q.cons != nil
	q.mu.Unlock()
	if !has || q.cons == nil {
		return nil
	}
	info, err := q.cons.Info(ctx)
	if err != nil {
		return unavailable(err)
	}
	if _, err := q.b.js.ResetConsumer(ctx, StreamMessages, q.name); err != nil {
		return unavailable(err)
	}
	// The reset clears delivery counts; remember what was sent before so
	// that those messages still go out with DUP set [MQTT-3.3.1-1].
	q.mu.Lock()
	q.resentUpTo = info.Delivered.Stream
	q.mu.Unlock()
	return nil
}

// Close implements broker.Queue.
func (q *queue) Close() error {
	q.once.Do(func() {
		close(q.closed)
		q.mu.Lock()
		if q.iter != nil {
			q.iter.Stop()
			q.iter = nil
		}
		q.mu.Unlock()
	})
	return nil
}

type delivery struct {
	msg         jetstream.Msg
	m           *broker.Message
	seq         uint64
	redelivered bool
}

func (d *delivery) Message() *broker.Message { return d.m }
func (d *delivery) Seq() uint64              { return d.seq }
func (d *delivery) Redelivered() bool        { return d.redelivered }
func (d *delivery) Ack() error               { return d.msg.Ack() }
func (d *delivery) Nak() error               { return d.msg.Nak() }
