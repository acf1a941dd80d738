package services_test

// HTTP-level tests of the dashboard's users and sessions against a real
// all-in-one Server (no browser): sign-up, session cookie flags, sign-out,
// expiry, CSRF on forms and on the API with a session, operators, and
// pages and API calls across tenants. The browser tests
// (dashboard_browser_test.go) share the helpers here.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/tenant/gormstore"
)

// ---------------------------------------------------------------------------
// Helpers

// dashEnv is a running Server (anonymous clients refused) with the
// dashboard on a random local port.
type dashEnv struct {
	*tenancyEnv
	base string // http://127.0.0.1:<port>
}

// withDashboardHTTP serves the dashboard and API on a random local port,
// with usage sampled every 200 ms (so that the charts have data).
func withDashboardHTTP() serverOption {
	return func(c *services.ServeConfig) {
		c.HTTPAddr = "127.0.0.1:0"
		c.API.UsageInterval = 200 * time.Millisecond
	}
}

func startDashboard(t testing.TB) *dashEnv {
	t.Helper()
	e := startTenancy(t, withDashboardHTTP())
	a := e.srv.HTTPAddr()
	if a == nil {
		t.Fatal("server has no HTTP listener")
	}
	return &dashEnv{tenancyEnv: e, base: "http://" + a.String()}
}

// webClient is a browser without JavaScript: a cookie jar, no redirects
// followed.
type webClient struct {
	t    testing.TB
	c    *http.Client
	base string
}

func (e *dashEnv) newWebClient(t testing.TB) *webClient {
	jar, _ := cookiejar.New(nil)
	return &webClient{t: t, base: e.base, c: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (w *webClient) do(req *http.Request) (*http.Response, string) {
	w.t.Helper()
	res, err := w.c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (w *webClient) get(path string) (*http.Response, string) {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.base+path, nil)
	req.Header.Set("Accept", "text/html")
	return w.do(req)
}

func (w *webClient) postForm(path string, v url.Values) (*http.Response, string) {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return w.do(req)
}

// api calls the JSON API with the session cookie and, if csrf is not
// empty, the X-CSRF-Token header.
func (w *webClient) api(method, path string, body any, csrf string) (int, string) {
	w.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, w.base+"/api/v1"+path, r)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	res, s := w.do(req)
	return res.StatusCode, s
}

func (w *webClient) cookie(name string) *http.Cookie {
	u, _ := url.Parse(w.base)
	for _, c := range w.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var (
	formTokenRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	metaTokenRE = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)
)

// formToken loads a form page and returns its CSRF token.
func (w *webClient) formToken(path string) string {
	w.t.Helper()
	res, body := w.get(path)
	m := formTokenRE.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		w.t.Fatalf("GET %s: %d, no form token", path, res.StatusCode)
	}
	return m[1]
}

// sessionToken returns the signed-in session's CSRF token, from a page.
func (w *webClient) sessionToken() string {
	w.t.Helper()
	res, body := w.get("/overview")
	m := metaTokenRE.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil || m[1] == "" {
		w.t.Fatalf("GET /overview: %d, no CSRF meta tag", res.StatusCode)
	}
	return m[1]
}

const testPassword = "correct horse battery staple"

// signup signs up through the form (tenant slug, owner email) and returns
// the response.
func (w *webClient) signup(email, slug string) *http.Response {
	w.t.Helper()
	res, body := w.postForm("/signup", url.Values{
		"csrf_token": {w.formToken("/signup")}, "email": {email}, "password": {testPassword},
		"name": {"Org " + slug}, "slug": {slug},
	})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/overview?welcome=1" {
		w.t.Fatalf("sign-up %s: %d → %q\n%s", slug, res.StatusCode, res.Header.Get("Location"), body)
	}
	return res
}

// login signs in through the form.
func (w *webClient) login(email, password string) (*http.Response, string) {
	w.t.Helper()
	return w.postForm("/login", url.Values{"csrf_token": {w.formToken("/login")}, "email": {email}, "password": {password}})
}

// setSessionTimes rewrites every stored session's last use and end, as
// time passing would.
func (e *dashEnv) setSessionTimes(t testing.TB, lastSeen, expires time.Time) {
	t.Helper()
	st, err := gormstore.Open(opCtx(t), e.dbPath(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res := st.DB().WithContext(opCtx(t)).Exec("UPDATE web_sessions SET last_seen = ?, expires_at = ?", lastSeen.UTC(), expires.UTC())
	if res.Error != nil || res.RowsAffected == 0 {
		t.Fatalf("updating sessions: %v (%d rows)", res.Error, res.RowsAffected)
	}
}

func setCookieOf(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Tests

// TestDashboardSession: sign-up signs in with a well-flagged cookie; the
// pages and the API know the tenant; sign-out ends the session.
func TestDashboardSession(t *testing.T) {
	e := startDashboard(t)
	w := e.newWebClient(t)
	res := w.signup("Ann@Example.com", "acme")
	ck := setCookieOf(res, "relay_session")
	if ck == nil {
		t.Fatalf("no session cookie: %v", res.Header["Set-Cookie"])
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
		t.Errorf("session cookie %q: want HttpOnly; SameSite=Lax; Path=/; not Secure on plain HTTP", res.Header["Set-Cookie"])
	}
	if d := time.Until(ck.Expires); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
		t.Errorf("session cookie expires in %v, want 7 days (the absolute limit)", d)
	}
	res, body := w.get("/overview")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "acme.relay.localhost") || !strings.Contains(body, "ann@example.com") {
		t.Fatalf("GET /overview: %d; want the tenant host name and the user", res.StatusCode)
	}
	if !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("CSP %q", res.Header.Get("Content-Security-Policy"))
	}
	if code, body := w.api(http.MethodGet, "/tenant", nil, ""); code != http.StatusOK || !strings.Contains(body, `"slug":"acme"`) {
		t.Errorf("GET /api/v1/tenant with the session: %d %s", code, body)
	}
	// The tenant exists for MQTT too, with the sign-up as its audit actor.
	if _, err := e.adm.Tenant(opCtx(t), "acme"); err != nil {
		t.Fatalf("tenant acme: %v", err)
	}

	token := w.sessionToken()
	res, _ = w.postForm("/logout", url.Values{"csrf_token": {token}})
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Fatalf("sign-out: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if c := setCookieOf(res, "relay_session"); c == nil || c.MaxAge >= 0 {
		t.Errorf("sign-out did not clear the cookie: %v", res.Header["Set-Cookie"])
	}
	if res, _ := w.get("/overview"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login?next=%2Foverview") {
		t.Errorf("after sign-out GET /overview: %d %s, want a redirect to sign-in", res.StatusCode, res.Header.Get("Location"))
	}
	if code, _ := w.api(http.MethodGet, "/tenant", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("after sign-out GET /api/v1/tenant: %d, want 401", code)
	}

	// Signing in again works, with a new session token.
	res, body = w.login("ann@example.com", testPassword)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/overview" {
		t.Fatalf("sign-in: %d %s\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	if c := setCookieOf(res, "relay_session"); c == nil || c.Value == ck.Value {
		t.Error("sign-in reused the old session token")
	}
	// Over HTTPS (a TLS-terminating proxy says so), cookies are Secure.
	req, _ := http.NewRequest(http.MethodGet, e.base+"/login", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	res, _ = e.newWebClient(t).do(req)
	if c := setCookieOf(res, "relay_csrf"); c == nil || !c.Secure || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("form cookie over HTTPS: %v, want Secure; SameSite=Strict", res.Header["Set-Cookie"])
	}
}

// TestDashboardCSRF: forms and API calls authenticated by the session
// cookie are refused without the right token.
func TestDashboardCSRF(t *testing.T) {
	e := startDashboard(t)

	// Pre-session forms: the token must match the relay_csrf cookie.
	for _, path := range []string{"/signup", "/login"} {
		w := e.newWebClient(t)
		form := url.Values{"email": {"bob@example.com"}, "password": {testPassword}, "name": {"Bob"}, "slug": {"bob"}}
		if res, _ := w.postForm(path, form); res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without token: %d, want 403", path, res.StatusCode)
		}
		tok := w.formToken(path)
		form.Set("csrf_token", tok[:len(tok)-2]+"xx")
		if res, _ := w.postForm(path, form); res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a wrong token: %d, want 403", path, res.StatusCode)
		}
		// Another browser's valid token does not do either.
		form.Set("csrf_token", e.newWebClient(t).formToken(path))
		if res, _ := w.postForm(path, form); res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with another browser's token: %d, want 403", path, res.StatusCode)
		}
	}
	if _, err := e.adm.Tenant(opCtx(t), "bob"); err == nil {
		t.Error("a refused sign-up created its tenant")
	}

	w := e.newWebClient(t)
	w.signup("ann@example.com", "acme")
	token := w.sessionToken()
	for _, tc := range []struct {
		name, csrf string
		want       int
	}{
		{"no token", "", http.StatusForbidden},
		{"wrong token", "not-the-token", http.StatusForbidden},
		{"another session's token", func() string {
			o := e.newWebClient(t)
			o.signup("zed@example.com", "zed")
			return o.sessionToken()
		}(), http.StatusForbidden},
		{"the session's token", token, http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := w.api(http.MethodPost, "/apps", map[string]string{"name": "app-" + strings.ReplaceAll(tc.name, " ", "-")[:5]}, tc.csrf)
			if code != tc.want {
				t.Errorf("POST /api/v1/apps: %d %s, want %d", code, body, tc.want)
			}
		})
	}
	// Safe methods need no token.
	if code, body := w.api(http.MethodGet, "/apps", nil, ""); code != http.StatusOK || strings.Count(body, `"name"`) != 1 {
		t.Errorf("GET /api/v1/apps: %d %s, want the one app created with the token", code, body)
	}
	// Sign-out is a form with the session's token, too.
	if res, _ := w.postForm("/logout", url.Values{"csrf_token": {"nope"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out with a wrong token: %d, want 403", res.StatusCode)
	}
	if code, _ := w.api(http.MethodGet, "/tenant", nil, ""); code != http.StatusOK {
		t.Errorf("a refused sign-out ended the session: %d", code)
	}
}

// TestDashboardSessionExpiry: a session unused for 12 h, or older than 7
// days, no longer signs in the pages or the API.
func TestDashboardSessionExpiry(t *testing.T) {
	e := startDashboard(t)
	for _, tc := range []struct {
		name              string
		lastSeen, expires time.Duration // from now
		alive             bool
	}{
		{"recently used", -11 * time.Hour, 24 * time.Hour, true},
		{"idle 12 h", -12*time.Hour - time.Minute, 24 * time.Hour, false},
		{"past its absolute end", -time.Minute, -time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.newWebClient(t)
			slug := strings.ReplaceAll(tc.name, " ", "")[:6]
			w.signup(slug+"@example.com", slug)
			// Only this test's session exists now: earlier ones ended.
			e.setSessionTimes(t, time.Now().Add(tc.lastSeen), time.Now().Add(tc.expires))
			res, _ := w.get("/overview")
			if alive := res.StatusCode == http.StatusOK; alive != tc.alive {
				t.Fatalf("GET /overview: %d %s; alive %v, want %v", res.StatusCode, res.Header.Get("Location"), alive, tc.alive)
			}
			code, _ := w.api(http.MethodGet, "/tenant", nil, "")
			if !tc.alive {
				if loc := res.Header.Get("Location"); !strings.Contains(loc, "m=expired") {
					t.Errorf("expired session sent to %q, want sign-in saying it ended", loc)
				}
				if code != http.StatusUnauthorized {
					t.Errorf("GET /api/v1/tenant with an expired session: %d, want 401", code)
				}
			}
			// End it, so that the next case's update touches only its own.
			if tc.alive {
				w.postForm("/logout", url.Values{"csrf_token": {w.sessionToken()}})
			}
		})
	}
}

// TestDashboardLoginThrottle: five wrong passwords for one account within
// a minute block its sign-in (429, with a message and Retry-After).
func TestDashboardLoginThrottle(t *testing.T) {
	e := startDashboard(t)
	e.newWebClient(t).signup("ann@example.com", "acme")
	w := e.newWebClient(t)
	for i := range 5 {
		if res, _ := w.login("ann@example.com", "wrong password!"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password #%d: %d, want 401", i+1, res.StatusCode)
		}
	}
	res, body := w.login("ann@example.com", testPassword)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, "Too many sign-in attempts") || setCookieOf(res, "relay_session") != nil {
		t.Errorf("sign-in after 5 failures: %d, Retry-After %q; want 429 with a message and no session", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// An unknown email answers like a wrong password.
	if res, body := w.login("nobody@example.com", "whatever123"); res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong email or password") {
		t.Errorf("unknown email: %d", res.StatusCode)
	}
}

// TestDashboardOperator: an operator (relay user create --operator) sees
// the platform page; an owner gets 404 there and 403 from the admin API.
func TestDashboardOperator(t *testing.T) {
	e := startDashboard(t)
	owner := e.newWebClient(t)
	owner.signup("ann@example.com", "acme")
	if _, err := e.srv.Control().CreateUser(opCtx(t), "ops@relay.example", testPassword, ""); err != nil {
		t.Fatalf("CreateUser(operator): %v", err)
	}
	op := e.newWebClient(t)
	res, _ := op.login("OPS@relay.example", testPassword)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/operator" {
		t.Fatalf("operator sign-in: %d → %q, want /operator", res.StatusCode, res.Header.Get("Location"))
	}
	if res, body := op.get("/operator"); res.StatusCode != http.StatusOK || !strings.Contains(body, "Tenants &amp; health") {
		t.Errorf("operator GET /operator: %d", res.StatusCode)
	}
	if res, _ := op.get("/overview"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/operator" {
		t.Errorf("operator GET /overview: %d %s, want a redirect to /operator", res.StatusCode, res.Header.Get("Location"))
	}
	if code, body := op.api(http.MethodGet, "/admin/tenants", nil, ""); code != http.StatusOK || !strings.Contains(body, `"acme"`) {
		t.Errorf("operator GET /api/v1/admin/tenants: %d %s", code, body)
	}
	if res, _ := owner.get("/operator"); res.StatusCode != http.StatusNotFound {
		t.Errorf("owner GET /operator: %d, want 404", res.StatusCode)
	}
	if code, _ := owner.api(http.MethodGet, "/admin/tenants", nil, ""); code != http.StatusForbidden {
		t.Errorf("owner GET /api/v1/admin/tenants: %d, want 403", code)
	}
	// The CLI's rules: an email has one account; passwords are long enough.
	if _, err := e.srv.Control().CreateUser(opCtx(t), "ann@EXAMPLE.com", testPassword, ""); err == nil {
		t.Error("CreateUser with a taken email succeeded")
	}
	if _, err := e.srv.Control().CreateUser(opCtx(t), "short@example.com", "123456789", ""); err == nil {
		t.Error("CreateUser with a 9-character password succeeded")
	}
}

// TestDashboardCrossTenant: a user of tenant A can reach none of tenant
// B's apps, credentials or clients, whatever names they guess: 404.
func TestDashboardCrossTenant(t *testing.T) {
	e := startDashboard(t)
	a, b := e.newWebClient(t), e.newWebClient(t)
	a.signup("ann@example.com", "tenant-a")
	b.signup("bob@example.com", "tenant-b")
	bTok := b.sessionToken()
	if code, body := b.api(http.MethodPost, "/apps", map[string]string{"name": "b-app"}, bTok); code != http.StatusCreated {
		t.Fatalf("B creates an app: %d %s", code, body)
	}
	code, body := b.api(http.MethodPost, "/credentials", map[string]string{"app": "b-app"}, bTok)
	var cred struct{ Username, MQTTUsername, Password string }
	cred.MQTTUsername = ""
	var raw map[string]any
	if code != http.StatusCreated && code != http.StatusOK || json.Unmarshal([]byte(body), &raw) != nil {
		t.Fatalf("B issues a credential: %d %s", code, body)
	}
	cred.Username, _ = raw["username"].(string)
	cred.MQTTUsername, _ = raw["mqtt_username"].(string)
	cred.Password, _ = raw["password"].(string)
	lost := make(chan error, 1)
	connect(t, e.addr, "b-device", withLogin(cred.MQTTUsername, cred.Password), onLost(lost))
	waitUntil(t, "B sees its client", func() bool {
		_, body := b.api(http.MethodGet, "/clients", nil, "")
		return strings.Contains(body, `"b-device"`)
	})

	aTok := a.sessionToken()
	if res, _ := a.get("/apps/b-app"); res.StatusCode != http.StatusNotFound {
		t.Errorf("A GET /apps/b-app: %d, want 404", res.StatusCode)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/credentials/" + cred.Username + "/rotate"},
		{http.MethodDelete, "/credentials/" + cred.Username},
		{http.MethodDelete, "/clients/b-device"},
		{http.MethodGet, "/clients/b-device"},
		{http.MethodGet, "/credentials?app=b-app"},
	} {
		if code, body := a.api(tc.method, tc.path, nil, aTok); code != http.StatusNotFound {
			t.Errorf("A %s %s: %d %s, want 404", tc.method, tc.path, code, body)
		}
	}
	if _, body := a.api(http.MethodGet, "/clients", nil, ""); strings.Contains(body, "b-device") {
		t.Errorf("A's client list shows B's client: %s", body)
	}
	if _, body := a.api(http.MethodGet, "/credentials", nil, ""); strings.Contains(body, cred.Username) {
		t.Errorf("A's credential list shows B's credential: %s", body)
	}
	stillConnected(t, lost, "B's client after A's attempts")
	// B's credential still works: A's rotate and revoke did nothing.
	connect(t, e.addr, "b-device-2", withLogin(cred.MQTTUsername, cred.Password))
}
