package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzDecode reads arbitrary bytes through a Reader and decodes every packet
// for each protocol version. Nothing may panic; every error must carry a
// ReasonCode or be an io error; and whatever decodes must encode, decode
// again to an equal value, and encode again to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, v := range []byte{V31, V311, V5} {
			r := NewReader(bufioReader(raw), 0)
			for range 16 {
				fh, body, err := r.ReadPacket()
				if err != nil {
					checkDecodeErr(t, err)
					break
				}
				p := newCodec(fh.Type)
				if err := p.Decode(v, fh, body); err != nil {
					checkDecodeErr(t, err)
					continue
				}
				roundTrip(t, v, p)
			}
		}
	})
}

func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	var rc ReasonCode
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &rc) {
		return
	}
	t.Fatalf("decode error without a reason code: %v", err)
}

func roundTrip(t *testing.T, v byte, p codec) {
	t.Helper()
	enc, err := p.Encode(nil, v)
	if err != nil {
		t.Fatalf("re-encode %#v: %v", p, err)
	}
	fh, body, err := NewReader(bufioReader(enc), 0).ReadPacket()
	if err != nil {
		t.Fatalf("re-read % x: %v", enc, err)
	}
	q := newCodec(fh.Type)
	if err := q.Decode(v, fh, body); err != nil {
		t.Fatalf("decode of re-encoded % x: %v\nfrom %#v", enc, err, p)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip changed the packet\n got %#v\nwant %#v", q, p)
	}
	enc2, err := q.Encode(nil, v)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("second encode differs: % x, %v; first % x", enc2, err, enc)
	}
}
