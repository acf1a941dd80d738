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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
)

// Session records live in the RELAY_SESSIONS bucket under
// "<tenant>.<base64url(client ID)>". A persistent session's queue is its own
// subject "rly.q.<tenant>.<session id>" in the RELAY_QUEUE stream: the
// publishing edge writes a copy of each QoS ≥ 1 message there for every
// matching session (see sessionIndex), and the edge holding the session
// reads it with a short-lived in-memory consumer. Acknowledged messages are
// purged from the subject, so what is left is exactly what the session has
// not acknowledged: a new connection, on any edge, simply reads the subject
// from its start. No consumer exists for an offline session.

// sessionKey returns the bucket key of a session.
func sessionKey(tenant, clientID string) string {
	return tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

// sessionID returns the token that names a session's queue subject.
func sessionID(tenant, clientID string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + clientID))
	return hex.EncodeToString(sum[:16])
}

// queueSubject returns a session's queue subject.
func queueSubject(tenant, sid string) string { return prefixQueue + tenant + "." + sid }

// LoadSession implements broker.SessionStore. A disconnected session whose
// expiry has passed counts as not found.
//
// Sessions unknown to the index (kept current by the watch) are not read
// from the store: a clean-session CONNECT, the common case, costs no
// JetStream round trip. A session stored on another edge in the last
// moment may be missed (the watch takes about a millisecond).
func (b *Bus) LoadSession(ctx context.Context, tenant, clientID string) (*broker.SessionState, uint64, error) {
	if !b.index.stored(sessionID(tenant, clientID)) {
		return nil, 0, broker.ErrSessionNotFound
	}
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
	if !s.Connected && time.Since(s.LastSeen) > s.Expiry {
		// Expired while offline: start afresh [MQTT-3.1.2-23]. (A session
		// with expiry 0 ends with its connection; one left behind offline
		// is gone too.)
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
	sid := sessionID(s.Tenant, s.ClientID)
	added := !b.index.covers(s.Tenant, sid, s.Subscriptions)
	b.index.set(s.Tenant, sid, s.Subscriptions, nrev)
	if added {
		b.barrier(ctx, nrev)
	}
	return nrev, nil
}

// DeleteSession implements broker.SessionStore.
func (b *Bus) DeleteSession(ctx context.Context, tenant, clientID string) error {
	sid := sessionID(tenant, clientID)
	b.index.remove(tenant, sid, 0)
	if err := b.queue.Purge(ctx, jetstream.WithPurgeSubject(queueSubject(tenant, sid))); err != nil {
		return unavailable(err)
	}
	if err := b.cursors.Purge(ctx, sessionKey(tenant, clientID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
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
func (b *Bus) MarkQoS2(ctx context.Context, tenant, clientID string, kind broker.QoS2Kind, id uint16, seq uint64, set bool) error {
	st, err := b.QoS2(ctx, tenant, clientID)
	if err != nil {
		return err
	}
	if kind == broker.QoS2Released {
		out := st.Released[:0]
		for _, r := range st.Released {
			if r.ID != id {
				out = append(out, r)
			}
		}
		if set {
			out = append(out, broker.Released{ID: id, Seq: seq})
		}
		st.Released = out
	} else {
		out := st.Received[:0]
		for _, x := range st.Received {
			if x != id {
				out = append(out, x)
			}
		}
		if set {
			out = append(out, id)
		}
		st.Received = out
	}
	key := sessionKey(tenant, clientID)
	if len(st.Received) == 0 && len(st.Released) == 0 {
		err = b.qos2.Purge(ctx, key)
	} else {
		data, _ := json.Marshal(&st)
		_, err = b.qos2.Put(ctx, key, data)
	}
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// QoS2 implements broker.SessionStore.
func (b *Bus) QoS2(ctx context.Context, tenant, clientID string) (broker.QoS2State, error) {
	var st broker.QoS2State
	e, err := b.qos2.Get(ctx, sessionKey(tenant, clientID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, unavailable(err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		b.log.Warn("unreadable QoS 2 state; ignored", "key", e.Key(), "err", err)
		return broker.QoS2State{}, nil
	}
	return st, nil
}

func (b *Bus) clearQoS2(ctx context.Context, tenant, clientID string) error {
	if err := b.qos2.Purge(ctx, sessionKey(tenant, clientID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return unavailable(err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Session queues.

// OpenQueue implements broker.SessionStore: it starts reading the session's
// queue subject from its first remaining (unacknowledged) message.
func (b *Bus) OpenQueue(ctx context.Context, s *broker.SessionState, unclean bool) (broker.Queue, error) {
	sid := sessionID(s.Tenant, s.ClientID)
	q := &queue{
		b: b, key: sessionKey(s.Tenant, s.ClientID), tenant: s.Tenant, subject: queueSubject(s.Tenant, sid),
		name:   "q_" + sid + "_" + nats.NewInbox()[len(nats.InboxPrefix):len(nats.InboxPrefix)+8],
		acked:  make(map[uint64]struct{}),
		closed: make(chan struct{}),
	}
	// Messages an earlier connection had sent but not seen acknowledged
	// go out again with DUP set [MQTT-3.3.1-1].
	if e, err := b.cursors.Get(ctx, q.key); err == nil {
		q.dupUpTo, _ = strconv.ParseUint(string(e.Value()), 10, 64)
		q.cursorAt = q.dupUpTo
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, unavailable(err)
	}
	if unclean {
		// The previous connection's edge died: anything in the queue may
		// have been sent already, and the edge could not say how far it
		// got [MQTT-3.3.1-1].
		si, err := b.queue.Info(ctx)
		if err != nil {
			return nil, unavailable(err)
		}
		q.dupUpTo = max(q.dupUpTo, si.State.LastSeq)
	}
	if err := q.open(ctx); err != nil {
		return nil, err
	}
	b.trackQueue(q, true)
	if info := q.cons.CachedInfo(); info != nil && b.opts.SessionQueueMax > 0 && info.NumPending >= uint64(b.opts.SessionQueueMax) {
		b.overflows.Add(1)
		b.log.Warn("session queue reached its cap while offline; the oldest messages were dropped",
			"tenant", s.Tenant, "client", s.ClientID, "cap", b.opts.SessionQueueMax)
	}
	return q, nil
}

// queue is the open queue of a connected persistent session.
type queue struct {
	b       *Bus
	key     string // session key
	tenant  string
	subject string
	name    string // consumer name

	mu        sync.Mutex
	cons      jetstream.Consumer
	iter      jetstream.MessagesContext
	delivered []uint64            // sequences handed out and not yet below floor, ascending
	acked     map[uint64]struct{} // acknowledged sequences above floor
	floor     uint64              // every delivered sequence ≤ floor is acknowledged
	purged    uint64              // floor as last purged from the subject
	maxSeen   uint64              // highest sequence handed out
	dupUpTo   uint64              // sequences ≤ this were sent by an earlier connection
	cursorAt  uint64              // the stored cursor when the queue opened
	flushing  bool                // a purge is scheduled
	closed    chan struct{}
	once      sync.Once
}

// open creates the queue's consumer: in memory, since the subject itself
// is the durable state, and removed by JetStream if this edge dies.
func (q *queue) open(ctx context.Context) error {
	cons, err := q.b.queue.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Name:              q.name,
		FilterSubject:     q.subject,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           q.b.opts.AckWait,
		MaxDeliver:        -1,
		MaxAckPending:     65535,
		MemoryStorage:     true,
		InactiveThreshold: max(time.Minute, 2*q.b.opts.AckWait),
	})
	if err != nil {
		return unavailable(fmt.Errorf("session queue consumer: %w", err))
	}
	q.mu.Lock()
	q.cons = cons
	q.mu.Unlock()
	return nil
}

// Next implements broker.Queue.
func (q *queue) Next(ctx context.Context) (broker.Delivery, error) {
	for {
		select {
		case <-q.closed:
			return nil, broker.ErrQueueClosed
		default:
		}
		q.mu.Lock()
		it := q.iter
		if it == nil {
			var err error
			it, err = q.cons.Messages(jetstream.PullMaxMessages(64))
			if err != nil {
				q.mu.Unlock()
				// The consumer is gone (NATS restarted): make a new one.
				if oerr := q.open(ctx); oerr != nil {
					return nil, oerr
				}
				continue
			}
			q.iter = it
		}
		q.mu.Unlock()
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
				q.iter.Stop()
				q.iter = nil
			}
			q.mu.Unlock()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				continue // reopened: Next starts a new iterator
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
				errors.Is(err, jetstream.ErrNoHeartbeat) {
				if oerr := q.open(ctx); oerr != nil {
					return nil, oerr
				}
				continue
			}
			return nil, unavailable(err)
		}
		d, err := q.delivery(msg)
		if err != nil {
			q.b.log.Warn("dropping malformed queued message", "subject", msg.Subject(), "err", err)
			msg.Term()
			continue
		}
		if d == nil {
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
	m := &broker.Message{Tenant: q.tenant}
	if err := decodeEnvelope(m, msg.Data(), &q.b.origins); err != nil {
		return nil, err
	}
	if len(m.Topic) == 0 {
		return nil, errBadEnvelope
	}
	seq := meta.Sequence.Stream
	q.mu.Lock()
	_, acked := q.acked[seq]
	switch {
	case seq <= q.floor || acked:
		// Already acknowledged by the client (the purge has not caught
		// up, or a new consumer after a reconnect): never send it again.
		q.mu.Unlock()
		msg.Ack()
		return nil, nil
	case seq <= q.maxSeen:
		// Still in flight with the client (offered again after the ack
		// wait, or by a new consumer): its first delivery stands.
		q.mu.Unlock()
		msg.InProgress()
		return nil, nil
	}
	q.maxSeen = seq
	q.delivered = append(q.delivered, seq)
	dup := seq <= q.dupUpTo
	q.mu.Unlock()
	return &delivery{q: q, msg: msg, m: m, seq: seq, redelivered: meta.NumDelivered > 1 || dup}, nil
}

// acked records that seq was acknowledged and schedules a purge of the
// acknowledged prefix of the subject.
func (q *queue) ack(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if seq <= q.floor {
		return
	}
	q.acked[seq] = struct{}{}
	n := 0
	for ; n < len(q.delivered); n++ {
		s := q.delivered[n]
		if _, ok := q.acked[s]; !ok {
			break
		}
		delete(q.acked, s)
		q.floor = s
	}
	if n > 0 {
		rest := copy(q.delivered, q.delivered[n:])
		q.delivered = q.delivered[:rest]
	}
	if q.floor > q.purged && !q.flushing {
		q.flushing = true
		time.AfterFunc(purgeDelay, q.flushPurge)
	}
}

// purgeDelay batches purges of acknowledged messages: a crash of the edge
// redelivers at most the messages acknowledged in this window.
const purgeDelay = 200 * time.Millisecond

func (q *queue) flushPurge() {
	ctx, cancel := context.WithTimeout(context.Background(), q.b.opts.AckTimeout)
	defer cancel()
	q.purge(ctx)
}

// purge removes the acknowledged prefix of the subject.
func (q *queue) purge(ctx context.Context) {
	q.mu.Lock()
	floor := q.floor
	q.flushing = false
	if floor <= q.purged {
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	err := q.b.queue.Purge(ctx, jetstream.WithPurgeSubject(q.subject), jetstream.WithPurgeSequence(floor+1))
	if err != nil {
		q.b.log.Warn("purging acknowledged queue messages", "subject", q.subject, "err", err)
		return
	}
	q.mu.Lock()
	if floor > q.purged {
		q.purged = floor
	}
	q.mu.Unlock()
}

// reopen recreates the consumer (it lived in the memory of a NATS server
// that may have restarted) and restarts the iterator, so that the session
// goes on without waiting for missed heartbeats.
func (q *queue) reopen() {
	select {
	case <-q.closed:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.b.opts.AckTimeout)
	defer cancel()
	if err := q.open(ctx); err != nil {
		q.b.log.Warn("reopening session queue after reconnect", "subject", q.subject, "err", err)
	}
	q.mu.Lock()
	if q.iter != nil {
		q.iter.Stop() // Next starts a new one on the new consumer
		q.iter = nil
	}
	q.mu.Unlock()
}

// Pending implements broker.Queue.
func (q *queue) Pending(ctx context.Context) (uint64, error) {
	q.mu.Lock()
	cons := q.cons
	q.mu.Unlock()
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, unavailable(err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Close implements broker.Queue: it purges what was acknowledged, notes
// what was sent but not acknowledged (to be resent with DUP), and removes
// the consumer. The messages stay in the subject.
func (q *queue) Close() error {
	q.once.Do(func() {
		close(q.closed)
		q.mu.Lock()
		if q.iter != nil {
			q.iter.Stop()
			q.iter = nil
		}
		inflight := q.maxSeen > q.floor
		maxSeen := q.maxSeen
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), q.b.opts.AckTimeout)
		defer cancel()
		q.purge(ctx)
		// What may have been sent: by this connection, and by an earlier
		// one (an unclean takeover found its edge dead). Keeping the
		// latter matters when this connection ends before sending it all
		// again — e.g. it failed right after claiming the session: the
		// next one no longer sees the dead edge's claim, only the cursor
		// [MQTT-3.3.1-1].
		upTo := q.dupUpTo
		if inflight {
			upTo = max(upTo, maxSeen)
		}
		if upTo > q.cursorAt {
			q.b.cursors.Put(ctx, q.key, strconv.AppendUint(nil, upTo, 10))
		}
		if err := q.b.queue.DeleteConsumer(ctx, q.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			q.b.log.Debug("deleting session queue consumer", "err", err)
		}
		q.b.trackQueue(q, false)
	})
	return nil
}

type delivery struct {
	q           *queue
	msg         jetstream.Msg
	m           *broker.Message
	seq         uint64
	redelivered bool
}

func (d *delivery) Message() *broker.Message { return d.m }
func (d *delivery) Seq() uint64              { return d.seq }
func (d *delivery) Redelivered() bool        { return d.redelivered }
func (d *delivery) Nak() error               { return d.msg.Nak() }

// Ack acknowledges the message to the consumer and marks it for purging.
func (d *delivery) Ack() error {
	d.q.ack(d.seq)
	return d.msg.Ack()
}

// Settle acknowledges the message and deletes it from the stream at once.
func (d *delivery) Settle(ctx context.Context) error {
	if err := d.q.b.queue.DeleteMsg(ctx, d.seq); err != nil && !notFound(err) {
		return unavailable(err)
	}
	d.q.ack(d.seq)
	d.msg.Ack()
	return nil
}

// notFound reports whether err says a stream message does not exist (any
// of JetStream's codes for it).
func notFound(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound || apiErr.ErrorCode == 10057))
}
