package packet

import "fmt"

// ---------------------------------------------------------------------------
// DISCONNECT (MQTT 5 §3.14, 3.1.1 §3.14)
// ---------------------------------------------------------------------------

// Disconnect is a DISCONNECT packet. In 3.1 and 3.1.1 it has an empty body,
// so ReasonCode and Properties are MQTT 5 only.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Decode parses a DISCONNECT of the given protocol version into d. In
// MQTT 5 an empty body means NormalDisconnection and a one-byte body a
// reason code without properties (MQTT 5 §3.14.2.1, §3.14.2.2.1).
func (d *Disconnect) Decode(version byte, fh FixedHeader, body []byte) error {
	*d = Disconnect{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, DISCONNECT); err != nil {
		return err
	}
	// [MQTT-3.14.1-1]
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	return decodeCodeProps(version, DISCONNECT, body, &d.ReasonCode, &d.Properties, &disconnectCodes, ctxDisconnect)
}

// Encode appends d as a DISCONNECT packet for the given protocol version to
// dst, in its shortest MQTT 5 form. For 3.1 and 3.1.1 the body is empty.
func (d *Disconnect) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if version < V5 {
		return appendFixedHeader(dst, DISCONNECT, 0, 0), nil
	}
	return encodeCodeProps(dst, DISCONNECT, d.ReasonCode, &d.Properties, &disconnectCodes, ctxDisconnect)
}

// ---------------------------------------------------------------------------
// AUTH (MQTT 5 §3.15)
// ---------------------------------------------------------------------------

// Auth is an AUTH packet, which exists in MQTT 5 only.
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// errAuthV3 is returned for AUTH on a 3.1.x connection, where packet type
// 15 is reserved (3.1.1 §2.2.1).
func errAuthV3(version byte) error {
	return fmt.Errorf("%w: AUTH packet in protocol version %d", MalformedPacket, version)
}

// Decode parses an AUTH packet into a. An empty body means Success
// (MQTT 5 §3.15.2.1). In 3.1.x, AUTH is a reserved packet type and an error
// wrapping MalformedPacket is returned.
func (a *Auth) Decode(version byte, fh FixedHeader, body []byte) error {
	*a = Auth{}
	if err := checkVersion(version); err != nil {
		return err
	}
	if err := checkType(fh, AUTH); err != nil {
		return err
	}
	if version < V5 {
		return errAuthV3(version)
	}
	// [MQTT-3.15.1-1]
	if err := checkFlags(fh, version); err != nil {
		return err
	}
	return decodeCodeProps(version, AUTH, body, &a.ReasonCode, &a.Properties, &authCodes, ctxAuth)
}

// Encode appends a as an AUTH packet to dst. It fails for 3.1.x, which has
// no AUTH packet.
func (a *Auth) Encode(dst []byte, version byte) ([]byte, error) {
	if err := checkVersion(version); err != nil {
		return dst, err
	}
	if version < V5 {
		return dst, errAuthV3(version)
	}
	return encodeCodeProps(dst, AUTH, a.ReasonCode, &a.Properties, &authCodes, ctxAuth)
}

// ---------------------------------------------------------------------------
// Shared by DISCONNECT and AUTH: an optional reason code followed by
// optional properties.
// ---------------------------------------------------------------------------

func decodeCodeProps(version byte, t Type, b []byte, code *ReasonCode, p *Properties, set *codeSet, ctx propCtx) error {
	if version < V5 || len(b) == 0 {
		if len(b) != 0 {
			return errTrailing(t, len(b))
		}
		return nil
	}
	*code, b = ReasonCode(b[0]), b[1:]
	if err := checkCode(set, t, *code); err != nil {
		return err
	}
	if len(b) > 0 {
		var err error
		if b, err = p.decode(b, ctx); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errTrailing(t, len(b))
	}
	return nil
}

// encodeCodeProps writes the shortest form: nothing for Success without
// properties, else the reason code and the properties. DISCONNECT may drop
// an empty Property Length (MQTT 5 §3.14.2.2.1); AUTH may omit it only
// together with the reason code (MQTT 5 §3.15.2.1), so it keeps it.
func encodeCodeProps(dst []byte, t Type, code ReasonCode, p *Properties, set *codeSet, ctx propCtx) ([]byte, error) {
	if err := checkCode(set, t, code); err != nil {
		return dst, err
	}
	props, err := p.size(ctx)
	if err != nil {
		return dst, err
	}
	n := 0
	switch {
	case props > 0:
		n = 1 + propsLen(props)
	case code != Success && t == AUTH:
		n = 2
	case code != Success:
		n = 1
	}
	if err := checkRemaining(t, n); err != nil {
		return dst, err
	}
	dst = appendFixedHeader(dst, t, 0, n)
	if n > 0 {
		dst = append(dst, byte(code))
	}
	if n > 1 {
		dst = p.encode(dst, ctx, props)
	}
	return dst, nil
}
