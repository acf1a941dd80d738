package packet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

const (
	// minBuf is the first body buffer a Reader allocates.
	minBuf = 512
	// keepBuf is the largest body buffer Release keeps.
	keepBuf = 4096
	// directRead is the largest body read into a buffer of its full size
	// up front; bigger bodies grow the buffer as their bytes arrive.
	directRead = 64 << 10
)

// Reader reads whole MQTT packets from a bufio.Reader into a reusable buffer.
// It is not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	max int    // largest whole packet accepted; 0 = no limit but the protocol's
	buf []byte // body buffer, reused across packets
}

// NewReader returns a Reader over br. maxPacketSize limits the size of a
// whole packet (fixed header included), as the MQTT 5 Maximum Packet Size
// property does; 0 means the protocol maximum (a Remaining Length of
// MaxRemainingLength).
func NewReader(br *bufio.Reader, maxPacketSize int) *Reader {
	r := &Reader{br: br}
	r.SetMaxPacketSize(maxPacketSize)
	return r
}

// SetMaxPacketSize changes the packet size limit; see NewReader.
func (r *Reader) SetMaxPacketSize(n int) {
	r.max = max(n, 0)
}

// Release drops the body buffer if it grew beyond a few KiB, so that idle
// connections hold little memory. The next packet allocates a new one.
func (r *Reader) Release() {
	if cap(r.buf) > keepBuf {
		r.buf = nil
	}
}

// ReadPacket reads the next packet and returns its fixed header and its body
// (variable header and payload). The body aliases the Reader's buffer and is
// valid until the next call to ReadPacket or Release.
//
// Errors:
//   - io.EOF, unwrapped, when the stream ends cleanly before a packet starts;
//   - io.ErrUnexpectedEOF when it ends inside a packet;
//   - an error wrapping MalformedPacket for a Remaining Length over four
//     bytes or not minimally encoded, or the reserved packet type 0;
//   - an error wrapping PacketTooLarge when the packet is over the limit.
//     The body is then neither read nor allocated, and the fixed header is
//     returned; the stream is out of step and the connection must be closed.
//   - any other error from the underlying reader, unchanged.
func (r *Reader) ReadPacket() (FixedHeader, []byte, error) {
	b0, err := r.br.ReadByte()
	if err != nil {
		return FixedHeader{}, nil, err
	}
	var rem, n int
	for {
		if n == 4 {
			return FixedHeader{}, nil, fmt.Errorf("%w: remaining length over 4 bytes", MalformedPacket)
		}
		c, err := r.br.ReadByte()
		if err != nil {
			return FixedHeader{}, nil, unexpected(err)
		}
		rem |= int(c&0x7F) << (7 * n)
		n++
		if c&0x80 == 0 {
			if c == 0 && n > 1 {
				return FixedHeader{}, nil, errVarintNotMinimal
			}
			break
		}
	}
	fh := FixedHeader{Type: Type(b0 >> 4), Flags: b0 & 0x0F, Remaining: rem}
	if fh.Type == 0 {
		return fh, nil, fmt.Errorf("%w: reserved packet type 0", MalformedPacket)
	}
	if r.max > 0 && 1+n+rem > r.max {
		return fh, nil, fmt.Errorf("%w: %v of %d bytes over the limit of %d", PacketTooLarge, fh.Type, 1+n+rem, r.max)
	}
	body, err := r.readBody(rem)
	if err != nil {
		return fh, nil, err
	}
	return fh, body, nil
}

// readBody reads exactly n bytes into r.buf.
func (r *Reader) readBody(n int) ([]byte, error) {
	if n <= cap(r.buf) || n <= directRead {
		if n > cap(r.buf) {
			r.buf = make([]byte, max(n, minBuf))
		}
		b := r.buf[:n]
		if _, err := io.ReadFull(r.br, b); err != nil {
			return nil, unexpected(err)
		}
		return b, nil
	}
	// A large body: grow the buffer as its bytes arrive, at most doubling
	// each step, so a peer announcing 256 MiB and sending nothing costs
	// little memory.
	b := r.buf[:0]
	for len(b) < n {
		chunk := min(n-len(b), max(len(b), directRead))
		b = slices.Grow(b, chunk)
		m, err := io.ReadFull(r.br, b[len(b):len(b)+chunk])
		b = b[:len(b)+m]
		if err != nil {
			r.buf = b[:0]
			return nil, unexpected(err)
		}
	}
	r.buf = b[:0]
	return b, nil
}

// unexpected turns io.EOF inside a packet into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
