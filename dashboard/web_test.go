package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// ---------------------------------------------------------------------------
// Fakes: an in-memory WebStore and Tenancy, and a clock the test moves.

type memStore struct {
	mu       sync.Mutex
	tenants  map[string]*tenant.Tenant // by ID
	users    map[string]*tenant.User   // by ID
	sessions map[string]*tenant.Session
	apps     map[string]string // tenantID/name -> app ID
}

func newMemStore() *memStore {
	return &memStore{tenants: map[string]*tenant.Tenant{}, users: map[string]*tenant.User{}, sessions: map[string]*tenant.Session{}, apps: map[string]string{}}
}

func (m *memStore) CreateUser(_ context.Context, u *tenant.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.users {
		if o.Email == u.Email {
			return tenant.ErrConflict
		}
	}
	u.ID = auth.NewID()
	u.CreatedAt = time.Now()
	c := *u
	m.users[u.ID] = &c
	return nil
}

func (m *memStore) UserByEmail(_ context.Context, email string) (*tenant.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	email, _ = tenant.NormalizeEmail(email)
	for _, u := range m.users {
		if u.Email == email {
			c := *u
			return &c, nil
		}
	}
	return nil, tenant.ErrNotFound
}

func (m *memStore) UserByID(_ context.Context, id string) (*tenant.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.users[id]; u != nil {
		c := *u
		return &c, nil
	}
	return nil, tenant.ErrNotFound
}

func (m *memStore) SetPasswordHash(_ context.Context, id, hash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.users[id]; u != nil {
		u.PasswordHash = hash
		return nil
	}
	return tenant.ErrNotFound
}

func (m *memStore) CreateSession(_ context.Context, s *tenant.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions[s.ID] != nil {
		return tenant.ErrConflict
	}
	c := *s
	m.sessions[s.ID] = &c
	return nil
}

func (m *memStore) SessionUser(_ context.Context, id string) (*tenant.Session, *tenant.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[id]
	if s == nil {
		return nil, nil, tenant.ErrNotFound
	}
	sc, uc := *s, *m.users[s.UserID]
	return &sc, &uc, nil
}

func (m *memStore) TouchSession(_ context.Context, id string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.sessions[id]; s != nil {
		s.LastSeen = at
		return nil
	}
	return tenant.ErrNotFound
}

func (m *memStore) DeleteSession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}

func (m *memStore) DeleteUserSessions(_ context.Context, userID string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, s := range m.sessions {
		if s.UserID == userID {
			delete(m.sessions, id)
			n++
		}
	}
	return n, nil
}

func (m *memStore) DeleteExpiredSessions(_ context.Context, now, idleSince time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for id, s := range m.sessions {
		if s.ExpiresAt.Before(now) || s.LastSeen.Before(idleSince) {
			delete(m.sessions, id)
			n++
		}
	}
	return n, nil
}

func (m *memStore) TenantByID(_ context.Context, id string) (*tenant.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tenants[id]; t != nil {
		c := *t
		return &c, nil
	}
	return nil, tenant.ErrNotFound
}

func (m *memStore) AppByName(_ context.Context, tenantID, name string) (*tenant.App, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.apps[tenantID+"/"+name]; ok {
		return &tenant.App{ID: id, TenantID: tenantID, Name: name}, nil
	}
	return nil, tenant.ErrNotFound
}

func (m *memStore) sessionCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// memTenancy implements the tenancy operations sign-up uses; the others
// panic (the embedded nil interface).
type memTenancy struct {
	Tenancy
	store *memStore
}

func (f *memTenancy) CreateTenant(_ context.Context, actor, slug, name string) (*tenant.Tenant, error) {
	if !tenant.ValidSlug(slug) || slug == tenant.DefaultSlug {
		return nil, tenant.ErrInvalid
	}
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	for _, t := range f.store.tenants {
		if t.Slug == slug {
			return nil, tenant.ErrConflict
		}
	}
	t := &tenant.Tenant{ID: auth.NewID(), Slug: slug, Name: name, Status: tenant.Active, CreatedAt: time.Now()}
	f.store.tenants[t.ID] = t
	c := *t
	return &c, nil
}

func (f *memTenancy) Tenant(_ context.Context, slug string) (*tenant.Tenant, error) {
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	for _, t := range f.store.tenants {
		if t.Slug == slug {
			c := *t
			return &c, nil
		}
	}
	return nil, tenant.ErrNotFound
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Harness

type webEnv struct {
	srv   *Server
	ts    *httptest.Server
	store *memStore
	clock *clock
}

func newWebEnv(t *testing.T) *webEnv {
	t.Helper()
	return newWebEnvWith(t, nil)
}

// newWebEnvWith is newWebEnv with the configuration changed by edit.
func newWebEnvWith(t *testing.T, edit func(*Config)) *webEnv {
	t.Helper()
	key := make([]byte, auth.KeySize)
	keyed, err := auth.NewKeyed(key)
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	clk := &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	cfg := Config{
		Tenancy: &memTenancy{store: st},
		Web:     WebDeps{Store: st, Keyed: keyed, Now: clk.Now, MQTTPort: 1883},
		Logger:  slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &webEnv{srv: s, ts: ts, store: st, clock: clk}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects.
func (e *webEnv) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values) (*http.Response, string) {
	t.Helper()
	res, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

var hiddenCSRF = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// formCSRF loads a page and returns the CSRF token of its form.
func formCSRF(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, body := get(t, c, u)
	m := hiddenCSRF.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %d, no CSRF token in the form", u, res.StatusCode)
	}
	return m[1]
}

// signup signs up through the form and returns the client, signed in.
func (e *webEnv) signup(t *testing.T, email, slug string) *http.Client {
	t.Helper()
	c := e.browser(t)
	tok := formCSRF(t, c, e.ts.URL+"/signup")
	res, body := postForm(t, c, e.ts.URL+"/signup", url.Values{
		"csrf_token": {tok}, "email": {email}, "password": {"correct horse battery"}, "name": {"Org " + slug}, "slug": {slug},
	})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/overview?welcome=1" {
		t.Fatalf("sign-up: %d %s\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	return c
}

func sessionCookieOf(res *http.Response) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Tests

func TestSuggestSlug(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Acme Sensors", "acme-sensors"},
		{"  ACME  ", "acme"},
		{"Ünïcode Café", "n-code-caf"},
		{"a--b__c", "a-b-c"},
		{"!!!", ""},
		{strings.Repeat("abc ", 20), "abc-abc-abc-abc-abc-abc-abc-abc"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := SuggestSlug(tc.in)
			if got != tc.want {
				t.Errorf("SuggestSlug(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got != "" && !tenant.ValidSlug(got) {
				t.Errorf("SuggestSlug(%q) = %q: not a valid slug", tc.in, got)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/clients", "/clients"},
		{"/apps/x?y=1", "/apps/x?y=1"},
		{"", ""},
		{"https://evil.example/", ""},
		{"//evil.example/", ""},
		{"/\\evil.example", ""},
		{"clients", ""},
	} {
		if got := safeNext(tc.in); got != tc.want {
			t.Errorf("safeNext(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLoginThrottle(t *testing.T) {
	th := newLoginThrottle(3)
	now := time.Unix(1000, 0)
	l := loginLimit{burst: 5, window: time.Minute}
	a := limitKey{"a", l}
	for i := range 5 {
		if w := th.take(now, a); w != 0 {
			t.Fatalf("blocked after %d attempts", i)
		}
	}
	w := th.take(now, a)
	if w <= 0 || w > 12*time.Second {
		t.Fatalf("after 5 attempts: wait %v, want (0, 12s]", w)
	}
	if th.take(now.Add(w), a) != 0 {
		t.Error("still blocked once a token came back")
	}
	// A refund gives a token back (a successful attempt).
	th.refund(now.Add(w), a)
	if th.take(now.Add(w), a) != 0 {
		t.Error("blocked after a refund")
	}
	th.reset("a")
	if th.take(now, a) != 0 {
		t.Error("blocked after reset")
	}
	// All or nothing: a blocked key takes no token from the others.
	th = newLoginThrottle(100)
	x, y := limitKey{"x", loginLimit{burst: 1, window: time.Minute}}, limitKey{"y", l}
	th.take(now, x)
	for range 3 {
		if th.take(now, x, y) == 0 {
			t.Fatal("x has no token, yet the attempt passed")
		}
	}
	if got := th.buckets["y"]; got != nil {
		t.Errorf("y was charged by refused attempts: %+v", got)
	}
	// A full table forgets refilled keys, then stops tracking new ones.
	th = newLoginThrottle(3)
	for _, k := range []string{"b", "c", "d", "e"} { // e: table full of fresh keys
		th.take(now, limitKey{k, l})
	}
	if len(th.buckets) != 3 {
		t.Errorf("%d buckets, want at most 3", len(th.buckets))
	}
	th.take(now.Add(time.Hour), limitKey{"f", l}) // b, c, d have refilled
	if th.buckets["f"] == nil || th.buckets["b"] != nil {
		t.Errorf("refilled buckets not swept: %v", th.buckets)
	}
}

// TestLoginThrottleParallel: wrong passwords sent at once are counted
// before any is verified, so no more than the limit are checked, and the
// right password that follows them is refused too.
func TestLoginThrottleParallel(t *testing.T) {
	e := newWebEnv(t)
	e.signup(t, "ann@example.com", "acme")
	const n = 40
	var wg sync.WaitGroup
	codes := make(chan int, n)
	start := make(chan struct{})
	for i := range n {
		c := e.browser(t)
		tok := formCSRF(t, c, e.ts.URL+"/login")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := c.PostForm(e.ts.URL+"/login", url.Values{csrfField: {tok}, "email": {"ann@example.com"}, "password": {fmt.Sprintf("wrong password %d", i)}})
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusUnauthorized] != 5 || count[http.StatusTooManyRequests] != n-5 {
		t.Errorf("statuses %v: want 5 wrong passwords checked, %d refused", count, n-5)
	}
	c := e.browser(t)
	res, _ := postForm(t, c, e.ts.URL+"/login", url.Values{csrfField: {formCSRF(t, c, e.ts.URL+"/login")}, "email": {"ann@example.com"}, "password": {"correct horse battery"}})
	if res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("right password right after: %d, want 429", res.StatusCode)
	}
}

// TestLoginThrottleKeys: one address cannot lock an account out for
// everyone (the per-account limit is per address, plus a looser global
// one), and a success gives its tokens back.
func TestLoginThrottleKeys(t *testing.T) {
	e := newWebEnv(t)
	e.signup(t, "ann@example.com", "acme")
	login := func(addr, pw string) int {
		c := e.browser(t)
		tok := formCSRF(t, c, e.ts.URL+"/login")
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/login", strings.NewReader(url.Values{csrfField: {tok}, "email": {"ann@example.com"}, "password": {pw}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", addr)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// Without trusted proxies X-Forwarded-For is ignored: every attempt
	// comes from the test's own address.
	for range 5 {
		login("192.0.2.1", "wrong password")
	}
	if got := login("192.0.2.2", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("X-Forwarded-For from an untrusted peer changed the address: %d", got)
	}
	e.clock.advance(time.Minute)
	// Successes cost nothing: many in a row pass.
	for i := range 8 {
		if got := login("", "correct horse battery"); got != http.StatusSeeOther {
			t.Fatalf("sign-in #%d: %d", i+1, got)
		}
	}
}

// TestLoginTrustedProxies: behind a trusted proxy the address is the
// client's from X-Forwarded-For, so one client's failures do not block
// another's; the per-account limit over all addresses still applies.
func TestLoginTrustedProxies(t *testing.T) {
	e := newWebEnvWith(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	e.signup(t, "ann@example.com", "acme")
	login := func(addr, pw string) int {
		c := e.browser(t)
		tok := formCSRF(t, c, e.ts.URL+"/login")
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/login", strings.NewReader(url.Values{csrfField: {tok}, "email": {"ann@example.com"}, "password": {pw}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", addr)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for range 5 {
		if got := login("198.51.100.7", "wrong password"); got != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", got)
		}
	}
	if got := login("198.51.100.7", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("the attacker's address after 5 failures: %d, want 429", got)
	}
	if got := login("203.0.113.9", "correct horse battery"); got != http.StatusSeeOther {
		t.Fatalf("the owner from elsewhere: %d, want 303", got)
	}
	// A forged hop before the client's own is not believed: the proxy
	// appends the real peer, and that is the address used.
	if got := login("203.0.113.9, 198.51.100.7", "correct horse battery"); got != http.StatusTooManyRequests {
		t.Fatalf("forged X-Forwarded-For: %d, want 429", got)
	}
	// Many addresses: the per-account limit (30 a minute) over all of them.
	refused := 0
	for i := range 40 {
		if login(fmt.Sprintf("192.0.2.%d", i+1), "wrong password") == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Error("40 wrong passwords from 40 addresses in a minute: none refused")
	}
}

// TestSignupThrottleParallel: sign-ups sent at once from one address are
// counted before any is checked: 10 an hour, whatever the concurrency.
func TestSignupThrottleParallel(t *testing.T) {
	e := newWebEnv(t)
	const n = 30
	var wg sync.WaitGroup
	codes := make(chan int, n)
	start := make(chan struct{})
	for i := range n {
		c := e.browser(t)
		tok := formCSRF(t, c, e.ts.URL+"/signup")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := c.PostForm(e.ts.URL+"/signup", url.Values{csrfField: {tok}, "email": {fmt.Sprintf("u%d@example.com", i)},
				"password": {"correct horse battery"}, "name": {"Org"}, "slug": {fmt.Sprintf("org-%d", i)}})
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusSeeOther] != 10 || count[http.StatusTooManyRequests] != n-10 {
		t.Errorf("statuses %v: want 10 sign-ups, %d refused", count, n-10)
	}
}

// TestSignupEnumeration: whether an email has an account is told in the
// same words as any other refusal of it, and probing is throttled; form
// mistakes and taken tenant IDs do not count.
func TestSignupEnumeration(t *testing.T) {
	e := newWebEnv(t)
	e.signup(t, "victim@example.com", "acme") // 1 of this address's 10
	c := e.browser(t)
	post := func(email, slug, pw string) (int, string) {
		res, body := postForm(t, c, e.ts.URL+"/signup", url.Values{csrfField: {formCSRF(t, c, e.ts.URL+"/signup")},
			"email": {email}, "password": {pw}, "name": {"X"}, "slug": {slug}})
		return res.StatusCode, body
	}
	for range 5 {
		if code, _ := post("new@example.com", "x", "short"); code != http.StatusBadRequest {
			t.Fatalf("short password: %d", code)
		}
		if code, _ := post("new@example.com", "acme", "correct horse battery"); code != http.StatusConflict {
			t.Fatalf("taken slug: %d", code)
		}
	}
	codes := map[int]int{}
	for i := range 20 {
		code, body := post("victim@example.com", fmt.Sprintf("probe-%d", i), "correct horse battery")
		codes[code]++
		if code == http.StatusConflict && (strings.Contains(body, "already exists") || !strings.Contains(body, "If you already have one, sign in")) {
			t.Fatalf("existing email: the answer names it: %s", body)
		}
	}
	if codes[http.StatusConflict] != 9 || codes[http.StatusTooManyRequests] != 11 {
		t.Errorf("20 probes: %v, want 9 answered (10 an hour, one used by the sign-up) and 11 refused", codes)
	}
}

// TestArgon2Bounded: argon2id work waits for a turn (at most cap at once)
// and gives up with 503 rather than queueing without end.
func TestArgon2Bounded(t *testing.T) {
	w := &webState{argon: make(chan struct{}, 1)}
	w.argon <- struct{}{} // the one turn is taken
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ran := false
	if err := w.argon2(ctx, func() { ran = true }); err == nil || ran {
		t.Fatalf("ran without a turn: %v", err)
	}
	<-w.argon
	if err := w.argon2(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("with a free turn: %v, ran %v", err, ran)
	}
	if len(w.argon) != 0 {
		t.Error("turn not given back")
	}
}

func TestLoginAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:5000", "ip:192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "ip:2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:1", "ip:192.0.2.1"},
		{"garbage", "ip:garbage"},
	} {
		if got := loginAddrKey(tc.in); got != tc.want {
			t.Errorf("loginAddrKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewUser(t *testing.T) {
	u, err := NewUser(" Ann@Example.com", "correct horse battery", "")
	if err != nil || u.Email != "ann@example.com" || u.Role != tenant.RoleOperator || !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Fatalf("NewUser = %+v, %v", u, err)
	}
	if ok, _ := auth.VerifyPassword(u.PasswordHash, []byte("correct horse battery")); !ok {
		t.Error("hash does not verify")
	}
	if u, _ := NewUser("b@example.com", "correct horse battery", "t1"); u.Role != tenant.RoleOwner || u.TenantID != "t1" {
		t.Errorf("owner: %+v", u)
	}
	for _, tc := range []struct{ email, pw string }{
		{"nope", "correct horse battery"},
		{"b@example.com", "123456789"},
		{"b@example.com", strings.Repeat("x", 1025)},
	} {
		if _, err := NewUser(tc.email, tc.pw, ""); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("NewUser(%q, %d chars) = %v, want ErrInvalid", tc.email, len(tc.pw), err)
		}
	}
}

// TestSessionCookie: sign-up sets a session cookie with the right flags,
// signs in, and rotates the session at the next sign-in.
func TestSessionCookie(t *testing.T) {
	e := newWebEnv(t)
	c := e.browser(t)
	tok := formCSRF(t, c, e.ts.URL+"/signup")
	res, _ := postForm(t, c, e.ts.URL+"/signup", url.Values{
		"csrf_token": {tok}, "email": {"ann@example.com"}, "password": {"correct horse battery"}, "name": {"Acme"}, "slug": {"acme"},
	})
	ck := sessionCookieOf(res)
	if ck == nil {
		t.Fatalf("sign-up set no %s cookie: %v", sessionCookie, res.Header["Set-Cookie"])
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure || ck.MaxAge <= 0 || len(ck.Value) < 43 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, not Secure over plain HTTP, a max age, 256 bits", ck)
	}
	for id := range e.store.sessions {
		if strings.Contains(id, ck.Value) || id == ck.Value {
			t.Error("the store holds the cookie's token itself")
		}
	}
	if res, _ := get(t, c, e.ts.URL+"/overview"); res.StatusCode != http.StatusOK {
		t.Fatalf("GET /overview signed in: %d", res.StatusCode)
	}

}

// TestLoginRotatesSession: signing in ends the browser's previous session
// and issues a new token.
func TestLoginRotatesSession(t *testing.T) {
	e := newWebEnv(t)
	c := e.signup(t, "ann@example.com", "acme")
	u, _ := url.Parse(e.ts.URL)
	old := ""
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == sessionCookie {
			old = k.Value
		}
	}
	// A signed-in browser is sent home from /login; a login post still
	// rotates (e.g. a second tab signing in as someone else).
	tok := e.srv.formMACToken(t)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: csrfCookie, Value: tok}})
	res, body := postForm(t, c, e.ts.URL+"/login", url.Values{"csrf_token": {tok}, "email": {"ann@example.com"}, "password": {"correct horse battery"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/overview" {
		t.Fatalf("sign-in: %d %s %s", res.StatusCode, res.Header.Get("Location"), body)
	}
	ck := sessionCookieOf(res)
	if ck == nil || ck.Value == old {
		t.Fatalf("sign-in kept the session token")
	}
	if n := e.store.sessionCount(); n != 1 {
		t.Errorf("%d sessions after signing in again, want 1 (the old one ended)", n)
	}
}

// formMACToken makes a valid pre-session CSRF token, as a GET of the form
// would set in the relay_csrf cookie.
func (s *Server) formMACToken(t *testing.T) string {
	t.Helper()
	r := randomToken(24)
	return r + "." + s.formMAC(r)
}

func TestFormCSRF(t *testing.T) {
	e := newWebEnv(t)
	good := url.Values{"email": {"ann@example.com"}, "password": {"correct horse battery"}, "name": {"Acme"}, "slug": {"acme"}}
	for _, tc := range []struct {
		name   string
		cookie bool
		field  func(tok string) string
	}{
		{"no cookie, no field", false, func(string) string { return "" }},
		{"cookie, no field", true, func(string) string { return "" }},
		{"cookie, wrong field", true, func(tok string) string { return tok[:len(tok)-1] + "x" }},
		{"forged cookie and field", false, func(string) string { return "abc.def" }},
	} {
		for _, path := range []string{"/signup", "/login"} {
			t.Run(tc.name+path, func(t *testing.T) {
				c := e.browser(t)
				tok := ""
				if tc.cookie {
					tok = formCSRF(t, c, e.ts.URL+path)
				} else if f := tc.field(""); f != "" {
					u, _ := url.Parse(e.ts.URL)
					c.Jar.SetCookies(u, []*http.Cookie{{Name: csrfCookie, Value: f}})
				}
				v := url.Values{}
				for k, vs := range good {
					v[k] = vs
				}
				if f := tc.field(tok); f != "" {
					v.Set(csrfField, f)
				}
				res, body := postForm(t, c, e.ts.URL+path, v)
				if res.StatusCode != http.StatusForbidden || sessionCookieOf(res) != nil {
					t.Errorf("POST %s: %d (session cookie %v), want 403 and none\n%s", path, res.StatusCode, sessionCookieOf(res) != nil, body)
				}
			})
		}
	}
	if len(e.store.users) != 0 {
		t.Errorf("%d users created by refused forms", len(e.store.users))
	}
}

func TestSessionCSRF(t *testing.T) {
	e := newWebEnv(t)
	c := e.signup(t, "ann@example.com", "acme")
	_, body := get(t, c, e.ts.URL+"/overview")
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no CSRF meta tag on the page")
	}
	token := m[1]
	if hiddenCSRF.FindStringSubmatch(body)[1] != token {
		t.Error("sign-out form token differs from the meta tag")
	}
	// sessionCaller (the API's session authentication): safe methods need
	// no token; unsafe ones need this session's.
	for _, tc := range []struct {
		method, header, field string
		want                  int // 0: a caller
	}{
		{http.MethodGet, "", "", 0},
		{http.MethodPost, "", "", http.StatusForbidden},
		{http.MethodPost, "wrong", "", http.StatusForbidden},
		{http.MethodDelete, token + "x", "", http.StatusForbidden},
		{http.MethodPut, token, "", 0},
		{http.MethodPost, "", token, 0},
		{http.MethodPatch, "", "nope", http.StatusForbidden},
	} {
		t.Run(tc.method+"/"+tc.header+tc.field, func(t *testing.T) {
			var body io.Reader
			req := httptest.NewRequest(tc.method, "/api/v1/x", nil)
			if tc.field != "" {
				body = strings.NewReader(url.Values{csrfField: {tc.field}}.Encode())
				req = httptest.NewRequest(tc.method, "/api/v1/x", body)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.header != "" {
				req.Header.Set(csrfHeader, tc.header)
			}
			u, _ := url.Parse(e.ts.URL)
			for _, k := range c.Jar.Cookies(u) {
				req.AddCookie(k)
			}
			ec := e.srv.echo.NewContext(req, httptest.NewRecorder())
			k, err := e.srv.sessionCaller(ec)
			switch {
			case tc.want == 0 && (err != nil || k == nil || k.Tenant != "acme" || !k.Session || k.Actor != "ann@example.com"):
				t.Errorf("caller %+v, %v; want acme's session", k, err)
			case tc.want != 0 && !isHTTPStatus(err, tc.want):
				t.Errorf("caller %+v, %v; want HTTP %d", k, err, tc.want)
			}
		})
	}
	// The sign-out form: without the token it is refused and the session
	// lives; with it the session ends and the cookie is cleared.
	res, _ := postForm(t, c, e.ts.URL+"/logout", url.Values{})
	if res.StatusCode != http.StatusForbidden || e.store.sessionCount() != 1 {
		t.Errorf("sign-out without token: %d, %d sessions; want 403, 1", res.StatusCode, e.store.sessionCount())
	}
	res, _ = postForm(t, c, e.ts.URL+"/logout", url.Values{csrfField: {token}})
	if res.StatusCode != http.StatusSeeOther || e.store.sessionCount() != 0 {
		t.Errorf("sign-out: %d, %d sessions; want 303, 0", res.StatusCode, e.store.sessionCount())
	}
	if ck := sessionCookieOf(res); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("sign-out did not clear the cookie: %+v", ck)
	}
	if res, _ := get(t, c, e.ts.URL+"/overview"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
		t.Errorf("after sign-out GET /overview: %d %s, want a redirect to /login", res.StatusCode, res.Header.Get("Location"))
	}
}

func isHTTPStatus(err error, code int) bool {
	var he *echo.HTTPError
	return errors.As(err, &he) && he.Code == code
}

func TestSessionExpiry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []time.Duration // uses, spaced by these
		alive bool
	}{
		{"used within the idle timeout", []time.Duration{11 * time.Hour}, true},
		{"idle too long", []time.Duration{12*time.Hour + time.Second}, false},
		{"kept alive by use", []time.Duration{10 * time.Hour, 10 * time.Hour, 10 * time.Hour}, true},
		{"absolute end", []time.Duration{11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour, 11 * time.Hour}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWebEnv(t)
			c := e.signup(t, "ann@example.com", "acme")
			var res *http.Response
			for _, d := range tc.steps {
				e.clock.advance(d)
				res, _ = get(t, c, e.ts.URL+"/overview")
			}
			if alive := res.StatusCode == http.StatusOK; alive != tc.alive {
				t.Errorf("GET /overview: %d %s; alive %v, want %v", res.StatusCode, res.Header.Get("Location"), alive, tc.alive)
			}
			if !tc.alive {
				if loc := res.Header.Get("Location"); !strings.Contains(loc, "m=expired") || !strings.Contains(loc, "next=%2Foverview") {
					t.Errorf("expired session sent to %q, want sign-in with m=expired and next", loc)
				}
				if n := e.store.sessionCount(); n != 0 {
					t.Errorf("%d sessions left, want the expired one deleted", n)
				}
			}
		})
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newWebEnv(t)
	e.signup(t, "ann@example.com", "acme")
	c := e.browser(t)
	tok := formCSRF(t, c, e.ts.URL+"/login")
	try := func(pw string) (*http.Response, string) {
		return postForm(t, c, e.ts.URL+"/login", url.Values{csrfField: {tok}, "email": {"ann@example.com"}, "password": {pw}})
	}
	for i := range 5 {
		if res, _ := try("wrong password"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password #%d: %d, want 401", i+1, res.StatusCode)
		}
	}
	res, body := try("correct horse battery")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many sign-in attempts") {
		t.Fatalf("6th attempt: %d Retry-After %q; want 429 with a message", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Another account from the same address is not blocked (20/min there).
	res, _ = postForm(t, c, e.ts.URL+"/login", url.Values{csrfField: {tok}, "email": {"bob@example.com"}, "password": {"whatever123"}})
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("other email: %d, want 401", res.StatusCode)
	}
	// A minute later the right password works.
	e.clock.advance(time.Minute)
	if res, _ := try("correct horse battery"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("after a minute: %d, want 303", res.StatusCode)
	}
}

func TestSignupValidation(t *testing.T) {
	e := newWebEnv(t)
	e.signup(t, "ann@example.com", "acme")
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		field  string
	}{
		{"bad email", url.Values{"email": {"ann"}, "password": {"correct horse battery"}, "name": {"X"}, "slug": {"x"}}, 400, "email-error"},
		{"short password", url.Values{"email": {"b@example.com"}, "password": {"short"}, "name": {"X"}, "slug": {"x"}}, 400, "password-error"},
		{"bad slug", url.Values{"email": {"b@example.com"}, "password": {"correct horse battery"}, "name": {"X"}, "slug": {"-x-"}}, 400, "slug-error"},
		{"reserved slug", url.Values{"email": {"b@example.com"}, "password": {"correct horse battery"}, "name": {"X"}, "slug": {"default"}}, 400, "slug-error"},
		{"slug taken", url.Values{"email": {"b@example.com"}, "password": {"correct horse battery"}, "name": {"X"}, "slug": {"acme"}}, 409, "slug-error"},
		{"email has an account", url.Values{"email": {"ANN@example.com"}, "password": {"correct horse battery"}, "name": {"X"}, "slug": {"other"}}, 409, "email-error"},
		{"no name", url.Values{"email": {"b@example.com"}, "password": {"correct horse battery"}, "name": {""}, "slug": {"x"}}, 400, "name-error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.browser(t)
			tc.form.Set(csrfField, formCSRF(t, c, e.ts.URL+"/signup"))
			res, body := postForm(t, c, e.ts.URL+"/signup", tc.form)
			if res.StatusCode != tc.status || !strings.Contains(body, `id="`+tc.field+`"`) || !strings.Contains(body, `aria-invalid="true"`) {
				t.Errorf("%d, want %d with #%s next to its field", res.StatusCode, tc.status, tc.field)
			}
		})
	}
	// The slug is suggested from the name when left empty.
	c := e.browser(t)
	res, _ := postForm(t, c, e.ts.URL+"/signup", url.Values{csrfField: {formCSRF(t, c, e.ts.URL+"/signup")},
		"email": {"c@example.com"}, "password": {"correct horse battery"}, "name": {"Big Farm Ltd"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-up without slug: %d", res.StatusCode)
	}
	if _, err := (&memTenancy{store: e.store}).Tenant(context.Background(), "big-farm-ltd"); err != nil {
		t.Errorf("suggested slug: %v", err)
	}
}

// TestPagesCSP: every page is free of inline script and style, which the
// content security policy would block.
func TestPagesCSP(t *testing.T) {
	e := newWebEnv(t)
	c := e.signup(t, "ann@example.com", "acme")
	var acmeID string
	for id, tn := range e.store.tenants {
		if tn.Slug == "acme" {
			acmeID = id
		}
	}
	e.store.apps[acmeID+"/sensors"] = "app1"
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`)
	attrs := regexp.MustCompile(`(?i)\sstyle=|\son[a-z]+=|<style`)
	inlineOf := func(body string) string {
		for _, m := range scripts.FindAllStringSubmatch(body, -1) {
			if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
				return m[0]
			}
		}
		return attrs.FindString(body)
	}
	pages := []string{"/overview", "/apps", "/apps/sensors", "/clients", "/retained", "/console", "/usage", "/nope"}
	for _, p := range pages {
		res, body := get(t, c, e.ts.URL+p)
		want := http.StatusOK
		if p == "/nope" {
			want = http.StatusNotFound
		}
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", p, res.StatusCode, want)
		}
		if m := inlineOf(body); m != "" {
			t.Errorf("GET %s: inline script or style %q", p, m)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
		if !strings.Contains(body, `href="/apps"`) || !strings.Contains(body, "acme.relay.localhost") && p == "/overview" {
			t.Errorf("GET %s: no navigation or host name", p)
		}
	}
	for _, p := range []string{"/login", "/signup"} {
		_, body := get(t, e.browser(t), e.ts.URL+p)
		if m := inlineOf(body); m != "" {
			t.Errorf("GET %s: inline script or style %q", p, m)
		}
	}
	// Another tenant's (or no) app, and the operator page, are 404 for an owner.
	for _, p := range []string{"/apps/other", "/operator"} {
		if res, _ := get(t, c, e.ts.URL+p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
	// Unknown API paths stay JSON.
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/api/v1/nope/nope", nil)
	req.Header.Set("Accept", "text/html")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusNotFound || !strings.Contains(ct, "json") {
		t.Errorf("unknown API path: %d %s, want a JSON 404", res.StatusCode, ct)
	}
}

func TestStaticAssets(t *testing.T) {
	e := newWebEnv(t)
	c := e.browser(t)
	for _, name := range []string{"app.css", "app.js", "auth.js", "overview.js", "appdetail.js", "favicon.svg"} {
		res, body := get(t, c, e.ts.URL+"/static/"+name)
		if res.StatusCode != http.StatusOK || body == "" || res.Header.Get("ETag") == "" {
			t.Errorf("GET /static/%s: %d, ETag %q", name, res.StatusCode, res.Header.Get("ETag"))
		}
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/static/"+name, nil)
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		res2, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res2.Body.Close()
		if res2.StatusCode != http.StatusNotModified {
			t.Errorf("conditional GET /static/%s: %d, want 304", name, res2.StatusCode)
		}
	}
	if res, _ := get(t, c, e.ts.URL+"/static/nope.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %d", res.StatusCode)
	}
}
