package authsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker"
)

// ---------------------------------------------------------------------------
// loginCache

func okReply(slug, tenantID, user string) *connectReply {
	return &connectReply{Result: resultOK, Tenant: slug, TenantID: tenantID, Username: user, CredentialID: "c-" + slug, App: "devices", Cacheable: true}
}

// consistent fails the test unless the indexes hold exactly the entries.
func consistent(t *testing.T, lc *loginCache) {
	t.Helper()
	n := 0
	for slug, set := range lc.bySlug {
		for k := range set {
			e := lc.entries[k]
			if e == nil || e.rep.Tenant != slug {
				t.Fatalf("bySlug[%s] holds %v, which is not an entry of the tenant", slug, k)
			}
			if lc.slugByID[e.rep.TenantID] != slug {
				t.Fatalf("slugByID[%s] = %q, want %q", e.rep.TenantID, lc.slugByID[e.rep.TenantID], slug)
			}
			n++
		}
	}
	if n != len(lc.entries) {
		t.Fatalf("bySlug indexes %d entries, the cache holds %d", n, len(lc.entries))
	}
	for id, slug := range lc.slugByID {
		if len(lc.bySlug[slug]) == 0 {
			t.Fatalf("slugByID[%s] = %s, a tenant without entries", id, slug)
		}
	}
}

// TestLoginCacheExpiry: an entry is a hit until its TTL is over, then a
// miss, and forgotten.
func TestLoginCacheExpiry(t *testing.T) {
	lc := newLoginCache(time.Second, 10)
	k := loginKey{username: "dev@acme"}
	d := lc.digest([]byte("secret"))
	t0 := time.Now()
	lc.put(lc.begin(), k, &d, okReply("acme", "t1", "dev"), t0)
	if lc.get(k, &d, t0.Add(time.Second-time.Nanosecond)) == nil {
		t.Fatal("miss before the TTL is over")
	}
	if lc.get(k, &d, t0.Add(time.Second)) != nil {
		t.Fatal("hit once the TTL is over")
	}
	if lc.len() != 0 {
		t.Fatal("expired entry kept")
	}
	consistent(t, lc)

	lc.put(lc.begin(), k, &d, okReply("acme", "t1", "dev"), t0)
	lc.sweep(t0.Add(time.Second))
	if lc.len() != 0 {
		t.Fatal("sweep kept an expired entry")
	}
	consistent(t, lc)
}

// TestLoginCacheMatch: a hit needs the same host name, username and
// password; a wrong password is a miss that leaves the entry in place.
func TestLoginCacheMatch(t *testing.T) {
	lc := newLoginCache(time.Minute, 10)
	now := time.Now()
	right, wrong := lc.digest([]byte("secret")), lc.digest([]byte("secreT"))
	if right == wrong {
		t.Fatal("two passwords with one digest")
	}
	if other := newLoginCache(time.Minute, 10).digest([]byte("secret")); other == right {
		t.Fatal("two caches with one key")
	}
	k := loginKey{serverName: "acme.relay.example.com", username: "dev"}
	lc.put(lc.begin(), k, &right, okReply("acme", "t1", "dev"), now)
	tests := []struct {
		name string
		k    loginKey
		d    [32]byte
		hit  bool
	}{
		{"same login", k, right, true},
		{"wrong password", k, wrong, false},
		{"other tenant's host name", loginKey{serverName: "globex.relay.example.com", username: "dev"}, right, false},
		{"no host name", loginKey{username: "dev"}, right, false},
		{"other username", loginKey{serverName: k.serverName, username: "dev2"}, right, false},
		{"same login after a wrong password", k, right, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lc.get(tt.k, &tt.d, now) != nil; got != tt.hit {
				t.Fatalf("hit = %v, want %v", got, tt.hit)
			}
		})
	}
}

// TestLoginCacheInvalidation: a tenant's invalidation (by slug or by ID)
// drops its entries only, and an answer asked for before any invalidation
// is not stored.
func TestLoginCacheInvalidation(t *testing.T) {
	lc := newLoginCache(time.Minute, 100)
	now := time.Now()
	d := lc.digest([]byte("secret"))
	fill := func() {
		for _, u := range []string{"a", "b"} {
			lc.put(lc.begin(), loginKey{username: u + "@acme"}, &d, okReply("acme", "t1", u), now)
			lc.put(lc.begin(), loginKey{username: u + "@globex"}, &d, okReply("globex", "t2", u), now)
		}
	}
	fill()
	lc.invalidateSlug("acme")
	if lc.get(loginKey{username: "a@acme"}, &d, now) != nil || lc.get(loginKey{username: "a@globex"}, &d, now) == nil || lc.len() != 2 {
		t.Fatalf("after invalidating acme: %d entries, acme's still there or globex's gone", lc.len())
	}
	consistent(t, lc)
	fill()
	lc.invalidateID("t2")
	if lc.get(loginKey{username: "b@globex"}, &d, now) != nil || lc.get(loginKey{username: "b@acme"}, &d, now) == nil || lc.len() != 2 {
		t.Fatalf("after invalidating t2: %d entries, globex's still there or acme's gone", lc.len())
	}
	consistent(t, lc)
	lc.flush()
	if lc.len() != 0 {
		t.Fatal("flush kept entries")
	}
	consistent(t, lc)

	tests := []struct {
		name       string
		invalidate func()
		stored     bool
	}{
		{"same tenant by slug", func() { lc.invalidateSlug("acme") }, false},
		{"same tenant by ID", func() { lc.invalidateID("t1") }, false},
		{"everything", lc.flush, false},
		{"another tenant by slug", func() { lc.invalidateSlug("globex") }, true},
		{"another tenant by ID", func() { lc.invalidateID("t2") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc.flush()
			epoch := lc.begin()
			tt.invalidate()
			lc.put(epoch, loginKey{username: "a@acme"}, &d, okReply("acme", "t1", "a"), now)
			if stored := lc.len() == 1; stored != tt.stored {
				t.Fatalf("answer asked for before the invalidation: stored = %v, want %v", stored, tt.stored)
			}
			consistent(t, lc)
		})
	}

	// Past maxInvalidated tenants, every answer in flight is refused.
	lc.flush()
	epoch := lc.begin()
	for i := range maxInvalidated + 1 {
		lc.invalidateID(string(rune(0x4e00 + i)))
	}
	lc.put(epoch, loginKey{username: "a@acme"}, &d, okReply("acme", "t1", "a"), now)
	if lc.len() != 0 || len(lc.invalidated) > maxInvalidated {
		t.Fatalf("after %d invalidations: %d entries stored, %d tenants remembered", maxInvalidated+1, lc.len(), len(lc.invalidated))
	}
}

// TestLoginCacheBound: the cache never holds more than its bound, and
// replacing an entry keeps the indexes right.
func TestLoginCacheBound(t *testing.T) {
	lc := newLoginCache(time.Minute, 3)
	now := time.Now()
	d := lc.digest([]byte("secret"))
	for i := range 10 {
		slug := []string{"acme", "globex"}[i%2]
		lc.put(lc.begin(), loginKey{username: string(rune('a'+i)) + "@" + slug}, &d, okReply(slug, "id-"+slug, "u"), now)
		lc.put(lc.begin(), loginKey{username: string(rune('a'+i)) + "@" + slug}, &d, okReply(slug, "id-"+slug, "u"), now)
		if lc.len() > 3 {
			t.Fatalf("%d entries, bound 3", lc.len())
		}
		consistent(t, lc)
	}
}

// One credential presented under many host names (any Host header a
// WebSocket client likes) holds one copy of its answer, not one per name;
// the rules of all answers held are bounded (review: 1,500 logins with
// distinct Host headers once pinned 74 KiB each).
func TestLoginCacheSharesAnswers(t *testing.T) {
	lc := newLoginCache(time.Minute, 100_000)
	now := time.Now()
	d := lc.digest([]byte("secret"))
	rules := make([]auth.Rule, 1000)
	for i := range 1500 {
		rep := okReply("acme", "id-acme", "dev")
		rep.Rules = slices.Clone(rules)
		lc.put(lc.begin(), loginKey{serverName: fmt.Sprintf("h%d.example", i), username: "dev@acme"}, &d, rep, now)
	}
	if lc.len() != 1500 || len(lc.byCred) != 1 || lc.rules != 1000 {
		t.Fatalf("%d entries, %d answers, %d rules held; want 1500, 1, 1000", lc.len(), len(lc.byCred), lc.rules)
	}
	consistent(t, lc)
	// Distinct credentials are held up to the rules budget.
	big := make([]auth.Rule, maxCachedRules/2)
	for i := range 3 {
		rep := okReply("globex", "id-globex", "dev")
		rep.CredentialID = fmt.Sprintf("c-%d", i)
		rep.Rules = big
		lc.put(lc.begin(), loginKey{username: fmt.Sprintf("u%d@globex", i)}, &d, rep, now)
	}
	if lc.rules > maxCachedRules {
		t.Fatalf("%d rules held, budget %d", lc.rules, maxCachedRules)
	}
	lc.invalidateSlug("acme")
	lc.invalidateSlug("globex")
	if lc.len() != 0 || len(lc.byCred) != 0 || lc.rules != 0 {
		t.Fatalf("after invalidation: %d entries, %d answers, %d rules", lc.len(), len(lc.byCred), lc.rules)
	}
}

// ---------------------------------------------------------------------------
// Client, against real NATS and a stand-in control plane

// stubBackbone satisfies broker.Backbone for a broker that serves no
// connection (the Client only lists and kicks its clients): broker.New
// registers its handlers, nothing else is called.
type stubBackbone struct{ broker.Backbone }

func (stubBackbone) HandleKicks(broker.KickFunc)       {}
func (stubBackbone) LocalDelivery(broker.Handler) bool { return false }

// clientEnv is a Client attached to a broker, on a NATS server where a
// stand-in control plane accepts what ok says and counts the checks.
type clientEnv struct {
	c      *Client
	nc     *nats.Conn // the Client's
	ctl    *nats.Conn // the control plane's
	checks atomic.Int64
}

func startClient(t *testing.T, ttl time.Duration, ok func(*connectRequest) *connectReply) *clientEnv {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	e := &clientEnv{}
	if e.ctl, err = nats.Connect(ns.ClientURL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.ctl.Close)
	if _, err := e.ctl.Subscribe(SubjectConnect, func(m *nats.Msg) {
		e.checks.Add(1)
		var req connectRequest
		rep := &connectReply{Result: resultBadCredentials}
		if json.Unmarshal(m.Data, &req) == nil {
			if r := ok(&req); r != nil {
				rep = r
			}
		}
		data, _ := json.Marshal(rep)
		m.Respond(data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl.Flush(); err != nil {
		t.Fatal(err)
	}
	if e.nc, err = nats.Connect(ns.ClientURL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	b, err := broker.New(broker.Options{NodeID: "test", Backbone: stubBackbone{}})
	if err != nil {
		t.Fatal(err)
	}
	e.c = NewClient(e.nc, false, nil)
	e.c.logins = newLoginCache(ttl, maxLoginEntries)
	if err := e.c.Attach(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.c.Close() })
	return e
}

// login authenticates info and returns the error and how many checks it
// asked the control plane for.
func (e *clientEnv) login(t *testing.T, info broker.ConnectInfo) (*auth.Principal, error, int64) {
	t.Helper()
	before := e.checks.Load()
	info.HasUsername = info.Username != ""
	info.HasPassword = info.Password != nil
	info.RemoteAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if info.ClientID == "" {
		info.ClientID = "c"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := e.c.Authenticate(ctx, &info)
	return p, err, e.checks.Load() - before
}

// TestClientLoginCache: what the Client caches and what it always asks.
func TestClientLoginCache(t *testing.T) {
	// The stand-in control plane: tenant by host name or @suffix, the
	// password is "pw-<tenant>", certificate logins always pass.
	e := startClient(t, loginTTL, func(r *connectRequest) *connectReply {
		slug := map[string]string{"acme.example": "acme", "globex.example": "globex"}[r.ServerName]
		if r.ServerName == "" {
			_, slug = splitLogin(r.Username)
		}
		if r.CertIdentity != "" {
			rep := okReply(slug, "id-"+slug, "dev")
			rep.Cacheable = false
			return rep
		}
		if slug == "" || string(r.Password) != "pw-"+slug {
			return nil
		}
		rep := okReply(slug, "id-"+slug, "dev")
		rep.Cacheable = r.ClientID != "uncacheable"
		return rep
	})
	pw := func(slug string) []byte { return []byte("pw-" + slug) }
	steps := []struct {
		name   string
		info   broker.ConnectInfo
		tenant string // "" for a refusal
		checks int64
	}{
		{"first login", broker.ConnectInfo{Username: "dev@acme", Password: pw("acme")}, "acme", 1},
		{"cached login", broker.ConnectInfo{Username: "dev@acme", Password: pw("acme")}, "acme", 0},
		{"wrong password", broker.ConnectInfo{Username: "dev@acme", Password: pw("globex")}, "", 1},
		{"no password", broker.ConnectInfo{Username: "dev@acme"}, "", 1},
		{"other tenant, same user", broker.ConnectInfo{Username: "dev@globex", Password: pw("acme")}, "", 1},
		{"host name login", broker.ConnectInfo{ServerName: "acme.example", Username: "dev", Password: pw("acme")}, "acme", 1},
		{"host name login, cached", broker.ConnectInfo{ServerName: "acme.example", Username: "dev", Password: pw("acme")}, "acme", 0},
		{"other host name, same user and password", broker.ConnectInfo{ServerName: "globex.example", Username: "dev", Password: pw("acme")}, "", 1},
		{"other host name, its password", broker.ConnectInfo{ServerName: "globex.example", Username: "dev", Password: pw("globex")}, "globex", 1},
		{"first host's login still cached", broker.ConnectInfo{ServerName: "acme.example", Username: "dev", Password: pw("acme")}, "acme", 0},
		{"certificate login", broker.ConnectInfo{Username: "dev@acme", CertIdentity: "dev@acme"}, "acme", 1},
		{"certificate login again", broker.ConnectInfo{Username: "dev@acme", CertIdentity: "dev@acme"}, "acme", 1},
		{"answer not cacheable", broker.ConnectInfo{ClientID: "uncacheable", Username: "u@globex", Password: pw("globex")}, "globex", 1},
		{"answer not cacheable, again", broker.ConnectInfo{ClientID: "uncacheable", Username: "u@globex", Password: pw("globex")}, "globex", 1},
	}
	for _, s := range steps {
		p, err, checks := e.login(t, s.info)
		switch {
		case s.tenant == "" && !errors.Is(err, auth.ErrBadCredentials):
			t.Errorf("%s: err = %v, want bad credentials", s.name, err)
		case s.tenant != "" && (err != nil || p.Tenant != s.tenant):
			t.Errorf("%s: principal %+v, err %v; want tenant %s", s.name, p, err, s.tenant)
		}
		if checks != s.checks {
			t.Errorf("%s: %d checks, want %d", s.name, checks, s.checks)
		}
	}

	// A pushed change of acme drops acme's logins, not globex's.
	if err := e.ctl.Publish(SubjectChanged+"acme", []byte(`{"kind":"flush"}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.ctl.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.c.logins.len() != 1 { // globex.example/dev is left
		if time.Now().After(deadline) {
			t.Fatalf("the pushed change never reached the cache: %d entries", e.c.logins.len())
		}
		time.Sleep(time.Millisecond)
	}
	if _, err, checks := e.login(t, broker.ConnectInfo{Username: "dev@acme", Password: pw("acme")}); err != nil || checks != 1 {
		t.Errorf("after acme's change: err %v, %d checks; want the control plane asked", err, checks)
	}
	if _, err, checks := e.login(t, broker.ConnectInfo{ServerName: "globex.example", Username: "dev", Password: pw("globex")}); err != nil || checks != 0 {
		t.Errorf("globex after acme's change: err %v, %d checks; want a cached login", err, checks)
	}

	// A change made in this process reaches the Client directly
	// (Service.AttachLocal calls this).
	e.c.invalidateTenant("id-globex")
	if _, err, checks := e.login(t, broker.ConnectInfo{ServerName: "globex.example", Username: "dev", Password: pw("globex")}); err != nil || checks != 1 {
		t.Errorf("globex after its change in this process: err %v, %d checks; want the control plane asked", err, checks)
	}

	// Without NATS nothing is accepted from the cache: changes could not
	// arrive.
	e.nc.Close()
	if _, err, _ := e.login(t, broker.ConnectInfo{ServerName: "globex.example", Username: "dev", Password: pw("globex")}); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("cached login without NATS: err %v, want unavailable", err)
	}
}

// TestClientLoginCacheExpires: once its TTL is over, a cached login is
// checked by the control plane again.
func TestClientLoginCacheExpires(t *testing.T) {
	const ttl = 20 * time.Millisecond
	e := startClient(t, ttl, func(r *connectRequest) *connectReply {
		if string(r.Password) != "pw" {
			return nil
		}
		return okReply("acme", "id-acme", "dev")
	})
	info := broker.ConnectInfo{Username: "dev@acme", Password: []byte("pw")}
	if _, err, checks := e.login(t, info); err != nil || checks != 1 {
		t.Fatalf("first login: err %v, %d checks", err, checks)
	}
	time.Sleep(ttl)
	if _, err, checks := e.login(t, info); err != nil || checks != 1 {
		t.Fatalf("login after the TTL: err %v, %d checks; want the control plane asked", err, checks)
	}
}
