package topic

import "testing"

var (
	benchTopic   = []byte("tenants/acme/devices/sensor-42/telemetry/temp.celsius")
	benchBool    bool
	benchErr     error
	benchSubject = AppendSubject(nil, benchTopic)
)

func BenchmarkMatch(b *testing.B) {
	cases := []struct {
		name   string
		filter string
	}{
		{"literal", "tenants/acme/devices/sensor-42/telemetry/temp.celsius"},
		{"plus", "tenants/+/devices/+/telemetry/+"},
		{"hash", "tenants/acme/#"},
		{"miss", "tenants/acme/devices/sensor-43/#"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchBool = Match(c.filter, benchTopic)
			}
		})
	}
}

func BenchmarkValidateTopic(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchTopic)))
	for b.Loop() {
		benchErr = ValidateTopic(benchTopic)
	}
}

func BenchmarkAppendSubject(b *testing.B) {
	cases := []struct {
		name  string
		topic []byte
	}{
		{"plain", benchTopic},
		{"escapes", []byte("v1.2/x y/100%/a*b/c>d//e")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.topic)))
			buf := make([]byte, 0, 256)
			for b.Loop() {
				buf = AppendSubject(buf[:0], c.topic)
			}
		})
	}
}

func BenchmarkDecodeSubject(b *testing.B) {
	cases := []struct {
		name    string
		subject []byte
	}{
		{"plain", benchSubject},
		{"escapes", AppendSubject(nil, []byte("v1.2/x y/100%/a*b/c>d//e"))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.subject)))
			buf := make([]byte, 0, 256)
			for b.Loop() {
				buf, benchErr = DecodeSubject(buf[:0], c.subject)
			}
		})
	}
}

func BenchmarkSubset(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchBool = Subset("tenants/acme/devices/+/telemetry/#", "tenants/acme/#")
	}
}
