// Package bench is Relay's MQTT load generator, the library behind
// "relay bench": fan-in, fan-out, pairs, fixed-rate latency and connection
// storms against any MQTT broker, in the spirit of emqtt-bench and
// "nats bench".
//
// It speaks MQTT through broker/packet (PUBLISH encode and decode allocate
// nothing) on plain net.Conns with large buffers, so that one generator
// core outruns a broker core; Forwarder, a trivial MQTT forwarder, measures
// that ceiling.
//
// Every payload starts with the publisher's index, a sequence number and
// the send time, so each subscriber counts exactly what it received,
// received twice, received out of order and never received (lost), per
// publisher, and records the end-to-end latency of every message.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// Result is the outcome of a run. Counts are messages; rates are messages
// per second over the measurement window.
type Result struct {
	Scenario    Scenario `json:"scenario"`
	Addr        string   `json:"addr"`
	Version     byte     `json:"mqtt_version"`
	QoS         byte     `json:"qos"`
	Size        int      `json:"size"`
	Clients     int      `json:"clients"`
	Publishers  int      `json:"publishers,omitempty"`
	Subscribers int      `json:"subscribers,omitempty"`
	// Rate is the configured per-publisher rate (0: unlimited).
	Rate       float64 `json:"rate_per_publisher"`
	Inflight   int     `json:"inflight,omitempty"`
	Persistent bool    `json:"persistent"`
	// Window is the measurement window in seconds.
	Window float64 `json:"window_s"`

	// Sent counts PUBLISHes written; SentInWindow those written in the
	// window. Acked counts PUBACKs (QoS 1) or PUBCOMPs (QoS 2).
	Sent         int64 `json:"sent"`
	SentInWindow int64 `json:"sent_in_window"`
	Acked        int64 `json:"acked"`
	// Expected is every sent message times the subscribers it should
	// reach; Received counts deliveries (duplicates included), and
	// ReceivedInWindow those that arrived before the window closed.
	Expected         int64 `json:"expected"`
	Received         int64 `json:"received"`
	ReceivedInWindow int64 `json:"received_in_window"`
	// Duplicates are deliveries of a message a subscriber already had;
	// Lost are expected messages a subscriber never got; Reordered are
	// deliveries behind a later message of the same publisher.
	Duplicates int64 `json:"duplicates"`
	Lost       int64 `json:"lost"`
	Reordered  int64 `json:"reordered"`
	// Stray counts messages that were not this run's or not for that
	// subscriber; UnexpectedAcks acknowledgements for nothing in flight.
	Stray          int64 `json:"stray,omitempty"`
	UnexpectedAcks int64 `json:"unexpected_acks,omitempty"`
	// Rejected counts MQTT 5 acknowledgements with an error reason code.
	Rejected int64 `json:"rejected,omitempty"`

	// DeliverySpan is the time in seconds from the start of the window to
	// the last delivery: the window, plus however long the broker took
	// to deliver what it had accepted (within Config.Drain).
	DeliverySpan float64 `json:"delivery_span_s"`

	// SentRate is SentInWindow per second of the window. DeliveredRate,
	// the headline number, is Received per second of the delivery span:
	// a broker that accepts messages faster than it delivers them, and
	// delivers them late, gets no credit for the accepting.
	// WindowDeliveredRate is ReceivedInWindow per second of the window.
	SentRate            float64 `json:"sent_per_s"`
	DeliveredRate       float64 `json:"delivered_per_s"`
	WindowDeliveredRate float64 `json:"window_delivered_per_s"`

	// Latency is end to end (publisher write to subscriber read) over every
	// received message.
	Latency *LatencyStats `json:"latency,omitempty"`
	// Conn is the conn scenario's result.
	Conn *ConnResult `json:"conn,omitempty"`
	// Errors lists what went wrong (connections lost, refusals), with
	// counts.
	Errors []string `json:"errors,omitempty"`
}

// LostPercent returns Lost as a percentage of Expected.
func (r *Result) LostPercent() float64 {
	if r.Expected == 0 {
		return 0
	}
	return 100 * float64(r.Lost) / float64(r.Expected)
}

// Run runs one benchmark against cfg.Addr and returns its result. It
// returns an error wrapping ErrConfig for a bad configuration, and an error
// when a connection cannot be set up; failures during the window are
// counted in the Result instead. Cancelling ctx ends the window early.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Scenario == Conn {
		return runConn(ctx, &cfg)
	}
	r := newRun(&cfg)
	defer r.closeAll()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	r.measure(ctx)
	r.drain(ctx)
	r.closeAll()
	res := r.result()
	if cfg.Persistent {
		cleanupSessions(&cfg, r.ids)
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// Run state
// ---------------------------------------------------------------------------

type run struct {
	cfg    *Config
	runID  string
	prefix string    // topic prefix with run ID
	base   time.Time // payload timestamps are nanoseconds since base

	pubs []*publisher
	subs []*subscriber
	ids  []dialOptions // every client, for the persistent-session cleanup

	stop    atomic.Bool
	stopCh  chan struct{}
	readers sync.WaitGroup
	closed  sync.Once

	errs errorLog

	window       time.Duration
	t0           int64 // r.now() at the start of the window
	sentInWindow int64
	recvInWindow int64
}

// publisher is one publishing connection.
type publisher struct {
	c     *client
	idx   uint32
	topic []byte
	qos   byte

	window  chan struct{} // a token per message in flight (QoS ≥ 1)
	pending []atomic.Uint64
	dead    chan struct{} // closed when the reader ends
	done    chan struct{} // closed when the publishing goroutine ends

	_              [64]byte // keep the hot counters off others' cache lines
	sent           atomic.Int64
	acked          atomic.Int64
	rejected       atomic.Int64
	unexpectedAcks atomic.Int64
	_              [64]byte
}

// subscriber is one subscribing connection. Its streams and histogram
// belong to its reader goroutine until the readers have ended.
type subscriber struct {
	c       *client
	filter  string
	lo, hi  uint32 // the publisher indexes it should hear from
	streams []stream
	hist    Histogram
	stray   int64
	last    int64 // r.now() of the last delivery

	_        [64]byte
	received atomic.Int64
	_        [64]byte
}

func newRun(cfg *Config) *run {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	return &run{
		cfg:    cfg,
		runID:  id,
		prefix: cfg.TopicPrefix + "/" + id,
		base:   time.Now(),
		stopCh: make(chan struct{}),
	}
}

// now returns nanoseconds since r.base on the monotonic clock.
func (r *run) now() int64 { return int64(time.Since(r.base)) }

// topology returns the publishers' topics and the subscribers' filters
// with the publisher range each should hear from.
func (r *run) topology() (pubTopics []string, subFilters []string, ranges [][2]uint32) {
	n := r.cfg.Clients
	topic := func(i int) string { return fmt.Sprintf("%s/%d", r.prefix, i) }
	switch r.cfg.Scenario {
	case FanIn:
		for i := range n {
			pubTopics = append(pubTopics, topic(i))
		}
		subFilters = []string{r.prefix + "/+"}
		ranges = [][2]uint32{{0, uint32(n)}}
	case FanOut:
		pubTopics = []string{topic(0)}
		for range n {
			subFilters = append(subFilters, topic(0))
			ranges = append(ranges, [2]uint32{0, 1})
		}
	default: // Pairs, Latency
		for i := range n {
			pubTopics = append(pubTopics, topic(i))
			subFilters = append(subFilters, topic(i))
			ranges = append(ranges, [2]uint32{uint32(i), uint32(i + 1)})
		}
	}
	return
}

// setup connects and subscribes every subscriber, then connects every
// publisher, Concurrency at a time, and starts their readers.
func (r *run) setup(ctx context.Context) error {
	cfg := r.cfg
	pubTopics, subFilters, ranges := r.topology()
	r.subs = make([]*subscriber, len(subFilters))
	r.pubs = make([]*publisher, len(pubTopics))
	for i := range r.subs {
		r.ids = append(r.ids, r.dialOptions("s", i, i))
	}
	for i := range r.pubs {
		r.ids = append(r.ids, r.dialOptions("p", i, len(r.subs)+i))
	}
	err := parallel(ctx, len(r.subs), cfg.Concurrency, func(ctx context.Context, i int) error {
		c, err := dial(ctx, cfg, r.ids[i])
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		if err := c.subscribe(subFilters[i], cfg.QoS, cfg.ConnectTimeout); err != nil {
			c.conn.Close()
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		s := &subscriber{c: c, filter: subFilters[i], lo: ranges[i][0], hi: ranges[i][1]}
		s.streams = make([]stream, s.hi-s.lo)
		r.subs[i] = s
		return nil
	})
	r.startReaders(true)
	if err != nil {
		return err
	}
	err = parallel(ctx, len(r.pubs), cfg.Concurrency, func(ctx context.Context, i int) error {
		c, err := dial(ctx, cfg, r.ids[len(r.subs)+i])
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		p := &publisher{
			c: c, idx: uint32(i), topic: []byte(pubTopics[i]), qos: cfg.QoS,
			dead: make(chan struct{}), done: make(chan struct{}),
		}
		if cfg.QoS > 0 {
			w := cfg.Inflight
			if c.receiveMax > 0 {
				w = min(w, c.receiveMax)
			}
			p.window = make(chan struct{}, w)
			p.pending = make([]atomic.Uint64, 65536/64)
		}
		r.pubs[i] = p
		return nil
	})
	r.startReaders(false)
	return err
}

// dialOptions returns the CONNECT fields of client i of a role ("s" or
// "p"); n is its index among all clients, for "{i}" in credentials.
func (r *run) dialOptions(role string, i, n int) dialOptions {
	o := dialOptions{
		clientID:   fmt.Sprintf("bench-%s-%s%d", r.runID, role, i),
		username:   credential(r.cfg.Username, n),
		password:   credential(r.cfg.Password, n),
		persistent: r.cfg.Persistent,
		n:          n,
	}
	if cs := r.cfg.Credentials; len(cs) > 0 {
		c := cs[n%len(cs)]
		o.username, o.password = c.Username, c.Password
	}
	return o
}

// startReaders starts the reader goroutine of every connected subscriber
// or publisher.
func (r *run) startReaders(subs bool) {
	if subs {
		for _, s := range r.subs {
			if s != nil {
				r.readers.Add(1)
				go s.read(r)
			}
		}
		return
	}
	for _, p := range r.pubs {
		if p != nil {
			r.readers.Add(1)
			go p.read(r)
		}
	}
}

// parallel runs f(i) for i in [0, n), at most conc at a time, and returns
// the first error; after an error no new calls start.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return err
	}
	return ctx.Err()
}

// ---------------------------------------------------------------------------
// The window
// ---------------------------------------------------------------------------

// measure runs the publishers for the window, printing progress.
func (r *run) measure(ctx context.Context) {
	cfg := r.cfg
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	pinger := time.NewTicker(cfg.KeepAlive / 2)
	defer pinger.Stop()
	t0 := time.Now()
	r.t0 = r.now()
	for _, p := range r.pubs {
		go p.publish(r)
	}
	timer := time.NewTimer(cfg.Duration)
	defer timer.Stop()
	var lastSent, lastRecv, lastAcked int64
	last := t0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-timer.C:
			break loop
		case <-pinger.C:
			r.keepAlive()
		case now := <-ticker.C:
			sent, acked, recv := r.totals()
			if cfg.Progress != nil {
				dt := now.Sub(last).Seconds()
				line := fmt.Sprintf("%5.0fs  sent %s/s  recv %s/s", now.Sub(t0).Seconds(),
					si(float64(sent-lastSent)/dt), si(float64(recv-lastRecv)/dt))
				if cfg.QoS > 0 {
					line += fmt.Sprintf("  acked %s/s", si(float64(acked-lastAcked)/dt))
				}
				line += fmt.Sprintf("  (total sent %d, received %d)", sent, recv)
				fmt.Fprintln(cfg.Progress, line)
			}
			lastSent, lastRecv, lastAcked, last = sent, recv, acked, now
		}
	}
	r.stop.Store(true)
	close(r.stopCh)
	r.window = time.Since(t0)
	r.sentInWindow, _, r.recvInWindow = r.totals()
	for _, p := range r.pubs {
		<-p.done
	}
}

// totals sums the live counters.
func (r *run) totals() (sent, acked, received int64) {
	for _, p := range r.pubs {
		sent += p.sent.Load()
		acked += p.acked.Load()
	}
	for _, s := range r.subs {
		received += s.received.Load()
	}
	return
}

// keepAlive pings every connection that was quiet.
func (r *run) keepAlive() {
	for _, p := range r.pubs {
		p.c.keepAlive()
	}
	for _, s := range r.subs {
		s.c.keepAlive()
	}
}

// expected returns how many deliveries the publishers' sends call for.
func (r *run) expected() int64 {
	var n int64
	for _, s := range r.subs {
		for i := s.lo; i < s.hi; i++ {
			n += r.pubs[i].sent.Load()
		}
	}
	return n
}

// drain waits, within cfg.Drain, for the acknowledgements of everything in
// flight and then for the deliveries still on their way: until every
// expected message arrived or nothing arrived for a while.
func (r *run) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.Drain)
	const step = 10 * time.Millisecond
	if r.cfg.QoS > 0 {
		for time.Now().Before(deadline) && ctx.Err() == nil {
			busy := false
			for _, p := range r.pubs {
				select {
				case <-p.dead:
				default:
					if p.acked.Load()+p.rejected.Load() < p.sent.Load() {
						busy = true
					}
				}
			}
			if !busy {
				break
			}
			time.Sleep(step)
		}
	}
	want := r.expected()
	quiet := 500 * time.Millisecond
	var last int64 = -1
	lastChange := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		_, _, recv := r.totals()
		if recv >= want {
			return
		}
		if recv != last {
			last, lastChange = recv, time.Now()
		} else if time.Since(lastChange) > quiet {
			return
		}
		time.Sleep(step)
	}
}

// closeAll disconnects every client and waits for the readers.
func (r *run) closeAll() {
	r.closed.Do(func() {
		if !r.stop.Swap(true) {
			close(r.stopCh)
		}
		var wg sync.WaitGroup
		for _, p := range r.pubs {
			if p != nil {
				wg.Go(p.c.close)
			}
		}
		for _, s := range r.subs {
			if s != nil {
				wg.Go(s.c.close)
			}
		}
		wg.Wait()
		r.readers.Wait()
	})
}

// result sums up, once the readers have ended.
func (r *run) result() *Result {
	cfg := r.cfg
	res := &Result{
		Scenario: cfg.Scenario, Addr: cfg.Addr, Version: cfg.Version, QoS: cfg.QoS, Size: cfg.Size,
		Clients: cfg.Clients, Publishers: len(r.pubs), Subscribers: len(r.subs),
		Rate: cfg.Rate, Persistent: cfg.Persistent,
		Window: r.window.Seconds(), SentInWindow: r.sentInWindow, ReceivedInWindow: r.recvInWindow,
	}
	if cfg.QoS > 0 {
		res.Inflight = cfg.Inflight
	}
	for _, p := range r.pubs {
		res.Sent += p.sent.Load()
		res.Acked += p.acked.Load()
		res.Rejected += p.rejected.Load()
		res.UnexpectedAcks += p.unexpectedAcks.Load()
	}
	var hist Histogram
	var distinct, last int64
	for _, s := range r.subs {
		last = max(last, s.last)
		res.Received += s.received.Load()
		res.Stray += s.stray
		for i := range s.streams {
			st := &s.streams[i]
			distinct += st.distinct
			res.Duplicates += st.dups
			res.Reordered += st.reordered
		}
		hist.Merge(&s.hist)
	}
	res.Expected = r.expected()
	res.Lost = max(res.Expected-distinct, 0)
	span := max(time.Duration(last-r.t0), r.window).Seconds()
	res.DeliverySpan = span
	if w := r.window.Seconds(); w > 0 {
		res.SentRate = float64(res.SentInWindow) / w
		res.WindowDeliveredRate = float64(res.ReceivedInWindow) / w
		res.DeliveredRate = float64(res.Received) / span
	}
	res.Latency = hist.Summary()
	res.Errors = r.errs.list()
	return res
}

// ---------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------

// publish sends until the run stops: as fast as the connection (and, at
// QoS ≥ 1, the in-flight window) allows, or paced at cfg.Rate. Unpaced, it
// flushes only when its buffer is full or the window is closed; paced, it
// flushes every message.
func (p *publisher) publish(r *run) {
	defer close(p.done)
	cfg := r.cfg
	c := p.c
	payload := make([]byte, cfg.Size)
	for i := minSize; i < len(payload); i++ {
		payload[i] = 'x'
	}
	binary.LittleEndian.PutUint32(payload[0:], p.idx)
	pub := packet.Publish{QoS: p.qos, Topic: p.topic, Payload: payload}
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	var timer *time.Timer
	next := time.Now()
	var seq uint32
	var id uint16
	for !r.stop.Load() {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
					defer timer.Stop()
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-r.stopCh:
					return
				}
			} else if d < -100*time.Millisecond {
				// Far behind (the broker pushed back): do not burst to
				// catch up, which would measure the burst.
				next = time.Now()
			}
			next = next.Add(interval)
		}
		if p.qos > 0 {
			select {
			case p.window <- struct{}{}:
			default:
				// The window is full: what is buffered must go out for
				// acknowledgements to come back.
				c.wmu.Lock()
				err := c.bw.Flush()
				c.wmu.Unlock()
				if err != nil {
					r.errs.add(fmt.Errorf("publisher %d: %w", p.idx, err))
					return
				}
				select {
				case p.window <- struct{}{}:
				case <-r.stopCh:
					return
				case <-p.dead:
					return
				}
			}
			if id++; id == 0 {
				id = 1
			}
			pub.PacketID = id
			p.pending[id>>6].Or(1 << (id & 63))
		}
		binary.LittleEndian.PutUint32(payload[4:], seq)
		binary.LittleEndian.PutUint64(payload[8:], uint64(r.now()))
		seq++
		c.wmu.Lock()
		err := p.writePublish(&pub)
		if err == nil && interval > 0 {
			err = c.bw.Flush()
		}
		c.wmu.Unlock()
		if err != nil {
			r.errs.add(fmt.Errorf("publisher %d: %w", p.idx, err))
			return
		}
		p.sent.Add(1)
	}
	c.wmu.Lock()
	if err := c.bw.Flush(); err != nil {
		r.errs.add(fmt.Errorf("publisher %d: %w", p.idx, err))
	}
	c.wmu.Unlock()
}

// writePublish encodes pub straight into the write buffer; wmu is held.
func (p *publisher) writePublish(pub *packet.Publish) error {
	c := p.c
	need := 5 + 2 + len(pub.Topic) + 2 + len(pub.Payload) + 1
	if c.bw.Available() < need && c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			return err
		}
	}
	b, err := pub.Encode(c.bw.AvailableBuffer(), c.version)
	if err != nil {
		return err
	}
	return c.writeLocked(b)
}

// read handles the broker's acknowledgements: PUBACK and PUBCOMP close a
// message's flight, PUBREC is answered with PUBREL.
func (p *publisher) read(r *run) {
	defer r.readers.Done()
	defer close(p.dead)
	c := p.c
	var out []byte
	var ack packet.Ack
	for {
		fh, body, err := c.rd.ReadPacket()
		if err != nil {
			if !r.stop.Load() {
				r.errs.add(fmt.Errorf("publisher %d: connection lost: %w", p.idx, err))
			}
			return
		}
		switch fh.Type {
		case packet.PUBACK, packet.PUBREC, packet.PUBCOMP:
			if err := ack.Decode(c.version, fh, body); err != nil {
				r.errs.add(fmt.Errorf("publisher %d: %w", p.idx, err))
				c.conn.Close()
				return
			}
			rejected := ack.ReasonCode.IsError()
			if fh.Type == packet.PUBREC && !rejected {
				rel := packet.Ack{Type: packet.PUBREL, PacketID: ack.PacketID}
				out, _ = rel.Encode(out, c.version)
				break
			}
			id := ack.PacketID
			bit := uint64(1) << (id & 63)
			if p.pending == nil || p.pending[id>>6].And(^bit)&bit == 0 {
				p.unexpectedAcks.Add(1)
				break
			}
			if rejected {
				p.rejected.Add(1)
			} else {
				p.acked.Add(1)
			}
			<-p.window
		case packet.PINGRESP:
		case packet.DISCONNECT:
			r.errs.add(fmt.Errorf("publisher %d: DISCONNECT from the broker", p.idx))
			c.conn.Close()
			return
		default:
			r.errs.add(fmt.Errorf("publisher %d: unexpected %v", p.idx, fh.Type))
		}
		if len(out) > 0 && c.br.Buffered() == 0 {
			if err := c.write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// ---------------------------------------------------------------------------
// Subscriber
// ---------------------------------------------------------------------------

// read receives PUBLISHes, checks and counts them, records their latency,
// and acknowledges them (in batches: whenever its read buffer runs dry).
func (s *subscriber) read(r *run) {
	defer r.readers.Done()
	c := s.c
	var out []byte
	var pub packet.Publish
	var ack packet.Ack
	var now int64
	for {
		empty := c.br.Buffered() == 0
		fh, body, err := c.rd.ReadPacket()
		if err != nil {
			if !r.stop.Load() {
				r.errs.add(fmt.Errorf("subscriber on %q: connection lost: %w", s.filter, err))
			}
			return
		}
		if empty {
			// One clock read per burst of packets that arrived together.
			now = r.now()
		}
		switch fh.Type {
		case packet.PUBLISH:
			if err := pub.Decode(c.version, fh, body); err != nil {
				r.errs.add(fmt.Errorf("subscriber on %q: %w", s.filter, err))
				c.conn.Close()
				return
			}
			s.receive(pub.Payload, now)
			switch pub.QoS {
			case 1:
				a := packet.Ack{Type: packet.PUBACK, PacketID: pub.PacketID}
				out, _ = a.Encode(out, c.version)
			case 2:
				a := packet.Ack{Type: packet.PUBREC, PacketID: pub.PacketID}
				out, _ = a.Encode(out, c.version)
			}
		case packet.PUBREL:
			if err := ack.Decode(c.version, fh, body); err == nil {
				a := packet.Ack{Type: packet.PUBCOMP, PacketID: ack.PacketID}
				out, _ = a.Encode(out, c.version)
			}
		case packet.PINGRESP, packet.SUBACK:
		case packet.DISCONNECT:
			r.errs.add(fmt.Errorf("subscriber on %q: DISCONNECT from the broker", s.filter))
			c.conn.Close()
			return
		default:
			r.errs.add(fmt.Errorf("subscriber on %q: unexpected %v", s.filter, fh.Type))
		}
		if len(out) > 0 && c.br.Buffered() == 0 {
			if err := c.write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// receive accounts for one delivered payload.
func (s *subscriber) receive(payload []byte, now int64) {
	s.received.Add(1)
	s.last = now
	if len(payload) < minSize {
		s.stray++
		return
	}
	idx := binary.LittleEndian.Uint32(payload)
	if idx < s.lo || idx >= s.hi {
		s.stray++
		return
	}
	s.streams[idx-s.lo].add(binary.LittleEndian.Uint32(payload[4:]))
	s.hist.Record(now - int64(binary.LittleEndian.Uint64(payload[8:])))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

// cleanupSessions reconnects every client of a persistent run with a clean
// session, so that the broker forgets their sessions (best effort).
func cleanupSessions(cfg *Config, ids []dialOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = parallel(ctx, len(ids), cfg.Concurrency, func(ctx context.Context, i int) error {
		o := ids[i]
		o.persistent = false
		if c, err := dial(ctx, cfg, o); err == nil {
			c.close()
		}
		return nil
	})
}

// errorLog keeps the distinct error messages of a run with their counts.
type errorLog struct {
	mu    sync.Mutex
	order []string
	count map[string]int
}

const maxErrors = 20

func (l *errorLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.count == nil {
		l.count = map[string]int{}
	}
	msg := err.Error()
	if _, ok := l.count[msg]; !ok && len(l.order) < maxErrors {
		l.order = append(l.order, msg)
	}
	l.count[msg]++
}

func (l *errorLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.order))
	for _, m := range l.order {
		if n := l.count[m]; n > 1 {
			m = fmt.Sprintf("%s (×%d)", m, n)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// si formats a number with a k/M/G suffix.
func si(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteText writes res for people.
func (res *Result) WriteText(w io.Writer) {
	var b strings.Builder
	switch res.Scenario {
	case Conn:
		res.Conn.writeText(&b, res)
	default:
		fmt.Fprintf(&b, "%s: %d publisher(s) → %d subscriber(s), QoS %d, %d-byte payloads, MQTT level %d, %s window, %s\n",
			res.Scenario, res.Publishers, res.Subscribers, res.QoS, res.Size, res.Version,
			time.Duration(res.Window*float64(time.Second)).Round(time.Millisecond), res.Addr)
		if res.Rate > 0 {
			fmt.Fprintf(&b, "  rate        %s msg/s per publisher\n", si(res.Rate))
		}
		fmt.Fprintf(&b, "  sent        %d (%s msg/s)\n", res.Sent, si(res.SentRate))
		if res.QoS > 0 {
			fmt.Fprintf(&b, "  acked       %d (window %d)\n", res.Acked, res.Inflight)
		}
		fmt.Fprintf(&b, "  received    %d of %d expected\n", res.Received, res.Expected)
		fmt.Fprintf(&b, "  delivered   %s msg/s over %.2fs (in the window: %s msg/s)\n",
			si(res.DeliveredRate), res.DeliverySpan, si(res.WindowDeliveredRate))
		fmt.Fprintf(&b, "  lost        %d (%.2f%%)   duplicates %d   reordered %d\n",
			res.Lost, res.LostPercent(), res.Duplicates, res.Reordered)
		if res.Stray+res.UnexpectedAcks+res.Rejected > 0 {
			fmt.Fprintf(&b, "  stray       %d   unexpected acks %d   rejected %d\n", res.Stray, res.UnexpectedAcks, res.Rejected)
		}
		if l := res.Latency; l != nil {
			fmt.Fprintf(&b, "  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, %d samples)\n",
				us(l.P50Us), us(l.P90Us), us(l.P99Us), us(l.P999Us), us(l.MaxUs), us(l.MeanUs), l.Count)
		}
	}
	for _, e := range res.Errors {
		fmt.Fprintf(&b, "  error       %s\n", e)
	}
	io.WriteString(w, b.String())
}

// us formats microseconds.
func us(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}
