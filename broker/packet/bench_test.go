package packet

import (
	"bytes"
	"testing"
)

type benchPublish struct {
	name    string
	version byte
	raw     []byte
}

// benchPublishes are the PUBLISH packets the allocation test and the
// benchmarks use: a typical telemetry message, QoS 1, 256-byte payload.
func benchPublishes() []benchPublish {
	payload := bytes.Repeat([]byte("x"), 256)
	topic := str("tenant-42/devices/sensor-0017/telemetry")
	return []benchPublish{
		{"v3", V311, frame(0x32, topic, u16(1), payload)},
		{"v5", V5, frame(0x32, topic, u16(1), bs(0), payload)},
		// Properties without strings: still no allocation.
		{"v5_props", V5, frame(0x32, topic, u16(1),
			propBlock(bs(0x01, 1), bs(0x02), u32(3600), bs(0x09), str("corr-0001"), bs(0x23), u16(7)), payload)},
	}
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, tc := range benchPublishes() {
		b.Run(tc.name, func(b *testing.B) {
			fh, body := readOne(b, tc.raw)
			var p Publish
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.raw)))
			for b.Loop() {
				if err := p.Decode(tc.version, fh, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodePublish(b *testing.B) {
	for _, tc := range benchPublishes() {
		b.Run(tc.name, func(b *testing.B) {
			fh, body := readOne(b, tc.raw)
			var p Publish
			if err := p.Decode(tc.version, fh, body); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.raw)))
			for b.Loop() {
				var err error
				if buf, err = p.Encode(buf[:0], tc.version); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadDecodePublish is the whole inbound path: Reader plus Decode.
func BenchmarkReadDecodePublish(b *testing.B) {
	for _, tc := range benchPublishes() {
		b.Run(tc.name, func(b *testing.B) {
			src := bytes.NewReader(tc.raw)
			br := bufioReader(nil)
			r := NewReader(br, 0)
			var p Publish
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.raw)))
			for b.Loop() {
				src.Reset(tc.raw)
				br.Reset(src)
				fh, body, err := r.ReadPacket()
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Decode(tc.version, fh, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
