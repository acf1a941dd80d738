package e2e

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ---------------------------------------------------------------------------
// Connecting.

// clientOpts returns Paho options for an MQTT 3.1.1 client: clean session,
// no automatic reconnect (tests reconnect explicitly), a keep-alive far
// longer than any test.
func clientOpts(id string, addrs ...string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions()
	for _, a := range addrs {
		o.AddBroker("tcp://" + a)
	}
	return o.SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(60 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetOrderMatters(true)
}

// tryConnect connects a client; it returns whether the server had a
// session for it.
func tryConnect(o *mqtt.ClientOptions) (mqtt.Client, bool, error) {
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, false, fmt.Errorf("CONNECT %s: %w", o.ClientID, errUnacked)
	}
	if err := tok.Error(); err != nil {
		return nil, false, fmt.Errorf("CONNECT %s: %w", o.ClientID, err)
	}
	return c, tok.(*mqtt.ConnectToken).SessionPresent(), nil
}

// connect connects a client or fails the test; the client disconnects when
// the test ends.
func connect(t testing.TB, o *mqtt.ClientOptions) mqtt.Client {
	t.Helper()
	c, _, err := tryConnect(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// subscribe subscribes and checks the granted QoS.
func subscribe(t testing.TB, c mqtt.Client, filter string, qos byte, h mqtt.MessageHandler) {
	t.Helper()
	tok := c.Subscribe(filter, qos, h)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("SUBSCRIBE %s: no SUBACK in 10s", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("SUBSCRIBE %s: %v", filter, err)
	}
	// Paho keys the result by the filter without "$share/<group>/" or
	// "$queue/"; there is one filter per SUBSCRIBE here.
	res := tok.(*mqtt.SubscribeToken).Result()
	if len(res) != 1 {
		t.Fatalf("SUBSCRIBE %s: SUBACK result %v", filter, res)
	}
	for _, got := range res {
		if got != qos {
			t.Fatalf("SUBSCRIBE %s: granted %#x, want %d", filter, got, qos)
		}
	}
}

// publishAll publishes payloads in order with at most window unacknowledged
// and returns the number acknowledged without error.
func publishAll(t testing.TB, c mqtt.Client, topic string, qos byte, payloads []string, window int) int {
	t.Helper()
	sem := make(chan struct{}, window)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked int
		first error
	)
	for _, p := range payloads {
		sem <- struct{}{}
		tok := c.Publish(topic, qos, false, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := errUnacked
			if tok.WaitTimeout(15 * time.Second) {
				err = tok.Error()
			}
			mu.Lock()
			if err == nil {
				acked++
			} else if first == nil {
				first = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		t.Errorf("publishing to %s: %d of %d acknowledged; first error: %v", topic, acked, len(payloads), first)
	}
	return acked
}

// keys returns n payloads "tag-00000" ….
func keys(tag string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = key(tag, i)
	}
	return out
}

func key(tag string, i int) string { return fmt.Sprintf("%s-%05d", tag, i) }

// ---------------------------------------------------------------------------
// Recording what arrives.

// recorder counts messages by payload.
type recorder struct {
	mu     sync.Mutex
	counts map[string]int
	order  []string
	qos    [3]int
	dup    int // deliveries with the DUP flag
	// repeatNoDup counts deliveries of a payload already delivered that
	// came without the DUP flag [MQTT-3.3.1-1].
	repeatNoDup int
	first       map[string]time.Time
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int{}, first: map[string]time.Time{}}
}

func (r *recorder) add(payload string, qos byte, dup bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts[payload] == 0 {
		r.first[payload] = time.Now()
	} else if !dup && qos > 0 {
		r.repeatNoDup++
	}
	r.counts[payload]++
	r.order = append(r.order, payload)
	if qos < 3 {
		r.qos[qos]++
	}
	if dup {
		r.dup++
	}
}

// handler records every message Paho hands to the application.
func (r *recorder) handler(_ mqtt.Client, m mqtt.Message) {
	r.add(string(m.Payload()), m.Qos(), m.Duplicate())
}

// total is the number of deliveries.
func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

// has reports whether every one of want arrived at least once.
func (r *recorder) has(want []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range want {
		if r.counts[k] == 0 {
			return false
		}
	}
	return true
}

// repeats returns how many repeated deliveries had, and lacked, the DUP flag.
func (r *recorder) repeats() (withDup, withoutDup int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dup, r.repeatNoDup
}

func (r *recorder) count(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[k]
}

func (r *recorder) arrival(k string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.first[k]
	return at, ok
}

// snapshot returns the deliveries in arrival order.
func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// tally compares the deliveries with the messages that were promised.
type tally struct {
	received int // deliveries
	distinct int // distinct promised messages received
	dups     int // extra deliveries of promised messages
	lost     int // promised messages never received
	extra    int // deliveries of messages that were not promised
	lostKeys []string
}

func (r *recorder) tally(promised []string) tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	tl := tally{received: len(r.order)}
	want := make(map[string]bool, len(promised))
	for _, k := range promised {
		want[k] = true
		switch n := r.counts[k]; {
		case n == 0:
			tl.lost++
			if len(tl.lostKeys) < 10 {
				tl.lostKeys = append(tl.lostKeys, k)
			}
		default:
			tl.distinct++
			tl.dups += n - 1
		}
	}
	for k, n := range r.counts {
		if !want[k] {
			tl.extra += n
		}
	}
	return tl
}

func (tl tally) String() string {
	s := fmt.Sprintf("received=%d distinct=%d duplicates=%d lost=%d unpromised=%d", tl.received, tl.distinct, tl.dups, tl.lost, tl.extra)
	if tl.lost > 0 {
		s += fmt.Sprintf(" (first lost: %s)", strings.Join(tl.lostKeys, ","))
	}
	return s
}

// inOrder reports the first position where got is not want.
func inOrder(got, want []string) (int, bool) {
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			return i, false
		}
	}
	if len(got) != len(want) {
		return len(want), false
	}
	return 0, true
}

// ---------------------------------------------------------------------------
// A wire-level view of what a client receives.

// wirePacket is one MQTT 3.1.1 packet from the server.
type wirePacket struct {
	typ     byte // packet type (3 PUBLISH, 6 PUBREL, …)
	qos     byte
	dup     bool
	id      uint16
	topic   string
	payload string
}

// sniffConn passes every byte the server sends through an MQTT parser
// before Paho reads it.
type sniffConn struct {
	net.Conn
	buf []byte
	fn  func(wirePacket)
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.feed(b[:n])
	}
	return n, err
}

func (c *sniffConn) feed(b []byte) {
	c.buf = append(c.buf, b...)
	for len(c.buf) >= 2 {
		rem, mult, n, ok := 0, 1, 0, false
		for i := 1; i < len(c.buf) && i <= 4; i++ {
			rem += int(c.buf[i]&127) * mult
			mult *= 128
			n = i
			if c.buf[i]&128 == 0 {
				ok = true
				break
			}
		}
		if !ok || len(c.buf) < 1+n+rem {
			return
		}
		c.packet(c.buf[0], c.buf[1+n:1+n+rem])
		c.buf = append(c.buf[:0], c.buf[1+n+rem:]...)
	}
}

func (c *sniffConn) packet(h byte, body []byte) {
	p := wirePacket{typ: h >> 4}
	switch p.typ {
	case 3: // PUBLISH
		p.qos, p.dup = (h>>1)&3, h&8 != 0
		if len(body) < 2 {
			return
		}
		tl := int(body[0])<<8 | int(body[1])
		off := 2 + tl
		if len(body) < off {
			return
		}
		p.topic = string(body[2:off])
		if p.qos > 0 {
			if len(body) < off+2 {
				return
			}
			p.id = uint16(body[off])<<8 | uint16(body[off+1])
			off += 2
		}
		p.payload = string(body[off:])
	case 6: // PUBREL
		if len(body) < 2 {
			return
		}
		p.id = uint16(body[0])<<8 | uint16(body[1])
	default:
		return
	}
	c.fn(p)
}

// ---------------------------------------------------------------------------
// Persistent-session subscriber that follows its session across edges.

// durableSub is a CleanSession=false subscriber. When its connection is
// lost it reconnects, with the same client ID, to the first of addrs that
// accepts it, and relies on the server's session (it does not subscribe
// again). It records what Paho hands to the application (app) and, from
// the wire, what a receiver following the MQTT 3.1.1 QoS 2 rules delivers
// (spec): a QoS 2 PUBLISH whose packet ID still awaits PUBREL is not
// delivered again [MQTT-4.3.3-2]. Paho itself does not apply that rule.
type durableSub struct {
	t      testing.TB
	id     string
	filter string
	qos    byte
	addrs  []string
	opts   subOpts

	app  *recorder
	spec *recorder

	mu         sync.Mutex
	client     mqtt.Client
	awaitRel   map[uint16]bool
	suppressed int    // QoS 2 PUBLISHes resent while their ID awaited PUBREL
	present    []bool // session-present flag of each reconnect
	reconnErr  error
	lostAt     time.Time
	backAfter  []time.Duration // connection lost → CONNACK

	// trace is the wire history of each QoS 2 payload (PUBLISH and the
	// PUBREL for its packet ID), to explain duplicates; conn numbers the
	// connections.
	trace  map[string][]string
	idText map[uint16]string
	conn   int

	lost chan struct{}
	quit chan struct{}
	wg   sync.WaitGroup
}

// subOpts tune a durableSub.
type subOpts struct {
	// delay is the pause before reconnecting after a lost connection.
	delay time.Duration
	// slow is how long the application takes per message; Paho sends
	// PUBACK / PUBREC only after it, so a slow subscriber keeps the
	// server's in-flight window full.
	slow time.Duration
}

// newDurableSub connects to addrs[0], subscribes, and keeps the session
// connected until the test ends.
func newDurableSub(t testing.TB, id, filter string, qos byte, addrs []string, opts subOpts) *durableSub {
	t.Helper()
	d := &durableSub{
		t: t, id: id, filter: filter, qos: qos, addrs: addrs, opts: opts,
		app: newRecorder(), spec: newRecorder(), awaitRel: map[uint16]bool{},
		trace: map[string][]string{}, idText: map[uint16]string{},
		lost: make(chan struct{}, 1), quit: make(chan struct{}),
	}
	c, _, err := d.connectTo(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	d.client = c
	subscribe(t, c, filter, qos, nil)
	d.wg.Add(1)
	go d.maintain()
	t.Cleanup(d.stop)
	return d
}

func (d *durableSub) connectTo(addr string) (mqtt.Client, bool, error) {
	o := clientOpts(d.id, addr).
		SetCleanSession(false).
		SetDefaultPublishHandler(func(c mqtt.Client, m mqtt.Message) {
			d.app.handler(c, m)
			time.Sleep(d.opts.slow)
		}).
		SetConnectTimeout(2 * time.Second).
		SetConnectionLostHandler(func(mqtt.Client, error) {
			d.mu.Lock()
			d.lostAt = time.Now()
			d.mu.Unlock()
			select {
			case d.lost <- struct{}{}:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			nc, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
			if err != nil {
				return nil, err
			}
			d.mu.Lock()
			d.conn++
			conn := d.conn
			d.mu.Unlock()
			return &sniffConn{Conn: nc, fn: func(p wirePacket) { d.wire(conn, p) }}, nil
		})
	return tryConnect(o)
}

// wire applies the receiver's QoS 2 rules to a packet from the server on
// connection conn.
func (d *durableSub) wire(conn int, p wirePacket) {
	switch p.typ {
	case 3:
		if p.qos == 2 {
			d.mu.Lock()
			d.idText[p.id] = p.payload
			d.trace[p.payload] = append(d.trace[p.payload], fmt.Sprintf("conn#%d PUBLISH id=%d dup=%v", conn, p.id, p.dup))
			if d.awaitRel[p.id] {
				d.suppressed++
				d.mu.Unlock()
				return
			}
			d.awaitRel[p.id] = true
			d.mu.Unlock()
		}
		d.spec.add(p.payload, p.qos, p.dup)
	case 6:
		d.mu.Lock()
		if k, ok := d.idText[p.id]; ok {
			d.trace[k] = append(d.trace[k], fmt.Sprintf("conn#%d PUBREL id=%d", conn, p.id))
		}
		delete(d.awaitRel, p.id)
		d.mu.Unlock()
	}
}

// wireTrace returns the wire history of a QoS 2 payload.
func (d *durableSub) wireTrace(payload string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.trace[payload], " → ")
}

func (d *durableSub) maintain() {
	defer d.wg.Done()
	for {
		select {
		case <-d.quit:
			return
		case <-d.lost:
		}
		select {
		case <-d.quit:
			return
		case <-time.After(d.opts.delay):
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			var (
				c       mqtt.Client
				present bool
				err     error
			)
			for _, a := range d.addrs {
				if c, present, err = d.connectTo(a); err == nil {
					break
				}
			}
			if err == nil {
				d.mu.Lock()
				d.client = c
				d.present = append(d.present, present)
				d.backAfter = append(d.backAfter, time.Since(d.lostAt))
				d.mu.Unlock()
				break
			}
			if time.Now().After(deadline) {
				d.mu.Lock()
				d.reconnErr = err
				d.mu.Unlock()
				return
			}
			select {
			case <-d.quit:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// disconnect closes the connection normally (the session stays).
func (d *durableSub) disconnect() {
	d.mu.Lock()
	c := d.client
	d.client = nil
	d.mu.Unlock()
	if c != nil {
		c.Disconnect(100)
	}
}

// reconnect connects again (after disconnect) to the first of addrs that
// accepts; it returns the session-present flag.
func (d *durableSub) reconnect(addrs ...string) (bool, error) {
	var err error
	for _, a := range addrs {
		var (
			c       mqtt.Client
			present bool
		)
		if c, present, err = d.connectTo(a); err == nil {
			d.mu.Lock()
			d.client = c
			d.present = append(d.present, present)
			d.backAfter = append(d.backAfter, 0)
			d.mu.Unlock()
			return present, nil
		}
	}
	return false, err
}

func (d *durableSub) stop() {
	select {
	case <-d.quit:
		return
	default:
	}
	close(d.quit)
	d.wg.Wait()
	d.disconnect()
}

// status returns the reconnect history.
func (d *durableSub) status() (present []bool, back []time.Duration, suppressed int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bool(nil), d.present...), append([]time.Duration(nil), d.backAfter...), d.suppressed, d.reconnErr
}

// ---------------------------------------------------------------------------
// Publisher that keeps going across edge failures.

// pubRun publishes tag-00000 … in order, paced, with a bounded window of
// unacknowledged messages. When its connection is lost it reconnects to
// the first of addrs that accepts and goes on with the next message
// (messages that were not acknowledged are not sent again). Only messages
// whose PUBACK (QoS 1) or PUBCOMP (QoS 2) arrived count as promised.
type pubRun struct {
	id       string
	addrs    []string
	topic    string
	qos      byte
	tag      string
	n        int
	interval time.Duration
	window   int
	hook     func(i int) // called after message i was handed to Paho

	mu         sync.Mutex
	promised   []string
	failed     []string
	reconnects int
	err        error
	done       chan struct{}
}

func (p *pubRun) start() *pubRun {
	p.done = make(chan struct{})
	go p.run()
	return p
}

func (p *pubRun) connectAny() mqtt.Client {
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, a := range p.addrs {
			if c, _, err := tryConnect(clientOpts(p.id, a).SetConnectTimeout(2 * time.Second)); err == nil {
				return c
			} else if time.Now().After(deadline) {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *pubRun) run() {
	defer close(p.done)
	c := p.connectAny()
	if c == nil {
		return
	}
	sem := make(chan struct{}, p.window)
	var wg sync.WaitGroup
	for i := 0; i < p.n; i++ {
		if !c.IsConnectionOpen() {
			c.Disconnect(0)
			if c = p.connectAny(); c == nil {
				break
			}
			p.mu.Lock()
			p.reconnects++
			p.mu.Unlock()
		}
		k := key(p.tag, i)
		sem <- struct{}{}
		tok := c.Publish(p.topic, p.qos, false, k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok := tok.WaitTimeout(15*time.Second) && tok.Error() == nil
			p.mu.Lock()
			if ok {
				p.promised = append(p.promised, k)
			} else {
				p.failed = append(p.failed, k)
			}
			p.mu.Unlock()
		}()
		if p.hook != nil {
			p.hook(i)
		}
		time.Sleep(p.interval)
	}
	wg.Wait()
	if c != nil {
		c.Disconnect(100)
	}
}

// wait waits for the run to end and returns the promised and failed
// messages, sorted.
func (p *pubRun) wait(t testing.TB, timeout time.Duration) (promised, failed []string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("publisher %s still running after %v", p.id, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Errorf("publisher %s: %v", p.id, p.err)
	}
	promised = append([]string(nil), p.promised...)
	failed = append([]string(nil), p.failed...)
	sort.Strings(promised)
	sort.Strings(failed)
	return promised, failed
}
