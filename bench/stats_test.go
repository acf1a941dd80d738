package bench

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		q      float64
		want   time.Duration
	}{
		{"single", []int64{1234}, 0.5, 1234},
		{"small exact", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5},
		{"max", []int64{10, 20, 30, 40, 5_000_000}, 1, 5_000_000},
		{"p99 of 1..1000 µs", seq(1000, int64(time.Microsecond)), 0.99, 990 * time.Microsecond},
		{"p50 of 1..1000 µs", seq(1000, int64(time.Microsecond)), 0.50, 500 * time.Microsecond},
		{"negative counts as 0", []int64{-5, -5, -5}, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			got := h.Quantile(tt.q)
			if diff := math.Abs(float64(got - tt.want)); diff > float64(tt.want)/histSub+1 {
				t.Errorf("Quantile(%v) = %v, want %v ± 1/%d", tt.q, got, tt.want, histSub)
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value falls in a bucket whose bounds hold it, and the buckets
	// are contiguous and ordered.
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 123456789, 1 << 40, math.MaxInt64} {
		b := histBucket(v)
		if lo, hi := histLow(b), histLow(b+1); v < lo || (hi > lo && v >= hi) {
			t.Errorf("value %d in bucket %d [%d, %d)", v, b, lo, hi)
		}
	}
	for b := 1; b < histOctaves*histSub-1; b++ {
		if histLow(b) <= histLow(b-1) {
			t.Fatalf("bucket %d starts at %d, not after bucket %d at %d", b, histLow(b), b-1, histLow(b-1))
		}
	}
}

func TestHistogramMergeSummary(t *testing.T) {
	var a, b Histogram
	for i := range int64(100) {
		a.Record(i * 1000)
		b.Record((i + 100) * 1000)
	}
	a.Merge(&b)
	s := a.Summary()
	if s.Count != 200 || s.MinUs != 0 || s.MaxUs != 199 {
		t.Errorf("summary %+v: want count 200, min 0 µs, max 199 µs", s)
	}
	if math.Abs(s.P50Us-100) > 2 {
		t.Errorf("p50 %v µs, want about 100", s.P50Us)
	}
	var empty Histogram
	if empty.Summary() != nil {
		t.Error("summary of an empty histogram is not nil")
	}
}

func seq(n, unit int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i+1) * unit
	}
	return out
}

func TestStream(t *testing.T) {
	tests := []struct {
		name                      string
		seqs                      []uint32
		distinct, dups, reordered int64
	}{
		{"in order", []uint32{0, 1, 2, 3}, 4, 0, 0},
		{"gap", []uint32{0, 1, 5, 6}, 4, 0, 0},
		{"duplicate", []uint32{0, 1, 1, 2, 0}, 3, 2, 0},
		{"late arrival fills the gap", []uint32{0, 2, 1}, 3, 0, 1},
		{"far apart, grows the bitset", []uint32{0, 1_000_000, 70_000}, 3, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st stream
			for _, s := range tt.seqs {
				st.add(s)
			}
			if st.distinct != tt.distinct || st.dups != tt.dups || st.reordered != tt.reordered {
				t.Errorf("distinct %d dups %d reordered %d, want %d %d %d",
					st.distinct, st.dups, st.reordered, tt.distinct, tt.dups, tt.reordered)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
		check   func(Config) bool
	}{
		{"fanin defaults", Config{Scenario: FanIn, Addr: "x:1"}, false, func(c Config) bool {
			return c.Clients == 10 && c.Size == 64 && c.Duration == 10*time.Second && c.Inflight == 64 && c.Rate == 0
		}},
		{"latency defaults", Config{Scenario: Latency, Addr: "x:1"}, false, func(c Config) bool {
			return c.Clients == 1 && c.Rate == 1000
		}},
		{"conn defaults", Config{Scenario: Conn, Addr: "x:1"}, false, func(c Config) bool { return c.Clients == 1000 }},
		{"unknown scenario", Config{Scenario: "storm", Addr: "x:1"}, true, nil},
		{"no address", Config{Scenario: FanIn}, true, nil},
		{"QoS 3", Config{Scenario: FanIn, Addr: "x:1", QoS: 3}, true, nil},
		{"payload too small", Config{Scenario: FanIn, Addr: "x:1", Size: 15}, true, nil},
		{"wildcard prefix", Config{Scenario: FanIn, Addr: "x:1", TopicPrefix: "a/#"}, true, nil},
		{"window too large", Config{Scenario: FanIn, Addr: "x:1", Inflight: 70000}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.withDefaults()
			if tt.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				t.Errorf("defaults %+v", got)
			}
		})
	}
}

func TestCredential(t *testing.T) {
	if got := credential("dev{i}@acme", 42); got != "dev42@acme" {
		t.Errorf("credential = %q", got)
	}
	if got := credential("plain", 42); got != "plain" {
		t.Errorf("credential = %q", got)
	}
}
