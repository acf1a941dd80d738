package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// readLoop reads and handles packets until the connection ends or, going
// idle after deep work, yields (errYield: see client.loop). The error says
// why it ended (nil after DISCONNECT).
func (c *client) readLoop() error {
	var deadline time.Time
	if c.keepAlive == 0 {
		c.nc.SetReadDeadline(time.Time{}) // lift the CONNECT timeout
	}
	for {
		if c.keepAlive > 0 {
			// [MQTT-3.1.2-24] 1.5 × keep-alive without a packet closes.
			// The deadline moves only when it has aged by 1/8 of the
			// keep-alive, to keep timer updates off the per-packet path.
			if next := time.Now().Add(c.keepAlive * 3 / 2); next.Sub(deadline) > c.keepAlive/8 {
				deadline = next
				c.nc.SetReadDeadline(deadline)
			}
		}
		fh, body, err := c.rd.ReadPacket()
		if err == errYield {
			return err
		}
		if err != nil {
			select {
			case <-c.quit:
				return nil
			default:
			}
			if isTimeout(err) {
				return errKeepAlive
			}
			return err
		}
		c.rd.deep = c.rd.deep || fh.Type != packet.PINGREQ
		if err := c.handle(fh, body); err != nil {
			if errors.Is(err, errDisconnect) {
				return nil
			}
			return err
		}
	}
}

// errDisconnect ends the read loop after a normal DISCONNECT.
var errDisconnect = errors.New("client sent DISCONNECT")

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// handle dispatches one packet. Each kind is decoded in a function of its
// own (not inlined): a packet struct with its MQTT 5 properties is a few
// hundred bytes of stack, and with all of them in this frame even a
// PINGREQ would grow an idle connection's stack beyond its 2 KiB (and the
// runtime never shrinks it back below 4 KiB).
func (c *client) handle(fh packet.FixedHeader, body []byte) error {
	switch fh.Type {
	case packet.PUBLISH:
		return c.handlePublish(fh, body)
	case packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP:
		return c.decodeAck(fh, body)
	case packet.SUBSCRIBE:
		return c.decodeSubscribe(fh, body)
	case packet.UNSUBSCRIBE:
		return c.decodeUnsubscribe(fh, body)
	case packet.PINGREQ:
		if fh.Remaining != 0 {
			return fmt.Errorf("%w: PINGREQ with body", packet.MalformedPacket)
		}
		c.enqueueCtrl(outItem{typ: packet.PINGRESP})
		return nil
	case packet.DISCONNECT:
		return c.handleDisconnect(fh, body)
	case packet.CONNECT:
		return errSecondConnect // [MQTT-3.1.0-2]
	case packet.AUTH:
		if c.version != packet.V5 {
			return fmt.Errorf("%w: AUTH before MQTT 5", packet.MalformedPacket)
		}
		// Enhanced authentication is not offered: no method was agreed at
		// CONNECT, so any AUTH is a protocol error [MQTT-4.12.0-1].
		return fmt.Errorf("%w: AUTH without authentication method", packet.ProtocolError)
	default:
		return fmt.Errorf("%w: unexpected %v from client", packet.ProtocolError, fh.Type)
	}
}

//go:noinline
func (c *client) decodeAck(fh packet.FixedHeader, body []byte) error {
	var a packet.Ack
	if err := a.Decode(c.version, fh, body); err != nil {
		return err
	}
	return c.handleAck(&a)
}

//go:noinline
func (c *client) decodeSubscribe(fh packet.FixedHeader, body []byte) error {
	var s packet.Subscribe
	if err := s.Decode(c.version, fh, body); err != nil {
		return err
	}
	return c.handleSubscribe(&s)
}

//go:noinline
func (c *client) decodeUnsubscribe(fh packet.FixedHeader, body []byte) error {
	var u packet.Unsubscribe
	if err := u.Decode(c.version, fh, body); err != nil {
		return err
	}
	return c.handleUnsubscribe(&u)
}

// handleDisconnect handles the client's DISCONNECT: it ends the read loop
// (errDisconnect) unless the packet breaks a rule.
//
//go:noinline
func (c *client) handleDisconnect(fh packet.FixedHeader, body []byte) error {
	var d packet.Disconnect
	if err := d.Decode(c.version, fh, body); err != nil {
		return err
	}
	if d.Properties.Has(packet.PropSessionExpiry) {
		if c.connExpiry0 && d.Properties.SessionExpiry != 0 {
			// [MQTT-3.14.2-2] not from 0 to non-zero.
			return fmt.Errorf("%w: DISCONNECT sets a session expiry interval after CONNECT's was 0", packet.ProtocolError)
		}
		if c.state != nil {
			// The session's lifetime from now on; 0 ends it with the
			// connection (MQTT 5 §3.14.2.2.2).
			c.expiry, _ = c.sessionExpiry(d.Properties.SessionExpiry)
		}
	}
	c.clientReason = d.ReasonCode
	c.mu.Lock()
	// [MQTT-3.14.4-3] DISCONNECT 0x00 discards the will; any other
	// reason (0x04 "with will message", or an error the client
	// reports) leaves it to be published (MQTT 5 §3.1.2.5).
	c.disconnected = true
	c.normal = d.ReasonCode == packet.NormalDisconnection
	c.mu.Unlock()
	return errDisconnect
}

// handlePublish takes a PUBLISH from the client onto the backbone.
func (c *client) handlePublish(fh packet.FixedHeader, body []byte) error {
	if c.limiter != nil {
		// Over the tenant's message rate: stop reading from this client
		// until the rate allows (TCP pushes back); nothing is dropped.
		for !c.limiter.Allow() {
			c.b.stats.RateLimited.Add(1)
			select {
			case <-time.After(c.limitWait):
			case <-c.quit:
				return nil
			}
		}
	}
	sc := inPool.Get().(*inScratch)
	defer putInScratch(sc)
	p := &sc.pub
	if err := p.Decode(c.version, fh, body); err != nil {
		return err
	}
	c.b.stats.MessagesIn.Add(1)
	c.msgsIn.Add(1)
	c.tc.msgsIn.Add(1)
	c.tc.bytesIn.Add(uint64(len(p.Payload)))
	if c.version == packet.V5 && p.QoS > 0 && c.inboundFull(p) {
		// [MQTT-3.3.4-7] more unacknowledged QoS > 0 PUBLISHes than the
		// Receive Maximum in our CONNACK.
		return fmt.Errorf("%w: over %d unacknowledged QoS 1/2 PUBLISHes", errReceiveMaximum, c.b.opts.MaxInflight)
	}
	t := p.Topic
	if c.version == packet.V5 && p.Properties.Has(packet.PropTopicAlias) {
		a := p.Properties.TopicAlias
		if a == 0 || a > maxTopicAliases {
			// [MQTT-3.3.2-9] over the Topic Alias Maximum in our CONNACK.
			return fmt.Errorf("%w: alias %d over the maximum %d", errBadTopicAlias, a, maxTopicAliases)
		}
		if len(t) > 0 {
			if c.aliases == nil {
				c.aliases = make(map[uint16][]byte)
			}
			c.aliases[a] = append(c.aliases[a][:0], t...)
		} else if t = c.aliases[a]; t == nil {
			// An alias never set on this connection (MQTT 5 §3.3.2.3.4).
			return fmt.Errorf("%w: topic alias %d used before it was set", packet.ProtocolError, a)
		}
	}
	if err := topic.ValidateTopic(t); err != nil {
		return fmt.Errorf("PUBLISH topic %q: %w", t, err) // [MQTT-3.3.2-2]
	}
	allowed := t[0] != '$' && c.principal.Rules().CanPublish(t)
	if !allowed {
		// [MQTT-3.3.5-2] 3.1.1: acknowledge and drop; 5.0: say so.
		c.log().Info("publish denied", "topic", string(t))
		c.refusePublish(p, packet.NotAuthorized, "not authorized to publish to this topic")
		return nil
	}
	m := &sc.msg
	*m = Message{
		Tenant: c.tenant, Topic: t, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
		Origin: c.b.opts.NodeID, ClientID: c.id, paced: true,
	}
	if c.version == packet.V5 {
		if len(p.Properties.SubscriptionIdentifiers) > 0 {
			return fmt.Errorf("%w: subscription identifier from a client", packet.ProtocolError) // [MQTT-3.3.4-6]
		}
		if p.Properties.Has(packet.PropResponseTopic) {
			if err := topic.ValidateTopic([]byte(p.Properties.ResponseTopic)); err != nil {
				// [MQTT-3.3.2-13] a topic name, so [MQTT-3.3.2-14] no wildcards.
				return fmt.Errorf("%w: response topic %q: %w", packet.ProtocolError, p.Properties.ResponseTopic, err)
			}
		}
		if p.Properties.Has(packet.PropPayloadFormat) && p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
			// MQTT 5 §3.3.2.3.2: PUBACK/PUBREC 0x99 at QoS > 0; at QoS 0
			// there is no ack, so DISCONNECT 0x99.
			if p.QoS == 0 {
				return fmt.Errorf("%w: payload is not UTF-8 as its payload format indicator says", packet.PayloadFormatInvalid)
			}
			c.log().Info("publish refused: payload format invalid", "topic", string(t))
			c.refusePublish(p, packet.PayloadFormatInvalid, "payload is not UTF-8 as its payload format indicator says")
			return nil
		}
		m.Props = publishProps(&p.Properties)
		if p.Properties.Has(packet.PropMessageExpiry) {
			m.Expiry = time.Now().Add(time.Duration(p.Properties.MessageExpiry) * time.Second)
		}
	}

	switch p.QoS {
	case 0:
		if err := c.b.bb.Publish(m, nil); err != nil {
			c.log().Warn("publish failed; QoS 0 message dropped", "topic", string(t), "err", err)
		}
		return nil
	case 1:
		return c.publishQoS1(m, p.PacketID)
	default:
		return c.publishQoS2(m, p.PacketID)
	}
}

// inScratch is where an inbound PUBLISH is decoded and turned into a
// Message: too large to sit in every connection (most are idle) and, since
// the Message goes through the Router interface, it would escape if it
// were a local. Router.Publish does not keep it.
type inScratch struct {
	pub packet.Publish
	msg Message
}

var inPool = sync.Pool{New: func() any { return new(inScratch) }}

func putInScratch(sc *inScratch) {
	*sc = inScratch{} // drop the references into the read buffer
	inPool.Put(sc)
}

// inboundFull reports whether the client already has as many QoS > 0
// PUBLISHes unacknowledged as our Receive Maximum allows: QoS 1 ones whose
// PUBACK is not queued yet, QoS 2 ones whose PUBREL has not come (counted a
// little low, never high: a client within its quota is never cut off). A
// resent QoS 2 PUBLISH already counted is not counted again.
func (c *client) inboundFull(p *packet.Publish) bool {
	if _, dup := c.qos2in[p.PacketID]; dup && p.QoS == 2 {
		return false
	}
	c.mu.Lock()
	n := len(c.acks)
	c.mu.Unlock()
	return n+len(c.qos2in) >= c.b.opts.MaxInflight
}

// refusePublish answers a PUBLISH that is not carried: PUBACK or PUBREC
// with rc (and, MQTT 5, a reason string); 3.1.1 has no codes there, so the
// client just sees it acknowledged [MQTT-3.3.5-2].
func (c *client) refusePublish(p *packet.Publish, rc packet.ReasonCode, msg string) {
	switch p.QoS {
	case 1:
		c.ackNow(p.PacketID, rc, msg)
	case 2:
		c.enqueueCtrl(outItem{typ: packet.PUBREC, id: p.PacketID, rc: rc, ext: withReason(msg)})
	}
}

// publishQoS1 publishes m and sends PUBACK once the backbone has it, keeping
// PUBACKs in the order of the PUBLISHes [MQTT-4.6.0-2].
func (c *client) publishQoS1(m *Message, id uint16) error {
	c.makeInSem()
	select {
	case c.inSem <- struct{}{}:
	case <-c.quit:
		return nil
	}
	c.mu.Lock()
	seq := c.ackBase + uint64(len(c.acks))
	c.acks = append(c.acks, pendingAck{id: id})
	c.mu.Unlock()
	if err := c.b.bb.Publish(m, func(err error) { c.completeAck(seq, err) }); err != nil {
		c.completeAck(seq, err)
	}
	return nil
}

// makeInSem makes inSem at the first QoS ≥ 1 publish of the connection (the
// read loop owns it; the backbone's callbacks only run after it is made).
func (c *client) makeInSem() {
	if c.inSem == nil {
		c.inSem = make(chan struct{}, c.b.opts.MaxInflight)
	}
}

// completeAck records the backbone's answer for inbound ack seq and sends
// every PUBACK that is now due, in order.
func (c *client) completeAck(seq uint64, err error) {
	c.mu.Lock()
	i := seq - c.ackBase
	if i >= uint64(len(c.acks)) {
		c.mu.Unlock()
		return
	}
	a := &c.acks[i]
	a.state = ackOK
	if err != nil {
		a.state, a.rc = c.refusal(err)
	}
	n, failed := c.flushAcksLocked()
	start := c.writerNeededLocked()
	c.mu.Unlock()
	c.afterAcks(n, failed, start)
	if err != nil {
		c.log().Warn("backbone refused a QoS 1 message", "err", err)
	}
}

// flushAcksLocked moves the PUBACKs that are due, in order, to the control
// queue; c.mu is held. It returns how many inbound publishes completed and
// whether one of them failed: a 3.1.1 client gets no PUBACK for it, nor for
// anything after it, and the connection closes, so that the client sends
// them again [MQTT-4.6.0-2].
func (c *client) flushAcksLocked() (n int, failed bool) {
	for ; n < len(c.acks) && c.acks[n].state != ackWaiting; n++ {
		a := c.acks[n]
		if a.state == ackFailed {
			failed = true
		}
		if !failed {
			c.ctrl = append(c.ctrl, outItem{typ: packet.PUBACK, id: a.id, rc: a.rc, ext: withReason(a.reason)})
		}
	}
	rest := copy(c.acks, c.acks[n:])
	c.acks = c.acks[:rest]
	if rest == 0 && cap(c.acks) > 8 {
		c.acks = nil // an idle connection keeps no room for a burst
	}
	c.ackBase += uint64(n)
	return n, failed
}

// afterAcks releases the inbound slots of n completed publishes, starts the
// writer if start says so (writerNeededLocked), and closes the connection
// after a failure.
func (c *client) afterAcks(n int, failed, start bool) {
	for range n {
		<-c.inSem
	}
	if start {
		c.startWriter()
	}
	if failed {
		c.shutdown(packet.ServerUnavailable)
	}
}

// ackNow queues a PUBACK that needs no backbone answer (a refused publish)
// behind the ones still waiting, keeping their order [MQTT-4.6.0-2].
func (c *client) ackNow(id uint16, rc packet.ReasonCode, msg string) {
	c.makeInSem()
	select {
	case c.inSem <- struct{}{}:
	case <-c.quit:
		return
	}
	c.mu.Lock()
	c.acks = append(c.acks, pendingAck{id: id, state: ackOK, rc: rc, reason: msg})
	n, failed := c.flushAcksLocked()
	start := c.writerNeededLocked()
	c.mu.Unlock()
	c.afterAcks(n, failed, start)
}

// refusal decides how a publish the backbone refused is answered: a
// message that can never be carried is acknowledged and dropped in 3.1.1
// [MQTT-3.3.5-2] (0x83 in 5.0); a passing failure closes a 3.1.1
// connection without PUBACK and is 0x80 in 5.0.
func (c *client) refusal(err error) (state uint8, rc packet.ReasonCode) {
	tooLarge := errors.Is(err, ErrTooLarge)
	switch {
	case c.version == packet.V5 && tooLarge:
		return ackOK, packet.ImplementationSpecificError
	case c.version == packet.V5:
		return ackOK, packet.UnspecifiedError
	case tooLarge:
		return ackOK, packet.Success
	default:
		return ackFailed, packet.Success
	}
}

// publishQoS2 publishes m (once per packet ID) and answers PUBREC.
func (c *client) publishQoS2(m *Message, id uint16) error {
	if _, dup := c.qos2in[id]; dup {
		// Already taken: answer again, do not publish again [MQTT-4.3.3-2].
		c.enqueueCtrl(outItem{typ: packet.PUBREC, id: id})
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
	defer cancel()
	errc := make(chan error, 1)
	if err := c.b.bb.Publish(m, func(err error) { errc <- err }); err != nil {
		return c.qos2Failed(id, err)
	}
	select {
	case err := <-errc:
		if err != nil {
			return c.qos2Failed(id, err)
		}
	case <-ctx.Done():
		return c.qos2Failed(id, ctx.Err())
	}
	if c.qos2in == nil {
		c.qos2in = make(map[uint16]struct{})
	}
	c.qos2in[id] = struct{}{}
	if c.state != nil {
		if err := c.b.bb.MarkQoS2(ctx, c.tenant, c.id, QoS2Received, id, 0, true); err != nil {
			c.log().Warn("storing QoS 2 state; a resend after an edge crash may duplicate", "err", err)
		}
	}
	c.enqueueCtrl(outItem{typ: packet.PUBREC, id: id})
	return nil
}

func (c *client) qos2Failed(id uint16, err error) error {
	state, rc := c.refusal(err)
	if state == ackFailed {
		return fmt.Errorf("publishing QoS 2 message: %w", err)
	}
	c.log().Warn("backbone refused a QoS 2 message", "err", err)
	c.enqueueCtrl(outItem{typ: packet.PUBREC, id: id, rc: rc})
	return nil
}

// handleAck handles PUBACK, PUBREC, PUBREL and PUBCOMP.
func (c *client) handleAck(a *packet.Ack) error {
	switch a.Type {
	case packet.PUBACK:
		if f, ok := c.release(a.PacketID); ok && f.del != nil {
			if err := f.del.Ack(); err != nil {
				c.log().Warn("acknowledging queue message", "err", err)
			}
		}
	case packet.PUBREC:
		c.mu.Lock()
		f, ok := c.inflight[a.PacketID]
		c.mu.Unlock()
		if ok && a.ReasonCode >= 0x80 {
			// MQTT 5: the receiver refused the message; the flow ends.
			if f, ok := c.release(a.PacketID); ok && f.del != nil {
				f.del.Ack()
			}
			return nil
		}
		if ok && f.qos == 2 && !f.rel {
			c.pubrec(a.PacketID, f)
		}
		rc := packet.Success
		if !ok {
			rc = packet.PacketIdentifierNotFound
		}
		c.enqueueCtrl(outItem{typ: packet.PUBREL, id: a.PacketID, rc: rc})
	case packet.PUBCOMP:
		f, ok := c.release(a.PacketID)
		if ok && f.del != nil {
			if err := f.del.Ack(); err != nil {
				c.log().Warn("acknowledging queue message", "err", err)
			}
		}
		if ok && f.del == nil && f.seq != 0 {
			// A flow restored at the PUBREL stage whose queue message an
			// edge crash left behind: when the queue offers it, it is
			// settled, never sent again [MQTT-4.3.3-1].
			c.mu.Lock()
			if c.completed == nil {
				c.completed = make(map[uint64]struct{})
			}
			c.completed[f.seq] = struct{}{}
			c.mu.Unlock()
		}
		if ok && c.state != nil {
			ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
			if err := c.b.bb.MarkQoS2(ctx, c.tenant, c.id, QoS2Released, a.PacketID, 0, false); err != nil {
				c.log().Warn("clearing QoS 2 state", "err", err)
			}
			cancel()
		}
	case packet.PUBREL:
		rc := packet.Success
		if _, ok := c.qos2in[a.PacketID]; ok {
			delete(c.qos2in, a.PacketID)
			if c.state != nil {
				ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
				if err := c.b.bb.MarkQoS2(ctx, c.tenant, c.id, QoS2Received, a.PacketID, 0, false); err != nil {
					c.log().Warn("clearing QoS 2 state", "err", err)
				}
				cancel()
			}
		} else if c.version == packet.V5 {
			rc = packet.PacketIdentifierNotFound
		}
		c.enqueueCtrl(outItem{typ: packet.PUBCOMP, id: a.PacketID, rc: rc}) // [MQTT-4.3.3-2]
	}
	return nil
}

// pubrec moves an outbound QoS 2 flow to the PUBREL stage. For a queued
// message of a persistent session the stage is stored first and the
// message then leaves the queue, so that no edge ever sends its PUBLISH
// again [MQTT-4.3.3-1]; after a reconnect the PUBREL is resent
// [MQTT-4.4.0-1].
func (c *client) pubrec(id uint16, f inflight) {
	if f.del != nil && c.state != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
		err := c.b.bb.MarkQoS2(ctx, c.tenant, c.id, QoS2Released, id, f.seq, true)
		if err == nil {
			err = f.del.Settle(ctx)
		}
		cancel()
		if err != nil {
			c.log().Warn("storing QoS 2 PUBREL stage; a crash now can resend the PUBLISH", "err", err)
		} else {
			f.del = nil
		}
	}
	f.rel = true
	c.mu.Lock()
	if _, ok := c.inflight[id]; ok {
		c.inflight[id] = f
	}
	c.mu.Unlock()
}

// handleSubscribe grants what it can of a SUBSCRIBE, answers SUBACK and
// then sends matching retained messages.
func (c *client) handleSubscribe(p *packet.Subscribe) error {
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	type granted struct {
		f       topic.Filter
		sub     Subscription
		existed bool
	}
	var gs []granted
	var rts []*route      // the routes of the granted subscriptions
	var problems []string // reason string of the SUBACK (MQTT 5)
	subID := 0
	if len(p.Properties.SubscriptionIdentifiers) > 0 {
		subID = p.Properties.SubscriptionIdentifiers[0]
	}
	for i, s := range p.Subscriptions {
		f, err := topic.ParseFilter(s.Filter)
		if err != nil {
			c.log().Info("subscribe refused: invalid filter", "filter", s.Filter, "err", err)
			codes[i] = c.failCode(packet.TopicFilterInvalid)
			problems = append(problems, fmt.Sprintf("%q: %v", s.Filter, err))
			continue
		}
		if f.Kind == topic.Shared && s.NoLocal && c.version == packet.V5 {
			return fmt.Errorf("%w: No Local on a shared subscription", packet.ProtocolError) // [MQTT-3.8.3-4]
		}
		if !c.principal.Rules().CanSubscribe(f.Topic) {
			c.log().Info("subscribe denied", "filter", s.Filter)
			codes[i] = c.failCode(packet.NotAuthorized)
			problems = append(problems, fmt.Sprintf("%q: not authorized", s.Filter))
			continue
		}
		sub := Subscription{
			Filter: s.Filter, QoS: min(s.QoS, 2), NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, ID: subID,
		}
		c.mu.Lock()
		old, existed := c.subs[s.Filter]
		c.mu.Unlock()
		if existed && c.classFor(old) != c.classFor(sub) {
			c.b.removeRoute(c, old.Filter, c.classFor(old))
		}
		rt, err := c.b.addRoute(c, f, sub, c.classFor(sub))
		if err != nil {
			c.log().Error("subscribe failed", "filter", s.Filter, "err", err)
			codes[i] = c.failCode(packet.UnspecifiedError)
			continue
		}
		rts = append(rts, rt)
		c.mu.Lock()
		if c.subs == nil {
			c.subs = make(map[string]Subscription)
		}
		c.subs[s.Filter] = sub // [MQTT-3.8.4-3] replaces an existing one
		c.mu.Unlock()
		codes[i] = packet.ReasonCode(sub.QoS)
		gs = append(gs, granted{f, sub, existed})
	}
	if c.state != nil && len(gs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
		err := c.saveSession(ctx)
		cancel()
		if err != nil {
			c.log().Error("storing subscriptions", "err", err)
			if errors.Is(err, ErrSessionConflict) {
				return fmt.Errorf("session taken over: %w", err)
			}
			for i := range codes {
				if codes[i] < 0x80 {
					codes[i] = c.failCode(packet.UnspecifiedError)
				}
			}
			for _, g := range gs {
				c.mu.Lock()
				delete(c.subs, g.sub.Filter)
				c.mu.Unlock()
				c.b.removeRoute(c, g.sub.Filter, c.classFor(g.sub))
			}
			gs = nil
		}
	}
	if len(gs) > 0 {
		// A route opened just now (by this client or another one) may not
		// be known to the backbone yet: a message published on another
		// edge right after SUBACK would miss it [MQTT-3.8.4-3]. Wait until
		// it is (a round trip to NATS); if the backbone does not answer,
		// SUBACK anyway — its subscriptions are sent again when it is back.
		ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
		if err := c.b.syncRoutes(ctx, rts); err != nil {
			c.log().Warn("new subscription not confirmed by the backbone; SUBACK anyway", "err", err)
		}
		cancel()
	}
	// The rules may have changed while this SUBSCRIBE was checked: make
	// the next delivery check the new subscriptions against them.
	c.aclSeen.Store(nil)
	reason := strings.Join(problems, "; ")
	if len(reason) > 256 {
		reason = strings.ToValidUTF8(reason[:256], "")
	}
	c.enqueueCtrl(outItem{typ: packet.SUBACK, id: p.PacketID, ext: &outExt{codes: codes, reason: reason}})

	// Retained messages [MQTT-3.3.1-6], never for shared subscriptions
	// (MQTT 5 §4.8.2), as retain handling says (MQTT 5 §3.8.3.1).
	for _, g := range gs {
		if g.f.Kind == topic.Shared || g.sub.RetainHandling == 2 || (g.sub.RetainHandling == 1 && g.existed) {
			continue
		}
		c.sendRetained(g.f, g.sub)
	}
	return nil
}

// sendRetained queues the retained messages matching a new subscription.
func (c *client) sendRetained(f topic.Filter, s Subscription) {
	ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
	defer cancel()
	dollar := topic.NeedsDollarCheck(f.Topic)
	err := c.b.bb.Retained(ctx, c.tenant, f.Topic, func(m *Message) error {
		if dollar && len(m.Topic) > 0 && m.Topic[0] == '$' {
			return nil
		}
		if f.Kind == topic.Local && m.Origin != c.b.opts.NodeID {
			return nil
		}
		// [MQTT-3.3.1-8] retained messages are sent with RETAIN set.
		c.deliver(m, min(m.QoS, s.QoS), true, s.ID)
		return nil
	})
	if err != nil {
		c.log().Warn("loading retained messages", "filter", f.Topic, "err", err)
	}
}

// failCode returns rc for MQTT 5 and 0x80 (failure) for 3.1.1 SUBACKs.
func (c *client) failCode(rc packet.ReasonCode) packet.ReasonCode {
	if c.version == packet.V5 {
		return rc
	}
	return packet.UnspecifiedError // 0x80 [MQTT-3.9.3-2]
}

// handleUnsubscribe removes subscriptions and answers UNSUBACK.
func (c *client) handleUnsubscribe(p *packet.Unsubscribe) error {
	codes := make([]packet.ReasonCode, len(p.Filters))
	changed := false
	for i, f := range p.Filters {
		c.mu.Lock()
		old, ok := c.subs[f]
		if ok {
			delete(c.subs, f)
		}
		c.mu.Unlock()
		if !ok {
			codes[i] = packet.NoSubscriptionExisted
			continue
		}
		changed = true
		c.b.removeRoute(c, f, c.classFor(old))
		codes[i] = packet.Success
	}
	if c.state != nil && changed {
		ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
		err := c.saveSession(ctx)
		cancel()
		if err != nil {
			c.log().Error("storing subscriptions", "err", err)
			if errors.Is(err, ErrSessionConflict) {
				return fmt.Errorf("session taken over: %w", err)
			}
		}
	}
	c.enqueueCtrl(outItem{typ: packet.UNSUBACK, id: p.PacketID, ext: &outExt{codes: codes}}) // [MQTT-3.10.4-4]
	return nil
}

// publishProps returns the MQTT 5 properties of a PUBLISH that travel with
// the message to subscribers [MQTT-3.3.2-17..20], or nil if none do.
func publishProps(in *packet.Properties) *packet.Properties {
	var out packet.Properties
	n := 0
	if in.Has(packet.PropPayloadFormat) {
		out.Set(packet.PropPayloadFormat)
		out.PayloadFormat = in.PayloadFormat
		n++
	}
	if in.Has(packet.PropContentType) {
		out.Set(packet.PropContentType)
		out.ContentType = in.ContentType
		n++
	}
	if in.Has(packet.PropResponseTopic) {
		out.Set(packet.PropResponseTopic)
		out.ResponseTopic = in.ResponseTopic
		n++
	}
	if in.Has(packet.PropCorrelationData) {
		out.Set(packet.PropCorrelationData)
		out.CorrelationData = append([]byte(nil), in.CorrelationData...)
		n++
	}
	if len(in.UserProperties) > 0 {
		out.UserProperties = append([]packet.UserProperty(nil), in.UserProperties...)
		n++
	}
	if n == 0 {
		return nil
	}
	return &out
}
