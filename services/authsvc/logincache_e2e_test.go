package authsvc_test

// End-to-end tests of the edge's login cache: a real `relay serve` Server
// (embedded NATS, SQLite control plane, MQTT edge on :0), paho clients, and
// a plain NATS subscriber on rly.auth.v1.connect that counts the CONNECT
// checks the edge asks the control plane for — a cached login asks none.

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/internal/testlog"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/services/authsvc"
	"github.com/relaymq/relay/tenant"
)

// MQTT 3.1.1 CONNACK return codes.
const (
	accepted          byte = 0x00
	serverUnavailable byte = 0x03 // also what a throttled 3.1.1 client sees
	badCredentials    byte = 0x04
	notAuthorized     byte = 0x05
)

const (
	actor       = "test"
	waitTimeout = 10 * time.Second
)

// ---------------------------------------------------------------------------
// Helpers

// relayEnv is a running Server whose anonymous clients are refused, and a
// NATS connection that counts CONNECT checks.
type relayEnv struct {
	srv  *services.Server
	addr string
	dir  string
	adm  *admin.Admin
	nc   *nats.Conn
	reqs *nats.Subscription // rly.auth.v1.connect, not in the queue group
	// Per tenant: the changes pushed to edges, how many were seen and
	// how many audit records the helpers made (see settle).
	pushed  map[string]*nats.Subscription
	seen    map[string]int
	records map[string]int
}

func startRelay(t testing.TB) *relayEnv {
	t.Helper()
	dir := t.TempDir()
	srv, err := services.NewServer(services.ServeConfig{
		DataDir:  dir,
		NATSAddr: "127.0.0.1:0",
		Edge:     services.EdgeConfig{NodeID: "test-node", MQTTAddr: "127.0.0.1:0"},
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing server: %v", err)
		}
	})
	nc, err := nats.Connect(srv.NATSURL())
	if err != nil {
		t.Fatalf("connecting to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	reqs, err := nc.SubscribeSync(authsvc.SubjectConnect)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return &relayEnv{
		srv: srv, addr: srv.Edge().MQTTAddr().String(), dir: dir, adm: srv.Control().Admin(), nc: nc, reqs: reqs,
		pushed: map[string]*nats.Subscription{}, seen: map[string]int{}, records: map[string]int{},
	}
}

// settle waits until the edges have been told of every change the helpers
// made to the tenant: each audit record is pushed twice, at once by the
// Service of the process that made it (Service.Invalidate) and again by
// the change feed a poll later — where one push stands for all the
// records of a kind read at once (its "records" field). A push drops the
// tenant's cached logins, so a test that counts cache hits must not race
// the feed's pushes.
func (e *relayEnv) settle(t testing.TB, slug string) {
	t.Helper()
	for e.seen[slug] < 2*e.records[slug] {
		m, err := e.pushed[slug].NextMsg(waitTimeout)
		if err != nil {
			t.Fatalf("waiting for the changes of %s to be pushed (%d of %d seen): %v", slug, e.seen[slug], 2*e.records[slug], err)
		}
		var ch struct {
			Records int `json:"records"`
		}
		if err := json.Unmarshal(m.Data, &ch); err != nil {
			t.Fatalf("push %q: %v", m.Data, err)
		}
		e.seen[slug] += max(ch.Records, 1)
	}
}

// checks returns how many CONNECT checks the edge asked the control plane
// for since the last call. Every check a CONNACK already answered has been
// routed to the counting subscription: the round trip of Flush brings it.
func (e *relayEnv) checks(t testing.TB) int {
	t.Helper()
	if err := e.nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	n := 0
	for {
		if p, _, _ := e.reqs.Pending(); p == 0 {
			return n
		}
		if _, err := e.reqs.NextMsg(waitTimeout); err != nil {
			t.Fatalf("counting CONNECT checks: %v", err)
		}
		n++
	}
}

// warm logs in with c (client ID id) until a login is answered from the
// edge's cache, and resets the count of checks. settle made sure that no
// change of the tenant is still to be pushed, but the edge may not have
// applied the last pushes yet: a login cached before it does is dropped.
func (e *relayEnv) warm(t testing.TB, c cred, id string) {
	t.Helper()
	e.checks(t)
	deadline := time.Now().Add(waitTimeout)
	for {
		expectCode(t, e.addr, "warming the cache with "+c.user, id, c, accepted)
		if e.checks(t) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no login answered from the cache within %v", c.user, waitTimeout)
		}
	}
}

// expectChecks fails the test unless n CONNECT checks were asked for since
// the last count.
func (e *relayEnv) expectChecks(t testing.TB, what string, n int) {
	t.Helper()
	if got := e.checks(t); got != n {
		t.Errorf("%s: %d CONNECT checks reached the control plane, want %d", what, got, n)
	}
}

func opCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// cred is a credential: the login (<user>@<tenant>) and its secret.
type cred struct{ user, pass string }

// newTenant creates a tenant with an app "devices" (all of its topics).
func (e *relayEnv) newTenant(t testing.TB, slug string) {
	t.Helper()
	sub, err := e.nc.SubscribeSync(authsvc.SubjectChanged + slug)
	if err == nil {
		err = e.nc.Flush()
	}
	if err != nil {
		t.Fatalf("subscribe to changes: %v", err)
	}
	e.pushed[slug] = sub
	e.records[slug] += 2 // tenant.create, acl.add (the app's rule)
	if _, err := e.adm.CreateTenant(opCtx(t), actor, slug, ""); err != nil {
		t.Fatalf("create tenant %s: %v", slug, err)
	}
	if _, err := e.adm.CreateApp(opCtx(t), actor, slug, "devices"); err != nil {
		t.Fatalf("create app in %s: %v", slug, err)
	}
}

// newCred issues a credential named user (generated if "") in the tenant,
// and waits until the edges were told of everything done to the tenant.
func (e *relayEnv) newCred(t testing.TB, slug, user, pattern string) cred {
	t.Helper()
	c, secret, err := e.adm.IssueCredential(opCtx(t), actor, slug, "devices", user, pattern)
	if err != nil {
		t.Fatalf("issue credential in %s: %v", slug, err)
	}
	e.records[slug]++ // credential.create
	e.settle(t, slug)
	return cred{user: c.Username + "@" + slug, pass: secret}
}

// dial connects a paho client and returns it (nil unless accepted) with
// the CONNACK return code. lost, if not nil, is closed when the accepted
// connection is lost.
func dial(t testing.TB, addr, id, user, pass string, lost chan struct{}) (mqtt.Client, byte) {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(pass).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitTimeout).
		SetWriteTimeout(waitTimeout).SetKeepAlive(30 * time.Second).SetPingTimeout(waitTimeout)
	if lost != nil {
		var once sync.Once
		o.SetConnectionLostHandler(func(mqtt.Client, error) { once.Do(func() { close(lost) }) })
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(2 * waitTimeout) {
		t.Fatalf("CONNECT %s as %s: no CONNACK", id, user)
	}
	code := tok.(*mqtt.ConnectToken).ReturnCode()
	if code != accepted {
		return nil, code
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, code
}

// expectCode fails the test unless a CONNECT gets CONNACK code want; an
// accepted client is disconnected again.
func expectCode(t testing.TB, addr, what, id string, c cred, want byte) {
	t.Helper()
	mc, got := dial(t, addr, id, c.user, c.pass, nil)
	if got != want {
		t.Errorf("%s: CONNACK 0x%02X, want 0x%02X", what, got, want)
	}
	if mc != nil {
		mc.Disconnect(0)
	}
}

// principalOf returns the principal the edge holds for a live client of
// the tenant (nil if there is none).
func (e *relayEnv) principalOf(slug, clientID string) *auth.Principal {
	var found *auth.Principal
	e.srv.Edge().Broker().ForEachClient(slug, func(id string, p *auth.Principal) {
		if id == clientID {
			found = p
		}
	})
	return found
}

// waitLost waits until an accepted connection is closed by the edge (a
// pushed change reached it).
func waitLost(t testing.TB, what string, lost chan struct{}) {
	t.Helper()
	select {
	case <-lost:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: the live connection was not closed within %v", what, waitTimeout)
	}
}

// testLogger logs warnings and errors to t.Log (testlog).
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelWarn) }

// ---------------------------------------------------------------------------
// Tests

// TestAuthLoginCacheAccepts: a login the control plane accepted is
// accepted again without a CONNECT check, for any client ID, with the
// principal the control plane gave (tenant, credential, rules: the cached
// connection can publish and subscribe in its tenant).
func TestAuthLoginCacheAccepts(t *testing.T) {
	t.Parallel()
	e := startRelay(t)
	e.newTenant(t, "acme")
	c := e.newCred(t, "acme", "dev", "")
	e.checks(t)

	first, code := dial(t, e.addr, "first", c.user, c.pass, nil)
	if code != accepted {
		t.Fatalf("first login: CONNACK 0x%02X", code)
	}
	e.expectChecks(t, "first login", 1)
	first.Disconnect(0)
	e.warm(t, c, "first")

	cached, code := dial(t, e.addr, "second", c.user, c.pass, nil)
	if code != accepted {
		t.Fatalf("cached login: CONNACK 0x%02X", code)
	}
	e.expectChecks(t, "cached login", 0)
	p := e.principalOf("acme", "second")
	if p == nil || p.Tenant != "acme" || p.Username != "dev" || p.CredentialID == "" || p.App != "devices" {
		t.Fatalf("cached login's principal = %+v, want tenant acme, user dev, app devices", p)
	}
	got := make(chan string, 1)
	if tok := cached.Subscribe("cache/+", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe on the cached login: %v", tok.Error())
	}
	if tok := cached.Publish("cache/1", 1, false, "hello"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("publish on the cached login: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("received %q", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the cached login's own message never came back")
	}
}

// TestAuthLoginCacheWrongPassword: a wrong password for a user with a
// cached login is refused by the control plane (the cache never refuses
// and never accepts it), the right one still hits the cache, and the
// failures count toward CONNECT throttling as before.
func TestAuthLoginCacheWrongPassword(t *testing.T) {
	t.Parallel()
	e := startRelay(t)
	e.newTenant(t, "acme")
	c := e.newCred(t, "acme", "dev", "")
	e.warm(t, c, "c1")

	wrong := cred{user: c.user, pass: c.pass[:len(c.pass)-1] + "x"}
	expectCode(t, e.addr, "wrong password, login cached", "c2", wrong, badCredentials)
	e.expectChecks(t, "wrong password", 1)
	expectCode(t, e.addr, "empty password, login cached", "c2", cred{user: c.user}, badCredentials)
	e.expectChecks(t, "empty password", 1)
	expectCode(t, e.addr, "right password after wrong ones", "c3", c, accepted)
	e.expectChecks(t, "right password after wrong ones", 0)

	// Throttling: 5 failures in a row for a (username, address) block it
	// for a while, whatever the cache holds.
	for range 5 {
		expectCode(t, e.addr, "wrong password", "c4", wrong, badCredentials)
	}
	expectCode(t, e.addr, "right password while throttled", "c5", c, serverUnavailable)
	e.expectChecks(t, "throttled", 5)
}

// TestAuthLoginCacheChanges: a change made through the control plane of
// the process (relay serve: CLI, dashboard, API) takes effect on the very
// next CONNECT though the login was cached: revocation, rotation,
// suspension, rules.
func TestAuthLoginCacheChanges(t *testing.T) {
	t.Parallel()
	e := startRelay(t)
	cache := func(t *testing.T, c cred) {
		t.Helper()
		e.warm(t, c, "warm")
		expectCode(t, e.addr, "cached login", "warm2", c, accepted)
		e.expectChecks(t, "cached login", 0)
	}

	t.Run("revoke", func(t *testing.T) {
		e.newTenant(t, "revoked")
		c := e.newCred(t, "revoked", "dev", "")
		cache(t, c)
		if err := e.adm.RevokeCredential(opCtx(t), actor, "revoked", c.user); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		expectCode(t, e.addr, "revoked credential", "after", c, badCredentials)
	})
	t.Run("rotate", func(t *testing.T) {
		e.newTenant(t, "rotated")
		c := e.newCred(t, "rotated", "dev", "")
		cache(t, c)
		secret, err := e.adm.RotateCredential(opCtx(t), actor, "rotated", c.user)
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		expectCode(t, e.addr, "old secret after rotation", "after", c, badCredentials)
		expectCode(t, e.addr, "new secret after rotation", "after", cred{c.user, secret}, accepted)
	})
	t.Run("suspend", func(t *testing.T) {
		e.newTenant(t, "suspended")
		c := e.newCred(t, "suspended", "dev", "")
		cache(t, c)
		if _, err := e.adm.SetStatus(opCtx(t), actor, "suspended", tenant.Suspended); err != nil {
			t.Fatalf("suspend: %v", err)
		}
		expectCode(t, e.addr, "suspended tenant", "after", c, notAuthorized)
		if _, err := e.adm.SetStatus(opCtx(t), actor, "suspended", tenant.Active); err != nil {
			t.Fatalf("resume: %v", err)
		}
		expectCode(t, e.addr, "resumed tenant", "after", c, accepted)
	})
	t.Run("rules", func(t *testing.T) {
		e.newTenant(t, "ruled")
		c := e.newCred(t, "ruled", "dev", "")
		cache(t, c)
		deny := auth.Rule{Effect: auth.Deny, Action: auth.Publish, Filter: "secret/#"}
		if err := e.adm.AddRule(opCtx(t), actor, "ruled", "cred:dev", deny); err != nil {
			t.Fatalf("add rule: %v", err)
		}
		mc, code := dial(t, e.addr, "after", c.user, c.pass, nil)
		if code != accepted {
			t.Fatalf("login after a rule change: CONNACK 0x%02X", code)
		}
		defer mc.Disconnect(0)
		e.expectChecks(t, "login after a rule change", 1)
		if p := e.principalOf("ruled", "after"); p == nil || p.Rules().CanPublish([]byte("secret/x")) {
			t.Fatal("the login after a rule change does not have the new rule")
		}
	})
}

// TestAuthLoginCacheChangesElsewhere: a change made by another process
// (the CLI on the same database) reaches the edge through the change feed;
// once it has — the credential's live connection is closed — the old
// secret is refused at the next CONNECT, cached or not.
func TestAuthLoginCacheChangesElsewhere(t *testing.T) {
	t.Parallel()
	e := startRelay(t)
	ctl, err := services.OpenControl(opCtx(t), services.ControlConfig{
		DatabaseURL: filepath.Join(e.dir, "relay.db"), SecretKeyFile: filepath.Join(e.dir, "secret.key"), Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("second control plane: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	// live logs in twice (the second time from the cache) and stays
	// connected; the returned channel is closed when the edge drops it.
	live := func(t *testing.T, c cred) chan struct{} {
		t.Helper()
		e.warm(t, c, "warm")
		lost := make(chan struct{})
		if _, code := dial(t, e.addr, "live", c.user, c.pass, lost); code != accepted {
			t.Fatalf("cached login: CONNACK 0x%02X", code)
		}
		e.expectChecks(t, "cached login", 0)
		return lost
	}

	t.Run("revoke", func(t *testing.T) {
		e.newTenant(t, "revoked")
		c := e.newCred(t, "revoked", "dev", "")
		lost := live(t, c)
		if err := ctl.Admin().RevokeCredential(opCtx(t), "cli", "revoked", c.user); err != nil {
			t.Fatalf("revoke: %v", err)
		}
		waitLost(t, "revoked elsewhere", lost)
		expectCode(t, e.addr, "revoked elsewhere", "after", c, badCredentials)
	})
	t.Run("rotate", func(t *testing.T) {
		e.newTenant(t, "rotated")
		c := e.newCred(t, "rotated", "dev", "")
		lost := live(t, c)
		secret, err := ctl.Admin().RotateCredential(opCtx(t), "cli", "rotated", c.user)
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		waitLost(t, "rotated elsewhere", lost)
		expectCode(t, e.addr, "old secret after a rotation elsewhere", "after", c, badCredentials)
		expectCode(t, e.addr, "new secret after a rotation elsewhere", "after", cred{c.user, secret}, accepted)
	})
	t.Run("suspend", func(t *testing.T) {
		e.newTenant(t, "suspended")
		c := e.newCred(t, "suspended", "dev", "")
		lost := live(t, c)
		if _, err := ctl.Admin().SetStatus(opCtx(t), "cli", "suspended", tenant.Suspended); err != nil {
			t.Fatalf("suspend: %v", err)
		}
		waitLost(t, "suspended elsewhere", lost)
		expectCode(t, e.addr, "suspended elsewhere", "after", c, notAuthorized)
	})
}

// TestAuthLoginCacheTenantsApart: the same username in two tenants, with
// different secrets, never crosses: one tenant's secret is refused for the
// other's user while both are cached, and each cached login lands in its
// own tenant with its own credential.
func TestAuthLoginCacheTenantsApart(t *testing.T) {
	t.Parallel()
	e := startRelay(t)
	e.newTenant(t, "acme")
	e.newTenant(t, "globex")
	a := e.newCred(t, "acme", "dev", "")
	g := e.newCred(t, "globex", "dev", "")
	if a.pass == g.pass {
		t.Fatal("two credentials with the same secret")
	}
	for _, c := range []cred{a, g} {
		e.warm(t, c, "warm")
	}

	expectCode(t, e.addr, "acme's secret for dev@globex", "x1", cred{g.user, a.pass}, badCredentials)
	expectCode(t, e.addr, "globex's secret for dev@acme", "x2", cred{a.user, g.pass}, badCredentials)
	e.expectChecks(t, "crossed secrets", 2)

	ids := map[string]string{}
	for _, c := range []cred{a, g} {
		slug := strings.TrimPrefix(c.user, "dev@")
		if _, code := dial(t, e.addr, "cached-"+slug, c.user, c.pass, nil); code != accepted {
			t.Fatalf("cached login %s: CONNACK 0x%02X", c.user, code)
		}
		p := e.principalOf(slug, "cached-"+slug)
		if p == nil || p.Tenant != slug || p.Username != "dev" {
			t.Fatalf("cached login %s: principal %+v, want tenant %s", c.user, p, slug)
		}
		ids[slug] = p.CredentialID
	}
	e.expectChecks(t, "cached logins of both tenants", 0)
	if ids["acme"] == ids["globex"] {
		t.Fatalf("both tenants' logins carry credential %s", ids["acme"])
	}
	for _, slug := range []string{"acme", "globex"} {
		other := map[string]string{"acme": "globex", "globex": "acme"}[slug]
		if p := e.principalOf(other, "cached-"+slug); p != nil {
			t.Fatalf("%s's cached login is a client of %s", slug, other)
		}
	}

	// A change of one tenant leaves the other's cached logins alone.
	if err := e.adm.RevokeCredential(opCtx(t), actor, "acme", a.user); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	expectCode(t, e.addr, "dev@acme revoked", "y1", a, badCredentials)
	expectCode(t, e.addr, "dev@globex after acme's revocation", "y2", g, accepted)
	e.expectChecks(t, "after acme's revocation", 1)
}

// TestAuthLoginCacheClientIDPattern: a cached login is accepted only for
// client IDs its credential's pattern allows; another client ID is
// checked (and refused) by the control plane.
func TestAuthLoginCacheClientIDPattern(t *testing.T) {
	t.Parallel()
	e := startRelay(t)
	e.newTenant(t, "acme")
	c := e.newCred(t, "acme", "dev", "%u-+")
	e.warm(t, c, "dev-1")
	expectCode(t, e.addr, "cached login, allowed client ID", "dev-2", c, accepted)
	e.expectChecks(t, "allowed client ID", 0)
	expectCode(t, e.addr, "cached login, client ID not allowed", "other-1", c, notAuthorized)
	e.expectChecks(t, "client ID not allowed", 1)
}
