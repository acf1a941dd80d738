package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// A session's subscriptions live in client.subs; a persistent session also
// keeps them in its SessionState in the backbone, and receives its QoS ≥ 1
// messages from a durable Queue (so that nothing PUBACKed to a publisher is
// lost if this edge dies), while its QoS 0 messages and every message of a
// clean session arrive on live routes.

// classFor returns the route class for a subscription of this session.
func (c *client) classFor(s Subscription) Class {
	if c.persist && s.QoS > 0 && durable(s.Filter) {
		return ClassQoS0
	}
	return ClassAll
}

// durable reports whether a subscription's QoS ≥ 1 messages come from the
// session's queue. Shared and $local subscriptions are served live only.
func durable(filter string) bool {
	f, err := topic.ParseFilter(filter)
	return err == nil && f.Kind == topic.Normal
}

// openSession takes the session over from any other edge, loads or creates
// it, and restores its subscriptions. It reports whether a session was
// present [MQTT-3.2.2-2].
func (c *client) openSession(ctx context.Context) (bool, error) {
	bb := c.b.bb
	// Ask every other edge to drop a connection with our client ID. A
	// persistent session also names its holder; that one we wait for.
	st, rev, err := bb.LoadSession(ctx, c.tenant, c.id)
	switch {
	case errors.Is(err, ErrSessionNotFound):
		st, rev = nil, 0
	case err != nil:
		return false, fmt.Errorf("loading session: %w", err)
	}
	holder := ""
	if st != nil && st.Connected && st.Node != c.b.opts.NodeID {
		holder = st.Node
	}
	if err := bb.Kick(ctx, c.tenant, c.id, c.connID, c.connected, holder); err != nil {
		return false, fmt.Errorf("taking over session: %w", err)
	}
	if holder != "" {
		// The holder saved the session as it released it; read it again.
		st, rev, err = bb.LoadSession(ctx, c.tenant, c.id)
		if errors.Is(err, ErrSessionNotFound) {
			st, rev = nil, 0
		} else if err != nil {
			return false, fmt.Errorf("reloading session: %w", err)
		}
	}

	if st != nil && !st.WillDue.IsZero() {
		// The last connection's will waits for its delay. Resuming the
		// session cancels it [MQTT-3.1.3-9]; Clean Start ends the session,
		// which publishes it now (MQTT 5 §3.1.3.2.2).
		if c.cleanStart {
			// Checked against the rules of the client ID's credential
			// now (this connection's).
			allowed := func(m *Message) bool { return c.principal.Rules().CanPublish(m.Topic) }
			if _, err := bb.FireWill(ctx, st.Node, c.tenant, c.id, st.ConnID, allowed); err != nil {
				c.log().Warn("publishing the ended session's delayed will", "err", err)
			}
		} else if err := bb.CancelWill(ctx, st.Node, c.tenant, c.id, st.ConnID); err != nil {
			c.log().Warn("cancelling the resumed session's delayed will", "err", err)
		}
		st.WillDue = time.Time{}
	}
	if c.cleanStart && st != nil {
		// Clean session / clean start: discard stored state [MQTT-3.1.2-6]
		// (MQTT 5 [MQTT-3.1.2-4]).
		if err := bb.DeleteSession(ctx, c.tenant, c.id); err != nil {
			return false, fmt.Errorf("discarding session: %w", err)
		}
		st, rev = nil, 0
	}
	if !c.persist {
		if st == nil {
			return false, nil
		}
		// MQTT 5 Clean Start 0 with Session Expiry 0: the stored session
		// is resumed [MQTT-3.1.2-5] and ends with this connection.
		c.persist = true
	}
	// Still marked connected after the takeover: its edge died holding it.
	unclean := st != nil && st.Connected
	present := st != nil
	now := time.Now()
	if st == nil {
		st = &SessionState{Tenant: c.tenant, ClientID: c.id, Created: now}
		rev = 0
	}
	st.Expiry = c.expiry
	st.Node, st.ConnID, st.Connected, st.LastSeen = c.b.opts.NodeID, c.connID, true, now
	rev, err = bb.SaveSession(ctx, st, rev)
	if err != nil {
		return false, fmt.Errorf("claiming session: %w", err)
	}
	c.state, c.rev = st, rev

	// QoS 2 flows in progress [MQTT-4.4.0-1]: received IDs stay blocked
	// for resends; released ones get their PUBREL again, first.
	q2, err := bb.QoS2(ctx, c.tenant, c.id)
	if err != nil {
		return false, fmt.Errorf("loading QoS 2 state: %w", err)
	}
	for _, id := range q2.Received {
		if c.qos2in == nil {
			c.qos2in = make(map[uint16]struct{})
		}
		c.qos2in[id] = struct{}{}
	}
	for _, r := range q2.Released {
		if c.inflight == nil {
			c.inflight = make(map[uint16]inflight)
		}
		c.inflight[r.ID] = inflight{qos: 2, rel: true, seq: r.Seq}
		c.ctrl = append(c.ctrl, outItem{typ: packet.PUBREL, id: r.ID})
	}

	q, err := bb.OpenQueue(ctx, st, unclean)
	if err != nil {
		return false, fmt.Errorf("opening session queue: %w", err)
	}
	c.queue = q
	c.mu.Lock()
	c.subs = make(map[string]Subscription, len(st.Subscriptions))
	for _, s := range st.Subscriptions {
		c.subs[s.Filter] = s
	}
	c.mu.Unlock()
	var rts []*route
	for _, s := range st.Subscriptions {
		f, err := topic.ParseFilter(s.Filter)
		if err != nil {
			c.log().Warn("stored subscription is invalid; dropped", "filter", s.Filter, "err", err)
			continue
		}
		rt, err := c.b.addRoute(c, f, s, c.classFor(s))
		if err != nil {
			c.closeSession() // the caller removes the routes restored so far
			return false, fmt.Errorf("restoring subscription %q: %w", s.Filter, err)
		}
		rts = append(rts, rt)
	}
	// Live messages (QoS 0, shared and $local subscriptions) published
	// right after CONNACK reach the restored routes, as after a SUBACK.
	if err := c.b.syncRoutes(ctx, rts); err != nil {
		c.log().Warn("restored subscriptions not confirmed by the backbone", "err", err)
	}
	return present, nil
}

// saveSession stores the session's subscriptions; from then on the
// backbone queues matching QoS ≥ 1 messages for the session.
func (c *client) saveSession(ctx context.Context) error {
	c.mu.Lock()
	subs := make([]Subscription, 0, len(c.subs))
	for _, s := range c.state.Subscriptions { // keep the original order
		if cur, ok := c.subs[s.Filter]; ok {
			subs = append(subs, cur)
		}
	}
	for f, s := range c.subs {
		if !containsFilter(subs, f) {
			subs = append(subs, s)
		}
	}
	c.mu.Unlock()
	st := *c.state
	st.Subscriptions = subs
	st.LastSeen = time.Now()
	rev, err := c.b.bb.SaveSession(ctx, &st, c.rev)
	if err != nil {
		return err
	}
	*c.state, c.rev = st, rev
	return nil
}

func containsFilter(subs []Subscription, f string) bool {
	for _, s := range subs {
		if s.Filter == f {
			return true
		}
	}
	return false
}

// closeSession releases a persistent session: in-flight queue messages go
// back to the queue at once, and the session is stored as disconnected.
func (c *client) closeSession() {
	if c.state == nil {
		return
	}
	c.mu.Lock()
	var back []Delivery
	for id, f := range c.inflight {
		if f.del != nil {
			back = append(back, f.del)
			delete(c.inflight, id)
		}
	}
	c.mu.Unlock()
	for _, d := range back {
		if err := d.Nak(); err != nil {
			c.log().Debug("returning message to queue", "err", err)
		}
	}
	if c.queue != nil {
		c.queue.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
	defer cancel()
	if c.expiry <= 0 {
		// Session Expiry 0 (from CONNECT, or set by DISCONNECT): the
		// session ends with the connection (MQTT 5 §3.1.2.11.2).
		if err := c.b.bb.DeleteSession(ctx, c.tenant, c.id); err != nil {
			c.log().Error("deleting ended session", "err", err)
		}
		c.state = nil
		return
	}
	st := *c.state
	st.Connected = false
	st.LastSeen = time.Now()
	st.Expiry = c.expiry   // DISCONNECT may have changed it
	st.WillDue = c.willDue // a delayed will waits (see delayWill)
	if _, err := c.b.bb.SaveSession(ctx, &st, c.rev); err != nil {
		if errors.Is(err, ErrSessionConflict) {
			c.log().Debug("session taken over before release")
		} else {
			c.log().Error("storing session at disconnect", "err", err)
		}
	}
	c.state = nil
}

// queueLoop moves messages from the session's durable queue to the client,
// at most recvMax in flight. Packet IDs derive from the backbone sequence,
// so a message keeps its packet ID when redelivered by another edge
// [MQTT-4.4.0-1].
//
// ctx ends with the connection (shutdown cancels it).
func (c *client) queueLoop(ctx context.Context) {
	defer c.wg.Done()
	for {
		d, err := c.queue.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrQueueClosed) {
				return
			}
			c.log().Warn("reading session queue", "err", err)
			select {
			case <-time.After(time.Second):
				continue
			case <-c.quit:
				return
			}
		}
		m := d.Message()
		if rules := c.principal.Rules(); rules != c.aclSeen.Load() {
			c.refreshACL(rules)
		}
		qos, subIDs, retain := c.queueQoS(m)
		if qos == 0 {
			// No longer subscribed (or only No Local subscriptions match
			// its own message): done with it.
			d.Ack()
			continue
		}
		if !m.Expiry.IsZero() && time.Now().After(m.Expiry) {
			c.dropped() // expired while queued [MQTT-3.3.2-5]
			d.Ack()
			continue
		}
		id := packetIDFor(d.Seq())
		if c.takeCompleted(d.Seq()) || (qos == 2 && c.released(id, d.Seq())) {
			// PUBREC came before the edge could settle it: the flow is
			// at PUBREL, the PUBLISH must not go out again [MQTT-4.3.3-1].
			d.Settle(ctx)
			continue
		}
		if !c.reserve(id, inflight{msg: m, qos: qos, del: d, seq: d.Seq()}) {
			d.Nak()
			return
		}
		it := outItem{typ: packet.PUBLISH, id: id, qos: qos, retain: retain, msg: m, dup: d.Redelivered(), reserved: true}
		if len(subIDs) > 0 {
			it.ext = &outExt{subIDs: subIDs}
		}
		c.enqueuePub(it)
	}
}

// takeCompleted reports (once) whether the queued message seq belongs to a
// QoS 2 flow that completed after being restored at the PUBREL stage.
func (c *client) takeCompleted(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.completed[seq]; ok {
		delete(c.completed, seq)
		return true
	}
	return false
}

// released reports whether the queued message seq (packet ID id) is at the
// PUBREL stage.
func (c *client) released(id uint16, seq uint64) bool {
	c.mu.Lock()
	f, ok := c.inflight[id]
	c.mu.Unlock()
	return ok && f.rel && f.seq == seq
}

// queueQoS returns the QoS a queued message is delivered with: the highest
// QoS of the session's durable subscriptions that match it [MQTT-3.3.5-1],
// capped by the message's QoS; 0 if none matches any more. The queue holds
// one copy for all of them, so it goes out with the subscription
// identifiers of every one of them [MQTT-3.3.4-4], also returned.
func (c *client) queueQoS(m *Message) (qos byte, ids []int, retain bool) {
	var best byte
	c.mu.Lock()
	d := c.aclDenied.Load()
	own := m.ClientID == c.id
	for _, s := range c.subs {
		if s.QoS == 0 || !durable(s.Filter) || (d != nil && (*d)[s.Filter]) {
			continue
		}
		if s.NoLocal && own {
			continue // [MQTT-3.8.3-3]: not to the connection that published it
		}
		if topic.Match(s.Filter, m.Topic) {
			best = max(best, s.QoS)
			if s.ID > 0 && c.version == packet.V5 {
				ids = append(ids, s.ID)
			}
			// [MQTT-3.3.1-12]: RETAIN as published only where a matching
			// subscription asked for it.
			retain = retain || (s.RetainAsPublished && m.Retain)
		}
	}
	c.mu.Unlock()
	return min(best, m.QoS), ids, retain
}

// packetIDFor maps a backbone sequence to a packet ID in 1..65535.
func packetIDFor(seq uint64) uint16 { return uint16((seq-1)%65535) + 1 }
