package bench

import (
	"math"
	"math/bits"
	"time"
)

// ---------------------------------------------------------------------------
// Latency histogram
// ---------------------------------------------------------------------------

// histSubBits is the number of mantissa bits per power of two: 2^6 = 64
// buckets per octave, so a recorded value is off by at most 1/64 (1.6 %).
const histSubBits = 6

const (
	histSub     = 1 << histSubBits
	histOctaves = 64 - histSubBits + 1
)

// Histogram is a log-linear histogram of durations in nanoseconds: fixed
// size (about 30 KiB), no allocation per value, 1.6 % relative precision.
// It is not safe for concurrent use; merge per-goroutine histograms with
// Merge.
type Histogram struct {
	counts [histOctaves * histSub]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// histBucket returns the bucket of v ≥ 0.
func histBucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	exp := bits.Len64(v) - histSubBits // ≥ 1
	return exp*histSub + int(v>>(exp-1)) - histSub
}

// histLow returns the smallest value in bucket b.
func histLow(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	exp := b / histSub
	return uint64(b%histSub+histSub) << (exp - 1)
}

// Record adds one value; negative values (clock skew between goroutines
// cannot produce them, but a corrupt payload can) count as 0.
func (h *Histogram) Record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.counts[histBucket(uint64(ns))]++
	if h.n == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.n++
	h.sum += float64(ns)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the value at quantile q (0..1): the midpoint of the
// bucket holding it, clamped to the recorded minimum and maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(b), histLow(b+1)
			v := int64(lo + (hi-lo)/2)
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// LatencyStats summarises end-to-end latencies in microseconds.
type LatencyStats struct {
	Count  uint64  `json:"count"`
	MeanUs float64 `json:"mean_us"`
	MinUs  float64 `json:"min_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p99_9_us"`
	MaxUs  float64 `json:"max_us"`
}

// Summary returns h's count, mean, min, max and the usual percentiles.
func (h *Histogram) Summary() *LatencyStats {
	if h.n == 0 {
		return nil
	}
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return &LatencyStats{
		Count:  h.n,
		MeanUs: h.sum / float64(h.n) / 1e3,
		MinUs:  float64(h.min) / 1e3,
		P50Us:  us(h.Quantile(0.50)),
		P90Us:  us(h.Quantile(0.90)),
		P99Us:  us(h.Quantile(0.99)),
		P999Us: us(h.Quantile(0.999)),
		MaxUs:  float64(h.max) / 1e3,
	}
}

// ---------------------------------------------------------------------------
// Per-publisher sequence tracking
// ---------------------------------------------------------------------------

// stream is what one subscriber has seen of one publisher's sequence
// numbers: a bitset of every number received, so duplicates and losses are
// exact whatever the order of arrival.
type stream struct {
	seen      []uint64 // bit s set: sequence number s received
	distinct  int64    // numbers received at least once
	dups      int64    // receptions of a number already seen
	reordered int64    // receptions of a number below the highest seen
	next      uint32   // highest number seen + 1
}

// add records sequence number s.
func (st *stream) add(s uint32) {
	w, bit := int(s>>6), uint64(1)<<(s&63)
	if w >= len(st.seen) {
		n := max(2*len(st.seen), w+1, 1024)
		st.seen = append(st.seen, make([]uint64, n-len(st.seen))...)
	}
	if st.seen[w]&bit != 0 {
		st.dups++
		return
	}
	st.seen[w] |= bit
	st.distinct++
	if s+1 > st.next {
		st.next = s + 1
	} else {
		st.reordered++
	}
}
