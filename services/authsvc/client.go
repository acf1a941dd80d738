package authsvc

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker"
)

// Client is an edge's broker.Authenticator: clients without a username go
// to the Anonymous authenticator, the others are checked by a Service over
// NATS. It also applies the changes Services push to the edge's live
// connections.
type Client struct {
	nc   *nats.Conn
	anon broker.Anonymous
	log  *slog.Logger
	b    *broker.Broker
	sub  *nats.Subscription

	// logins remembers accepted password logins (see loginCache). It is
	// used only while live is set: from Attach (once pushed changes
	// arrive) while the NATS connection is up, until Close.
	logins *loginCache
	live   atomic.Bool
	// dropped is how many pushed changes sub had dropped when last
	// looked at: more means a change may have been lost.
	dropped atomic.Int64

	// Changes of one tenant are applied in order, by one goroutine per
	// tenant (queues: tenant → its pending changes).
	mu     sync.Mutex
	queues map[string]chan change
	quit   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

var _ broker.Authenticator = (*Client)(nil)

// NewClient returns a Client; allowAnonymous lets clients without a
// username into the default tenant.
func NewClient(nc *nats.Conn, allowAnonymous bool, log *slog.Logger) *Client {
	if log == nil {
		log = slog.Default()
	}
	return &Client{
		nc: nc, anon: broker.Anonymous{Allow: allowAnonymous}, log: log.With("component", "authclient"),
		logins: newLoginCache(loginTTL, maxLoginEntries),
		queues: make(map[string]chan change), quit: make(chan struct{}),
	}
}

// Authenticate implements broker.Authenticator. If no Service answers,
// the error wraps auth.ErrUnavailable (CONNACK "server unavailable").
//
// A client that sent a verified client certificate and no password logs
// in with the certificate (its tenant must allow it), with or without a
// username; such a client is never anonymous.
//
// A password login the control plane accepted a moment ago is accepted
// again from the edge's login cache (see loginCache); everything else,
// refusals included, is decided by the control plane.
func (c *Client) Authenticate(ctx context.Context, info *broker.ConnectInfo) (*auth.Principal, error) {
	certLogin := info.CertIdentity != "" && !info.HasPassword
	if !info.HasUsername && !certLogin {
		return c.anon.Authenticate(ctx, info)
	}
	// Certificate logins are not cached: the certificate, not a
	// password, is the secret, and they are rare.
	cacheable := !certLogin && info.HasPassword
	var (
		key    loginKey
		digest [sha256.Size]byte
		epoch  uint64
	)
	if cacheable {
		key = loginKey{serverName: info.ServerName, username: info.Username}
		// Hashed whether or not there is an entry: a hit or a miss
		// costs the same up to the comparison.
		digest = c.logins.digest(info.Password)
		if c.cacheUsable() {
			if rep := c.logins.get(key, &digest, time.Now()); rep != nil &&
				(rep.ClientIDPattern == "" || clientIDAllowed(rep.ClientIDPattern, info.ClientID, rep.Username)) {
				return principalOf(rep, info.ClientID), nil
			}
		}
		epoch = c.logins.begin()
	}
	req := connectRequest{Username: info.Username, Password: info.Password, ClientID: info.ClientID, ServerName: info.ServerName}
	if certLogin {
		req.CertIdentity = info.CertIdentity
	}
	if info.RemoteAddr != nil {
		req.Remote = info.RemoteAddr.String()
	}
	data, _ := json.Marshal(&req)
	msg, err := c.nc.RequestWithContext(ctx, SubjectConnect, data)
	if err != nil {
		// The control plane is gone (no responders) or overwhelmed:
		// its changes may not reach the edge either, so the cache is
		// not trusted with what it would refuse now.
		c.logins.flush()
		return nil, fmt.Errorf("%w: %w", auth.ErrUnavailable, err)
	}
	rep := new(connectReply)
	if err := json.Unmarshal(msg.Data, rep); err != nil {
		return nil, fmt.Errorf("%w: bad reply: %w", auth.ErrUnavailable, err)
	}
	switch rep.Result {
	case resultOK:
	case resultBadCredentials:
		return nil, auth.ErrBadCredentials
	case resultNotAuthorized:
		return nil, auth.ErrNotAuthorized
	default:
		return nil, auth.ErrUnavailable
	}
	if cacheable && rep.Cacheable {
		c.logins.put(epoch, key, &digest, rep, time.Now())
	}
	return principalOf(rep, info.ClientID), nil
}

// principalOf builds a connection's principal from an accepted login, its
// rules compiled for the client ID.
func principalOf(rep *connectReply, clientID string) *auth.Principal {
	p := &auth.Principal{Tenant: rep.Tenant, Username: rep.Username, CredentialID: rep.CredentialID, App: rep.App, Limits: rep.Limits}
	p.SetRules(auth.Compile(rep.Rules, clientID, rep.Username))
	return p
}

// cacheUsable reports whether pushed changes are reaching the edge, so
// that the login cache may be trusted: the Client is attached and not
// closed, NATS is connected, and the change subscription lost nothing
// since the cache was last emptied (if it did, the cache is emptied now).
func (c *Client) cacheUsable() bool {
	if !c.live.Load() || !c.nc.IsConnected() {
		return false
	}
	n, err := c.sub.Dropped()
	if err != nil {
		return false
	}
	if int64(n) != c.dropped.Load() {
		c.logins.flush()
		c.dropped.Store(int64(n))
		c.log.Warn("pushed changes were dropped: login cache emptied", "dropped", n)
		return false
	}
	return true
}

// Attach starts applying pushed changes to b's live connections, and
// refreshes every live connection's rules when the NATS connection comes
// back (changes pushed while it was away are lost). The login cache is
// used from then on, except while NATS is disconnected; it is emptied
// when NATS goes away and again when it comes back.
func (c *Client) Attach(b *broker.Broker) error {
	c.b = b
	sub, err := c.nc.Subscribe(SubjectChanged+"*", c.onChange)
	if err != nil {
		return fmt.Errorf("authclient: %w", err)
	}
	c.sub = sub
	ch := c.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	// The cache is empty, and an entry comes from a reply that reached
	// the edge on this connection after the subscription did: no change
	// pushed from now on can be missed.
	c.live.Store(true)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.nc.RemoveStatusListener(ch)
		sweep := time.NewTicker(loginTTL)
		defer sweep.Stop()
		for {
			select {
			case <-c.quit:
				return
			case <-sweep.C:
				c.logins.sweep(time.Now())
			case st, ok := <-ch:
				if !ok {
					// Listener removed (the connection closed).
					c.live.Store(false)
					c.logins.flush()
					ch = nil
					continue
				}
				if st != nats.CONNECTED {
					// Changes pushed now are lost: stop trusting the
					// cache until the connection is back.
					c.live.Store(false)
					c.logins.flush()
					continue
				}
				// Changes may have been lost while away.
				c.logins.flush()
				c.live.Store(true)
				for _, slug := range b.Tenants() {
					c.enqueue(slug, change{Kind: changeRules})
				}
			}
		}
	}()
	return nil
}

// Close stops applying changes; it is idempotent.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		c.live.Store(false)
		c.logins.flush()
		if c.sub != nil {
			err = c.sub.Unsubscribe()
		}
		close(c.quit)
		c.wg.Wait()
	})
	return err
}

// invalidateTenant drops what the login cache holds of the tenant with
// this ID (a change made in this process: Service.Invalidate).
func (c *Client) invalidateTenant(tenantID string) { c.logins.invalidateID(tenantID) }

// onChange receives a pushed change. Whatever it is, the tenant's cached
// logins are dropped first, here on the NATS callback, before the change
// waits its turn: a CONNECT checked from then on asks the control plane.
func (c *Client) onChange(m *nats.Msg) {
	slug := strings.TrimPrefix(m.Subject, SubjectChanged)
	if slug == allTenants {
		c.logins.flush()
		return
	}
	c.logins.invalidateSlug(slug)
	var ch change
	if err := json.Unmarshal(m.Data, &ch); err != nil {
		return
	}
	c.enqueue(slug, ch)
}

// enqueue hands a change to its tenant's goroutine (off the NATS
// callback: kicks wait for connections to close). A rules refresh already
// waiting makes another one redundant.
func (c *Client) enqueue(slug string, ch change) {
	c.mu.Lock()
	q := c.queues[slug]
	if q == nil {
		q = make(chan change, 64)
		c.queues[slug] = q
		c.wg.Add(1)
		go c.run(slug, q)
	}
	c.mu.Unlock()
	select {
	case q <- ch:
	case <-c.quit:
	default:
		if ch.Kind != changeRules {
			// Full of changes: apply this one without waiting its turn
			// rather than lose a revocation.
			go c.apply(slug, ch)
		}
		// A full queue holds rules refreshes already.
	}
}

func (c *Client) run(slug string, q chan change) {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			return
		case ch := <-q:
			c.apply(slug, ch)
		}
	}
}

func (c *Client) apply(slug string, ch change) {
	switch ch.Kind {
	case changeRevoke:
		n := c.b.KickWhere(slug, func(_ string, p *auth.Principal) bool { return p.Username == ch.Username })
		if n > 0 {
			c.log.Info("credential revoked: clients disconnected", "tenant", slug, "username", ch.Username, "clients", n)
		}
	case changeSuspend:
		n := c.b.KickWhere(slug, func(string, *auth.Principal) bool { return true })
		c.log.Info("tenant suspended: clients disconnected", "tenant", slug, "clients", n)
	case changeRules:
		c.refreshRules(slug)
	}
}

// refreshRules fetches the rules of every live credential of the tenant
// and recompiles them for each connection.
func (c *Client) refreshRules(slug string) {
	type key struct{ user, app string }
	fetched := map[key][]auth.Rule{}
	failed := map[key]bool{}
	c.b.ForEachClient(slug, func(clientID string, p *auth.Principal) {
		if p.Username == "" {
			return
		}
		k := key{p.Username, p.App}
		rules, ok := fetched[k]
		if !ok && !failed[k] {
			var err error
			rules, err = c.rules(slug, p.Username, p.App)
			if err != nil {
				c.log.Warn("refreshing rules; the connection keeps its old rules", "tenant", slug, "username", p.Username, "err", err)
				failed[k] = true
				return
			}
			fetched[k] = rules
		}
		if failed[k] {
			return
		}
		p.SetRules(auth.Compile(rules, clientID, p.Username))
	})
	if len(fetched) > 0 {
		c.log.Info("rules refreshed", "tenant", slug, "credentials", len(fetched))
	}
}

func (c *Client) rules(slug, user, app string) ([]auth.Rule, error) {
	data, _ := json.Marshal(&rulesRequest{Tenant: slug, Username: user, App: app})
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, SubjectRules, data)
	if err != nil {
		return nil, err
	}
	var rep rulesReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, err
	}
	if rep.Result != resultOK {
		return nil, errors.New(rep.Result)
	}
	return rep.Rules, nil
}
