package services_test

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestMQTT5PersistentSubscriptionOptions: a persistent session's QoS ≥ 1
// messages come from its durable queue, not a live route; the subscription
// options apply there too. No Local: the session's own publish is not sent
// back [MQTT-3.8.3-3], while another client's is. Retain As Published:
// RETAIN as published [MQTT-3.3.1-12], and 0 without the option.
func TestMQTT5PersistentSubscriptionOptions(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t)
	other := connectV5(t, addr, "pso-other")

	self := connectV5(t, addr, "pso-nolocal", sessionExpiry(300))
	self.subscribe(0, paho.SubscribeOptions{Topic: "pso/nl", QoS: 1, NoLocal: true})
	self.pub("pso/nl", 1, false, "mine")
	other.pub("pso/nl", 1, false, "theirs")
	got := self.in.wait(t, 1)
	self.in.exactly(t, 1)
	if string(got[0].Payload) != "theirs" {
		t.Errorf("No Local on a persistent session: got %q, want only %q", got[0].Payload, "theirs")
	}

	rap := connectV5(t, addr, "pso-rap", sessionExpiry(300))
	rap.subscribe(0, paho.SubscribeOptions{Topic: "pso/rap", QoS: 1, RetainAsPublished: true})
	plain := connectV5(t, addr, "pso-plain", sessionExpiry(300))
	plain.subscribe(0, paho.SubscribeOptions{Topic: "pso/rap", QoS: 1})
	other.pub("pso/rap", 1, true, "kept")
	if m := rap.in.wait(t, 1)[0]; !m.Retain {
		t.Error("Retain As Published on a persistent session: RETAIN cleared [MQTT-3.3.1-12]")
	}
	if m := plain.in.wait(t, 1)[0]; m.Retain {
		t.Error("persistent session without Retain As Published: RETAIN set on a forwarded message [MQTT-3.3.1-12]")
	}
}
