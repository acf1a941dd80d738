package inspect

import (
	"context"
	"sync"
	"time"

	"github.com/relaymq/relay/broker/topic"
)

// Limits of the subscriber-match cache.
const (
	// matchTenants bounds the tenants whose filters are cached.
	matchTenants = 4096
	// matchFilters bounds the filters kept for one tenant; beyond it the
	// tenant is assumed to match everything.
	matchFilters = 50000
	// matchIdle is how long an unused tenant's filters are kept.
	matchIdle = time.Minute
)

// matchCache holds, per tenant, the filters that decide whether a message
// has a subscriber.
type matchCache struct {
	mu sync.Mutex
	m  map[string]*matchEntry
}

type matchEntry struct {
	used time.Time
	// The last completed load (loaded is zero before the first).
	loaded  time.Time
	all     bool // too many filters, or the load failed: assume a match
	live    []liveFilter
	durable []string // plain filters of stored sessions' QoS ≥ 1 subscriptions
	// durableAt is when durable was read (sessions change rarely and cost
	// a JetStream consumer to read: they are re-read after MatchTTL only).
	durableAt time.Time
	// A load in progress: started then, done closed when it completes.
	loading bool
	started time.Time
	done    chan struct{}
}

type liveFilter struct {
	filter string // plain filter (topic.Filter.Topic)
	node   string // for $local routes: the node; "" otherwise
}

// Matches reports whether a message of the tenant published on topic t by
// node origin with the given QoS has a subscriber anywhere: a live route
// on any edge (a $local one only on origin), or, for QoS ≥ 1, a stored
// persistent session's subscription (queued while offline).
//
// A match found in filters loaded within Options.MatchTTL is trusted (a
// subscription dropped since then still counts). No match is checked
// against route filters loaded after the call began: one load at a time
// per tenant, shared by the calls waiting for it, so a live subscription
// made just before the publish is seen. Stored sessions' filters are read
// again after MatchTTL only (a persistent session that subscribed and went
// offline within it may be missed). When the filters cannot be read it
// reports true.
func (in *Inspector) Matches(ctx context.Context, tenant, origin string, t []byte, qos byte) bool {
	begin := time.Now()
	c := &in.matches
	for fresh := false; ; {
		c.mu.Lock()
		e := c.m[tenant]
		if e == nil {
			if len(c.m) >= matchTenants {
				for k, old := range c.m {
					if begin.Sub(old.used) > matchIdle && !old.loading {
						delete(c.m, k)
					}
				}
				if len(c.m) >= matchTenants {
					c.mu.Unlock()
					return true // too many tenants publishing at once to track
				}
			}
			e = &matchEntry{}
			c.m[tenant] = e
		}
		e.used = begin
		if !e.loaded.IsZero() && (fresh || begin.Sub(e.loaded) <= in.opts.MatchTTL) {
			all, live, durable := e.all, e.live, e.durable
			c.mu.Unlock()
			if all || matchAny(live, durable, origin, t, qos) {
				return true
			}
			if fresh {
				return false
			}
		} else {
			c.mu.Unlock()
		}
		// Wait for a load that started after begin.
		c.mu.Lock()
		if !e.loading {
			e.loading, e.started, e.done = true, time.Now(), make(chan struct{})
			in.startLoad(tenant, e)
		}
		done, after := e.done, !e.started.Before(begin)
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return true
		}
		fresh = after
	}
}

func matchAny(live []liveFilter, durable []string, origin string, t []byte, qos byte) bool {
	for _, f := range live {
		if (f.node == "" || f.node == origin) && topic.Match(f.filter, t) {
			return true
		}
	}
	if qos > 0 {
		for _, f := range durable {
			if topic.Match(f, t) {
				return true
			}
		}
	}
	return false
}

// startLoad loads e's filters in the background. c.mu is held.
func (in *Inspector) startLoad(tenant string, e *matchEntry) {
	durable, durableAt := e.durable, e.durableAt
	if e.all || time.Since(durableAt) > in.opts.MatchTTL {
		durable, durableAt = nil, time.Time{}
	}
	finish := func(all bool, live []liveFilter, durable []string, durableAt time.Time) {
		c := &in.matches
		c.mu.Lock()
		e.all, e.live, e.durable, e.durableAt = all, live, durable, durableAt
		e.loaded, e.loading = time.Now(), false
		close(e.done)
		c.mu.Unlock()
	}
	select {
	case <-in.quit:
		go finish(true, nil, nil, time.Time{})
		return
	default:
	}
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		finish(in.loadFilters(tenant, durable, durableAt))
	}()
}

// loadFilters reads the tenant's route filters from every edge and, unless
// durableAt is set (durable is then still current), its stored sessions'
// durable filters.
func (in *Inspector) loadFilters(tenant string, durable []string, durableAt time.Time) (all bool, live []liveFilter, _ []string, _ time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		select {
		case <-in.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	rs, err := in.routes(ctx, tenant)
	if err != nil {
		in.log.Debug("loading route filters", "tenant", tenant, "err", err)
		return true, nil, nil, time.Time{}
	}
	seen := map[liveFilter]bool{}
	for _, r := range rs {
		f, err := topic.ParseFilter(r.Filter)
		if err != nil {
			continue
		}
		lf := liveFilter{filter: f.Topic}
		if f.Kind == topic.Local {
			lf.node = r.Node
		}
		if !seen[lf] {
			seen[lf] = true
			live = append(live, lf)
		}
	}
	if !durableAt.IsZero() {
		return len(live)+len(durable) > matchFilters, live, durable, durableAt
	}
	durableAt = time.Now()
	states, truncated, err := in.sessionStates(ctx, tenant, MaxSessions, false)
	if err != nil || truncated {
		if err != nil {
			in.log.Debug("loading session filters", "tenant", tenant, "err", err)
		}
		return true, nil, nil, time.Time{}
	}
	dseen := map[string]bool{}
	for _, s := range states {
		for _, sub := range s.Subscriptions {
			if sub.QoS == 0 {
				continue
			}
			f, err := topic.ParseFilter(sub.Filter)
			if err != nil || f.Kind != topic.Normal || dseen[f.Topic] {
				continue // shared and $local subscriptions are served live only
			}
			dseen[f.Topic] = true
			durable = append(durable, f.Topic)
		}
	}
	if len(live)+len(durable) > matchFilters {
		return true, nil, nil, time.Time{}
	}
	return false, live, durable, durableAt
}
