package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

// Unit tests of the JSON API's parts that need no backbone; the routes
// themselves are tested end to end in services/api_test.go.

// apiFakeTenancy implements the Tenancy methods the operator routes use;
// the others panic (nil embedded interface).
type apiFakeTenancy struct {
	Tenancy
	tenants map[string]*tenant.Tenant
}

func (f *apiFakeTenancy) Tenant(_ context.Context, slug string) (*tenant.Tenant, error) {
	if t, ok := f.tenants[slug]; ok {
		return t, nil
	}
	return nil, tenant.ErrNotFound
}

func (f *apiFakeTenancy) ListTenants(context.Context) ([]tenant.Tenant, error) {
	var out []tenant.Tenant
	for _, t := range f.tenants {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b tenant.Tenant) int { return strings.Compare(a.Slug, b.Slug) })
	return out, nil
}

func (f *apiFakeTenancy) SetStatus(_ context.Context, _, slug string, st tenant.Status) (*tenant.Tenant, error) {
	t, ok := f.tenants[slug]
	if !ok {
		return nil, tenant.ErrNotFound
	}
	t.Status = st
	return t, nil
}

// apiFakeCluster answers the operator routes' questions.
type apiFakeCluster struct {
	Cluster
	conns map[string]int64
}

func (f *apiFakeCluster) Connections(context.Context) (map[string]int64, error) { return f.conns, nil }

func (f *apiFakeCluster) Health(context.Context) ClusterHealth {
	return ClusterHealth{NATS: "ok", JetStream: "ok", Nodes: []NodeHealth{{ID: "edge-1", Alive: true}}}
}

type apiFakeBackbone struct{ Backbone }

func (apiFakeBackbone) Ready() error { return nil }

func newAPITestServer(t *testing.T) *Server {
	t.Helper()
	now := time.Now()
	s, err := New(Config{
		Tenancy: &apiFakeTenancy{tenants: map[string]*tenant.Tenant{
			"acme": {ID: "t1", Slug: "acme", Name: "Acme", Status: tenant.Active, CreatedAt: now},
			"beta": {ID: "t2", Slug: "beta", Name: "Beta", Status: tenant.Active, CreatedAt: now},
		}},
		API:    APIDeps{Cluster: &apiFakeCluster{conns: map[string]int64{"acme": 3}}, Backbone: apiFakeBackbone{}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// callAs runs handler h (behind requireOperator) as caller k.
func callAs(t *testing.T, s *Server, k *Caller, method, target string, names, values []string, h echo.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	rec := httptest.NewRecorder()
	c := s.echo.NewContext(req, rec)
	c.SetParamNames(names...)
	c.SetParamValues(values...)
	setCaller(c, k)
	if err := requireOperator(h)(c); err != nil {
		s.handleError(err, c)
	}
	return rec
}

func TestAPIOperatorRoutes(t *testing.T) {
	s := newAPITestServer(t)
	op := &Caller{Actor: "ops@example.com", Operator: true, Session: true}
	owner := &Caller{Actor: "owner@example.com", Tenant: "acme", TenantID: "t1", Session: true}

	rec := callAs(t, s, owner, http.MethodGet, "/api/v1/admin/tenants", nil, nil, s.adminTenants)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"code":"forbidden"`) {
		t.Fatalf("tenant owner on an operator route: %d %s", rec.Code, rec.Body)
	}

	rec = callAs(t, s, op, http.MethodGet, "/api/v1/admin/tenants", nil, nil, s.adminTenants)
	var ts []struct {
		Slug, Status string
		Connections  int64
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ts) != nil || len(ts) != 2 || ts[0].Slug != "acme" || ts[0].Connections != 3 || ts[1].Connections != 0 {
		t.Fatalf("tenants: %d %s", rec.Code, rec.Body)
	}

	rec = callAs(t, s, op, http.MethodPost, "/api/v1/admin/tenants/beta/suspend", []string{"slug"}, []string{"beta"}, s.adminSuspend)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status":"suspended"`) {
		t.Fatalf("suspend: %d %s", rec.Code, rec.Body)
	}
	rec = callAs(t, s, op, http.MethodPost, "/api/v1/admin/tenants/beta/resume", []string{"slug"}, []string{"beta"}, s.adminResume)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status":"active"`) {
		t.Fatalf("resume: %d %s", rec.Code, rec.Body)
	}
	rec = callAs(t, s, op, http.MethodPost, "/api/v1/admin/tenants/nope/suspend", []string{"slug"}, []string{"nope"}, s.adminSuspend)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("suspend unknown: %d %s", rec.Code, rec.Body)
	}

	rec = callAs(t, s, op, http.MethodGet, "/api/v1/admin/health", nil, nil, s.adminHealth)
	var h struct {
		Status, Database, NATS, JetStream string
		Nodes                             []NodeHealth
		Tenants                           map[string]int64
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &h) != nil || h.Status != "ok" || h.Database != "ok" ||
		len(h.Nodes) != 1 || h.Tenants["acme"] != 3 {
		t.Fatalf("health: %d %s", rec.Code, rec.Body)
	}
}

// sqlStateError is a database error with a SQLSTATE code, as pgconn's.
type sqlStateError string

func (e sqlStateError) Error() string    { return "SQLSTATE " + string(e) }
func (e sqlStateError) SQLState() string { return string(e) }

func TestAPIStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{
		{ErrUnauthenticated, 401},
		{auth.ErrBadCredentials, 401},
		{fmt.Errorf("%w: no", ErrForbidden), 403},
		{tenant.ErrNotFound, 404},
		{fmt.Errorf("x: %w", tenant.ErrConflict), 409},
		{tenant.ErrInvalid, 400},
		{invalidField("topic", "bad"), 400},
		{&FieldError{Field: "filter", Err: topic.ErrInvalidFilter}, 400},
		{ErrTooLarge, 413},
		{fmt.Errorf("%w: big", broker.ErrTooLarge), 413},
		{&http.MaxBytesError{Limit: 10}, 413},
		{&RateLimitError{RetryAfter: 1500 * time.Millisecond}, 429},
		{auth.ErrThrottled, 429},
		{fmt.Errorf("%w: down", broker.ErrBackboneUnavailable), 503},
		{errors.Join(ErrUnavailable, errors.New("db")), 503},
		{auth.ErrUnavailable, 503},
		{echo.ErrNotFound, 404},
		{echo.NewHTTPError(http.StatusForbidden, "csrf"), 403},
		{errors.New("boom"), 500},
		// A store's driver errors: the database is down, not a bug.
		{fmt.Errorf("gormstore: tenant: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), 503},
		{fmt.Errorf("gormstore: apps: %w", driver.ErrBadConn), 503},
		{fmt.Errorf("gormstore: apps: %w", context.DeadlineExceeded), 503},
		{fmt.Errorf("gormstore: apps: %w", sqlStateError("08006")), 503},
		{fmt.Errorf("gormstore: apps: %w", sqlStateError("57P01")), 503},
		{fmt.Errorf("gormstore: apps: %w", sqlStateError("42P01")), 500},
	} {
		got, _ := statusOf(tc.err)
		if got != tc.status {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.status)
		}
		if codes[got] == "" {
			t.Errorf("no code for status %d", got)
		}
	}

	s := newAPITestServer(t)
	rec := httptest.NewRecorder()
	c := s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), rec)
	s.handleError(&RateLimitError{RetryAfter: 1500 * time.Millisecond, Reason: "slow down"}, c)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" || rec.Body.String() != `{"code":"rate_limited","message":"slow down"}`+"\n" {
		t.Fatalf("429: %d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	rec = httptest.NewRecorder()
	c = s.echo.NewContext(httptest.NewRequest(http.MethodGet, "/", nil), rec)
	s.handleError(invalidField("filter", "no"), c)
	if rec.Body.String() != `{"code":"invalid","message":"filter: no","field":"filter"}`+"\n" {
		t.Fatalf("400 body %s", rec.Body)
	}
}

func TestAPIParseAuthorization(t *testing.T) {
	for _, tc := range []struct {
		h, key string
		ok     bool
	}{
		{"Bearer rk_1.secret", "rk_1.secret", true},
		{"bearer  rk_1.secret ", "rk_1.secret", true},
		{"Basic cmtfMTpzZWNyZXQ=", "rk_1.secret", true}, // rk_1:secret
		{"Bearer nodot", "", false},
		{"Basic !!!", "", false},
		{"Basic cmtfMQ==", "", false}, // rk_1 without a password
		{"Token rk_1.secret", "", false},
		{"Bearer", "", false},
	} {
		key, ok := parseAuthorization(tc.h)
		if ok != tc.ok || (ok && key != tc.key) {
			t.Errorf("parseAuthorization(%q) = %q, %v; want %q, %v", tc.h, key, ok, tc.key, tc.ok)
		}
	}
}

func TestAPIThrottle(t *testing.T) {
	th := newThrottle()
	now := time.Now()
	a := addrKey("192.0.2.1:5555")
	for range throttleFailures - 1 {
		th.fail(a, now)
	}
	if th.blocked(a, now) != 0 {
		t.Fatal("blocked before the limit")
	}
	th.fail(a, now)
	if d := th.blocked(a, now); d != throttleFirstBlock {
		t.Fatalf("first block %v, want %v", d, throttleFirstBlock)
	}
	if th.blocked(addrKey("192.0.2.2:1"), now) != 0 {
		t.Fatal("another address is blocked")
	}
	now = now.Add(throttleFirstBlock)
	for range throttleFailures {
		th.fail(a, now)
	}
	if d := th.blocked(a, now); d != 2*throttleFirstBlock {
		t.Fatalf("second block %v, want doubled %v", d, 2*throttleFirstBlock)
	}
	if addrKey("[2001:db8::1]:1") != addrKey("[2001:db8::2]:2") {
		t.Fatal("IPv6 addresses of one /64 are keyed apart")
	}
}

// TestOpenAPIDocument checks that openapi.yaml documents exactly the
// routes the server registers under /api/v1, each with its error statuses.
func TestOpenAPIDocument(t *testing.T) {
	s := newAPITestServer(t)
	registered := map[string]bool{}
	param := regexp.MustCompile(`:([a-z]+)`)
	for _, r := range s.echo.Routes() {
		p, ok := strings.CutPrefix(r.Path, "/api/v1")
		if !ok || strings.HasSuffix(p, "*") || r.Method == echo.RouteNotFound {
			continue
		}
		registered[strings.ToLower(r.Method)+" "+param.ReplaceAllString(p, "{$1}")] = true
	}
	documented := map[string]bool{}
	statuses := map[string][]string{}
	var path, op string
	sc := bufio.NewScanner(bytes.NewReader(openAPIDoc))
	inPaths := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "paths:":
			inPaths = true
		case inPaths && line != "" && line[0] != ' ':
			inPaths = false
		case !inPaths:
		case strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":") && !strings.HasPrefix(line, "   "):
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case regexp.MustCompile(`^    (get|post|put|delete):$`).MatchString(line):
			op = strings.TrimSpace(strings.TrimSuffix(line, ":")) + " " + path
			documented[op] = true
		case regexp.MustCompile(`^        "\d{3}":`).MatchString(line):
			statuses[op] = append(statuses[op], strings.Trim(strings.TrimSpace(line)[:5], `"`))
		}
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for d := range documented {
		if !registered[d] {
			t.Errorf("openapi.yaml documents %s, which is not registered", d)
		}
		if d == "get /openapi.yaml" {
			continue
		}
		for _, want := range []string{"401", "403", "429"} {
			if !slices.Contains(statuses[d], want) {
				t.Errorf("%s does not document %s (has %v)", d, want, statuses[d])
			}
		}
	}
	if len(registered) < 30 {
		t.Errorf("only %d routes registered", len(registered))
	}
}
