// Package packet is Relay's MQTT wire codec: it reads, decodes and encodes
// every control packet of MQTT 3.1, 3.1.1 and 5.0, on both the server and the
// client side.
//
// The package is a leaf: it imports only the standard library and knows
// nothing about sessions, topics or tenants. It checks what can be checked on
// one packet in isolation (syntax, reserved bits, the MQTT 5 property rules,
// UTF-8 strings) and leaves everything that needs connection or session state
// to the broker.
//
// # Errors
//
// Every decode error wraps a [ReasonCode] with %w, so the caller can recover
// the MQTT 5 reason code to send back with errors.As:
//
//	var rc packet.ReasonCode
//	if errors.As(err, &rc) { ... rc is MalformedPacket, ProtocolError, ... }
//
// [MalformedPacket] means the bytes cannot be parsed as the specification
// describes (including reserved bits with the wrong value, which MQTT 5
// §2.1.3 defines as malformed); [ProtocolError] means the packet parses but
// breaks a rule; [PacketTooLarge] means it exceeds the configured maximum;
// [UnsupportedProtocolVersion] is returned for an unknown protocol name or
// level in CONNECT. Encode errors wrap a ReasonCode in the same way.
//
// # Memory
//
// [Reader.ReadPacket] returns a body that aliases the Reader's buffer, and a
// decoded [Publish] aliases that body (Topic, Payload and
// Properties.CorrelationData), so decoding and encoding a PUBLISH does not
// allocate. Every other packet's decoded fields are copies that stay valid
// after the next read.
package packet

import "fmt"

// Protocol versions, as sent in the Protocol Level byte of CONNECT.
const (
	V31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 byte = 4 // MQTT 3.1.1, protocol name "MQTT"
	V5   byte = 5 // MQTT 5.0, protocol name "MQTT"
)

// MaxRemainingLength is the largest Remaining Length a four-byte Variable
// Byte Integer can express (MQTT 5 §1.5.5).
const MaxRemainingLength = 268435455

// Type is an MQTT control packet type, the high nibble of the first byte.
type Type byte

// Control packet types (MQTT 5 §2.1.2). AUTH exists in MQTT 5 only.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{
	CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
	PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
	SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
	PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

// String returns the packet type's name, e.g. "PUBLISH".
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// FixedHeader is the first part of every MQTT control packet.
type FixedHeader struct {
	Type      Type // packet type, high nibble of byte 1
	Flags     byte // low nibble of byte 1
	Remaining int  // Remaining Length: size of variable header plus payload
}

// checkVersion reports an error for a protocol level this package does not
// speak.
func checkVersion(v byte) error {
	if v < V31 || v > V5 {
		return fmt.Errorf("%w: protocol version %d", UnsupportedProtocolVersion, v)
	}
	return nil
}

// checkType reports an error when a Decode method is handed the wrong packet.
func checkType(fh FixedHeader, want Type) error {
	if fh.Type != want {
		return fmt.Errorf("%w: %v packet decoded as %v", MalformedPacket, fh.Type, want)
	}
	return nil
}

// checkFlags validates the fixed-header flags of every packet type except
// PUBLISH: they are reserved and MUST have the listed value [MQTT-2.1.3-1]
// (3.1.1: [MQTT-2.2.2-1]); anything else is malformed (MQTT 5 §2.1.3).
// MQTT 3.1 still allowed the DUP bit on PUBREL, SUBSCRIBE and UNSUBSCRIBE
// retransmissions, so it is accepted (and dropped) there.
func checkFlags(fh FixedHeader, version byte) error {
	want := byte(0)
	switch fh.Type {
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		// [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
		want = 0x02
		if version == V31 && fh.Flags == 0x0A {
			return nil
		}
	}
	if fh.Flags != want {
		return fmt.Errorf("%w: %v fixed header flags %04b, want %04b", MalformedPacket, fh.Type, fh.Flags, want)
	}
	return nil
}

// appendFixedHeader appends the first byte and the Remaining Length.
func appendFixedHeader(dst []byte, t Type, flags byte, remaining int) []byte {
	dst = append(dst, byte(t)<<4|flags)
	return AppendVarint(dst, remaining)
}

// checkRemaining rejects a packet that no Remaining Length can describe.
func checkRemaining(t Type, n int) error {
	if n > MaxRemainingLength {
		return fmt.Errorf("%w: %v remaining length %d over %d", PacketTooLarge, t, n, MaxRemainingLength)
	}
	return nil
}

// AppendPingreq appends a PINGREQ packet to dst.
func AppendPingreq(dst []byte) []byte { return append(dst, byte(PINGREQ)<<4, 0) }

// AppendPingresp appends a PINGRESP packet to dst.
func AppendPingresp(dst []byte) []byte { return append(dst, byte(PINGRESP)<<4, 0) }

// DecodePing validates a PINGREQ or PINGRESP: reserved flags 0 and an empty
// body (MQTT 5 §3.12, §3.13). It returns an error wrapping MalformedPacket
// otherwise.
func DecodePing(fh FixedHeader, body []byte) error {
	if fh.Type != PINGREQ && fh.Type != PINGRESP {
		return fmt.Errorf("%w: %v packet decoded as PINGREQ/PINGRESP", MalformedPacket, fh.Type)
	}
	if err := checkFlags(fh, V311); err != nil {
		return err
	}
	if len(body) != 0 {
		return fmt.Errorf("%w: %v with %d body bytes", MalformedPacket, fh.Type, len(body))
	}
	return nil
}
