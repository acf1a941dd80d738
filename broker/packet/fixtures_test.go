package packet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// ---------------------------------------------------------------------------
// Shared wire fixtures. Every valid fixture drives both directions:
// decode(raw) must equal pkt, and encode(pkt) must equal raw (unless
// decodeOnly: raw is a valid but non-canonical form). Fixtures with wantErr
// are decode-only and must fail with that error.
//
// The raw bytes are built with the small helpers below, which share no code
// with the package's encoder.
// ---------------------------------------------------------------------------

// codec is what every packet struct implements.
type codec interface {
	Decode(version byte, fh FixedHeader, body []byte) error
	Encode(dst []byte, version byte) ([]byte, error)
}

// ping adapts PINGREQ/PINGRESP, which have no struct, to codec.
type ping struct{ Type Type }

func (p *ping) Decode(_ byte, fh FixedHeader, body []byte) error {
	p.Type = fh.Type
	return DecodePing(fh, body)
}

func (p *ping) Encode(dst []byte, _ byte) ([]byte, error) {
	if p.Type == PINGREQ {
		return AppendPingreq(dst), nil
	}
	return AppendPingresp(dst), nil
}

// newCodec returns an empty packet struct for packet type t.
func newCodec(t Type) codec {
	switch t {
	case CONNECT:
		return new(Connect)
	case CONNACK:
		return new(Connack)
	case PUBLISH:
		return new(Publish)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		return new(Ack)
	case SUBSCRIBE:
		return new(Subscribe)
	case SUBACK:
		return new(Suback)
	case UNSUBSCRIBE:
		return new(Unsubscribe)
	case UNSUBACK:
		return new(Unsuback)
	case PINGREQ, PINGRESP:
		return new(ping)
	case DISCONNECT:
		return new(Disconnect)
	case AUTH:
		return new(Auth)
	}
	panic(fmt.Sprintf("no codec for %v", t))
}

// decodeRaw reads one packet from raw through a Reader and decodes it. It
// also returns the rest of the stream's error: io.EOF if raw held exactly
// one packet.
func decodeRaw(version byte, raw []byte, maxSize int) (codec, error, error) {
	r := NewReader(bufio.NewReader(bytes.NewReader(raw)), maxSize)
	fh, body, err := r.ReadPacket()
	if err != nil {
		return nil, err, nil
	}
	p := newCodec(fh.Type)
	if err := p.Decode(version, fh, body); err != nil {
		return nil, err, nil
	}
	_, _, next := r.ReadPacket()
	return p, nil, next
}

type fixture struct {
	name       string
	version    byte
	raw        []byte
	pkt        codec // nil when wantErr is set
	wantErr    error // a ReasonCode, or io.ErrUnexpectedEOF
	maxSize    int   // Reader limit; 0 = protocol maximum
	decodeOnly bool  // raw is valid but not what Encode produces for pkt
}

// ---- wire helpers ----------------------------------------------------------

func bs(b ...byte) []byte { return b }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func u16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func u32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// str is a length-prefixed string or binary field.
func str(s string) []byte { return cat(u16(uint16(len(s))), []byte(s)) }

// vbi is a Variable Byte Integer, written out independently of AppendVarint.
func vbi(v int) []byte {
	var out []byte
	for {
		c := byte(v % 128)
		v /= 128
		if v > 0 {
			c |= 128
		}
		out = append(out, c)
		if v == 0 {
			return out
		}
	}
}

// propBlock is a Property Length followed by the given properties.
func propBlock(parts ...[]byte) []byte {
	body := cat(parts...)
	return cat(vbi(len(body)), body)
}

// frame is a whole packet: first byte, Remaining Length, body.
func frame(b0 byte, parts ...[]byte) []byte {
	body := cat(parts...)
	return cat([]byte{b0}, vbi(len(body)), body)
}

// present is a Properties.Present mask with the given ids.
func present(ids ...byte) uint64 {
	var m uint64
	for _, id := range ids {
		m |= 1 << id
	}
	return m
}

// ---- fixtures --------------------------------------------------------------

var (
	bigPayload = bytes.Repeat([]byte("0123456789"), 20) // 200 bytes: two-byte remaining length

	connectV5Props = Properties{
		Present: present(PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
			PropRequestResponseInfo, PropReceiveMaximum, PropTopicAliasMaximum, PropUserProperty,
			PropMaximumPacketSize),
		SessionExpiry: 3600, AuthMethod: "SCRAM-SHA-1", AuthData: []byte("client-first"),
		RequestProblemInfo: 0, RequestResponseInfo: 1, ReceiveMaximum: 10, TopicAliasMaximum: 5,
		UserProperties: []UserProperty{{"region", "eu"}}, MaximumPacketSize: 1024,
	}
	connectV5PropsRaw = propBlock(
		bs(0x11), u32(3600), bs(0x15), str("SCRAM-SHA-1"), bs(0x16), str("client-first"),
		bs(0x17, 0), bs(0x19, 1), bs(0x21), u16(10), bs(0x22), u16(5),
		bs(0x26), str("region"), str("eu"), bs(0x27), u32(1024))
	willV5Props = Properties{
		Present: present(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
			PropCorrelationData, PropWillDelay, PropUserProperty),
		PayloadFormat: 1, MessageExpiry: 60, ContentType: "text/plain", ResponseTopic: "dev/1/resp",
		CorrelationData: []byte{0xCA, 0xFE}, WillDelay: 5, UserProperties: []UserProperty{{"a", "b"}},
	}
	willV5PropsRaw = propBlock(
		bs(0x01, 1), bs(0x02), u32(60), bs(0x03), str("text/plain"), bs(0x08), str("dev/1/resp"),
		bs(0x09), str("\xCA\xFE"), bs(0x18), u32(5), bs(0x26), str("a"), str("b"))

	connackV5Props = Properties{
		Present: present(PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropResponseInfo,
			PropReasonString, PropReceiveMaximum, PropTopicAliasMaximum, PropMaximumQoS,
			PropRetainAvailable, PropUserProperty, PropMaximumPacketSize, PropWildcardSubAvailable,
			PropSubIDAvailable, PropSharedSubAvailable),
		SessionExpiry: 0, AssignedClientID: "auto-1", ServerKeepAlive: 30, ResponseInfo: "resp/",
		ReasonString: "welcome", ReceiveMaximum: 100, TopicAliasMaximum: 10, MaximumQoS: 1,
		RetainAvailable: 0, UserProperties: []UserProperty{{"k", "v"}}, MaximumPacketSize: 65536,
		WildcardSubAvailable: 1, SubIDAvailable: 0, SharedSubAvailable: 1,
	}
	connackV5PropsRaw = propBlock(
		bs(0x11), u32(0), bs(0x12), str("auto-1"), bs(0x13), u16(30), bs(0x1A), str("resp/"),
		bs(0x1F), str("welcome"), bs(0x21), u16(100), bs(0x22), u16(10), bs(0x24, 1), bs(0x25, 0),
		bs(0x26), str("k"), str("v"), bs(0x27), u32(65536), bs(0x28, 1), bs(0x29, 0), bs(0x2A, 1))

	publishV5Props = Properties{
		Present: present(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
			PropCorrelationData, PropSubscriptionIdentifier, PropTopicAlias, PropUserProperty),
		PayloadFormat: 1, MessageExpiry: 100, ContentType: "json", ResponseTopic: "r/t",
		CorrelationData: []byte("cid"), SubscriptionIdentifiers: []int{5, 300}, TopicAlias: 3,
		UserProperties: []UserProperty{{"k", "v"}, {"k", "v2"}},
	}
	publishV5PropsRaw = propBlock(
		bs(0x01, 1), bs(0x02), u32(100), bs(0x03), str("json"), bs(0x08), str("r/t"),
		bs(0x09), str("cid"), bs(0x0B), vbi(5), bs(0x0B), vbi(300), bs(0x23), u16(3),
		bs(0x26), str("k"), str("v"), bs(0x26), str("k"), str("v2"))
)

// connectV5 is a CONNECT head for 5.0 with the given flags and properties.
func connectV5(flags byte, props []byte) []byte {
	return cat(str("MQTT"), bs(5, flags), u16(30), props)
}

var fixtures = []fixture{
	// ---- CONNECT ---------------------------------------------------------
	{
		name: "connect/3.1 minimal", version: V31,
		raw: frame(0x10, str("MQIsdp"), bs(3, 0x02), u16(60), str("c1")),
		pkt: &Connect{ProtocolName: "MQIsdp", ProtocolVersion: V31, CleanStart: true, KeepAlive: 60, ClientID: "c1"},
	},
	{
		name: "connect/3.1 will and credentials", version: V31,
		raw: frame(0x10, str("MQIsdp"), bs(3, 0xCC), u16(10), str("c1"), str("w"), str("gone"), str("user"), str("secret")),
		pkt: &Connect{ProtocolName: "MQIsdp", ProtocolVersion: V31, KeepAlive: 10, ClientID: "c1",
			WillFlag: true, WillQoS: 1, WillTopic: "w", WillPayload: []byte("gone"),
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("secret")},
	},
	{
		name: "connect/3.1.1 will, user name and password", version: V311,
		raw: frame(0x10, str("MQTT"), bs(4, 0xEE), u16(30), str("client"), str("will/t"), str("bye"), str("user"), str("pw")),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolVersion: V311, CleanStart: true, KeepAlive: 30, ClientID: "client",
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "will/t", WillPayload: []byte("bye"),
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")},
	},
	{
		name: "connect/3.1.1 empty client id, empty will payload and password", version: V311,
		raw: frame(0x10, str("MQTT"), bs(4, 0xC6), u16(0), str(""), str("t"), str(""), str("u"), str("")),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolVersion: V311, CleanStart: true, WillFlag: true, WillTopic: "t",
			UsernameFlag: true, Username: "u", PasswordFlag: true},
	},
	{
		name: "connect/5 minimal", version: V5,
		raw: frame(0x10, connectV5(0x02, bs(0)), str("id")),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolVersion: V5, CleanStart: true, KeepAlive: 30, ClientID: "id"},
	},
	{
		name: "connect/5 all properties, will properties, credentials", version: V5,
		raw: frame(0x10, connectV5(0xD6, connectV5PropsRaw), str("dev-1"), willV5PropsRaw,
			str("dev/1/status"), str("offline"), str("u"), str("p")),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolVersion: V5, CleanStart: true, KeepAlive: 30, ClientID: "dev-1",
			WillFlag: true, WillQoS: 2, WillTopic: "dev/1/status", WillPayload: []byte("offline"), WillProperties: willV5Props,
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"), Properties: connectV5Props},
	},
	{
		// MQTT 5 allows a password without a user name (§3.1.2.9).
		name: "connect/5 password without user name", version: V5,
		raw: frame(0x10, connectV5(0x40, bs(0)), str("id"), str("tok")),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolVersion: V5, KeepAlive: 30, ClientID: "id", PasswordFlag: true, Password: []byte("tok")},
	},
	{
		// Connect.Decode ignores its version argument.
		name: "connect/5 decoded with version argument 3.1.1", version: V311,
		raw: frame(0x10, connectV5(0x00, bs(0)), str("id")),
		pkt: &Connect{ProtocolName: "MQTT", ProtocolVersion: V5, KeepAlive: 30, ClientID: "id"},
	},
	// [MQTT-3.1.2-3]
	{name: "connect/reserved flag set", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x03), u16(0), str("id"))},
	// [MQTT-3.1.2-14]
	{name: "connect/will QoS 3", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x1E), u16(0), str("id"), str("t"), str("m"))},
	// [MQTT-3.1.2-13]
	{name: "connect/will QoS without will flag", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x0A), u16(0), str("id"))},
	// [MQTT-3.1.2-15]
	{name: "connect/will retain without will flag", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x22), u16(0), str("id"))},
	// [MQTT-3.1.2-22]
	{name: "connect/3.1.1 password without user name", version: V311, wantErr: ProtocolError,
		raw: frame(0x10, str("MQTT"), bs(4, 0x42), u16(0), str("id"), str("pw"))},
	{name: "connect/unsupported protocol level", version: V311, wantErr: UnsupportedProtocolVersion,
		raw: frame(0x10, str("MQTT"), bs(6, 0x02), u16(0), str("id"))},
	{name: "connect/protocol name does not match level", version: V311, wantErr: UnsupportedProtocolVersion,
		raw: frame(0x10, str("MQIsdp"), bs(4, 0x02), u16(0), str("id"))},
	{name: "connect/unknown protocol name", version: V311, wantErr: UnsupportedProtocolVersion,
		raw: frame(0x10, str("HTTP"), bs(4, 0x02), u16(0), str("id"))},
	// [MQTT-2.1.3-1]
	{name: "connect/fixed header flags not 0", version: V311, wantErr: MalformedPacket,
		raw: frame(0x12, str("MQTT"), bs(4, 0x02), u16(0), str("id"))},
	// [MQTT-1.5.4-1] (3.1.1 [MQTT-1.5.3-1])
	{name: "connect/client id not UTF-8", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x02), u16(0), str("a\xFFb"))},
	{name: "connect/user name with UTF-16 surrogate", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x82), u16(0), str("id"), str("\xED\xA0\x80"))},
	// [MQTT-1.5.4-2] (3.1.1 [MQTT-1.5.3-2])
	{name: "connect/NUL in client id", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x02), u16(0), str("a\x00b"))},
	{name: "connect/NUL in will topic", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x06), u16(0), str("id"), str("t\x00"), str("m"))},
	{name: "connect/missing client id", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x02), u16(0))},
	{name: "connect/missing password", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0xC2), u16(0), str("id"), str("u"))},
	{name: "connect/client id longer than body", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x02), u16(0), bs(0, 9, 'a'))},
	{name: "connect/trailing bytes", version: V311, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(4, 0x02), u16(0), str("id"), bs(0))},
	{name: "connect/5 missing property length", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, str("MQTT"), bs(5, 0x02), u16(0))},
	// MQTT 5 §3.1.2.11.2: Session Expiry Interval more than once.
	{name: "connect/5 duplicate property", version: V5, wantErr: ProtocolError,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x11), u32(1), bs(0x11), u32(2))), str("id"))},
	// MQTT 5 §2.2.2.2: a property not valid for the packet is malformed.
	{name: "connect/5 topic alias not allowed on CONNECT", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x23), u16(1))), str("id"))},
	{name: "connect/5 will delay not allowed on CONNECT", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x18), u32(1))), str("id"))},
	{name: "connect/5 session expiry not allowed in will", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x06, bs(0)), str("id"), propBlock(bs(0x11), u32(1)), str("t"), str("m"))},
	{name: "connect/5 unknown property id", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x7F, 0))), str("id"))},
	{name: "connect/5 undefined property id 0x04", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x04, 0))), str("id"))},
	{name: "connect/5 multi-byte property id", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x91, 0x00, 0))), str("id"))},
	{name: "connect/5 receive maximum 0", version: V5, wantErr: ProtocolError,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x21), u16(0))), str("id"))},
	{name: "connect/5 maximum packet size 0", version: V5, wantErr: ProtocolError,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x27), u32(0))), str("id"))},
	{name: "connect/5 request problem information 2", version: V5, wantErr: ProtocolError,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x17, 2))), str("id"))},
	// MQTT 5 §3.1.2.11.10
	{name: "connect/5 authentication data without method", version: V5, wantErr: ProtocolError,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x16), str("x"))), str("id"))},
	{name: "connect/5 property length past end of body", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, bs(50, 0x11)), u32(1))},
	{name: "connect/5 truncated property value", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, bs(3, 0x11, 0, 0)))},
	{name: "connect/5 user property not UTF-8", version: V5, wantErr: MalformedPacket,
		raw: frame(0x10, connectV5(0x02, propBlock(bs(0x26), str("k"), str("\xC0\xAF"))), str("id"))},

	// ---- CONNACK ---------------------------------------------------------
	{name: "connack/3.1 accepted", version: V31, raw: frame(0x20, bs(0, 0)), pkt: &Connack{}},
	{name: "connack/3.1 refused identifier", version: V31, raw: frame(0x20, bs(0, 2)),
		pkt: &Connack{ReasonCode: ConnRefusedIdentifier}},
	{name: "connack/3.1.1 session present", version: V311, raw: frame(0x20, bs(1, 0)),
		pkt: &Connack{SessionPresent: true}},
	{name: "connack/3.1.1 bad credentials", version: V311, raw: frame(0x20, bs(0, 4)),
		pkt: &Connack{ReasonCode: ConnRefusedBadCredentials}},
	{name: "connack/5 success", version: V5, raw: frame(0x20, bs(0, 0, 0)), pkt: &Connack{}},
	{name: "connack/5 all properties", version: V5, raw: frame(0x20, bs(1, 0), connackV5PropsRaw),
		pkt: &Connack{SessionPresent: true, Properties: connackV5Props}},
	{name: "connack/5 refused with server reference", version: V5,
		raw: frame(0x20, bs(0, 0x9C), propBlock(bs(0x1C), str("other:1883"), bs(0x1F), str("moved"))),
		pkt: &Connack{ReasonCode: UseAnotherServer, Properties: Properties{
			Present: present(PropServerReference, PropReasonString), ServerReference: "other:1883", ReasonString: "moved"}}},
	{name: "connack/5 without property length", version: V5, decodeOnly: true,
		raw: frame(0x20, bs(0, 0x87)), pkt: &Connack{ReasonCode: NotAuthorized}},
	// [MQTT-3.2.2-1]
	{name: "connack/3.1.1 reserved acknowledge flags", version: V311, wantErr: MalformedPacket,
		raw: frame(0x20, bs(2, 0))},
	// 3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6]
	{name: "connack/3.1.1 session present on refusal", version: V311, wantErr: ProtocolError,
		raw: frame(0x20, bs(1, 5))},
	// [MQTT-3.2.2-8]
	{name: "connack/5 reason code not for CONNACK", version: V5, wantErr: ProtocolError,
		raw: frame(0x20, bs(0, 0x10, 0))},
	{name: "connack/5 topic alias not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0x20, bs(0, 0), propBlock(bs(0x23), u16(1)))},
	{name: "connack/5 maximum QoS 2", version: V5, wantErr: ProtocolError,
		raw: frame(0x20, bs(0, 0), propBlock(bs(0x24, 2)))},
	{name: "connack/3.1.1 reserved return code", version: V311, wantErr: ProtocolError, raw: frame(0x20, bs(0, 6))},
	{name: "connack/truncated", version: V311, wantErr: MalformedPacket, raw: frame(0x20, bs(0))},
	{name: "connack/3.1.1 trailing byte", version: V311, wantErr: MalformedPacket, raw: frame(0x20, bs(0, 0, 0))},
	{name: "connack/fixed header flags", version: V311, wantErr: MalformedPacket, raw: frame(0x21, bs(0, 0))},

	// ---- PUBLISH ---------------------------------------------------------
	{name: "publish/3.1 QoS 0", version: V31, raw: frame(0x30, str("a/b"), []byte("hello")),
		pkt: &Publish{Topic: []byte("a/b"), Payload: []byte("hello")}},
	{name: "publish/3.1.1 QoS 1 dup retain", version: V311, raw: frame(0x3B, str("a/b"), u16(7), []byte("x")),
		pkt: &Publish{Dup: true, QoS: 1, Retain: true, Topic: []byte("a/b"), PacketID: 7, Payload: []byte("x")}},
	{name: "publish/3.1.1 QoS 2 empty payload", version: V311, raw: frame(0x34, str("t"), u16(0xFFFF)),
		pkt: &Publish{QoS: 2, Topic: []byte("t"), PacketID: 0xFFFF}},
	{name: "publish/3.1.1 two-byte remaining length", version: V311, raw: frame(0x30, str("big"), bigPayload),
		pkt: &Publish{Topic: []byte("big"), Payload: bigPayload}},
	{name: "publish/3.1.1 multi-byte UTF-8 topic", version: V311, raw: frame(0x30, str("température/€/𝄞"), []byte("1")),
		pkt: &Publish{Topic: []byte("température/€/𝄞"), Payload: []byte("1")}},
	{name: "publish/3.1.1 at the packet size limit", version: V311, maxSize: 9,
		raw: frame(0x30, str("t"), []byte("1234")), pkt: &Publish{Topic: []byte("t"), Payload: []byte("1234")}},
	{name: "publish/5 QoS 0 no properties", version: V5, raw: frame(0x30, str("t"), bs(0), []byte("p")),
		pkt: &Publish{Topic: []byte("t"), Payload: []byte("p")}},
	{name: "publish/5 QoS 1 all properties", version: V5,
		raw: frame(0x32, str("t"), u16(9), publishV5PropsRaw, []byte("payload")),
		pkt: &Publish{QoS: 1, Topic: []byte("t"), PacketID: 9, Properties: publishV5Props, Payload: []byte("payload")}},
	{name: "publish/5 empty topic with topic alias", version: V5,
		raw: frame(0x30, str(""), propBlock(bs(0x23), u16(1)), []byte("p")),
		pkt: &Publish{Properties: Properties{Present: present(PropTopicAlias), TopicAlias: 1}, Payload: []byte("p")}},
	{name: "publish/5 empty correlation data", version: V5,
		raw: frame(0x30, str("t"), propBlock(bs(0x09), str(""))),
		pkt: &Publish{Topic: []byte("t"), Properties: Properties{Present: present(PropCorrelationData)}}},
	// [MQTT-3.3.1-4]
	{name: "publish/QoS 3", version: V311, wantErr: MalformedPacket, raw: frame(0x36, str("t"), u16(1))},
	{name: "publish/5 QoS 3", version: V5, wantErr: MalformedPacket, raw: frame(0x37, str("t"), u16(1), bs(0))},
	// [MQTT-3.3.1-2]
	{name: "publish/DUP on QoS 0", version: V311, wantErr: ProtocolError, raw: frame(0x38, str("t"))},
	// [MQTT-2.3.1-1]
	{name: "publish/QoS 1 packet id 0", version: V311, wantErr: ProtocolError, raw: frame(0x32, str("t"), u16(0))},
	{name: "publish/QoS 2 missing packet id", version: V311, wantErr: MalformedPacket, raw: frame(0x34, str("t"), bs(1))},
	// [MQTT-1.5.4-1] (3.1.1 [MQTT-1.5.3-1])
	{name: "publish/topic not UTF-8", version: V311, wantErr: MalformedPacket, raw: frame(0x30, str("a/\xFE"), []byte("x"))},
	{name: "publish/topic with surrogate", version: V311, wantErr: MalformedPacket, raw: frame(0x30, str("\xED\xBF\xBF"))},
	// [MQTT-1.5.4-2] (3.1.1 [MQTT-1.5.3-2])
	{name: "publish/NUL in topic", version: V311, wantErr: MalformedPacket, raw: frame(0x30, str("a\x00"), []byte("x"))},
	// 3.1.1 [MQTT-4.7.3-1]
	{name: "publish/3.1.1 empty topic", version: V311, wantErr: ProtocolError, raw: frame(0x30, str(""), []byte("x"))},
	{name: "publish/5 empty topic without alias", version: V5, wantErr: ProtocolError, raw: frame(0x30, str(""), bs(0))},
	{name: "publish/topic longer than body", version: V311, wantErr: MalformedPacket, raw: frame(0x30, bs(0, 5, 'a'))},
	{name: "publish/empty body", version: V311, wantErr: MalformedPacket, raw: frame(0x30)},
	// [MQTT-3.3.2-8]
	{name: "publish/5 topic alias 0", version: V5, wantErr: ProtocolError, raw: frame(0x30, str("t"), propBlock(bs(0x23), u16(0)))},
	{name: "publish/5 duplicate message expiry", version: V5, wantErr: ProtocolError,
		raw: frame(0x30, str("t"), propBlock(bs(0x02), u32(1), bs(0x02), u32(1)))},
	{name: "publish/5 duplicate content type", version: V5, wantErr: ProtocolError,
		raw: frame(0x30, str("t"), propBlock(bs(0x03), str("a"), bs(0x03), str("b")))},
	{name: "publish/5 session expiry not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0x30, str("t"), propBlock(bs(0x11), u32(1)))},
	{name: "publish/5 reason string not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0x30, str("t"), propBlock(bs(0x1F), str("x")))},
	{name: "publish/5 subscription identifier 0", version: V5, wantErr: ProtocolError,
		raw: frame(0x30, str("t"), propBlock(bs(0x0B, 0)))},
	{name: "publish/5 subscription identifier over 4 bytes", version: V5, wantErr: MalformedPacket,
		raw: frame(0x30, str("t"), propBlock(bs(0x0B, 0x80, 0x80, 0x80, 0x80, 0x01)))},
	{name: "publish/5 payload format indicator 2", version: V5, wantErr: ProtocolError,
		raw: frame(0x30, str("t"), propBlock(bs(0x01, 2)))},
	{name: "publish/5 content type not UTF-8", version: V5, wantErr: MalformedPacket,
		raw: frame(0x30, str("t"), propBlock(bs(0x03), str("\xFF")))},
	{name: "publish/5 NUL in response topic", version: V5, wantErr: MalformedPacket,
		raw: frame(0x30, str("t"), propBlock(bs(0x08), str("r\x00")))},
	{name: "publish/5 property length truncated", version: V5, wantErr: MalformedPacket,
		raw: frame(0x30, str("t"), bs(0x80))},

	// ---- Fixed header and Reader errors ------------------------------------
	{name: "reader/over the packet size limit", version: V311, maxSize: 8, wantErr: PacketTooLarge,
		raw: frame(0x30, str("t"), []byte("1234"))},
	{name: "reader/over the limit by announced length only", version: V311, maxSize: 1024, wantErr: PacketTooLarge,
		raw: bs(0x30, 0xFF, 0xFF, 0xFF, 0x7F)},
	{name: "reader/remaining length over 4 bytes", version: V311, wantErr: MalformedPacket,
		raw: bs(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01)},
	// [MQTT-1.5.5-1]
	{name: "reader/remaining length not minimal", version: V311, wantErr: MalformedPacket,
		raw: bs(0xC0, 0x80, 0x00)},
	{name: "reader/packet type 0", version: V311, wantErr: MalformedPacket, raw: bs(0x00, 0x00)},
	{name: "reader/truncated in remaining length", version: V311, wantErr: io.ErrUnexpectedEOF, raw: bs(0x30, 0x80)},
	{name: "reader/truncated after first byte", version: V311, wantErr: io.ErrUnexpectedEOF, raw: bs(0x30)},
	{name: "reader/truncated body", version: V311, wantErr: io.ErrUnexpectedEOF, raw: bs(0x30, 10, 0, 1, 't')},

	// ---- PUBACK, PUBREC, PUBREL, PUBCOMP ------------------------------------
	{name: "puback/3.1.1", version: V311, raw: frame(0x40, u16(1)), pkt: &Ack{Type: PUBACK, PacketID: 1}},
	{name: "pubrec/3.1.1", version: V311, raw: frame(0x50, u16(2)), pkt: &Ack{Type: PUBREC, PacketID: 2}},
	{name: "pubrel/3.1.1", version: V311, raw: frame(0x62, u16(3)), pkt: &Ack{Type: PUBREL, PacketID: 3}},
	{name: "pubcomp/3.1.1", version: V311, raw: frame(0x70, u16(4)), pkt: &Ack{Type: PUBCOMP, PacketID: 4}},
	{name: "pubrel/3.1", version: V31, raw: frame(0x62, u16(3)), pkt: &Ack{Type: PUBREL, PacketID: 3}},
	// MQTT 3.1 set DUP on retransmitted PUBRELs.
	{name: "pubrel/3.1 with DUP", version: V31, decodeOnly: true, raw: frame(0x6A, u16(3)), pkt: &Ack{Type: PUBREL, PacketID: 3}},
	{name: "puback/5 success, short form", version: V5, raw: frame(0x40, u16(1)), pkt: &Ack{Type: PUBACK, PacketID: 1}},
	{name: "puback/5 reason code only", version: V5, raw: frame(0x40, u16(2), bs(0x10)),
		pkt: &Ack{Type: PUBACK, PacketID: 2, ReasonCode: NoMatchingSubscribers}},
	{name: "puback/5 reason code, empty properties", version: V5, decodeOnly: true, raw: frame(0x40, u16(2), bs(0x10, 0)),
		pkt: &Ack{Type: PUBACK, PacketID: 2, ReasonCode: NoMatchingSubscribers}},
	{name: "pubrec/5 with properties", version: V5,
		raw: frame(0x50, u16(3), bs(0x97), propBlock(bs(0x1F), str("quota"), bs(0x26), str("k"), str("v"))),
		pkt: &Ack{Type: PUBREC, PacketID: 3, ReasonCode: QuotaExceeded, Properties: Properties{
			Present: present(PropReasonString, PropUserProperty), ReasonString: "quota", UserProperties: []UserProperty{{"k", "v"}}}}},
	{name: "pubrel/5 packet identifier not found", version: V5, raw: frame(0x62, u16(4), bs(0x92)),
		pkt: &Ack{Type: PUBREL, PacketID: 4, ReasonCode: PacketIdentifierNotFound}},
	{name: "pubcomp/5 success with reason string", version: V5, raw: frame(0x70, u16(5), bs(0), propBlock(bs(0x1F), str("ok"))),
		pkt: &Ack{Type: PUBCOMP, PacketID: 5, Properties: Properties{Present: present(PropReasonString), ReasonString: "ok"}}},
	// [MQTT-3.6.1-1]
	{name: "pubrel/flags 0000", version: V311, wantErr: MalformedPacket, raw: frame(0x60, u16(1))},
	{name: "pubrel/3.1.1 flags 1010", version: V311, wantErr: MalformedPacket, raw: frame(0x6A, u16(1))},
	{name: "pubrel/5 flags 0011", version: V5, wantErr: MalformedPacket, raw: frame(0x63, u16(1))},
	// [MQTT-2.1.3-1]
	{name: "puback/flags 0010", version: V311, wantErr: MalformedPacket, raw: frame(0x42, u16(1))},
	{name: "pubcomp/flags 0001", version: V5, wantErr: MalformedPacket, raw: frame(0x71, u16(1))},
	{name: "puback/packet id 0", version: V311, wantErr: ProtocolError, raw: frame(0x40, u16(0))},
	{name: "puback/truncated packet id", version: V311, wantErr: MalformedPacket, raw: frame(0x40, bs(1))},
	{name: "puback/3.1.1 trailing byte", version: V311, wantErr: MalformedPacket, raw: frame(0x40, u16(1), bs(0))},
	// [MQTT-3.6.2-1]
	{name: "pubrel/5 reason code not for PUBREL", version: V5, wantErr: ProtocolError, raw: frame(0x62, u16(1), bs(0x10))},
	// [MQTT-3.4.2-1]
	{name: "puback/5 reason code not for PUBACK", version: V5, wantErr: ProtocolError, raw: frame(0x40, u16(1), bs(0x81))},
	{name: "puback/5 session expiry not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0x40, u16(1), bs(0), propBlock(bs(0x11), u32(1)))},
	{name: "puback/5 duplicate reason string", version: V5, wantErr: ProtocolError,
		raw: frame(0x40, u16(1), bs(0), propBlock(bs(0x1F), str("a"), bs(0x1F), str("b")))},

	// ---- SUBSCRIBE -------------------------------------------------------
	{name: "subscribe/3.1.1", version: V311, raw: frame(0x82, u16(10), str("a/+"), bs(1), str("#"), bs(2)),
		pkt: &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/+", QoS: 1}, {Filter: "#", QoS: 2}}}},
	{name: "subscribe/3.1", version: V31, raw: frame(0x82, u16(1), str("x"), bs(0)),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "x"}}}},
	{name: "subscribe/3.1 with DUP", version: V31, decodeOnly: true, raw: frame(0x8A, u16(1), str("x"), bs(0)),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "x"}}}},
	{name: "subscribe/5 options and properties", version: V5,
		raw: frame(0x82, u16(11), propBlock(bs(0x0B), vbi(268435455), bs(0x26), str("k"), str("v")),
			str("x/#"), bs(0x2D), str("$share/g/y"), bs(0x10)),
		pkt: &Subscribe{PacketID: 11,
			Properties: Properties{Present: present(PropSubscriptionIdentifier, PropUserProperty),
				SubscriptionIdentifiers: []int{268435455}, UserProperties: []UserProperty{{"k", "v"}}},
			Subscriptions: []Subscription{
				{Filter: "x/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "$share/g/y", RetainHandling: 1},
			}}},
	// [MQTT-3.8.1-1]
	{name: "subscribe/flags 0000", version: V311, wantErr: MalformedPacket, raw: frame(0x80, u16(1), str("a"), bs(0))},
	{name: "subscribe/5 flags 0011", version: V5, wantErr: MalformedPacket, raw: frame(0x83, u16(1), bs(0), str("a"), bs(0))},
	// 3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]
	{name: "subscribe/no topic filters", version: V311, wantErr: ProtocolError, raw: frame(0x82, u16(1))},
	{name: "subscribe/5 no topic filters", version: V5, wantErr: ProtocolError, raw: frame(0x82, u16(1), bs(0))},
	{name: "subscribe/packet id 0", version: V311, wantErr: ProtocolError, raw: frame(0x82, u16(0), str("a"), bs(0))},
	// 3.1.1 [MQTT-3-8.3-4]
	{name: "subscribe/3.1.1 reserved option bits", version: V311, wantErr: MalformedPacket,
		raw: frame(0x82, u16(1), str("a"), bs(0x04))},
	{name: "subscribe/3.1.1 QoS 3", version: V311, wantErr: MalformedPacket, raw: frame(0x82, u16(1), str("a"), bs(3))},
	// [MQTT-3.8.3-5]
	{name: "subscribe/5 reserved option bits", version: V5, wantErr: MalformedPacket,
		raw: frame(0x82, u16(1), bs(0), str("a"), bs(0x40))},
	{name: "subscribe/5 QoS 3", version: V5, wantErr: ProtocolError, raw: frame(0x82, u16(1), bs(0), str("a"), bs(0x03))},
	{name: "subscribe/5 retain handling 3", version: V5, wantErr: ProtocolError, raw: frame(0x82, u16(1), bs(0), str("a"), bs(0x30))},
	{name: "subscribe/5 two subscription identifiers", version: V5, wantErr: ProtocolError,
		raw: frame(0x82, u16(1), propBlock(bs(0x0B, 1, 0x0B, 2)), str("a"), bs(0))},
	{name: "subscribe/5 subscription identifier 0", version: V5, wantErr: ProtocolError,
		raw: frame(0x82, u16(1), propBlock(bs(0x0B, 0)), str("a"), bs(0))},
	{name: "subscribe/5 reason string not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0x82, u16(1), propBlock(bs(0x1F), str("x")), str("a"), bs(0))},
	{name: "subscribe/missing options byte", version: V311, wantErr: MalformedPacket, raw: frame(0x82, u16(1), str("a"))},
	{name: "subscribe/filter not UTF-8", version: V311, wantErr: MalformedPacket, raw: frame(0x82, u16(1), str("\x80"), bs(0))},
	{name: "subscribe/NUL in filter", version: V311, wantErr: MalformedPacket, raw: frame(0x82, u16(1), str("a/\x00"), bs(0))},

	// ---- SUBACK ----------------------------------------------------------
	{name: "suback/3.1.1", version: V311, raw: frame(0x90, u16(10), bs(0, 1, 2, 0x80)),
		pkt: &Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS1, GrantedQoS2, SubackFailure}}},
	{name: "suback/5", version: V5, raw: frame(0x90, u16(11), propBlock(bs(0x1F), str("no")), bs(1, 0x87, 0xA2)),
		pkt: &Suback{PacketID: 11, Properties: Properties{Present: present(PropReasonString), ReasonString: "no"},
			ReasonCodes: []ReasonCode{GrantedQoS1, NotAuthorized, WildcardSubscriptionsNotSupported}}},
	// 3.1.1 [MQTT-3.9.3-2]
	{name: "suback/3.1.1 MQTT 5 reason code", version: V311, wantErr: ProtocolError, raw: frame(0x90, u16(1), bs(0x87))},
	{name: "suback/5 reason code not for SUBACK", version: V5, wantErr: ProtocolError, raw: frame(0x90, u16(1), bs(0), bs(0x11))},
	{name: "suback/no reason codes", version: V311, wantErr: ProtocolError, raw: frame(0x90, u16(1))},
	{name: "suback/flags", version: V311, wantErr: MalformedPacket, raw: frame(0x92, u16(1), bs(0))},

	// ---- UNSUBSCRIBE -------------------------------------------------------
	{name: "unsubscribe/3.1.1", version: V311, raw: frame(0xA2, u16(5), str("a"), str("b/#")),
		pkt: &Unsubscribe{PacketID: 5, Filters: []string{"a", "b/#"}}},
	{name: "unsubscribe/5", version: V5, raw: frame(0xA2, u16(6), propBlock(bs(0x26), str("k"), str("v")), str("a")),
		pkt: &Unsubscribe{PacketID: 6, Properties: Properties{Present: present(PropUserProperty),
			UserProperties: []UserProperty{{"k", "v"}}}, Filters: []string{"a"}}},
	{name: "unsubscribe/3.1 with DUP", version: V31, decodeOnly: true, raw: frame(0xAA, u16(5), str("a")),
		pkt: &Unsubscribe{PacketID: 5, Filters: []string{"a"}}},
	// [MQTT-3.10.1-1]
	{name: "unsubscribe/flags 0000", version: V311, wantErr: MalformedPacket, raw: frame(0xA0, u16(5), str("a"))},
	// [MQTT-3.10.3-2]
	{name: "unsubscribe/no topic filters", version: V311, wantErr: ProtocolError, raw: frame(0xA2, u16(5))},
	{name: "unsubscribe/packet id 0", version: V5, wantErr: ProtocolError, raw: frame(0xA2, u16(0), bs(0), str("a"))},
	{name: "unsubscribe/5 subscription identifier not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0xA2, u16(5), propBlock(bs(0x0B, 1)), str("a"))},
	{name: "unsubscribe/filter not UTF-8", version: V311, wantErr: MalformedPacket, raw: frame(0xA2, u16(5), str("\xC3"))},

	// ---- UNSUBACK --------------------------------------------------------
	{name: "unsuback/3.1.1", version: V311, raw: frame(0xB0, u16(5)), pkt: &Unsuback{PacketID: 5}},
	{name: "unsuback/5", version: V5, raw: frame(0xB0, u16(6), bs(0), bs(0, 0x11)),
		pkt: &Unsuback{PacketID: 6, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "unsuback/5 with reason string", version: V5, raw: frame(0xB0, u16(7), propBlock(bs(0x1F), str("r")), bs(0x87)),
		pkt: &Unsuback{PacketID: 7, Properties: Properties{Present: present(PropReasonString), ReasonString: "r"},
			ReasonCodes: []ReasonCode{NotAuthorized}}},
	{name: "unsuback/3.1.1 payload", version: V311, wantErr: MalformedPacket, raw: frame(0xB0, u16(5), bs(0))},
	{name: "unsuback/5 no reason codes", version: V5, wantErr: ProtocolError, raw: frame(0xB0, u16(5), bs(0))},
	// [MQTT-3.11.3-2]
	{name: "unsuback/5 reason code not for UNSUBACK", version: V5, wantErr: ProtocolError, raw: frame(0xB0, u16(5), bs(0), bs(0x10))},

	// ---- PINGREQ, PINGRESP -------------------------------------------------
	{name: "pingreq/3.1", version: V31, raw: bs(0xC0, 0), pkt: &ping{PINGREQ}},
	{name: "pingreq/3.1.1", version: V311, raw: bs(0xC0, 0), pkt: &ping{PINGREQ}},
	{name: "pingresp/5", version: V5, raw: bs(0xD0, 0), pkt: &ping{PINGRESP}},
	{name: "pingreq/flags", version: V311, wantErr: MalformedPacket, raw: bs(0xC2, 0)},
	{name: "pingresp/body", version: V5, wantErr: MalformedPacket, raw: bs(0xD0, 1, 0)},

	// ---- DISCONNECT ------------------------------------------------------
	{name: "disconnect/3.1", version: V31, raw: bs(0xE0, 0), pkt: &Disconnect{}},
	{name: "disconnect/3.1.1", version: V311, raw: bs(0xE0, 0), pkt: &Disconnect{}},
	{name: "disconnect/5 normal, short form", version: V5, raw: bs(0xE0, 0), pkt: &Disconnect{}},
	{name: "disconnect/5 with will", version: V5, raw: frame(0xE0, bs(0x04)), pkt: &Disconnect{ReasonCode: DisconnectWithWill}},
	{name: "disconnect/5 with properties", version: V5,
		raw: frame(0xE0, bs(0x9C), propBlock(bs(0x11), u32(0), bs(0x1C), str("b:1883"), bs(0x1F), str("move"))),
		pkt: &Disconnect{ReasonCode: UseAnotherServer, Properties: Properties{
			Present:       present(PropSessionExpiry, PropServerReference, PropReasonString),
			SessionExpiry: 0, ServerReference: "b:1883", ReasonString: "move"}}},
	{name: "disconnect/5 success with empty properties", version: V5, decodeOnly: true, raw: frame(0xE0, bs(0, 0)), pkt: &Disconnect{}},
	// [MQTT-3.14.1-1]
	{name: "disconnect/flags", version: V311, wantErr: MalformedPacket, raw: bs(0xE1, 0)},
	{name: "disconnect/3.1.1 body", version: V311, wantErr: MalformedPacket, raw: bs(0xE0, 1, 0)},
	// [MQTT-3.14.2-1]
	{name: "disconnect/5 reason code not for DISCONNECT", version: V5, wantErr: ProtocolError, raw: frame(0xE0, bs(0x19))},
	{name: "disconnect/5 receive maximum not allowed", version: V5, wantErr: MalformedPacket,
		raw: frame(0xE0, bs(0), propBlock(bs(0x21), u16(1)))},
	{name: "disconnect/5 trailing byte", version: V5, wantErr: MalformedPacket, raw: frame(0xE0, bs(0), bs(0), bs(0))},

	// ---- AUTH ------------------------------------------------------------
	{name: "auth/5 success, short form", version: V5, raw: bs(0xF0, 0), pkt: &Auth{}},
	{name: "auth/5 continue", version: V5,
		raw: frame(0xF0, bs(0x18), propBlock(bs(0x15), str("SCRAM-SHA-1"), bs(0x16), str("server-first"))),
		pkt: &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{
			Present: present(PropAuthMethod, PropAuthData), AuthMethod: "SCRAM-SHA-1", AuthData: []byte("server-first")}}},
	{name: "auth/5 re-authenticate without properties", version: V5, raw: frame(0xF0, bs(0x19, 0)),
		pkt: &Auth{ReasonCode: ReAuthenticate}},
	{name: "auth/5 reason code alone", version: V5, decodeOnly: true, raw: frame(0xF0, bs(0x19)),
		pkt: &Auth{ReasonCode: ReAuthenticate}},
	{name: "auth/3.1.1 reserved packet type", version: V311, wantErr: MalformedPacket, raw: bs(0xF0, 0)},
	// [MQTT-3.15.1-1]
	{name: "auth/5 flags", version: V5, wantErr: MalformedPacket, raw: bs(0xF1, 0)},
	// [MQTT-3.15.2-1]
	{name: "auth/5 reason code not for AUTH", version: V5, wantErr: ProtocolError, raw: frame(0xF0, bs(0x87), bs(0))},
	{name: "auth/5 data without method", version: V5, wantErr: ProtocolError, raw: frame(0xF0, bs(0x18), propBlock(bs(0x16), str("x")))},
}

// fixtureName is used by t.Run: the fixture name with its version.
func fixtureName(f fixture) string {
	return strings.ReplaceAll(f.name, " ", "_") + fmt.Sprintf("/v%d", f.version)
}
