package packet

import "fmt"

// ---------------------------------------------------------------------------
// CONNECT (MQTT 5 §3.1, 3.1.1 §3.1)
// ---------------------------------------------------------------------------

// Connect is a CONNECT packet. Its decoded fields are copies: they stay
// valid after the next read.
type Connect struct {
	ProtocolName    string // "MQIsdp" for 3.1, "MQTT" for 3.1.1 and 5.0
	ProtocolVersion byte   // V31, V311 or V5
	CleanStart      bool   // Clean Session in 3.1.x
	KeepAlive       uint16 // seconds
	ClientID        string

	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillTopic      string
	WillPayload    []byte
	WillProperties Properties // MQTT 5 only

	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte

	Properties Properties // MQTT 5 only
}

// Connect flags bits (MQTT 5 §3.1.2.3).
const (
	connFlagReserved     = 0x01
	connFlagCleanStart   = 0x02
	connFlagWill         = 0x04
	connFlagWillQoSShift = 3
	connFlagWillRetain   = 0x20
	connFlagPassword     = 0x40
	connFlagUsername     = 0x80
)

// protocolName returns the protocol name a CONNECT of version v carries.
func protocolName(v byte) string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

// Decode parses a CONNECT body into c. It ignores version: the version
// comes from the packet itself. c.ProtocolName and c.ProtocolVersion are
// filled in as soon as they are read, so after an error the caller can still
// tell which CONNACK format to answer with.
//
// Errors wrap UnsupportedProtocolVersion for an unknown protocol name/level
// pair, MalformedPacket for syntax errors and bad connect flags, and
// ProtocolError for rule violations.
func (c *Connect) Decode(_ byte, fh FixedHeader, body []byte) error {
	*c = Connect{}
	if err := checkType(fh, CONNECT); err != nil {
		return err
	}
	if err := checkFlags(fh, V311); err != nil {
		return err
	}
	name, b, err := readStringCopy(body, "protocol name")
	if err != nil {
		return err
	}
	c.ProtocolName = name
	if c.ProtocolVersion, b, err = readByte(b, "protocol level"); err != nil {
		return err
	}
	switch {
	case name == "MQIsdp" && c.ProtocolVersion == V31:
	case name == "MQTT" && (c.ProtocolVersion == V311 || c.ProtocolVersion == V5):
	default:
		// [MQTT-3.1.2-1], [MQTT-3.1.2-2]
		return fmt.Errorf("%w: protocol %q level %d", UnsupportedProtocolVersion, name, c.ProtocolVersion)
	}
	v5 := c.ProtocolVersion == V5

	flags, b, err := readByte(b, "connect flags")
	if err != nil {
		return err
	}
	if flags&connFlagReserved != 0 {
		return fmt.Errorf("%w: CONNECT reserved flag set [MQTT-3.1.2-3]", MalformedPacket)
	}
	c.CleanStart = flags&connFlagCleanStart != 0
	c.WillFlag = flags&connFlagWill != 0
	c.WillQoS = flags >> connFlagWillQoSShift & 0x03
	c.WillRetain = flags&connFlagWillRetain != 0
	c.PasswordFlag = flags&connFlagPassword != 0
	c.UsernameFlag = flags&connFlagUsername != 0
	if c.WillQoS == 3 {
		return fmt.Errorf("%w: will QoS 3 [MQTT-3.1.2-14]", MalformedPacket)
	}
	if !c.WillFlag && (c.WillQoS != 0 || c.WillRetain) {
		// 3.1.1 [MQTT-3.1.2-13], [MQTT-3.1.2-15]; 5.0 [MQTT-3.1.2-11]
		return fmt.Errorf("%w: will QoS or retain set without will flag [MQTT-3.1.2-11]", MalformedPacket)
	}
	if !v5 && c.PasswordFlag && !c.UsernameFlag {
		// 3.1.1 [MQTT-3.1.2-22]; MQTT 5 allows a password without a user name.
		return fmt.Errorf("%w: password flag without user name flag [MQTT-3.1.2-22]", ProtocolError)
	}
	if c.KeepAlive, b, err = readUint16(b, "keep alive"); err != nil {
		return err
	}
	if v5 {
		if b, err = c.Properties.decode(b, ctxConnect); err != nil {
			return err
		}
	}

	// Payload: Client Identifier, Will Properties, Will Topic, Will Payload,
	// User Name, Password, in that order [MQTT-3.1.3-1].
	if c.ClientID, b, err = readStringCopy(b, "client identifier"); err != nil {
		return err
	}
	if c.WillFlag {
		if v5 {
			if b, err = c.WillProperties.decode(b, ctxWill); err != nil {
				return fmt.Errorf("will properties: %w", err)
			}
		}
		if c.WillTopic, b, err = readStringCopy(b, "will topic"); err != nil {
			return err
		}
		if c.WillPayload, b, err = readBinaryCopy(b, "will payload"); err != nil {
			return err
		}
	}
	if c.UsernameFlag {
		if c.Username, b, err = readStringCopy(b, "user name"); err != nil {
			return err
		}
	}
	if c.PasswordFlag {
		if c.Password, b, err = readBinaryCopy(b, "password"); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errTrailing(CONNECT, len(b))
	}
	return nil
}

// Encode appends c as a CONNECT packet to dst. The packet is encoded for
// c.ProtocolVersion, or for version when that is 0; an empty ProtocolName
// becomes the version's name. Will and user name/password fields are written
// only when their flag is set; properties only for MQTT 5.
func (c *Connect) Encode(dst []byte, version byte) ([]byte, error) {
	v := c.ProtocolVersion
	if v == 0 {
		v = version
	}
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	name := c.ProtocolName
	if name == "" {
		name = protocolName(v)
	}
	if c.WillFlag && c.WillQoS > 2 {
		return dst, fmt.Errorf("%w: will QoS %d [MQTT-3.1.2-14]", ProtocolError, c.WillQoS)
	}
	if v < V5 && c.PasswordFlag && !c.UsernameFlag {
		return dst, fmt.Errorf("%w: password without user name [MQTT-3.1.2-22]", ProtocolError)
	}

	var props, willProps int
	var err error
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	lenErr := firstErr(checkLen(len(name), "protocol name"), checkLen(len(c.ClientID), "client identifier"))
	if v == V5 {
		if props, err = c.Properties.size(ctxConnect); err != nil {
			return dst, err
		}
		n += propsLen(props)
	}
	flags := byte(0)
	if c.CleanStart {
		flags |= connFlagCleanStart
	}
	if c.WillFlag {
		flags |= connFlagWill | c.WillQoS<<connFlagWillQoSShift
		if c.WillRetain {
			flags |= connFlagWillRetain
		}
		if v == V5 {
			if willProps, err = c.WillProperties.size(ctxWill); err != nil {
				return dst, fmt.Errorf("will properties: %w", err)
			}
			n += propsLen(willProps)
		}
		n += 2 + len(c.WillTopic) + 2 + len(c.WillPayload)
		lenErr = firstErr(lenErr, checkLen(len(c.WillTopic), "will topic"), checkLen(len(c.WillPayload), "will payload"))
	}
	if c.UsernameFlag {
		flags |= connFlagUsername
		n += 2 + len(c.Username)
		lenErr = firstErr(lenErr, checkLen(len(c.Username), "user name"))
	}
	if c.PasswordFlag {
		flags |= connFlagPassword
		n += 2 + len(c.Password)
		lenErr = firstErr(lenErr, checkLen(len(c.Password), "password"))
	}
	if lenErr != nil {
		return dst, lenErr
	}
	if err := checkRemaining(CONNECT, n); err != nil {
		return dst, err
	}

	dst = appendFixedHeader(dst, CONNECT, 0, n)
	dst = appendString(dst, name)
	dst = append(dst, v, flags)
	dst = appendUint16(dst, c.KeepAlive)
	if v == V5 {
		dst = c.Properties.encode(dst, ctxConnect, props)
	}
	dst = appendString(dst, c.ClientID)
	if c.WillFlag {
		if v == V5 {
			dst = c.WillProperties.encode(dst, ctxWill, willProps)
		}
		dst = appendString(dst, c.WillTopic)
		dst = appendBinary(dst, c.WillPayload)
	}
	if c.UsernameFlag {
		dst = appendString(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendBinary(dst, c.Password)
	}
	return dst, nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// CONNACK (MQTT 5 §3.2, 3.1.1 §3.2)
// ---------------------------------------------------------------------------

// Connack is a CONNACK packet. For 3.1 and 3.1.1, ReasonCode holds the
// return code (ConnAccepted .. ConnRefusedNotAuthorized).
type Connack struct {
	SessionPresent bool // always false for 3.1, which has no such flag
	ReasonCode     ReasonCode
	Properties     Properties // MQTT 5 only
}

// Decode parses a CONNACK body of the given protocol version into c.
func (c *Connack) Decode(version byte, fh FixedHeader, body []byte) error {
	*c = Connack{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, CONNACK); err != nil {
		return err
	}
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	if len(body) < 2 {
		return errShort("CONNACK")
	}
	ack, code, b := body[0], ReasonCode(body[1]), body[2:]
	switch {
	case version == V31:
		// Byte 1 is unused in 3.1.
	case ack&^1 != 0:
		return fmt.Errorf("%w: CONNACK reserved flags %08b [MQTT-3.2.2-1]", MalformedPacket, ack)
	default:
		c.SessionPresent = ack&1 != 0
	}
	c.ReasonCode = code
	if c.SessionPresent && code != Success {
		// 3.1.1 [MQTT-3.2.2-4], 5.0 [MQTT-3.2.2-6]
		return fmt.Errorf("%w: session present with reason code 0x%02X [MQTT-3.2.2-6]", ProtocolError, byte(code))
	}
	if version < V5 && code > ConnRefusedNotAuthorized {
		// 3.1.1 §3.2.2.3: return codes 6-255 are reserved.
		return fmt.Errorf("%w: reserved CONNACK return code %d", ProtocolError, byte(code))
	}
	if version == V5 {
		if err := checkCode(&connackCodes, CONNACK, code); err != nil {
			return err
		}
		// Tolerate a missing Property Length, as for the acks.
		if len(b) > 0 {
			var err error
			if b, err = c.Properties.decode(b, ctxConnack); err != nil {
				return err
			}
		}
	}
	if len(b) != 0 {
		return errTrailing(CONNACK, len(b))
	}
	return nil
}

// Encode appends c as a CONNACK packet to dst. For 3.1 and 3.1.1 the reason
// code is mapped with V3ConnackCode and the properties are dropped; 3.1 has
// no Session Present flag.
func (c *Connack) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	code := c.ReasonCode
	if version < V5 {
		code = V3ConnackCode(code)
	} else if err := checkCode(&connackCodes, CONNACK, code); err != nil {
		return dst, err
	}
	if c.SessionPresent && code != Success {
		return dst, fmt.Errorf("%w: session present with reason code 0x%02X [MQTT-3.2.2-6]", ProtocolError, byte(code))
	}
	ack := byte(0)
	if c.SessionPresent && version != V31 {
		ack = 1
	}
	if version < V5 {
		return append(appendFixedHeader(dst, CONNACK, 0, 2), ack, byte(code)), nil
	}
	props, err := c.Properties.size(ctxConnack)
	if err != nil {
		return dst, err
	}
	n := 2 + propsLen(props)
	if err := checkRemaining(CONNACK, n); err != nil {
		return dst, err
	}
	dst = append(appendFixedHeader(dst, CONNACK, 0, n), ack, byte(code))
	return c.Properties.encode(dst, ctxConnack, props), nil
}
