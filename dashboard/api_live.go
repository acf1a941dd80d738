package dashboard

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// Live state: clients, offline sessions, topics, usage, and watching a
// topic filter over server-sent events.

// credentialNames maps the tenant's credential IDs to usernames.
func (s *Server) credentialNames(c echo.Context, slug string) map[string]string {
	creds, err := s.cfg.Tenancy.ListCredentials(c.Request().Context(), slug, "")
	if err != nil {
		s.log.Debug("credential names", "tenant", slug, "err", err)
		return nil
	}
	out := make(map[string]string, len(creds))
	for _, cr := range creds {
		out[cr.ID] = cr.Username
	}
	return out
}

// listClients handles GET /api/v1/clients?limit=1000.
func (s *Server) listClients(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 1000, 1, 10000)
	if err != nil {
		return err
	}
	cl, err := s.api.cluster()
	if err != nil {
		return err
	}
	cs, truncated, err := cl.Clients(c.Request().Context(), k.Tenant, limit)
	if err != nil {
		return err
	}
	names := s.credentialNames(c, k.Tenant)
	for i := range cs {
		cs[i].Credential = names[cs[i].CredentialID]
	}
	if cs == nil {
		cs = []ClientInfo{}
	}
	if truncated {
		c.Response().Header().Set("X-Truncated", "true")
	}
	return c.JSON(http.StatusOK, cs)
}

// getClient handles GET /api/v1/clients/:clientid (404 unless connected).
func (s *Server) getClient(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	id, err := pathParam(c, "clientid")
	if err != nil {
		return err
	}
	cl, err := s.api.cluster()
	if err != nil {
		return err
	}
	ci, err := cl.Client(c.Request().Context(), k.Tenant, id)
	if err != nil {
		return err
	}
	ci.Credential = s.credentialNames(c, k.Tenant)[ci.CredentialID]
	return c.JSON(http.StatusOK, ci)
}

// kickClient handles DELETE /api/v1/clients/:clientid: the client is
// disconnected (MQTT 5: administrative action); its persistent session
// stays. 404 unless connected.
func (s *Server) kickClient(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	id, err := pathParam(c, "clientid")
	if err != nil {
		return err
	}
	cl, err := s.api.cluster()
	if err != nil {
		return err
	}
	if err := cl.Kick(c.Request().Context(), k.Tenant, id); err != nil {
		return err
	}
	s.log.Info("client kicked over HTTP", "tenant", k.Tenant, "client", id, "actor", k.Actor)
	return c.NoContent(http.StatusNoContent)
}

// listSessions handles GET /api/v1/sessions?limit=1000: offline persistent
// sessions with their queue depth.
func (s *Server) listSessions(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	limit, err := intQuery(c, "limit", 1000, 1, 10000)
	if err != nil {
		return err
	}
	cl, err := s.api.cluster()
	if err != nil {
		return err
	}
	ss, truncated, err := cl.Sessions(c.Request().Context(), k.Tenant, limit)
	if err != nil {
		return err
	}
	if ss == nil {
		ss = []SessionInfo{}
	}
	if truncated {
		c.Response().Header().Set("X-Truncated", "true")
	}
	return c.JSON(http.StatusOK, ss)
}

// listTopics handles GET /api/v1/topics.
func (s *Server) listTopics(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	cl, err := s.api.cluster()
	if err != nil {
		return err
	}
	ts, err := cl.Topics(c.Request().Context(), k.Tenant)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []TopicInfo{}
	}
	return c.JSON(http.StatusOK, ts)
}

// maxUsageMinutes is the longest usage window served (the history kept).
const maxUsageMinutes = 6 * 60

// getMetrics handles GET /api/v1/metrics?minutes=60.
func (s *Server) getMetrics(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	minutes, err := intQuery(c, "minutes", 60, 1, maxUsageMinutes)
	if err != nil {
		return err
	}
	if s.api.deps.Cluster == nil {
		return noBackbone
	}
	u := s.api.deps.Cluster.Usage(k.Tenant, time.Duration(minutes)*time.Minute)
	if u.Samples == nil {
		u.Samples = []UsageSample{}
	}
	return c.JSON(http.StatusOK, u)
}

// ---------------------------------------------------------------------------
// Watch (server-sent events)

// watchEvent is the data of an SSE "message" event.
type watchEvent struct {
	Topic  string `json:"topic"`
	QoS    byte   `json:"qos"`
	Retain bool   `json:"retain"`
	// Payload is base64; PayloadText the same payload when it is UTF-8.
	Payload     string  `json:"payload"`
	PayloadText *string `json:"payload_text,omitempty"`
}

// watchTopic handles GET /api/v1/watch?filter=…: a text/event-stream of
// the tenant's live messages matching the filter, checked like a
// SUBSCRIBE. Each watch has a bounded buffer: when the client reads too
// slowly, messages are dropped and counted (a "dropped" event reports the
// total); a comment line every WatchHeartbeat keeps proxies from closing an
// idle stream. A tenant has at most MaxWatchers watches at once (429). The
// stream ends with the request (or the server).
func (s *Server) watchTopic(c echo.Context) error {
	a := s.api
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	filter := c.QueryParam("filter")
	f, err := topic.ParseFilter(filter)
	if err != nil {
		return &FieldError{Field: "filter", Err: err}
	}
	if f.Kind != topic.Normal {
		return invalidField("filter", "shared and $local filters cannot be watched")
	}
	if !mc.rs.CanSubscribe(f.Topic) {
		return fmt.Errorf("%w: the ACL does not allow subscribing to %q", ErrForbidden, filter)
	}
	slug := mc.k.Tenant
	if !a.watch.add(slug, f.Topic, a.deps.MaxWatchers) {
		return &RateLimitError{RetryAfter: 5 * time.Second, Reason: fmt.Sprintf("the tenant already has %d live watches", a.deps.MaxWatchers)}
	}
	defer a.watch.remove(slug, f.Topic)
	if !a.track() {
		return fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	defer a.wg.Done()

	ch := make(chan *broker.Message, a.deps.WatchBuffer)
	var dropped atomic.Uint64
	dollar := topic.NeedsDollarCheck(f.Topic)
	route, err := mc.bb.Subscribe(slug, f, broker.ClassAll, func(m *broker.Message) {
		if dollar && len(m.Topic) > 0 && m.Topic[0] == '$' {
			return // [MQTT-4.7.2-1]
		}
		select {
		case ch <- m:
		default:
			dropped.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer route.Close()

	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, ": watching %s\nretry: 3000\n\n", filter); err != nil {
		return nil
	}
	w.Flush()

	hb := time.NewTicker(a.deps.WatchHeartbeat)
	defer hb.Stop()
	ctx := c.Request().Context()
	var reported uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.quit:
			return nil
		case m := <-ch:
			ev := watchEvent{
				Topic: string(m.Topic), QoS: m.QoS, Retain: m.Retain,
				Payload: base64.StdEncoding.EncodeToString(m.Payload),
			}
			if utf8.Valid(m.Payload) {
				t := string(m.Payload)
				ev.PayloadText = &t
			}
			data, _ := json.Marshal(&ev)
			if _, err := fmt.Fprintf(w, "event: message\ndata: %s\n\n", data); err != nil {
				return nil
			}
			if len(ch) == 0 {
				w.Flush()
			}
		case <-hb.C:
			var err error
			if n := dropped.Load(); n != reported {
				reported = n
				_, err = fmt.Fprintf(w, "event: dropped\ndata: {\"dropped\":%d}\n\n", n)
			} else {
				_, err = fmt.Fprint(w, ": heartbeat\n\n")
			}
			if err != nil {
				return nil
			}
			w.Flush()
		}
	}
}
