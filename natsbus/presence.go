package natsbus

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Presence: every node counts its live connections per tenant and writes
// the counts it changed, once a second, to RELAY_CONNS under
// "<tenant>.<node>"; every node watches the bucket for the others' counts.
// Per-tenant connection limits are checked against the sum, so several
// edges may together overshoot a limit by what they admit within a second.

type presence struct {
	mu     sync.Mutex
	local  map[string]int            // tenant → this node's connections
	dirty  map[string]bool           // tenants whose local count changed
	remote map[string]map[string]int // tenant → node → connections (other nodes)
}

func newPresence() *presence {
	return &presence{local: map[string]int{}, dirty: map[string]bool{}, remote: map[string]map[string]int{}}
}

// Connected implements broker.Presence.
func (b *Bus) Connected(tenant string, delta int) {
	p := b.presence
	p.mu.Lock()
	p.local[tenant] += delta
	if p.local[tenant] <= 0 {
		p.local[tenant] = 0
	}
	p.dirty[tenant] = true
	p.mu.Unlock()
}

// Connections implements broker.Presence.
func (b *Bus) Connections(tenant string) int {
	p := b.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.local[tenant]
	for _, c := range p.remote[tenant] {
		n += c
	}
	return n
}

func presenceKey(tenant, node string) string { return tenant + "." + node }

// reportPresence writes changed local counts every second, and watches the
// other nodes' counts.
func (b *Bus) startPresence(ctx context.Context) error {
	w, err := b.conns.WatchAll(context.Background())
	if err != nil {
		return err
	}
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		defer w.Stop()
		for {
			select {
			case <-b.quit:
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				tenant, node, ok := strings.Cut(e.Key(), ".")
				if !ok || node == b.opts.NodeID {
					continue
				}
				n, _ := strconv.Atoi(string(e.Value()))
				p := b.presence
				p.mu.Lock()
				if e.Operation() != jetstream.KeyValuePut || n == 0 {
					delete(p.remote[tenant], node)
				} else {
					if p.remote[tenant] == nil {
						p.remote[tenant] = map[string]int{}
					}
					p.remote[tenant][node] = n
				}
				p.mu.Unlock()
			}
		}
	}()
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				return
			case <-t.C:
			}
			p := b.presence
			p.mu.Lock()
			changed := make(map[string]int, len(p.dirty))
			for tn := range p.dirty {
				changed[tn] = p.local[tn]
			}
			clear(p.dirty)
			p.mu.Unlock()
			for tn, n := range changed {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				var err error
				if n == 0 {
					err = b.conns.Purge(ctx, presenceKey(tn, b.opts.NodeID))
				} else {
					_, err = b.conns.Put(ctx, presenceKey(tn, b.opts.NodeID), strconv.AppendInt(nil, int64(n), 10))
				}
				cancel()
				if err != nil {
					b.log.Debug("reporting connections", "tenant", tn, "err", err)
					p.mu.Lock()
					p.dirty[tn] = true
					p.mu.Unlock()
				}
			}
		}
	}()
	return nil
}

// forgetPresence removes a dead node's counts.
func (b *Bus) forgetPresence(ctx context.Context, node string) {
	l, err := b.conns.ListKeysFiltered(ctx, "*."+node)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			b.log.Debug("listing dead node's connection counts", "node", node, "err", err)
		}
		return
	}
	for k := range l.Keys() {
		b.conns.Purge(ctx, k)
	}
}
