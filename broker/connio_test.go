package broker

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (server, client net.Conn) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// publishStream returns n encoded PUBLISH packets of assorted sizes (empty,
// a few bytes, around the read buffer's size, beyond 64 KiB) with their
// payloads.
func publishStream(tb testing.TB, rng *rand.Rand, n int) (stream []byte, payloads [][]byte) {
	tb.Helper()
	sizes := []int{0, 1, 10, 100, readBufSize - 20, readBufSize - 8, readBufSize, readBufSize + 1, 3 * readBufSize, directRead + 5, 3 * directRead}
	for i := range n {
		size := sizes[rng.IntN(len(sizes))]
		if i%3 == 0 {
			size = rng.IntN(200)
		}
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		p := packet.Publish{Topic: []byte("t/x"), Payload: payload}
		var err error
		stream, err = p.Encode(stream, packet.V311)
		if err != nil {
			tb.Fatal(err)
		}
		payloads = append(payloads, payload)
	}
	return stream, payloads
}

// writeChunks writes b in random pieces, now and then pausing so that the
// reader finds the socket empty mid-packet.
func writeChunks(w io.Writer, rng *rand.Rand, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(9000))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
	}
	return nil
}

// TestConnReaderStream: a stream of PUBLISHes of every size class, written
// in random pieces, reads back packet by packet, over TCP (the RawConn
// path) and over a pipe (another transport's path).
func TestConnReaderStream(t *testing.T) {
	for _, transport := range []string{"tcp", "pipe"} {
		t.Run(transport, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			stream, payloads := publishStream(t, rng, 300)
			var server, client net.Conn
			if transport == "tcp" {
				server, client = tcpPair(t)
			} else {
				server, client = net.Pipe()
				defer server.Close()
				defer client.Close()
			}
			var r connReader
			r.init(server, 0)
			if (r.raw != nil) != (transport == "tcp") {
				t.Fatalf("RawConn path: %v", r.raw != nil)
			}
			werr := make(chan error, 1)
			go func() {
				werr <- writeChunks(client, rand.New(rand.NewPCG(3, 4)), stream)
				client.Close()
			}()
			for i, want := range payloads {
				fh, body, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				var p packet.Publish
				if err := p.Decode(packet.V311, fh, body); err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if !bytes.Equal(p.Payload, want) {
					t.Fatalf("packet %d: payload of %d bytes differs from the %d sent", i, len(p.Payload), len(want))
				}
			}
			if _, _, err := r.ReadPacket(); err != io.EOF {
				t.Fatalf("after the last packet: %v, want io.EOF", err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			r.release()
		})
	}
}

// TestConnReaderIdleHoldsNoBuffer: a TCP connection waiting for its next
// packet holds no buffer; one waiting for the rest of a packet keeps what
// it has.
func TestConnReaderIdleHoldsNoBuffer(t *testing.T) {
	server, client := tcpPair(t)
	var r connReader
	r.init(server, 0)
	ping := packet.AppendPingreq(nil)
	big := packet.Publish{Topic: []byte("t"), Payload: make([]byte, 2*directRead)}
	raw, err := big.Encode(nil, packet.V311)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write(append(append([]byte{}, raw...), ping...)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []packet.Type{packet.PUBLISH, packet.PINGREQ} {
		fh, _, err := r.ReadPacket()
		if err != nil || fh.Type != want {
			t.Fatalf("got %v, %v; want %v", fh.Type, err, want)
		}
	}
	// Nothing more: the wait ends at the deadline, with no buffer held.
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := r.ReadPacket(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle read: %v, want a deadline error", err)
	}
	if !r.idle() {
		t.Fatal("an idle connection holds a buffer")
	}
	// Half a packet: the bytes are kept while the rest is awaited.
	pub, _ := (&packet.Publish{Topic: []byte("a/b"), Payload: []byte("hello")}).Encode(nil, packet.V311)
	client.Write(pub[:4])
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := r.ReadPacket(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("partial packet: %v, want a deadline error", err)
	}
	if r.buf == nil || r.w-r.r != 4 {
		t.Fatal("the start of a packet was not kept")
	}
	client.Write(pub[4:])
	server.SetReadDeadline(time.Time{})
	fh, body, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	var p packet.Publish
	if err := p.Decode(packet.V311, fh, body); err != nil || string(p.Payload) != "hello" {
		t.Fatalf("decoded %q, %v", p.Payload, err)
	}
}

// TestConnReaderLimits: oversize packets are refused from their header,
// before any body is read or allocated; malformed headers and truncated
// streams give the errors packet.Reader gives.
func TestConnReaderLimits(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		max  int
		want error
	}{
		{"announces 200 MiB", []byte{0x30, 0x80, 0x80, 0x80, 0x64}, 1 << 20, packet.PacketTooLarge},
		{"one byte over", append([]byte{0x30, 9, 0, 1, 't'}, "123456"...), 10, packet.PacketTooLarge},
		{"reserved type 0", []byte{0x00, 0x00}, 0, packet.MalformedPacket},
		{"remaining length over 4 bytes", []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, 0, packet.MalformedPacket},
		{"remaining length not minimal", []byte{0x30, 0x80, 0x00}, 0, packet.MalformedPacket},
		{"ends in the header", []byte{0x30, 0x80}, 0, io.ErrUnexpectedEOF},
		{"ends in the body", []byte{0x30, 5, 0, 1}, 0, io.ErrUnexpectedEOF},
		{"ends in a large body", append([]byte{0x30, 0x80, 0x80, 0x10}, make([]byte, 70<<10)...), 0, io.ErrUnexpectedEOF},
		{"empty", nil, 0, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server, client := tcpPair(t)
			var r connReader
			r.init(server, tc.max)
			go func() {
				client.Write(tc.raw)
				client.(*net.TCPConn).CloseWrite()
			}()
			_, body, err := r.ReadPacket()
			if !errors.Is(err, tc.want) || (tc.want == io.EOF && err != io.EOF) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if body != nil {
				t.Fatalf("body of %d bytes", len(body))
			}
			if tc.want == packet.PacketTooLarge && cap(r.spare) != 0 {
				t.Fatalf("a body buffer of %d bytes was allocated", cap(r.spare))
			}
		})
	}
}

// TestConnReaderClose: closing the connection ends a wait at once.
func TestConnReaderClose(t *testing.T) {
	server, _ := tcpPair(t)
	var r connReader
	r.init(server, 0)
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.ReadPacket()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	server.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("err = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPacket did not return after Close")
	}
}

// BenchmarkConnReader reads small PUBLISHes pipelined on a TCP connection:
// no allocation per packet.
func BenchmarkConnReader(b *testing.B) {
	server, client := tcpPair(b)
	var r connReader
	r.init(server, 0)
	pub, _ := (&packet.Publish{Topic: []byte("bench/1"), Payload: make([]byte, 64)}).Encode(nil, packet.V311)
	chunk := bytes.Repeat(pub, 64)
	go func() {
		for {
			if _, err := client.Write(chunk); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.SetBytes(int64(len(pub)))
	for b.Loop() {
		if _, _, err := r.ReadPacket(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConnReaderYield: after deep work, a TCP reader that finds the socket
// empty yields instead of waiting — holding no buffer — at most
// yieldBurst times at once; then it waits as usual.
func TestConnReaderYield(t *testing.T) {
	server, client := tcpPair(t)
	var r connReader
	r.init(server, 0)
	for i := range yieldBurst + 1 {
		client.Write(packet.AppendPingreq(nil))
		if fh, _, err := r.ReadPacket(); err != nil || fh.Type != packet.PINGREQ {
			t.Fatalf("round %d: %v %v", i, fh.Type, err)
		}
		r.deep = true
		server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _, err := r.ReadPacket()
		switch {
		case i < yieldBurst && err != errYield:
			t.Fatalf("yield %d: %v, want errYield", i, err)
		case i == yieldBurst && !errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatalf("over the burst: %v, want a wait (deadline error)", err)
		}
		if !r.idle() {
			t.Fatalf("round %d: a buffer is held", i)
		}
		server.SetReadDeadline(time.Time{})
	}
}
