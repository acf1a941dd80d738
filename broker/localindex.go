package broker

import (
	"bytes"
	"sync"
)

// Local delivery: a message published on this edge reaches this edge's own
// subscribers straight from the publisher's goroutine, without the round
// trip through NATS (encode, the server's parse and routing, nats.go's
// parse, decode) that other edges' subscribers need. The Router sends it
// to the other edges only (see Router.LocalDelivery) and calls
// Broker.dispatchLocal for this one, which finds the matching routes in
// the localIndex below.
//
// Only plain and $local routes are indexed: a shared subscription's
// message goes to one member across all edges, which NATS picks (the
// Router keeps those on a connection that also receives this edge's own
// publishes).

// localIndex is a per-tenant trie of this edge's non-shared routes, by
// filter level. Reads (every publish) take the read lock; adding and
// removing routes take the write lock.
type localIndex struct {
	mu      sync.RWMutex
	tenants map[string]*trieNode
}

// trieNode is one filter level. A route whose filter ends at this level is
// in routes; one whose filter continues with '#' here is in multi (it
// matches this level's topic and everything below [MQTT-4.7.1-2]).
type trieNode struct {
	children map[string]*trieNode
	single   *trieNode // '+'
	routes   []*route
	multi    []*route
}

func (n *trieNode) empty() bool {
	return len(n.children) == 0 && n.single == nil && len(n.routes) == 0 && len(n.multi) == 0
}

// add inserts rt under its filter (without $local/ prefix).
func (ix *localIndex) add(tenant string, rt *route) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.tenants == nil {
		ix.tenants = make(map[string]*trieNode)
	}
	n := ix.tenants[tenant]
	if n == nil {
		n = &trieNode{}
		ix.tenants[tenant] = n
	}
	filter := rt.f.Topic
	for {
		level, rest, more := cutLevel(filter)
		switch {
		case level == "#":
			n.multi = append(n.multi, rt)
			return
		case level == "+":
			if n.single == nil {
				n.single = &trieNode{}
			}
			n = n.single
		default:
			c := n.children[level]
			if c == nil {
				if n.children == nil {
					n.children = make(map[string]*trieNode)
				}
				c = &trieNode{}
				n.children[level] = c
			}
			n = c
		}
		if !more {
			n.routes = append(n.routes, rt)
			return
		}
		filter = rest
	}
}

// remove takes rt out again and prunes the levels left empty.
func (ix *localIndex) remove(tenant string, rt *route) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	root := ix.tenants[tenant]
	if root == nil {
		return
	}
	removeFrom(root, rt.f.Topic, rt)
	if root.empty() {
		delete(ix.tenants, tenant)
	}
}

// removeFrom removes rt from the subtree of n for filter, dropping the
// child levels it leaves empty.
func removeFrom(n *trieNode, filter string, rt *route) {
	level, rest, more := cutLevel(filter)
	if level == "#" {
		n.multi = without(n.multi, rt)
		return
	}
	c := n.children[level]
	if level == "+" {
		c = n.single
	}
	if c == nil {
		return
	}
	if more {
		removeFrom(c, rest, rt)
	} else {
		c.routes = without(c.routes, rt)
	}
	if c.empty() {
		if level == "+" {
			n.single = nil
		} else {
			delete(n.children, level)
		}
	}
}

func without(rs []*route, rt *route) []*route {
	for i, r := range rs {
		if r == rt {
			last := len(rs) - 1
			rs[i] = rs[last]
			rs[last] = nil
			return rs[:last]
		}
	}
	return rs
}

// match appends to dst the routes of the tenant whose filter matches
// topic and returns it; with qos > 0 routes of ClassQoS0 are left out.
// It allocates nothing while dst has room.
func (ix *localIndex) match(dst []*route, tenant string, topic []byte, qos byte) []*route {
	ix.mu.RLock()
	if root := ix.tenants[tenant]; root != nil {
		dst = matchNode(dst, root, topic, qos)
	}
	ix.mu.RUnlock()
	return dst
}

func matchNode(dst []*route, n *trieNode, topic []byte, qos byte) []*route {
	for {
		// '#' here matches the rest of the topic, and also the topic that
		// ends at this node's parent level [MQTT-4.7.1-2].
		dst = appendClass(dst, n.multi, qos)
		i := bytes.IndexByte(topic, '/')
		level, rest := topic, []byte(nil)
		if i >= 0 {
			level, rest = topic[:i], topic[i+1:]
		}
		if n.single != nil {
			if i < 0 {
				dst = appendClass(dst, n.single.routes, qos)
				dst = appendClass(dst, n.single.multi, qos)
			} else {
				dst = matchNode(dst, n.single, rest, qos)
			}
		}
		c := n.children[string(level)] // no allocation: map index
		if c == nil {
			return dst
		}
		if i < 0 {
			dst = appendClass(dst, c.routes, qos)
			return appendClass(dst, c.multi, qos)
		}
		n, topic = c, rest
	}
}

func appendClass(dst, rs []*route, qos byte) []*route {
	for _, rt := range rs {
		if qos > 0 && rt.key.class == ClassQoS0 {
			continue
		}
		dst = append(dst, rt)
	}
	return dst
}

// cutLevel splits a filter at its first '/'.
func cutLevel(f string) (level, rest string, more bool) {
	for i := 0; i < len(f); i++ {
		if f[i] == '/' {
			return f[:i], f[i+1:], true
		}
	}
	return f, "", false
}

// dispatchLocal is the Router's local delivery (Router.LocalDelivery): it
// hands m, just published on this edge, to every matching local route;
// for a client's own publish (m.paced) it waits for room in full queues.
// m belongs to the publisher (it may point into a read buffer), so the
// subscribers share one copy, made only if some route matches.
func (b *Broker) dispatchLocal(m *Message) {
	var arr [16]*route
	rts := b.local.match(arr[:0], m.Tenant, m.Topic, m.QoS)
	if len(rts) == 0 {
		return
	}
	own := m.clone()
	for _, rt := range rts {
		rt.deliverFrom(own, m.paced)
	}
}

// clone returns a copy of m that owns its topic and payload; Props are
// immutable once built and shared. Small messages (the common case) take
// one allocation: the Message and its bytes together.
func (m *Message) clone() *Message {
	n := len(m.Topic) + len(m.Payload)
	var (
		c   *Message
		buf []byte
	)
	switch {
	case n <= 128:
		mb := new(struct {
			Message
			b [128]byte
		})
		c, buf = &mb.Message, mb.b[:n]
	case n <= 512:
		mb := new(struct {
			Message
			b [512]byte
		})
		c, buf = &mb.Message, mb.b[:n]
	default:
		c, buf = new(Message), make([]byte, n)
	}
	*c = *m
	t := copy(buf, m.Topic)
	copy(buf[t:], m.Payload)
	c.Topic = buf[:t:t]
	c.Payload = buf[t:n:n]
	return c
}
