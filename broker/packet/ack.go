package packet

import "fmt"

// Ack is a PUBACK, PUBREC, PUBREL or PUBCOMP packet (MQTT 5 §3.4–§3.7);
// Type says which. The reason code and properties exist in MQTT 5 only.
type Ack struct {
	Type       Type // PUBACK, PUBREC, PUBREL or PUBCOMP
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// ackCodes returns the reason codes allowed on ack type t.
func ackCodes(t Type) *codeSet {
	if t == PUBACK || t == PUBREC {
		return &pubackCodes
	}
	return &pubrelCodes
}

func isAck(t Type) bool { return t >= PUBACK && t <= PUBCOMP }

// Decode parses a PUBACK, PUBREC, PUBREL or PUBCOMP into a, setting a.Type
// from fh. PUBREL's flags must be 0010 [MQTT-3.6.1-1], the others' 0000.
// In MQTT 5 a Remaining Length of 2 means Success and no properties, and of
// 3 a reason code and no properties (MQTT 5 §3.4.2.1).
func (a *Ack) Decode(version byte, fh FixedHeader, body []byte) error {
	*a = Ack{Type: fh.Type}
	if err := checkVersion(version); err != nil {
		return err
	}
	if !isAck(fh.Type) {
		return fmt.Errorf("%w: %v packet decoded as an ack", MalformedPacket, fh.Type)
	}
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	id, b, err := readUint16(body, "packet identifier")
	if err != nil {
		return err
	}
	if id == 0 {
		return errPacketIDZero(fh.Type)
	}
	a.PacketID = id
	if version == V5 && len(b) > 0 {
		a.ReasonCode, b = ReasonCode(b[0]), b[1:]
		if err := checkCode(ackCodes(fh.Type), fh.Type, a.ReasonCode); err != nil {
			return err
		}
		if len(b) > 0 {
			if b, err = a.Properties.decode(b, ctxAck); err != nil {
				return err
			}
		}
	}
	if len(b) != 0 {
		return errTrailing(fh.Type, len(b))
	}
	return nil
}

// Encode appends a to dst as the packet a.Type names. For MQTT 5 it uses
// the shortest form: no reason code when it is Success and there are no
// properties, no Property Length when there are no properties. For 3.1 and
// 3.1.1 the reason code and properties are dropped.
func (a *Ack) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if !isAck(a.Type) {
		return dst, fmt.Errorf("%w: Ack with type %v", ProtocolError, a.Type)
	}
	if a.PacketID == 0 {
		return dst, errPacketIDZero(a.Type)
	}
	flags := byte(0)
	if a.Type == PUBREL {
		flags = 0x02
	}
	if version < V5 {
		return appendUint16(appendFixedHeader(dst, a.Type, flags, 2), a.PacketID), nil
	}
	if err := checkCode(ackCodes(a.Type), a.Type, a.ReasonCode); err != nil {
		return dst, err
	}
	props, err := a.Properties.size(ctxAck)
	if err != nil {
		return dst, err
	}
	n := 2
	switch {
	case props > 0:
		n += 1 + propsLen(props)
	case a.ReasonCode != Success:
		n++
	}
	if err := checkRemaining(a.Type, n); err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, a.Type, flags, n), a.PacketID)
	if n > 2 {
		dst = append(dst, byte(a.ReasonCode))
	}
	if props > 0 {
		dst = a.Properties.encode(dst, ctxAck, props)
	}
	return dst, nil
}
