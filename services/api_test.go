package services_test

// HTTP API tests (/api/v1) against a real Server: embedded NATS and
// JetStream, SQLite, the in-process edge, paho and raw MQTT clients.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/tenant"
)

// TestAPIPublish covers POST /api/v1/publish: EMQX-compatible bodies,
// delivery to MQTT subscribers, "no matching subscribers", MQTT 5
// properties, and its 400, 413 and 429 answers.
func TestAPIPublish(t *testing.T) {
	t.Parallel()
	e := startAPI(t, withBroker(func(o *broker.Options) { o.MaxPacketSize = 4096 }))
	a := e.newAPITenant(t, "acme")
	in := newInbox()
	sub := connect(t, e.addr, "pub-sub", withCred(a.cred))
	subscribe(t, sub, "sensors/#", 1, in)

	t.Run("body variants", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			api  *apiClient
			body map[string]any
			want string
		}{
			{"plain, default encoding", a.api, map[string]any{"topic": "sensors/1", "payload": "21.5"}, "21.5"},
			{"payload_encoding plain", a.api, map[string]any{"topic": "sensors/2", "payload": "x", "payload_encoding": "plain"}, "x"},
			{"payload_encoding base64", a.api, map[string]any{"topic": "sensors/3", "payload": base64.StdEncoding.EncodeToString([]byte("b64")), "payload_encoding": "base64"}, "b64"},
			{"encoding alias base64", a.api, map[string]any{"topic": "sensors/4", "payload": "YWxpYXM=", "encoding": "base64", "qos": 1}, "alias"},
			{"QoS 2, EMQX clientid ignored", a.api, map[string]any{"topic": "sensors/5", "payload": "q2", "qos": 2, "clientid": "emqx-style"}, "q2"},
			{"no payload", a.api, map[string]any{"topic": "sensors/6"}, ""},
			{"HTTP Basic key", e.basic(a.key), map[string]any{"topic": "sensors/7", "payload": "basic"}, "basic"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.api.publishHTTP(t, tc.body, http.StatusOK)
				in.waitMessage(t, tc.body["topic"].(string), tc.want, waitTimeout)
			})
		}
	})

	t.Run("no matching subscribers", func(t *testing.T) {
		res := a.api.publishHTTP(t, map[string]any{"topic": "nobody/listens", "payload": "x", "qos": 1}, http.StatusAccepted)
		if res.ReasonCode == nil || *res.ReasonCode != 16 || res.Message != "no_matching_subscribers" {
			t.Fatalf("202 body %+v, want EMQX's reason_code 16 no_matching_subscribers", res)
		}
	})

	t.Run("MQTT 5 properties travel", func(t *testing.T) {
		rc := rawLoginV5(t, e.addr, "props-sub", a.cred)
		rc.rawSubscribe(1, []packet.ReasonCode{1}, packet.Subscription{Filter: "props/t", QoS: 1})
		a.api.publishHTTP(t, map[string]any{
			"topic": "props/t", "payload": "{}", "qos": 1,
			"properties": map[string]any{
				"payload_format_indicator": 1, "message_expiry_interval": 60, "content_type": "application/json",
				"response_topic": "props/reply", "correlation_data": "c-1",
				"user_properties": map[string]string{"b": "2", "a": "1"},
			},
		}, http.StatusOK)
		p := rc.expectPublish()
		pr := &p.Properties
		if pr.ContentType != "application/json" || pr.ResponseTopic != "props/reply" || string(pr.CorrelationData) != "c-1" ||
			pr.PayloadFormat != 1 || !pr.Has(packet.PropMessageExpiry) || pr.MessageExpiry == 0 || pr.MessageExpiry > 60 {
			t.Fatalf("properties %+v", pr)
		}
		if want := []packet.UserProperty{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}; !slices.Equal(pr.UserProperties, want) {
			t.Fatalf("user properties %v, want %v", pr.UserProperties, want)
		}
	})

	t.Run("400", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			body  any
			field string
		}{
			{"wildcard +", map[string]any{"topic": "a/+/b"}, "topic"},
			{"wildcard #", map[string]any{"topic": "a/#"}, "topic"},
			{"server topic", map[string]any{"topic": "$SYS/x"}, "topic"},
			{"empty topic", map[string]any{"topic": ""}, "topic"},
			{"NUL in topic", map[string]any{"topic": "a\u0000b"}, "topic"},
			{"QoS 3", map[string]any{"topic": "a", "qos": 3}, "qos"},
			{"QoS not a number", map[string]any{"topic": "a", "qos": "1"}, "qos"},
			{"bad base64", map[string]any{"topic": "a", "payload": "***", "encoding": "base64"}, "payload"},
			{"unknown encoding", map[string]any{"topic": "a", "payload": "x", "payload_encoding": "hex"}, "payload_encoding"},
			{"UTF-8 indicator on binary", map[string]any{"topic": "a", "payload": "/w==", "encoding": "base64", "properties": map[string]any{"payload_format_indicator": 1}}, "payload"},
			{"wildcard response topic", map[string]any{"topic": "a", "properties": map[string]any{"response_topic": "r/#"}}, "properties.response_topic"},
			{"negative expiry", map[string]any{"topic": "a", "properties": map[string]any{"message_expiry_interval": -1}}, "properties.message_expiry_interval"},
			{"malformed JSON", `{"topic": `, ""},
			{"not an object", `[1]`, ""},
			{"empty body", "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := a.api.do(t, http.MethodPost, "/publish", tc.body)
				r.expectError(t, tc.name, http.StatusBadRequest, "invalid")
				var e struct{ Field string }
				json.Unmarshal(r.body, &e)
				if e.Field != tc.field {
					t.Fatalf("field %q, want %q (body %s)", e.Field, tc.field, r.body)
				}
			})
		}
	})

	t.Run("413", func(t *testing.T) {
		big := strings.Repeat("x", 5000) // over the 4096-byte max packet size
		a.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "sensors/big", "payload": big}).
			expectError(t, "payload over the max packet size", http.StatusRequestEntityTooLarge, "too_large")
		huge := `{"topic":"a","payload":"` + strings.Repeat("x", 1<<20) + `"}`
		a.api.do(t, http.MethodPost, "/publish", huge).
			expectError(t, "body over the limit", http.StatusRequestEntityTooLarge, "too_large")
	})

	t.Run("429", func(t *testing.T) {
		b := e.newAPITenant(t, "slowpoke")
		e.setLimits(t, "slowpoke", tenant.Limits{MaxMessageRate: 1}) // burst 2
		got := map[int]int{}
		var retry string
		for range 4 {
			r := b.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "t", "payload": "x"})
			got[r.status]++
			if r.status == http.StatusTooManyRequests {
				r.expectError(t, "over the rate", http.StatusTooManyRequests, "rate_limited")
				retry = r.header.Get("Retry-After")
			}
		}
		if got[http.StatusTooManyRequests] == 0 || retry == "" {
			t.Fatalf("statuses %v, Retry-After %q: want 429s with Retry-After", got, retry)
		}
		if n, err := strconv.Atoi(retry); err != nil || n < 1 {
			t.Fatalf("Retry-After %q, want whole seconds ≥ 1", retry)
		}
		b.api.do(t, http.MethodPost, "/publish/batch", []map[string]any{{"topic": "t"}, {"topic": "t"}, {"topic": "t"}}).
			expectError(t, "batch over the burst (never possible)", http.StatusBadRequest, "invalid")
	})
}

// TestAPIPublishOfflineSession publishes QoS 1 over HTTP to a persistent
// session whose client is offline: it is stored before the answer and
// delivered when the client comes back; the session counts as a
// subscriber.
func TestAPIPublishOfflineSession(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	c := connect(t, e.addr, "fridge-1", withCred(a.cred), persistent())
	subscribe(t, c, "cmd/fridge-1/#", 1, nil)
	disconnect(c)
	waitUntil(t, "the client is gone", func() bool {
		var cs []map[string]any
		a.api.do(t, http.MethodGet, "/clients", nil).expect(t, "clients", http.StatusOK, &cs)
		return len(cs) == 0
	})

	for i := range 3 {
		a.api.publishHTTP(t, map[string]any{"topic": "cmd/fridge-1/defrost", "payload": fmt.Sprint(i), "qos": 1}, http.StatusOK)
	}
	var ss []struct {
		ClientID      string `json:"client_id"`
		Queued        int    `json:"queued"`
		ExpiresAt     *time.Time
		Subscriptions []struct{ Filter string }
	}
	a.api.do(t, http.MethodGet, "/sessions", nil).expect(t, "sessions", http.StatusOK, &ss)
	if len(ss) != 1 || ss[0].ClientID != "fridge-1" || ss[0].Queued != 3 || len(ss[0].Subscriptions) != 1 {
		t.Fatalf("sessions %+v, want fridge-1 with 3 queued", ss)
	}

	in := newInbox()
	connect(t, e.addr, "fridge-1", withCred(a.cred), persistent(), onMessage(in))
	got := in.exactly(t, 3)
	for i, m := range got {
		if m.Topic != "cmd/fridge-1/defrost" || m.Payload != fmt.Sprint(i) || m.QoS != 1 {
			t.Fatalf("message %d: %v", i, m)
		}
	}
}

// TestAPIBatch covers POST /api/v1/publish/batch (and EMQX's
// /publish/bulk): one result per message, in order.
func TestAPIBatch(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	e.addRule(t, "acme", "app:devices", denyPublish("secret/#"))
	in := newInbox()
	subscribe(t, connect(t, e.addr, "batch-sub", withCred(a.cred)), "b/#", 1, in)

	for _, path := range []string{"/publish/batch", "/publish/bulk"} {
		t.Run(path, func(t *testing.T) {
			var res []pubResult
			a.api.do(t, http.MethodPost, path, []map[string]any{
				{"topic": "b/1", "payload": "one", "qos": 1},
				{"topic": "b/+", "payload": "bad"},
				{"topic": "nobody/here", "payload": "x"},
				{"topic": "secret/x", "payload": "no"},
				{"topic": "b/2", "payload": "dHdv", "encoding": "base64"},
			}).expect(t, "batch", http.StatusOK, &res)
			if len(res) != 5 {
				t.Fatalf("%d results, want 5: %+v", len(res), res)
			}
			rc := func(r pubResult) int {
				if r.ReasonCode == nil {
					return 0
				}
				return *r.ReasonCode
			}
			for i, want := range []struct {
				id     bool
				rc     int
				status int
			}{{true, 0, 0}, {false, 0x90, 400}, {true, 16, 0}, {false, 0x87, 403}, {true, 0, 0}} {
				r := res[i]
				if (r.ID != "") != want.id || rc(r) != want.rc || r.Status != want.status {
					t.Errorf("result %d: %+v, want id %v reason %d status %d", i, r, want.id, want.rc, want.status)
				}
			}
			in.waitMessage(t, "b/1", "one", waitTimeout)
			in.waitMessage(t, "b/2", "two", waitTimeout)
		})
	}
	t.Run("400", func(t *testing.T) {
		many := make([]map[string]any, 101)
		for i := range many {
			many[i] = map[string]any{"topic": "b/x"}
		}
		a.api.do(t, http.MethodPost, "/publish/batch", many).expectError(t, "101 messages", http.StatusBadRequest, "invalid")
		a.api.do(t, http.MethodPost, "/publish/batch", []any{}).expectError(t, "no messages", http.StatusBadRequest, "invalid")
		a.api.do(t, http.MethodPost, "/publish/batch", map[string]any{"topic": "b/x"}).expectError(t, "an object", http.StatusBadRequest, "invalid")
	})
}

// TestAPIRetained covers the retained-message routes and what MQTT
// subscribers see of them.
func TestAPIRetained(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	q := "/retained/message?topic=" + queryEscape("config/fw version")

	a.api.do(t, http.MethodPut, q, map[string]any{"payload": "1.2.3", "qos": 1, "properties": map[string]any{"content_type": "text/plain"}}).
		expect(t, "PUT", http.StatusOK, nil)
	a.api.do(t, http.MethodPut, "/retained/message?topic=config/bin", map[string]any{"payload": "AP8=", "encoding": "base64"}).
		expect(t, "PUT binary", http.StatusOK, nil)

	in := newInbox()
	subscribe(t, connect(t, e.addr, "ret-sub", withCred(a.cred)), "config/#", 1, in)
	got := in.exactly(t, 2)
	if !slices.ContainsFunc(got, func(r received) bool { return r.Topic == "config/fw version" && r.Payload == "1.2.3" && r.Retained }) {
		t.Fatalf("MQTT subscriber got %v, want the retained config/fw version", got)
	}

	type retained struct {
		Topic       string
		QoS         int
		Payload     string
		PayloadText *string    `json:"payload_text"`
		PayloadSize int        `json:"payload_size"`
		ContentType string     `json:"content_type"`
		PublishedAt *time.Time `json:"published_at"`
	}
	var one retained
	a.api.do(t, http.MethodGet, q, nil).expect(t, "GET", http.StatusOK, &one)
	if one.Topic != "config/fw version" || one.QoS != 1 || one.Payload != base64.StdEncoding.EncodeToString([]byte("1.2.3")) ||
		one.PayloadText == nil || *one.PayloadText != "1.2.3" || one.PayloadSize != 5 || one.ContentType != "text/plain" ||
		one.PublishedAt == nil || time.Since(*one.PublishedAt) > time.Minute {
		t.Fatalf("GET: %+v", one)
	}
	type summary struct {
		Topic       string
		Payload     *string // never in a listing
		Preview     string
		PreviewText *string    `json:"preview_text"`
		PayloadSize int        `json:"payload_size"`
		PublishedAt *time.Time `json:"published_at"`
	}
	var list []summary
	a.api.do(t, http.MethodGet, "/retained?filter="+queryEscape("config/#")+"&limit=10", nil).expect(t, "list", http.StatusOK, &list)
	if len(list) != 2 || list[0].Topic != "config/bin" || list[0].PreviewText != nil || list[0].Preview != "AP8=" || list[0].Payload != nil ||
		list[1].Topic != "config/fw version" || list[1].PreviewText == nil || *list[1].PreviewText != "1.2.3" || list[1].PayloadSize != 5 || list[1].PublishedAt == nil {
		t.Fatalf("list: %+v", list)
	}
	a.api.do(t, http.MethodGet, "/retained?filter=other/%23", nil).expect(t, "list other", http.StatusOK, &list)
	if len(list) != 0 {
		t.Fatalf("other/#: %+v", list)
	}
	a.api.do(t, http.MethodGet, "/retained?filter=a/%23/b", nil).expectError(t, "bad filter", http.StatusBadRequest, "invalid")
	a.api.do(t, http.MethodGet, "/retained?limit=0", nil).expectError(t, "limit 0", http.StatusBadRequest, "invalid")
	a.api.do(t, http.MethodPut, q, map[string]any{"payload": ""}).expectError(t, "PUT empty", http.StatusBadRequest, "invalid")
	a.api.do(t, http.MethodGet, "/retained/message", nil).expectError(t, "no topic", http.StatusBadRequest, "invalid")

	a.api.do(t, http.MethodDelete, q, nil).expect(t, "DELETE", http.StatusNoContent, nil)
	a.api.do(t, http.MethodGet, q, nil).expectError(t, "GET deleted", http.StatusNotFound, "not_found")
	a.api.do(t, http.MethodDelete, q, nil).expectError(t, "DELETE again", http.StatusNotFound, "not_found")
	in2 := newInbox()
	subscribe(t, connect(t, e.addr, "ret-sub-2", withCred(a.cred)), "config/#", 1, in2)
	if got := in2.exactly(t, 1); got[0].Topic != "config/bin" {
		t.Fatalf("after DELETE a new subscriber got %v, want config/bin only", got)
	}
}

// TestAPILive covers clients (list, get, kick), topics and usage metrics.
func TestAPILive(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	lost := make(chan error, 1)
	dev := connect(t, e.addr, "dev 1/a", withCred(a.cred), persistent(), onLost(lost))
	subscribe(t, dev, "cmd/dev1/#", 1, nil)
	subscribe(t, dev, "status/+", 0, nil)
	other := connect(t, e.addr, "dev-2", withCred(a.cred))
	subscribe(t, other, "status/+", 0, newInbox())
	for range 5 {
		publish(t, other, "status/dev-2", 0, false, "online")
	}

	type client struct {
		ClientID      string `json:"client_id"`
		Username      string
		Credential    string
		Node          string
		RemoteAddr    string `json:"remote_addr"`
		ProtoVer      int    `json:"proto_ver"`
		KeepAlive     int
		Persistent    bool
		ConnectedAt   time.Time `json:"connected_at"`
		Subscriptions []struct {
			Filter string
			QoS    int
		}
		MessagesIn int `json:"messages_in"`
	}
	id := "/clients/" + strings.ReplaceAll(queryEscape("dev 1/a"), "+", "%20")
	t.Run("clients", func(t *testing.T) {
		var cs []client
		a.api.do(t, http.MethodGet, "/clients", nil).expect(t, "clients", http.StatusOK, &cs)
		if len(cs) != 2 || cs[0].ClientID != "dev 1/a" || cs[1].ClientID != "dev-2" {
			t.Fatalf("clients %+v", cs)
		}
		c := cs[0]
		if c.Credential != userOf(a.cred) || c.Username != a.cred.Username || c.Node != "test-node" || c.ProtoVer != 4 ||
			!c.Persistent || c.KeepAlive != 30 || c.RemoteAddr == "" || time.Since(c.ConnectedAt) > time.Minute || len(c.Subscriptions) != 2 ||
			c.Subscriptions[0].Filter != "cmd/dev1/#" || c.Subscriptions[0].QoS != 1 {
			t.Fatalf("client %+v", c)
		}
		var one client
		a.api.do(t, http.MethodGet, id, nil).expect(t, "GET client", http.StatusOK, &one)
		if one.ClientID != "dev 1/a" {
			t.Fatalf("GET client: %+v", one)
		}
		a.api.do(t, http.MethodGet, "/clients/nobody", nil).expectError(t, "GET unknown client", http.StatusNotFound, "not_found")
		a.api.do(t, http.MethodGet, "/clients?limit=1", nil).expect(t, "limit", http.StatusOK, &cs)
		if len(cs) != 1 {
			t.Fatalf("limit 1: %d clients", len(cs))
		}
	})

	t.Run("topics", func(t *testing.T) {
		var ts []struct {
			Filter      string
			Subscribers int
			Messages    int
		}
		want := map[string]int{"cmd/dev1/#": 1, "status/+": 2}
		waitUntil(t, "status/+ delivered 10 messages", func() bool {
			a.api.do(t, http.MethodGet, "/topics", nil).expect(t, "topics", http.StatusOK, &ts)
			return len(ts) == 2 && ts[1].Messages >= 10
		})
		for _, tp := range ts {
			if want[tp.Filter] != tp.Subscribers {
				t.Fatalf("topics %+v, want subscribers %v", ts, want)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		type usage struct {
			IntervalS int `json:"interval_s"`
			Samples   []struct {
				T                       time.Time
				Connections, MessagesIn int
				MessagesOut             int `json:"messages_out"`
			}
		}
		var u usage
		waitUntil(t, "a usage sample shows the connections", func() bool {
			a.api.do(t, http.MethodGet, "/metrics?minutes=1", nil).expect(t, "metrics", http.StatusOK, &u)
			return len(u.Samples) > 0 && u.Samples[len(u.Samples)-1].Connections == 2
		})
		for range 3 {
			publish(t, other, "status/dev-2", 0, false, "online")
		}
		waitUntil(t, "a usage sample counts messages", func() bool {
			a.api.do(t, http.MethodGet, "/metrics?minutes=1", nil).expect(t, "metrics", http.StatusOK, &u)
			out := 0
			for _, s := range u.Samples {
				out += s.MessagesOut
			}
			return out >= 6
		})
		if u.IntervalS != 1 {
			t.Errorf("interval_s %d, want 1 (100 ms rounded up)", u.IntervalS)
		}
		a.api.do(t, http.MethodGet, "/metrics?minutes=0", nil).expectError(t, "minutes 0", http.StatusBadRequest, "invalid")
		a.api.do(t, http.MethodGet, "/metrics?minutes=1000", nil).expectError(t, "minutes 1000", http.StatusBadRequest, "invalid")
	})

	t.Run("kick", func(t *testing.T) {
		a.api.do(t, http.MethodDelete, id, nil).expect(t, "kick", http.StatusNoContent, nil)
		waitLost(t, lost, "kicked client", waitTimeout)
		a.api.do(t, http.MethodGet, id, nil).expectError(t, "GET kicked", http.StatusNotFound, "not_found")
		a.api.do(t, http.MethodDelete, id, nil).expectError(t, "kick again", http.StatusNotFound, "not_found")
		var ss []struct {
			ClientID string `json:"client_id"`
		}
		a.api.do(t, http.MethodGet, "/sessions", nil).expect(t, "sessions", http.StatusOK, &ss)
		if len(ss) != 1 || ss[0].ClientID != "dev 1/a" {
			t.Fatalf("sessions after the kick: %+v, want the persistent session of dev 1/a", ss)
		}
	})
}

// TestAPIWatch covers GET /api/v1/watch (server-sent events).
func TestAPIWatch(t *testing.T) {
	t.Parallel()
	e := startAPI(t, func(c *services.ServeConfig) {
		c.API.MaxWatchers = 2
		c.API.WatchHeartbeat = 100 * time.Millisecond
	})
	a := e.newAPITenant(t, "acme")
	e.addRule(t, "acme", "app:devices", denySubscribe("private/#"))
	w := a.api.watch(t, "alerts/#", http.StatusOK)
	pub := connect(t, e.addr, "watch-pub", withCred(a.cred))
	publish(t, pub, "alerts/fire", 1, false, "hot")
	ev := w.next(t, "message")
	var m struct {
		Topic       string
		QoS         int
		Retain      bool
		Payload     string
		PayloadText *string `json:"payload_text"`
	}
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	if m.Topic != "alerts/fire" || m.QoS != 1 || m.Payload != "aG90" || m.PayloadText == nil || *m.PayloadText != "hot" {
		t.Fatalf("event %+v", m)
	}
	w.next(t, "comment") // heartbeat

	// A watch counts as a subscriber of an HTTP publish.
	a.api.publishHTTP(t, map[string]any{"topic": "alerts/http", "payload": "x"}, http.StatusOK)
	if ev := w.next(t, "message"); !strings.Contains(ev.data, `"alerts/http"`) {
		t.Fatalf("event %s", ev.data)
	}

	a.api.watch(t, "private/#", http.StatusForbidden)
	a.api.watch(t, "$share/g/alerts/#", http.StatusBadRequest)
	a.api.watch(t, "a/#/b", http.StatusBadRequest)
	a.api.watch(t, "more/#", http.StatusOK)
	a.api.watch(t, "third/#", http.StatusTooManyRequests) // MaxWatchers 2
}

// TestAPIACL covers ACL denial of messages and the ACL routes.
func TestAPIACL(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	rule := map[string]any{"subject": "app:devices", "effect": "deny", "action": "publish", "filter": "secret/#"}
	a.api.do(t, http.MethodPost, "/acl", rule).expect(t, "add rule", http.StatusCreated, nil)

	a.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "secret/x", "payload": "p"}).
		expectError(t, "publish denied", http.StatusForbidden, "forbidden")
	a.api.do(t, http.MethodPut, "/retained/message?topic=secret/x", map[string]any{"payload": "p"}).
		expectError(t, "retain denied", http.StatusForbidden, "forbidden")
	a.api.publishHTTP(t, map[string]any{"topic": "open/x", "payload": "p"}, http.StatusAccepted)

	var rules []map[string]string
	a.api.do(t, http.MethodGet, "/acl", nil).expect(t, "list", http.StatusOK, &rules)
	if !slices.ContainsFunc(rules, func(r map[string]string) bool {
		return r["subject"] == "app:devices" && r["effect"] == "deny" && r["action"] == "publish" && r["filter"] == "secret/#"
	}) {
		t.Fatalf("rules %v", rules)
	}
	for _, tc := range []struct {
		name, field string
		rule        map[string]any
	}{
		{"bad filter", "filter", map[string]any{"subject": "app:devices", "effect": "allow", "action": "all", "filter": "a/#/b"}},
		{"placeholder inside a level", "filter", map[string]any{"subject": "app:devices", "effect": "allow", "action": "all", "filter": "a/x%c"}},
		{"bad subject", "subject", map[string]any{"subject": "devices", "effect": "allow", "action": "all", "filter": "a"}},
		{"bad effect", "effect", map[string]any{"subject": "app:devices", "effect": "maybe", "action": "all", "filter": "a"}},
		{"bad action", "action", map[string]any{"subject": "app:devices", "effect": "allow", "action": "read", "filter": "a"}},
	} {
		r := a.api.do(t, http.MethodPost, "/acl", tc.rule)
		r.expectError(t, tc.name, http.StatusBadRequest, "invalid")
		if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
			t.Errorf("%s: body %s, want field %q", tc.name, r.body, tc.field)
		}
	}
	a.api.do(t, http.MethodDelete, "/acl", rule).expect(t, "remove", http.StatusNoContent, nil)
	a.api.do(t, http.MethodDelete, "/acl", rule).expectError(t, "remove again", http.StatusNotFound, "not_found")
	waitUntil(t, "the removed rule stops denying", func() bool {
		return a.api.do(t, http.MethodPost, "/publish", map[string]any{"topic": "secret/x"}).status == http.StatusAccepted
	})
}

// TestAPIManage covers apps, credentials (create, rotate, revoke) and API
// keys.
func TestAPIManage(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")

	t.Run("apps", func(t *testing.T) {
		a.api.do(t, http.MethodPost, "/apps", map[string]any{"name": "backend"}).expect(t, "create", http.StatusCreated, nil)
		a.api.do(t, http.MethodPost, "/apps", map[string]any{"name": "backend"}).expectError(t, "duplicate", http.StatusConflict, "conflict")
		a.api.do(t, http.MethodPost, "/apps", map[string]any{"name": "no spaces"}).expectError(t, "bad name", http.StatusBadRequest, "invalid")
		var apps []struct{ Name string }
		a.api.do(t, http.MethodGet, "/apps", nil).expect(t, "list", http.StatusOK, &apps)
		if len(apps) != 2 || apps[0].Name != "backend" || apps[1].Name != "devices" {
			t.Fatalf("apps %+v", apps)
		}
	})

	type cred struct {
		Username     string
		MQTTUsername string `json:"mqtt_username"`
		Password     string
		App          string
		Revoked      bool
	}
	var cr cred
	t.Run("credentials", func(t *testing.T) {
		a.api.do(t, http.MethodPost, "/credentials", map[string]any{"app": "backend", "username": "sensor-7", "client_id_pattern": "%u-#"}).
			expect(t, "create", http.StatusCreated, &cr)
		if cr.Username != "sensor-7" || cr.MQTTUsername != "sensor-7@acme" || len(cr.Password) < 20 || cr.App != "backend" {
			t.Fatalf("created %+v", cr)
		}
		var gen cred
		a.api.do(t, http.MethodPost, "/credentials", map[string]any{"app": "backend"}).expect(t, "create generated", http.StatusCreated, &gen)
		if !strings.HasPrefix(gen.Username, "backend-") {
			t.Fatalf("generated username %q", gen.Username)
		}
		a.api.do(t, http.MethodPost, "/credentials", map[string]any{"app": "backend", "username": "sensor-7"}).expectError(t, "duplicate", http.StatusConflict, "conflict")
		a.api.do(t, http.MethodPost, "/credentials", map[string]any{"app": "nope"}).expectError(t, "unknown app", http.StatusNotFound, "not_found")
		a.api.do(t, http.MethodPost, "/credentials", map[string]any{"app": "backend", "username": "a@b"}).expectError(t, "bad username", http.StatusBadRequest, "invalid")
		a.api.do(t, http.MethodPost, "/credentials", map[string]any{}).expectError(t, "no app", http.StatusBadRequest, "invalid")
		r := a.api.do(t, http.MethodGet, "/credentials?app=backend", nil)
		var list []cred
		r.expect(t, "list", http.StatusOK, &list)
		if len(list) != 2 || list[1].Username != "sensor-7" || list[1].Password != "" || strings.Contains(string(r.body), cr.Password) {
			t.Fatalf("list %s", r.body)
		}
		a.api.do(t, http.MethodGet, "/credentials?app=nope", nil).expectError(t, "list unknown app", http.StatusNotFound, "not_found")
	})

	t.Run("rotate and revoke", func(t *testing.T) {
		old := *a.cred
		old.Username, old.Password = cr.MQTTUsername, cr.Password
		lost := make(chan error, 1)
		connect(t, e.addr, "sensor-7-a", withCred(&old), onLost(lost))
		var rot cred
		a.api.do(t, http.MethodPost, "/credentials/sensor-7/rotate", nil).expect(t, "rotate", http.StatusOK, &rot)
		if rot.Password == "" || rot.Password == cr.Password || rot.Username != "sensor-7" {
			t.Fatalf("rotated %+v", rot)
		}
		checkLive(t, "rotation kick", waitLost(t, lost, "client with the old secret", livePoll))
		expectConnack(t, e.addr, "old secret", login(packet.V311, "sensor-7-b", old.Username, old.Password), packet.ConnRefusedBadCredentials)
		nw := old
		nw.Password = rot.Password
		connect(t, e.addr, "sensor-7-c", withCred(&nw))

		a.api.do(t, http.MethodDelete, "/credentials/sensor-7", nil).expect(t, "revoke", http.StatusNoContent, nil)
		expectConnack(t, e.addr, "revoked", login(packet.V311, "sensor-7-d", nw.Username, nw.Password), packet.ConnRefusedBadCredentials)
		a.api.do(t, http.MethodPost, "/credentials/sensor-7/rotate", nil).expectError(t, "rotate revoked", http.StatusConflict, "conflict")
		a.api.do(t, http.MethodDelete, "/credentials/nobody", nil).expectError(t, "revoke unknown", http.StatusNotFound, "not_found")
		a.api.do(t, http.MethodPost, "/credentials/nobody/rotate", nil).expectError(t, "rotate unknown", http.StatusNotFound, "not_found")
	})

	t.Run("API keys", func(t *testing.T) {
		var k struct{ Key, Prefix, App string }
		a.api.do(t, http.MethodPost, "/apikeys", map[string]any{"app": "backend"}).expect(t, "create", http.StatusCreated, &k)
		if !strings.HasPrefix(k.Key, k.Prefix+".") || k.App != "backend" {
			t.Fatalf("created %+v", k)
		}
		nk := e.client(k.Key)
		nk.do(t, http.MethodGet, "/tenant", nil).expect(t, "new key works", http.StatusOK, nil)
		r := a.api.do(t, http.MethodGet, "/apikeys", nil)
		var keys []struct {
			Prefix, App string
			Revoked     bool
		}
		r.expect(t, "list", http.StatusOK, &keys)
		_, secret, _ := strings.Cut(k.Key, ".")
		if len(keys) != 2 || keys[0].Prefix != k.Prefix || keys[0].App != "backend" || strings.Contains(string(r.body), secret) {
			t.Fatalf("list %s", r.body)
		}
		a.api.do(t, http.MethodGet, "/apikeys?app=backend", nil).expect(t, "list one app's", http.StatusOK, &keys)
		if len(keys) != 1 || keys[0].Prefix != k.Prefix {
			t.Fatalf("keys of backend: %+v", keys)
		}
		a.api.do(t, http.MethodGet, "/apikeys?app=nope", nil).expectError(t, "list unknown app", http.StatusNotFound, "not_found")
		a.api.do(t, http.MethodPost, "/apikeys", map[string]any{"app": "nope"}).expectError(t, "unknown app", http.StatusNotFound, "not_found")
		a.api.do(t, http.MethodDelete, "/apikeys/"+k.Prefix, nil).expect(t, "revoke", http.StatusNoContent, nil)
		nk.do(t, http.MethodGet, "/tenant", nil).expectError(t, "revoked key", http.StatusUnauthorized, "unauthorized")
		a.api.do(t, http.MethodDelete, "/apikeys/rk_000000000000", nil).expectError(t, "revoke unknown", http.StatusNotFound, "not_found")
	})

	t.Run("tenant", func(t *testing.T) {
		var tv struct {
			Slug, Name, Status, Hostname string
			Limits                       map[string]int
			CreatedAt                    time.Time `json:"created_at"`
		}
		a.api.do(t, http.MethodGet, "/tenant", nil).expect(t, "tenant", http.StatusOK, &tv)
		if tv.Slug != "acme" || tv.Status != "active" || tv.Hostname != "acme.relay.localhost" || tv.Limits == nil || tv.CreatedAt.IsZero() {
			t.Fatalf("tenant %+v", tv)
		}
	})
}

// TestAPIAuth covers authentication: 401s, a suspended tenant's 403,
// operator routes, the public OpenAPI document, and the throttle of wrong
// keys (429).
func TestAPIAuth(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "acme")
	s := e.newAPITenant(t, "sleepy")

	prefix, _, _ := strings.Cut(a.key, ".")
	for _, tc := range []struct {
		name string
		c    *apiClient
	}{
		{"no credentials", e.anonymous()},
		{"wrong secret", e.client(prefix + ".wrong")},
		{"unknown prefix", e.client("rk_ffffffffffff.secret")},
		{"no dot", e.client("garbage")},
		{"unknown scheme", &apiClient{base: e.base, auth: "Token " + a.key, hc: httpClient}},
		{"Basic without colon", &apiClient{base: e.base, auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(prefix)), hc: httpClient}},
	} {
		tc.c.do(t, http.MethodGet, "/tenant", nil).expectError(t, tc.name, http.StatusUnauthorized, "unauthorized")
	}
	a.api.do(t, http.MethodGet, "/admin/tenants", nil).expectError(t, "operator route with a key", http.StatusForbidden, "forbidden")
	a.api.do(t, http.MethodGet, "/admin/health", nil).expectError(t, "operator health with a key", http.StatusForbidden, "forbidden")
	a.api.do(t, http.MethodGet, "/nothing/here", nil).expectError(t, "unknown route", http.StatusNotFound, "not_found")

	r := e.anonymous().do(t, http.MethodGet, "/openapi.yaml", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(string(r.body), "openapi: 3.0") {
		t.Fatalf("openapi.yaml: %d %.60s", r.status, r.body)
	}

	if _, err := e.adm.SetStatus(opCtx(t), actor, "sleepy", tenant.Suspended); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the suspended tenant's key is refused", func() bool {
		return s.api.do(t, http.MethodGet, "/tenant", nil).status == http.StatusForbidden
	})
	s.api.do(t, http.MethodGet, "/tenant", nil).expectError(t, "suspended", http.StatusForbidden, "forbidden")

	// Wrong keys from one address: 10 in a minute block it (even with a
	// good key) for 2 s.
	var retry string
	for i := 0; i < 20 && retry == ""; i++ {
		r := e.client(prefix+".wrong").do(t, http.MethodGet, "/tenant", nil)
		if r.status == http.StatusTooManyRequests {
			r.expectError(t, "throttled", http.StatusTooManyRequests, "rate_limited")
			retry = r.header.Get("Retry-After")
		}
	}
	if retry == "" {
		t.Fatal("20 wrong keys were never throttled")
	}
	a.api.do(t, http.MethodGet, "/tenant", nil).expectError(t, "good key from a throttled address", http.StatusTooManyRequests, "rate_limited")
}

// TestAPICrossTenant checks that tenant A's key can never reach tenant
// B's topics, retained messages, clients, sessions, credentials, keys or
// rules: everything of B is "not found" or absent for A.
func TestAPICrossTenant(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	a := e.newAPITenant(t, "alpha")
	b := e.newAPITenant(t, "beta")
	e.addRule(t, "beta", "app:devices", denyPublish("beta-only/#"))
	bIn := newInbox()
	bLost := make(chan error, 1)
	bc := connect(t, e.addr, "b-dev", withCred(b.cred), persistent(), onLost(bLost))
	subscribe(t, bc, "shared/#", 1, bIn)
	b.api.do(t, http.MethodPut, "/retained/message?topic=shared/r", map[string]any{"payload": "b-secret"}).expect(t, "B retains", http.StatusOK, nil)
	bIn.wait(t, 0)
	bUser := userOf(b.cred)
	bPrefix, _, _ := strings.Cut(b.key, ".")

	absent := func(path string, forbidden ...string) func(t *testing.T) {
		return func(t *testing.T) {
			r := a.api.do(t, http.MethodGet, path, nil)
			r.expect(t, path, http.StatusOK, nil)
			for _, f := range forbidden {
				if strings.Contains(string(r.body), f) {
					t.Fatalf("A's %s shows B's %q: %s", path, f, r.body)
				}
			}
		}
	}
	notFound := func(method, path string, body any) func(t *testing.T) {
		return func(t *testing.T) {
			a.api.do(t, method, path, body).expectError(t, method+" "+path, http.StatusNotFound, "not_found")
		}
	}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"publish to B's topic reaches nobody", func(t *testing.T) {
			a.api.publishHTTP(t, map[string]any{"topic": "shared/x", "payload": "from-a", "qos": 1}, http.StatusAccepted)
		}},
		{"retained list", absent("/retained?filter=%23", "shared/r", base64.StdEncoding.EncodeToString([]byte("b-secret")))},
		{"retained get", notFound(http.MethodGet, "/retained/message?topic=shared/r", nil)},
		{"retained delete", notFound(http.MethodDelete, "/retained/message?topic=shared/r", nil)},
		{"clients list", absent("/clients", "b-dev")},
		{"client get", notFound(http.MethodGet, "/clients/b-dev", nil)},
		{"client kick", notFound(http.MethodDelete, "/clients/b-dev", nil)},
		{"sessions", absent("/sessions", "b-dev")},
		{"topics", absent("/topics", "shared/#")},
		{"credentials list", absent("/credentials", bUser)},
		{"credential rotate", notFound(http.MethodPost, "/credentials/"+bUser+"/rotate", nil)},
		{"credential rotate with B's suffix", notFound(http.MethodPost, "/credentials/"+b.cred.Username+"/rotate", nil)},
		{"credential revoke", notFound(http.MethodDelete, "/credentials/"+bUser, nil)},
		{"API keys list", absent("/apikeys", bPrefix)},
		{"API key revoke", notFound(http.MethodDelete, "/apikeys/"+bPrefix, nil)},
		{"ACL list", absent("/acl", "beta-only")},
		{"ACL remove", notFound(http.MethodDelete, "/acl", map[string]any{"subject": "app:devices", "effect": "deny", "action": "publish", "filter": "beta-only/#"})},
		{"credential of B's app", notFound(http.MethodPost, "/credentials", map[string]any{"app": "ghost-of-beta"})},
	} {
		t.Run(tc.name, tc.fn)
	}

	// B is untouched: no message from A, still connected, key and
	// credential working; A's watch sees nothing of B.
	aw := a.api.watch(t, "shared/#", http.StatusOK)
	publish(t, bc, "shared/b", 1, false, "from-b")
	bIn.waitMessage(t, "shared/b", "from-b", waitTimeout)
	for _, m := range bIn.all() {
		if m.Payload == "from-a" {
			t.Fatalf("B received A's message %v", m)
		}
	}
	stillConnected(t, bLost, "B's client")
	b.api.do(t, http.MethodGet, "/tenant", nil).expect(t, "B's key", http.StatusOK, nil)
	a.api.publishHTTP(t, map[string]any{"topic": "shared/a", "payload": "marker"}, http.StatusOK) // A's own watch matches
	if ev := aw.next(t, "message"); !strings.Contains(ev.data, `"marker"`) {
		t.Fatalf("A's watch got %s before its own marker (B's messages leaked)", ev.data)
	}
}

// TestAPIControlMode runs the API in a control process (relay control
// --http-addr) beside a separate edge on an external NATS: HTTP publishes
// reach the edge's clients, the clients list comes from the edge, and
// with JetStream or NATS down the API answers 503.
func TestAPIControlMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns, err := services.StartEmbeddedNATS(services.EmbeddedNATSConfig{DataDir: dir, Addr: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var nsOnce sync.Once
	stopNATS := func() { nsOnce.Do(func() { ns.Shutdown(); ns.WaitForShutdown() }) }
	t.Cleanup(stopNATS)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	ctl, err := services.OpenControl(ctx, services.ControlConfig{
		DatabaseURL: filepath.Join(dir, "relay.db"), SecretKeyFile: filepath.Join(dir, "secret.key"), Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := ctl.Serve(ctx, nc); err != nil {
		t.Fatal(err)
	}
	edge, err := services.NewEdge(services.EdgeConfig{
		NodeID: "edge-1", NATSURLs: []string{ns.ClientURL()}, MQTTAddr: "127.0.0.1:0", Logger: testLogger(t),
		Bus: natsbusMemory(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var edgeOnce sync.Once
	closeEdge := func() { edgeOnce.Do(func() { edge.Close() }) }
	t.Cleanup(closeEdge)
	if err := ctl.ServeHTTP(ctx, nc, services.ControlHTTPConfig{Addr: "127.0.0.1:0", NodeID: "control-1", Bus: natsbusMemory()}); err != nil {
		t.Fatal(err)
	}
	e := &apiEnv{tenancyEnv: &tenancyEnv{adm: ctl.Admin(), addr: edge.MQTTAddr().String(), dir: dir}, base: "http://" + ctl.HTTPAddr().String() + "/api/v1"}
	a := e.newAPITenant(t, "acme")

	in := newInbox()
	subscribe(t, connect(t, e.addr, "edge-dev", withCred(a.cred)), "c/#", 1, in)
	a.api.publishHTTP(t, map[string]any{"topic": "c/1", "payload": "via control", "qos": 1}, http.StatusOK)
	in.waitMessage(t, "c/1", "via control", waitTimeout)
	var cs []struct {
		ClientID string `json:"client_id"`
		Node     string
	}
	a.api.do(t, http.MethodGet, "/clients", nil).expect(t, "clients", http.StatusOK, &cs)
	if len(cs) != 1 || cs[0].ClientID != "edge-dev" || cs[0].Node != "edge-1" {
		t.Fatalf("clients %+v", cs)
	}

	// The edge goes away: its clients with it.
	closeEdge()
	a.api.do(t, http.MethodGet, "/clients", nil).expect(t, "clients without edges", http.StatusOK, &cs)
	if len(cs) != 0 {
		t.Fatalf("clients after the edge closed: %+v", cs)
	}

	// JetStream down: stored messages cannot be stored.
	ns.DisableJetStream()
	a.api.do(t, http.MethodPut, "/retained/message?topic=c/r", map[string]any{"payload": "x"}).
		expectError(t, "retain with JetStream down", http.StatusServiceUnavailable, "unavailable")
	a.api.do(t, http.MethodGet, "/sessions", nil).expectError(t, "sessions with JetStream down", http.StatusServiceUnavailable, "unavailable")

	// NATS down: everything that needs the backbone.
	stopNATS()
	waitUntil(t, "the control process notices", func() bool { return !nc.IsConnected() })
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/publish"}, {http.MethodGet, "/clients"}, {http.MethodGet, "/topics"}, {http.MethodGet, "/retained"},
	} {
		var body any
		if tc.method == http.MethodPost {
			body = map[string]any{"topic": "c/2", "payload": "x"}
		}
		a.api.do(t, tc.method, tc.path, body).expectError(t, tc.path+" with NATS down", http.StatusServiceUnavailable, "unavailable")
	}
}

// natsbusMemory keeps test streams in memory.
func natsbusMemory() natsbus.Options { return natsbus.Options{Memory: true} }

// BenchmarkAPIPublish measures HTTP publish throughput (requests/s) on a
// real Server, 8 parallel HTTP clients: single publishes and batches of
// 100, QoS 0 and 1 to a topic a live MQTT client subscribes to, and QoS 1
// to a topic an offline persistent session holds (each message stored in
// JetStream before the answer).
//
//	go test ./services -run '^$' -bench BenchmarkAPIPublish -benchtime 3s
func BenchmarkAPIPublish(b *testing.B) {
	e := startAPI(b, func(c *services.ServeConfig) { c.API.PublishRate, c.API.PublishBurst = 1e9, 1<<30 })
	a := e.newAPITenant(b, "bench")
	var got atomic.Int64
	sub := connect(b, e.addr, "bench-sub", withCred(a.cred))
	if tok := sub.Subscribe("bench/#", 0, func(mqtt.Client, mqtt.Message) { got.Add(1) }); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		b.Fatal("subscribe failed")
	}
	// A persistent session, offline, holding bench/stored/#: every QoS 1
	// message to it is stored in JetStream before the answer.
	st := connect(b, e.addr, "bench-store", withCred(a.cred), persistent())
	subscribe(b, st, "bench/stored/#", 1, nil)
	disconnect(st)
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	run := func(b *testing.B, qos int, batch int, topic string) {
		one := fmt.Sprintf(`{"topic":%q,"payload":"0123456789abcdef0123456789abcdef","qos":%d}`, topic, qos)
		body := one
		path := "/publish"
		if batch > 0 {
			path = "/publish/batch"
			body = "[" + strings.TrimSuffix(strings.Repeat(one+",", batch), ",") + "]"
		}
		b.SetParallelism(8)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+a.key)
				res, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
		})
		el := time.Since(start).Seconds()
		b.ReportMetric(float64(b.N)/el, "req/s")
		if batch > 0 {
			b.ReportMetric(float64(b.N*batch)/el, "msg/s")
		}
	}
	b.Run("single-qos0", func(b *testing.B) { run(b, 0, 0, "bench/t") })
	b.Run("single-qos1", func(b *testing.B) { run(b, 1, 0, "bench/t") })
	b.Run("single-qos1-stored", func(b *testing.B) { run(b, 1, 0, "bench/stored/t") })
	b.Run("single-qos0-nosubscriber", func(b *testing.B) { run(b, 0, 0, "nobody/t") })
	b.Run("batch100-qos0", func(b *testing.B) { run(b, 0, 100, "bench/t") })
	b.Run("batch100-qos1", func(b *testing.B) { run(b, 1, 100, "bench/t") })
	b.Run("batch100-qos1-stored", func(b *testing.B) { run(b, 1, 100, "bench/stored/t") })
}
