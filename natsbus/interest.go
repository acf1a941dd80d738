package natsbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// ---------------------------------------------------------------------------
// Tenant interest: which tenants' live messages anyone outside this node
// wants. An edge delivers its own publishes to its own subscribers itself
// (Router.LocalDelivery); NATS is only needed when another node has a
// route, a shared subscription or a watch in the tenant, or this node has
// a subscription on the connection that echoes (shared, watch). A message
// of a tenant nobody else wants is not published to NATS at all, which
// saves the server's parsing and routing of it (a quarter of an edge's CPU
// under a pure local load).
//
// Every node announces the tenants it has NATS subscriptions in on
// rly.ctl.interest: a change (seq + 1) when a tenant comes or goes, and a
// snapshot of all of them every interestEvery. A node skips NATS for a
// tenant only when it holds a complete, consistent picture of every other
// live node and none of them wants the tenant: a node it has not heard
// from, a gap in a node's sequence, or its own reconnect makes it publish
// everything until the next snapshot. A node that gains a tenant waits
// (Bus.Sync, before SUBACK) until every live node confirms it applied the
// change, so a message published after SUBACK is not missed [MQTT-3.8.4].

const (
	subjInterest     = "rly.ctl.interest"
	subjInterestSync = "rly.ctl.interestsync"
	// interestEvery is how often a node sends its snapshot.
	interestEvery = time.Second
	// interestStale: a node not heard from for this long is forgotten
	// (and, while it still counts as alive, unknown).
	interestStale = 3 * interestEvery
)

// interestMsg is an announcement: with Full, On lists every tenant the
// node wants after Seq changes; otherwise change Seq adds On and removes
// Off.
type interestMsg struct {
	Node  string   `json:"n"`
	Epoch string   `json:"e"`
	Seq   uint64   `json:"s"`
	Full  bool     `json:"f,omitempty"`
	On    []string `json:"on,omitempty"`
	Off   []string `json:"off,omitempty"`
}

// nodeInterest is what this node knows of another's tenants.
type nodeInterest struct {
	epoch   string
	seq     uint64
	ok      bool // complete and consistent (else: wants everything)
	tenants map[string]struct{}
	seen    time.Time
}

// interestView is what Publish consults, rebuilt on every change.
type interestView struct {
	all     bool                // some node's picture is missing: publish everything
	tenants map[string]struct{} // tenants to publish to NATS
}

// interest is the Bus's part in the protocol.
type interest struct {
	mu    sync.Mutex
	self  string
	epoch string
	// send publishes an announcement; it is called with mu held, so that
	// changes and snapshots leave in the order of their numbers.
	send  func(*interestMsg)
	seq   uint64         // changes announced
	onSeq uint64         // the last change that added a tenant
	mine  map[string]int // tenant → this node's NATS subscriptions (announced)
	echo  map[string]int // tenant → those on the echoing connection
	alive []string       // other live nodes, from the heartbeats
	nodes map[string]*nodeInterest
	// moved is closed and replaced whenever another node's picture moves
	// (barrier answers wait on it).
	moved   chan struct{}
	started bool
	born    time.Time // when this node started taking part
	view    atomic.Pointer[interestView]
}

func newInterest(self string) *interest {
	var e [8]byte
	rand.Read(e[:])
	return &interest{
		self: self, epoch: hex.EncodeToString(e[:]), send: func(*interestMsg) {},
		mine: make(map[string]int), echo: make(map[string]int),
		nodes: make(map[string]*nodeInterest), moved: make(chan struct{}),
		born: time.Now(),
	}
}

// needsNATS reports whether a live message of tenant must be published to
// NATS (anything but a known "nobody else").
func (in *interest) needsNATS(tenant string) bool {
	v := in.view.Load()
	if v == nil || v.all {
		return true
	}
	_, ok := v.tenants[tenant]
	return ok
}

// rebuildLocked recomputes the view; in.mu is held.
func (in *interest) rebuildLocked() {
	v := &interestView{all: !in.started, tenants: make(map[string]struct{})}
	for _, n := range in.alive {
		if s := in.nodes[n]; s == nil || !s.ok {
			v.all = true
		}
	}
	for _, s := range in.nodes {
		if !s.ok {
			v.all = true
		}
		for t := range s.tenants {
			v.tenants[t] = struct{}{}
		}
	}
	for t := range in.echo {
		v.tenants[t] = struct{}{}
	}
	in.view.Store(v)
}

// add counts a NATS subscription of this node in tenant; echo says it is
// on the echoing connection. A tenant new to this node is announced.
func (in *interest) add(tenant string, echo bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if echo {
		if in.echo[tenant]++; in.echo[tenant] == 1 {
			in.rebuildLocked()
		}
	}
	if in.mine[tenant]++; in.mine[tenant] > 1 {
		return
	}
	in.seq++
	in.onSeq = in.seq
	in.send(&interestMsg{Node: in.self, Epoch: in.epoch, Seq: in.seq, On: []string{tenant}})
}

// remove undoes add.
func (in *interest) remove(tenant string, echo bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if echo {
		if in.echo[tenant]--; in.echo[tenant] <= 0 {
			delete(in.echo, tenant)
			in.rebuildLocked()
		}
	}
	if in.mine[tenant]--; in.mine[tenant] > 0 {
		return
	}
	delete(in.mine, tenant)
	in.seq++
	in.send(&interestMsg{Node: in.self, Epoch: in.epoch, Seq: in.seq, Off: []string{tenant}})
}

// sendSnapshot announces every tenant of this node.
func (in *interest) sendSnapshot() {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := &interestMsg{Node: in.self, Epoch: in.epoch, Seq: in.seq, Full: true, On: make([]string, 0, len(in.mine))}
	for t := range in.mine {
		m.On = append(m.On, t)
	}
	in.send(m)
}

// apply takes another node's announcement.
func (in *interest) apply(m *interestMsg, now time.Time) {
	if m.Node == in.self || m.Node == "" {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.nodes[m.Node]
	if s == nil || s.epoch != m.Epoch {
		s = &nodeInterest{epoch: m.Epoch}
		in.nodes[m.Node] = s
	}
	s.seen = now
	// s.seq is the highest number seen from this epoch, complete or not:
	// nothing older is ever applied (a late snapshot must not erase a
	// tenant a later change added).
	switch {
	case m.Seq < s.seq || (s.ok && m.Seq == s.seq):
		return // older than, or the same as, what we have
	case m.Full:
		s.tenants = make(map[string]struct{}, len(m.On))
		for _, t := range m.On {
			s.tenants[t] = struct{}{}
		}
		s.seq, s.ok = m.Seq, true
	case s.ok && m.Seq == s.seq+1:
		for _, t := range m.On {
			s.tenants[t] = struct{}{}
		}
		for _, t := range m.Off {
			delete(s.tenants, t)
		}
		s.seq = m.Seq
	default:
		// A gap (or the first we hear of it): it wants everything until
		// its next snapshot.
		s.ok, s.seq = false, m.Seq
	}
	in.rebuildLocked()
	close(in.moved)
	in.moved = make(chan struct{})
}

// confirmed reports whether this node's picture of node covers its change
// seq (or treats node as wanting everything); if node is unknown it is
// recorded as such. It returns a channel to wait on otherwise.
func (in *interest) confirmed(node, epoch string, seq uint64) (bool, <-chan struct{}) {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.nodes[node]
	if s == nil || s.epoch != epoch {
		in.nodes[node] = &nodeInterest{epoch: epoch, seen: time.Now()}
		in.rebuildLocked()
		return true, nil
	}
	if !s.ok || s.seq >= seq {
		return true, nil
	}
	return false, in.moved
}

// setAlive records the other live nodes and forgets nodes not heard from
// for interestStale.
func (in *interest) setAlive(alive []string, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.alive = alive
	in.started = true
	for n, s := range in.nodes {
		if now.Sub(s.seen) > interestStale {
			delete(in.nodes, n)
		}
	}
	in.rebuildLocked()
}

// reset forgets every other node's picture (after a reconnect, anything
// may have been missed): everything is published until the snapshots
// come.
func (in *interest) reset() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.nodes {
		s.ok = false
	}
	in.rebuildLocked()
}

// current returns this node's epoch, its change count, the last change
// that added a tenant, and the live nodes that take part in the protocol,
// whose confirmation a barrier waits for: those it has heard from, and,
// while it is younger than interestStale, all of them (a node that speaks
// sends a snapshot every interestEvery: one never heard from after that
// does not speak the protocol, an older version that publishes
// everything).
func (in *interest) current() (epoch string, seq, onSeq uint64, speakers map[string]bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	young := time.Since(in.born) < interestStale
	speakers = make(map[string]bool)
	for _, n := range in.alive {
		if young || in.nodes[n] != nil {
			speakers[n] = true
		}
	}
	return in.epoch, in.seq, in.onSeq, speakers
}

// ---------------------------------------------------------------------------
// On the Bus.

// announce publishes m (interest.send).
func (b *Bus) announce(m *interestMsg) {
	data, _ := json.Marshal(m)
	if err := b.nc.Publish(subjInterest, data); err != nil {
		b.log.Debug("announcing interest", "err", err)
	}
}

// startInterest subscribes to other nodes' announcements and barriers and
// starts the snapshots.
func (b *Bus) startInterest() error {
	sub, err := b.nc.Subscribe(subjInterest, func(m *nats.Msg) {
		var im interestMsg
		if err := json.Unmarshal(m.Data, &im); err != nil {
			b.log.Warn("malformed interest announcement", "err", err)
			return
		}
		b.interest.apply(&im, time.Now())
	})
	if err != nil {
		return fmt.Errorf("natsbus: interest subscription: %w", err)
	}
	sub.SetPendingLimits(-1, -1)
	sync, err := b.nc.Subscribe(subjInterestSync, func(m *nats.Msg) {
		// "<node> <epoch> <seq>"
		f := strings.Fields(string(m.Data))
		if len(f) != 3 || m.Reply == "" || f[0] == b.opts.NodeID {
			return
		}
		seq, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return
		}
		me := []byte(b.opts.NodeID)
		ok, ch := b.interest.confirmed(f[0], f[1], seq)
		if ok {
			m.Respond(me)
			return
		}
		go func() {
			t := time.NewTimer(syncTimeout)
			defer t.Stop()
			for {
				select {
				case <-ch:
				case <-t.C:
					return
				case <-b.quit:
					return
				}
				if ok, ch = b.interest.confirmed(f[0], f[1], seq); ok {
					m.Respond(me)
					return
				}
			}
		}()
	})
	if err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("natsbus: interest subscription: %w", err)
	}
	b.kickMu.Lock()
	b.kickSubs = append(b.kickSubs, sub, sync)
	b.kickMu.Unlock()
	b.interest.sendSnapshot()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(interestEvery)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				return
			case <-t.C:
				b.interest.sendSnapshot()
			}
		}
	}()
	return nil
}

// interestBarrier waits until every other live node that takes part in
// the protocol confirmed this node's announcements up to its last new
// tenant (the subscription barrier's half for live routes); see current
// for which nodes it waits for.
func (b *Bus) interestBarrier(ctx context.Context) {
	epoch, seq, onSeq, speakers := b.interest.current()
	if onSeq <= b.interestSynced.Load() {
		return
	}
	if len(speakers) > 0 {
		waiting := len(speakers)
		if !b.gather(ctx, subjInterestSync, fmt.Appendf(nil, "%s %s %d", b.opts.NodeID, epoch, seq), func(node []byte) bool {
			delete(speakers, string(node))
			waiting = len(speakers)
			return waiting == 0
		}) {
			b.log.Warn("not every node confirmed a new route in time", "waiting_for", waiting)
			return
		}
	}
	for {
		old := b.interestSynced.Load()
		if seq <= old || b.interestSynced.CompareAndSwap(old, seq) {
			return
		}
	}
}
