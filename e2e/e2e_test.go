package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestCrossEdgeDelivery: a subscriber on edge A gets what a publisher on
// edge B sends, at every QoS, complete and in order.
func TestCrossEdgeDelivery(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "cross-a", "cross-b")
	a, b := es[0], es[1]

	t.Run("qos0_1_2", func(t *testing.T) {
		const n = 200
		sub := connect(t, clientOpts("cross-sub", a.Addr))
		pub := connect(t, clientOpts("cross-pub", b.Addr))
		recs := [3]*recorder{newRecorder(), newRecorder(), newRecorder()}
		for q := range byte(3) {
			subscribe(t, sub, fmt.Sprintf("cross/q%d", q), 2, recs[q].handler)
		}
		for q := range byte(3) {
			publishAll(t, pub, fmt.Sprintf("cross/q%d", q), q, keys(fmt.Sprintf("q%d", q), n), 32)
		}
		eventually(10*time.Second, func() bool {
			return recs[0].total() >= n && recs[1].total() >= n && recs[2].total() >= n
		})
		time.Sleep(300 * time.Millisecond) // let duplicates, if any, arrive
		for q := range byte(3) {
			want := keys(fmt.Sprintf("q%d", q), n)
			r := recs[q]
			tl := r.tally(want)
			t.Logf("QoS %d: published %d on %s, subscriber on %s: %v, delivered at QoS %v",
				q, n, b.ID, a.ID, tl, r.qos)
			if tl.received != n || tl.lost != 0 || tl.dups != 0 {
				t.Errorf("QoS %d: %v, want exactly %d", q, tl, n)
			}
			if r.qos[q] != n {
				t.Errorf("QoS %d: delivered with QoS counts %v, want all %d at QoS %d", q, r.qos, n, q)
			}
			if i, ok := inOrder(r.snapshot(), want); !ok {
				t.Errorf("QoS %d: out of order from position %d", q, i)
			}
		}
	})

	t.Run("qos1_2000_in_order", func(t *testing.T) {
		const n = 2000
		rec := newRecorder()
		sub := connect(t, clientOpts("order-sub", a.Addr))
		subscribe(t, sub, "order/t", 1, rec.handler)
		pub := connect(t, clientOpts("order-pub", b.Addr))
		want := keys("o", n)
		start := time.Now()
		acked := publishAll(t, pub, "order/t", 1, want, 64)
		pubTook := time.Since(start)
		eventually(20*time.Second, func() bool { return rec.total() >= n })
		took := time.Since(start)
		time.Sleep(300 * time.Millisecond)
		tl := rec.tally(want)
		t.Logf("%d QoS 1 messages B→A: %d PUBACKed in %v (%.0f msg/s), all delivered after %v: %v",
			n, acked, pubTook.Round(time.Millisecond), float64(acked)/pubTook.Seconds(), took.Round(time.Millisecond), tl)
		if acked != n || tl.received != n || tl.lost != 0 || tl.dups != 0 {
			t.Errorf("want %d PUBACKed and delivered exactly once; got acked=%d %v", n, acked, tl)
			if l := a.logLines("queue full"); len(l) > 0 {
				t.Logf("edge A dropped messages: %s", l[0])
			}
		}
		if i, ok := inOrder(rec.snapshot(), want); !ok {
			got := rec.snapshot()
			t.Errorf("out of order at position %d (got %q)", i, got[i:min(len(got), i+3)])
		}
	})
}

// TestSharedSubscriptionsAcrossEdges: a shared group spread over edges gets
// each message once in total.
func TestSharedSubscriptionsAcrossEdges(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "share-a", "share-b", "share-c")
	const n = 1000
	cases := []struct {
		name   string
		filter string
		// members lists the edge (index into es) of each group member.
		members []int
	}{
		{"share_one_member_per_edge", "$share/g/jobs/#", []int{0, 1, 2}},
		{"queue_one_member_per_edge", "$queue/jobs/#", []int{0, 1, 2}},
		{"share_two_members_on_one_edge", "$share/g2/jobs/#", []int{0, 0, 1}},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := make([]*recorder, len(tc.members))
			for i, e := range tc.members {
				recs[i] = newRecorder()
				c := connect(t, clientOpts(fmt.Sprintf("member-%d-%d", ci, i), es[e].Addr))
				subscribe(t, c, tc.filter, 1, recs[i].handler)
			}
			pub := connect(t, clientOpts(fmt.Sprintf("jobs-pub-%d", ci), es[0].Addr))
			want := keys(fmt.Sprintf("job%d", ci), n)
			publishAll(t, pub, fmt.Sprintf("jobs/%d/x", ci), 1, want, 32)
			total := func() int {
				s := 0
				for _, r := range recs {
					s += r.total()
				}
				return s
			}
			eventually(10*time.Second, func() bool { return total() >= n })
			time.Sleep(500 * time.Millisecond) // duplicates, if any
			all := newRecorder()
			var per []string
			perEdge := map[string]int{}
			for i, r := range recs {
				for _, k := range r.snapshot() {
					all.add(k, 1, false)
				}
				per = append(per, fmt.Sprintf("member %d on %s: %d", i, es[tc.members[i]].ID, r.total()))
				perEdge[es[tc.members[i]].ID] += r.total()
			}
			tl := all.tally(want)
			t.Logf("%s, %d messages: %v; %s", tc.filter, n, tl, strings.Join(per, ", "))
			if tl.received != n || tl.lost != 0 || tl.dups != 0 {
				t.Errorf("want each of %d messages delivered exactly once in the group; got %v", n, tl)
			}
			for _, e := range tc.members {
				if perEdge[es[e].ID] == 0 {
					t.Errorf("edge %s got none of the messages", es[e].ID)
				}
			}
		})
	}
}

// TestLocalSubscription: $local/t gets only messages published on its own
// edge.
func TestLocalSubscription(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "local-a", "local-b", "local-c")
	a, b, c := es[0], es[1], es[2]
	const n = 100
	recA, recB, recAll := newRecorder(), newRecorder(), newRecorder()
	// Paho's router does not know "$local/": such messages reach the
	// default handler.
	subscribe(t, connect(t, clientOpts("local-sub-a", a.Addr).SetDefaultPublishHandler(recA.handler)), "$local/t", 1, nil)
	subscribe(t, connect(t, clientOpts("local-sub-b", b.Addr).SetDefaultPublishHandler(recB.handler)), "$local/t", 1, nil)
	subscribe(t, connect(t, clientOpts("plain-sub-c", c.Addr)), "t", 1, recAll.handler)
	fromA, fromB := keys("fromA", n), keys("fromB", n)
	publishAll(t, connect(t, clientOpts("local-pub-a", a.Addr)), "t", 1, fromA, 32)
	publishAll(t, connect(t, clientOpts("local-pub-b", b.Addr)), "t", 1, fromB, 32)
	eventually(10*time.Second, func() bool { return recAll.total() >= 2*n && recA.total() >= n && recB.total() >= n })
	time.Sleep(500 * time.Millisecond)
	ta, tb := recA.tally(fromA), recB.tally(fromB)
	t.Logf("$local/t on A: %v (from B: %d); $local/t on B: %v (from A: %d); plain t on C: %d",
		ta, ta.extra, tb, tb.extra, recAll.total())
	if ta.received != n || ta.lost != 0 || ta.extra != 0 {
		t.Errorf("$local/t on A: %v; want exactly the %d messages published on A", ta, n)
	}
	if tb.received != n || tb.lost != 0 || tb.extra != 0 {
		t.Errorf("$local/t on B: %v; want exactly the %d messages published on B", tb, n)
	}
	if got := recAll.total(); got != 2*n {
		t.Errorf("plain subscriber on C got %d, want %d", got, 2*n)
	}
}

// TestClientIDTakeoverAcrossEdges: a client ID connecting to edge B closes
// its connection on edge A; a persistent session follows it.
func TestClientIDTakeoverAcrossEdges(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "take-a", "take-b", "take-c")
	a, b, c := es[0], es[1], es[2]
	for _, persistent := range []bool{false, true} {
		name := map[bool]string{false: "clean_session", true: "persistent_session"}[persistent]
		t.Run(name, func(t *testing.T) {
			id := "x-" + name
			lost := make(chan time.Time, 1)
			recOld, recNew := newRecorder(), newRecorder()
			o1 := clientOpts(id, a.Addr).SetCleanSession(!persistent).
				SetConnectionLostHandler(func(mqtt.Client, error) { lost <- time.Now() })
			old := connect(t, o1)
			subscribe(t, old, "take/"+name, 1, recOld.handler)

			o2 := clientOpts(id, b.Addr).SetCleanSession(!persistent).SetDefaultPublishHandler(recNew.handler)
			start := time.Now()
			nc, present, err := tryConnect(o2)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Disconnect(100) })
			select {
			case at := <-lost:
				t.Logf("%s: connection on %s closed %v after the same ID connected to %s (session present: %v)",
					name, a.ID, at.Sub(start).Round(time.Millisecond), b.ID, present)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: connection on %s still open 5s after the same ID connected to %s", name, a.ID, b.ID)
			}
			if present != persistent {
				t.Errorf("session present = %v, want %v", present, persistent)
			}
			const n = 50
			want := keys("take", n)
			publishAll(t, connect(t, clientOpts("take-pub-"+name, c.Addr)), "take/"+name, 1, want, 16)
			if persistent {
				eventually(10*time.Second, func() bool { return recNew.total() >= n })
				time.Sleep(300 * time.Millisecond)
			} else {
				time.Sleep(time.Second)
			}
			tl := recNew.tally(want)
			t.Logf("%s: %d published to the old session's topic; new connection (no SUBSCRIBE of its own) received %d (want %d), %d duplicates; old connection received %d",
				name, n, tl.received, map[bool]int{false: 0, true: n}[persistent], tl.dups, recOld.total())
			if persistent && (tl.received != n || tl.lost != 0) {
				t.Errorf("subscription did not follow the session to %s: %v", b.ID, tl)
			}
			if !persistent && tl.received != 0 {
				t.Errorf("clean session on %s got %d messages of the old session's subscription", b.ID, tl.received)
			}
			if recOld.total() != 0 {
				t.Errorf("old connection got %d messages after takeover", recOld.total())
			}
			if !nc.IsConnectionOpen() {
				t.Errorf("new connection on %s was closed", b.ID)
			}
		})
	}
}

// TestServeAllInOne: `relay serve` prints its addresses, is healthy, lets
// an edge join through its NATS, and exits 0 on SIGTERM.
func TestServeAllInOne(t *testing.T) {
	p := startProc(t, "serve", "serve",
		"--data-dir", t.TempDir(),
		"--mqtt-addr", "127.0.0.1:0",
		"--mqtts-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0",
		"--nats-addr", "127.0.0.1:0",
		"--allow-anonymous")
	var mqttAddr, httpURL, natsURL string
	for _, l := range []struct {
		prefix string
		dst    *string
	}{{"  MQTT  mqtt://", &mqttAddr}, {"  HTTP  ", &httpURL}, {"  NATS  ", &natsURL}} {
		rest, err := p.waitLine(l.prefix, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		*l.dst = strings.Fields(rest)[0]
	}
	t.Logf("relay serve: MQTT %s, HTTP %s, NATS %s", mqttAddr, httpURL, natsURL)

	resp, err := http.Get(httpURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("GET /healthz: %d %q", resp.StatusCode, body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}

	e := startEdge(t, natsURL, "serve-edge")
	const n = 100
	t.Run("serve_to_edge_and_back", func(t *testing.T) {
		toEdge, toServe := newRecorder(), newRecorder()
		subscribe(t, connect(t, clientOpts("on-edge", e.Addr)), "mix/to-edge", 1, toEdge.handler)
		subscribe(t, connect(t, clientOpts("on-serve", mqttAddr)), "mix/to-serve", 1, toServe.handler)
		w1, w2 := keys("s2e", n), keys("e2s", n)
		publishAll(t, connect(t, clientOpts("pub-serve", mqttAddr)), "mix/to-edge", 1, w1, 16)
		publishAll(t, connect(t, clientOpts("pub-edge", e.Addr)), "mix/to-serve", 1, w2, 16)
		eventually(10*time.Second, func() bool { return toEdge.total() >= n && toServe.total() >= n })
		t1, t2 := toEdge.tally(w1), toServe.tally(w2)
		t.Logf("serve→edge: %v; edge→serve: %v", t1, t2)
		if t1.received != n || t1.lost != 0 || t2.received != n || t2.lost != 0 {
			t.Errorf("want %d each way exactly once", n)
		}
	})

	// `relay serve` runs with the default --node-ttl (15s) and the edge with
	// 2s: a live node must never be taken for dead, so the will of a client
	// connected to serve must not be published while it is connected.
	t.Run("live_client_will_not_published", func(t *testing.T) {
		wills := newRecorder()
		subscribe(t, connect(t, clientOpts("will-watch", e.Addr)), "serve-wills/#", 1, wills.handler)
		connect(t, clientOpts("will-client", mqttAddr).SetWill("serve-wills/will-client", "gone", 1, false))
		time.Sleep(3 * nodeTTL)
		reaped := e.logLines("dead node's wills published", "dead_node=")
		t.Logf("wills received for a client still connected: %d; edge log lines declaring a node dead: %d", wills.total(), len(reaped))
		for _, l := range reaped {
			t.Logf("  %s", l)
		}
		if wills.total() != 0 {
			t.Errorf("the will of a client still connected to relay serve was published %d times", wills.total())
		}
	})

	code, took, exited := p.Term(15 * time.Second)
	t.Logf("relay serve: SIGTERM → exit code %d after %v", code, took.Round(time.Millisecond))
	if !exited || code != 0 {
		t.Errorf("relay serve after SIGTERM: exited=%v code=%d, want exit code 0 within 15s", exited, code)
	}
}
