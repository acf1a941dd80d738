package natsbus

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
)

// Retained implements broker.RetainStore. A filter without wildcards is one
// direct get; a wildcard filter reads the last message of every matching
// subject with an ordered consumer.
func (b *Bus) Retained(ctx context.Context, tenant, filter string, fn func(*broker.Message) error) error {
	var subjects []string
	for _, s := range topic.FilterSubjects(filter) {
		subjects = append(subjects, prefixRet+tenant+"."+s)
	}
	if len(subjects) == 1 && !strings.ContainsAny(subjects[0], "*>") {
		raw, err := b.retained.GetLastMsgForSubject(ctx, subjects[0])
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return unavailable(err)
		}
		return b.emitRetained(tenant, raw.Subject, raw.Data, fn)
	}
	cons, err := b.retained.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return unavailable(err)
	}
	info := cons.CachedInfo()
	if info == nil {
		return nil
	}
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return unavailable(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			if meta, err := msg.Metadata(); err == nil {
				left = meta.NumPending
			}
			if err := b.emitRetained(tenant, msg.Subject(), msg.Data(), fn); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return unavailable(err)
		}
		if n == 0 {
			return unavailable(errors.New("retained messages not delivered in time"))
		}
	}
	return nil
}

// emitRetained decodes a stored retained message and hands it to fn,
// skipping tombstones (empty payload).
func (b *Bus) emitRetained(tenant, subject string, data []byte, fn func(*broker.Message) error) error {
	tn, tail, ok := splitRetSubject(subject)
	if !ok || tn != tenant {
		return nil
	}
	m, err := decodeMessage(tn, tail, data)
	if err != nil {
		b.log.Warn("skipping malformed retained message", "subject", subject, "err", err)
		return nil
	}
	if len(m.Payload) == 0 {
		return nil
	}
	m.Retain = true
	return fn(m)
}
