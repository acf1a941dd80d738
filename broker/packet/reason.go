package packet

import "fmt"

// ReasonCode is an MQTT 5 reason code (MQTT 5 §2.4). The same byte carries
// the MQTT 3.1.1 CONNACK return codes and the SUBACK failure code 0x80.
//
// ReasonCode implements error so decode errors can wrap it; note that
// Success (0) is a non-nil error value like any other.
type ReasonCode byte

// MQTT 5 reason codes (MQTT 5 §2.4, Table 2-6). Several names share a value;
// which one applies depends on the packet.
const (
	Success                             ReasonCode = 0x00 // CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH
	NormalDisconnection                 ReasonCode = 0x00 // DISCONNECT
	GrantedQoS0                         ReasonCode = 0x00 // SUBACK
	GrantedQoS1                         ReasonCode = 0x01 // SUBACK
	GrantedQoS2                         ReasonCode = 0x02 // SUBACK
	DisconnectWithWill                  ReasonCode = 0x04 // DISCONNECT
	NoMatchingSubscribers               ReasonCode = 0x10 // PUBACK, PUBREC
	NoSubscriptionExisted               ReasonCode = 0x11 // UNSUBACK
	ContinueAuthentication              ReasonCode = 0x18 // AUTH
	ReAuthenticate                      ReasonCode = 0x19 // AUTH
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUsernameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3, Table 3.1).
const (
	ConnAccepted                 ReasonCode = 0x00
	ConnRefusedProtocol          ReasonCode = 0x01 // unacceptable protocol version
	ConnRefusedIdentifier        ReasonCode = 0x02 // identifier rejected
	ConnRefusedServerUnavailable ReasonCode = 0x03
	ConnRefusedBadCredentials    ReasonCode = 0x04 // bad user name or password
	ConnRefusedNotAuthorized     ReasonCode = 0x05
)

// SubackFailure is the 3.1.1 SUBACK return code for a refused subscription
// (3.1.1 §3.9.3); MQTT 5 calls the same value UnspecifiedError.
const SubackFailure ReasonCode = 0x80

var reasonNames = map[ReasonCode]string{
	0x00: "success",
	0x01: "granted QoS 1 / unacceptable protocol version",
	0x02: "granted QoS 2 / identifier rejected",
	0x03: "server unavailable",
	0x04: "disconnect with will message / bad user name or password",
	0x05: "not authorized",
	0x10: "no matching subscribers",
	0x11: "no subscription existed",
	0x18: "continue authentication",
	0x19: "re-authenticate",
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8C: "bad authentication method",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x92: "packet identifier not found",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9A: "retain not supported",
	0x9B: "QoS not supported",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9E: "shared subscriptions not supported",
	0x9F: "connection rate exceeded",
	0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

// String returns the reason code's name, e.g. "malformed packet". Values
// 0x01–0x05 mean different things in MQTT 5 and in a 3.1.1 CONNACK; their
// names give both meanings.
func (c ReasonCode) String() string {
	if s, ok := reasonNames[c]; ok {
		return s
	}
	return fmt.Sprintf("reason code 0x%02X", byte(c))
}

// Error returns the name and the value, e.g. "malformed packet (0x81)".
func (c ReasonCode) Error() string {
	if s, ok := reasonNames[c]; ok {
		return fmt.Sprintf("%s (0x%02X)", s, byte(c))
	}
	return c.String()
}

// IsError reports whether c signals failure (0x80 and above, MQTT 5 §2.4).
func (c ReasonCode) IsError() bool { return c >= 0x80 }

// V3ConnackCode maps a reason code to the nearest MQTT 3.1.1 CONNACK return
// code. Codes 0x00–0x05 are taken to be 3.1.1 return codes already and are
// returned unchanged (no MQTT 5 CONNACK reason code lies in that range).
// Anything without a closer match becomes ConnRefusedServerUnavailable.
func V3ConnackCode(c ReasonCode) ReasonCode {
	switch c {
	case ConnAccepted, ConnRefusedProtocol, ConnRefusedIdentifier,
		ConnRefusedServerUnavailable, ConnRefusedBadCredentials, ConnRefusedNotAuthorized:
		return c
	case UnsupportedProtocolVersion:
		return ConnRefusedProtocol
	case ClientIdentifierNotValid:
		return ConnRefusedIdentifier
	case BadUsernameOrPassword, BadAuthenticationMethod:
		return ConnRefusedBadCredentials
	case NotAuthorized, Banned:
		return ConnRefusedNotAuthorized
	default:
		// ServerUnavailable, ServerBusy, UseAnotherServer, ServerMoved,
		// QuotaExceeded, ConnectionRateExceeded, UnspecifiedError, ...
		return ConnRefusedServerUnavailable
	}
}

// codeSet is a set of reason codes, one bit per value.
type codeSet [4]uint64

func newCodeSet(codes ...ReasonCode) codeSet {
	var s codeSet
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *codeSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// Reason codes each MQTT 5 packet may carry (MQTT 5 §3.x.2.1 tables).
var (
	connackCodes = newCodeSet(Success, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, UnsupportedProtocolVersion, ClientIdentifierNotValid,
		BadUsernameOrPassword, NotAuthorized, ServerUnavailable, ServerBusy, Banned,
		BadAuthenticationMethod, TopicNameInvalid, PacketTooLarge, QuotaExceeded,
		PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer,
		ServerMoved, ConnectionRateExceeded)
	// PUBACK and PUBREC [MQTT-3.4.2-1], [MQTT-3.5.2-1].
	pubackCodes = newCodeSet(Success, NoMatchingSubscribers, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicNameInvalid, PacketIdentifierInUse,
		QuotaExceeded, PayloadFormatInvalid)
	// PUBREL and PUBCOMP [MQTT-3.6.2-1], [MQTT-3.7.2-1].
	pubrelCodes = newCodeSet(Success, PacketIdentifierNotFound)
	// [MQTT-3.9.3-2]
	subackCodes = newCodeSet(GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse,
		QuotaExceeded, SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported)
	// 3.1.1 [MQTT-3.9.3-2]; 3.1 has no failure code, but accepting 0x80 from
	// a 3.1 peer costs nothing.
	subackV3Codes = newCodeSet(GrantedQoS0, GrantedQoS1, GrantedQoS2, SubackFailure)
	// [MQTT-3.11.3-2]
	unsubackCodes = newCodeSet(Success, NoSubscriptionExisted, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse)
	// [MQTT-3.14.2-1]
	disconnectCodes = newCodeSet(NormalDisconnection, DisconnectWithWill, UnspecifiedError,
		MalformedPacket, ProtocolError, ImplementationSpecificError, NotAuthorized, ServerBusy,
		ServerShuttingDown, KeepAliveTimeout, SessionTakenOver, TopicFilterInvalid,
		TopicNameInvalid, ReceiveMaximumExceeded, TopicAliasInvalid, PacketTooLarge,
		MessageRateTooHigh, QuotaExceeded, AdministrativeAction, PayloadFormatInvalid,
		RetainNotSupported, QoSNotSupported, UseAnotherServer, ServerMoved,
		SharedSubscriptionsNotSupported, ConnectionRateExceeded, MaximumConnectTime,
		SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported)
	// [MQTT-3.15.2-1]
	authCodes = newCodeSet(Success, ContinueAuthentication, ReAuthenticate)
)

// checkCode validates a reason code against the set allowed for packet t.
func checkCode(set *codeSet, t Type, c ReasonCode) error {
	if !set.has(c) {
		return fmt.Errorf("%w: reason code 0x%02X not allowed on %v", ProtocolError, byte(c), t)
	}
	return nil
}
