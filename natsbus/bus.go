// Package natsbus implements the broker's backbone on NATS: core NATS
// carries live messages between edges, JetStream keeps persistent sessions,
// their queues, retained messages, QoS 2 state and wills.
package natsbus

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
)

// Stream and bucket names.
const (
	StreamQueue    = "RELAY_QUEUE"
	StreamRetained = "RELAY_RETAINED"
	BucketCursors  = "RELAY_CURSORS"
	BucketSessions = "RELAY_SESSIONS"
	BucketQoS2     = "RELAY_QOS2"
	BucketWills    = "RELAY_WILLS"
	BucketNodes    = "RELAY_NODES"
	BucketMembers  = "RELAY_MEMBERS"
	BucketConns    = "RELAY_CONNS"
)

// Options configure a Bus.
type Options struct {
	// Conn is the NATS connection. Required; the Bus does not close it.
	Conn *nats.Conn
	// DataConn, if set, carries live messages: the routes' subscriptions
	// (except shared ones) and the live publishes of Publish. It must be
	// opened with nats.NoEcho(), so that this edge's routes receive only
	// what other connections publish and the broker delivers its own
	// publishes itself (Router.LocalDelivery). Optional; the Bus does not
	// close it.
	DataConn *nats.Conn
	// NodeID names this node. Required.
	NodeID string
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
	// Replicas is the replica count of streams and buckets (1 or 3 in a
	// cluster). Default 1.
	Replicas int
	// MessageMaxAge bounds how long a QoS ≥ 1 message waits for an
	// offline persistent session. Default 24 h.
	MessageMaxAge time.Duration
	// MessageMaxBytes bounds the stored queue messages of all sessions; the
	// oldest are dropped beyond it. Default -1 (unlimited).
	MessageMaxBytes int64
	// SessionQueueMax caps the messages queued for one persistent session;
	// beyond it the oldest are dropped (JetStream MaxMsgsPerSubject), and
	// the session is told in the log when it comes back. Default 1000.
	SessionQueueMax int
	// AckWait is how long a queued message delivered to a client may stay
	// unacknowledged before the backbone offers it again (after an edge
	// crash). Default 30 s.
	AckWait time.Duration
	// AckTimeout bounds the wait for JetStream to confirm a stored
	// message. Default 5 s.
	AckTimeout time.Duration
	// NodeTTL is how long a node stays alive without a heartbeat; after
	// it, surviving nodes publish the dead node's wills. Default 15 s.
	NodeTTL time.Duration
	// Memory stores streams in memory instead of files (tests).
	Memory bool
	// MaxControlLine is the NATS servers' max_control_line; publishes whose
	// subject would exceed it are refused with broker.ErrTooLarge instead
	// of making the server close the connection. Default 4096 (the NATS
	// default); the embedded server uses 256 KiB.
	MaxControlLine int
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MessageMaxAge == 0 {
		o.MessageMaxAge = 24 * time.Hour
	}
	if o.MessageMaxBytes == 0 {
		o.MessageMaxBytes = -1
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.SessionQueueMax == 0 {
		o.SessionQueueMax = 1000
	}
	if o.MaxControlLine == 0 {
		o.MaxControlLine = 4096
	}
	if o.NodeTTL == 0 {
		o.NodeTTL = 15 * time.Second
	}
}

// Bus is the NATS backbone of one node.
type Bus struct {
	opts Options
	nc   *nats.Conn
	// dc carries live messages (Options.DataConn, else nc).
	dc *nats.Conn
	// local is the broker's local delivery, called by Publish when dc
	// does not echo (router.go).
	local atomic.Pointer[broker.Handler]
	// interest tells which tenants' live messages others want
	// (interest.go); interestSynced is the last change every node
	// confirmed.
	interest       *interest
	interestSynced atomic.Uint64
	// maxPay caches the servers' max_payload (router.go: maxPayload).
	maxPay atomic.Int64
	js     jetstream.JetStream
	log    *slog.Logger

	queue    jetstream.Stream
	retained jetstream.Stream
	sessions jetstream.KeyValue
	cursors  jetstream.KeyValue
	qos2     jetstream.KeyValue
	wills    jetstream.KeyValue
	nodes    jetstream.KeyValue
	members  jetstream.KeyValue
	conns    jetstream.KeyValue

	// Stored publishes wait here for JetStream's answer on ackSub.
	ackPrefix string
	ackSub    *nats.Subscription
	ackMu     sync.Mutex
	ackNext   uint64
	acks      map[uint64]pendingPub

	kickMu   sync.Mutex
	kickFn   broker.KickFunc
	kickSubs []*nats.Subscription
	// kicks batches takeover broadcasts (cluster.go).
	kicks kickBatch
	// syncs groups the flushes of Sync (router.go).
	syncs syncer

	bufPool sync.Pool
	origins originTable // interned node IDs of decoded messages

	presence *presence

	// index routes QoS ≥ 1 messages to persistent sessions' queues.
	index *sessionIndex
	// overflows counts sessions that found their queue at its cap.
	overflows atomic.Uint64

	queuesMu sync.Mutex
	queues   map[*queue]struct{} // open session queues

	// appliedRev is the RELAY_SESSIONS revision the index has caught up
	// with; appliedCh is closed (and replaced) whenever it moves.
	appliedMu  sync.Mutex
	appliedRev uint64
	appliedCh  chan struct{}
	// othersAlive is how many other nodes were alive at the last heartbeat.
	othersAlive atomic.Int32
	// janitor is set on the live node with the lowest ID, which removes
	// expired sessions.
	janitor atomic.Bool

	// reapAfter holds the will reaper off until then (Unix nanoseconds):
	// after an outage, other nodes' heartbeats need time to come back.
	reapAfter atomic.Int64
	// orphans are the wills a previous run of this node ID left behind
	// (key → connection ID), published like a dead node's; owned by
	// startCluster, then by the heartbeat goroutine.
	orphans map[string]string

	// recount asks the heartbeat to count the live nodes now (a node
	// said hello).
	recount chan struct{}

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type pendingPub struct {
	done     func(error)
	deadline time.Time
}

var _ broker.Backbone = (*Bus)(nil)

// New validates opts and returns a Bus; Start connects it.
func New(opts Options) (*Bus, error) {
	opts.setDefaults()
	if opts.Conn == nil {
		return nil, errors.New("natsbus: Conn is required")
	}
	if opts.NodeID == "" {
		return nil, errors.New("natsbus: NodeID is required")
	}
	if opts.DataConn != nil && !opts.DataConn.Opts.NoEcho {
		return nil, errors.New("natsbus: DataConn must be opened with nats.NoEcho()")
	}
	js, err := jetstream.New(opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	dc := opts.DataConn
	if dc == nil {
		dc = opts.Conn
	}
	b := &Bus{
		opts: opts, nc: opts.Conn, dc: dc, js: js,
		log:       opts.Logger.With("component", "natsbus"),
		acks:      make(map[uint64]pendingPub),
		index:     newSessionIndex(),
		interest:  newInterest(opts.NodeID),
		presence:  newPresence(),
		queues:    make(map[*queue]struct{}),
		appliedCh: make(chan struct{}),
		quit:      make(chan struct{}),
	}
	b.bufPool.New = func() any { s := make([]byte, 0, 1024); return &s }
	b.interest.send = b.announce
	return b, nil
}

// Start creates or updates the streams and buckets, and starts the node's
// heartbeat, takeover handling and will reaper.
//
// JetStream may not be ready yet (a cluster electing its leaders, several
// edges starting at once): Start retries the setup until ctx ends.
func (b *Bus) Start(ctx context.Context) error {
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := b.setup(ctx)
		if err == nil {
			break
		}
		b.log.Warn("JetStream not ready; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsbus: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
	}
	b.ackPrefix = "_RLY_ACK." + nats.NewInbox()[len(nats.InboxPrefix):] + "."
	b.refreshMaxPayload()
	var err error
	b.ackSub, err = b.nc.Subscribe(b.ackPrefix+"*", b.onAck)
	if err != nil {
		return fmt.Errorf("natsbus: ack subscription: %w", err)
	}
	b.ackSub.SetPendingLimits(-1, -1)
	if err := b.watchSessions(ctx); err != nil {
		return err
	}
	if err := b.startCluster(ctx); err != nil {
		return err
	}
	if err := b.startInterest(); err != nil {
		return err
	}
	if err := b.startPresence(ctx); err != nil {
		return fmt.Errorf("natsbus: presence: %w", err)
	}
	b.wg.Add(1)
	go b.watchReconnects()
	b.wg.Add(1)
	go b.sweepAcks()
	return nil
}

// setup creates or updates the streams and buckets.
func (b *Bus) setup(ctx context.Context) error {
	// Each attempt gets its own deadline, so that a slow first answer is
	// retried rather than waited for.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	storage := jetstream.FileStorage
	if b.opts.Memory {
		storage = jetstream.MemoryStorage
	}
	var err error
	b.queue, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamQueue,
		Description:       "Relay: one subject per persistent session holding its unacknowledged QoS 1/2 messages",
		Subjects:          []string{prefixQueue + ">"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           storage,
		Replicas:          b.opts.Replicas,
		MaxAge:            b.opts.MessageMaxAge,
		MaxBytes:          b.opts.MessageMaxBytes,
		MaxMsgsPerSubject: int64(b.opts.SessionQueueMax),
		Discard:           jetstream.DiscardOld,
		// Each connected persistent session reads its subject with one
		// consumer: lift nats-server's default of 1,000 consumers per
		// stream (JSDefaultMaxConsumersPerStream).
		MaxConsumers: 10_000_000,
	})
	if err != nil {
		return fmt.Errorf("natsbus: stream %s: %w", StreamQueue, err)
	}
	b.retained, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamRetained,
		Description:       "Relay: retained messages, one per topic",
		Subjects:          []string{prefixRet + ">"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           storage,
		Replicas:          b.opts.Replicas,
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
		AllowMsgTTL:       true,
	})
	if err != nil {
		return fmt.Errorf("natsbus: stream %s: %w", StreamRetained, err)
	}
	kv := func(name, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		s, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, Storage: storage, Replicas: b.opts.Replicas, TTL: ttl,
		})
		if err != nil {
			return nil, fmt.Errorf("natsbus: bucket %s: %w", name, err)
		}
		return s, nil
	}
	if b.sessions, err = kv(BucketSessions, "Relay: persistent sessions", 0); err != nil {
		return err
	}
	if b.cursors, err = kv(BucketCursors, "Relay: last message sent to each persistent session before it disconnected", 0); err != nil {
		return err
	}
	if b.qos2, err = kv(BucketQoS2, "Relay: received, unreleased QoS 2 packet IDs", 0); err != nil {
		return err
	}
	if b.wills, err = kv(BucketWills, "Relay: wills of live connections, by node", 0); err != nil {
		return err
	}
	// Liveness is judged per node from each heartbeat's timestamp and the
	// node's own TTL; the bucket TTL only clears long-gone nodes' entries
	// (it must be the same for every node, whatever its --node-ttl).
	if b.nodes, err = kv(BucketNodes, "Relay: node heartbeats", time.Hour); err != nil {
		return err
	}
	if b.members, err = kv(BucketMembers, "Relay: nodes that may hold wills", 0); err != nil {
		return err
	}
	if b.conns, err = kv(BucketConns, "Relay: live connections per tenant and node", 0); err != nil {
		return err
	}

	return nil
}

// Close stops the node's background work and subscriptions, marks the node
// as cleanly gone and waits for its goroutines. It does not close the NATS
// connection. Close is idempotent.
func (b *Bus) Close() error {
	b.once.Do(func() {
		close(b.quit)
		b.syncs.mu.Lock()
		b.syncs.closed = true
		b.syncs.mu.Unlock()
		b.wg.Wait()
		b.closeKicks()
		b.kickMu.Lock()
		for _, s := range b.kickSubs {
			s.Unsubscribe()
		}
		b.kickMu.Unlock()
		if b.ackSub != nil {
			b.ackSub.Unsubscribe()
		}
		b.ackMu.Lock()
		for id, p := range b.acks {
			delete(b.acks, id)
			defer p.done(fmt.Errorf("%w: shutting down", broker.ErrBackboneUnavailable))
		}
		b.ackMu.Unlock()
		if b.nodes != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b.nodes.Delete(ctx, b.opts.NodeID)
			b.forgetPresence(ctx, b.opts.NodeID)
			cancel()
		}
	})
	return nil
}

// ---------------------------------------------------------------------------
// Stored publishes: JetStream answers each on our ack inbox.

// publishStored publishes msg to JetStream and calls done with the result.
func (b *Bus) publishStored(msg *nats.Msg, done func(error)) error {
	b.ackMu.Lock()
	b.ackNext++
	id := b.ackNext
	b.acks[id] = pendingPub{done: done, deadline: time.Now().Add(b.opts.AckTimeout)}
	b.ackMu.Unlock()
	msg.Reply = b.ackPrefix + strconv.FormatUint(id, 10)
	if err := b.nc.PublishMsg(msg); err != nil {
		b.ackMu.Lock()
		_, ok := b.acks[id]
		delete(b.acks, id)
		b.ackMu.Unlock()
		if ok {
			if errors.Is(err, nats.ErrMaxPayload) {
				return fmt.Errorf("%w: %w", broker.ErrTooLarge, err)
			}
			return fmt.Errorf("%w: %w", broker.ErrBackboneUnavailable, err)
		}
	}
	return nil
}

// onAck handles JetStream's answer to a stored publish.
func (b *Bus) onAck(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(b.ackPrefix):], 10, 64)
	if err != nil {
		return
	}
	b.ackMu.Lock()
	p, ok := b.acks[id]
	delete(b.acks, id)
	b.ackMu.Unlock()
	if !ok {
		return
	}
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		p.done(fmt.Errorf("%w: no stream for the message", broker.ErrBackboneUnavailable))
	case containsError(m.Data):
		p.done(fmt.Errorf("%w: %s", broker.ErrBackboneUnavailable, m.Data))
	default:
		p.done(nil)
	}
}

func containsError(data []byte) bool {
	const key = `"error"`
	for i := 0; i+len(key) <= len(data); i++ {
		if string(data[i:i+len(key)]) == key {
			return true
		}
	}
	return false
}

// sweepAcks fails stored publishes JetStream did not answer in time.
func (b *Bus) sweepAcks() {
	defer b.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.quit:
			return
		case now := <-t.C:
			var late []func(error)
			b.ackMu.Lock()
			for id, p := range b.acks {
				if now.After(p.deadline) {
					late = append(late, p.done)
					delete(b.acks, id)
				}
			}
			b.ackMu.Unlock()
			for _, done := range late {
				done(fmt.Errorf("%w: no answer from JetStream in %v", broker.ErrBackboneUnavailable, b.opts.AckTimeout))
			}
		}
	}
}

func (b *Bus) getBuf() *[]byte { return b.bufPool.Get().(*[]byte) }

func (b *Bus) putBuf(p *[]byte) {
	if cap(*p) > 64<<10 {
		return
	}
	*p = (*p)[:0]
	b.bufPool.Put(p)
}

// unavailable wraps err as ErrBackboneUnavailable unless it is a context
// error of the caller.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", broker.ErrBackboneUnavailable, err)
}

// QueueOverflows reports how many times a persistent session came back to a
// queue that had reached its cap (and so lost its oldest messages).
func (b *Bus) QueueOverflows() uint64 { return b.overflows.Load() }

// watchSessions loads every stored session into the index and keeps it
// current until Close.
func (b *Bus) watchSessions(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.Background())
	w, err := b.sessions.WatchAll(wctx)
	if err != nil {
		cancel()
		return fmt.Errorf("natsbus: watching sessions: %w", err)
	}
	apply := func(e jetstream.KeyValueEntry) {
		defer b.applied(e.Revision())
		tenant, enc, ok := strings.Cut(e.Key(), ".")
		if !ok {
			return
		}
		id, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			return
		}
		sid := sessionID(tenant, string(id))
		if e.Operation() != jetstream.KeyValuePut {
			b.index.remove(tenant, sid, e.Revision())
			return
		}
		var s broker.SessionState
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			b.log.Warn("unreadable session record", "key", e.Key(), "err", err)
			return
		}
		b.index.set(tenant, sid, s.Subscriptions, e.Revision())
	}
	// Initial values, then nil.
	for loaded := false; !loaded; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				cancel()
				return errors.New("natsbus: session watch closed")
			}
			if e == nil {
				loaded = true
				break
			}
			apply(e)
		case <-ctx.Done():
			w.Stop()
			cancel()
			return fmt.Errorf("natsbus: loading sessions: %w", ctx.Err())
		}
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer cancel()
		defer w.Stop()
		for {
			select {
			case <-b.quit:
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					apply(e)
				}
			}
		}
	}()
	return nil
}

func (b *Bus) trackQueue(q *queue, open bool) {
	b.queuesMu.Lock()
	if open {
		b.queues[q] = struct{}{}
	} else {
		delete(b.queues, q)
	}
	b.queuesMu.Unlock()
}

// refreshMaxPayload caches the smaller max_payload of the two
// connections' servers.
func (b *Bus) refreshMaxPayload() {
	n := b.nc.MaxPayload()
	if d := b.dc.MaxPayload(); d > 0 && (n <= 0 || d < n) {
		n = d
	}
	b.maxPay.Store(n)
}

// holdReaper keeps the will reaper off for two node TTLs.
func (b *Bus) holdReaper() {
	b.reapAfter.Store(time.Now().Add(2 * b.opts.NodeTTL).UnixNano())
}

// watchReconnects reopens every session queue when the NATS connection
// comes back, because their in-memory consumers may be gone with a
// restarted server, and holds the will reaper off.
func (b *Bus) watchReconnects() {
	defer b.wg.Done()
	ch := b.nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING)
	defer b.nc.RemoveStatusListener(ch)
	for {
		select {
		case <-b.quit:
			return
		case st := <-ch:
			b.holdReaper()
			// Announcements may have been missed meanwhile.
			b.interest.reset()
			b.refreshMaxPayload()
			if st != nats.CONNECTED {
				continue
			}
			b.queuesMu.Lock()
			qs := make([]*queue, 0, len(b.queues))
			for q := range b.queues {
				qs = append(qs, q)
			}
			b.queuesMu.Unlock()
			b.log.Info("backbone reconnected; reopening session queues", "queues", len(qs))
			for _, q := range qs {
				q.reopen()
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Subscription barrier: a SUBSCRIBE of a persistent session must be in every
// node's session index before SUBACK, or a message published on another edge
// right after SUBACK would not be queued for it.

const subjSync = "rly.ctl.sync"

// applied records that the index has caught up with revision rev.
func (b *Bus) applied(rev uint64) {
	b.appliedMu.Lock()
	if rev > b.appliedRev {
		b.appliedRev = rev
		close(b.appliedCh)
		b.appliedCh = make(chan struct{})
	}
	b.appliedMu.Unlock()
}

// waitApplied waits until the index has caught up with rev or ctx ends.
func (b *Bus) waitApplied(ctx context.Context, rev uint64) bool {
	for {
		b.appliedMu.Lock()
		done, ch := b.appliedRev >= rev, b.appliedCh
		b.appliedMu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// startSync answers other nodes' barriers.
func (b *Bus) startSync() error {
	sub, err := b.nc.Subscribe(subjSync, func(m *nats.Msg) {
		rev, err := strconv.ParseUint(string(m.Data), 10, 64)
		if err != nil || m.Reply == "" {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
			defer cancel()
			if b.waitApplied(ctx, rev) {
				m.Respond(nil)
			}
		}()
	})
	if err != nil {
		return fmt.Errorf("natsbus: sync subscription: %w", err)
	}
	b.kickMu.Lock()
	b.kickSubs = append(b.kickSubs, sub)
	b.kickMu.Unlock()
	return nil
}

// syncTimeout bounds a subscription barrier (a node that does not answer
// is dead or cut off).
const syncTimeout = 2 * time.Second

// barrier waits until every other live node's session index has caught up
// with revision rev.
func (b *Bus) barrier(ctx context.Context, rev uint64) {
	want := int(b.othersAlive.Load())
	if want <= 0 {
		return
	}
	got := 0
	if !b.gather(ctx, subjSync, strconv.AppendUint(nil, rev, 10), func([]byte) bool {
		got++
		return got >= want
	}) {
		b.log.Warn("not every node confirmed a new subscription in time", "confirmed", got, "nodes", want)
	}
}

// gather publishes a request on subject that every node answers and
// hands each reply to done until done returns true (then gather reports
// true) or syncTimeout passes, ctx ends or NATS fails (false).
func (b *Bus) gather(ctx context.Context, subject string, data []byte, done func(reply []byte) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return false
	}
	defer sub.Unsubscribe()
	if err := b.nc.PublishRequest(subject, inbox, data); err != nil {
		return false
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return false
		}
		if done(m.Data) {
			return true
		}
	}
}
