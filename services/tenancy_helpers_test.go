package services_test

// Helpers for the tenancy integration tests (tenancy_test.go): a Server
// that refuses anonymous clients, tenants, apps and credentials made
// through the control plane's Admin, CONNECTs with credentials (paho and
// raw), and bounded polls for changes that must reach a running edge.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/tenant"
)

const (
	// actor is the audit actor of every change the tests make.
	actor = "test"
	// liveChange is how long a tenancy change (rule, revocation,
	// suspension) may take to reach a running edge: the README promises
	// "within a second"; half a second more for a loaded machine.
	liveChange = 1500 * time.Millisecond
	// livePoll bounds the polls that wait for a live change, so that a
	// change that never arrives fails with what was seen.
	livePoll = 5 * time.Second
)

// ---------------------------------------------------------------------------
// Server and tenancy

// tenancyEnv is a running Server with its data directory and control plane.
type tenancyEnv struct {
	srv  *services.Server
	addr string
	dir  string
	adm  *admin.Admin
}

// withAnonymous lets clients without credentials into the default tenant.
func withAnonymous() serverOption {
	return func(c *services.ServeConfig) { c.Edge.AllowAnonymous = true }
}

// startTenancy starts a Server that refuses anonymous clients (unless an
// option says otherwise) in a data directory the test knows.
func startTenancy(t testing.TB, opts ...serverOption) *tenancyEnv {
	t.Helper()
	dir := t.TempDir()
	all := append([]serverOption{withoutAnonymous(), func(c *services.ServeConfig) { c.DataDir = dir }}, opts...)
	srv, addr := startServer(t, all...)
	return &tenancyEnv{srv: srv, addr: addr, dir: dir, adm: srv.Control().Admin()}
}

// dbPath and keyPath are where the Server keeps its control-plane state.
func (e *tenancyEnv) dbPath() string  { return filepath.Join(e.dir, "relay.db") }
func (e *tenancyEnv) keyPath() string { return filepath.Join(e.dir, "secret.key") }

// opCtx is a bounded context for one administrative operation.
func opCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTenant creates an active tenant.
func (e *tenancyEnv) newTenant(t testing.TB, slug string) {
	t.Helper()
	if _, err := e.adm.CreateTenant(opCtx(t), actor, slug, ""); err != nil {
		t.Fatalf("create tenant %s: %v", slug, err)
	}
}

// newApp creates an app (with the default rule: all of the tenant's topics).
func (e *tenancyEnv) newApp(t testing.TB, slug, app string) {
	t.Helper()
	if _, err := e.adm.CreateApp(opCtx(t), actor, slug, app); err != nil {
		t.Fatalf("create app %s/%s: %v", slug, app, err)
	}
}

// newCred creates a credential of the app; pattern restricts its client
// IDs ("" for none).
func (e *tenancyEnv) newCred(t testing.TB, slug, app, pattern string) *admin.NewCredential {
	t.Helper()
	c, err := e.adm.CreateCredential(opCtx(t), actor, slug, app, pattern)
	if err != nil {
		t.Fatalf("create credential %s/%s: %v", slug, app, err)
	}
	if want := "@" + slug; !strings.HasSuffix(c.Username, want) || c.Password == "" {
		t.Fatalf("credential username %q password %q: want <user>%s and a password", c.Username, c.Password, want)
	}
	return c
}

// setup creates a tenant with one app "devices" and returns a credential
// of it.
func (e *tenancyEnv) setup(t testing.TB, slug string) *admin.NewCredential {
	t.Helper()
	e.newTenant(t, slug)
	e.newApp(t, slug, "devices")
	return e.newCred(t, slug, "devices", "")
}

// addRule and removeRule change a subject's rules through the Server's
// own control plane.
func (e *tenancyEnv) addRule(t testing.TB, slug, subject string, r auth.Rule) {
	t.Helper()
	if err := e.adm.AddRule(opCtx(t), actor, slug, subject, r); err != nil {
		t.Fatalf("add rule %s %s %s: %v", slug, subject, admin.RuleString(r), err)
	}
}

func (e *tenancyEnv) removeRule(t testing.TB, slug, subject string, r auth.Rule) {
	t.Helper()
	if err := e.adm.RemoveRule(opCtx(t), actor, slug, subject, r); err != nil {
		t.Fatalf("remove rule %s %s %s: %v", slug, subject, admin.RuleString(r), err)
	}
}

// openControl opens a second control plane on the Server's database and
// key, as the CLI does from another process (without serving edges).
func (e *tenancyEnv) openControl(t testing.TB) *services.Control {
	t.Helper()
	ctl, err := services.OpenControl(opCtx(t), services.ControlConfig{
		DatabaseURL: e.dbPath(), SecretKeyFile: e.keyPath(), Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("second control plane: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	return ctl
}

// setLimits changes a tenant's plan limits through the Admin (they apply
// to connections made from then on).
func (e *tenancyEnv) setLimits(t testing.TB, slug string, l tenant.Limits) {
	t.Helper()
	if _, err := e.adm.SetLimits(opCtx(t), actor, slug, l); err != nil {
		t.Fatalf("set limits of %s: %v", slug, err)
	}
}

// userOf returns the credential's username without the tenant suffix (its
// name in "cred:<username>" rule subjects).
func userOf(c *admin.NewCredential) string {
	u, _, _ := strings.Cut(c.Username, "@")
	return u
}

// ---------------------------------------------------------------------------
// Rules

func allowAll(filter string) auth.Rule {
	return auth.Rule{Effect: auth.Allow, Action: auth.PubSub, Filter: filter}
}

func denyPublish(filter string) auth.Rule {
	return auth.Rule{Effect: auth.Deny, Action: auth.Publish, Filter: filter}
}

func denySubscribe(filter string) auth.Rule {
	return auth.Rule{Effect: auth.Deny, Action: auth.Subscribe, Filter: filter}
}

// ---------------------------------------------------------------------------
// Connecting with credentials

// withCred makes a paho client log in with the credential.
func withCred(c *admin.NewCredential) clientOption {
	return func(o *mqtt.ClientOptions) { o.SetUsername(c.Username).SetPassword(c.Password) }
}

// withLogin makes a paho client log in with any username and password.
func withLogin(user, pass string) clientOption {
	return func(o *mqtt.ClientOptions) { o.SetUsername(user).SetPassword(pass) }
}

// disconnectPacket is an MQTT 3.1.1 DISCONNECT.
var disconnectPacket = []byte{byte(packet.DISCONNECT) << 4, 0}

// login returns a clean-session CONNECT with username and password.
func login(version byte, id, user, pass string) packet.Connect {
	return packet.Connect{
		ProtocolVersion: version, ClientID: id, CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass),
	}
}

// credLogin is login with a credential.
func credLogin(version byte, id string, c *admin.NewCredential) packet.Connect {
	return login(version, id, c.Username, c.Password)
}

// connackCode sends CONNECT p on a new connection and returns the CONNACK
// code; a refused connection must then be closed by the server. The
// connection is returned (open if accepted).
func connackCode(t testing.TB, addr string, p packet.Connect) (packet.ReasonCode, *rawClient) {
	t.Helper()
	c := dialRaw(t, addr)
	ack := c.connack(p)
	if ack.ReasonCode != packet.Success {
		if ack.SessionPresent {
			t.Errorf("refused CONNACK 0x%02X with Session Present set [MQTT-3.2.2-4]", byte(ack.ReasonCode))
		}
		c.expectClosed(waitTimeout)
	}
	return ack.ReasonCode, c
}

// expectConnack fails the test (without stopping it) unless CONNECT p gets
// CONNACK code want.
func expectConnack(t testing.TB, addr, what string, p packet.Connect, want packet.ReasonCode) packet.ReasonCode {
	t.Helper()
	got, _ := connackCode(t, addr, p)
	if got != want {
		t.Errorf("%s: CONNACK 0x%02X (%v), want 0x%02X (%v)", what, byte(got), got, byte(want), want)
	}
	return got
}

// rawLogin connects a raw MQTT 3.1.1 client with the credential and fails
// unless it is accepted.
func rawLogin(t testing.TB, addr, id string, c *admin.NewCredential) *rawClient {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.connect(credLogin(packet.V311, id, c))
	return rc
}

// rawLoginV5 connects a raw MQTT 5 client with the credential. It checks
// only the CONNACK's reason code, not its properties: the test using it is
// about something else (TestCredentials checks the whole CONNACK).
func rawLoginV5(t testing.TB, addr, id string, c *admin.NewCredential) *rawClient {
	t.Helper()
	rc := dialRaw(t, addr)
	p := credLogin(packet.V5, id, c)
	rc.version = packet.V5
	rc.sendPacket(&p)
	_, body := rc.expect(packet.CONNACK)
	if len(body) < 2 || body[1] != byte(packet.Success) {
		t.Fatalf("MQTT 5 CONNECT %q: CONNACK body % x, want reason code 0", id, body)
	}
	return rc
}

// subackCodes subscribes and returns the SUBACK's codes (no check).
func (c *rawClient) subackCodes(id uint16, filters ...string) []packet.ReasonCode {
	c.t.Helper()
	subs := make([]packet.Subscription, len(filters))
	for i, f := range filters {
		subs[i] = packet.Subscription{Filter: f, QoS: 1}
	}
	c.sendPacket(subscribePacket(id, subs...))
	fh, body := c.skipPublishes(packet.SUBACK)
	var ack packet.Suback
	if err := ack.Decode(c.version, fh, body); err != nil {
		c.t.Fatalf("decoding SUBACK: %v", err)
	}
	if ack.PacketID != id {
		c.t.Fatalf("SUBACK packet ID %d, want %d", ack.PacketID, id)
	}
	return ack.ReasonCodes
}

// skipPublishes reads packets until one of type typ arrives, answering
// the PUBLISHes (QoS ≤ 1) of the client's subscriptions on the way.
func (c *rawClient) skipPublishes(typ packet.Type) (packet.FixedHeader, []byte) {
	c.t.Helper()
	for {
		fh, body := c.expectOneOf(typ, packet.PUBLISH)
		if fh.Type == typ {
			return fh, body
		}
		var p packet.Publish
		if err := p.Decode(c.version, fh, body); err != nil {
			c.t.Fatalf("decoding PUBLISH: %v", err)
		}
		if p.QoS > 0 { // subackCodes subscribes at QoS 1
			c.sendPacket(&packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID})
		}
	}
}

// expectOneOf reads the next packet and fails unless it has one of the
// types.
func (c *rawClient) expectOneOf(types ...packet.Type) (packet.FixedHeader, []byte) {
	c.t.Helper()
	fh, body, err := c.read(waitTimeout)
	if err != nil {
		c.t.Fatalf("waiting for %v: %v", types, err)
	}
	if !slices.Contains(types, fh.Type) {
		c.t.Fatalf("got %v (flags %04b, %d bytes), want one of %v", fh.Type, fh.Flags, fh.Remaining, types)
	}
	return fh, body
}

// waitClosed waits until the server closes the connection, discarding
// whatever it sends first (PUBLISHes, a DISCONNECT), and returns how long
// that took; it fails after d.
func (c *rawClient) waitClosed(d time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("connection still open after %v", d)
		}
		_, _, err := c.read(left)
		switch {
		case err == nil:
			continue
		case isTimeout(err):
			c.t.Fatalf("connection still open after %v", d)
		case isClosed(err):
			return time.Since(start)
		default:
			c.t.Fatalf("read: %v, want the connection closed", err)
		}
	}
}

// ---------------------------------------------------------------------------
// Live changes

// payloadSeq makes probe payloads unique within a test binary.
var payloadSeq atomic.Int64

// has reports whether a message with this topic and payload arrived.
func (in *inbox) has(topic, payload string) bool {
	return slices.ContainsFunc(in.all(), func(r received) bool { return r.Topic == topic && r.Payload == payload })
}

// waitMessage waits until a message with this topic and payload arrived.
func (in *inbox) waitMessage(t testing.TB, topic, payload string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for !in.has(topic, payload) {
		select {
		case <-in.notify:
		case <-timer.C:
			t.Fatalf("timed out after %v waiting for %s=%q; got %v", d, topic, payload, in.all())
		}
	}
}

// untilDelivery publishes probe (then control) from pub, both at QoS 1,
// until in — subscribed to both — receives the probe (wantDelivered) or
// receives the control message without the probe before it (!wantDelivered).
// When both go through one subscription, one publisher's messages arrive
// in order, so the control message proves the probe's fate. It returns how
// long the change took to show, and fails after livePoll.
func untilDelivery(t testing.TB, pub mqtt.Client, in *inbox, probe, control string, wantDelivered bool) time.Duration {
	t.Helper()
	return untilDeliveryGrace(t, pub, in, probe, control, wantDelivered, 0)
}

// untilDeliveryGrace is untilDelivery for probe and control messages that
// reach in through different subscriptions, which keep no order between
// them: a probe still missing grace after its control message counts as
// dropped.
func untilDeliveryGrace(t testing.TB, pub mqtt.Client, in *inbox, probe, control string, wantDelivered bool, grace time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		n := payloadSeq.Add(1)
		pp, cp := fmt.Sprintf("probe-%d", n), fmt.Sprintf("control-%d", n)
		publish(t, pub, probe, 1, false, pp)
		publish(t, pub, control, 1, false, cp)
		in.waitMessage(t, control, cp, waitTimeout)
		for end := time.Now().Add(grace); !in.has(probe, pp) && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		if in.has(probe, pp) == wantDelivered {
			return time.Since(start)
		}
		if time.Since(start) > livePoll {
			t.Fatalf("after %v a publish to %q is still %s", livePoll, probe, map[bool]string{true: "dropped", false: "delivered"}[wantDelivered])
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// untilSuback subscribes c to filter (QoS 1) until its SUBACK code is
// want (granted 1 or the failure 0x80) and returns how long that took.
func untilSuback(t testing.TB, c *rawClient, filter string, want packet.ReasonCode) time.Duration {
	t.Helper()
	start := time.Now()
	for id := uint16(100); ; id++ {
		got := c.subackCodes(id, filter)
		if len(got) == 1 && got[0] == want {
			return time.Since(start)
		}
		if time.Since(start) > livePoll {
			t.Fatalf("after %v SUBSCRIBE %q still gets %v, want 0x%02X", livePoll, filter, got, byte(want))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// checkLive fails (without stopping the test) if a live change took longer
// than liveChange.
func checkLive(t testing.TB, what string, took time.Duration) {
	t.Helper()
	t.Logf("%s took effect after %v", what, took.Round(time.Millisecond))
	if took > liveChange {
		t.Errorf("%s took %v to reach the running edge, want ≤ %v", what, took.Round(time.Millisecond), liveChange)
	}
}

// waitLost waits until a paho client's connection-lost handler fired and
// returns how long that took.
func waitLost(t testing.TB, lost <-chan error, what string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-lost:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s: still connected after %v", what, d)
		return 0
	}
}

// stillConnected fails if the paho client lost its connection.
func stillConnected(t testing.TB, lost <-chan error, what string) {
	t.Helper()
	select {
	case err := <-lost:
		t.Fatalf("%s: connection lost: %v", what, err)
	default:
	}
}
