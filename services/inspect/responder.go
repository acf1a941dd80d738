package inspect

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
)

// Source is the local state a Responder answers from; *broker.Broker
// implements it.
type Source interface {
	TenantStats(tenant string) broker.TenantStats
	EachTenantStats(fn func(tenant string, s broker.TenantStats))
	Clients(tenant string, fn func(broker.ClientInfo) bool)
	Client(tenant, clientID string) (broker.ClientInfo, bool)
	Kick(tenant, clientID string) bool
	EachRoute(tenant string, fn func(filter string, subscribers int, delivered uint64))
}

var _ Source = (*broker.Broker)(nil)

// ResponderOptions configure a Responder.
type ResponderOptions struct {
	// Conn is the node's NATS connection. Required; not closed.
	Conn *nats.Conn
	// NodeID names the node in its replies; it must be the node ID its
	// RELAY_NODES heartbeats use. Required.
	NodeID string
	// Source is the node's broker; nil for a node without one (a
	// dashboard process with its own backbone node), which answers with
	// nothing so that gatherers need not wait for it.
	Source Source
	// Workers bounds the requests answered at once. Default 8.
	Workers int
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

// Responder answers inspection requests for one node.
type Responder struct {
	opts ResponderOptions
	log  *slog.Logger
	sem  chan struct{}
	subs []*nats.Subscription

	mu     sync.Mutex
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup
}

// StartResponder subscribes to the inspection subjects.
func StartResponder(opts ResponderOptions) (*Responder, error) {
	if opts.Conn == nil || opts.NodeID == "" {
		return nil, errors.New("inspect: Conn and NodeID are required")
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Responder{
		opts: opts, log: opts.Logger.With("component", "inspect"),
		sem: make(chan struct{}, opts.Workers), quit: make(chan struct{}),
	}
	for _, subj := range []string{SubjectPrefix + "*.*", SubjectAllStats} {
		s, err := opts.Conn.Subscribe(subj, r.onRequest)
		if err != nil {
			r.Close()
			return nil, unavailable(err)
		}
		r.subs = append(r.subs, s)
	}
	return r, nil
}

// Close unsubscribes and waits for the requests being answered. It is
// idempotent.
func (r *Responder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.quit)
	r.mu.Unlock()
	for _, s := range r.subs {
		s.Unsubscribe()
	}
	r.wg.Wait()
	return nil
}

// onRequest hands a request to a worker; with every worker busy it waits
// (NATS buffers the subscription's pending requests, bounded by its
// pending limits).
func (r *Responder) onRequest(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	select {
	case r.sem <- struct{}{}:
	case <-r.quit:
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.sem
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sem }()
		r.answer(m)
	}()
}

func (r *Responder) answer(m *nats.Msg) {
	rep := reply{Node: r.opts.NodeID}
	src := r.opts.Source
	if m.Subject == SubjectAllStats {
		if src != nil {
			rep.Tenants = map[string]Stats{}
			src.EachTenantStats(func(tenant string, s broker.TenantStats) { rep.Tenants[tenant] = statsOf(s) })
		}
		r.respond(m, &rep)
		return
	}
	tenant, what, ok := strings.Cut(m.Subject[len(SubjectPrefix):], ".")
	if !ok || tenant == "" {
		return
	}
	var req request
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil {
			r.log.Debug("malformed inspection request", "subject", m.Subject, "err", err)
			return
		}
	}
	if src != nil {
		switch what {
		case whatClients:
			limit := req.Limit
			if limit <= 0 || limit > MaxClientLimit {
				limit = DefaultClientLimit
			}
			src.Clients(tenant, func(ci broker.ClientInfo) bool {
				if len(rep.Clients) == limit {
					rep.Truncated = true
					return false
				}
				rep.Clients = append(rep.Clients, clientOf(r.opts.NodeID, &ci))
				return true
			})
		case whatClient:
			if ci, ok := src.Client(tenant, req.ClientID); ok {
				rep.Found = true
				rep.Clients = []Client{clientOf(r.opts.NodeID, &ci)}
			}
		case whatKick:
			rep.Found = req.ClientID != "" && src.Kick(tenant, req.ClientID)
		case whatTopics:
			src.EachRoute(tenant, func(filter string, subscribers int, delivered uint64) {
				rep.Routes = append(rep.Routes, Route{Filter: filter, Subscribers: subscribers, Delivered: delivered})
			})
		case whatStats:
			s := statsOf(src.TenantStats(tenant))
			rep.Stats = &s
		default:
			return
		}
	}
	r.respond(m, &rep)
}

// respond sends rep, halving its client list (marked truncated) until it
// fits the server's max payload.
func (r *Responder) respond(m *nats.Msg, rep *reply) {
	limit := int(r.opts.Conn.MaxPayload())
	for {
		data, err := json.Marshal(rep)
		if err != nil {
			r.log.Warn("encoding inspection reply", "err", err)
			return
		}
		if len(data) <= limit || limit <= 0 || (len(rep.Clients) <= 1 && len(rep.Routes) <= 1) {
			if err := m.Respond(data); err != nil {
				r.log.Debug("answering inspection request", "subject", m.Subject, "err", err)
			}
			return
		}
		rep.Truncated = true
		if len(rep.Clients) > 1 {
			rep.Clients = rep.Clients[:len(rep.Clients)/2]
		}
		if len(rep.Routes) > 1 && len(data) > limit {
			rep.Routes = rep.Routes[:len(rep.Routes)/2]
		}
	}
}
