package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	done, err := b.retainedBatch(ctx, tenant, subjects, fn)
	if done || err != nil {
		return err
	}
	return b.retainedConsumer(ctx, tenant, subjects, fn)
}

// retainedBatch reads the last message of every subject matching subjects
// with one batched direct get ("multi_last"), which needs no consumer. It
// reports false if the server refused because too many subjects match
// (more than 1,024), so that the caller falls back to a consumer.
func (b *Bus) retainedBatch(ctx context.Context, tenant string, subjects []string, fn func(*broker.Message) error) (bool, error) {
	req, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, maxDirectBatch})
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return false, unavailable(err)
	}
	defer sub.Unsubscribe()
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+StreamRetained, inbox, req); err != nil {
		return false, unavailable(err)
	}
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return false, unavailable(err)
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
			if err := b.emitRetained(tenant, msg.Header.Get(jetstream.SubjectHeader), msg.Data, fn); err != nil {
				return true, err
			}
		case "204", "404": // end of batch; nothing (more) stored
			return true, nil
		case "413": // too many subjects match
			return false, nil
		default:
			if len(msg.Data) == 0 && status == "503" {
				return false, unavailable(errors.New("no responders for retained messages"))
			}
			return false, unavailable(fmt.Errorf("retained batch get: %s %s", status, msg.Header.Get("Description")))
		}
	}
}

// maxDirectBatch is the most messages one batched direct get returns
// (nats-server's limit on multi_last results).
const maxDirectBatch = 1024

// retainedConsumer reads the last message of every matching subject with a
// short-lived consumer, deleted after use.
func (b *Bus) retainedConsumer(ctx context.Context, tenant string, subjects []string, fn func(*broker.Message) error) error {
	cons, err := b.retained.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return unavailable(err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.retained.DeleteConsumer(dctx, cons.CachedInfo().Name)
		cancel()
	}()
	info := cons.CachedInfo()
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
	m, err := decodeMessage(tn, tail, data, &b.origins)
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
