package dashboard

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

// Retained messages: listed by filter and read as a subscriber would (the
// ACL's subscribe rules), set and cleared as a publisher would (its
// publish rules). Clearing publishes an empty retained message, as an MQTT
// client does: current subscribers of the topic receive it with an empty
// payload [MQTT-3.3.1-10].

// retainedMessage is one retained message with its payload (GET
// /retained/message).
type retainedMessage struct {
	Topic string `json:"topic"`
	QoS   byte   `json:"qos"`
	// Payload is base64; PayloadText the same payload when it is UTF-8.
	Payload     string     `json:"payload"`
	PayloadText *string    `json:"payload_text,omitempty"`
	PayloadSize int        `json:"payload_size"`
	ContentType string     `json:"content_type,omitempty"`
	PublishedAt *time.Time `json:"published_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

func retainedOf(m *broker.Message, at map[string]time.Time) retainedMessage {
	r := retainedMessage{
		Topic: string(m.Topic), QoS: m.QoS,
		Payload: base64.StdEncoding.EncodeToString(m.Payload), PayloadSize: len(m.Payload),
	}
	if utf8.Valid(m.Payload) {
		s := string(m.Payload)
		r.PayloadText = &s
	}
	if m.Props != nil && m.Props.Has(packet.PropContentType) {
		r.ContentType = m.Props.ContentType
	}
	if t, ok := at[r.Topic]; ok {
		r.PublishedAt = &t
	}
	if !m.Expiry.IsZero() {
		e := m.Expiry.UTC()
		r.ExpiresAt = &e
	}
	return r
}

// retainedSummary is a retained message in a listing: its size and a
// preview of the payload's first bytes, never the whole payload (GET
// /retained/message has it), so that a listing of many large messages
// stays small.
type retainedSummary struct {
	Topic       string `json:"topic"`
	QoS         byte   `json:"qos"`
	PayloadSize int    `json:"payload_size"`
	// Preview is the payload's first retainedPreview bytes, base64;
	// PreviewText the same when the payload is UTF-8 (cut at a character
	// boundary).
	Preview     string     `json:"preview"`
	PreviewText *string    `json:"preview_text,omitempty"`
	ContentType string     `json:"content_type,omitempty"`
	PublishedAt *time.Time `json:"published_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// Retained listings.
const (
	// maxRetainedList bounds the messages of a listing.
	maxRetainedList = 1000
	// retainedPreview bounds each message's payload preview, in bytes.
	retainedPreview = 256
	// maxRetainedListBytes bounds a listing's JSON, roughly: past it the
	// listing stops early and says it is truncated.
	maxRetainedListBytes = 4 << 20
)

// summaryOf copies what a listing shows of m (the scan may reuse m's
// buffers).
func summaryOf(m *broker.Message) retainedSummary {
	r := retainedSummary{Topic: string(m.Topic), QoS: m.QoS, PayloadSize: len(m.Payload)}
	head := m.Payload[:min(len(m.Payload), retainedPreview)]
	r.Preview = base64.StdEncoding.EncodeToString(head)
	if utf8.Valid(m.Payload) {
		cut := len(head)
		for cut < len(m.Payload) && cut > 0 && !utf8.RuneStart(m.Payload[cut]) {
			cut--
		}
		t := string(head[:cut])
		r.PreviewText = &t
	}
	if m.Props != nil && m.Props.Has(packet.PropContentType) {
		r.ContentType = m.Props.ContentType
	}
	if !m.Expiry.IsZero() {
		e := m.Expiry.UTC()
		r.ExpiresAt = &e
	}
	return r
}

// jsonSize estimates the JSON of a summary: its topic escaped at worst,
// the preview twice, and the fixed fields.
func (r *retainedSummary) jsonSize() int {
	n := 6*len(r.Topic) + len(r.Preview) + 200
	if r.PreviewText != nil {
		n += 6 * len(*r.PreviewText)
	}
	return n
}

// errEnough stops a retained-message scan.
var errEnough = errors.New("enough")

// listRetained handles GET /api/v1/retained?filter=#&limit=100: summaries
// (retainedSummary) by topic, at most limit and about
// maxRetainedListBytes of JSON (X-Truncated: true when more matched).
func (s *Server) listRetained(c echo.Context) error {
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	filter := c.QueryParam("filter")
	if filter == "" {
		filter = "#"
	}
	if err := topic.ValidateFilter(filter); err != nil {
		return &FieldError{Field: "filter", Err: err}
	}
	limit, err := intQuery(c, "limit", 100, 1, maxRetainedList)
	if err != nil {
		return err
	}
	if !mc.rs.CanSubscribe(filter) {
		return fmt.Errorf("%w: the ACL does not allow subscribing to %q", ErrForbidden, filter)
	}
	ctx := c.Request().Context()
	dollar := topic.NeedsDollarCheck(filter)
	out := []retainedSummary{}
	size := 0
	err = mc.bb.Retained(ctx, mc.k.Tenant, filter, func(m *broker.Message) error {
		if dollar && len(m.Topic) > 0 && m.Topic[0] == '$' {
			return nil // [MQTT-4.7.2-1]
		}
		if !mc.rs.CanSubscribe(string(m.Topic)) {
			return nil // a deny rule inside the filter
		}
		if len(out) == limit {
			return errEnough
		}
		r := summaryOf(m)
		if size += r.jsonSize(); size > maxRetainedListBytes && len(out) > 0 {
			return errEnough
		}
		out = append(out, r)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	truncated := errors.Is(err, errEnough)
	slices.SortFunc(out, func(a, b retainedSummary) int { return strings.Compare(a.Topic, b.Topic) })
	topics := make([]string, len(out))
	for i := range out {
		topics[i] = out[i].Topic
	}
	at := s.retainedTimes(c, mc.k.Tenant, topics)
	for i := range out {
		if t, ok := at[out[i].Topic]; ok {
			out[i].PublishedAt = &t
		}
	}
	return listJSON(c, out, truncated)
}

// retainedTimes looks up when the topics' retained messages were stored;
// a failure only leaves published_at null.
func (s *Server) retainedTimes(c echo.Context, slug string, topics []string) map[string]time.Time {
	cl, err := s.api.cluster()
	if err != nil || len(topics) == 0 {
		return nil
	}
	at, err := cl.RetainedTimes(c.Request().Context(), slug, topics)
	if err != nil {
		s.log.Debug("retained message times", "err", err)
	}
	return at
}

// topicQuery returns the validated ?topic= of the retained message routes.
func topicQuery(c echo.Context) (string, error) {
	t := c.QueryParam("topic")
	if t == "" {
		return "", invalidField("topic", "the topic query parameter is required")
	}
	if err := checkTopic([]byte(t)); err != nil {
		return "", err
	}
	return t, nil
}

// getRetained handles GET /api/v1/retained/message?topic=….
func (s *Server) getRetained(c echo.Context) error {
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	t, err := topicQuery(c)
	if err != nil {
		return err
	}
	if !mc.rs.CanSubscribe(t) {
		return fmt.Errorf("%w: the ACL does not allow subscribing to %q", ErrForbidden, t)
	}
	m, err := s.retained(c, mc, t)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, retainedOf(m, s.retainedTimes(c, mc.k.Tenant, []string{t})))
}

// retained returns the topic's retained message or tenant.ErrNotFound.
func (s *Server) retained(c echo.Context, mc *messageCtx, t string) (*broker.Message, error) {
	var found *broker.Message
	err := mc.bb.Retained(c.Request().Context(), mc.k.Tenant, t, func(m *broker.Message) error {
		found = m
		return errEnough
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no retained message on %q", tenant.ErrNotFound, t)
	}
	return found, nil
}

// putRetained handles PUT /api/v1/retained/message?topic=…: the body is a
// publish body without topic; the message is published with retain set
// and answered once stored.
func (s *Server) putRetained(c echo.Context) error {
	a := s.api
	var req publishRequest
	if err := decodeJSON(c, a.publishBodyLimit(), &req); err != nil {
		return err
	}
	t, err := topicQuery(c)
	if err != nil {
		return err
	}
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	req.Retain = true
	m, err := a.message(mc, &req, t)
	if err != nil {
		return err
	}
	if len(m.Payload) == 0 {
		return invalidField("payload", "a retained message needs a payload (DELETE clears one)")
	}
	if err := s.publishOne(c.Request().Context(), mc, m); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, publishResult{ID: newID()})
}

// deleteRetained handles DELETE /api/v1/retained/message?topic=…: 404 if
// the topic has no retained message.
func (s *Server) deleteRetained(c echo.Context) error {
	a := s.api
	t, err := topicQuery(c)
	if err != nil {
		return err
	}
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	if !mc.rs.CanPublish([]byte(t)) {
		return fmt.Errorf("%w: the ACL does not allow publishing to %q", ErrForbidden, t)
	}
	if _, err := s.retained(c, mc, t); err != nil {
		return err
	}
	m := &broker.Message{Tenant: mc.k.Tenant, Topic: []byte(t), Retain: true, Origin: a.deps.NodeID}
	wait, err := a.send(mc.bb, m)
	if err != nil {
		return err
	}
	if err := wait(c.Request().Context()); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
