package inspect

import (
	"context"
	"sync"
	"time"
)

// history is the usage of every tenant over time: a ring of frames, one
// per sample, each holding the tenants with any activity in it.
type history struct {
	mu       sync.Mutex
	interval time.Duration
	frames   []frame // ring
	next     int     // where the next frame goes
	n        int     // frames held
	// prev is every node's cumulative counters per tenant at the last
	// sample it answered, and when.
	prev map[string]nodeSample
}

type frame struct {
	t time.Time
	m map[string]Sample
}

type nodeSample struct {
	at      time.Time
	tenants map[string]Stats
}

func newHistory(interval, keep time.Duration) *history {
	n := max(int(keep/interval), 2)
	return &history{interval: interval, frames: make([]frame, n), prev: map[string]nodeSample{}}
}

// sample samples usage every interval until Close.
func (in *Inspector) sample() {
	defer in.wg.Done()
	t := time.NewTicker(in.opts.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-in.quit:
			return
		case now := <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), in.opts.Timeout+time.Second)
			reps, _, err := in.gather(ctx, SubjectAllStats, nil)
			cancel()
			if err != nil {
				in.log.Debug("usage sample failed", "err", err)
				continue
			}
			in.hist.record(now, reps)
		}
	}
}

// record adds a frame from the nodes' cumulative counters: per tenant the
// sum over nodes of each counter's growth since that node's previous
// answer (a counter that went down belongs to a restarted node: its value
// is all growth), and the connections now. A node answering for the first
// time only sets its baseline; a tenant new on a known node counts from 0.
func (h *history) record(now time.Time, reps []reply) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := frame{t: now, m: map[string]Sample{}}
	for _, r := range reps {
		prev, known := h.prev[r.Node]
		for tn, cur := range r.Tenants {
			s := f.m[tn]
			s.Connections += cur.Connections
			if known {
				p := prev.tenants[tn]
				s.MessagesIn += grew(p.MessagesIn, cur.MessagesIn)
				s.MessagesOut += grew(p.MessagesOut, cur.MessagesOut)
				s.BytesIn += grew(p.BytesIn, cur.BytesIn)
				s.BytesOut += grew(p.BytesOut, cur.BytesOut)
				s.Dropped += grew(p.Dropped, cur.Dropped)
			}
			f.m[tn] = s
		}
		h.prev[r.Node] = nodeSample{at: now, tenants: r.Tenants}
	}
	for tn, s := range f.m {
		if s.zero() {
			delete(f.m, tn)
		}
	}
	// Forget nodes that stopped answering long ago.
	for node, p := range h.prev {
		if now.Sub(p.at) > 10*h.interval {
			delete(h.prev, node)
		}
	}
	h.frames[h.next] = f
	h.next = (h.next + 1) % len(h.frames)
	h.n = min(h.n+1, len(h.frames))
}

func grew(prev, cur uint64) uint64 {
	if cur >= prev {
		return cur - prev
	}
	return cur
}

// Usage returns the tenant's samples of the last window, oldest first
// (intervals without activity are zero samples), and the sampling
// interval.
func (in *Inspector) Usage(tenant string, window time.Duration) (time.Duration, []Sample) {
	h := in.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	since := time.Now().Add(-window)
	out := make([]Sample, 0, min(h.n, int(window/h.interval)+1))
	for i := range h.n {
		f := &h.frames[(h.next-h.n+i+len(h.frames))%len(h.frames)]
		if f.t.Before(since) {
			continue
		}
		s := f.m[tenant]
		s.T = f.t
		out = append(out, s)
	}
	return h.interval, out
}
