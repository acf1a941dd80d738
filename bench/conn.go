package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaymq/relay/broker/packet"
)

// ---------------------------------------------------------------------------
// conn: a connection storm, then idle connections held
// ---------------------------------------------------------------------------

// ConnResult is the conn scenario's result.
type ConnResult struct {
	Requested   int `json:"requested"`
	Concurrency int `json:"concurrency"`
	Connected   int `json:"connected"`
	Failed      int `json:"failed"`
	// ConnectSeconds is from the first dial to the last CONNACK;
	// ConnectsPerSec is Connected over it.
	ConnectSeconds float64 `json:"connect_s"`
	ConnectsPerSec float64 `json:"connects_per_s"`
	// ConnectLatency is per connection, from dial to CONNACK.
	ConnectLatency *LatencyStats `json:"connect_latency,omitempty"`
	// HoldSeconds is how long the connections were held; Dropped counts
	// those the broker closed meanwhile.
	HoldSeconds float64 `json:"hold_s"`
	Dropped     int     `json:"dropped"`
	// Broker memory from /proc/PID/status (VmRSS and RssAnon, KiB) before
	// the first connection and at the end of the hold, and the growth per
	// held connection (KiB). Absent without a PID.
	PID           int     `json:"pid,omitempty"`
	RSSBeforeKiB  int64   `json:"rss_before_kib,omitempty"`
	RSSHeldKiB    int64   `json:"rss_held_kib,omitempty"`
	RSSPerConnKiB float64 `json:"rss_per_conn_kib,omitempty"`
	AnonBeforeKiB int64   `json:"anon_before_kib,omitempty"`
	AnonHeldKiB   int64   `json:"anon_held_kib,omitempty"`
	AnonPerConnKB float64 `json:"anon_per_conn_kib,omitempty"`
}

// idleConn is one held connection.
type idleConn struct {
	conn net.Conn
	mu   sync.Mutex // writes: keep-alive and DISCONNECT
}

// runConn opens cfg.Clients connections cfg.Concurrency at a time, holds
// them for cfg.Duration, then closes them.
func runConn(ctx context.Context, cfg *Config) (*Result, error) {
	r := newRun(cfg)
	cr := &ConnResult{Requested: cfg.Clients, Concurrency: cfg.Concurrency, PID: cfg.PID}
	if cfg.PID > 0 {
		m, err := readMemory(cfg.PID)
		if err != nil {
			return nil, err
		}
		cr.RSSBeforeKiB, cr.AnonBeforeKiB = m.rss, m.anon
	}

	conns := make([]*idleConn, cfg.Clients)
	var connected, failed atomic.Int64
	hists := make([]Histogram, min(cfg.Concurrency, cfg.Clients))
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	var last atomic.Int64 // nanoseconds after t0 of the last CONNACK
	for w := range hists {
		wg.Go(func() {
			h := &hists[w]
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Clients {
					return
				}
				start := time.Now()
				c, err := dialIdle(ctx, cfg, r.dialOptions("c", i, i))
				if err != nil {
					failed.Add(1)
					r.errs.add(err)
					continue
				}
				done := time.Now()
				h.Record(int64(done.Sub(start)))
				for d := int64(done.Sub(t0)); ; {
					l := last.Load()
					if d <= l || last.CompareAndSwap(l, d) {
						break
					}
				}
				conns[i] = c
				connected.Add(1)
			}
		})
	}
	stopProgress := progress(cfg, func(el time.Duration) string {
		n := connected.Load()
		return fmt.Sprintf("%5.0fs  connected %d of %d (%s/s)  failed %d",
			el.Seconds(), n, cfg.Clients, si(float64(n)/el.Seconds()), failed.Load())
	})
	wg.Wait()
	stopProgress()
	cr.Connected, cr.Failed = int(connected.Load()), int(failed.Load())
	cr.ConnectSeconds = time.Duration(last.Load()).Seconds()
	if cr.ConnectSeconds > 0 {
		cr.ConnectsPerSec = float64(cr.Connected) / cr.ConnectSeconds
	}
	var hist Histogram
	for i := range hists {
		hist.Merge(&hists[i])
	}
	cr.ConnectLatency = hist.Summary()

	// Hold them, pinging when the keep-alive calls for it.
	held := time.Now()
	stopProgress = progress(cfg, func(el time.Duration) string {
		line := fmt.Sprintf("%5.0fs  holding %d connections", el.Seconds(), cr.Connected)
		if cfg.PID > 0 {
			if m, err := readMemory(cfg.PID); err == nil {
				line += fmt.Sprintf("  broker RSS %.1f MiB", float64(m.rss)/1024)
			}
		}
		return line
	})
	hold := time.NewTimer(cfg.Duration)
	ping := time.NewTicker(cfg.KeepAlive / 2)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hold.C:
			break wait
		case <-ping.C:
			forEach(conns, cfg.Concurrency, func(c *idleConn) bool {
				return c.write(packet.AppendPingreq(nil)) == nil
			})
		}
	}
	hold.Stop()
	ping.Stop()
	stopProgress()
	cr.HoldSeconds = time.Since(held).Seconds()
	if cfg.PID > 0 {
		if m, err := readMemory(cfg.PID); err == nil {
			cr.RSSHeldKiB, cr.AnonHeldKiB = m.rss, m.anon
			if alive := cr.Connected; alive > 0 {
				cr.RSSPerConnKiB = float64(cr.RSSHeldKiB-cr.RSSBeforeKiB) / float64(alive)
				cr.AnonPerConnKB = float64(cr.AnonHeldKiB-cr.AnonBeforeKiB) / float64(alive)
			}
		} else {
			r.errs.add(err)
		}
	}
	cr.Dropped = cr.Connected - forEach(conns, 1000, (*idleConn).alive)

	disc, _ := (&packet.Disconnect{}).Encode(nil, cfg.Version)
	forEach(conns, cfg.Concurrency, func(c *idleConn) bool {
		_ = c.write(disc)
		c.conn.Close()
		return true
	})
	return &Result{
		Scenario: Conn, Addr: cfg.Addr, Version: cfg.Version, Clients: cfg.Clients,
		Persistent: cfg.Persistent, Window: cr.HoldSeconds, Conn: cr, Errors: r.errs.list(),
	}, nil
}

// dialIdle connects one idle client with small buffers it drops after
// CONNACK.
func dialIdle(ctx context.Context, cfg *Config, o dialOptions) (*idleConn, error) {
	deadline := time.Now().Add(cfg.ConnectTimeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := dialBroker(ctx, cfg, o.n)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(deadline)
	b, err := connectPacket(cfg, o).Encode(nil, cfg.Version)
	if err == nil {
		_, err = conn.Write(b)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	rd := packet.NewReader(bufio.NewReaderSize(conn, 64), 0)
	fh, body, err := rd.ReadPacket()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	var ack packet.Connack
	if fh.Type != packet.CONNACK {
		err = fmt.Errorf("got %v instead of CONNACK", fh.Type)
	} else if err = ack.Decode(cfg.Version, fh, body); err == nil && ack.ReasonCode != packet.Success {
		err = fmt.Errorf("%w: CONNACK 0x%02X (%v)", ErrRefused, byte(ack.ReasonCode), ack.ReasonCode)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &idleConn{conn: conn}, nil
}

// write writes b within a second.
func (c *idleConn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := c.conn.Write(b)
	return err
}

// alive reports whether the broker kept the connection open: reading finds
// nothing but PINGRESPs before a short timeout.
func (c *idleConn) alive() bool {
	var buf [64]byte
	_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		_, err := c.conn.Read(buf[:])
		if err != nil {
			var ne net.Error
			return errors.As(err, &ne) && ne.Timeout()
		}
	}
}

// forEach runs f on every non-nil connection, conc at a time, and returns
// how many returned true.
func forEach(conns []*idleConn, conc int, f func(*idleConn) bool) int {
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				if c := conns[i]; c != nil && f(c) {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(ok.Load())
}

// progress prints line(elapsed) to cfg.Progress every second until the
// returned function is called.
func progress(cfg *Config, line func(elapsed time.Duration) string) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				fmt.Fprintln(cfg.Progress, line(now.Sub(t0)))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// memory is a process's resident memory in KiB.
type memory struct{ rss, anon int64 }

// readMemory reads VmRSS and RssAnon from /proc/pid/status.
func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("broker memory: %w", err)
	}
	var m memory
	for line := range bytes.Lines(b) {
		k, v, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) > 0 {
			*dst, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	if m.rss == 0 {
		return m, fmt.Errorf("broker memory: no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// writeText writes the conn result for people.
func (cr *ConnResult) writeText(b *strings.Builder, res *Result) {
	fmt.Fprintf(b, "conn: %d clients, %d at a time, MQTT level %d, %s\n", cr.Requested, cr.Concurrency, res.Version, res.Addr)
	fmt.Fprintf(b, "  connected   %d in %.2fs: %s connects/s   failed %d\n",
		cr.Connected, cr.ConnectSeconds, si(cr.ConnectsPerSec), cr.Failed)
	if l := cr.ConnectLatency; l != nil {
		fmt.Fprintf(b, "  connect     p50 %s  p99 %s  max %s (dial to CONNACK)\n", us(l.P50Us), us(l.P99Us), us(l.MaxUs))
	}
	fmt.Fprintf(b, "  held        %.1fs, dropped by the broker %d\n", cr.HoldSeconds, cr.Dropped)
	if cr.PID > 0 {
		fmt.Fprintf(b, "  broker RSS  %.1f → %.1f MiB: %.2f KiB per connection (anonymous: %.2f KiB)\n",
			float64(cr.RSSBeforeKiB)/1024, float64(cr.RSSHeldKiB)/1024, cr.RSSPerConnKiB, cr.AnonPerConnKB)
	}
}
