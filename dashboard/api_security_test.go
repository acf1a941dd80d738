package dashboard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Unit tests of the security review's fixes in the API: key scopes,
// suspended tenants, watch filters. End-to-end tests are in
// services/dashboard_security_test.go.

// scopeTenancy verifies two keys of tenant acme: "rk_pub.s" (publish) and
// "rk_adm.s" (admin). Other operations panic (answered 500 by Recover).
type scopeTenancy struct {
	apiFakeTenancy
}

func (f *scopeTenancy) VerifyAPIKey(_ context.Context, key string) (*tenant.Tenant, *tenant.App, *tenant.APIKey, error) {
	t := f.tenants["acme"]
	app := &tenant.App{ID: "a1", TenantID: t.ID, Name: "devices"}
	switch key {
	case "rk_pub.s":
		return t, app, &tenant.APIKey{Prefix: "rk_pub", Scope: tenant.ScopePublish}, nil
	case "rk_adm.s":
		return t, app, &tenant.APIKey{Prefix: "rk_adm", Scope: tenant.ScopeAdmin}, nil
	}
	return nil, nil, nil, auth.ErrBadCredentials
}

// TestAPIScopes: a publish-scoped key gets 403 on exactly the management
// routes (apps, credentials, API keys, ACL, kicking clients), an admin key
// on none of them.
func TestAPIScopes(t *testing.T) {
	tn := &scopeTenancy{apiFakeTenancy{tenants: map[string]*tenant.Tenant{
		"acme": {ID: "t1", Slug: "acme", Status: tenant.Active},
	}}}
	s, err := New(Config{Tenancy: tn, API: APIDeps{Backbone: apiFakeBackbone{}, Cluster: &apiFakeCluster{}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	manage := regexp.MustCompile(`^(GET|POST|DELETE) /api/v1/(apps|credentials|apikeys|acl)(/|$)|^DELETE /api/v1/clients(/|$)`)
	param := regexp.MustCompile(`:[a-z]+`)
	n := 0
	for _, r := range s.echo.Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || strings.HasSuffix(r.Path, "*") || strings.HasPrefix(r.Path, "/api/v1/admin/") ||
			r.Path == "/api/v1/openapi.yaml" || r.Path == "/api/v1/watch" {
			continue
		}
		route := r.Method + " " + r.Path
		target := param.ReplaceAllString(r.Path, "x")
		for _, key := range []string{"rk_pub.s", "rk_adm.s"} {
			req := httptest.NewRequest(r.Method, target, strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer "+key)
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			denied := rec.Code == http.StatusForbidden && strings.Contains(rec.Body.String(), "publish scope")
			want := key == "rk_pub.s" && manage.MatchString(route)
			if denied != want {
				t.Errorf("%s with %s: %d %s; want denied %v", route, key, rec.Code, rec.Body, want)
			}
			if want {
				n++
			}
		}
	}
	if n != 14 {
		t.Errorf("%d management routes, want 14", n)
	}
}

// TestWatchFilterRefused: a watched filter with control characters (a
// line break would inject events) is 400 before anything else.
func TestWatchFilterRefused(t *testing.T) {
	s := newAPITestServer(t)
	owner := &Caller{Actor: "owner@example.com", Tenant: "acme", TenantID: "t1", Session: true}
	for _, f := range []string{"a\nb", "a\rb", "x\x00", "a\u0085b"} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/watch?filter="+url.QueryEscape(f), nil)
		rec := httptest.NewRecorder()
		c := s.echo.NewContext(req, rec)
		setCaller(c, owner)
		if err := s.watchTopic(c); err != nil {
			s.handleError(err, c)
		}
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"field":"filter"`) {
			t.Errorf("filter %q: %d %s", f, rec.Code, rec.Body)
		}
	}
}

// TestSuspendedOwnerReadOnly: a suspended tenant's owner reads but every
// unsafe request is 403, whatever the route.
func TestSuspendedOwnerReadOnly(t *testing.T) {
	e := newWebEnv(t)
	c := e.signup(t, "ann@example.com", "acme")
	e.store.mu.Lock()
	for _, tn := range e.store.tenants {
		tn.Status = tenant.Suspended
	}
	e.store.mu.Unlock()
	_, body := get(t, c, e.ts.URL+"/overview")
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, "This tenant is suspended") {
		t.Fatalf("overview without a suspension banner or token")
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/publish"},
		{http.MethodPut, "/api/v1/retained/message?topic=x"},
		{http.MethodPost, "/api/v1/apps"},
		{http.MethodDelete, "/api/v1/acl"},
	} {
		req, _ := http.NewRequest(r.method, e.ts.URL+r.path, strings.NewReader(`{"topic":"x","payload":"p","name":"x"}`))
		req.Header.Set(csrfHeader, m[1])
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "suspended") {
			t.Errorf("%s %s: %d %s", r.method, r.path, res.StatusCode, b)
		}
	}
	res, b := get(t, c, e.ts.URL+"/api/v1/tenant")
	if res.StatusCode != http.StatusOK || !strings.Contains(b, `"status":"suspended"`) {
		t.Errorf("GET /tenant: %d %s", res.StatusCode, b)
	}
}

// TestPublishProps: MQTT 5 string properties must be valid MQTT strings
// (UTF-8 without U+0000, at most 65535 bytes) and the response topic a
// topic name, or the HTTP publish is 400 naming the field; the size of the
// properties counts towards the packet size.
func TestPublishProps(t *testing.T) {
	pfi := func(v int) *int { return &v }
	for _, tc := range []struct {
		name  string
		p     publishProperties
		field string
	}{
		{"fine", publishProperties{ContentType: "text/plain", ResponseTopic: "r/1", UserProperties: map[string]string{"k": "v"}}, ""},
		{"NUL in content type", publishProperties{ContentType: "text\x00plain"}, "properties.content_type"},
		{"invalid UTF-8 in content type", publishProperties{ContentType: "a\xffb"}, "properties.content_type"},
		{"long content type", publishProperties{ContentType: strings.Repeat("a", 65536)}, "properties.content_type"},
		{"NUL in a user property key", publishProperties{UserProperties: map[string]string{"k\x00": "v"}}, "properties.user_properties"},
		{"NUL in a user property value", publishProperties{UserProperties: map[string]string{"k": "\x00"}}, "properties.user_properties.k"},
		{"NUL in the response topic", publishProperties{ResponseTopic: "a\x00"}, "properties.response_topic"},
		{"wildcard in the response topic", publishProperties{ResponseTopic: "a/+"}, "properties.response_topic"},
		{"long correlation data", publishProperties{CorrelationData: strings.Repeat("a", 65536)}, "properties.correlation_data"},
		{"payload format", publishProperties{PayloadFormatIndicator: pfi(2)}, "properties.payload_format_indicator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := publishProps(&tc.p, []byte("x"))
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("error %v, want one for %s", err, tc.field)
			case tc.field != "":
				if st, _ := statusOf(err); st != http.StatusBadRequest {
					t.Fatalf("status %d", st)
				}
			}
		})
	}
	// Size: the properties count.
	a := &apiState{deps: APIDeps{MaxPacketSize: 100}}
	mc := &messageCtx{k: &Caller{Tenant: "acme"}, rs: auth.AllowAll()}
	payload := strings.Repeat("p", 50)
	if _, err := a.message(mc, &publishRequest{Topic: "t", Payload: &payload}, ""); err != nil {
		t.Fatalf("small message: %v", err)
	}
	req := &publishRequest{Topic: "t", Payload: &payload, Properties: &publishProperties{UserProperties: map[string]string{"k": strings.Repeat("v", 60)}}}
	if _, err := a.message(mc, req, ""); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("properties over the packet size: %v", err)
	}
}

// rulesTenancy returns rules for API keys, running during (if set) while
// it "reads the database".
type rulesTenancy struct {
	Tenancy
	rules  []auth.Rule
	during func()
}

func (f *rulesTenancy) APIKeyRules(context.Context, string, string, string) ([]auth.Rule, error) {
	r := f.rules
	if f.during != nil {
		f.during()
	}
	return r, nil
}

// TestCacheEpochs: a change made through the API while a key's rules or
// the key itself are being loaded is not undone by storing the stale
// result in the cache.
func TestCacheEpochs(t *testing.T) {
	a := &apiState{deps: APIDeps{RulesTTL: time.Hour}}
	a.rules.m = map[string]map[string]ruleEntry{}
	a.keys.m = map[[32]byte]keyEntry{}
	k := &Caller{Tenant: "acme", TenantID: "t1"}
	ki := &keyInfo{prefix: "rk_1", app: "devices"}
	allowAll := auth.Rule{Effect: auth.Allow, Action: auth.PubSub, Filter: "#"}
	tn := &rulesTenancy{rules: []auth.Rule{allowAll}}
	tn.during = func() { a.rules.forget("acme") } // the ACL changes mid-load
	rs, err := a.rulesFor(context.Background(), tn, k, ki)
	if err != nil || !rs.CanPublish([]byte("x")) {
		t.Fatalf("rules: %v", err)
	}
	tn.rules, tn.during = nil, nil // the change: nothing allowed
	if rs, _ := a.rulesFor(context.Background(), tn, k, ki); rs.CanPublish([]byte("x")) {
		t.Fatal("rules loaded before the change were cached after it")
	}
	if rs, _ := a.rulesFor(context.Background(), &rulesTenancy{rules: []auth.Rule{allowAll}}, k, ki); rs.CanPublish([]byte("x")) {
		t.Fatal("rules loaded after the change were not cached")
	}

	epoch := a.keys.currentEpoch()
	a.keys.forget("t1", "rk_1") // revoked while it was being verified
	a.keys.put("rk_1.s", keyEntry{caller: *k, prefix: "rk_1", at: time.Now()}, epoch)
	if _, ok := a.keys.get("rk_1.s", time.Now(), time.Hour); ok {
		t.Fatal("a key verified before its revocation was cached after it")
	}
	a.keys.put("rk_1.s", keyEntry{caller: *k, prefix: "rk_1", at: time.Now()}, a.keys.currentEpoch())
	if _, ok := a.keys.get("rk_1.s", time.Now(), time.Hour); !ok {
		t.Fatal("a key verified now was not cached")
	}
}

// TestHSTS: Strict-Transport-Security over TLS only, never for the
// tenants' subdomains.
func TestHSTS(t *testing.T) {
	s := newAPITestServer(t)
	for _, tls := range []bool{false, true} {
		ts := httptest.NewUnstartedServer(s.Handler())
		if tls {
			ts.StartTLS()
		} else {
			ts.Start()
		}
		res, err := ts.Client().Get(ts.URL + "/healthz")
		ts.Close()
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		h := res.Header.Get("Strict-Transport-Security")
		if tls && (!strings.Contains(h, "max-age=31536000") || strings.Contains(h, "includeSubDomains")) || !tls && h != "" {
			t.Errorf("TLS %v: Strict-Transport-Security %q", tls, h)
		}
	}
}
