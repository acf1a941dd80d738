package broker

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
)

// client is one MQTT connection. Its goroutines: the connection goroutine
// (serve: CONNECT, then the read loop, then cleanup); the writer, only
// while packets wait to be sent (outbound.go); and for a persistent session
// the queue reader. The read loop owns the session fields not under mu.
//
// An idle connection is this struct, its socket and one goroutine parked
// in the poller with a small stack: no read or write buffer, no logger, no
// maps (they are made when first needed). See connio.go.
type client struct {
	b      *Broker
	nc     net.Conn
	connID string
	rd     connReader
	// bw is the running writer's buffer (from writerPool); nil otherwise.
	bw *bufio.Writer

	// Set by connect, then read-only.
	version    byte
	tenant     string
	id         string
	username   string // as sent in CONNECT
	principal  *auth.Principal
	tc         *tenantCounters // the tenant's counters, cached at CONNECT
	keepAlive  time.Duration
	persist    bool          // the session outlives the connection
	cleanStart bool          // discard any stored session at connect
	expiry     time.Duration // how long, when persist
	recvMax    int           // client's receive maximum (MQTT 5), else MaxInflight
	maxOut     int           // client's maximum packet size (MQTT 5), 0: none
	aliasMax   uint16        // client's topic alias maximum (MQTT 5): aliases we may send
	// problemInfo is the client's Request Problem Information (MQTT 5,
	// default 1): without it, reason strings and user properties go only
	// on PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29].
	problemInfo bool
	// clientReason is the reason code of the client's DISCONNECT.
	clientReason packet.ReasonCode
	// connExpiry0: the CONNECT's Session Expiry Interval was 0 or absent,
	// so DISCONNECT may not raise it [MQTT-3.14.2-2].
	connExpiry0 bool
	will        *Message
	willDelay   time.Duration // MQTT 5 Will Delay Interval
	willExpiry  time.Duration // MQTT 5 will Message Expiry Interval, from publication
	// willDue is set by cleanup when the will waits for its delay; the
	// session record carries it (SessionState.WillDue).
	willDue time.Time

	// Persistent session state; owned by the read loop.
	state *SessionState
	rev   uint64
	queue Queue

	// qos2in holds packet IDs of received, unreleased QoS 2 PUBLISHes
	// [MQTT-4.3.3-2]; owned by the read loop.
	qos2in map[uint16]struct{}
	// inSem bounds the client's QoS ≥ 1 publishes waiting for the backbone;
	// made by the read loop at the first one.
	inSem chan struct{}
	// aclSeen is the rule set aclDenied was computed for; aclDenied holds
	// the subscriptions those rules no longer allow (see deniedSub).
	aclSeen   atomic.Pointer[auth.RuleSet]
	aclDenied atomic.Pointer[map[string]bool]
	// limiter enforces the tenant's per-client publish rate (nil: none).
	limiter   *rate.Limiter
	limitWait time.Duration
	// aliases are the client's MQTT 5 topic aliases (inbound).
	aliases map[uint16][]byte

	// Owned by the writer: the topic aliases assigned to the client
	// (MQTT 5 §3.3.2.3.4), and room for one subscription identifier.
	outAliases map[string]uint16
	subIDBuf   [1]int

	mu       sync.Mutex // guards everything below
	subs     map[string]Subscription
	ctrl     []outItem // control packets, sent first, never dropped
	pubs     []outItem // PUBLISH packets waiting to be sent
	inflight map[uint16]inflight
	// completed holds queue sequences of QoS 2 flows finished (PUBCOMP)
	// after a reconnect restored them at the PUBREL stage.
	completed map[uint64]struct{}
	nextID    uint16
	acks      []pendingAck // inbound QoS 1 acks, in arrival order [MQTT-4.6.0-2]
	ackBase   uint64       // sequence number of acks[0]
	closed    bool
	reason    packet.ReasonCode // DISCONNECT reason to send (MQTT 5)
	reasonMsg string            // its reason string
	dropLog   time.Time
	// room, if set, is closed when the writer next takes messages from
	// the queue; stalled: it took none for maxQueueWait (waitRoom).
	room    chan struct{}
	stalled bool
	// progress counts PUBLISHes leaving the queue and going out on the
	// socket, in steps (waitRoom).
	progress atomic.Uint32
	// writable is set once CONNACK is out: from then on the writer runs
	// whenever packets wait; writing while it does (at most one).
	writable, writing bool
	// queueCancel stops the queue goroutine (persistent sessions).
	queueCancel context.CancelFunc

	slotFree chan struct{} // cap 1: an inflight slot was freed (queue goroutine)
	quit     chan struct{} // closed by shutdown
	done     chan struct{} // closed when the connection is fully cleaned up
	shutOnce sync.Once
	wg       sync.WaitGroup // writer and queue goroutines

	connected time.Time
	// disconnected: the client sent DISCONNECT (nothing is sent back);
	// normal: with reason 0x00, so the will is discarded [MQTT-3.14.4-3].
	disconnected, normal bool

	// live is set once CONNACK is sent: from then on the fields set by
	// connect are read-only and may be read by inspection (inspect.go).
	live            atomic.Bool
	msgsIn, msgsOut atomic.Uint64
}

func newClient(b *Broker, nc net.Conn) *client {
	return &client{
		b:      b,
		nc:     nc,
		connID: newID(),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// log returns a logger with the connection's attributes. It is made per
// call rather than kept: slog's With copies the handler with the attributes
// preformatted, several hundred bytes per connection for the rare line.
// Before CONNACK only the connection goroutine calls it; after, the fields
// it reads no longer change.
func (c *client) log() *slog.Logger {
	args := make([]any, 0, 6)
	args = append(args, "remote", c.nc.RemoteAddr().String())
	if c.id != "" {
		args = append(args, "client", c.id)
	}
	if c.tenant != "" {
		args = append(args, "tenant", c.tenant)
	}
	return c.b.log.With(args...)
}

// debug reports whether debug lines are logged (to skip building them).
func (c *client) debug() bool { return c.b.log.Enabled(context.Background(), slog.LevelDebug) }

// newID returns a random 128-bit identifier in lower-case base32.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// serve handles CONNECT and hands a connection that is accepted to run on
// a new goroutine; it calls b.conns.Done when the connection is over.
func (c *client) serve() {
	c.rd.init(c.nc, c.b.opts.MaxPacketSize)
	if err := c.connect(); err != nil {
		c.rd.release()
		c.b.stats.Refused.Add(1)
		c.b.noteConnection(connRefused)
		if isNetClose(err) {
			if c.debug() {
				c.log().Debug("connection closed before CONNECT completed", "err", err)
			}
		} else {
			c.log().Info("connection refused", "err", err)
		}
		c.nc.Close()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		c.b.conns.Done()
		return
	}
	// The rest of the connection's life, mostly spent waiting for its next
	// packet, runs on a fresh goroutine: CONNECT (authentication, takeover,
	// session) grew this one's stack to several times what waiting needs,
	// and the runtime shrinks a stack only by halves, at GC, and not below
	// four times its use. A new goroutine starts with the runtime's average
	// stack size, which idle connections keep small.
	go c.run()
}

// run runs an accepted connection to its end. It is kept small, as is the
// read loop under it: their frames are what an idle connection's stack
// holds while it waits (with those of connReader and the poller, about
// 700 bytes, which lets the runtime start such goroutines with 2 KiB).
func (c *client) run() {
	c.start()
	c.loop()
}

// loop runs the read loop to the end of the connection. Handling a packet
// (a PUBLISH through the backbone, a SUBSCRIBE) grows the goroutine's
// stack to 4-8 KiB, which GC never brings back under 4 KiB; so when the
// connection goes idle after such work the read loop yields (connReader,
// at most 4 times at once and 10 times a second) and goes on waiting on a
// fresh, small goroutine. The cost: a goroutine and one read(2) per yield.
func (c *client) loop() {
	err := c.readLoop()
	if err == errYield {
		go c.loop()
		return
	}
	c.finish(err)
}

// start begins the life of an accepted connection: counters, the queue
// goroutine of a persistent session, and the writer from now on.
func (c *client) start() {
	c.b.stats.Connections.Add(1)
	c.b.stats.ConnectionsTotal.Add(1)
	c.tc.conns.Add(1)
	c.live.Store(true)
	c.b.noteConnection(connOpened)
	if c.debug() {
		c.log().Debug("client connected", "version", c.version, "keepalive", c.keepAlive, "persistent", c.persist)
	}

	if c.queue != nil {
		ctx, cancel := context.WithCancel(context.Background())
		c.slotFree = make(chan struct{}, 1)
		c.mu.Lock()
		c.queueCancel = cancel
		if c.closed {
			cancel()
		}
		c.mu.Unlock()
		c.wg.Add(1)
		go c.queueLoop(ctx)
	}
	// From here on the writer runs whenever packets wait: the PUBRELs of a
	// resumed session already do [MQTT-4.4.0-1], and so does the
	// DISCONNECT of a connection shut down while it connected.
	c.mu.Lock()
	c.writable = true
	start := c.writerNeededLocked()
	c.mu.Unlock()
	if start {
		c.startWriter()
	}
}

// finish ends the connection after the read loop returned err: it logs why,
// shuts the connection down, waits for its goroutines and cleans up.
func (c *client) finish(err error) {
	c.mu.Lock()
	gone, normal := c.disconnected, c.normal
	c.mu.Unlock()
	switch {
	case gone && normal:
		if c.debug() {
			c.log().Debug("client disconnected")
		}
	case gone:
		if c.debug() {
			c.log().Debug("client disconnected; will kept", "reason", c.clientReason)
		}
	case isNetClose(err):
		if c.debug() {
			c.log().Debug("client connection lost", "err", err)
		}
	default:
		select {
		case <-c.quit:
			if c.debug() {
				c.log().Debug("client closed by server", "reason", c.reason)
			}
		default:
			c.log().Warn("closing client", "err", err, "reason", reasonFor(err))
		}
	}
	c.shutdownErr(err)
	c.wg.Wait()
	c.nc.Close() // the writer has closed it; a no-op then
	c.rd.release()
	c.cleanup()
	c.b.stats.Connections.Add(-1)
	c.tc.conns.Add(-1)
	c.b.noteConnection(connClosed)
	close(c.done)
	c.b.conns.Done()
}

// shutdown starts closing the connection: MQTT 5 clients get a DISCONNECT
// with reason (when it is not a normal closure); reads stop at once.
func (c *client) shutdown(reason packet.ReasonCode) { c.shutdownMsg(reason, "") }

// shutdownErr is shutdown for an error on the connection: the reason code
// comes from reasonFor, the reason string from the error where it is the
// client's own doing.
func (c *client) shutdownErr(err error) {
	rc := reasonFor(err)
	c.shutdownMsg(rc, reasonText(rc, err))
}

func (c *client) shutdownMsg(reason packet.ReasonCode, msg string) {
	c.shutOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		if c.reason == 0 {
			c.reason, c.reasonMsg = reason, msg
		}
		// The writer sends the DISCONNECT and closes the connection: a
		// running one at its next batch, else one started for it.
		start := c.writerNeededLocked()
		if c.queueCancel != nil {
			c.queueCancel()
		}
		c.mu.Unlock()
		close(c.quit)
		now := time.Now()
		c.nc.SetReadDeadline(now)
		c.nc.SetWriteDeadline(now.Add(time.Second))
		if start {
			c.startWriter()
		}
	})
}

// connect reads and answers CONNECT. On error the connection is closed by
// the caller; connect has already sent the refusing CONNACK where the spec
// wants one.
func (c *client) connect() error {
	opts := &c.b.opts
	c.nc.SetReadDeadline(time.Now().Add(opts.ConnectTimeout))
	fh, body, err := c.rd.ReadPacket()
	if err != nil {
		return fmt.Errorf("reading CONNECT: %w", err)
	}
	if fh.Type != packet.CONNECT {
		return fmt.Errorf("%w: got %v", errNotConnect, fh.Type) // [MQTT-3.1.0-1]
	}
	var p packet.Connect
	if err := p.Decode(0, fh, body); err != nil {
		if errors.Is(err, packet.UnsupportedProtocolVersion) {
			// [MQTT-3.1.2-2] answer with return code 0x01 and close.
			c.version = packet.V311
			if p.ProtocolVersion == packet.V5 {
				c.version = packet.V5
			}
			c.writeConnack(false, packet.UnsupportedProtocolVersion, nil)
		}
		return fmt.Errorf("decoding CONNECT: %w", err)
	}
	c.version = p.ProtocolVersion
	c.id = p.ClientID
	c.cleanStart = p.CleanStart
	c.recvMax = opts.MaxInflight

	var ackProps *packet.Properties
	if c.version == packet.V5 {
		ackProps = &packet.Properties{}
		if p.Properties.Has(packet.PropReceiveMaximum) {
			// [MQTT-3.3.4-9] never more unacknowledged PUBLISHes than this.
			c.recvMax = min(int(p.Properties.ReceiveMaximum), opts.MaxInflight)
		}
		if p.Properties.Has(packet.PropMaximumPacketSize) {
			// [MQTT-3.1.2-24] nothing larger goes to the client.
			c.maxOut = int(min(p.Properties.MaximumPacketSize, 1<<30))
		}
		// [MQTT-3.3.2-11] outbound aliases up to the client's maximum,
		// and never more than the server's own cap: each one keeps its
		// topic for the connection's life (a client may offer 65,535).
		c.aliasMax = min(p.Properties.TopicAliasMaximum, maxTopicAliases)
		c.problemInfo = !p.Properties.Has(packet.PropRequestProblemInfo) || p.Properties.RequestProblemInfo == 1
		// Request Response Information is honoured by sending none: the
		// property is optional in CONNACK (MQTT 5 §3.2.2.3.15).
		ackProps.Set(packet.PropReceiveMaximum)
		ackProps.ReceiveMaximum = uint16(opts.MaxInflight)
		ackProps.Set(packet.PropMaximumPacketSize)
		ackProps.MaximumPacketSize = uint32(opts.MaxPacketSize)
		ackProps.Set(packet.PropTopicAliasMaximum)
		ackProps.TopicAliasMaximum = maxTopicAliases
		// Maximum QoS is left out: absent means 2, and the property may
		// only say 0 or 1 [MQTT-3.2.2-9]. Retain, wildcard, shared
		// subscriptions and subscription identifiers are all available:
		// absent means so.
		if p.Properties.Has(packet.PropAuthMethod) {
			// Enhanced authentication (MQTT 5 §4.12) is not offered: refuse
			// the method and close [MQTT-4.12.0-1].
			return c.refuse(packet.BadAuthenticationMethod, fmt.Errorf("authentication method %q not supported", p.Properties.AuthMethod))
		}
	}

	// Client identifier rules.
	if c.id == "" {
		switch {
		case c.version == packet.V31:
			return c.refuse(packet.ClientIdentifierNotValid, errors.New("empty client ID in MQTT 3.1"))
		case c.version == packet.V311 && !p.CleanStart:
			// [MQTT-3.1.3-8] zero-length ID requires CleanSession=1.
			return c.refuse(packet.ClientIdentifierNotValid, errors.New("empty client ID with persistent session"))
		}
		c.id = "relay-" + newID() // [MQTT-3.1.3-6]
		if c.version == packet.V5 {
			ackProps.Set(packet.PropAssignedClientID)
			ackProps.AssignedClientID = c.id
		}
	} else if c.version == packet.V31 && len(c.id) > 23 {
		// MQTT 3.1 allows 1..23 characters; we are lenient up to 65535
		// like Mosquitto, since clients in the field exceed it.
		c.log().Debug("MQTT 3.1 client ID longer than 23 characters accepted", "client", c.id)
	}
	if !utf8.ValidString(c.id) {
		return c.refuse(packet.ClientIdentifierNotValid, errors.New("client ID is not UTF-8"))
	}

	// Keep-alive [MQTT-3.1.2-24]: the server disconnects after 1.5 × it.
	c.keepAlive = time.Duration(p.KeepAlive) * time.Second
	if opts.MaxKeepAlive > 0 && (c.keepAlive == 0 || c.keepAlive > opts.MaxKeepAlive) {
		c.keepAlive = opts.MaxKeepAlive
		if c.version == packet.V5 {
			ackProps.Set(packet.PropServerKeepAlive)
			ackProps.ServerKeepAlive = uint16(c.keepAlive / time.Second)
		}
	}

	// Session lifetime.
	if c.version == packet.V5 {
		var exp time.Duration
		if p.Properties.Has(packet.PropSessionExpiry) {
			var capped bool
			exp, capped = c.sessionExpiry(p.Properties.SessionExpiry)
			if capped {
				// The server's value replaces the client's, and CONNACK
				// says so (MQTT 5 §3.2.2.3.2).
				ackProps.Set(packet.PropSessionExpiry)
				ackProps.SessionExpiry = uint32(exp / time.Second)
			}
		}
		// Session Expiry Interval replaces Clean Session: 0 ends the
		// session with the connection (MQTT 5 §3.1.2.11.2).
		c.persist = exp > 0
		c.expiry = exp
		c.connExpiry0 = exp == 0
	} else {
		c.persist = !p.CleanStart
		c.expiry = opts.SessionExpiry
	}

	info := &ConnectInfo{
		ClientID: c.id, Username: p.Username, Password: p.Password,
		HasUsername: p.UsernameFlag, HasPassword: p.PasswordFlag,
		Version: c.version, RemoteAddr: c.nc.RemoteAddr(),
	}
	describeTransport(c.nc, info)
	ctx, cancel := context.WithTimeout(context.Background(), opts.BackboneTimeout)
	defer cancel()
	// Brute-force throttling per source address and per username.
	ipKey, uKey := addrKey(info.RemoteAddr), ""
	if p.UsernameFlag {
		uKey = userKey(p.Username, ipKey)
	}
	now := time.Now()
	if c.b.throttle.blocked(now, ipKey, uKey) {
		return c.refuse(reasonFor(auth.ErrThrottled), fmt.Errorf("authenticate %q: %w", p.Username, auth.ErrThrottled))
	}
	prin, err := opts.Authenticator.Authenticate(ctx, info)
	if err != nil {
		// Only wrong credentials count: a suspended tenant's devices
		// must not lock themselves out.
		if errors.Is(err, auth.ErrBadCredentials) {
			c.b.throttle.fail(now, uKey, throttleUserFailures)
			c.b.throttle.fail(now, ipKey, throttleAddrFailures)
		}
		return c.refuse(reasonFor(err), fmt.Errorf("authenticate %q: %w", p.Username, err))
	}
	if uKey != "" {
		c.b.throttle.succeed(uKey)
	}
	c.principal = prin
	c.tenant = prin.Tenant
	c.username = p.Username
	c.tc = c.b.tenants.get(c.tenant)
	if r := prin.Limits.MaxMessageRate; r > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(r), max(1, r/10))
		c.limitWait = time.Second / time.Duration(r)
	}

	// Will message [MQTT-3.1.2-8].
	if p.WillFlag {
		wt := []byte(p.WillTopic)
		if err := topic.ValidateTopic(wt); err != nil {
			return c.refuse(packet.TopicNameInvalid, fmt.Errorf("will topic: %w", err))
		}
		if wt[0] == '$' || !prin.Rules().CanPublish(wt) {
			return c.refuse(packet.NotAuthorized, fmt.Errorf("will topic %q not allowed", p.WillTopic))
		}
		c.will = &Message{
			Tenant: c.tenant, Topic: wt, Payload: p.WillPayload, QoS: p.WillQoS, Retain: p.WillRetain,
			Origin: opts.NodeID, ClientID: c.id,
		}
		if c.version == packet.V5 {
			wp := &p.WillProperties
			if wp.Has(packet.PropPayloadFormat) && wp.PayloadFormat == 1 && !utf8.Valid(p.WillPayload) {
				// MQTT 5 §3.1.3.2.3: CONNACK 0x99 for a will payload that is
				// not what its Payload Format Indicator says.
				return c.refuse(packet.PayloadFormatInvalid, errors.New("will payload is not UTF-8 as its payload format indicator says"))
			}
			if wp.Has(packet.PropResponseTopic) {
				if err := topic.ValidateTopic([]byte(wp.ResponseTopic)); err != nil {
					return c.refuse(packet.ProtocolError, fmt.Errorf("will response topic: %w", err)) // [MQTT-3.3.2-14]
				}
			}
			c.will.Props = publishProps(wp)
			// The expiry starts when the will is published (§3.1.3.2.4).
			c.willExpiry = time.Duration(wp.MessageExpiry) * time.Second
			c.willDelay = time.Duration(wp.WillDelay) * time.Second
		}
	}

	// The tenant's connection limit, over all edges; a takeover does not
	// add a connection.
	if max := prin.Limits.MaxConnections; max > 0 && c.b.bb.Connections(c.tenant) >= max && !c.b.connectedHere(c.tenant, c.id) {
		return c.refuse(packet.QuotaExceeded, fmt.Errorf("tenant %s is at its limit of %d connections", c.tenant, max))
	}
	// Take over a connection with the same client ID here [MQTT-3.1.4-2] …
	// (connected orders takeovers across edges: see kickLocal).
	c.connected = time.Now()
	old, err := c.b.register(c)
	if err != nil {
		return c.refuse(reasonFor(err), err)
	}
	if old != nil {
		c.log().Info("taking over local connection")
		old.shutdown(packet.SessionTakenOver)
		<-old.done
	}
	// … and on every other edge. The session gets its own deadline if the
	// authentication (or a local takeover) took more than a tenth of its
	// own: a slow one must not eat the takeover's time. Usually it took
	// well under a millisecond, and a second context (a timer and its
	// garbage per CONNECT) would buy nothing.
	sctx := ctx
	if d, _ := ctx.Deadline(); time.Until(d) < opts.BackboneTimeout*9/10 {
		var scancel context.CancelFunc
		sctx, scancel = context.WithTimeout(context.Background(), opts.BackboneTimeout)
		defer scancel()
	}
	present, err := c.openSession(sctx)
	if err != nil {
		c.removeRoutes()
		c.b.unregister(c)
		return c.refuse(reasonFor(err), err)
	}
	if c.will != nil {
		w := &Will{Message: *c.will, Node: opts.NodeID, ConnID: c.connID, Delay: c.willDelay, MessageExpiry: c.willExpiry}
		if err := c.b.bb.PutWill(sctx, w); err != nil {
			c.log().Warn("storing will; it is published only if this edge survives", "err", err)
		}
	}
	if err := c.writeConnack(present, packet.Success, ackProps); err != nil {
		c.removeRoutes()
		if c.will != nil {
			c.b.bb.DeleteWill(sctx, c.tenant, c.id, c.connID)
		}
		c.closeSession()
		c.b.unregister(c)
		return fmt.Errorf("writing CONNACK: %w", err)
	}
	return nil
}

// refuse sends CONNACK with the reason (mapped to 3.1.1 return codes for
// older clients; MQTT 5 clients also get a reason string) and returns err.
// A 3.1.1 client whose CONNECT breaks a rule 3.1.1 has no return code for (a
// bad will topic) gets no CONNACK: the connection just closes
// [MQTT-3.1.4-1].
func (c *client) refuse(rc packet.ReasonCode, err error) error {
	switch {
	case c.version == packet.V5:
		var props packet.Properties
		if msg := reasonText(rc, err); msg != "" {
			props.Set(packet.PropReasonString)
			props.ReasonString = msg
		}
		c.writeConnack(false, rc, &props)
	case rc != packet.TopicNameInvalid && rc != packet.ProtocolError && rc != packet.MalformedPacket && rc != packet.PayloadFormatInvalid:
		c.writeConnack(false, rc, nil)
	}
	return err
}

// sessionExpiry converts a Session Expiry Interval from the client to the
// one in force: 0xFFFFFFFF (never) and anything over the server's maximum
// become the maximum, which the server then tells the client (capped).
func (c *client) sessionExpiry(secs uint32) (exp time.Duration, capped bool) {
	max := c.b.opts.SessionExpiry
	exp = time.Duration(secs) * time.Second
	if secs == 0xFFFFFFFF || exp > max {
		return max, true
	}
	return exp, false
}

// writeConnack writes CONNACK directly; the writer is not running yet.
func (c *client) writeConnack(present bool, rc packet.ReasonCode, props *packet.Properties) error {
	ack := packet.Connack{SessionPresent: present && rc == packet.Success, ReasonCode: rc}
	if c.version != packet.V5 {
		ack.ReasonCode = packet.V3ConnackCode(rc)
	} else if props != nil {
		ack.Properties = *props
	}
	bw := getWriter(c.nc)
	defer putWriter(bw)
	buf, err := ack.Encode(bw.AvailableBuffer(), c.version)
	if err == nil && c.maxOut > 0 && len(buf) > c.maxOut && c.stripProblemProps(&ack.Properties) {
		// [MQTT-3.2.2-19] [MQTT-3.2.2-20] the reason string and user
		// properties go first when CONNACK is too large for the client.
		buf, err = ack.Encode(bw.AvailableBuffer(), c.version)
	}
	if err != nil {
		return err
	}
	// No write deadline: CONNACK is the first write on the connection, a
	// few bytes into an empty socket buffer, which never blocks.
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	return bw.Flush()
}

// cleanup runs once the connection's goroutines have stopped: it publishes
// the will unless the client disconnected normally, releases the session
// and unregisters the connection.
func (c *client) cleanup() {
	c.mu.Lock()
	normal := c.normal
	// A connection closed by an operator (credential revoked, tenant
	// suspended, kicked) leaves without its will, like Mosquitto's
	// dynamic security does.
	kicked := c.reason == packet.AdministrativeAction
	c.mu.Unlock()
	c.removeRoutes()
	if c.will != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.BackboneTimeout)
		delayed := false
		if !normal && !kicked {
			if d := c.effectiveWillDelay(); d > 0 {
				delayed = c.delayWill(ctx, d)
			}
			if !delayed {
				c.publishWill(ctx)
			}
		}
		if !delayed {
			if err := c.b.bb.DeleteWill(ctx, c.tenant, c.id, c.connID); err != nil {
				c.log().Warn("deleting stored will", "err", err)
			}
		}
		cancel()
	}
	c.closeSession()
	c.b.unregister(c)
}

// effectiveWillDelay is how long the will waits after the connection ends:
// its Will Delay Interval, but no longer than the session lives — the will
// goes out when the session ends, if that is first (MQTT 5 §3.1.3.2.2). A
// session that ends with its connection (expiry 0) sends it at once.
func (c *client) effectiveWillDelay() time.Duration {
	if c.willDelay <= 0 || c.state == nil {
		return 0
	}
	return min(c.willDelay, c.expiry)
}

// delayWill stores the will as due after d, notes it for the session record
// (so that a connection resuming the session on any edge cancels it
// [MQTT-3.1.3-9], and one with Clean Start publishes it), and arms this
// edge's timer. If this edge dies first, a surviving node's reaper
// publishes it when due. It reports false if the will could not be stored:
// it is then published at once.
func (c *client) delayWill(ctx context.Context, d time.Duration) bool {
	due := time.Now().Add(d)
	w := &Will{Message: *c.will, Node: c.b.opts.NodeID, ConnID: c.connID, Delay: c.willDelay, Due: due, MessageExpiry: c.willExpiry}
	if err := c.b.bb.PutWill(ctx, w); err != nil {
		c.log().Warn("storing delayed will; publishing it now", "err", err)
		return false
	}
	c.willDue = due
	c.b.scheduleWill(d, c.tenant, c.id, c.connID, c.principal)
	c.log().Info("will delayed", "delay", d)
	return true
}

// removeRoutes takes the connection off every route it is on.
func (c *client) removeRoutes() {
	c.mu.Lock()
	subs := make([]Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		c.b.removeRoute(c, s.Filter, c.classFor(s))
	}
}

// publishWill publishes the will message [MQTT-3.1.2-8].
func (c *client) publishWill(ctx context.Context) {
	m := *c.will
	if c.willExpiry > 0 {
		m.Expiry = time.Now().Add(c.willExpiry)
	}
	w := &m
	if !c.principal.Rules().CanPublish(w.Topic) {
		// The rules changed since CONNECT.
		c.log().Info("will not published: its topic is no longer allowed", "topic", string(w.Topic))
		return
	}
	errc := make(chan error, 1)
	if err := c.b.bb.Publish(w, func(err error) { errc <- err }); err != nil {
		c.log().Error("publishing will", "err", err)
		return
	}
	if w.QoS == 0 {
		return
	}
	select {
	case err := <-errc:
		if err != nil {
			c.log().Error("publishing will", "err", err)
			return
		}
	case <-ctx.Done():
		c.log().Error("publishing will timed out")
		return
	}
	c.log().Info("will published", "topic", string(w.Topic))
}
