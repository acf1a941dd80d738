package broker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/relaymq/relay/broker/topic"
)

// The local index must find exactly the routes topic.Match accepts, for
// any mix of filters, also after removals, and never another tenant's.
func TestLocalIndexMatchesLikeMatch(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "c", "", "$SYS", "x y"}
	randTopic := func() []byte {
		n := 1 + rnd.IntN(4)
		var s string
		for i := range n {
			if i > 0 {
				s += "/"
			}
			s += levels[rnd.IntN(len(levels))]
		}
		if s == "" {
			s = "a" // an empty topic is not valid [MQTT-4.7.3-1]
		}
		return []byte(s)
	}
	randFilter := func() string {
		n := 1 + rnd.IntN(4)
		var s string
		for i := range n {
			if i > 0 {
				s += "/"
			}
			switch r := rnd.IntN(6); {
			case r == 0:
				s += "+"
			case r == 1 && i == n-1:
				s += "#"
			default:
				s += levels[rnd.IntN(len(levels))]
			}
		}
		return s
	}
	var ix localIndex
	type entry struct {
		tenant string
		rt     *route
	}
	var live []entry
	for round := range 400 {
		// Add or remove a route.
		if len(live) > 0 && rnd.IntN(3) == 0 {
			i := rnd.IntN(len(live))
			ix.remove(live[i].tenant, live[i].rt)
			live = slices.Delete(live, i, i+1)
		} else {
			tenant := []string{"t1", "t2"}[rnd.IntN(2)]
			f := randFilter()
			class := ClassAll
			if rnd.IntN(4) == 0 {
				class = ClassQoS0
			}
			rt := &route{key: routeKey{tenant: tenant, filter: f, class: class}, f: topic.Filter{Topic: f}}
			ix.add(tenant, rt)
			live = append(live, entry{tenant, rt})
		}
		for range 20 {
			tp := randTopic()
			tenant := []string{"t1", "t2"}[rnd.IntN(2)]
			qos := byte(rnd.IntN(2))
			got := ix.match(nil, tenant, tp, qos)
			var want []*route
			for _, e := range live {
				// The index leaves the '$' rule [MQTT-4.7.2-1] to
				// route.deliver: a filter starting with a wildcard is
				// found for a '$' topic too.
				matches := topic.Match(e.rt.f.Topic, tp)
				if tp[0] == '$' && topic.NeedsDollarCheck(e.rt.f.Topic) {
					matches = topic.Match(e.rt.f.Topic, append([]byte("X"), tp[1:]...))
				}
				if e.tenant == tenant && matches && (qos == 0 || e.rt.key.class != ClassQoS0) {
					want = append(want, e.rt)
				}
			}
			key := func(rs []*route) []string {
				var out []string
				for _, r := range rs {
					out = append(out, fmt.Sprintf("%p", r))
				}
				slices.Sort(out)
				return out
			}
			if !slices.Equal(key(got), key(want)) {
				t.Fatalf("round %d: topic %q tenant %s qos %d: got %d routes, want %d", round, tp, tenant, qos, len(got), len(want))
			}
		}
	}
	for _, e := range live {
		ix.remove(e.tenant, e.rt)
	}
	if len(ix.tenants) != 0 {
		t.Fatalf("index not empty after removing every route: %d tenants left", len(ix.tenants))
	}
}

func BenchmarkLocalIndexMatch(b *testing.B) {
	var ix localIndex
	for i := range 1000 {
		f := fmt.Sprintf("dev/%d/+", i)
		ix.add("t", &route{f: topic.Filter{Topic: f}})
	}
	ix.add("t", &route{f: topic.Filter{Topic: "dev/#"}})
	tp := []byte("dev/500/temp")
	var arr [16]*route
	b.ReportAllocs()
	for b.Loop() {
		if n := len(ix.match(arr[:0], "t", tp, 0)); n != 2 {
			b.Fatal(n)
		}
	}
}
