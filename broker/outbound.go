package broker

import (
	"sync"
	"time"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// outItem is one packet waiting for the writer.
//
// It is 32 bytes: a client's queue may hold --max-queued of them, and the
// writer moves them in bulk, so what only some packets need is in ext.
type outItem struct {
	typ      packet.Type
	qos      byte
	retain   bool
	dup      bool
	reserved bool // PUBLISH whose inflight slot the queue loop reserved
	rc       packet.ReasonCode
	id       uint16
	subID    int32 // subscription identifier of a live delivery (0: none; at most 268,435,455)
	msg      *Message
	ext      *outExt
}

// outExt is the part of an outItem few packets have.
type outExt struct {
	subIDs []int               // those of a queued delivery (all matching subscriptions)
	codes  []packet.ReasonCode // SUBACK, UNSUBACK
	reason string              // MQTT 5 reason string of an ack (if the client wants them)
}

// reason returns the item's reason string.
func (it *outItem) reason() string {
	if it.ext == nil {
		return ""
	}
	return it.ext.reason
}

// withReason returns ext for a reason string (nil if there is none).
func withReason(reason string) *outExt {
	if reason == "" {
		return nil
	}
	return &outExt{reason: reason}
}

// inflight is an outbound QoS ≥ 1 message waiting for PUBACK / PUBREC /
// PUBCOMP.
type inflight struct {
	msg *Message
	qos byte
	del Delivery // nil for live (non-durable) messages
	seq uint64   // queue sequence (0 for live messages)
	rel bool     // PUBREC received, PUBREL sent; waiting for PUBCOMP
}

// pendingAck is an inbound QoS 1 PUBLISH waiting for the backbone.
type pendingAck struct {
	id     uint16
	state  uint8             // ackWaiting, ackOK, ackFailed
	rc     packet.ReasonCode // PUBACK reason when state is ackOK
	reason string            // its reason string (MQTT 5)
}

const (
	ackWaiting uint8 = iota
	ackOK
	ackFailed
)

// maxTopicAliases is the Topic Alias Maximum the broker accepts (MQTT 5).
const maxTopicAliases = 64

// ---------------------------------------------------------------------------
// The writer goroutine runs only while packets wait. Whoever makes the
// queue non-empty (or frees the inflight slot the first waiting PUBLISH
// needs) starts it; it drains both queues, flushes, and exits once nothing
// is left, taking its write buffer from writerPool and giving it back. At
// most one runs per connection (c.writing), so the packet order is that of
// the queues: control packets first, then PUBLISHes in order. An idle
// connection thus has no writer goroutine, no stack for it and no buffer.
// After shutdown the writer sends the DISCONNECT (MQTT 5) and closes the
// connection.

// writerNeededLocked reports whether the caller must start the writer
// (c.startWriter()), and if so marks it running: CONNACK is out, no writer
// runs, and there is something to send or the connection is closing. c.mu
// is held.
func (c *client) writerNeededLocked() bool {
	if c.writing || !c.writable || (!c.closed && len(c.ctrl) == 0 && len(c.pubs) == 0) {
		return false
	}
	c.writing = true
	c.wg.Add(1)
	return true
}

// startWriter runs the writer, once writerNeededLocked said so.
func (c *client) startWriter() {
	if c.b.work == nil { // a Broker made by a test, without New
		go c.writeLoop()
		return
	}
	c.b.work.run((*client).writeLoop, c)
}

// enqueueCtrl queues a control packet. Control packets are never dropped;
// a client that lets them pile up is not reading and is disconnected.
func (c *client) enqueueCtrl(it outItem) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.ctrl = append(c.ctrl, it)
	tooMany := len(c.ctrl) > 4*c.b.opts.MaxQueued+64
	start := c.writerNeededLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
	if tooMany {
		c.log().Warn("client is not reading; disconnecting")
		c.shutdown(reasonFor(errSlowClient))
	}
}

// enqueuePub queues a PUBLISH whose slot (if QoS > 0) is already reserved.
func (c *client) enqueuePub(it outItem) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pubs = append(c.pubs, it)
	start := c.writerNeededLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
}

// deliverLive hands a live message from a route to the client, applying the
// subscription's options. If the client's queue is full the message is
// dropped (counted), unless canWait: then deliverLive queues nothing and
// reports true, and the caller may wait for room (waitRoom) and call it
// again — or, for a client that has stopped taking messages (stalled),
// the message is dropped at once.
func (c *client) deliverLive(m *Message, s *Subscription, canWait bool) (full bool) {
	if s.NoLocal && m.ClientID == c.id {
		return false // [MQTT-3.8.3-3]
	}
	if c.deniedSub(s.Filter) {
		return false
	}
	qos := min(m.QoS, s.QoS)
	retain := s.RetainAsPublished && m.Retain // [MQTT-3.3.1-9]
	return c.enqueue(m, qos, retain, s.ID, canWait)
}

// deniedSub reports whether the connection's rules, changed since it
// subscribed, no longer allow the subscription: its deliveries stop (MQTT
// has no way to tell the client). The verdicts are computed once per rules
// change; the common case is two atomic loads.
func (c *client) deniedSub(filter string) bool {
	rules := c.principal.Rules()
	if rules != c.aclSeen.Load() {
		c.refreshACL(rules)
	}
	d := c.aclDenied.Load()
	return d != nil && (*d)[filter]
}

// refreshACL recomputes which subscriptions the rules deny.
func (c *client) refreshACL(rules *auth.RuleSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aclSeen.Load() == rules {
		return
	}
	var denied map[string]bool
	for filter := range c.subs {
		f, err := topic.ParseFilter(filter)
		if err == nil && !rules.CanSubscribe(f.Topic) {
			if denied == nil {
				denied = make(map[string]bool)
			}
			denied[filter] = true
		}
	}
	if denied != nil {
		c.log().Info("rules changed: deliveries stop for subscriptions no longer allowed", "filters", len(denied))
		c.aclDenied.Store(&denied)
	} else {
		c.aclDenied.Store(nil)
	}
	c.aclSeen.Store(rules)
}

// dropped counts a message for the client that was dropped.
func (c *client) dropped() {
	c.b.stats.Dropped.Add(1)
	c.tc.dropped.Add(1)
}

// deliver queues m for the client, or drops it if the queue is full.
func (c *client) deliver(m *Message, qos byte, retain bool, subID int) {
	c.enqueue(m, qos, retain, subID, false)
}

// maxQueueWait is how long a publisher on this edge waits for room in a
// subscriber's full queue while the subscriber makes no progress at all
// (no PUBLISH leaves its queue or goes out on its socket); after that the
// subscriber counts as stalled and its messages are dropped until it
// takes some again. A second: on a loaded machine a reader that keeps up
// can still be off the CPU for a few hundred milliseconds, and a
// subscriber that accepts nothing for a second is as good as gone (its
// keep-alive will tell).
const maxQueueWait = time.Second

// maxPacedWait bounds one wait for room however much progress the
// subscriber makes: a subscriber that reads, but slowly, paces a
// publisher for at most this long per message before it counts as
// stalled.
const maxPacedWait = 5 * time.Second

// enqueue queues m for the client. If the queue is full, m is dropped
// (counted, logged once per 10 s), unless canWait and the client is not
// stalled: then nothing is queued and enqueue reports true.
func (c *client) enqueue(m *Message, qos byte, retain bool, subID int, canWait bool) (full bool) {
	if !m.Expiry.IsZero() && time.Now().After(m.Expiry) {
		c.dropped()
		return false
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.pubs) >= c.b.opts.MaxQueued {
		if canWait && !c.stalled {
			c.mu.Unlock()
			return true
		}
		c.dropped()
		logIt := time.Since(c.dropLog) > 10*time.Second
		if logIt {
			c.dropLog = time.Now()
		}
		c.mu.Unlock()
		if logIt {
			c.log().Warn("client queue full; dropping messages (logged once per 10 s)", "queued", c.b.opts.MaxQueued)
		}
		return false
	}
	c.pubs = append(c.pubs, outItem{typ: packet.PUBLISH, qos: qos, retain: retain, msg: m, subID: int32(subID)})
	start := c.writerNeededLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
	return false
}

// waitRoom waits until the client's writer takes messages from its full
// queue, and reports whether it did. It keeps waiting while the client
// makes progress (PUBLISHes leave its queue or go out on its socket), so
// that a publisher on this edge is paced by a subscriber that reads, like
// TCP's own flow control; it gives up — false — when the connection
// closes, maxQueueWait passes without progress, or maxPacedWait passes in
// all: the client is then stalled (it stopped reading, or stopped
// acknowledging QoS 1/2 messages, or reads too slowly), so that one such
// subscriber holds its publishers back by at most that much each time.
// Only a client's own read loop waits here (Message.paced), holding no
// lock, which pushes back on that publisher's TCP connection.
func (c *client) waitRoom() bool {
	c.mu.Lock()
	if c.closed || c.stalled {
		c.mu.Unlock()
		return false
	}
	if len(c.pubs) < c.b.opts.MaxQueued {
		c.mu.Unlock()
		return true
	}
	if c.room == nil {
		c.room = make(chan struct{})
	}
	ch := c.room
	c.mu.Unlock()
	seen := c.progress.Load()
	t := time.NewTimer(maxQueueWait)
	defer t.Stop()
	giveUp := time.Now().Add(maxPacedWait)
	for {
		select {
		case <-ch:
			return true
		case <-c.quit:
			return false
		case <-t.C:
		}
		if p := c.progress.Load(); p != seen && time.Now().Before(giveUp) {
			seen = p
			t.Reset(maxQueueWait)
			continue
		}
		c.mu.Lock()
		if c.room == ch {
			c.stalled = true
		}
		c.mu.Unlock()
		return false
	}
}

// pubProgressEvery is how many PUBLISHes the writer writes between two
// counts of progress (waitRoom): it writes them into its buffer, which
// goes to the socket as it fills, so a count means the socket took them.
const pubProgressEvery = 32

// reserve waits for an inflight slot for packet ID id and records f in it.
// It returns false if the connection closes first.
func (c *client) reserve(id uint16, f inflight) bool {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return false
		}
		if _, used := c.inflight[id]; !used && len(c.inflight) < c.recvMax {
			if c.inflight == nil {
				c.inflight = make(map[uint16]inflight) // grows to what is in flight, not recvMax up front
			}
			c.inflight[id] = f
			c.mu.Unlock()
			return true
		}
		c.mu.Unlock()
		select {
		case <-c.slotFree:
		case <-c.quit:
			return false
		}
	}
}

// release frees the inflight slot id and returns what it held. A PUBLISH
// waiting for a slot may go now: the writer starts if it is not running.
func (c *client) release(id uint16) (inflight, bool) {
	c.mu.Lock()
	f, ok := c.inflight[id]
	start := false
	if ok {
		delete(c.inflight, id)
		start = c.writerNeededLocked()
	}
	c.mu.Unlock()
	if ok {
		if c.slotFree != nil {
			select {
			case c.slotFree <- struct{}{}:
			default:
			}
		}
		if start {
			c.startWriter()
		}
	}
	return f, ok
}

// takeBatchLocked moves the packets the writer may send now into batch
// (empty, and cleared): all control packets, then PUBLISHes in order until
// one needs an inflight slot that is not free (ordering is kept: nothing
// overtakes it). c.mu is held.
func (c *client) takeBatchLocked(batch []outItem) []outItem {
	batch = append(batch, c.ctrl...)
	clear(c.ctrl)
	c.ctrl = c.ctrl[:0]
	if cap(c.ctrl) > 256 {
		c.ctrl = nil
	}
	n := 0
	for ; n < len(c.pubs); n++ {
		it := &c.pubs[n]
		if it.qos > 0 && !it.reserved {
			if len(c.inflight) >= c.recvMax {
				break
			}
			it.id = c.freeID()
			if c.inflight == nil {
				c.inflight = make(map[uint16]inflight) // grows to what is in flight, not recvMax up front
			}
			c.inflight[it.id] = inflight{msg: it.msg, qos: it.qos}
		}
	}
	if n == 0 {
		return batch
	}
	// Progress: publishers waiting for room go on (waitRoom).
	c.progress.Add(1)
	c.stalled = false
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
	if n == len(c.pubs) && len(batch) == 0 {
		// The whole queue and nothing before it: swap the two slices
		// rather than copy and clear thousands of items. Both go when the
		// writer exits (writeLoop).
		batch, c.pubs = c.pubs, batch
		return batch
	}
	batch = append(batch, c.pubs[:n]...)
	rest := copy(c.pubs, c.pubs[n:])
	clear(c.pubs[rest:])
	c.pubs = c.pubs[:rest]
	return batch
}

// freeID returns an unused packet ID; c.mu is held and a slot is free.
func (c *client) freeID() uint16 {
	for {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		if _, used := c.inflight[c.nextID]; !used {
			return c.nextID
		}
	}
}

// batchPool holds the writer's batch slices between runs.
var batchPool = sync.Pool{New: func() any { return new([]outItem) }}

// writeLoop is the writer: the only one of the connection after CONNACK,
// running while packets wait (see writerNeededLocked).
func (c *client) writeLoop() {
	defer c.wg.Done()
	c.bw = getWriter(c.nc)
	bp := batchPool.Get().(*[]outItem)
	batch := *bp
	// done gives the buffers back. On the way out of a drained writer it
	// runs before writing is unset: the next writer may start right after.
	done := func() {
		clear(batch)
		if cap(batch) <= 256 {
			*bp = batch[:0]
			batchPool.Put(bp)
		}
		putWriter(c.bw)
		c.bw = nil
	}
	for {
		c.mu.Lock()
		if c.closed {
			// writing stays set: no other writer starts any more.
			c.mu.Unlock()
			c.writeDisconnect()
			c.nc.Close()
			done()
			return
		}
		batch = c.takeBatchLocked(batch[:0])
		if len(batch) == 0 && c.bw.Buffered() == 0 {
			// Drained: exit, keeping no queue memory. A producer that
			// queues from now on sees writing unset and starts a writer.
			done()
			c.writing = false
			c.ctrl = nil
			if len(c.pubs) == 0 {
				c.pubs = nil
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if len(batch) == 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.b.opts.WriteTimeout))
			if err := c.bw.Flush(); err != nil {
				c.writeFailed("flush failed", err)
				done()
				return
			}
			continue
		}
		// A large packet goes straight to the socket: the deadline must be
		// fresh before any write of the batch.
		c.nc.SetWriteDeadline(time.Now().Add(c.b.opts.WriteTimeout))
		pubs := 0
		for i := range batch {
			if err := c.writeItem(&batch[i]); err != nil {
				c.writeFailed("write failed", err)
				done()
				return
			}
			if batch[i].typ == packet.PUBLISH {
				if pubs++; pubs%pubProgressEvery == 0 {
					c.progress.Add(1)
				}
			}
		}
		clear(batch)
	}
}

// writeFailed ends the connection after a failed write (writing stays set:
// no other writer starts any more).
func (c *client) writeFailed(what string, err error) {
	if c.debug() {
		c.log().Debug(what, "err", err)
	}
	c.shutdown(packet.UnspecifiedError)
	c.nc.Close()
}

// writeDisconnect sends an MQTT 5 DISCONNECT with the server's reason
// [MQTT-4.13.2-1] before the connection closes.
func (c *client) writeDisconnect() {
	c.mu.Lock()
	rc, msg, gone := c.reason, c.reasonMsg, c.disconnected
	c.mu.Unlock()
	if c.version != packet.V5 || gone || rc == packet.NormalDisconnection {
		c.bw.Flush()
		return
	}
	d := packet.Disconnect{ReasonCode: rc}
	if msg == "" {
		msg = rc.String()
	}
	// A reason string is always allowed on DISCONNECT [MQTT-3.1.2-29].
	d.Properties.Set(packet.PropReasonString)
	d.Properties.ReasonString = msg
	buf, err := d.Encode(c.bw.AvailableBuffer(), c.version)
	if err == nil && c.maxOut > 0 && len(buf) > c.maxOut {
		// [MQTT-3.14.2-3] not if it makes the packet too large.
		c.stripProblemProps(&d.Properties)
		buf, err = d.Encode(c.bw.AvailableBuffer(), c.version)
	}
	if err == nil && (c.maxOut == 0 || len(buf) <= c.maxOut) {
		c.bw.Write(buf)
	}
	c.bw.Flush()
}

// stripProblemProps removes the reason string and user properties, which
// the server drops first when a packet would exceed the client's Maximum
// Packet Size (MQTT 5 §3.1.2.11.4) or the client asked for no problem
// information [MQTT-3.1.2-29]. It reports whether there were any.
func (c *client) stripProblemProps(p *packet.Properties) bool {
	had := p.Has(packet.PropReasonString) || len(p.UserProperties) > 0
	p.Clear(packet.PropReasonString)
	p.ReasonString = ""
	p.UserProperties = nil
	return had
}

// writeItem encodes one packet into the write buffer. Nothing larger than
// the client's Maximum Packet Size is sent [MQTT-3.1.2-24]: a PUBLISH is
// dropped as if it had been delivered [MQTT-3.1.2-25]; an ack first loses
// its reason string and user properties.
func (c *client) writeItem(it *outItem) error {
	var (
		buf []byte
		err error
	)
	dst := c.bw.AvailableBuffer()
	switch it.typ {
	case packet.PUBLISH:
		return c.writePublish(it, dst)
	case packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP:
		a := packet.Ack{Type: it.typ, PacketID: it.id, ReasonCode: it.rc}
		c.reasonString(&a.Properties, it.reason())
		buf, err = a.Encode(dst, c.version)
		if c.tooLarge(buf, err) && c.stripProblemProps(&a.Properties) {
			buf, err = a.Encode(dst, c.version) // [MQTT-3.4.2-2] and alike
		}
	case packet.SUBACK:
		a := packet.Suback{PacketID: it.id, ReasonCodes: it.ext.codes}
		c.reasonString(&a.Properties, it.ext.reason)
		buf, err = a.Encode(dst, c.version)
		if c.tooLarge(buf, err) && c.stripProblemProps(&a.Properties) {
			buf, err = a.Encode(dst, c.version) // [MQTT-3.9.2-1]
		}
	case packet.UNSUBACK:
		a := packet.Unsuback{PacketID: it.id, ReasonCodes: it.ext.codes}
		buf, err = a.Encode(dst, c.version)
	case packet.PINGRESP:
		buf = packet.AppendPingresp(dst)
	}
	if err != nil {
		return err
	}
	if c.tooLarge(buf, nil) {
		c.log().Warn("control packet larger than the client's maximum packet size; not sent", "type", it.typ, "size", len(buf), "max", c.maxOut)
		return nil
	}
	_, err = c.bw.Write(buf)
	return err
}

// tooLarge reports whether an encoded packet exceeds the client's Maximum
// Packet Size.
func (c *client) tooLarge(buf []byte, err error) bool {
	return err == nil && c.maxOut > 0 && len(buf) > c.maxOut
}

// reasonString sets the reason string of an ack, if there is one and the
// client asked for problem information [MQTT-3.1.2-29].
func (c *client) reasonString(p *packet.Properties, msg string) {
	if msg != "" && c.version == packet.V5 && c.problemInfo {
		p.Set(packet.PropReasonString)
		p.ReasonString = msg
	}
}

// writePublish encodes a PUBLISH into dst and writes it. With MQTT 5 it
// assigns a topic alias while the client's Topic Alias Maximum allows (the
// first topics sent keep their aliases for the connection). A PUBLISH over
// the client's Maximum Packet Size is dropped, counted, and completed as if
// sent [MQTT-3.1.2-25]; its size is computed before encoding, so the check
// costs no allocation.
func (c *client) writePublish(it *outItem, dst []byte) error {
	p := packet.Publish{
		Dup: it.dup, QoS: it.qos, Retain: it.retain, Topic: it.msg.Topic,
		PacketID: it.id, Payload: it.msg.Payload,
	}
	var newAlias uint16
	if c.version == packet.V5 {
		c.publishProps(&p.Properties, it)
		if c.aliasMax > 0 {
			newAlias = c.topicAlias(&p)
		}
	}
	if c.maxOut > 0 {
		if n, err := p.Size(c.version); err == nil && n > c.maxOut {
			c.dropped()
			if it.qos > 0 {
				if f, ok := c.release(it.id); ok && f.del != nil {
					f.del.Ack()
				}
			}
			return nil
		}
	}
	buf, err := p.Encode(dst, c.version)
	if err != nil {
		return err
	}
	if newAlias != 0 {
		// Assigned only once the client is sure to learn it.
		if c.outAliases == nil {
			c.outAliases = make(map[string]uint16)
		}
		c.outAliases[string(it.msg.Topic)] = newAlias
	}
	c.b.stats.MessagesOut.Add(1)
	c.msgsOut.Add(1)
	c.tc.msgsOut.Add(1)
	c.tc.bytesOut.Add(uint64(len(it.msg.Payload)))
	_, err = c.bw.Write(buf)
	return err
}

// topicAlias applies an outbound topic alias to p: a topic that has one is
// sent as an empty name with the alias; a new topic gets the next alias
// while fewer than the client's maximum are in use [MQTT-3.3.2-11], which
// topicAlias returns for the caller to record once the packet is written.
func (c *client) topicAlias(p *packet.Publish) uint16 {
	if a, ok := c.outAliases[string(p.Topic)]; ok {
		p.Properties.Set(packet.PropTopicAlias)
		p.Properties.TopicAlias = a
		p.Topic = nil
		return 0
	}
	if len(c.outAliases) >= int(c.aliasMax) {
		return 0
	}
	a := uint16(len(c.outAliases) + 1)
	p.Properties.Set(packet.PropTopicAlias)
	p.Properties.TopicAlias = a
	return a
}

// publishProps fills the MQTT 5 properties of an outbound PUBLISH.
func (c *client) publishProps(p *packet.Properties, it *outItem) {
	m := it.msg
	if m.Props != nil {
		*p = *m.Props
	}
	if !m.Expiry.IsZero() {
		// [MQTT-3.3.2-6] the expiry sent is the lifetime left.
		left := time.Until(m.Expiry)
		if left < time.Second {
			left = time.Second
		}
		p.Set(packet.PropMessageExpiry)
		p.MessageExpiry = uint32(left / time.Second)
	}
	switch {
	case it.ext != nil && len(it.ext.subIDs) > 0:
		p.SubscriptionIdentifiers = it.ext.subIDs // [MQTT-3.3.4-4]
	case it.subID > 0:
		c.subIDBuf[0] = int(it.subID) // [MQTT-3.3.4-5]
		p.SubscriptionIdentifiers = c.subIDBuf[:1]
	}
}
