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
	if pub, ok := p.(*Publish); ok {
		if n, err := pub.Size(v); err != nil || n != len(enc) {
			t.Fatalf("Publish.Size = %d, %v; encoded %d bytes", n, err, len(enc))
		}
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

// numCtx is the number of places properties appear (propCtx values).
const numCtx = int(ctxAuth) + 1

// FuzzProperties decodes arbitrary bytes as the MQTT 5 property block of
// every kind of packet (and of a will). Nothing may panic; every error must
// be MalformedPacket or ProtocolError; what decodes must encode and decode
// again to the same value. Then, on what decoded, it checks the two rules
// the codec must never get wrong:
//
//   - a second copy of any property but User Property (and Subscription
//     Identifier on PUBLISH) is a Protocol Error (MQTT 5 §2.2.2.2);
//   - an unknown property identifier, or one not allowed on the packet, is
//     a Malformed Packet.
func FuzzProperties(f *testing.F) {
	seeds := [][]byte{
		propBlock(),
		propBlock(bs(0x01, 1), bs(0x02), u32(60), bs(0x03), str("text/plain"), bs(0x08), str("resp/a"),
			bs(0x09), str("corr"), bs(0x26), str("k"), str("v"), bs(0x26), str("k"), str("v2")),
		propBlock(bs(0x0B), vbi(1), bs(0x0B), vbi(268435455)),               // two subscription IDs
		propBlock(bs(0x02), u32(1), bs(0x02), u32(2)),                       // duplicate
		propBlock(bs(0x23), u16(3), bs(0x23), u16(3)),                       // duplicate topic alias
		propBlock(bs(0x00, 0x01)),                                           // unknown id 0
		propBlock(bs(0x04), u32(1)),                                         // unknown id 4
		propBlock(bs(0x80, 0x01)),                                           // multi-byte id
		propBlock(bs(0x7F)),                                                 // unknown id 127
		propBlock(bs(0x11), u32(0), bs(0x15), str("m"), bs(0x16), str("d")), // CONNECT auth
		propBlock(bs(0x16), str("d")),                                       // data without method
		propBlock(bs(0x21), u16(0)),                                         // receive maximum 0
		propBlock(bs(0x27), u32(0)),                                         // maximum packet size 0
		propBlock(bs(0x01, 2)),                                              // payload format 2
		propBlock(bs(0x1F), str("\xff")),                                    // bad UTF-8
		propBlock(bs(0x26), str("k")),                                       // truncated pair
		cat(vbi(1000), bs(0x01, 1)),                                         // length past the end
	}
	for _, s := range seeds {
		for ctx := range numCtx {
			f.Add(byte(ctx), s, byte(0x05))
		}
	}
	f.Fuzz(func(t *testing.T, ctxByte byte, raw []byte, unknown byte) {
		ctx := propCtx(int(ctxByte) % numCtx)
		var p Properties
		rest, err := p.decode(raw, ctx)
		if err != nil {
			if !errors.Is(err, MalformedPacket) && !errors.Is(err, ProtocolError) {
				t.Fatalf("%s: error neither malformed nor protocol error: %v", ctxNames[ctx], err)
			}
			return
		}
		_ = rest
		enc := encodeProps(t, &p, ctx)
		var q Properties
		if _, err := q.decode(enc, ctx); err != nil {
			t.Fatalf("%s: decode of re-encoded % x: %v", ctxNames[ctx], enc, err)
		}
		if !reflect.DeepEqual(normProps(p), normProps(q)) {
			t.Fatalf("%s: round trip changed the properties\n got %#v\nwant %#v", ctxNames[ctx], q, p)
		}

		// Every property present, repeated, is a protocol error.
		for id := byte(0); id < 64; id++ {
			if !p.Has(id) || id == PropUserProperty || (id == PropSubscriptionIdentifier && ctx == ctxPublish) {
				continue
			}
			one := p
			one.Present = 1 << id
			one.UserProperties = nil
			if id != PropSubscriptionIdentifier {
				one.SubscriptionIdentifiers = nil
			} else {
				one.SubscriptionIdentifiers = p.SubscriptionIdentifiers[:1]
			}
			block := withProps(t, enc, encodeProps(t, &one, ctx))
			var d Properties
			if _, err := d.decode(block, ctx); !errors.Is(err, ProtocolError) {
				t.Fatalf("%s: property 0x%02X twice: %v, want a protocol error", ctxNames[ctx], id, err)
			}
		}

		// An unknown id, or one not allowed here, after valid properties
		// is malformed.
		if unknown >= 64 || knownProps&(1<<unknown) == 0 || allowedProps[ctx]&(1<<unknown) == 0 {
			block := withProps(t, enc, cat(vbi(1), bs(unknown, 0, 0, 0, 0, 0)))
			var d Properties
			if _, err := d.decode(block, ctx); !errors.Is(err, MalformedPacket) {
				t.Fatalf("%s: property id 0x%02X: %v, want malformed packet", ctxNames[ctx], unknown, err)
			}
		}
	})
}

// encodeProps encodes p as the property block of ctx.
func encodeProps(t *testing.T, p *Properties, ctx propCtx) []byte {
	t.Helper()
	n, err := p.size(ctx)
	if err != nil {
		t.Fatalf("%s: size of decoded properties: %v\n%#v", ctxNames[ctx], err, p)
	}
	return p.encode(nil, ctx, n)
}

// withProps returns property block a with the properties of block b (both
// with their Property Length) appended.
func withProps(t *testing.T, a, b []byte) []byte {
	t.Helper()
	na, wa, err := DecodeVarint(a)
	if err != nil {
		t.Fatal(err)
	}
	nb, wb, err := DecodeVarint(b)
	if err != nil {
		t.Fatal(err)
	}
	return cat(AppendVarint(nil, na+nb), a[wa:wa+na], b[wb:wb+nb])
}

// normProps makes empty slices nil, which encoding does not tell apart.
func normProps(p Properties) Properties {
	if len(p.CorrelationData) == 0 {
		p.CorrelationData = nil
	}
	if len(p.AuthData) == 0 {
		p.AuthData = nil
	}
	return p
}
