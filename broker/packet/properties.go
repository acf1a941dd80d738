package packet

import "fmt"

// MQTT 5 property identifiers (MQTT 5 §2.2.2.2, Table 2-4).
const (
	PropPayloadFormat          byte = 0x01 // byte; PUBLISH, will
	PropMessageExpiry          byte = 0x02 // uint32; PUBLISH, will
	PropContentType            byte = 0x03 // string; PUBLISH, will
	PropResponseTopic          byte = 0x08 // string; PUBLISH, will
	PropCorrelationData        byte = 0x09 // binary; PUBLISH, will
	PropSubscriptionIdentifier byte = 0x0B // varint; PUBLISH, SUBSCRIBE
	PropSessionExpiry          byte = 0x11 // uint32; CONNECT, CONNACK, DISCONNECT
	PropAssignedClientID       byte = 0x12 // string; CONNACK
	PropServerKeepAlive        byte = 0x13 // uint16; CONNACK
	PropAuthMethod             byte = 0x15 // string; CONNECT, CONNACK, AUTH
	PropAuthData               byte = 0x16 // binary; CONNECT, CONNACK, AUTH
	PropRequestProblemInfo     byte = 0x17 // byte; CONNECT
	PropWillDelay              byte = 0x18 // uint32; will
	PropRequestResponseInfo    byte = 0x19 // byte; CONNECT
	PropResponseInfo           byte = 0x1A // string; CONNACK
	PropServerReference        byte = 0x1C // string; CONNACK, DISCONNECT
	PropReasonString           byte = 0x1F // string; CONNACK, PUBACK..PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH
	PropReceiveMaximum         byte = 0x21 // uint16; CONNECT, CONNACK
	PropTopicAliasMaximum      byte = 0x22 // uint16; CONNECT, CONNACK
	PropTopicAlias             byte = 0x23 // uint16; PUBLISH
	PropMaximumQoS             byte = 0x24 // byte; CONNACK
	PropRetainAvailable        byte = 0x25 // byte; CONNACK
	PropUserProperty           byte = 0x26 // string pair; every packet with properties
	PropMaximumPacketSize      byte = 0x27 // uint32; CONNECT, CONNACK
	PropWildcardSubAvailable   byte = 0x28 // byte; CONNACK
	PropSubIDAvailable         byte = 0x29 // byte; CONNACK
	PropSharedSubAvailable     byte = 0x2A // byte; CONNACK
)

// UserProperty is one MQTT 5 User Property, a name/value string pair. Its
// order among the others is significant [MQTT-3.3.2-18].
type UserProperty struct {
	Key, Value string
}

// Properties holds the MQTT 5 properties of one packet (or of a will
// message). Scalar values are plain fields and Present records which of them
// were sent, one bit per property identifier, so no pointers are needed.
//
// Only the slices (UserProperties and SubscriptionIdentifiers) allocate when
// decoded, and only when present. Encoding writes a scalar property when its
// bit is set and a slice property when it is non-empty; it writes only the
// properties allowed on the packet being encoded and silently drops the rest
// (so a will's Properties can be reused for its PUBLISH).
type Properties struct {
	// Present has bit 1<<id set for every property id sent; see Has and Set.
	Present uint64

	PayloadFormat           byte           // 0 = unspecified bytes, 1 = UTF-8
	MessageExpiry           uint32         // seconds
	ContentType             string         // MIME type of the payload
	ResponseTopic           string         // topic name for a response
	CorrelationData         []byte         // aliases the body of a decoded Publish
	SubscriptionIdentifiers []int          // 1..268435455; several only on PUBLISH
	SessionExpiry           uint32         // seconds
	AssignedClientID        string         // CONNACK: client id chosen by the server
	ServerKeepAlive         uint16         // seconds
	AuthMethod              string         // enhanced authentication method
	AuthData                []byte         // enhanced authentication data
	RequestProblemInfo      byte           // 0 or 1
	WillDelay               uint32         // seconds
	RequestResponseInfo     byte           // 0 or 1
	ResponseInfo            string         // CONNACK: basis for response topics
	ServerReference         string         // another server to use
	ReasonString            string         // human-readable diagnostic
	ReceiveMaximum          uint16         // in-flight QoS 1/2 limit, non-zero
	TopicAliasMaximum       uint16         // highest topic alias accepted
	TopicAlias              uint16         // non-zero
	MaximumQoS              byte           // 0 or 1
	RetainAvailable         byte           // 0 or 1
	UserProperties          []UserProperty // in wire order
	MaximumPacketSize       uint32         // non-zero
	WildcardSubAvailable    byte           // 0 or 1
	SubIDAvailable          byte           // 0 or 1
	SharedSubAvailable      byte           // 0 or 1
}

// Has reports whether property id was sent (or is to be sent).
func (p *Properties) Has(id byte) bool { return id < 64 && p.Present&(1<<id) != 0 }

// Set marks property id as present, so Encode writes its field.
func (p *Properties) Set(id byte) {
	if id < 64 {
		p.Present |= 1 << id
	}
}

// Clear marks property id as absent, so Encode skips it.
func (p *Properties) Clear(id byte) {
	if id < 64 {
		p.Present &^= 1 << id
	}
}

// ---------------------------------------------------------------------------
// Where each property may appear (MQTT 5 §2.2.2.2, Table 2-4)
// ---------------------------------------------------------------------------

// propCtx names a place properties appear: a packet type, or a will.
type propCtx uint8

const (
	ctxConnect propCtx = iota
	ctxWill
	ctxConnack
	ctxPublish
	ctxAck // PUBACK, PUBREC, PUBREL, PUBCOMP
	ctxSubscribe
	ctxSuback
	ctxUnsubscribe
	ctxUnsuback
	ctxDisconnect
	ctxAuth
)

func bits(ids ...byte) uint64 {
	var m uint64
	for _, id := range ids {
		m |= 1 << id
	}
	return m
}

var ctxNames = [...]string{
	ctxConnect: "CONNECT", ctxWill: "will", ctxConnack: "CONNACK", ctxPublish: "PUBLISH",
	ctxAck: "PUBACK/PUBREC/PUBREL/PUBCOMP", ctxSubscribe: "SUBSCRIBE", ctxSuback: "SUBACK",
	ctxUnsubscribe: "UNSUBSCRIBE", ctxUnsuback: "UNSUBACK", ctxDisconnect: "DISCONNECT",
	ctxAuth: "AUTH",
}

// allowedProps is the set of property ids each place accepts.
var allowedProps = [...]uint64{
	ctxConnect: bits(PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
		PropRequestResponseInfo, PropReceiveMaximum, PropTopicAliasMaximum, PropUserProperty,
		PropMaximumPacketSize),
	ctxWill: bits(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
		PropCorrelationData, PropWillDelay, PropUserProperty),
	ctxConnack: bits(PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod,
		PropAuthData, PropResponseInfo, PropServerReference, PropReasonString, PropReceiveMaximum,
		PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable, PropUserProperty,
		PropMaximumPacketSize, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable),
	ctxPublish: bits(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
		PropCorrelationData, PropSubscriptionIdentifier, PropTopicAlias, PropUserProperty),
	ctxAck:         bits(PropReasonString, PropUserProperty),
	ctxSubscribe:   bits(PropSubscriptionIdentifier, PropUserProperty),
	ctxSuback:      bits(PropReasonString, PropUserProperty),
	ctxUnsubscribe: bits(PropUserProperty),
	ctxUnsuback:    bits(PropReasonString, PropUserProperty),
	ctxDisconnect:  bits(PropSessionExpiry, PropServerReference, PropReasonString, PropUserProperty),
	ctxAuth:        bits(PropAuthMethod, PropAuthData, PropReasonString, PropUserProperty),
}

// knownProps is every property id MQTT 5 defines.
var knownProps = func() uint64 {
	var m uint64
	for _, a := range allowedProps {
		m |= a
	}
	return m
}()

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

// decode reads a Property Length and the properties it covers from the
// start of b into p, which must be zero (every Decode method resets its
// packet first), and returns the rest of b. Binary values alias b when ctx
// is ctxPublish and are copied otherwise; strings are always copied.
func (p *Properties) decode(b []byte, ctx propCtx) ([]byte, error) {
	n, w, err := DecodeVarint(b)
	if err != nil {
		return nil, fmt.Errorf("property length: %w", err)
	}
	b = b[w:]
	if n > len(b) {
		return nil, fmt.Errorf("%w: property length %d over the %d bytes left", MalformedPacket, n, len(b))
	}
	props, rest := b[:n], b[n:]
	for len(props) > 0 {
		// The identifier is a Variable Byte Integer, but every defined id
		// fits in one byte; a continuation bit means an unknown id.
		id := props[0]
		props = props[1:]
		if id >= 64 || knownProps&(1<<id) == 0 {
			return nil, fmt.Errorf("%w: unknown property id 0x%02X", MalformedPacket, id)
		}
		// A property not valid for its packet type is malformed (§2.2.2.2).
		if allowedProps[ctx]&(1<<id) == 0 {
			return nil, fmt.Errorf("%w: property 0x%02X not allowed on %s", MalformedPacket, id, ctxNames[ctx])
		}
		// Every property but User Property, and Subscription Identifier on
		// PUBLISH, may appear at most once: a repeat is a protocol error.
		if p.Present&(1<<id) != 0 && id != PropUserProperty &&
			(id != PropSubscriptionIdentifier || ctx != ctxPublish) {
			return nil, fmt.Errorf("%w: property 0x%02X more than once", ProtocolError, id)
		}
		p.Present |= 1 << id
		if props, err = p.decodeOne(id, props, ctx); err != nil {
			return nil, err
		}
	}
	// "It is a Protocol Error to include Authentication Data if there is no
	// Authentication Method" (MQTT 5 §3.1.2.11.10, CONNECT). The data means
	// nothing without a method anywhere else either, so CONNACK and AUTH get
	// the same rule.
	if p.Has(PropAuthData) && !p.Has(PropAuthMethod) {
		return nil, fmt.Errorf("%w: authentication data without authentication method", ProtocolError)
	}
	return rest, nil
}

// decodeOne reads the value of property id.
func (p *Properties) decodeOne(id byte, b []byte, ctx propCtx) ([]byte, error) {
	var err error
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat, b, err = readFlagByte(b, "payload format indicator")
	case PropMessageExpiry:
		p.MessageExpiry, b, err = readUint32(b, "message expiry interval")
	case PropContentType:
		p.ContentType, b, err = readStringCopy(b, "content type")
	case PropResponseTopic:
		p.ResponseTopic, b, err = readStringCopy(b, "response topic")
	case PropCorrelationData:
		if ctx == ctxPublish {
			p.CorrelationData, b, err = readBinary(b, "correlation data")
		} else {
			p.CorrelationData, b, err = readBinaryCopy(b, "correlation data")
		}
	case PropSubscriptionIdentifier:
		var v, w int
		v, w, err = DecodeVarint(b)
		if err != nil {
			return nil, fmt.Errorf("subscription identifier: %w", err)
		}
		if v == 0 {
			return nil, fmt.Errorf("%w: subscription identifier 0", ProtocolError)
		}
		p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, v)
		b = b[w:]
	case PropSessionExpiry:
		p.SessionExpiry, b, err = readUint32(b, "session expiry interval")
	case PropAssignedClientID:
		p.AssignedClientID, b, err = readStringCopy(b, "assigned client identifier")
	case PropServerKeepAlive:
		p.ServerKeepAlive, b, err = readUint16(b, "server keep alive")
	case PropAuthMethod:
		p.AuthMethod, b, err = readStringCopy(b, "authentication method")
	case PropAuthData:
		p.AuthData, b, err = readBinaryCopy(b, "authentication data")
	case PropRequestProblemInfo:
		p.RequestProblemInfo, b, err = readFlagByte(b, "request problem information")
	case PropWillDelay:
		p.WillDelay, b, err = readUint32(b, "will delay interval")
	case PropRequestResponseInfo:
		p.RequestResponseInfo, b, err = readFlagByte(b, "request response information")
	case PropResponseInfo:
		p.ResponseInfo, b, err = readStringCopy(b, "response information")
	case PropServerReference:
		p.ServerReference, b, err = readStringCopy(b, "server reference")
	case PropReasonString:
		p.ReasonString, b, err = readStringCopy(b, "reason string")
	case PropReceiveMaximum:
		p.ReceiveMaximum, b, err = readUint16(b, "receive maximum")
		if err == nil && p.ReceiveMaximum == 0 {
			return nil, fmt.Errorf("%w: receive maximum 0", ProtocolError)
		}
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum, b, err = readUint16(b, "topic alias maximum")
	case PropTopicAlias:
		p.TopicAlias, b, err = readUint16(b, "topic alias")
		if err == nil && p.TopicAlias == 0 {
			return nil, fmt.Errorf("%w: topic alias 0 [MQTT-3.3.2-8]", ProtocolError)
		}
	case PropMaximumQoS:
		p.MaximumQoS, b, err = readFlagByte(b, "maximum QoS")
	case PropRetainAvailable:
		p.RetainAvailable, b, err = readFlagByte(b, "retain available")
	case PropUserProperty:
		var k, v string
		if k, b, err = readStringCopy(b, "user property name"); err != nil {
			return nil, err
		}
		if v, b, err = readStringCopy(b, "user property value"); err != nil {
			return nil, err
		}
		p.UserProperties = append(p.UserProperties, UserProperty{Key: k, Value: v})
	case PropMaximumPacketSize:
		p.MaximumPacketSize, b, err = readUint32(b, "maximum packet size")
		if err == nil && p.MaximumPacketSize == 0 {
			return nil, fmt.Errorf("%w: maximum packet size 0", ProtocolError)
		}
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable, b, err = readFlagByte(b, "wildcard subscription available")
	case PropSubIDAvailable:
		p.SubIDAvailable, b, err = readFlagByte(b, "subscription identifiers available")
	case PropSharedSubAvailable:
		p.SharedSubAvailable, b, err = readFlagByte(b, "shared subscription available")
	}
	return b, err
}

// readFlagByte reads a byte property whose only values are 0 and 1; any
// other value is a protocol error.
func readFlagByte(b []byte, what string) (byte, []byte, error) {
	v, rest, err := readByte(b, what)
	if err != nil {
		return 0, nil, err
	}
	if v > 1 {
		return 0, nil, fmt.Errorf("%w: %s %d, want 0 or 1", ProtocolError, what, v)
	}
	return v, rest, nil
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

// size returns the encoded length of the properties allowed in ctx, without
// the Property Length in front. It checks what the encoding needs: string
// and binary lengths and subscription identifier ranges.
func (p *Properties) size(ctx propCtx) (int, error) {
	allowed := allowedProps[ctx]
	m := p.Present & allowed
	n := 0
	if m == 0 && len(p.UserProperties) == 0 && len(p.SubscriptionIdentifiers) == 0 {
		return 0, nil
	}
	var err error
	str := func(id byte, l int, what string) {
		if m&(1<<id) != 0 {
			n += 3 + l
			if e := checkLen(l, what); e != nil && err == nil {
				err = e
			}
		}
	}
	fixed := func(id byte, l int) {
		if m&(1<<id) != 0 {
			n += 1 + l
		}
	}
	fixed(PropPayloadFormat, 1)
	fixed(PropMessageExpiry, 4)
	str(PropContentType, len(p.ContentType), "content type")
	str(PropResponseTopic, len(p.ResponseTopic), "response topic")
	str(PropCorrelationData, len(p.CorrelationData), "correlation data")
	if allowed&(1<<PropSubscriptionIdentifier) != 0 {
		if ctx != ctxPublish && len(p.SubscriptionIdentifiers) > 1 {
			return 0, fmt.Errorf("%w: %d subscription identifiers on %s", ProtocolError, len(p.SubscriptionIdentifiers), ctxNames[ctx])
		}
		for _, id := range p.SubscriptionIdentifiers {
			if id < 1 || id > MaxRemainingLength {
				return 0, fmt.Errorf("%w: subscription identifier %d out of range", ProtocolError, id)
			}
			n += 1 + varintLen(id)
		}
	}
	fixed(PropSessionExpiry, 4)
	str(PropAssignedClientID, len(p.AssignedClientID), "assigned client identifier")
	fixed(PropServerKeepAlive, 2)
	str(PropAuthMethod, len(p.AuthMethod), "authentication method")
	str(PropAuthData, len(p.AuthData), "authentication data")
	fixed(PropRequestProblemInfo, 1)
	fixed(PropWillDelay, 4)
	fixed(PropRequestResponseInfo, 1)
	str(PropResponseInfo, len(p.ResponseInfo), "response information")
	str(PropServerReference, len(p.ServerReference), "server reference")
	str(PropReasonString, len(p.ReasonString), "reason string")
	fixed(PropReceiveMaximum, 2)
	fixed(PropTopicAliasMaximum, 2)
	fixed(PropTopicAlias, 2)
	fixed(PropMaximumQoS, 1)
	fixed(PropRetainAvailable, 1)
	for _, u := range p.UserProperties { // allowed everywhere
		n += 5 + len(u.Key) + len(u.Value)
		if e := checkLen(max(len(u.Key), len(u.Value)), "user property"); e != nil && err == nil {
			err = e
		}
	}
	fixed(PropMaximumPacketSize, 4)
	fixed(PropWildcardSubAvailable, 1)
	fixed(PropSubIDAvailable, 1)
	fixed(PropSharedSubAvailable, 1)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// encode appends the Property Length n (from size) and the properties
// allowed in ctx, in ascending id order.
func (p *Properties) encode(dst []byte, ctx propCtx, n int) []byte {
	dst = AppendVarint(dst, n)
	if n == 0 {
		return dst
	}
	allowed := allowedProps[ctx]
	m := p.Present & allowed
	has := func(id byte) bool { return m&(1<<id) != 0 }
	if has(PropPayloadFormat) {
		dst = append(dst, PropPayloadFormat, p.PayloadFormat)
	}
	if has(PropMessageExpiry) {
		dst = appendUint32(append(dst, PropMessageExpiry), p.MessageExpiry)
	}
	if has(PropContentType) {
		dst = appendString(append(dst, PropContentType), p.ContentType)
	}
	if has(PropResponseTopic) {
		dst = appendString(append(dst, PropResponseTopic), p.ResponseTopic)
	}
	if has(PropCorrelationData) {
		dst = appendBinary(append(dst, PropCorrelationData), p.CorrelationData)
	}
	if allowed&(1<<PropSubscriptionIdentifier) != 0 {
		for _, id := range p.SubscriptionIdentifiers {
			dst = AppendVarint(append(dst, PropSubscriptionIdentifier), id)
		}
	}
	if has(PropSessionExpiry) {
		dst = appendUint32(append(dst, PropSessionExpiry), p.SessionExpiry)
	}
	if has(PropAssignedClientID) {
		dst = appendString(append(dst, PropAssignedClientID), p.AssignedClientID)
	}
	if has(PropServerKeepAlive) {
		dst = appendUint16(append(dst, PropServerKeepAlive), p.ServerKeepAlive)
	}
	if has(PropAuthMethod) {
		dst = appendString(append(dst, PropAuthMethod), p.AuthMethod)
	}
	if has(PropAuthData) {
		dst = appendBinary(append(dst, PropAuthData), p.AuthData)
	}
	if has(PropRequestProblemInfo) {
		dst = append(dst, PropRequestProblemInfo, p.RequestProblemInfo)
	}
	if has(PropWillDelay) {
		dst = appendUint32(append(dst, PropWillDelay), p.WillDelay)
	}
	if has(PropRequestResponseInfo) {
		dst = append(dst, PropRequestResponseInfo, p.RequestResponseInfo)
	}
	if has(PropResponseInfo) {
		dst = appendString(append(dst, PropResponseInfo), p.ResponseInfo)
	}
	if has(PropServerReference) {
		dst = appendString(append(dst, PropServerReference), p.ServerReference)
	}
	if has(PropReasonString) {
		dst = appendString(append(dst, PropReasonString), p.ReasonString)
	}
	if has(PropReceiveMaximum) {
		dst = appendUint16(append(dst, PropReceiveMaximum), p.ReceiveMaximum)
	}
	if has(PropTopicAliasMaximum) {
		dst = appendUint16(append(dst, PropTopicAliasMaximum), p.TopicAliasMaximum)
	}
	if has(PropTopicAlias) {
		dst = appendUint16(append(dst, PropTopicAlias), p.TopicAlias)
	}
	if has(PropMaximumQoS) {
		dst = append(dst, PropMaximumQoS, p.MaximumQoS)
	}
	if has(PropRetainAvailable) {
		dst = append(dst, PropRetainAvailable, p.RetainAvailable)
	}
	for _, u := range p.UserProperties {
		dst = appendString(appendString(append(dst, PropUserProperty), u.Key), u.Value)
	}
	if has(PropMaximumPacketSize) {
		dst = appendUint32(append(dst, PropMaximumPacketSize), p.MaximumPacketSize)
	}
	if has(PropWildcardSubAvailable) {
		dst = append(dst, PropWildcardSubAvailable, p.WildcardSubAvailable)
	}
	if has(PropSubIDAvailable) {
		dst = append(dst, PropSubIDAvailable, p.SubIDAvailable)
	}
	if has(PropSharedSubAvailable) {
		dst = append(dst, PropSharedSubAvailable, p.SharedSubAvailable)
	}
	return dst
}

// propsLen returns the bytes the Property Length and n property bytes take.
func propsLen(n int) int { return varintLen(n) + n }
