package packet

import "fmt"

// ---------------------------------------------------------------------------
// SUBSCRIBE (MQTT 5 §3.8, 3.1.1 §3.8)
// ---------------------------------------------------------------------------

// Subscription is one topic filter of a SUBSCRIBE and its options. NoLocal,
// RetainAsPublished and RetainHandling exist in MQTT 5 only.
type Subscription struct {
	Filter            string
	QoS               byte // maximum QoS, 0..2
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0 send retained, 1 only if new, 2 never
}

// Subscription Options bits (MQTT 5 §3.8.3.1).
const (
	subOptQoS           = 0x03
	subOptNoLocal       = 0x04
	subOptRAP           = 0x08
	subOptRHShift       = 4
	subOptRH            = 0x30
	subOptReservedV5    = 0xC0
	subOptReservedV3    = 0xFC
	subscriptionMaxQoS  = 2
	subscriptionMaxRH   = 2
	subscribeFixedFlags = 0x02
)

// Subscribe is a SUBSCRIBE packet.
type Subscribe struct {
	PacketID      uint16
	Properties    Properties // MQTT 5 only: Subscription Identifier, User Property
	Subscriptions []Subscription
}

// Decode parses a SUBSCRIBE of the given protocol version into s.
//
// Errors wrap MalformedPacket (flags not 0010 [MQTT-3.8.1-1], reserved
// option bits set [MQTT-3.8.3-5] (3.1.1 [MQTT-3-8.3-4]), ill-formed filter
// strings, QoS 3 in 3.1.x) or ProtocolError (packet identifier 0, no
// filters [MQTT-3.8.3-3], QoS 3 or Retain Handling 3 in MQTT 5). Topic
// filter syntax is checked by the topic package, not here.
func (s *Subscribe) Decode(version byte, fh FixedHeader, body []byte) error {
	*s = Subscribe{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, SUBSCRIBE); err != nil {
		return err
	}
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	var err error
	b := body
	if s.PacketID, b, err = readUint16(b, "packet identifier"); err != nil {
		return err
	}
	if s.PacketID == 0 {
		return errPacketIDZero(SUBSCRIBE)
	}
	if version == V5 {
		if b, err = s.Properties.decode(b, ctxSubscribe); err != nil {
			return err
		}
	}
	for len(b) > 0 {
		var sub Subscription
		var opts byte
		if sub.Filter, b, err = readStringCopy(b, "topic filter"); err != nil {
			return err
		}
		if opts, b, err = readByte(b, "subscription options"); err != nil {
			return err
		}
		sub.QoS = opts & subOptQoS
		if version < V5 {
			// 3.1.1 [MQTT-3-8.3-4]: reserved bits non-zero or QoS 3 is malformed.
			if opts&subOptReservedV3 != 0 || sub.QoS > subscriptionMaxQoS {
				return fmt.Errorf("%w: subscription options 0x%02X [MQTT-3-8.3-4]", MalformedPacket, opts)
			}
		} else {
			if opts&subOptReservedV5 != 0 {
				return fmt.Errorf("%w: subscription options reserved bits 0x%02X [MQTT-3.8.3-5]", MalformedPacket, opts)
			}
			sub.NoLocal = opts&subOptNoLocal != 0
			sub.RetainAsPublished = opts&subOptRAP != 0
			sub.RetainHandling = opts & subOptRH >> subOptRHShift
			if sub.QoS > subscriptionMaxQoS {
				return fmt.Errorf("%w: subscription QoS 3", ProtocolError)
			}
			if sub.RetainHandling > subscriptionMaxRH {
				return fmt.Errorf("%w: retain handling 3", ProtocolError)
			}
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if len(s.Subscriptions) == 0 {
		// 3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]
		return fmt.Errorf("%w: SUBSCRIBE without topic filters [MQTT-3.8.3-3]", ProtocolError)
	}
	return nil
}

// Encode appends s as a SUBSCRIBE packet for the given protocol version to
// dst. For 3.1 and 3.1.1 the MQTT 5 subscription options and properties are
// dropped.
func (s *Subscribe) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if s.PacketID == 0 {
		return dst, errPacketIDZero(SUBSCRIBE)
	}
	if len(s.Subscriptions) == 0 {
		return dst, fmt.Errorf("%w: SUBSCRIBE without topic filters [MQTT-3.8.3-3]", ProtocolError)
	}
	n := 2
	var props int
	if version == V5 {
		var err error
		if props, err = s.Properties.size(ctxSubscribe); err != nil {
			return dst, err
		}
		n += propsLen(props)
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		if err := checkLen(len(sub.Filter), "topic filter"); err != nil {
			return dst, err
		}
		if sub.QoS > subscriptionMaxQoS {
			return dst, fmt.Errorf("%w: subscription QoS %d", ProtocolError, sub.QoS)
		}
		if version == V5 && sub.RetainHandling > subscriptionMaxRH {
			return dst, fmt.Errorf("%w: retain handling %d", ProtocolError, sub.RetainHandling)
		}
		n += 2 + len(sub.Filter) + 1
	}
	if err := checkRemaining(SUBSCRIBE, n); err != nil {
		return dst, err
	}
	dst = appendFixedHeader(dst, SUBSCRIBE, subscribeFixedFlags, n)
	dst = appendUint16(dst, s.PacketID)
	if version == V5 {
		dst = s.Properties.encode(dst, ctxSubscribe, props)
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		opts := sub.QoS
		if version == V5 {
			opts |= sub.RetainHandling << subOptRHShift
			if sub.NoLocal {
				opts |= subOptNoLocal
			}
			if sub.RetainAsPublished {
				opts |= subOptRAP
			}
		}
		dst = append(appendString(dst, sub.Filter), opts)
	}
	return dst, nil
}

// ---------------------------------------------------------------------------
// SUBACK (MQTT 5 §3.9, 3.1.1 §3.9)
// ---------------------------------------------------------------------------

// Suback is a SUBACK packet: one reason code per requested subscription, in
// order [MQTT-3.9.3-1].
type Suback struct {
	PacketID    uint16
	Properties  Properties // MQTT 5 only
	ReasonCodes []ReasonCode
}

// Decode parses a SUBACK of the given protocol version into s. 3.1.x return
// codes are limited to 0, 1, 2 and 0x80 [MQTT-3.9.3-2].
func (s *Suback) Decode(version byte, fh FixedHeader, body []byte) error {
	*s = Suback{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, SUBACK); err != nil {
		return err
	}
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	var err error
	b := body
	if s.PacketID, b, err = readUint16(b, "packet identifier"); err != nil {
		return err
	}
	if s.PacketID == 0 {
		return errPacketIDZero(SUBACK)
	}
	if version == V5 {
		if b, err = s.Properties.decode(b, ctxSuback); err != nil {
			return err
		}
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: SUBACK without reason codes", ProtocolError)
	}
	set := &subackCodes
	if version < V5 {
		set = &subackV3Codes
	}
	s.ReasonCodes = make([]ReasonCode, len(b))
	for i, c := range b {
		if err := checkCode(set, SUBACK, ReasonCode(c)); err != nil {
			return err
		}
		s.ReasonCodes[i] = ReasonCode(c)
	}
	return nil
}

// Encode appends s as a SUBACK packet for the given protocol version to dst.
// For 3.1 and 3.1.1, properties are dropped and every failure code (0x80
// and above) becomes 0x80.
func (s *Suback) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if s.PacketID == 0 {
		return dst, errPacketIDZero(SUBACK)
	}
	if len(s.ReasonCodes) == 0 {
		return dst, fmt.Errorf("%w: SUBACK without reason codes", ProtocolError)
	}
	n := 2 + len(s.ReasonCodes)
	var props int
	if version == V5 {
		var err error
		if props, err = s.Properties.size(ctxSuback); err != nil {
			return dst, err
		}
		n += propsLen(props)
	}
	for _, c := range s.ReasonCodes {
		// 3.1.x has one failure code: any MQTT 5 failure maps to it.
		if version < V5 && c.IsError() {
			continue
		}
		if err := checkCode(&subackCodes, SUBACK, c); err != nil {
			return dst, err
		}
	}
	if err := checkRemaining(SUBACK, n); err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, SUBACK, 0, n), s.PacketID)
	if version == V5 {
		dst = s.Properties.encode(dst, ctxSuback, props)
	}
	for _, c := range s.ReasonCodes {
		if version < V5 && c.IsError() {
			c = SubackFailure
		}
		dst = append(dst, byte(c))
	}
	return dst, nil
}

// ---------------------------------------------------------------------------
// UNSUBSCRIBE (MQTT 5 §3.10, 3.1.1 §3.10)
// ---------------------------------------------------------------------------

// Unsubscribe is an UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties // MQTT 5 only: User Property
	Filters    []string
}

// Decode parses an UNSUBSCRIBE of the given protocol version into u.
// Errors wrap MalformedPacket (flags not 0010 [MQTT-3.10.1-1], ill-formed
// filter strings) or ProtocolError (packet identifier 0, no filters
// [MQTT-3.10.3-2]).
func (u *Unsubscribe) Decode(version byte, fh FixedHeader, body []byte) error {
	*u = Unsubscribe{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, UNSUBSCRIBE); err != nil {
		return err
	}
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	var err error
	b := body
	if u.PacketID, b, err = readUint16(b, "packet identifier"); err != nil {
		return err
	}
	if u.PacketID == 0 {
		return errPacketIDZero(UNSUBSCRIBE)
	}
	if version == V5 {
		if b, err = u.Properties.decode(b, ctxUnsubscribe); err != nil {
			return err
		}
	}
	for len(b) > 0 {
		var f string
		if f, b, err = readStringCopy(b, "topic filter"); err != nil {
			return err
		}
		u.Filters = append(u.Filters, f)
	}
	if len(u.Filters) == 0 {
		return fmt.Errorf("%w: UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]", ProtocolError)
	}
	return nil
}

// Encode appends u as an UNSUBSCRIBE packet for the given protocol version
// to dst. For 3.1 and 3.1.1 the properties are dropped.
func (u *Unsubscribe) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if u.PacketID == 0 {
		return dst, errPacketIDZero(UNSUBSCRIBE)
	}
	if len(u.Filters) == 0 {
		return dst, fmt.Errorf("%w: UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]", ProtocolError)
	}
	n := 2
	var props int
	if version == V5 {
		var err error
		if props, err = u.Properties.size(ctxUnsubscribe); err != nil {
			return dst, err
		}
		n += propsLen(props)
	}
	for _, f := range u.Filters {
		if err := checkLen(len(f), "topic filter"); err != nil {
			return dst, err
		}
		n += 2 + len(f)
	}
	if err := checkRemaining(UNSUBSCRIBE, n); err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, UNSUBSCRIBE, subscribeFixedFlags, n), u.PacketID)
	if version == V5 {
		dst = u.Properties.encode(dst, ctxUnsubscribe, props)
	}
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}

// ---------------------------------------------------------------------------
// UNSUBACK (MQTT 5 §3.11, 3.1.1 §3.11)
// ---------------------------------------------------------------------------

// Unsuback is an UNSUBACK packet. In 3.1 and 3.1.1 it has no payload, so
// ReasonCodes and Properties are MQTT 5 only.
type Unsuback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode // one per filter, in order [MQTT-3.11.3-1]
}

// Decode parses an UNSUBACK of the given protocol version into u.
func (u *Unsuback) Decode(version byte, fh FixedHeader, body []byte) error {
	*u = Unsuback{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, UNSUBACK); err != nil {
		return err
	}
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	var err error
	b := body
	if u.PacketID, b, err = readUint16(b, "packet identifier"); err != nil {
		return err
	}
	if u.PacketID == 0 {
		return errPacketIDZero(UNSUBACK)
	}
	if version < V5 {
		if len(b) != 0 {
			return errTrailing(UNSUBACK, len(b))
		}
		return nil
	}
	if b, err = u.Properties.decode(b, ctxUnsuback); err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: UNSUBACK without reason codes", ProtocolError)
	}
	u.ReasonCodes = make([]ReasonCode, len(b))
	for i, c := range b {
		if err := checkCode(&unsubackCodes, UNSUBACK, ReasonCode(c)); err != nil {
			return err
		}
		u.ReasonCodes[i] = ReasonCode(c)
	}
	return nil
}

// Encode appends u as an UNSUBACK packet for the given protocol version to
// dst. For 3.1 and 3.1.1 only the packet identifier is written.
func (u *Unsuback) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if u.PacketID == 0 {
		return dst, errPacketIDZero(UNSUBACK)
	}
	if version < V5 {
		return appendUint16(appendFixedHeader(dst, UNSUBACK, 0, 2), u.PacketID), nil
	}
	if len(u.ReasonCodes) == 0 {
		return dst, fmt.Errorf("%w: UNSUBACK without reason codes", ProtocolError)
	}
	for _, c := range u.ReasonCodes {
		if err := checkCode(&unsubackCodes, UNSUBACK, c); err != nil {
			return dst, err
		}
	}
	props, err := u.Properties.size(ctxUnsuback)
	if err != nil {
		return dst, err
	}
	n := 2 + propsLen(props) + len(u.ReasonCodes)
	if err := checkRemaining(UNSUBACK, n); err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, UNSUBACK, 0, n), u.PacketID)
	dst = u.Properties.encode(dst, ctxUnsuback, props)
	for _, c := range u.ReasonCodes {
		dst = append(dst, byte(c))
	}
	return dst, nil
}
