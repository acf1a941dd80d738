package packet

import "fmt"

// Publish is a PUBLISH packet (MQTT 5 §3.3, 3.1.1 §3.3).
//
// A decoded Publish aliases the body it was decoded from: Topic, Payload
// and Properties.CorrelationData point into the Reader's buffer and are
// valid only until the next read. Copy them to keep them longer.
type Publish struct {
	Dup    bool
	QoS    byte // 0, 1 or 2
	Retain bool
	// Topic is the topic name. It may be empty in MQTT 5 when a Topic Alias
	// property is present. Wildcards and other topic rules are checked by
	// the topic package, not here.
	Topic []byte
	// PacketID is present only for QoS 1 and 2, and then non-zero
	// [MQTT-2.3.1-1].
	PacketID   uint16
	Properties Properties // MQTT 5 only
	Payload    []byte
}

// Publish fixed-header flag bits (MQTT 5 §3.3.1).
const (
	pubFlagRetain   = 0x01
	pubFlagQoSShift = 1
	pubFlagDup      = 0x08
)

// Decode parses a PUBLISH of the given protocol version into p. It does not
// allocate unless a string property or a repeated (User Property,
// Subscription Identifier) property is present, or it fails.
//
// Errors wrap MalformedPacket (QoS 3 [MQTT-3.3.1-4], truncated fields,
// ill-formed UTF-8 or U+0000 in the topic, bad properties) or ProtocolError
// (DUP on QoS 0 [MQTT-3.3.1-2], packet identifier 0, empty topic without a
// topic alias, repeated or out-of-range properties).
func (p *Publish) Decode(version byte, fh FixedHeader, body []byte) error {
	*p = Publish{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, PUBLISH); err != nil {
		return err
	}
	p.Dup = fh.Flags&pubFlagDup != 0
	p.QoS = fh.Flags >> pubFlagQoSShift & 0x03
	p.Retain = fh.Flags&pubFlagRetain != 0
	if p.QoS == 3 {
		// "it is a Malformed Packet" (MQTT 5 §3.3.1.2)
		return fmt.Errorf("%w: PUBLISH QoS 3 [MQTT-3.3.1-4]", MalformedPacket)
	}
	if p.Dup && p.QoS == 0 {
		return fmt.Errorf("%w: PUBLISH DUP set on QoS 0 [MQTT-3.3.1-2]", ProtocolError)
	}
	topic, b, err := readBinary(body, "topic name")
	if err != nil {
		return err
	}
	// [MQTT-3.3.2-1]: the topic name is a UTF-8 Encoded String.
	if err := checkUTF8(topic, "topic name"); err != nil {
		return err
	}
	p.Topic = topic
	if p.QoS > 0 {
		if p.PacketID, b, err = readUint16(b, "packet identifier"); err != nil {
			return err
		}
		if p.PacketID == 0 {
			return errPacketIDZero(PUBLISH)
		}
	}
	if version == V5 {
		if b, err = p.Properties.decode(b, ctxPublish); err != nil {
			return err
		}
	}
	if len(topic) == 0 && !p.Properties.Has(PropTopicAlias) {
		// 3.1.1 [MQTT-4.7.3-1]: topic names are at least one character;
		// MQTT 5 §3.3.2.3.4 allows an empty one only with a Topic Alias.
		return fmt.Errorf("%w: empty topic name without topic alias", ProtocolError)
	}
	if len(b) > 0 {
		p.Payload = b[:len(b):len(b)]
	}
	return nil
}

// Encode appends p as a PUBLISH packet for the given protocol version to
// dst. Properties are written only for MQTT 5. It does not allocate when
// dst has room.
//
// Errors wrap ProtocolError (QoS over 2, packet identifier 0 with QoS > 0,
// DUP on QoS 0, empty topic without a topic alias), MalformedPacket (topic
// over 65535 bytes) or PacketTooLarge.
func (p *Publish) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if p.QoS > 2 {
		return dst, fmt.Errorf("%w: PUBLISH QoS %d [MQTT-3.3.1-4]", ProtocolError, p.QoS)
	}
	if p.QoS > 0 && p.PacketID == 0 {
		return dst, errPacketIDZero(PUBLISH)
	}
	if p.Dup && p.QoS == 0 {
		return dst, fmt.Errorf("%w: PUBLISH DUP set on QoS 0 [MQTT-3.3.1-2]", ProtocolError)
	}
	if len(p.Topic) == 0 && (version < V5 || !p.Properties.Has(PropTopicAlias)) {
		return dst, fmt.Errorf("%w: empty topic name without topic alias", ProtocolError)
	}
	if err := checkLen(len(p.Topic), "topic name"); err != nil {
		return dst, err
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	var props int
	if version == V5 {
		var err error
		if props, err = p.Properties.size(ctxPublish); err != nil {
			return dst, err
		}
		n += propsLen(props)
	}
	if err := checkRemaining(PUBLISH, n); err != nil {
		return dst, err
	}
	flags := p.QoS << pubFlagQoSShift
	if p.Dup {
		flags |= pubFlagDup
	}
	if p.Retain {
		flags |= pubFlagRetain
	}
	dst = appendFixedHeader(dst, PUBLISH, flags, n)
	dst = appendBinary(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if version == V5 {
		dst = p.Properties.encode(dst, ctxPublish, props)
	}
	return append(dst, p.Payload...), nil
}

// Size returns the length of p encoded for version, fixed header included,
// without encoding it (and without allocating): what a Maximum Packet Size
// is compared with (MQTT 5 §3.1.2.11.4). It fails where Encode would. (It
// repeats Encode's arithmetic rather than sharing a helper, which kept
// Encode about a nanosecond faster; FuzzDecode checks that they agree.)
func (p *Publish) Size(version byte) (int, error) {
	if err := checkVersion(version); err != nil {
		return 0, err
	}
	if len(p.Topic) == 0 && (version < V5 || !p.Properties.Has(PropTopicAlias)) {
		return 0, fmt.Errorf("%w: empty topic name without topic alias", ProtocolError)
	}
	if err := checkLen(len(p.Topic), "topic name"); err != nil {
		return 0, err
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if version == V5 {
		props, err := p.Properties.size(ctxPublish)
		if err != nil {
			return 0, err
		}
		n += propsLen(props)
	}
	if err := checkRemaining(PUBLISH, n); err != nil {
		return 0, err
	}
	return 1 + varintLen(n) + n, nil
}
