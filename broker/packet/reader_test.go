package packet

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

func bufioReader(raw []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(raw)) }

// readOne reads the single packet in raw.
func readOne(tb testing.TB, raw []byte) (FixedHeader, []byte) {
	tb.Helper()
	fh, body, err := NewReader(bufioReader(raw), 0).ReadPacket()
	if err != nil {
		tb.Fatalf("ReadPacket: %v", err)
	}
	return fh, body
}

// TestReaderSplitReads feeds every valid fixture of a version, back to back,
// one byte per Read, through a small bufio buffer.
func TestReaderSplitReads(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		var stream []byte
		var want []codec
		for _, f := range fixtures {
			if f.version == v && f.wantErr == nil {
				stream = append(stream, f.raw...)
				want = append(want, f.pkt)
			}
		}
		br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(stream)), 16)
		r := NewReader(br, 0)
		for i, w := range want {
			fh, body, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("v%d packet %d: %v", v, i, err)
			}
			got := newCodec(fh.Type)
			if err := got.Decode(v, fh, body); err != nil {
				t.Fatalf("v%d packet %d: decode: %v", v, i, err)
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("v%d packet %d:\n got %#v\nwant %#v", v, i, got, w)
			}
		}
		if _, _, err := r.ReadPacket(); err != io.EOF {
			t.Fatalf("v%d: after the last packet: %v, want io.EOF", v, err)
		}
	}
}

// failReader fails the test if anything reads from it.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("body was read")
	return 0, io.ErrUnexpectedEOF
}

func TestReaderOversizeDoesNotReadBody(t *testing.T) {
	// A PUBLISH announcing 200 MiB. Only its 5-byte header is available;
	// any attempt to read the body hits failReader.
	header := bs(0x30, 0x80, 0x80, 0x80, 0x64)
	r := NewReader(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(header), failReader{t}), 16), 1<<20)
	fh, body, err := r.ReadPacket()
	if !errors.Is(err, PacketTooLarge) {
		t.Fatalf("err = %v, want PacketTooLarge", err)
	}
	if fh.Type != PUBLISH || fh.Remaining != 200<<20 || body != nil {
		t.Fatalf("fh = %+v, body %d bytes", fh, len(body))
	}
	if cap(r.buf) != 0 {
		t.Fatalf("buffer allocated: cap %d", cap(r.buf))
	}
}

func TestReaderMaxPacketSize(t *testing.T) {
	raw := frame(0x30, str("t"), []byte("1234")) // 9 bytes
	r := NewReader(bufioReader(append(append([]byte{}, raw...), raw...)), 0)
	r.SetMaxPacketSize(9)
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	r.SetMaxPacketSize(8)
	if _, _, err := r.ReadPacket(); !errors.Is(err, PacketTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	r.SetMaxPacketSize(-1) // treated as 0: no limit
	if r.max != 0 {
		t.Fatalf("max = %d", r.max)
	}
}

func TestReaderEOF(t *testing.T) {
	ping := bs(0xC0, 0)
	tests := []struct {
		name  string
		raw   []byte
		first error // error of the first ReadPacket
	}{
		{"empty stream", nil, io.EOF},
		{"after first byte", bs(0x30), io.ErrUnexpectedEOF},
		{"in remaining length", bs(0x30, 0xFF), io.ErrUnexpectedEOF},
		{"in a small body", bs(0x30, 5, 0, 1), io.ErrUnexpectedEOF},
		{"in a large body", cat(bs(0x30), vbi(200<<10), make([]byte, 100<<10)), io.ErrUnexpectedEOF},
		{"at a large body's first byte", cat(bs(0x30), vbi(200<<10)), io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, split := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(tc.raw)
				if split {
					src = iotest.OneByteReader(src)
				}
				_, _, err := NewReader(bufio.NewReader(src), 0).ReadPacket()
				if err != tc.first { // io.EOF must not be wrapped
					t.Fatalf("split=%v: err = %v, want %v", split, err, tc.first)
				}
			}
		})
	}
	t.Run("clean end after a packet", func(t *testing.T) {
		r := NewReader(bufioReader(ping), 0)
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.ReadPacket(); err != io.EOF {
			t.Fatalf("err = %v, want io.EOF", err)
		}
	})
}

func TestReaderPassesOtherErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, raw := range [][]byte{nil, bs(0x30), bs(0x30, 3, 0)} {
		src := io.MultiReader(bytes.NewReader(raw), iotest.ErrReader(boom))
		if _, _, err := NewReader(bufio.NewReader(src), 0).ReadPacket(); !errors.Is(err, boom) {
			t.Fatalf("after % x: err = %v, want boom", raw, err)
		}
	}
}

func TestReaderLargeBodyAndRelease(t *testing.T) {
	payload := bytes.Repeat([]byte("abcdefgh"), 40<<10) // 320 KiB: the growing path
	raw := cat(frame(0x30, str("big"), payload), frame(0x30, str("s"), []byte("x")))
	r := NewReader(bufioReader(raw), 0)
	fh, body, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	var p Publish
	if err := p.Decode(V311, fh, body); err != nil {
		t.Fatal(err)
	}
	if string(p.Topic) != "big" || !bytes.Equal(p.Payload, payload) {
		t.Fatal("large payload corrupted")
	}
	if cap(r.buf) <= keepBuf {
		t.Fatalf("buffer cap %d after a large packet", cap(r.buf))
	}
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept a large buffer")
	}
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	small := cap(r.buf)
	r.Release()
	if cap(r.buf) != small || small == 0 {
		t.Fatalf("Release dropped a small buffer (cap %d)", small)
	}
}

// TestReaderGrowsWithData checks that a peer announcing a huge packet makes
// the Reader allocate in step with the bytes it actually sends.
func TestReaderGrowsWithData(t *testing.T) {
	raw := cat(bs(0x30), vbi(MaxRemainingLength), make([]byte, 100<<10))
	r := NewReader(bufioReader(raw), 0)
	if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	if cap(r.buf) > 1<<20 {
		t.Fatalf("buffer grew to %d bytes for 100 KiB of data", cap(r.buf))
	}
}

func TestReaderZeroAllocs(t *testing.T) {
	raw := frame(0x32, str("a/b/c"), u16(1), bytes.Repeat([]byte("x"), 256))
	src := bytes.NewReader(raw)
	br := bufio.NewReader(src)
	r := NewReader(br, 0)
	var p Publish
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(raw)
		br.Reset(src)
		fh, body, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Decode(V311, fh, body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadPacket+Decode: %v allocs, want 0", allocs)
	}
}
