package e2e

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkSubs waits until every subscriber has every promised message of its
// QoS, then reports and checks what each got: every promised message at
// least once (QoS 1), exactly once as a QoS 2 receiver delivers it (QoS 2),
// re-deliveries flagged DUP, and every reconnect finding its session.
func checkSubs(t *testing.T, subs []*durableSub, promised map[byte][]string, wait time.Duration) {
	t.Helper()
	eventually(wait, func() bool {
		for _, d := range subs {
			if !d.app.has(promised[d.qos]) {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // late duplicates
	var sum [3]tally
	var specDups, appDupsQoS2, suppressed, withDup, noDup int
	var notPresent []string
	for _, d := range subs {
		app := d.app.tally(promised[d.qos])
		present, back, supp, rerr := d.status()
		suppressed += supp
		wd, nd := d.app.repeats()
		withDup += wd
		noDup += nd
		s := &sum[d.qos]
		s.received += app.received
		s.distinct += app.distinct
		s.dups += app.dups
		s.lost += app.lost
		s.extra += app.extra
		if app.lost > 0 {
			t.Errorf("%s (QoS %d): lost %d of %d promised messages: %v", d.id, d.qos, app.lost, len(promised[d.qos]), app)
		}
		if rerr != nil {
			t.Errorf("%s: could not reconnect: %v", d.id, rerr)
		}
		for i, p := range present {
			if !p {
				notPresent = append(notPresent, fmt.Sprintf("%s#%d", d.id, i+1))
			}
		}
		if d.qos == 2 {
			spec := d.spec.tally(promised[2])
			specDups += spec.dups
			appDupsQoS2 += app.dups
			if spec.dups > 0 || spec.lost > 0 {
				t.Errorf("%s (QoS 2): as a QoS 2 receiver delivers it (dedupe by packet ID until PUBREL): %v; want every message exactly once", d.id, spec)
				shown := 0
				for _, k := range promised[2] {
					if d.spec.count(k) > 1 && shown < 3 {
						shown++
						t.Logf("    %s delivered twice; on the wire: %s", k, d.wireTrace(k))
					}
				}
			}
		}
		t.Logf("  %-12s QoS %d: %v; reconnects %d (session present %v, back after %v)", d.id, d.qos, app, len(present), present, roundAll(back))
	}
	for q := byte(1); q <= 2; q++ {
		if len(promised[q]) > 0 {
			t.Logf("QoS %d subscribers, summed: %v (promised %d each)", q, sum[q], len(promised[q]))
		}
	}
	t.Logf("QoS 2: Paho handed %d duplicates to the application; a receiver that deduplicates by packet ID until PUBREL (MQTT-4.3.3-2) sees %d; PUBLISHes resent for IDs still awaiting PUBREL: %d",
		appDupsQoS2, specDups, suppressed)
	t.Logf("PUBLISHes with DUP=1: %d; repeated deliveries with DUP=0: %d", withDup, noDup)
	if noDup > 0 {
		t.Errorf("%d re-deliveries of a message already delivered to the session came with DUP=0 [MQTT-3.3.1-1]", noDup)
	}
	if len(notPresent) > 0 {
		t.Errorf("reconnects without a session (CONNACK session present = 0): %v", notPresent)
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestKill9PersistentSessions: edges die by SIGKILL in the middle of a
// stream of QoS 1 and QoS 2 messages; nothing a publisher was promised is
// lost.
func TestKill9PersistentSessions(t *testing.T) {
	t.Run("subscriber_edge_killed", func(t *testing.T) {
		ns := startNATS(t)
		es := startEdges(t, ns.URL(), "k9-a", "k9-b", "k9-c")
		a, b, c := es[0], es[1], es[2]
		const (
			nSubs = 20
			nQoS2 = 6
			m     = 600
		)
		var subs []*durableSub
		for i := range nSubs {
			qos := byte(1)
			if i < nQoS2 {
				qos = 2
			}
			// Half of them are slow: the publishers outpace them, so at the
			// kill they have a backlog and a full in-flight window.
			var o subOpts
			if i%2 == 0 {
				o.slow = 5 * time.Millisecond
			}
			subs = append(subs, newDurableSub(t, fmt.Sprintf("k9-sub-%02d", i), fmt.Sprintf("k9/q%d", qos), qos,
				[]string{a.Addr, c.Addr}, o))
		}
		var killedAt time.Time
		var once sync.Once
		kill := func(i int) {
			if i == m/3 {
				once.Do(func() {
					killedAt = time.Now()
					a.Kill()
				})
			}
		}
		p1 := (&pubRun{id: "k9-pub-1", addrs: []string{b.Addr}, topic: "k9/q1", qos: 1, tag: "k9q1", n: m,
			interval: 3 * time.Millisecond, window: 16, hook: kill}).start()
		p2 := (&pubRun{id: "k9-pub-2", addrs: []string{b.Addr}, topic: "k9/q2", qos: 2, tag: "k9q2", n: m,
			interval: 3 * time.Millisecond, window: 16}).start()
		prom1, fail1 := p1.wait(t, 60*time.Second)
		prom2, fail2 := p2.wait(t, 60*time.Second)
		t.Logf("%s SIGKILLed after message %d; publishers on %s: QoS 1 %d promised / %d failed, QoS 2 %d promised / %d failed",
			a.ID, m/3, b.ID, len(prom1), len(fail1), len(prom2), len(fail2))
		if len(prom1) != m || len(prom2) != m {
			t.Errorf("publishers on the surviving edge %s: want all %d promised, got QoS 1 %d, QoS 2 %d", b.ID, m, len(prom1), len(prom2))
		}
		start := time.Now()
		checkSubs(t, subs, map[byte][]string{1: prom1, 2: prom2}, 2*ackWait+10*time.Second)
		t.Logf("all subscribers complete %v after the publishers finished, %v after the kill",
			time.Since(start).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
	})

	t.Run("publisher_edge_killed", func(t *testing.T) {
		ns := startNATS(t)
		es := startEdges(t, ns.URL(), "k9p-b", "k9p-c")
		b, c := es[0], es[1]
		const m = 1000
		var subs []*durableSub
		for i := range 5 {
			subs = append(subs, newDurableSub(t, fmt.Sprintf("k9p-sub-%d", i), "k9p/t", 1, []string{c.Addr}, subOpts{}))
		}
		live := newRecorder()
		subscribe(t, connect(t, clientOpts("k9p-live", c.Addr)), "k9p/t", 1, live.handler)
		var once sync.Once
		p := (&pubRun{id: "k9p-pub", addrs: []string{b.Addr, c.Addr}, topic: "k9p/t", qos: 1, tag: "k9p", n: m,
			interval: 2 * time.Millisecond, window: 32, hook: func(i int) {
				if i == m/3 {
					once.Do(b.Kill)
				}
			}}).start()
		promised, failed := p.wait(t, 60*time.Second)
		p.mu.Lock()
		reconnects := p.reconnects
		p.mu.Unlock()
		t.Logf("publisher: %d sent, %d PUBACKed (promised), %d without PUBACK; reconnected %d time(s) (to %s)",
			m, len(promised), len(failed), reconnects, c.ID)
		if reconnects != 1 || len(promised) < m/2 {
			t.Errorf("publisher did not carry on after the kill: reconnects=%d promised=%d", reconnects, len(promised))
		}
		checkSubs(t, subs, map[byte][]string{1: promised}, 10*time.Second)
		eventually(5*time.Second, func() bool { return live.has(promised) })
		tl := live.tally(promised)
		t.Logf("  clean-session live subscriber: %v (of which unpromised: %d)", tl, tl.extra)
		if tl.lost != 0 {
			t.Errorf("clean-session subscriber lost %d promised messages: %v", tl.lost, tl)
		}
	})
}

// TestDeadEdgeWills: when an edge dies, the survivors publish its clients'
// wills once each, within about the node TTL.
func TestDeadEdgeWills(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "will-a", "will-b", "will-c")
	a, b, c := es[0], es[1], es[2]
	watchB, watchC := newRecorder(), newRecorder()
	subscribe(t, connect(t, clientOpts("will-watch-b", b.Addr)), "wills/#", 1, watchB.handler)
	subscribe(t, connect(t, clientOpts("will-watch-c", c.Addr)), "wills/#", 1, watchC.handler)

	const n = 10
	var want []string
	for i := range n {
		id := fmt.Sprintf("doomed-%d", i)
		qos := byte(i % 2)
		connect(t, clientOpts(id, a.Addr).SetWill("wills/"+id, "will-of-"+id, qos, false))
		want = append(want, "will-of-"+id)
	}
	// Wills that must not be published: clients that left with DISCONNECT
	// before the crash, and a client on a surviving edge.
	for i := range 2 {
		id := fmt.Sprintf("polite-%d", i)
		cl := connect(t, clientOpts(id, a.Addr).SetWill("wills/"+id, "will-of-"+id, 1, false))
		cl.Disconnect(250)
	}
	connect(t, clientOpts("survivor", b.Addr).SetWill("wills/survivor", "will-of-survivor", 1, false))
	time.Sleep(200 * time.Millisecond)

	killed := time.Now()
	a.Kill()
	limit := nodeTTL + 5*time.Second
	eventually(limit, func() bool { return watchB.has(want) && watchC.has(want) })
	var latest time.Duration
	for _, k := range want {
		if at, ok := watchB.arrival(k); ok && at.Sub(killed) > latest {
			latest = at.Sub(killed)
		}
	}
	time.Sleep(2 * nodeTTL) // a second publication, if any, comes now
	for _, w := range []struct {
		name string
		r    *recorder
	}{{"watcher on " + b.ID, watchB}, {"watcher on " + c.ID, watchC}} {
		tl := w.r.tally(want)
		t.Logf("%s: %d wills of clients on SIGKILLed %s: %v", w.name, n, a.ID, tl)
		if tl.lost != 0 || tl.dups != 0 || tl.extra != 0 {
			t.Errorf("%s: want each of the %d wills exactly once and no other; got %v (unexpected: %v)", w.name, n, tl, unexpected(w.r, want))
		}
	}
	t.Logf("last will arrived %v after the kill (node TTL %v, limit %v)", latest.Round(time.Millisecond), nodeTTL, limit)
	if latest > limit {
		t.Errorf("wills took %v, want ≤ %v", latest, limit)
	}
	var reapers []string
	for _, e := range []*edge{b, c} {
		if n := len(e.logLines("published will of client on dead node")); n > 0 {
			reapers = append(reapers, fmt.Sprintf("%s published %d", e.ID, n))
		}
	}
	t.Logf("reapers: %s", strings.Join(reapers, ", "))
}

// unexpected lists deliveries that are not in want or came more than once.
func unexpected(r *recorder, want []string) []string {
	ok := map[string]bool{}
	for _, k := range want {
		ok[k] = true
	}
	seen := map[string]int{}
	var out []string
	for _, k := range r.snapshot() {
		seen[k]++
		if !ok[k] || seen[k] > 1 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// TestJetStreamRestart: the NATS server stops and starts again (same port,
// same store); edges reconnect, and queued messages of persistent sessions
// from before and after the restart all arrive.
func TestJetStreamRestart(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "jsr-a", "jsr-b")
	a, b := es[0], es[1]

	// Live clients with wills on both edges: they stay connected through
	// the restart, so their wills must never be published. The watcher
	// has a persistent session, so that it also sees a will published
	// while its own edge is still reconnecting to NATS.
	willWatch := newDurableSub(t, "jsr-will-watch", "jsr-wills/#", 1, []string{b.Addr}, subOpts{})
	wills := willWatch.app
	for _, e := range es {
		id := "jsr-alive-on-" + e.ID
		connect(t, clientOpts(id, e.Addr).SetWill("jsr-wills/"+id, id, 1, false))
	}

	var offline []*durableSub
	for i := range 4 {
		d := newDurableSub(t, fmt.Sprintf("jsr-off-%d", i), "jsr/t", 1, []string{a.Addr}, subOpts{})
		d.disconnect()
		offline = append(offline, d)
	}
	online := newDurableSub(t, "jsr-online", "jsr/t", 1, []string{a.Addr}, subOpts{})

	const n1, n2 = 200, 200
	before := keys("before", n1)
	if got := publishAll(t, connect(t, clientOpts("jsr-pub-1", b.Addr)), "jsr/t", 1, before, 32); got != n1 {
		t.Fatalf("before the stop: %d of %d PUBACKed", got, n1)
	}

	// An edge cannot accept a CONNECT while NATS is down (it loads the
	// session first), so this publisher connects before.
	outage := connect(t, clientOpts("jsr-pub-outage", b.Addr))
	stopped := time.Now()
	ns.Stop()
	// A publish while NATS is down must not be acknowledged.
	tok := outage.Publish("jsr/t", 1, false, "outage-00000")
	acked := tok.WaitTimeout(2*time.Second) && tok.Error() == nil
	t.Logf("QoS 1 publish while NATS is down: acknowledged within 2s = %v (token error: %v)", acked, tok.Error())
	if acked {
		t.Errorf("a QoS 1 publish was PUBACKed while NATS was down")
	}
	time.Sleep(max(0, 3*time.Second-time.Since(stopped))) // longer than the node TTL
	ns.Start()
	t.Logf("NATS down for %v, restarted on the same port", time.Since(stopped).Round(time.Millisecond))
	for _, e := range es {
		if !e.waitLog("backbone reconnected", 0, 15*time.Second) {
			t.Fatalf("%s did not reconnect to NATS within 15s", e.ID)
		}
	}
	t.Logf("edges reconnected %v after the restart began", time.Since(stopped).Round(time.Millisecond))

	// After the restart: every message must be PUBACKed eventually; the
	// first ones may be refused while JetStream recovers (the publisher
	// then reconnects and sends them again).
	after := keys("after", n2)
	pubStart := time.Now()
	var retried int
	pc := connect(t, clientOpts("jsr-pub-2", b.Addr))
	for _, k := range after {
		for attempt := 0; ; attempt++ {
			if !pc.IsConnectionOpen() {
				pc.Disconnect(0)
				var err error
				if pc, _, err = tryConnect(clientOpts("jsr-pub-2", b.Addr)); err != nil {
					t.Fatalf("publisher reconnect: %v", err)
				}
			}
			tok := pc.Publish("jsr/t", 1, false, k)
			if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				break
			}
			retried++
			if attempt == 20 {
				t.Fatalf("message %s not PUBACKed after 20 attempts: %v", k, tok.Error())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	pc.Disconnect(100)
	t.Logf("after the restart: %d messages PUBACKed in %v (%d attempts refused)", n2, time.Since(pubStart).Round(time.Millisecond), retried)

	// The online session was connected through the restart: its delivery
	// must resume by itself, promptly.
	resumed := eventually(45*time.Second, func() bool { return online.app.has(after) })
	onlineTook := time.Since(pubStart)
	t.Logf("online persistent session (connected through the restart): all %d new messages delivered = %v, %v after publishing began",
		n2, resumed, onlineTook.Round(time.Millisecond))
	if !resumed || onlineTook > 10*time.Second {
		t.Errorf("online persistent session: delivery of messages published after the restart stalled for %v (resumed=%v); want ≤ 10s",
			onlineTook.Round(time.Millisecond), resumed)
	}

	for _, d := range offline {
		present, err := d.reconnect(a.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if !present {
			t.Errorf("%s: session not present after the NATS restart", d.id)
		}
	}
	promised := append(append([]string(nil), before...), after...)
	checkSubs(t, append(offline, online), map[byte][]string{1: promised}, 2*ackWait+10*time.Second)
	for _, d := range append(offline, online) {
		if k := "outage-00000"; d.app.count(k) > 0 {
			t.Logf("  %s also got the unacknowledged outage message", d.id)
		}
	}

	time.Sleep(nodeTTL)
	var reaped []string
	for _, e := range es {
		for _, l := range e.logLines("dead node's wills published") {
			reaped = append(reaped, e.ID+": "+l)
		}
	}
	t.Logf("after the restart: live edges declared dead: %d; wills of clients still connected published: %d %v",
		len(reaped), wills.total(), wills.snapshot())
	for _, l := range reaped {
		t.Logf("  %s", l)
	}
	if len(reaped) > 0 {
		t.Errorf("a live edge was declared dead after the NATS restart (%d times)", len(reaped))
	}
	if wills.total() != 0 {
		t.Errorf("the wills of %d live clients were published after the NATS restart", wills.total())
	}

	// A real death after the restart still gets its wills published. If
	// one edge was (wrongly) declared dead above, that one dies now.
	victim, survivor := a, b
	if len(a.logLines("dead node's wills published", "dead_node="+b.ID)) > 0 {
		victim, survivor = b, a
	}
	late := newRecorder()
	subscribe(t, connect(t, clientOpts("jsr-late-watch", survivor.Addr)), "jsr-wills/#", 1, late.handler)
	lateID := "jsr-late-on-" + victim.ID
	connect(t, clientOpts(lateID, victim.Addr).SetWill("jsr-wills/"+lateID, lateID, 1, false))
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	victim.Kill()
	got := eventually(nodeTTL+5*time.Second, func() bool { return late.count(lateID) > 0 })
	t.Logf("%s SIGKILLed after the restart: will of its client %s published = %v (after %v; wills seen: %v)",
		victim.ID, lateID, got, time.Since(killed).Round(time.Millisecond), late.snapshot())
	if !got {
		t.Errorf("the will of %s was not published within %v of %s's death", lateID, nodeTTL+5*time.Second, victim.ID)
	}
}

// TestGracefulShutdown: SIGTERM makes an edge exit 0 promptly; its
// persistent sessions resume on another edge with their queued messages.
func TestGracefulShutdown(t *testing.T) {
	ns := startNATS(t)
	es := startEdges(t, ns.URL(), "term-a", "term-b", "term-c")
	a, b, c := es[0], es[1], es[2]
	const m = 500
	var subs []*durableSub
	for i := range 10 {
		qos := byte(1)
		if i < 3 {
			qos = 2
		}
		// Stay away for a moment, so that messages queue meanwhile.
		subs = append(subs, newDurableSub(t, fmt.Sprintf("term-sub-%d", i), "term/t", qos, []string{a.Addr, c.Addr},
			subOpts{delay: 300 * time.Millisecond, slow: time.Duration(i%2) * 5 * time.Millisecond}))
	}
	var (
		once   sync.Once
		code   int
		took   time.Duration
		exited bool
		termed = make(chan struct{})
	)
	p := (&pubRun{id: "term-pub", addrs: []string{b.Addr}, topic: "term/t", qos: 2, tag: "term", n: m,
		interval: 3 * time.Millisecond, window: 16, hook: func(i int) {
			if i == m/3 {
				once.Do(func() {
					go func() {
						defer close(termed)
						code, took, exited = a.Term(10 * time.Second)
					}()
				})
			}
		}}).start()
	promised, failed := p.wait(t, 60*time.Second)
	<-termed
	t.Logf("%s: SIGTERM → exited=%v code %d after %v", a.ID, exited, code, took.Round(time.Millisecond))
	if !exited || code != 0 || took > 5*time.Second {
		t.Errorf("%s after SIGTERM: exited=%v code=%d after %v; want exit code 0 within 5s", a.ID, exited, code, took)
	}
	t.Logf("publisher (QoS 2) on %s: %d promised, %d failed", b.ID, len(promised), len(failed))
	if len(promised) != m {
		t.Errorf("publisher on the surviving edge: %d of %d promised", len(promised), m)
	}
	promised1 := promised // QoS 1 subscribers get the QoS 2 messages at QoS 1
	checkSubs(t, subs, map[byte][]string{1: promised1, 2: promised}, 2*ackWait+10*time.Second)
}
