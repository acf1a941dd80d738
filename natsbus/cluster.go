package natsbus

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
)

// Cluster membership and wills.
//
// Every node puts its ID into RELAY_NODES every NodeTTL/3, with its own
// NodeTTL as the value, and into RELAY_MEMBERS (no expiry). A node whose
// heartbeat (by the server's timestamp) is older than its own TTL has died;
// nodes may run with different TTLs. A member that is not alive: its wills, stored in
// RELAY_WILLS under "<node>.<tenant>.<base64url(client ID)>", are published
// by whichever surviving node claims each one first (a compare-and-set on
// the will's revision), and then the member entry is removed.

const (
	subjKicks    = "rly.ctl.kicks"        // batched broadcast
	subjKick     = "rly.ctl.kick."        // + tenant: one kick (older edges)
	subjNodeKick = "rly.ctl.node.%s.kick" // request to one node
)

// storedWill is a will as RELAY_WILLS holds it.
type storedWill struct {
	broker.Will
	// ClaimedBy and ClaimedAt mark a will a reaper is publishing.
	ClaimedBy string    `json:"cb,omitempty"`
	ClaimedAt time.Time `json:"ca,omitempty"`
}

func willKey(node, tenant, clientID string) string {
	return node + "." + tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

func (b *Bus) startCluster(ctx context.Context) error {
	if err := b.findOrphans(ctx); err != nil {
		return fmt.Errorf("natsbus: listing wills left by an earlier run: %w", err)
	}
	if err := b.beat(ctx); err != nil {
		return fmt.Errorf("natsbus: registering node: %w", err)
	}
	if err := b.startKicks(); err != nil {
		return err
	}
	if err := b.startSync(); err != nil {
		return err
	}
	// A node that starts tells the others, who count the live nodes again
	// at once instead of at their next heartbeat: a subscription barrier
	// must wait for it from now on, or a message it publishes before its
	// next heartbeat could miss a persistent session that subscribed
	// elsewhere in the meantime. Registered (beat) and answering barriers
	// (startSync) before it says so.
	b.recount = make(chan struct{}, 1)
	sub, err := b.nc.Subscribe(subjHello, func(m *nats.Msg) {
		if string(m.Data) == b.opts.NodeID {
			return
		}
		select {
		case b.recount <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("natsbus: hello subscription: %w", err)
	}
	b.kickMu.Lock()
	b.kickSubs = append(b.kickSubs, sub)
	b.kickMu.Unlock()
	b.countAlive(ctx)
	if err := b.nc.Publish(subjHello, []byte(b.opts.NodeID)); err != nil {
		return fmt.Errorf("natsbus: hello: %w", err)
	}
	b.wg.Add(1)
	go b.heartbeat()
	return nil
}

// subjHello carries the ID of a node that has just started.
const subjHello = "rly.ctl.hello"

// heartbeat keeps the node alive in RELAY_NODES and reaps dead nodes' wills.
func (b *Bus) heartbeat() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.NodeTTL / 3)
	defer t.Stop()
	var lastSweep time.Time
	for {
		select {
		case <-b.quit:
			return
		case <-b.recount:
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.NodeTTL/3)
			b.countAlive(ctx)
			cancel()
			continue
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.NodeTTL/3)
		if err := b.beat(ctx); err != nil {
			b.log.Warn("node heartbeat failed", "err", err)
			b.holdReaper() // our view of the others is stale too
		} else {
			b.countAlive(ctx)
			if time.Now().UnixNano() >= b.reapAfter.Load() {
				b.reap(ctx)
			}
			b.reapOrphans(ctx)
		}
		cancel()
		if b.janitor.Load() && time.Since(lastSweep) > sweepInterval {
			lastSweep = time.Now()
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			b.sweepSessions(sctx)
			cancel()
		}
	}
}

// beat records this node as alive (and as a member, in case a reaper that
// wrongly thought it dead removed it).
func (b *Bus) beat(ctx context.Context) error {
	if _, err := b.nodes.Put(ctx, b.opts.NodeID, []byte(b.opts.NodeTTL.String())); err != nil {
		return err
	}
	_, err := b.members.Put(ctx, b.opts.NodeID, nil)
	return err
}

// alive reports whether node's last heartbeat is within its TTL.
func (b *Bus) alive(ctx context.Context, node string) (bool, error) {
	e, err := b.nodes.Get(ctx, node)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ttl, err := time.ParseDuration(string(e.Value()))
	if err != nil || ttl <= 0 {
		ttl = b.opts.NodeTTL
	}
	return time.Since(e.Created()) <= ttl, nil
}

// countAlive counts the other live nodes (for subscription barriers).
func (b *Bus) countAlive(ctx context.Context) {
	nodes, err := keys(ctx, b.nodes)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return
	}
	n, first := 0, true
	var alive []string
	for _, node := range nodes {
		if node == b.opts.NodeID {
			continue
		}
		if ok, err := b.alive(ctx, node); err == nil && ok {
			n++
			alive = append(alive, node)
			if node < b.opts.NodeID {
				first = false
			}
		}
	}
	b.othersAlive.Store(int32(n))
	b.interest.setAlive(alive, time.Now())
	b.janitor.Store(first)
}

// sweepInterval is how often the janitor node removes expired sessions.
const sweepInterval = 5 * time.Minute

// sweepSessions deletes sessions that have been offline longer than their
// expiry (with their queues and QoS 2 state). Only the live node with the
// lowest ID (the janitor) does it.
func (b *Bus) sweepSessions(ctx context.Context) {
	ks, err := keys(ctx, b.sessions)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			b.log.Warn("listing sessions for expiry", "err", err)
		}
		return
	}
	n := 0
	for _, k := range ks {
		e, err := b.sessions.Get(ctx, k)
		if err != nil {
			continue
		}
		var s broker.SessionState
		if json.Unmarshal(e.Value(), &s) != nil || s.Connected || time.Since(s.LastSeen) <= s.Expiry {
			continue
		}
		if err := b.DeleteSession(ctx, s.Tenant, s.ClientID); err != nil {
			b.log.Warn("deleting expired session", "tenant", s.Tenant, "client", s.ClientID, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		b.log.Info("expired sessions deleted", "sessions", n)
	}
}

// reap publishes the wills of dead members.
func (b *Bus) reap(ctx context.Context) {
	members, err := keys(ctx, b.members)
	if err != nil {
		b.log.Warn("listing members", "err", err)
		return
	}
	for _, m := range members {
		if m == b.opts.NodeID {
			continue
		}
		if ok, err := b.alive(ctx, m); err != nil {
			b.log.Warn("checking node", "node", m, "err", err)
			continue
		} else if ok {
			continue
		}
		wills, err := b.wills.ListKeysFiltered(ctx, m+".>")
		var ks []string
		if err == nil {
			for k := range wills.Keys() {
				ks = append(ks, k)
			}
		} else if !errors.Is(err, jetstream.ErrNoKeysFound) {
			b.log.Warn("listing wills", "node", m, "err", err)
			continue
		}
		left := 0
		for _, k := range ks {
			if !b.reapWill(ctx, k, "") {
				left++
			}
		}
		if left == 0 {
			b.forgetPresence(ctx, m)
			if err := b.members.Delete(ctx, m); err == nil {
				b.log.Info("dead node's wills published", "dead_node", m, "wills", len(ks))
			}
		}
	}
}

// findOrphans notes the wills stored under this node's ID before it
// started: their connections died with an earlier run of the node (a crash,
// or a restart before their delay ran out). Nobody else publishes them,
// since this node ID is alive again.
func (b *Bus) findOrphans(ctx context.Context) error {
	l, err := b.wills.ListKeysFiltered(ctx, b.opts.NodeID+".>")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for k := range l.Keys() {
		e, err := b.wills.Get(ctx, k)
		if err != nil {
			continue
		}
		var w storedWill
		if json.Unmarshal(e.Value(), &w) == nil {
			if b.orphans == nil {
				b.orphans = make(map[string]string)
			}
			b.orphans[k] = w.ConnID
		}
	}
	if len(b.orphans) > 0 {
		b.log.Info("wills left by an earlier run of this node will be published", "wills", len(b.orphans))
	}
	return nil
}

// reapOrphans publishes the wills findOrphans found (delayed ones once
// due), unless a new connection has replaced or cancelled them.
func (b *Bus) reapOrphans(ctx context.Context) {
	for k, conn := range b.orphans {
		if b.reapWill(ctx, k, conn) {
			delete(b.orphans, k)
		}
	}
}

// reapWill claims, publishes and deletes one will of a dead node (if conn
// is set: only if it still belongs to connection conn). It reports whether
// the will is gone.
func (b *Bus) reapWill(ctx context.Context, key, conn string) bool {
	e, err := b.wills.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true
	}
	if err != nil {
		return false
	}
	var w storedWill
	if err := json.Unmarshal(e.Value(), &w); err != nil {
		b.wills.Purge(ctx, key)
		return true
	}
	if conn != "" && w.ConnID != conn {
		return true // a live connection's will now
	}
	if !w.Due.IsZero() && time.Now().Before(w.Due) {
		// A delayed will [MQTT-3.1.3-9]: not yet; the member stays until
		// it is published or a resumed session cancels it.
		return false
	}
	published, gone, err := b.fireWill(ctx, key, e, &w, nil)
	if err != nil {
		b.log.Warn("publishing dead node's will", "err", err)
		return false
	}
	if published {
		b.log.Info("published will of client on dead node", "dead_node", w.Node, "tenant", w.Message.Tenant, "client", w.Message.ClientID, "topic", string(w.Message.Topic))
	}
	return gone
}

// fireWill claims the stored will w (entry e under key) with a
// compare-and-set, publishes it unless its message expired or allow
// refuses it, then deletes it: at least once, never lost to a crash of the
// claimer, whose claim others take over after 3 × NodeTTL. It reports
// whether it published the will and whether the will is gone; not gone
// without an error means another node holds the claim.
func (b *Bus) fireWill(ctx context.Context, key string, e jetstream.KeyValueEntry, w *storedWill, allow func(*broker.Message) bool) (published, gone bool, err error) {
	if w.ClaimedBy != "" && w.ClaimedBy != b.opts.NodeID && time.Since(w.ClaimedAt) < 3*b.opts.NodeTTL {
		return false, false, nil // another node is on it
	}
	w.ClaimedBy, w.ClaimedAt = b.opts.NodeID, time.Now()
	data, _ := json.Marshal(w)
	rev, err := b.wills.Update(ctx, key, data, e.Revision())
	if err != nil {
		return false, false, nil // lost the race (or cancelled meanwhile)
	}
	// The delay, if any, has passed: Due no longer holds it back.
	w.Due = time.Time{}
	m, ok := w.Ready(time.Now())
	if ok && allow != nil && !allow(&m) {
		ok = false
	}
	if ok {
		errc := make(chan error, 1)
		if err := b.Publish(&m, func(err error) { errc <- err }); err != nil {
			return false, false, err
		}
		if m.QoS > 0 || m.Retain {
			select {
			case err := <-errc:
				if err != nil {
					return false, false, err
				}
			case <-ctx.Done():
				return false, false, ctx.Err()
			}
		}
	}
	b.wills.Delete(ctx, key, jetstream.LastRevision(rev))
	return ok, true, nil
}

// FireWill implements broker.WillStore.
func (b *Bus) FireWill(ctx context.Context, node, tenant, clientID, connID string, allow func(*broker.Message) bool) (bool, error) {
	key := willKey(node, tenant, clientID)
	e, err := b.wills.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, unavailable(err)
	}
	var w storedWill
	if err := json.Unmarshal(e.Value(), &w); err != nil || w.ConnID != connID {
		return false, nil // another connection's will
	}
	published, _, err := b.fireWill(ctx, key, e, &w, allow)
	if err != nil {
		return false, unavailable(err)
	}
	return published, nil
}

// CancelWill implements broker.WillStore.
func (b *Bus) CancelWill(ctx context.Context, node, tenant, clientID, connID string) error {
	return b.deleteWill(ctx, willKey(node, tenant, clientID), connID)
}

func keys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	l, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out, nil
}

// PutWill implements broker.WillStore.
func (b *Bus) PutWill(ctx context.Context, w *broker.Will) error {
	data, err := json.Marshal(&storedWill{Will: *w})
	if err != nil {
		return err
	}
	if _, err := b.wills.Put(ctx, willKey(w.Node, w.Message.Tenant, w.Message.ClientID), data); err != nil {
		return unavailable(err)
	}
	return nil
}

// DeleteWill implements broker.WillStore.
func (b *Bus) DeleteWill(ctx context.Context, tenant, clientID, connID string) error {
	return b.deleteWill(ctx, willKey(b.opts.NodeID, tenant, clientID), connID)
}

// deleteWill deletes the will under key if it belongs to connID.
func (b *Bus) deleteWill(ctx context.Context, key, connID string) error {
	e, err := b.wills.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return unavailable(err)
	}
	var w storedWill
	if json.Unmarshal(e.Value(), &w) == nil && w.ConnID != connID {
		return nil // a newer connection's will
	}
	if err := b.wills.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !strings.Contains(err.Error(), "wrong last sequence") {
		return unavailable(err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Takeover.

// HandleKicks implements broker.Cluster.
func (b *Bus) HandleKicks(fn broker.KickFunc) {
	b.kickMu.Lock()
	b.kickFn = fn
	b.kickMu.Unlock()
}

func (b *Bus) kick(tenant, clientID, connID string, connected time.Time, wait bool) bool {
	b.kickMu.Lock()
	fn := b.kickFn
	b.kickMu.Unlock()
	if fn == nil {
		return false
	}
	return fn(tenant, clientID, connID, connected, wait)
}

// startKicks subscribes to takeover broadcasts and requests.
func (b *Bus) startKicks() error {
	batches, err := b.nc.Subscribe(subjKicks, b.onKicks)
	if err != nil {
		return fmt.Errorf("natsbus: kick subscription: %w", err)
	}
	// One kick per message, as edges before batching send them (a rolling
	// upgrade); the kick does not block, so it runs in the callback.
	single, err := b.nc.Subscribe(subjKick+"*", func(m *nats.Msg) {
		tenant := m.Subject[len(subjKick):]
		if id, conn, ok := strings.Cut(string(m.Data), "\x00"); ok {
			b.kick(tenant, id, conn, time.Time{}, false)
		}
	})
	if err != nil {
		batches.Unsubscribe()
		return fmt.Errorf("natsbus: kick subscription: %w", err)
	}
	rq, err := b.nc.Subscribe(fmt.Sprintf(subjNodeKick, b.opts.NodeID), func(m *nats.Msg) {
		parts := strings.SplitN(string(m.Data), "\x00", 3)
		if len(parts) != 3 {
			return
		}
		go func() {
			b.kick(parts[0], parts[1], parts[2], time.Time{}, true)
			m.Respond(nil)
		}()
	})
	if err != nil {
		batches.Unsubscribe()
		single.Unsubscribe()
		return fmt.Errorf("natsbus: kick subscription: %w", err)
	}
	b.kickMu.Lock()
	b.kickSubs = append(b.kickSubs, batches, single, rq)
	b.kickMu.Unlock()
	return nil
}

// ---------------------------------------------------------------------------
// Batched takeover broadcasts. Every CONNECT asks all other edges to drop a
// connection with its client ID [MQTT-3.1.4-2]; one NATS message per
// CONNECT costs every edge a delivery, at 20,000 connects/s a large part of
// a core. The broadcast was already asynchronous (CONNACK never waited for
// it), so it now waits up to kickDelay and goes out with the others of that
// window in one message on rly.ctl.kicks:
//
//	uvarint-prefixed origin node, then per kick uvarint-prefixed tenant,
//	client ID and connection ID, and the uvarint Unix time in nanoseconds
//	of the kicking connection's CONNECT
//
// A takeover from another edge thus happens up to kickDelay later, and a
// kick closes only a connection older than the kicking one: the same client
// ID connecting to edge A and then to edge B within the delay must leave B's
// connection, not have A's late broadcast close it (which, with NATS's own
// latency, could happen before batching too). The holder of a persistent
// session is still asked directly, and waited for.

const (
	// kickDelay is the longest a takeover broadcast waits for others.
	kickDelay = time.Millisecond
	// kickBatchMax flushes a batch early (bytes).
	kickBatchMax = 32 << 10
)

type kickBatch struct {
	mu      sync.Mutex
	buf     []byte // header and kicks; empty: nothing pending
	armed   bool   // a flush is scheduled
	stopped bool
	timer   *time.Timer
	wg      sync.WaitGroup // the scheduled flush
}

// queueKick adds a kick to the batch and schedules or makes the flush.
func (b *Bus) queueKick(tenant, clientID, connID string, connected time.Time) {
	k := &b.kicks
	k.mu.Lock()
	if len(k.buf) == 0 {
		k.buf = appendField(k.buf, b.opts.NodeID)
	}
	k.buf = appendField(k.buf, tenant)
	k.buf = appendField(k.buf, clientID)
	k.buf = appendField(k.buf, connID)
	k.buf = binary.AppendUvarint(k.buf, uint64(max(connected.UnixNano(), 0)))
	var full []byte
	switch {
	case len(k.buf) >= kickBatchMax || k.stopped:
		full, k.buf = k.buf, nil
	case !k.armed:
		k.armed = true
		k.wg.Add(1)
		if k.timer == nil {
			k.timer = time.AfterFunc(kickDelay, b.flushKicks)
		} else {
			k.timer.Reset(kickDelay)
		}
	}
	k.mu.Unlock()
	if full != nil {
		b.publishKicks(full)
	}
}

// flushKicks is the scheduled flush.
func (b *Bus) flushKicks() {
	k := &b.kicks
	k.mu.Lock()
	buf := k.buf
	k.buf, k.armed = nil, false
	k.mu.Unlock()
	if len(buf) > 0 {
		b.publishKicks(buf)
	}
	k.wg.Done()
}

func (b *Bus) publishKicks(buf []byte) {
	if err := b.nc.Publish(subjKicks, buf); err != nil {
		b.log.Warn("takeover broadcast not sent", "err", err)
	}
}

// closeKicks sends what is pending and stops batching.
func (b *Bus) closeKicks() {
	k := &b.kicks
	k.mu.Lock()
	k.stopped = true
	if k.armed && k.timer.Stop() {
		k.armed = false
		k.wg.Done()
	}
	buf := k.buf
	k.buf = nil
	k.mu.Unlock()
	k.wg.Wait()
	if len(buf) > 0 {
		b.publishKicks(buf)
	}
}

// onKicks applies another edge's batch.
func (b *Bus) onKicks(m *nats.Msg) {
	data := m.Data
	node, data, ok := readField(data)
	if !ok || node == b.opts.NodeID {
		return // our own: register already took over locally
	}
	for len(data) > 0 {
		var tenant, id, conn string
		var at uint64
		if tenant, data, ok = readField(data); ok {
			if id, data, ok = readField(data); ok {
				if conn, data, ok = readField(data); ok {
					var k int
					at, k = binary.Uvarint(data)
					ok = k > 0
					data = data[max(k, 0):]
				}
			}
		}
		if !ok {
			b.log.Warn("malformed takeover broadcast", "node", node)
			return
		}
		var connected time.Time
		if at > 0 {
			connected = time.Unix(0, int64(at))
		}
		b.kick(tenant, id, conn, connected, false)
	}
}

func appendField(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func readField(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// Kick implements broker.Cluster. The broadcast goes out within kickDelay
// (batched, see queueKick); a closed NATS connection is refused at once.
func (b *Bus) Kick(ctx context.Context, tenant, clientID, connID string, connected time.Time, node string) error {
	if b.nc.IsClosed() {
		return unavailable(nats.ErrConnectionClosed)
	}
	b.queueKick(tenant, clientID, connID, connected)
	if node == "" || node == b.opts.NodeID {
		return nil
	}
	_, err := b.nc.RequestWithContext(ctx, fmt.Sprintf(subjNodeKick, node), []byte(tenant+"\x00"+clientID+"\x00"+connID))
	switch {
	case err == nil, errors.Is(err, nats.ErrNoResponders):
		return nil // done, or the node is gone
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		b.log.Warn("node did not release session in time; taking it anyway", "holder", node, "tenant", tenant, "client", clientID)
		return nil
	default:
		return unavailable(err)
	}
}
