package services_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/services"
)

// An edge hands its own publishes to its own subscribers directly and NATS
// carries them only to other edges (Router.LocalDelivery): every
// subscriber, on either edge, must get every message exactly once and in
// each publisher's order; $local subscribers only their edge's messages;
// a shared group each message once in all; messages from elsewhere (the
// HTTP API, other nodes) still reach the edge's subscribers; and no other
// tenant sees any of it.
func TestLocalAndRemoteDelivery(t *testing.T) {
	t.Parallel()
	srv, addr1 := startServer(t, withNATSListener())
	edge2, err := services.NewEdge(services.EdgeConfig{
		NodeID: "edge-2", NATSURLs: []string{srv.NATSURL()}, AllowAnonymous: true,
		MQTTAddr: "127.0.0.1:0", Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := edge2.Start(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { edge2.Close() })
	addr2 := edge2.MQTTAddr().String()

	all1, all2, local1, local2, shared := newInbox(), newInbox(), newInbox(), newInbox(), newInbox()
	subscribe(t, connect(t, addr1, "all-1"), "d/#", 1, all1)
	subscribe(t, connect(t, addr2, "all-2"), "d/+/n", 1, all2)
	// paho cannot match "$local/…" or "$share/…" filters: their messages
	// go to the default handler.
	subscribe(t, connect(t, addr1, "local-1", onMessage(local1)), "$local/d/#", 1, nil)
	subscribe(t, connect(t, addr2, "local-2", onMessage(local2)), "$local/d/#", 1, nil)
	subscribe(t, connect(t, addr1, "share-1", onMessage(shared)), "$share/g/d/#", 1, nil)
	subscribe(t, connect(t, addr2, "share-2", onMessage(shared)), "$share/g/d/#", 1, nil)
	unrelated := newInbox()
	subscribe(t, connect(t, addr1, "unrelated"), "e/#", 1, unrelated)

	const n = 40
	pub1, pub2 := connect(t, addr1, "pub-1"), connect(t, addr2, "pub-2")
	for i := range n {
		publish(t, pub1, "d/1/n", byte(i%2), false, fmt.Sprintf("p1-%03d", i))
		publish(t, pub2, "d/2/n", byte(i%2), false, fmt.Sprintf("p2-%03d", i))
	}
	// From a node without a broker (like the HTTP API of relay control),
	// and another tenant's message on the same topic.
	injectMessage(t, srv, &broker.Message{Topic: []byte("d/3/n"), Payload: []byte("inj"), Origin: "injector"})
	injectMessage(t, srv, &broker.Message{Tenant: "other", Topic: []byte("d/1/n"), Payload: []byte("other-tenant"), Origin: "injector"})

	inOrder := func(name string, got []received) {
		t.Helper()
		var seen = map[string][]string{}
		for _, m := range got {
			if m.Payload == "other-tenant" {
				t.Fatalf("%s got another tenant's message", name)
			}
			p, _, _ := strings.Cut(m.Payload, "-")
			seen[p] = append(seen[p], m.Payload)
		}
		for p, msgs := range seen {
			if !slices.IsSorted(msgs) {
				t.Errorf("%s: %s's messages out of order: %v", name, p, msgs)
			}
		}
	}
	inOrder("all-1", all1.exactly(t, 2*n+1))
	inOrder("all-2", all2.exactly(t, 2*n+1))
	for _, m := range local1.exactly(t, n) {
		if !strings.HasPrefix(m.Payload, "p1-") {
			t.Errorf("$local subscriber on edge 1 got %v", m)
		}
	}
	for _, m := range local2.exactly(t, n) {
		if !strings.HasPrefix(m.Payload, "p2-") {
			t.Errorf("$local subscriber on edge 2 got %v", m)
		}
	}
	got := shared.exactly(t, 2*n+1)
	payloads := make([]string, len(got))
	for i, m := range got {
		payloads[i] = m.Payload
	}
	slices.Sort(payloads)
	if len(slices.Compact(payloads)) != 2*n+1 {
		t.Errorf("shared group got duplicates: %v", payloads)
	}
	unrelated.none(t)
}
