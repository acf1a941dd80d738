package natsbus

import (
	"sync"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// sessionIndex knows, for every tenant, which persistent sessions hold QoS ≥
// 1 subscriptions on which filters, so that the publishing edge can put a
// copy of each QoS ≥ 1 message into the queue of every matching session.
// Every node builds it from a watch of RELAY_SESSIONS, and updates it
// synchronously when it stores a session itself (so that a SUBSCRIBE is
// effective on its own edge before SUBACK).
type sessionIndex struct {
	mu      sync.RWMutex
	tenants map[string]*tenantIndex
	// revs is the RELAY_SESSIONS revision each session's entry reflects:
	// the watch may deliver a revision older than one this node stored
	// itself, and must not roll the entry back.
	revs map[string]uint64
	// exists holds every stored session (with or without durable
	// subscriptions), so that a clean-session CONNECT need not read the
	// store to learn there is nothing to discard.
	exists map[string]bool
}

type tenantIndex struct {
	exact    map[string]map[string]byte // literal filter → session id → QoS
	wild     map[string]map[string]byte // wildcard filter → session id → QoS
	sessions map[string][]string        // session id → its filters
}

type indexEntry struct {
	sid string
	qos byte
}

func newSessionIndex() *sessionIndex {
	return &sessionIndex{tenants: make(map[string]*tenantIndex), revs: make(map[string]uint64), exists: make(map[string]bool)}
}

// durableSubs returns the subscriptions whose QoS ≥ 1 messages go through
// the session queue: plain (not shared, not $local) filters with QoS > 0.
func durableSubs(subs []broker.Subscription) []broker.Subscription {
	var out []broker.Subscription
	for _, s := range subs {
		if s.QoS == 0 {
			continue
		}
		if f, err := topic.ParseFilter(s.Filter); err == nil && f.Kind == topic.Normal {
			out = append(out, s)
		}
	}
	return out
}

// set replaces the indexed subscriptions of session sid with those of
// revision rev (0: unconditionally), unless a newer revision is indexed.
func (x *sessionIndex) set(tenant, sid string, subs []broker.Subscription, rev uint64) {
	x.put(tenant, sid, subs, rev, true)
}

// put records session sid as stored (exists) or gone, with its
// subscriptions, as of revision rev (0: unconditionally).
func (x *sessionIndex) put(tenant, sid string, subs []broker.Subscription, rev uint64, exists bool) {
	subs = durableSubs(subs)
	x.mu.Lock()
	defer x.mu.Unlock()
	if rev != 0 {
		if rev < x.revs[sid] {
			return
		}
		x.revs[sid] = rev
	}
	if exists {
		x.exists[sid] = true
	} else {
		delete(x.exists, sid)
	}
	t := x.tenants[tenant]
	if t == nil {
		if len(subs) == 0 {
			return
		}
		t = &tenantIndex{
			exact: make(map[string]map[string]byte), wild: make(map[string]map[string]byte),
			sessions: make(map[string][]string),
		}
		x.tenants[tenant] = t
	}
	t.removeLocked(sid)
	if len(subs) == 0 {
		if len(t.sessions) == 0 {
			delete(x.tenants, tenant)
		}
		return
	}
	filters := make([]string, 0, len(subs))
	for _, s := range subs {
		group := t.exact
		if hasWildcard(s.Filter) {
			group = t.wild
		}
		m := group[s.Filter]
		if m == nil {
			m = make(map[string]byte)
			group[s.Filter] = m
		}
		m[sid] = s.QoS
		filters = append(filters, s.Filter)
	}
	t.sessions[sid] = filters
}

// covers reports whether every durable subscription in subs is already
// indexed for session sid with at least its QoS.
func (x *sessionIndex) covers(tenant, sid string, subs []broker.Subscription) bool {
	subs = durableSubs(subs)
	x.mu.RLock()
	defer x.mu.RUnlock()
	t := x.tenants[tenant]
	for _, s := range subs {
		if t == nil {
			return false
		}
		group := t.exact
		if hasWildcard(s.Filter) {
			group = t.wild
		}
		if q, ok := group[s.Filter][sid]; !ok || q < s.QoS {
			return false
		}
	}
	return true
}

// remove drops session sid as of revision rev (0: unconditionally).
func (x *sessionIndex) remove(tenant, sid string, rev uint64) { x.put(tenant, sid, nil, rev, false) }

// stored reports whether session sid is known to be stored.
func (x *sessionIndex) stored(sid string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.exists[sid]
}

func (t *tenantIndex) removeLocked(sid string) {
	for _, f := range t.sessions[sid] {
		group := t.exact
		if hasWildcard(f) {
			group = t.wild
		}
		if m := group[f]; m != nil {
			delete(m, sid)
			if len(m) == 0 {
				delete(group, f)
			}
		}
	}
	delete(t.sessions, sid)
}

// match appends to dst one entry per session with a subscription matching
// topic t, with the highest matching QoS [MQTT-3.3.5-1].
func (x *sessionIndex) match(dst []indexEntry, tenant string, t []byte) []indexEntry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ti := x.tenants[tenant]
	if ti == nil {
		return dst
	}
	var groups [8]map[string]byte
	matched := groups[:0]
	if m := ti.exact[string(t)]; m != nil {
		matched = append(matched, m)
	}
	for f, m := range ti.wild {
		if topic.Match(f, t) {
			matched = append(matched, m)
		}
	}
	switch len(matched) {
	case 0:
		return dst
	case 1: // a session appears once per filter: no duplicates possible
		for sid, q := range matched[0] {
			dst = append(dst, indexEntry{sid, q})
		}
		return dst
	}
	at := make(map[string]int)
	for _, m := range matched {
		for sid, q := range m {
			if i, ok := at[sid]; ok {
				dst[i].qos = max(dst[i].qos, q)
				continue
			}
			at[sid] = len(dst)
			dst = append(dst, indexEntry{sid, q})
		}
	}
	return dst
}

func hasWildcard(f string) bool {
	for i := 0; i < len(f); i++ {
		if f[i] == '+' || f[i] == '#' {
			return true
		}
	}
	return false
}
