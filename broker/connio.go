package broker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// ---------------------------------------------------------------------------
// Connection I/O with memory released while idle.
//
// Most MQTT connections are idle most of the time: a device sends a reading
// now and then and a PINGREQ every keep-alive. What an idle connection holds
// is what an edge's memory per connection is, so nothing that is only needed
// to move bytes is held between packets:
//
//   - reading: a connReader takes a read buffer from readPool when bytes
//     arrive and gives it back as soon as no unread byte is left (no
//     partial packet pending). On a plain TCP connection it waits for the
//     socket to become readable without any buffer, through
//     syscall.RawConn.Read: the callback tries a non-blocking read into a
//     pooled buffer and, when the socket has nothing (EAGAIN), returns the
//     buffer and reports "not done", and the runtime poller parks the
//     goroutine until the socket is readable. No extra system call: an
//     idle-to-busy transition costs the same read(2) a blocking
//     net.Conn.Read makes. Read deadlines (CONNECT timeout, keep-alive,
//     shutdown) apply to RawConn.Read as to Read, since both wait on the
//     same poll descriptor.
//   - other transports (TLS, WebSocket, pipes in tests) have no readiness
//     to wait for without reading (TLS may hold decrypted bytes of its
//     own), so their Read blocks with the buffer taken: they keep one
//     read buffer for the connection's life, as before.
//   - writing: a bufio.Writer from writerPool exists only while the writer
//     goroutine runs (outbound.go), which exists only while packets wait.
//
// Both pools are sync.Pools, so buffers of connections that went idle are
// reused by busy ones and, after two GC cycles unused, given back.

const (
	// readBufSize is the pooled read buffer: one read(2) takes up to this
	// many bytes, and a packet that fits is handed out in place.
	readBufSize = 4096
	// writeBufSize is the pooled write buffer of a running writer.
	writeBufSize = 4096
	// directRead is the largest body allocated at its full size up front;
	// bigger ones grow as their bytes arrive (see readBody).
	directRead = 64 << 10
)

var (
	readPool   = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
)

// getWriter returns a pooled buffered writer to w.
func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// putWriter returns bw to the pool; unflushed bytes are discarded.
func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}

// connReader reads whole MQTT packets from a connection, like
// packet.Reader, with buffers taken from a pool only while bytes are
// pending. It is not safe for concurrent use.
type connReader struct {
	nc  net.Conn
	raw syscall.RawConn // plain TCP: wait for readability without a buffer
	max int             // largest whole packet accepted; 0: the protocol's

	buf  *[]byte // pooled read buffer; nil while no unread byte is held
	r, w int     // unread bytes are (*buf)[r:w]
	// spare is the body buffer of the last packet larger than the read
	// buffer, reused by the next one; dropped when the connection idles.
	spare []byte

	// The RawConn callback's arguments and results (a method value made
	// once, so that a read allocates nothing).
	rawFn      func(fd uintptr) bool
	rawDst     []byte // nil: fill the read buffer
	rawN       int
	rawErr     error
	rawRelease bool // give the buffer back if the socket has nothing

	// deep is set by the read loop after a packet whose handling may have
	// grown its goroutine's stack (anything but PINGREQ); when the socket
	// then runs dry, ReadPacket returns errYield, if yieldTAT allows, so
	// that the loop goes on waiting on a fresh goroutine (see client.loop).
	deep bool
	// yieldTAT rate-limits yields (GCRA: a burst of yieldBurst, then one
	// per yieldEvery; Unix nanoseconds).
	yieldTAT int64
}

// errYield is ReadPacket's answer when the connection went idle after deep
// work: the caller should continue on a new goroutine (nothing is pending,
// no buffer is held).
var errYield = errors.New("read loop yields")

const (
	yieldEvery = 100 * time.Millisecond
	yieldBurst = 4
)

// mayYield reports whether a yield is allowed now, and counts it.
func (r *connReader) mayYield() bool {
	now := time.Now().UnixNano()
	if now < r.yieldTAT-int64(yieldBurst-1)*int64(yieldEvery) {
		return false
	}
	r.yieldTAT = max(r.yieldTAT, now) + int64(yieldEvery)
	return true
}

// init makes r a reader of nc accepting packets up to maxPacketSize bytes
// (0: no limit but the protocol's).
func (r *connReader) init(nc net.Conn, maxPacketSize int) {
	*r = connReader{nc: nc, max: max(maxPacketSize, 0)}
	if tc, ok := nc.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			r.raw = raw
			r.rawFn = r.rawRead
		}
	}
}

// idle reports whether the reader holds no buffer.
func (r *connReader) idle() bool { return r.buf == nil && r.spare == nil }

// release gives the buffers back: at the end of the connection, or when
// nothing unread is held.
func (r *connReader) release() {
	r.releaseBuf()
	r.spare = nil
}

// releaseBuf gives the read buffer back; it must hold nothing unread.
func (r *connReader) releaseBuf() {
	if r.buf != nil {
		readPool.Put(r.buf)
		r.buf = nil
	}
	r.r, r.w = 0, 0
}

// ReadPacket reads the next packet and returns its fixed header and body
// (variable header and payload). The body is valid until the next call to
// ReadPacket or release. Errors are those of packet.Reader.ReadPacket:
// io.EOF when the stream ends between packets, io.ErrUnexpectedEOF inside
// one, MalformedPacket or PacketTooLarge (the body is then not read), or
// the connection's error (a timeout after a read deadline).
func (r *connReader) ReadPacket() (packet.FixedHeader, []byte, error) {
	if r.raw == nil && r.r == r.w {
		// Another transport blocks in Read with the read buffer (see
		// above), so only the large-body buffer goes. A TCP connection
		// gives both back once the socket has nothing either: rawRead.
		r.spare = nil
	}
	// The fixed header: one byte, then 1 to 4 of Remaining Length.
	var rem, n int
	for {
		if r.w-r.r >= 2 {
			var err error
			rem, n, err = packet.DecodeVarint((*r.buf)[r.r+1 : r.w])
			if err == nil {
				break
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				return packet.FixedHeader{}, nil, err // over 4 bytes, or not minimal
			}
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && r.r < r.w {
				err = io.ErrUnexpectedEOF
			}
			return packet.FixedHeader{}, nil, err
		}
	}
	b0 := (*r.buf)[r.r]
	fh := packet.FixedHeader{Type: packet.Type(b0 >> 4), Flags: b0 & 0x0F, Remaining: rem}
	size := 1 + n + rem
	if fh.Type == 0 || (r.max > 0 && size > r.max) {
		return fh, nil, r.headerError(fh, size)
	}
	if size <= readBufSize {
		// The whole packet fits the read buffer: read it in and hand the
		// body out in place.
		if r.w-r.r < size && r.r > 0 && len(*r.buf)-r.r < size {
			r.w = copy(*r.buf, (*r.buf)[r.r:r.w])
			r.r = 0
		}
		for r.w-r.r < size {
			if err := r.fill(); err != nil {
				return fh, nil, unexpected(err)
			}
		}
		body := (*r.buf)[r.r+1+n : r.r+size]
		r.r += size
		return fh, body, nil
	}
	body, err := r.readBody(1+n, rem)
	if err != nil {
		return fh, nil, err
	}
	return fh, body, nil
}

// headerError is the error for a fixed header ReadPacket refuses (out of
// line: it keeps ReadPacket's frame, which idle connections hold, small).
func (r *connReader) headerError(fh packet.FixedHeader, size int) error {
	if fh.Type == 0 {
		return fmt.Errorf("%w: reserved packet type 0", packet.MalformedPacket)
	}
	return fmt.Errorf("%w: %v of %d bytes over the limit of %d", packet.PacketTooLarge, fh.Type, size, r.max)
}

// readBody reads a body of rem bytes that starts hdr bytes into the unread
// bytes, into its own buffer: at its full size up to directRead, else grown
// as its bytes arrive, at most doubling each step, so that a peer
// announcing 256 MiB and sending nothing costs little memory.
func (r *connReader) readBody(hdr, rem int) ([]byte, error) {
	r.r += hdr
	b := r.spare[:0]
	if cap(b) < min(rem, directRead) {
		b = make([]byte, 0, min(rem, directRead))
	}
	// What the read buffer already holds.
	k := copy(b[:min(rem, r.w-r.r)], (*r.buf)[r.r:r.w])
	b = b[:k]
	r.r += k
	if r.r == r.w {
		r.releaseBuf()
	}
	for len(b) < rem {
		chunk := min(rem-len(b), max(len(b), directRead))
		b = slices.Grow(b, chunk)
		for end := len(b) + chunk; len(b) < end; {
			m, err := r.readInto(b[len(b):end])
			b = b[:len(b)+m]
			if err != nil {
				r.spare = b[:0]
				return nil, unexpected(err)
			}
		}
	}
	r.spare = b[:0]
	return b, nil
}

// fill reads more bytes into the read buffer, taking one from the pool if
// none is held. While the buffer holds nothing, a TCP connection waits
// without it.
func (r *connReader) fill() error {
	if r.raw != nil {
		r.rawDst, r.rawRelease = nil, r.r == r.w
		if err := r.raw.Read(r.rawFn); err != nil {
			return err
		}
		n, err := r.rawN, r.rawErr
		r.rawErr = nil
		r.w += n
		return err
	}
	dst := r.bufTail()
	n, err := r.nc.Read(dst)
	r.w += n
	if n > 0 {
		return nil // an error comes again with the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readInto reads at least one byte into dst (the body of a large packet).
func (r *connReader) readInto(dst []byte) (int, error) {
	if r.raw != nil {
		r.rawDst, r.rawRelease = dst, false
		if err := r.raw.Read(r.rawFn); err != nil {
			return 0, err
		}
		n, err := r.rawN, r.rawErr
		r.rawDst, r.rawErr = nil, nil
		return n, err
	}
	n, err := r.nc.Read(dst)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return n, err
}

// rawRead is the RawConn.Read callback: one non-blocking read(2) into
// rawDst or the read buffer. It returns false — the runtime then parks the
// goroutine until the socket is readable and calls it again — when there
// is nothing to read; the read buffer then goes back to the pool if it
// holds nothing (rawRelease), which is what makes an idle connection cost
// no buffer.
func (r *connReader) rawRead(fd uintptr) bool {
	dst := r.rawDst
	if dst == nil {
		dst = r.bufTail()
	}
	for {
		n, err := syscall.Read(int(fd), dst)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if r.rawRelease {
				// Idle: nothing unread, nothing on the socket.
				r.release()
				if r.deep && r.mayYield() {
					r.deep = false
					r.rawN, r.rawErr = 0, errYield
					return true
				}
			}
			return false
		case err != nil:
			r.rawN, r.rawErr = 0, &net.OpError{Op: "read", Net: "tcp", Source: nil, Addr: nil, Err: err}
		case n == 0:
			r.rawN, r.rawErr = 0, io.EOF
		default:
			r.rawN, r.rawErr = n, nil
		}
		return true
	}
}

// bufTail returns the free end of the read buffer, taking a buffer from the
// pool if none is held and moving unread bytes to the front when the end
// is full.
func (r *connReader) bufTail() []byte {
	if r.buf == nil {
		r.buf = readPool.Get().(*[]byte)
		r.r, r.w = 0, 0
	}
	if r.r == r.w {
		r.r, r.w = 0, 0
	} else if r.w == len(*r.buf) {
		r.w = copy(*r.buf, (*r.buf)[r.r:r.w])
		r.r = 0
	}
	return (*r.buf)[r.w:]
}

// unexpected turns io.EOF inside a packet into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
