package packet

import (
	"bytes"
	"fmt"
	"io"
	"unicode/utf8"
)

// ---------------------------------------------------------------------------
// Variable Byte Integer (MQTT 5 §1.5.5)
// ---------------------------------------------------------------------------

// errVarintTruncated is returned by DecodeVarint when b ends inside the
// integer. It is malformed and also matches io.ErrUnexpectedEOF.
var errVarintTruncated = fmt.Errorf("%w: truncated variable byte integer: %w", MalformedPacket, io.ErrUnexpectedEOF)

// errVarintTooLong is returned for a fifth continuation byte.
var errVarintTooLong = fmt.Errorf("%w: variable byte integer over 4 bytes", MalformedPacket)

// errVarintNotMinimal is returned for a padded encoding such as 0x80 0x00.
var errVarintNotMinimal = fmt.Errorf("%w: variable byte integer not minimally encoded [MQTT-1.5.5-1]", MalformedPacket)

// AppendVarint appends v as an MQTT Variable Byte Integer (1 to 4 bytes).
// v must be in [0, MaxRemainingLength]; anything else is a programming error
// and panics (the Encode methods check sizes before they call it).
func AppendVarint(dst []byte, v int) []byte {
	if v < 0 || v > MaxRemainingLength {
		panic(fmt.Sprintf("packet: AppendVarint(%d) out of range", v))
	}
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// DecodeVarint decodes the MQTT Variable Byte Integer at the start of b and
// returns its value and its length in bytes. Errors wrap MalformedPacket: b
// ends inside the integer (this error also matches io.ErrUnexpectedEOF), the
// integer runs over 4 bytes, or it is not minimally encoded [MQTT-1.5.5-1].
func DecodeVarint(b []byte) (v, n int, err error) {
	for i := range 4 {
		if i >= len(b) {
			return 0, 0, errVarintTruncated
		}
		c := b[i]
		v |= int(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, errVarintNotMinimal
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errVarintTooLong
}

// varintLen returns the number of bytes AppendVarint uses for v.
func varintLen(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	default:
		return 4
	}
}

// ---------------------------------------------------------------------------
// Field readers. Each takes the unread part of a body and returns the value
// and the rest. Errors on short input wrap MalformedPacket.
// ---------------------------------------------------------------------------

func errShort(what string) error {
	return fmt.Errorf("%w: truncated %s", MalformedPacket, what)
}

func readByte(b []byte, what string) (byte, []byte, error) {
	if len(b) < 1 {
		return 0, nil, errShort(what)
	}
	return b[0], b[1:], nil
}

func readUint16(b []byte, what string) (uint16, []byte, error) {
	if len(b) < 2 {
		return 0, nil, errShort(what)
	}
	return uint16(b[0])<<8 | uint16(b[1]), b[2:], nil
}

func readUint32(b []byte, what string) (uint32, []byte, error) {
	if len(b) < 4 {
		return 0, nil, errShort(what)
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), b[4:], nil
}

// readBinary reads Binary Data (MQTT 5 §1.5.6): a two-byte length and that
// many bytes. The result aliases b, is capacity-limited so appending to it
// cannot clobber what follows, and is nil when empty.
func readBinary(b []byte, what string) ([]byte, []byte, error) {
	if len(b) < 2 {
		return nil, nil, errShort(what)
	}
	n := int(b[0])<<8 | int(b[1])
	if len(b)-2 < n {
		return nil, nil, errShort(what)
	}
	if n == 0 {
		return nil, b[2:], nil
	}
	return b[2 : 2+n : 2+n], b[2+n:], nil
}

// readString reads a UTF-8 Encoded String (MQTT 5 §1.5.4) without copying
// it; see readBinary for the aliasing rules.
func readString(b []byte, what string) ([]byte, []byte, error) {
	s, rest, err := readBinary(b, what)
	if err != nil {
		return nil, nil, err
	}
	if err := checkUTF8(s, what); err != nil {
		return nil, nil, err
	}
	return s, rest, nil
}

// checkUTF8 enforces the UTF-8 Encoded String rules: well-formed UTF-8, which
// excludes the surrogates U+D800..U+DFFF ([MQTT-1.5.4-1], 3.1.1
// [MQTT-1.5.3-1]), and no U+0000 ([MQTT-1.5.4-2], 3.1.1 [MQTT-1.5.3-2]).
// It does not allocate unless it fails.
func checkUTF8(s []byte, what string) error {
	if bytes.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %s contains U+0000 [MQTT-1.5.4-2]", MalformedPacket, what)
	}
	if !utf8.Valid(s) {
		return fmt.Errorf("%w: %s is not well-formed UTF-8 [MQTT-1.5.4-1]", MalformedPacket, what)
	}
	return nil
}

// readStringCopy reads a UTF-8 Encoded String into a new Go string.
func readStringCopy(b []byte, what string) (string, []byte, error) {
	s, rest, err := readString(b, what)
	if err != nil {
		return "", nil, err
	}
	return string(s), rest, nil
}

// readBinaryCopy reads Binary Data into a new slice (nil when empty).
func readBinaryCopy(b []byte, what string) ([]byte, []byte, error) {
	s, rest, err := readBinary(b, what)
	if err != nil || s == nil {
		return nil, rest, err
	}
	return bytes.Clone(s), rest, nil
}

// errTrailing reports bytes left over after the last field.
func errTrailing(t Type, n int) error {
	return fmt.Errorf("%w: %d unexpected bytes at the end of %v", MalformedPacket, n, t)
}

// errPacketIDZero reports a zero Packet Identifier where one is required
// [MQTT-2.3.1-1] (MQTT 5: [MQTT-2.2.1-3]).
func errPacketIDZero(t Type) error {
	return fmt.Errorf("%w: %v packet identifier 0 [MQTT-2.3.1-1]", ProtocolError, t)
}

// ---------------------------------------------------------------------------
// Field writers. Lengths are checked by the callers' size computations.
// ---------------------------------------------------------------------------

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(dst []byte, s string) []byte {
	dst = appendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = appendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// checkLen reports a string or binary field too long for its two-byte
// length prefix.
func checkLen(n int, what string) error {
	if n > 0xFFFF {
		return fmt.Errorf("%w: %s is %d bytes, over 65535", MalformedPacket, what, n)
	}
	return nil
}
