package services_test

// Helpers for the HTTP API tests (api_test.go): a Server with the HTTP API
// on a random port, tenants with an app, a credential and an API key, and a
// small JSON client that checks statuses and the one error shape.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/tenant"
)

// apiEnv is a running Server with its HTTP API.
type apiEnv struct {
	*tenancyEnv
	base string // http://host:port/api/v1
}

// withHTTP serves the HTTP API on a random port, with usage sampled every
// 100 ms.
func withHTTP() serverOption {
	return func(c *services.ServeConfig) {
		c.HTTPAddr = "127.0.0.1:0"
		c.API.UsageInterval = 100 * time.Millisecond
	}
}

// startAPI starts a Server (credentials required) with the HTTP API.
func startAPI(t testing.TB, opts ...serverOption) *apiEnv {
	t.Helper()
	env := startTenancy(t, append([]serverOption{withHTTP()}, opts...)...)
	a := env.srv.HTTPAddr()
	if a == nil {
		t.Fatal("server has no HTTP listener")
	}
	return &apiEnv{tenancyEnv: env, base: "http://" + a.String() + "/api/v1"}
}

// apiTenant is a tenant with one app "devices", a credential and an
// admin-scoped API key of that app (the tests manage the tenant with it).
type apiTenant struct {
	slug string
	cred *admin.NewCredential
	key  string
	api  *apiClient
}

// newAPITenant creates the tenant, its app, credential and API key.
func (e *apiEnv) newAPITenant(t testing.TB, slug string) *apiTenant {
	t.Helper()
	cred := e.setup(t, slug)
	k, err := e.adm.CreateAPIKey(opCtx(t), actor, slug, "devices", tenant.ScopeAdmin)
	if err != nil {
		t.Fatalf("create API key: %v", err)
	}
	return &apiTenant{slug: slug, cred: cred, key: k.Key, api: e.client(k.Key)}
}

// apiClient calls the API with one key.
type apiClient struct {
	base  string
	auth  string // Authorization header ("" for none)
	hc    *http.Client
	extra http.Header
}

var httpClient = &http.Client{Timeout: 15 * time.Second}

// client returns a client using key as a Bearer token.
func (e *apiEnv) client(key string) *apiClient {
	return &apiClient{base: e.base, auth: "Bearer " + key, hc: httpClient}
}

// basic returns a client using key as HTTP Basic prefix:secret.
func (e *apiEnv) basic(key string) *apiClient {
	prefix, secret, _ := strings.Cut(key, ".")
	return &apiClient{base: e.base, auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(prefix+":"+secret)), hc: httpClient}
}

// anonymous returns a client without credentials.
func (e *apiEnv) anonymous() *apiClient { return &apiClient{base: e.base, hc: httpClient} }

// apiResp is an answer.
type apiResp struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; body is JSON-encoded unless it is a string or []byte
// (sent as is).
func (c *apiClient) do(t testing.TB, method, path string, body any) *apiResp {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encoding request: %v", err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, c.base+path, r)
	if err != nil {
		t.Fatalf("request %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	for k, v := range c.extra {
		req.Header[k] = v
	}
	res, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return &apiResp{status: res.StatusCode, header: res.Header, body: data}
}

// expect checks the status (and for errors the one error shape) and
// decodes a success body into out (if not nil).
func (r *apiResp) expect(t testing.TB, what string, status int, out any) *apiResp {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	if status >= 400 {
		var e struct{ Code, Message string }
		if err := json.Unmarshal(r.body, &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%s: error body %s is not {\"code\",\"message\"}", what, r.body)
		}
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s: decoding %s: %v", what, r.body, err)
		}
	}
	return r
}

// code returns an error answer's code.
func (r *apiResp) code(t testing.TB) string {
	t.Helper()
	var e struct{ Code string }
	json.Unmarshal(r.body, &e)
	return e.Code
}

// expectError checks an error status and code.
func (r *apiResp) expectError(t testing.TB, what string, status int, code string) {
	t.Helper()
	r.expect(t, what, status, nil)
	if got := r.code(t); got != code {
		t.Fatalf("%s: error code %q, want %q; body %s", what, got, code, r.body)
	}
}

// pubResult is a publish answer.
type pubResult struct {
	ID         string `json:"id"`
	ReasonCode *int   `json:"reason_code"`
	Message    string `json:"message"`
	Code       string `json:"code"`
	Status     int    `json:"status"`
}

// publishHTTP publishes body and checks the status (200 delivered to some
// subscriber, 202 none).
func (c *apiClient) publishHTTP(t testing.TB, body map[string]any, status int) pubResult {
	t.Helper()
	var res pubResult
	c.do(t, http.MethodPost, "/publish", body).expect(t, fmt.Sprintf("publish %v", body["topic"]), status, &res)
	if status < 300 && len(res.ID) != 32 {
		t.Fatalf("publish id %q, want 32 hex digits", res.ID)
	}
	return res
}

// sse is a server-sent event stream.
type sse struct {
	res    *http.Response
	events chan sseEvent
	cancel context.CancelFunc
}

type sseEvent struct {
	name, data string
}

// watch opens GET /watch?filter=… and checks the status; for 200 it
// returns the stream, read in the background until the test ends.
func (c *apiClient) watch(t testing.TB, filter string, status int) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/watch?filter="+queryEscape(filter), nil)
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	for k, v := range c.extra {
		req.Header[k] = v
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("watch %q: %v", filter, err)
	}
	if res.StatusCode != status {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("watch %q: status %d, want %d; body %s", filter, res.StatusCode, status, body)
	}
	if status != http.StatusOK {
		res.Body.Close()
		cancel()
		return nil
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("watch: Content-Type %q", ct)
	}
	s := &sse{res: res, events: make(chan sseEvent, 64), cancel: cancel}
	t.Cleanup(s.close)
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				s.events <- sseEvent{name: "comment", data: line}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return s
}

func (s *sse) close() {
	s.cancel()
	s.res.Body.Close()
}

// next waits for the next event with this name (skipping others).
func (s *sse) next(t testing.TB, name string) sseEvent {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("watch stream ended while waiting for %q", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %q event within %v", name, waitTimeout)
		}
	}
}

// queryEscape escapes a query value.
func queryEscape(s string) string { return url.QueryEscape(s) }
