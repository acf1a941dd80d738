package natsbus

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// The backbone's share of the per-message hot path: run with
//
//	go test -run '^$' -bench . -benchmem ./natsbus/

func benchMessage() *broker.Message {
	return &broker.Message{
		Tenant: "acme", Topic: []byte("sensors/building-7/floor-3/temp"),
		Payload: make([]byte, 64), Origin: "edge-1", ClientID: "device-0042",
	}
}

// BenchmarkAppendEnvelope: the live envelope of a QoS 0 message, into a
// reused buffer.
func BenchmarkAppendEnvelope(b *testing.B) {
	m := benchMessage()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEnvelope(buf[:0], m, false)
	}
}

// BenchmarkMsgSubject: MQTT topic → live NATS subject.
func BenchmarkMsgSubject(b *testing.B) {
	t := []byte("sensors/building-7/floor-3/temp")
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = msgSubject(buf[:0], "acme", false, t)
	}
}

// BenchmarkDecodeMessage: what a route does once per message it receives
// (shared by every local subscriber).
func BenchmarkDecodeMessage(b *testing.B) {
	m := benchMessage()
	subj := string(msgSubject(nil, m.Tenant, false, m.Topic))
	env := appendEnvelope(nil, m, false)
	var origins originTable
	b.ReportAllocs()
	for b.Loop() {
		tn, tail, ok := splitMsgSubject(subj)
		if !ok {
			b.Fatal("bad subject")
		}
		if _, err := decodeMessage(tn, tail, env, &origins); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishQoS0: Bus.Publish of a QoS 0 message to a real NATS
// server with nobody subscribed (the publishing edge's cost).
func BenchmarkPublishQoS0(b *testing.B) {
	bus, _ := startBus(b, "bench")
	m := benchMessage()
	b.ReportAllocs()
	for b.Loop() {
		if err := bus.Publish(m, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishDeliverQoS0: publish on one Bus and receive through a
// route on another, over a real NATS server: the backbone round trip per
// message, including the receiving edge's decode.
func BenchmarkPublishDeliverQoS0(b *testing.B) {
	pub, ns := startBus(b, "pub")
	sub := newBus(b, ns, "sub")
	var got atomic.Int64
	f, err := topic.ParseFilter("sensors/+/+/temp")
	if err != nil {
		b.Fatal(err)
	}
	rt, err := sub.Subscribe("acme", f, broker.ClassAll, func(*broker.Message) { got.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	if err := sub.nc.Flush(); err != nil {
		b.Fatal(err)
	}
	m := benchMessage()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := pub.Publish(m, nil); err != nil {
			b.Fatal(err)
		}
		n++
	}
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if lost := int64(n) - got.Load(); lost > 0 {
		b.ReportMetric(float64(lost)/float64(n), "lost/op")
	}
}
