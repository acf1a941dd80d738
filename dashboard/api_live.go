package dashboard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
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

// listClients handles GET /api/v1/clients?limit=1000, and
// GET /api/v1/clients?clientid=… (that client, if connected: a list of at
// most one; the query reaches any client ID, "." and ".." too, which no
// browser sends as a path segment).
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
	var cs []ClientInfo
	truncated := false
	if q := c.QueryParams(); q.Has("clientid") {
		ci, err := cl.Client(c.Request().Context(), k.Tenant, q.Get("clientid"))
		switch {
		case err == nil:
			cs = []ClientInfo{*ci}
		case !isNotFound(err):
			return err
		}
	} else if cs, truncated, err = cl.Clients(c.Request().Context(), k.Tenant, limit); err != nil {
		return err
	}
	names := s.credentialNames(c, k.Tenant)
	for i := range cs {
		cs[i].Credential = names[cs[i].CredentialID]
	}
	return listJSON(c, cs, truncated)
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

// kickClient handles DELETE /api/v1/clients/:clientid (or
// /api/v1/clients?clientid=…): the client is disconnected (MQTT 5:
// administrative action); its persistent session stays. 404 unless
// connected. Admin scope.
func (s *Server) kickClient(c echo.Context) error {
	k, err := tenantCaller(c)
	if err != nil {
		return err
	}
	id := c.QueryParam("clientid")
	if c.Path() != "/api/v1/clients" {
		if id, err = pathParam(c, "clientid"); err != nil {
			return err
		}
	} else if !c.QueryParams().Has("clientid") {
		return invalidField("clientid", "the clientid query parameter is required")
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
	return listJSON(c, ss, truncated)
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
	return listJSON(c, ts, false)
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
// idle stream. A tenant has at most MaxWatchers watches at once (429).
//
// The caller is checked again every WatchRecheck, and at once after a
// change made through this API (a key revoked, a tenant suspended, a rule
// changed, a sign-out): when its key is revoked, its tenant suspended, its
// session ended or its ACL no longer allows the filter, an "end" event
// says why and the stream ends. Each write must complete within
// WatchWriteTimeout, so a client that stops reading costs its handler that
// long at most. The stream also ends with the request or the server.
func (s *Server) watchTopic(c echo.Context) error {
	a := s.api
	filter := c.QueryParam("filter")
	if strings.ContainsFunc(filter, unicode.IsControl) {
		return invalidField("filter", "control characters are not allowed in a watched filter")
	}
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	if mc.k.Suspended {
		return fmt.Errorf("%w: the tenant is suspended", ErrForbidden)
	}
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
	rc := http.NewResponseController(w)
	// The request has been read: the server's ReadTimeout must not end
	// the stream (its background read of the connection would fail with
	// it and cancel the request).
	_ = rc.SetReadDeadline(time.Time{})
	// write sends one chunk of the stream within WatchWriteTimeout;
	// flush pushes it out.
	write := func(flush bool, format string, args ...any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(a.deps.WatchWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		if flush {
			return rc.Flush()
		}
		return nil
	}
	// Taken before the stream starts, so that a change made as soon as
	// the caller sees the stream (a revocation, say) still wakes the loop.
	changed := a.changes()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	quoted, _ := json.Marshal(filter) // never raw input in the stream
	if err := write(true, ": watching %s\nretry: 3000\n\n", quoted); err != nil {
		return nil
	}

	hb := time.NewTicker(a.deps.WatchHeartbeat)
	defer hb.Stop()
	recheck := time.NewTicker(a.deps.WatchRecheck)
	defer recheck.Stop()
	ctx := c.Request().Context()
	ki, _ := c.Get(keyInfoKey).(*keyInfo)
	var reported uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.quit:
			return nil
		case <-changed:
			changed = a.changes() // before the check: a change during it wakes us again
			if s.endWatch(ctx, mc.k, ki, f.Topic, write) {
				return nil
			}
		case <-recheck.C:
			if s.endWatch(ctx, mc.k, ki, f.Topic, write) {
				return nil
			}
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
			if err := write(len(ch) == 0, "event: message\ndata: %s\n\n", data); err != nil {
				return nil
			}
		case <-hb.C:
			var err error
			if n := dropped.Load(); n != reported {
				reported = n
				err = write(true, "event: dropped\ndata: {\"dropped\":%d}\n\n", n)
			} else {
				err = write(true, ": heartbeat\n\n")
			}
			if err != nil {
				return nil
			}
		}
	}
}

// watchEnd is the data of an SSE "end" event: why the server ended the
// stream.
type watchEnd struct {
	Reason string `json:"reason"`
}

// endWatch checks a watch's caller again; if it may no longer watch the
// filter, it writes an "end" event and returns true. A check that cannot
// be made (the database is down) keeps the stream: the next one decides.
func (s *Server) endWatch(ctx context.Context, k *Caller, ki *keyInfo, filter string, write func(bool, string, ...any) error) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reason, err := s.stillAllowed(ctx, k, ki, filter)
	if err != nil {
		s.log.Debug("rechecking a live watch", "tenant", k.Tenant, "actor", k.Actor, "err", err)
		return false
	}
	if reason == "" {
		return false
	}
	data, _ := json.Marshal(watchEnd{Reason: reason})
	_ = write(true, "event: end\ndata: %s\n\n", data)
	s.log.Info("live watch ended", "tenant", k.Tenant, "actor", k.Actor, "reason", reason)
	return true
}

// stillAllowed returns why the caller may no longer watch the filter ("" if
// it may): its API key revoked, its tenant suspended, its session ended, or
// its ACL changed. The key and session are read from the database, not
// from caches.
func (s *Server) stillAllowed(ctx context.Context, k *Caller, ki *keyInfo, filter string) (string, error) {
	switch {
	case ki != nil:
		_, _, _, err := s.cfg.Tenancy.VerifyAPIKey(ctx, ki.key)
		switch {
		case errors.Is(err, auth.ErrBadCredentials):
			return "the API key was revoked", nil
		case errors.Is(err, auth.ErrNotAuthorized):
			return "the tenant is suspended", nil
		case err != nil:
			return "", err
		}
		rs, err := s.api.rulesFor(ctx, s.cfg.Tenancy, k, ki)
		if err != nil {
			return "", err
		}
		if !rs.CanSubscribe(filter) {
			return "the ACL no longer allows this filter", nil
		}
	case k.Session:
		ws, err := s.loadSession(ctx, k.SessionID, false)
		if err != nil {
			return "", err
		}
		if ws == nil {
			return "the session ended", nil
		}
		if ws.tenant != nil && ws.tenant.Status != tenant.Active {
			return "the tenant is suspended", nil
		}
	}
	return "", nil
}

// listJSON answers 200 with a JSON list: [] rather than null when empty,
// and the header X-Truncated: true when the list was cut (more matched than
// fit).
func listJSON[T any](c echo.Context, items []T, truncated bool) error {
	if items == nil {
		items = []T{}
	}
	if truncated {
		c.Response().Header().Set("X-Truncated", "true")
	}
	return c.JSON(http.StatusOK, items)
}
