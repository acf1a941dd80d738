package services_test

// Regression tests of the dashboard's and HTTP API's security review
// (throttles under parallel requests, API key scopes, live watches that
// outlive their caller, suspended tenants, MQTT 5 string properties,
// retained listings, HTTP server timeouts, SSE injection), against a real
// all-in-one Server. Unit tests of the same fixes are in dashboard/.

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/tenant"
)

// parallel runs fn(i) for i in [0, n) at once and returns the statuses.
func parallel(n int, fn func(i int) int) map[int]int {
	var wg sync.WaitGroup
	codes := make([]int, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	return count
}

// TestSecurityLoginThrottleParallel: wrong passwords sent at once are
// counted before any is verified: 5 are checked, the rest refused, and the
// right password right after them is refused too.
func TestSecurityLoginThrottleParallel(t *testing.T) {
	e := startDashboard(t)
	e.newWebClient(t).signup("ann@example.com", "acme")
	const n = 60
	clients := make([]*webClient, n)
	forms := make([]url.Values, n)
	for i := range clients {
		clients[i] = e.newWebClient(t)
		forms[i] = url.Values{"csrf_token": {clients[i].formToken("/login")}, "email": {"ann@example.com"}, "password": {fmt.Sprintf("wrong password %d", i)}}
	}
	count := parallel(n, func(i int) int {
		res, _ := clients[i].postForm("/login", forms[i])
		return res.StatusCode
	})
	if count[http.StatusUnauthorized] != 5 || count[http.StatusTooManyRequests] != n-5 {
		t.Errorf("statuses %v: want 5 wrong passwords verified and %d refused", count, n-5)
	}
	if res, _ := e.newWebClient(t).login("ann@example.com", testPassword); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the right password after %d failures in the same second: %d, want 429", count[http.StatusUnauthorized], res.StatusCode)
	}
}

// TestSecuritySignupThrottleParallel: sign-ups sent at once from one
// address create at most 10 tenants (the hourly limit).
func TestSecuritySignupThrottleParallel(t *testing.T) {
	e := startDashboard(t)
	const n = 30
	clients := make([]*webClient, n)
	forms := make([]url.Values, n)
	for i := range clients {
		clients[i] = e.newWebClient(t)
		forms[i] = url.Values{"csrf_token": {clients[i].formToken("/signup")}, "email": {fmt.Sprintf("u%d@example.com", i)},
			"password": {testPassword}, "name": {"Org"}, "slug": {fmt.Sprintf("org-%d", i)}}
	}
	count := parallel(n, func(i int) int {
		res, _ := clients[i].postForm("/signup", forms[i])
		return res.StatusCode
	})
	ts, err := e.adm.ListTenants(opCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if count[http.StatusSeeOther] != 10 || len(ts) != 10 {
		t.Errorf("statuses %v, %d tenants stored: want 10 sign-ups from one address", count, len(ts))
	}
}

// TestSecuritySignupEnumeration: sign-up does not say that an email has an
// account, and probing it is throttled with the sign-ups.
func TestSecuritySignupEnumeration(t *testing.T) {
	e := startDashboard(t)
	e.newWebClient(t).signup("victim@example.com", "acme")
	w := e.newWebClient(t)
	codes := map[int]int{}
	for i := range 40 {
		res, body := w.postForm("/signup", url.Values{"csrf_token": {w.formToken("/signup")}, "email": {"victim@example.com"},
			"password": {testPassword}, "name": {"x"}, "slug": {fmt.Sprintf("probe-%d", i)}})
		codes[res.StatusCode]++
		if strings.Contains(body, "already exists") {
			t.Fatalf("the answer says the account exists: %d", res.StatusCode)
		}
	}
	if codes[http.StatusTooManyRequests] != 40-9 {
		t.Errorf("40 probes of one email from one address: %v, want all but 9 refused", codes)
	}
}

// TestSecurityAPIKeyScopes: a publish-scoped key (the default) uses the
// data plane within its app's ACL and gets 403 on every management route,
// so it cannot lift its own ACL; an admin key manages the tenant; only
// owners and admin keys make admin keys.
func TestSecurityAPIKeyScopes(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme") // a.api: an admin key
	var pk struct{ Key, Prefix, Scope string }
	a.api.do(t, http.MethodPost, "/apikeys", map[string]any{"app": "devices"}).expect(t, "create a key", http.StatusCreated, &pk)
	if pk.Scope != "publish" {
		t.Fatalf("default scope %q, want publish", pk.Scope)
	}
	pub := e.client(pk.Key)

	// Restrict the app to devices/#.
	var rules []map[string]string
	a.api.do(t, http.MethodGet, "/acl", nil).expect(t, "list rules", http.StatusOK, &rules)
	for _, r := range rules {
		a.api.do(t, http.MethodDelete, "/acl", r).expect(t, "remove rule", http.StatusNoContent, nil)
	}
	a.api.do(t, http.MethodPost, "/acl", map[string]any{"subject": "app:devices", "effect": "allow", "action": "all", "filter": "devices/#"}).
		expect(t, "allow devices/#", http.StatusCreated, nil)

	// The data plane, within the ACL.
	pub.do(t, http.MethodGet, "/tenant", nil).expect(t, "tenant", http.StatusOK, nil)
	pub.publishHTTP(t, map[string]any{"topic": "devices/1", "payload": "p"}, http.StatusAccepted)
	pub.do(t, http.MethodPost, "/publish", map[string]any{"topic": "billing/x", "payload": "p"}).expectError(t, "outside the ACL", http.StatusForbidden, "forbidden")
	pub.do(t, http.MethodPut, "/retained/message?topic=devices/cfg", map[string]any{"payload": "p"}).expect(t, "set retained", http.StatusOK, nil)
	pub.do(t, http.MethodGet, "/retained?filter=devices/%23", nil).expect(t, "list retained", http.StatusOK, nil)
	for _, p := range []string{"/clients", "/sessions", "/topics", "/metrics"} {
		pub.do(t, http.MethodGet, p, nil).expect(t, p, http.StatusOK, nil)
	}

	// Management: 403 for the publish key, whatever the route.
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/apps", nil},
		{http.MethodPost, "/apps", map[string]any{"name": "more"}},
		{http.MethodGet, "/credentials", nil},
		{http.MethodPost, "/credentials", map[string]any{"app": "devices"}},
		{http.MethodPost, "/credentials/" + a.cred.Username + "/rotate", nil},
		{http.MethodDelete, "/credentials/" + a.cred.Username, nil},
		{http.MethodGet, "/apikeys", nil},
		{http.MethodPost, "/apikeys", map[string]any{"app": "devices"}},
		{http.MethodPost, "/apikeys", map[string]any{"app": "devices", "scope": "admin"}},
		{http.MethodDelete, "/apikeys/" + pk.Prefix, nil},
		{http.MethodGet, "/acl", nil},
		{http.MethodPost, "/acl", map[string]any{"subject": "app:devices", "effect": "allow", "action": "all", "filter": "#"}},
		{http.MethodDelete, "/acl", map[string]any{"subject": "app:devices", "effect": "allow", "action": "all", "filter": "devices/#"}},
		{http.MethodDelete, "/clients/somebody", nil},
	} {
		pub.do(t, r.method, r.path, r.body).expectError(t, "publish key: "+r.method+" "+r.path, http.StatusForbidden, "forbidden")
	}
	time.Sleep(2500 * time.Millisecond) // past the rules cache: nothing changed it
	pub.do(t, http.MethodPost, "/publish", map[string]any{"topic": "billing/x", "payload": "p"}).expectError(t, "still outside the ACL", http.StatusForbidden, "forbidden")

	// An admin key makes admin keys, and they manage.
	var ak struct{ Key, Scope string }
	a.api.do(t, http.MethodPost, "/apikeys", map[string]any{"app": "devices", "scope": "admin"}).expect(t, "admin key", http.StatusCreated, &ak)
	if ak.Scope != "admin" {
		t.Fatalf("scope %q", ak.Scope)
	}
	e.client(ak.Key).do(t, http.MethodGet, "/apps", nil).expect(t, "admin key lists apps", http.StatusOK, nil)
	a.api.do(t, http.MethodPost, "/apikeys", map[string]any{"app": "devices", "scope": "root"}).expectError(t, "unknown scope", http.StatusBadRequest, "invalid")
	var keys []struct{ Prefix, Scope string }
	a.api.do(t, http.MethodGet, "/apikeys", nil).expect(t, "list keys", http.StatusOK, &keys)
	for _, k := range keys {
		if k.Prefix == pk.Prefix && k.Scope != "publish" {
			t.Errorf("listed %+v", k)
		}
	}
}

// TestSecuritySessionCreatesAdminKey: a tenant's owner (a dashboard
// session) creates admin keys from the page's API.
func TestSecuritySessionCreatesAdminKey(t *testing.T) {
	e := startDashboard(t)
	w := e.newWebClient(t)
	w.signup("ann@example.com", "acme")
	tok := w.sessionToken()
	if code, body := w.api(http.MethodPost, "/apps", map[string]any{"name": "devices"}, tok); code != http.StatusCreated {
		t.Fatalf("create app: %d %s", code, body)
	}
	code, body := w.api(http.MethodPost, "/apikeys", map[string]any{"app": "devices", "scope": "admin"}, tok)
	if code != http.StatusCreated || !strings.Contains(body, `"scope":"admin"`) {
		t.Fatalf("owner creates an admin key: %d %s", code, body)
	}
}

// startDashboardWith is startDashboard with more server options.
func startDashboardWith(t testing.TB, opts ...serverOption) *dashEnv {
	t.Helper()
	e := startTenancy(t, append([]serverOption{withDashboardHTTP()}, opts...)...)
	return &dashEnv{tenancyEnv: e, base: "http://" + e.srv.HTTPAddr().String()}
}

// withWatchRecheck makes live watches check their caller every d.
func withWatchRecheck(d time.Duration) serverOption {
	return func(c *services.ServeConfig) { c.API.WatchRecheck = d }
}

// expectEnd waits for the stream's "end" event with a reason containing
// want, then for the stream to close.
func (s *sse) expectEnd(t testing.TB, want string) {
	t.Helper()
	ev := s.next(t, "end")
	if !strings.Contains(ev.data, want) {
		t.Errorf("end event %s, want a reason with %q", ev.data, want)
	}
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("the stream did not close after its end event")
		}
	}
}

// sessionWatch opens GET /api/v1/watch with a dashboard session's cookie.
func (w *webClient) watch(t testing.TB, filter string) *sse {
	t.Helper()
	u, _ := url.Parse(w.base)
	var cookies []string
	for _, c := range w.c.Jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	c := &apiClient{base: w.base + "/api/v1", hc: httpClient, extra: http.Header{"Cookie": {strings.Join(cookies, "; ")}}}
	return c.watch(t, filter, http.StatusOK)
}

// TestSecurityWatchEnds: a live watch ends (with an "end" event saying
// why) when its API key is revoked, its tenant suspended, or its session
// signed out or expired — through the API at once, elsewhere within the
// recheck interval.
func TestSecurityWatchEnds(t *testing.T) {
	t.Run("key revoked through the API", func(t *testing.T) {
		e := startAPI(t)
		a := e.newAPITenant(t, "acme")
		var k struct{ Key, Prefix string }
		a.api.do(t, http.MethodPost, "/apikeys", map[string]any{"app": "devices"}).expect(t, "create key", http.StatusCreated, &k)
		w := e.client(k.Key).watch(t, "#", http.StatusOK)
		a.api.do(t, http.MethodDelete, "/apikeys/"+k.Prefix, nil).expect(t, "revoke", http.StatusNoContent, nil)
		w.expectEnd(t, "revoked")
	})
	t.Run("key revoked elsewhere", func(t *testing.T) {
		e := startAPI(t, withWatchRecheck(300*time.Millisecond))
		a := e.newAPITenant(t, "acme")
		w := a.api.watch(t, "#", http.StatusOK)
		prefix, _, _ := strings.Cut(a.key, ".")
		if err := e.adm.RevokeAPIKey(opCtx(t), actor, "acme", prefix); err != nil {
			t.Fatal(err)
		}
		w.expectEnd(t, "revoked")
	})
	t.Run("tenant suspended", func(t *testing.T) {
		e := startAPI(t, withWatchRecheck(300*time.Millisecond))
		a := e.newAPITenant(t, "acme")
		w := a.api.watch(t, "#", http.StatusOK)
		if _, err := e.adm.SetStatus(opCtx(t), actor, "acme", tenant.Suspended); err != nil {
			t.Fatal(err)
		}
		w.expectEnd(t, "suspended")
	})
	t.Run("ACL no longer allows the filter", func(t *testing.T) {
		// The change is made through the API, which also nudges the
		// watch at once; the short recheck keeps a loaded machine from
		// making the 5 s default the deadline.
		e := startAPI(t, withWatchRecheck(300*time.Millisecond))
		a := e.newAPITenant(t, "acme")
		w := a.api.watch(t, "#", http.StatusOK)
		var rules []map[string]string
		a.api.do(t, http.MethodGet, "/acl", nil).expect(t, "list rules", http.StatusOK, &rules)
		for _, r := range rules {
			a.api.do(t, http.MethodDelete, "/acl", r).expect(t, "remove rule", http.StatusNoContent, nil)
		}
		w.expectEnd(t, "ACL")
	})
	t.Run("session signed out", func(t *testing.T) {
		e := startDashboard(t)
		c := e.newWebClient(t)
		c.signup("ann@example.com", "acme")
		w := c.watch(t, "#")
		c.postForm("/logout", url.Values{"csrf_token": {c.sessionToken()}})
		w.expectEnd(t, "session")
	})
	t.Run("session signed out elsewhere", func(t *testing.T) {
		e := startDashboardWith(t, withWatchRecheck(300*time.Millisecond))
		c := e.newWebClient(t)
		c.signup("ann@example.com", "acme")
		w := c.watch(t, "#")
		e.setSessionTimes(t, time.Now().Add(-13*time.Hour), time.Now().Add(time.Hour)) // idle too long
		w.expectEnd(t, "session")
	})
	t.Run("session's tenant suspended", func(t *testing.T) {
		e := startDashboardWith(t, withWatchRecheck(300*time.Millisecond))
		c := e.newWebClient(t)
		c.signup("ann@example.com", "acme")
		w := c.watch(t, "#")
		if _, err := e.adm.SetStatus(opCtx(t), actor, "acme", tenant.Suspended); err != nil {
			t.Fatal(err)
		}
		w.expectEnd(t, "suspended")
	})
}

// TestSecurityWatchStalledClose: a watcher that stops reading does not
// hold its handler, or Server.Close, for ever.
func TestSecurityWatchStalledClose(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	host := strings.TrimPrefix(strings.TrimSuffix(e.base, "/api/v1"), "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /api/v1/watch?filter=%%23 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", a.key)
	time.Sleep(300 * time.Millisecond)
	big := strings.Repeat("b", 200<<10)
	for range 60 {
		a.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "t", "payload": big})
	}
	time.Sleep(time.Second)
	done := make(chan struct{})
	start := time.Now()
	go func() { e.srv.Close(); close(done) }()
	select {
	case <-done:
		t.Logf("Close returned in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		c.Close()
		<-done
		t.Fatalf("Server.Close blocked for 15 s by one watcher that stopped reading")
	}
}

// TestSecurityWatchFilterInjection: a filter with a line break cannot
// inject events into the stream: it is refused, and the filter is never
// written raw.
func TestSecurityWatchFilterInjection(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	for _, f := range []string{"x\nevent: message\ndata: {\"topic\":\"forged\"}\n\ny", "a\rb", "a\u0085b"} {
		a.api.watch(t, f, http.StatusBadRequest)
	}
	w := a.api.watch(t, "odd \"name\"/#", http.StatusOK)
	if ev := w.next(t, "comment"); ev.data != `: watching "odd \"name\"/#"` {
		t.Errorf("first line %q", ev.data)
	}
}

// TestSecuritySlowRequests: a request whose body never arrives is cut off
// after the read timeout, and a form body over the limit is 413 (both
// before any authentication).
func TestSecuritySlowRequests(t *testing.T) {
	e := startDashboardWith(t, func(c *services.ServeConfig) { c.API.ReadTimeout = time.Second })
	host := strings.TrimPrefix(e.base, "http://")
	var conns []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nemail=")
	}
	time.Sleep(2500 * time.Millisecond)
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var b [512]byte
		for {
			_, err := c.Read(b[:])
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
			if err != nil {
				break
			}
		}
	}
	if open > 0 {
		t.Errorf("%d of 20 stalled form posts still open after the read timeout", open)
	}
	// A live watch outlives the read timeout.
	w := e.newWebClient(t)
	w.signup("ann@example.com", "acme")
	s := w.watch(t, "#")
	time.Sleep(2 * time.Second)
	e.newApp(t, "acme", "devices")
	cl := connect(t, e.addr, "pub", withCred(e.newCred(t, "acme", "devices", "")))
	publish(t, cl, "after/timeout", 0, false, "x")
	if ev := s.next(t, "message"); !strings.Contains(ev.data, "after/timeout") {
		t.Errorf("watch after the read timeout: %s", ev.data)
	}
	// A big form body: 413, not parsed.
	big := url.Values{"csrf_token": {"x"}, "email": {strings.Repeat("a", 1<<20)}}
	if res, _ := e.newWebClient(t).postForm("/login", big); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB form: %d, want 413", res.StatusCode)
	}
}

// TestSecuritySuspendedSession: a suspended tenant's owner may look (GET)
// but changes nothing: publishing, managing and watching are 403.
func TestSecuritySuspendedSession(t *testing.T) {
	e := startDashboard(t)
	w := e.newWebClient(t)
	w.signup("ann@example.com", "acme")
	tok := w.sessionToken()
	if _, err := e.adm.SetStatus(opCtx(t), actor, "acme", tenant.Suspended); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/publish", map[string]any{"topic": "x", "payload": "p", "qos": 1, "retain": true}},
		{http.MethodPost, "/publish/batch", []map[string]any{{"topic": "x", "payload": "p"}}},
		{http.MethodPut, "/retained/message?topic=x", map[string]any{"payload": "p"}},
		{http.MethodDelete, "/retained/message?topic=x", nil},
		{http.MethodPost, "/apps", map[string]any{"name": "more"}},
		{http.MethodPost, "/apikeys", map[string]any{"app": "more"}},
		{http.MethodPost, "/acl", map[string]any{"subject": "app:more", "effect": "allow", "action": "all", "filter": "#"}},
		{http.MethodDelete, "/clients/x", nil},
	} {
		if code, body := w.api(r.method, r.path, r.body, tok); code != http.StatusForbidden || !strings.Contains(body, "suspended") {
			t.Errorf("%s %s: %d %s, want 403", r.method, r.path, code, body)
		}
	}
	for _, p := range []string{"/tenant", "/apps", "/acl", "/apikeys", "/retained"} {
		if code, body := w.api(http.MethodGet, p, nil, ""); code != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200 (read-only)", p, code, body)
		}
	}
	if code, _ := w.api(http.MethodGet, "/watch?filter=%23", nil, ""); code != http.StatusForbidden {
		t.Errorf("watch: %d, want 403", code)
	}
	if res, body := w.get("/overview"); res.StatusCode != http.StatusOK || !strings.Contains(body, "This tenant is suspended") {
		t.Errorf("overview: %d, no suspension banner", res.StatusCode)
	}
}

// TestSecurityPublishProperties: an HTTP publish cannot carry U+0000 or a
// wildcard response topic to MQTT 5 subscribers (they would have to treat
// the PUBLISH as malformed): 400 naming the field, nothing delivered.
func TestSecurityPublishProperties(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	sub := rawLoginV5(t, e.addr, "v5-sub", a.cred)
	sub.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "nul/#", QoS: 1})
	for _, tc := range []struct {
		props map[string]any
		field string
	}{
		{map[string]any{"content_type": "text\u0000plain"}, "properties.content_type"},
		{map[string]any{"user_properties": map[string]string{"k\u0000": "v"}}, "properties.user_properties"},
		{map[string]any{"user_properties": map[string]string{"k": "v\u0000"}}, "properties.user_properties.k"},
		{map[string]any{"response_topic": "reply/\u0000"}, "properties.response_topic"},
		{map[string]any{"response_topic": "reply/#"}, "properties.response_topic"},
	} {
		r := a.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "nul/x", "payload": "p", "qos": 1, "properties": tc.props})
		r.expectError(t, fmt.Sprintf("publish with %v", tc.props), http.StatusBadRequest, "invalid")
		if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
			t.Errorf("%v: %s, want field %s", tc.props, r.body, tc.field)
		}
	}
	// A good one arrives, and decodes.
	a.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "nul/x", "payload": "p", "qos": 1,
		"properties": map[string]any{"content_type": "text/plain", "user_properties": map[string]string{"k": "v"}}}).expect(t, "publish", http.StatusOK, nil)
	fh, body := sub.expect(packet.PUBLISH)
	var p packet.Publish
	if err := p.Decode(packet.V5, fh, body); err != nil || p.Properties.ContentType != "text/plain" {
		t.Errorf("the subscriber got %+v, %v", p.Properties, err)
	}
}

// TestSecurityBatchOverBurst: a batch larger than the tenant's burst can
// never pass: 400, not an endless 429.
func TestSecurityBatchOverBurst(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	if _, err := e.adm.SetLimits(opCtx(t), actor, "acme", tenant.Limits{MaxMessageRate: 10}); err != nil { // burst 20
		t.Fatal(err)
	}
	batch := make([]map[string]any, 30)
	for i := range batch {
		batch[i] = map[string]any{"topic": "t", "payload": "p"}
	}
	a.api.do(t, http.MethodPost, "/publish/batch", batch).expectError(t, "batch over the burst", http.StatusBadRequest, "invalid")
	a.api.do(t, http.MethodPost, "/publish/batch", batch[:20]).expect(t, "batch of the burst", http.StatusOK, nil)
}

// TestSecurityRetainedListSize: a listing of large retained messages holds
// summaries (size, a preview of at most 256 bytes), not their payloads;
// each payload comes whole from GET /retained/message.
func TestSecurityRetainedListSize(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	big := strings.Repeat("é", (1<<20-100)/2) // 2-byte runes: the preview cuts at a boundary
	const n = 20
	for i := range n {
		a.api.do(t, http.MethodPut, fmt.Sprintf("/retained/message?topic=big/%d", i), map[string]any{"payload": big}).
			expect(t, "put", http.StatusOK, nil)
	}
	var list []struct {
		Topic       string
		PayloadSize int     `json:"payload_size"`
		Preview     string  `json:"preview"`
		PreviewText *string `json:"preview_text"`
	}
	r := a.api.do(t, http.MethodGet, "/retained?limit=500&filter=%23", nil).expect(t, "list", http.StatusOK, &list)
	if len(list) != n || len(r.body) > n*2048 {
		t.Fatalf("%d messages of 1 MiB: listing of %d bytes, want %d summaries", len(list), len(r.body), n)
	}
	for _, m := range list {
		if m.PayloadSize != len(big) || m.PreviewText == nil || len(*m.PreviewText) > 256 || !strings.HasPrefix(big, *m.PreviewText) {
			t.Fatalf("summary %+v", m)
		}
	}
	var one struct {
		PayloadText string `json:"payload_text"`
	}
	a.api.do(t, http.MethodGet, "/retained/message?topic=big/3", nil).expect(t, "get one", http.StatusOK, &one)
	if one.PayloadText != big {
		t.Fatalf("GET /retained/message: %d bytes", len(one.PayloadText))
	}
}

// TestSecurityDotClientIDs: clients whose IDs are "." and ".." (path
// segments a browser never sends as they are) are found and kicked through
// the query forms of /clients, as the page does.
func TestSecurityDotClientIDs(t *testing.T) {
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	for _, id := range []string{".", ".."} {
		lost := make(chan error, 1)
		connect(t, e.addr, id, withCred(a.cred), onLost(lost))
		var cs []struct {
			ClientID string `json:"client_id"`
		}
		waitUntil(t, "GET /clients?clientid="+id+" finds it", func() bool { // the edges report it within moments
			a.api.do(t, http.MethodGet, "/clients?clientid="+url.QueryEscape(id), nil).expect(t, "get "+id, http.StatusOK, &cs)
			return len(cs) == 1 && cs[0].ClientID == id
		})
		a.api.do(t, http.MethodDelete, "/clients?clientid="+url.QueryEscape(id), nil).expect(t, "kick "+id, http.StatusNoContent, nil)
		waitLost(t, lost, "kicked client "+id, waitTimeout)
	}
	var none []any
	a.api.do(t, http.MethodGet, "/clients?clientid=nobody", nil).expect(t, "unknown", http.StatusOK, &none)
	if len(none) != 0 {
		t.Fatalf("unknown client: %v", none)
	}
	a.api.do(t, http.MethodDelete, "/clients?clientid=nobody", nil).expectError(t, "kick unknown", http.StatusNotFound, "not_found")
	a.api.do(t, http.MethodDelete, "/clients", nil).expectError(t, "kick without an ID", http.StatusBadRequest, "invalid")
}
