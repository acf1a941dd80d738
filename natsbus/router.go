package natsbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// retainedTombstoneTTL is how long the marker that clears a retained
// message stays in the stream (it must outlive the message it replaces
// only briefly: MaxMsgsPerSubject already removed that one).
const retainedTombstoneTTL = "60s"

const prefixMsgLen = len(prefixMsg) + 3

// controlOverhead is the room a PUB line needs beyond its subject: the
// verb, a reply subject (our ack inbox) and the size.
const controlOverhead = 128

// Publish implements broker.Router.
func (b *Bus) Publish(m *broker.Message, done func(error)) error {
	if prefixMsgLen+len(m.Tenant)+topic.SubjectLen(m.Topic)+controlOverhead > b.opts.MaxControlLine {
		return fmt.Errorf("%w: topic of %d bytes", broker.ErrTooLarge, len(m.Topic))
	}
	// The largest envelope is a session-queue copy: it carries the topic.
	size := len(m.Payload) + len(m.Topic) + len(m.Origin) + len(m.ClientID) + 64
	if m.Props != nil {
		var tmp [512]byte
		size += len(appendProps(tmp[:0], m.Props))
	}
	if size > b.maxPayload() {
		return fmt.Errorf("%w: message of %d bytes", broker.ErrTooLarge, size)
	}
	stored := m.QoS > 0
	if !stored && !m.Retain {
		// QoS 0: core NATS only (if any other node wants the tenant), no
		// allocation beyond nats.go's own.
		if b.interest.needsNATS(m.Tenant) {
			bp := b.getBuf()
			buf := msgSubject(*bp, m.Tenant, false, m.Topic)
			sl := len(buf)
			buf = appendEnvelope(buf, m, false)
			err := b.dc.Publish(bytesString(buf[:sl]), buf[sl:])
			*bp = buf
			b.putBuf(bp)
			if err != nil {
				return unavailable(err)
			}
		}
		b.deliverLocal(m)
		if done != nil {
			done(nil)
		}
		return nil
	}

	// Which persistent sessions queue it?
	var targets []indexEntry
	if stored {
		targets = b.index.match(nil, m.Tenant, m.Topic)
	}
	parts := len(targets)
	if m.Retain {
		parts++
	}
	if done == nil {
		done = func(err error) {
			if err != nil {
				b.log.Warn("retained message not stored", "err", err)
			}
		}
	}
	if parts > 1 {
		done = joinDone(int32(parts), done)
	}

	// Live: every edge's routes (if any other node wants the tenant). The
	// envelope is also the retained copy's body.
	var (
		buf []byte
		sl  int
	)
	live := b.interest.needsNATS(m.Tenant)
	if live || m.Retain {
		bp := b.getBuf()
		defer b.putBuf(bp)
		buf = msgSubject(*bp, m.Tenant, stored, m.Topic)
		sl = len(buf)
		buf = appendEnvelope(buf, m, false)
		*bp = buf
	}
	if live {
		if err := b.dc.Publish(bytesString(buf[:sl]), buf[sl:]); err != nil {
			return unavailable(err)
		}
	}
	b.deliverLocal(m)
	if m.Retain {
		subj := string(retSubject(make([]byte, 0, 32+len(m.Topic)), m.Tenant, m.Topic))
		rm := &nats.Msg{Subject: subj, Data: buf[sl:]}
		switch {
		case len(m.Payload) == 0:
			// An empty retained message clears the topic [MQTT-3.3.1-10];
			// the tombstone ages out by itself.
			rm.Header = nats.Header{"Nats-TTL": []string{retainedTombstoneTTL}}
		case !m.Expiry.IsZero():
			// A retained message with a Message Expiry Interval leaves the
			// store when it expires [MQTT-3.3.2-5]; until then readers
			// check the expiry in the envelope.
			secs := max(int64((time.Until(m.Expiry)+time.Second-1)/time.Second), 1)
			rm.Header = nats.Header{"Nats-TTL": []string{strconv.FormatInt(secs, 10)}}
		}
		if err := b.publishStored(rm, done); err != nil {
			done(err)
		}
	}
	if len(targets) == 0 {
		if !m.Retain {
			done(nil) // no persistent session wants it: delivered live only
		}
		return nil
	}

	// Durable: one copy in the queue of every matching persistent session,
	// with the topic in the envelope and the QoS it is delivered with.
	qb := b.getBuf()
	defer b.putBuf(qb)
	env := appendEnvelope(*qb, m, true)
	*qb = env
	for _, t := range targets {
		env[1] = env[1]&^3 | min(m.QoS, t.qos)
		if err := b.publishStored(&nats.Msg{Subject: queueSubject(m.Tenant, t.sid), Data: env}, done); err != nil {
			done(err)
		}
	}
	return nil
}

// maxPayload is the NATS servers' max_payload, as of the last (re)connect
// (nats.go's MaxPayload takes a lock on every call).
func (b *Bus) maxPayload() int {
	if n := b.maxPay.Load(); n > 0 {
		return int(n)
	}
	return int(b.nc.MaxPayload())
}

// LocalDelivery implements broker.Router: with a data connection that does
// not echo (Options.DataConn), Publish hands every message it sent to h,
// after the live publish and before it returns, and routes receive only
// messages other connections published. Without one it reports false and
// routes receive this edge's publishes through NATS like any other.
func (b *Bus) LocalDelivery(h broker.Handler) bool {
	if b.dc == b.nc {
		return false
	}
	b.local.Store(&h)
	return true
}

// deliverLocal hands m to the broker's local delivery, if any.
func (b *Bus) deliverLocal(m *broker.Message) {
	if h := b.local.Load(); h != nil {
		(*h)(m)
	}
}

// bytesString returns b as a string without copying, for a subject handed
// to nats.go's Publish: it copies the subject into its write buffer before
// returning and keeps no reference, so b may be reused afterwards. (A
// string conversion was the QoS 0 publish's only allocation.)
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// joinDone returns a function that calls done once, after n calls, with the
// first error.
func joinDone(n int32, done func(error)) func(error) {
	var left atomic.Int32
	var first atomic.Pointer[error]
	left.Store(n)
	return func(err error) {
		if err != nil {
			first.CompareAndSwap(nil, &err)
		}
		if left.Add(-1) == 0 {
			if e := first.Load(); e != nil {
				done(*e)
			} else {
				done(nil)
			}
		}
	}
}

// route is an open broker.Route: one NATS subscription per subject.
type route struct {
	subs []*nats.Subscription
	// bus, tenant and echo undo the route's count in the tenant interest
	// (nil bus: not counted).
	bus    *Bus
	tenant string
	echo   bool
	once   sync.Once
}

// Close implements broker.Route.
func (r *route) Close() error {
	var first error
	r.once.Do(func() {
		for _, s := range r.subs {
			if err := s.Unsubscribe(); err != nil && first == nil {
				first = err
			}
		}
		if r.bus != nil {
			r.bus.interest.remove(r.tenant, r.echo)
		}
	})
	return first
}

// Subscribe implements broker.Router.
func (b *Bus) Subscribe(tenant string, f topic.Filter, class broker.Class, h broker.Handler) (broker.Route, error) {
	if f.Kind == topic.Local && b.local.Load() != nil {
		// Only this edge's own publishes, which LocalDelivery hands over.
		return &route{}, nil
	}
	conn := b.dc
	if f.Kind == topic.Shared {
		// NATS picks the group's member for every message, this edge's
		// own publishes included: the connection that echoes.
		conn = b.nc
	}
	return b.subscribe(conn, tenant, f, class, h)
}

// Watch is Subscribe for observers that are not the broker's routes (the
// HTTP API's live watch): the route receives every matching message,
// this node's own publishes included.
func (b *Bus) Watch(tenant string, f topic.Filter, class broker.Class, h broker.Handler) (broker.Route, error) {
	return b.subscribe(b.nc, tenant, f, class, h)
}

func (b *Bus) subscribe(conn *nats.Conn, tenant string, f topic.Filter, class broker.Class, h broker.Handler) (broker.Route, error) {
	c := "*"
	if class == broker.ClassQoS0 {
		c = "0"
	}
	queue := ""
	if f.Kind == topic.Shared {
		// One NATS queue group per (tenant, group, filter): MQTT shares
		// are identified by group and filter together [MQTT-4.8.2].
		sum := sha256.Sum256([]byte(tenant + "\x00" + f.Group + "\x00" + f.Topic))
		queue = "share_" + hex.EncodeToString(sum[:12])
	}
	handler := func(nm *nats.Msg) {
		tn, tail, ok := splitMsgSubject(nm.Subject)
		if !ok || tn != tenant {
			return
		}
		m, err := decodeMessage(tn, tail, nm.Data, &b.origins)
		if err != nil {
			b.log.Warn("dropping malformed backbone message", "subject", nm.Subject, "err", err)
			return
		}
		h(m)
	}
	r := &route{bus: b, tenant: tenant, echo: conn == b.nc}
	for _, s := range topic.FilterSubjects(f.Topic) {
		subj := prefixMsg + tenant + "." + c + "." + s
		var (
			ns  *nats.Subscription
			err error
		)
		if queue != "" {
			ns, err = conn.QueueSubscribe(subj, queue, handler)
		} else {
			ns, err = conn.Subscribe(subj, handler)
		}
		if err != nil {
			r.bus = nil // not counted yet
			r.Close()
			return nil, unavailable(fmt.Errorf("subscribe %s: %w", subj, err))
		}
		// The broker's handler only queues; drop only at very high backlog.
		ns.SetPendingLimits(1<<20, 256<<20)
		r.subs = append(r.subs, ns)
	}
	// Announced once the subscriptions exist: another node that learns
	// of the tenant from now on publishes to NATS, where they are.
	b.interest.add(tenant, r.echo)
	return r, nil
}

// ---------------------------------------------------------------------------
// Sync: nats.go sends SUB to the server asynchronously, so a subscription
// made just now may not be known to the server yet; a message another
// connection (another edge) publishes meanwhile is not delivered to it. A
// flush (PING, answered by PONG after everything before it, SUB included,
// is processed) closes that gap. Concurrent callers share flushes: each
// waits for the first flush that starts after it asked, so a subscribe
// storm costs one round trip at a time, not one per SUBSCRIBE.
//
// In a NATS cluster the server a publisher is connected to learns of the
// interest from ours a little later (routes propagate it asynchronously);
// the flush covers publishers on the same server.

// syncer groups the flushes of Sync.
type syncer struct {
	mu      sync.Mutex
	running bool         // flushLoop runs (counted in Bus.wg)
	closed  bool         // the Bus is closing: no new flushLoop
	waiting []chan error // for the next flush
}

// Sync implements broker.Router.
func (b *Bus) Sync(ctx context.Context) error {
	ch := make(chan error, 1)
	s := &b.syncs
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%w: shutting down", broker.ErrBackboneUnavailable)
	}
	s.waiting = append(s.waiting, ch)
	start := !s.running
	if start {
		s.running = true
		b.wg.Add(1)
	}
	s.mu.Unlock()
	if start {
		go b.flushLoop()
	}
	select {
	case err := <-ch:
		if err != nil {
			return unavailable(err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushLoop flushes while callers wait, each flush answering those who
// asked before it started.
func (b *Bus) flushLoop() {
	defer b.wg.Done()
	s := &b.syncs
	for {
		s.mu.Lock()
		waiting := s.waiting
		s.waiting = nil
		if len(waiting) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		err := b.dc.FlushTimeout(b.opts.AckTimeout)
		if err == nil && b.dc != b.nc {
			err = b.nc.FlushTimeout(b.opts.AckTimeout) // shared routes
		}
		if err == nil {
			// Every node publishes the tenants of the new routes to NATS.
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.AckTimeout)
			b.interestBarrier(ctx)
			cancel()
		}
		for _, ch := range waiting {
			ch <- err
		}
	}
}
