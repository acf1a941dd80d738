package natsbus

import (
	"strings"
	"testing"

	"github.com/relaymq/relay/broker"
)

// TestDecodeMessageRoom: topics and client IDs of every length around the
// message's inline room decode intact; while both fit, a route's decode
// of a message costs one allocation.
func TestDecodeMessageRoom(t *testing.T) {
	var origins originTable
	room := len(decodedMessage{}.room)
	for _, tl := range []int{1, 40, room - 10, room - 1, room, room + 1, 300} {
		for _, cl := range []int{0, 1, 9, 10, 11, 60, 200} {
			tp := strings.Repeat("t", tl)
			m := &broker.Message{Tenant: "acme", Topic: []byte(tp), Payload: []byte("p"), Origin: "edge-1", ClientID: strings.Repeat("c", cl)}
			subj := string(msgSubject(nil, m.Tenant, false, m.Topic))
			env := appendEnvelope(nil, m, false)
			tn, tail, ok := splitMsgSubject(subj)
			if !ok {
				t.Fatal("bad subject")
			}
			got, err := decodeMessage(tn, tail, env, &origins)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Topic) != tp || got.ClientID != m.ClientID || string(got.Payload) != "p" || got.Origin != "edge-1" {
				t.Fatalf("topic %d, client ID %d: decoded %q / %q", tl, cl, got.Topic, got.ClientID)
			}
			if cap(got.Topic) != len(got.Topic) {
				t.Fatalf("topic %d: capacity %d lets an append overwrite the client ID", tl, cap(got.Topic))
			}
			if tl+cl <= room {
				allocs := testing.AllocsPerRun(100, func() {
					if _, err := decodeMessage(tn, tail, env, &origins); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 1 {
					t.Fatalf("topic %d, client ID %d: %v allocations, want 1", tl, cl, allocs)
				}
			}
		}
	}
}
