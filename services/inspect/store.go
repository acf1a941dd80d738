package inspect

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/natsbus"
)

// Read-only views of what natsbus keeps in JetStream. The key and subject
// layouts are natsbus's (ARCHITECTURE.md, "State in JetStream").

const (
	prefixQueue = "rly.q."   // + tenant + "." + session id
	prefixRet   = "rly.ret." // + tenant + "." + topic subject
)

// sessionID is natsbus's name of a session's queue subject: the first 128
// bits of SHA-256(tenant, 0, client ID), hex.
func sessionID(tenant, clientID string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + clientID))
	return hex.EncodeToString(sum[:16])
}

// jsTimeout bounds one JetStream API request (JetStream that does not
// answer makes the API answer 503 after it).
const jsTimeout = 2 * time.Second

// MaxSessions bounds the sessions one Sessions call reads.
const MaxSessions = 10000

// Sessions returns the tenant's stored persistent sessions (offline ones
// only if offline), by client ID, at most limit (MaxSessions if ≤ 0 or
// more), with their queue depth; truncated says there were more.
// Sessions whose expiry has passed while offline are left out (the
// janitor deletes them).
func (in *Inspector) Sessions(ctx context.Context, tenant string, offline bool, limit int) (sessions []Session, truncated bool, err error) {
	if limit <= 0 || limit > MaxSessions {
		limit = MaxSessions
	}
	// The queue depths first: a stream info request fails at once when
	// JetStream is down, where a watch would wait for its timeout.
	depth, err := in.queueDepths(ctx, tenant)
	if err != nil {
		return nil, false, err
	}
	states, truncated, err := in.sessionStates(ctx, tenant, limit, offline)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	for _, s := range states {
		ses := Session{
			ClientID: s.ClientID, Connected: s.Connected, Node: s.Node, LastSeen: s.LastSeen, Created: s.Created,
			Queued: depth[sessionID(tenant, s.ClientID)],
		}
		if !s.Connected && s.Expiry > 0 {
			ses.ExpiresAt = s.LastSeen.Add(s.Expiry)
			if ses.ExpiresAt.Before(now) {
				continue
			}
		}
		ses.Subscriptions = make([]Subscription, len(s.Subscriptions))
		for i, sub := range s.Subscriptions {
			ses.Subscriptions[i] = Subscription{Filter: sub.Filter, QoS: sub.QoS}
		}
		sessions = append(sessions, ses)
	}
	slices.SortFunc(sessions, func(a, b Session) int { return strings.Compare(a.ClientID, b.ClientID) })
	return sessions, truncated, nil
}

// sessionStates reads the tenant's session records with one watch of
// "<tenant>.*" (keys are "<tenant>.<base64url(client ID)>"), stopping after
// limit.
func (in *Inspector) sessionStates(ctx context.Context, tenant string, limit int, offline bool) ([]broker.SessionState, bool, error) {
	kv, err := in.kv(ctx, &in.sessKV, natsbus.BucketSessions)
	if err != nil {
		return nil, false, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := kv.Watch(wctx, tenant+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, false, unavailable(err)
	}
	defer w.Stop()
	var out []broker.SessionState
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, false, unavailable(errors.New("session watch closed"))
			}
			if e == nil {
				return out, false, nil
			}
			var s broker.SessionState
			if err := json.Unmarshal(e.Value(), &s); err != nil || s.Tenant != tenant {
				continue
			}
			if offline && s.Connected {
				continue
			}
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, s)
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			return nil, false, unavailable(errors.New("reading sessions timed out"))
		}
	}
}

// queueDepths returns the number of messages in each of the tenant's
// session queue subjects, by session ID.
func (in *Inspector) queueDepths(ctx context.Context, tenant string) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, jsTimeout)
	defer cancel()
	s, err := in.queueStream(ctx)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefixQueue+tenant+".>"))
	if err != nil {
		return nil, unavailable(err)
	}
	out := make(map[string]uint64, len(info.State.Subjects))
	p := prefixQueue + tenant + "."
	for subj, n := range info.State.Subjects {
		if sid, ok := strings.CutPrefix(subj, p); ok {
			out[sid] = n
		}
	}
	return out, nil
}

// SessionKey is natsbus's RELAY_SESSIONS key of a session.
func SessionKey(tenant, clientID string) string {
	return tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

// RetainedTimes returns when the retained message of each topic of the
// tenant was stored (topics without one are missing from the map). It
// asks for all of them in one batched direct get; at most 1,024 topics.
func (in *Inspector) RetainedTimes(ctx context.Context, tenant string, topics []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(topics))
	if len(topics) == 0 {
		return out, nil
	}
	if len(topics) > 1024 {
		topics = topics[:1024]
	}
	subjects := make([]string, len(topics))
	bySubject := make(map[string]string, len(topics))
	for i, t := range topics {
		subj := string(topic.AppendSubject([]byte(prefixRet+tenant+"."), []byte(t)))
		subjects[i] = subj
		bySubject[subj] = t
	}
	req, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)})
	if err := in.Ready(); err != nil {
		return nil, err
	}
	inbox := in.nc.NewRespInbox()
	sub, err := in.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, unavailable(err)
	}
	defer sub.Unsubscribe()
	if err := in.nc.PublishRequest("$JS.API.DIRECT.GET."+natsbus.StreamRetained, inbox, req); err != nil {
		return nil, unavailable(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, unavailable(err)
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
			t, ok := bySubject[msg.Header.Get(jetstream.SubjectHeader)]
			if !ok {
				continue
			}
			if ts, err := time.Parse(time.RFC3339Nano, msg.Header.Get(jetstream.TimeStampHeaer)); err == nil {
				out[t] = ts
			}
		case "204", "404":
			return out, nil
		default:
			return nil, unavailable(fmt.Errorf("retained timestamps: %s %s", status, msg.Header.Get("Description")))
		}
	}
}

// JetStreamOK reports whether JetStream answers (an account info request).
func (in *Inspector) JetStreamOK(ctx context.Context) error {
	if err := in.Ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := in.js.AccountInfo(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}
