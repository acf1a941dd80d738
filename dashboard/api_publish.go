package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

// HTTP publishing: the body is compatible with EMQX's POST /api/v5/publish
// (and a JSON array of them with /publish/bulk). A message goes through
// the backbone exactly as an MQTT PUBLISH received by an edge does: live
// to every edge, a copy into the queue of every matching persistent
// session (online or offline), the retained store; QoS ≥ 1 and retained
// messages are answered only once JetStream has stored every copy.

// publishRequest is one message to publish.
type publishRequest struct {
	Topic   string  `json:"topic"`
	Payload *string `json:"payload"`
	// PayloadEncoding is "plain" (default) or "base64"; Encoding is its
	// alias (EMQX accepts both).
	PayloadEncoding string             `json:"payload_encoding"`
	Encoding        string             `json:"encoding"`
	QoS             *int               `json:"qos"`
	Retain          bool               `json:"retain"`
	Properties      *publishProperties `json:"properties"`
	// ClientID is accepted for EMQX compatibility and ignored: HTTP
	// messages have no publishing client.
	ClientID string `json:"clientid"`
}

// publishProperties are the MQTT 5 properties a message carries to
// subscribers.
type publishProperties struct {
	PayloadFormatIndicator *int              `json:"payload_format_indicator"`
	MessageExpiryInterval  *int64            `json:"message_expiry_interval"`
	ResponseTopic          string            `json:"response_topic"`
	CorrelationData        string            `json:"correlation_data"`
	ContentType            string            `json:"content_type"`
	UserProperties         map[string]string `json:"user_properties"`
}

// publishResult is the answer for one message: its ID, and, when no
// subscriber matched, EMQX's reason code 16 "no_matching_subscribers". In
// a batch, a refused message has no ID but a reason code, the message,
// and the HTTP status and error code a single publish would have had.
type publishResult struct {
	ID         string `json:"id,omitempty"`
	ReasonCode *int   `json:"reason_code,omitempty"`
	Message    string `json:"message,omitempty"`
	Code       string `json:"code,omitempty"`
	Status     int    `json:"status,omitempty"`
}

// reasonNoMatch is MQTT 5's "No matching subscribers" (0x10), as EMQX
// reports it.
const reasonNoMatch = 16

// publishBodyLimit bounds a single publish's body: the payload base64
// encoded, and room for the rest.
func (a *apiState) publishBodyLimit() int64 {
	return int64(a.deps.MaxPacketSize)*4/3 + 64<<10
}

// batchBodyLimit bounds a batch's body.
func (a *apiState) batchBodyLimit() int64 {
	return max(8<<20, 2*a.publishBodyLimit())
}

// messageCtx is what a message route needs to know about its caller.
type messageCtx struct {
	k  *Caller
	rs *auth.RuleSet
	bb Backbone
}

func (s *Server) messageContext(c echo.Context) (*messageCtx, error) {
	k, err := tenantCaller(c)
	if err != nil {
		return nil, err
	}
	ki, _ := c.Get(keyInfoKey).(*keyInfo)
	rs, err := s.api.rulesFor(c.Request().Context(), s.cfg.Tenancy, k, ki)
	if err != nil {
		return nil, err
	}
	bb, err := s.api.backbone()
	if err != nil {
		return nil, err
	}
	return &messageCtx{k: k, rs: rs, bb: bb}, nil
}

// publish handles POST /api/v1/publish.
func (s *Server) publish(c echo.Context) error {
	a := s.api
	var req publishRequest
	if err := decodeJSON(c, a.publishBodyLimit(), &req); err != nil {
		return err
	}
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	m, err := a.message(mc, &req, "")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.publishOne(ctx, mc, m); err != nil {
		return err
	}
	res := a.result(ctx, m)
	if res.ReasonCode != nil {
		return c.JSON(http.StatusAccepted, res)
	}
	return c.JSON(http.StatusOK, res)
}

// publishBatch handles POST /api/v1/publish/batch (and /publish/bulk): up
// to maxBatch messages, one result each, in order. The request fails as a
// whole only for a malformed body, too many messages, authentication, the
// tenant's publish rate (the batch takes one token per message) or a
// backbone that is down.
func (s *Server) publishBatch(c echo.Context) error {
	a := s.api
	var reqs []publishRequest
	if err := decodeJSON(c, a.batchBodyLimit(), &reqs); err != nil {
		return err
	}
	if len(reqs) == 0 || len(reqs) > maxBatch {
		return fmt.Errorf("%w: a batch holds 1 to %d messages, not %d", tenant.ErrInvalid, maxBatch, len(reqs))
	}
	mc, err := s.messageContext(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := a.take(ctx, s.cfg.Tenancy, mc.k.Tenant, len(reqs)); err != nil {
		return err
	}
	results := make([]publishResult, len(reqs))
	msgs := make([]*broker.Message, len(reqs))
	waits := make([]func(context.Context) error, len(reqs))
	for i := range reqs {
		m, err := a.message(mc, &reqs[i], "")
		if err == nil {
			waits[i], err = a.send(mc.bb, m)
		}
		if err != nil {
			if errors.Is(err, broker.ErrBackboneUnavailable) && i == 0 {
				return err // nothing was sent: the backbone is down
			}
			results[i] = itemError(err)
			continue
		}
		msgs[i] = m
	}
	for i, wait := range waits {
		if wait == nil {
			continue
		}
		if err := wait(ctx); err != nil {
			results[i] = itemError(err)
			continue
		}
		results[i] = a.result(ctx, msgs[i])
	}
	return c.JSON(http.StatusOK, results)
}

// itemError is a batch item's result for err, with the MQTT 5 reason
// code an MQTT client would have got and the HTTP status of a single
// publish.
func itemError(err error) publishResult {
	status, msg := statusOf(err)
	rc := 0x80 // unspecified error
	switch status {
	case http.StatusBadRequest:
		rc = 0x90 // topic name invalid (or payload: 0x99)
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field != "topic" {
			rc = 0x99 // payload format invalid
		}
	case http.StatusForbidden:
		rc = 0x87 // not authorized
	case http.StatusRequestEntityTooLarge:
		rc = 0x95 // packet too large
	case http.StatusTooManyRequests:
		rc = 0x96 // message rate too high
	case http.StatusServiceUnavailable:
		rc = 0x89 // server busy
	}
	return publishResult{ReasonCode: &rc, Message: msg, Code: codes[status], Status: status}
}

// message validates req and builds its message. topicOverride, if set,
// replaces req.Topic (the retained routes take it from the query).
func (a *apiState) message(mc *messageCtx, req *publishRequest, topicOverride string) (*broker.Message, error) {
	t := req.Topic
	if topicOverride != "" {
		t = topicOverride
	}
	tb := []byte(t)
	if err := checkTopic(tb); err != nil {
		return nil, err
	}
	if !mc.rs.CanPublish(tb) {
		return nil, fmt.Errorf("%w: the ACL does not allow publishing to %q", ErrForbidden, t)
	}
	qos := 0
	if req.QoS != nil {
		qos = *req.QoS
	}
	if qos < 0 || qos > 2 {
		return nil, invalidField("qos", "want 0, 1 or 2")
	}
	enc := req.PayloadEncoding
	if enc == "" {
		enc = req.Encoding
	}
	var payload []byte
	if req.Payload != nil {
		switch enc {
		case "", "plain":
			payload = []byte(*req.Payload)
		case "base64":
			p, err := base64.StdEncoding.DecodeString(*req.Payload)
			if err != nil {
				return nil, invalidField("payload", "not valid base64: %v", err)
			}
			payload = p
		default:
			return nil, invalidField("payload_encoding", "want plain or base64, not %q", enc)
		}
	}
	m := &broker.Message{
		Tenant: mc.k.Tenant, Topic: tb, Payload: payload, QoS: byte(qos), Retain: req.Retain,
		Origin: a.deps.NodeID,
	}
	propsSize := 0
	if p := req.Properties; p != nil {
		props, n, err := publishProps(p, payload)
		if err != nil {
			return nil, err
		}
		if p.MessageExpiryInterval != nil {
			e := *p.MessageExpiryInterval
			if e < 0 || e > 1<<32-1 {
				return nil, invalidField("properties.message_expiry_interval", "want seconds from 0 to 4294967295")
			}
			if e > 0 {
				m.Expiry = time.Now().Add(time.Duration(e) * time.Second)
				propsSize += 5
			}
		}
		if props != nil {
			m.Props = props
			propsSize += n
		}
	}
	if size := len(tb) + len(payload) + propsSize; size > a.deps.MaxPacketSize {
		return nil, fmt.Errorf("%w: topic, payload and properties of %d bytes exceed the maximum packet size of %d bytes", ErrTooLarge, size, a.deps.MaxPacketSize)
	}
	return m, nil
}

// maxMQTTString is the longest MQTT string or binary value [MQTT-1.5.4].
const maxMQTTString = 65535

// mqttString checks a UTF-8 string property: at most 65535 bytes, valid
// UTF-8 [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2] — else an MQTT 5
// subscriber would have to treat the PUBLISH carrying it as malformed.
func mqttString(field, s string) error {
	switch {
	case len(s) > maxMQTTString:
		return invalidField(field, "%d bytes: at most %d", len(s), maxMQTTString)
	case !utf8.ValidString(s):
		return invalidField(field, "not valid UTF-8 [MQTT-1.5.4-1]")
	case strings.IndexByte(s, 0) >= 0:
		return invalidField(field, "must not contain U+0000 [MQTT-1.5.4-2]")
	}
	return nil
}

// publishProps validates the MQTT 5 properties of a publish request and
// returns them (nil if none) with their encoded size.
func publishProps(p *publishProperties, payload []byte) (*packet.Properties, int, error) {
	var props packet.Properties
	size := 0
	if p.PayloadFormatIndicator != nil {
		switch *p.PayloadFormatIndicator {
		case 0:
		case 1:
			if !utf8.Valid(payload) {
				return nil, 0, invalidField("payload", "payload_format_indicator 1 says UTF-8, but it is not") // [MQTT-3.3.2-4]
			}
		default:
			return nil, 0, invalidField("properties.payload_format_indicator", "want 0 or 1")
		}
		props.Set(packet.PropPayloadFormat)
		props.PayloadFormat = byte(*p.PayloadFormatIndicator)
		size += 2
	}
	if p.ResponseTopic != "" {
		// A topic name: valid UTF-8, no U+0000, no wildcards
		// [MQTT-3.3.2-14].
		if err := topic.ValidateTopic([]byte(p.ResponseTopic)); err != nil {
			return nil, 0, invalidField("properties.response_topic", "%v", err)
		}
		props.Set(packet.PropResponseTopic)
		props.ResponseTopic = p.ResponseTopic
		size += 3 + len(p.ResponseTopic)
	}
	if p.CorrelationData != "" {
		if len(p.CorrelationData) > maxMQTTString {
			return nil, 0, invalidField("properties.correlation_data", "%d bytes: at most %d", len(p.CorrelationData), maxMQTTString)
		}
		props.Set(packet.PropCorrelationData)
		props.CorrelationData = []byte(p.CorrelationData)
		size += 3 + len(p.CorrelationData)
	}
	if p.ContentType != "" {
		if err := mqttString("properties.content_type", p.ContentType); err != nil {
			return nil, 0, err
		}
		props.Set(packet.PropContentType)
		props.ContentType = p.ContentType
		size += 3 + len(p.ContentType)
	}
	if len(p.UserProperties) > 0 {
		keys := make([]string, 0, len(p.UserProperties))
		for k, v := range p.UserProperties {
			if err := mqttString("properties.user_properties", k); err != nil {
				return nil, 0, err
			}
			if err := mqttString("properties.user_properties."+k, v); err != nil {
				return nil, 0, err
			}
			keys = append(keys, k)
		}
		slices.Sort(keys) // a JSON object has no order: make it stable
		for _, k := range keys {
			props.UserProperties = append(props.UserProperties, packet.UserProperty{Key: k, Value: p.UserProperties[k]})
			size += 5 + len(k) + len(p.UserProperties[k])
		}
		props.Set(packet.PropUserProperty)
	}
	if props.Present == 0 {
		return nil, size, nil
	}
	return &props, size, nil
}

// checkTopic validates a topic to publish to: a valid MQTT topic name
// (no wildcards, UTF-8, no U+0000), not a server topic starting with '$'.
func checkTopic(t []byte) error {
	if err := topic.ValidateTopic(t); err != nil {
		return &FieldError{Field: "topic", Err: err}
	}
	if t[0] == '$' {
		return invalidField("topic", "topics starting with '$' are reserved for the server") // [MQTT-4.7.2-1]
	}
	return nil
}

// publishOne publishes one message for the caller of mc: a token of the
// tenant's rate, then the backbone, then the wait until it is stored (QoS
// ≥ 1 or retained) or sent.
func (s *Server) publishOne(ctx context.Context, mc *messageCtx, m *broker.Message) error {
	if err := s.api.take(ctx, s.cfg.Tenancy, mc.k.Tenant, 1); err != nil {
		return err
	}
	wait, err := s.api.send(mc.bb, m)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// send hands m to the backbone and returns a function that waits until it
// is stored (QoS ≥ 1 or retained: JetStream has every copy) or sent.
func (a *apiState) send(bb Backbone, m *broker.Message) (func(context.Context) error, error) {
	done := make(chan error, 1)
	if err := bb.Publish(m, func(err error) { done <- err }); err != nil {
		return nil, err
	}
	timeout := a.deps.PublishTimeout
	return func(ctx context.Context) error {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case err := <-done:
			return err
		case <-t.C:
			return fmt.Errorf("%w: JetStream did not confirm the message within %v", broker.ErrBackboneUnavailable, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// result is a published message's answer: a new ID, and whether anything
// subscribed to it.
func (a *apiState) result(ctx context.Context, m *broker.Message) publishResult {
	res := publishResult{ID: newID()}
	if a.watch.matches(m.Tenant, m.Topic, topic.Match) {
		return res
	}
	if a.deps.Cluster != nil && !a.deps.Cluster.Matches(ctx, m.Tenant, a.deps.NodeID, m.Topic, m.QoS) {
		rc := reasonNoMatch
		res.ReasonCode, res.Message = &rc, "no_matching_subscribers"
	}
	return res
}

// newID returns a message ID: 128 random bits, hex (as EMQX's).
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
