package authsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// Conn is the NATS connection (not closed by the Service). Required.
	Conn *nats.Conn
	// Store holds tenants and credentials. Required.
	Store tenant.Store
	// Policies holds ACL rules. Required.
	Policies *auth.Policies
	// Keyed verifies generated secrets. Required.
	Keyed *auth.Keyed
	// BaseDomain: a client connecting to <slug>.<BaseDomain> (TLS SNI,
	// WebSocket Host) belongs to tenant <slug>.
	BaseDomain string
	// PollInterval is how often the change feed (audit records) is read.
	// Default 250 ms, so that changes reach edges within a second.
	PollInterval time.Duration
	// Logger receives logs. Default slog.Default().
	Logger *slog.Logger
}

// lookupTTL bounds how long a cached row is trusted whatever the change
// feed says (a record the feed missed); it is short because the cache is
// for reconnect storms, which last seconds. maxLookupEntries bounds the
// cache (tenants + credentials + apps).
const (
	lookupTTL        = 15 * time.Second
	maxLookupEntries = 200_000
)

// Service answers edges' CONNECT checks and rule lookups, and pushes
// tenancy changes (from any writer of the database: CLI, dashboard, API) to
// edges.
type Service struct {
	opts ServiceOptions
	log  *slog.Logger
	subs []*nats.Subscription
	// dummy is verified when a username does not exist, so that a
	// refusal takes as long whatever was wrong.
	dummy *tenant.Credential
	// slow bounds concurrent argon2id verifications.
	slow chan struct{}
	work chan *nats.Msg // CONNECT checks for the workers
	// cache holds the rows CONNECT checks read; the change feed
	// invalidates it.
	cache *lookupCache
	// local are the Clients of this process (AttachLocal).
	local struct {
		mu sync.Mutex
		m  map[*Client]struct{}
	}

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewService validates opts.
func NewService(opts ServiceOptions) (*Service, error) {
	if opts.Conn == nil || opts.Store == nil || opts.Policies == nil || opts.Keyed == nil {
		return nil, errors.New("authsvc: Conn, Store, Policies and Keyed are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	dummy := &tenant.Credential{HashScheme: tenant.SchemeKeyed, SecretHash: opts.Keyed.Hash([]byte(auth.NewSecret()))}
	return &Service{
		opts: opts, log: opts.Logger.With("component", "authsvc"), dummy: dummy,
		slow: make(chan struct{}, 4), work: make(chan *nats.Msg, 4*connectWorkers), quit: make(chan struct{}),
		cache: newLookupCache(lookupTTL, maxLookupEntries),
	}, nil
}

// Start subscribes the service (in the shared queue group) and starts
// pushing changes.
func (s *Service) Start(ctx context.Context) error {
	for subj, h := range map[string]nats.MsgHandler{SubjectConnect: s.onConnect, SubjectRules: s.onRules} {
		sub, err := s.opts.Conn.QueueSubscribe(subj, QueueGroup, h)
		if err != nil {
			s.Close()
			return fmt.Errorf("authsvc: subscribe %s: %w", subj, err)
		}
		s.subs = append(s.subs, sub)
	}
	// Once Start returns the service must be reachable: make sure the
	// server has the subscriptions (edges otherwise get "no responders").
	if err := s.opts.Conn.FlushTimeout(5 * time.Second); err != nil {
		s.Close()
		return fmt.Errorf("authsvc: flush: %w", err)
	}
	s.wg.Add(1 + connectWorkers)
	for range connectWorkers {
		go s.connectWorker()
	}
	go s.pushChanges()
	return nil
}

// AttachLocal makes c, an edge's Client in this process (`relay serve`),
// follow this Service's changes synchronously: a change made through this
// process (Invalidate) has dropped c's cached logins of the tenant before
// the operation returns, and Close empties c's cache. Edges elsewhere
// learn both over NATS.
func (s *Service) AttachLocal(c *Client) {
	s.local.mu.Lock()
	defer s.local.mu.Unlock()
	if s.local.m == nil {
		s.local.m = make(map[*Client]struct{})
	}
	s.local.m[c] = struct{}{}
}

// Close unsubscribes and stops pushing; it is idempotent. Edges drop
// their cached logins (those of this process before Close returns): with
// no Service left, CONNECTs with credentials get "server unavailable"
// rather than a cached answer no change could correct any more.
func (s *Service) Close() error {
	s.once.Do(func() {
		close(s.quit)
		for _, sub := range s.subs {
			sub.Drain()
		}
		s.wg.Wait()
		s.local.mu.Lock()
		for c := range s.local.m {
			c.logins.flush()
		}
		s.local.mu.Unlock()
		data, _ := json.Marshal(&change{Kind: changeFlush})
		s.opts.Conn.Publish(SubjectChanged+allTenants, data)
	})
	return nil
}

// Invalidate drops what the service and the edges have cached of a
// tenant: call it right after changing the tenant in this process (the
// change feed does it for changes made elsewhere, within a poll interval).
// The edges of this process have dropped their cached logins when it
// returns; the others are told at once over NATS (and again by the feed).
func (s *Service) Invalidate(tenantID string) {
	s.cache.invalidate(tenantID)
	s.local.mu.Lock()
	for c := range s.local.m {
		c.invalidateTenant(tenantID)
	}
	s.local.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slug, err := s.slugOf(ctx, tenantID)
	if err != nil {
		s.log.Warn("change for unknown tenant: edges learn it from the change feed", "tenant_id", tenantID, "err", err)
		return
	}
	data, _ := json.Marshal(&change{Kind: changeFlush})
	if err := s.opts.Conn.Publish(SubjectChanged+slug, data); err != nil {
		s.log.Warn("pushing change", "err", err)
	}
}

// connectWorkers is how many CONNECT checks run at once.
const connectWorkers = 64

// onConnect hands the check to the pool of workers: nats.go calls a
// subscription's handler from one goroutine, and a check may wait on the
// database. Long-lived workers keep their grown stacks; a goroutine per
// check grew a fresh one through JSON and the policy lookup every time
// (~8% of a connect storm's CPU).
func (s *Service) onConnect(m *nats.Msg) {
	select {
	case s.work <- m:
	case <-s.quit:
	}
}

// connectWorker runs CONNECT checks until the service closes.
func (s *Service) connectWorker() {
	defer s.wg.Done()
	for {
		select {
		case m := <-s.work:
			s.handleConnect(m)
		case <-s.quit:
			return
		}
	}
}

func (s *Service) handleConnect(m *nats.Msg) {
	var req connectRequest
	reply := connectReply{Result: resultBadCredentials}
	if err := json.Unmarshal(m.Data, &req); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		reply = s.check(ctx, &req)
		cancel()
	}
	data, _ := json.Marshal(&reply)
	m.Respond(data)
}

// check authenticates one CONNECT. Refusals never say which part was
// wrong, and an unknown user costs the same as a wrong password.
//
// The tenant is named by the username's "@<slug>" suffix or by the host
// name the client connected to (<slug>.<base-domain>); when both are
// given they must agree, so a credential of one tenant never works on
// another tenant's host name.
//
// A certificate login (req.CertIdentity set: a client certificate
// verified by the edge, no password) authenticates the credential the
// certificate names — always "<user>@<slug>": one client CA serves every
// tenant, so a certificate must name its tenant — without a password, if
// the tenant allows certificate logins (tenant.Tenant.ClientCertAuth). A
// username sent with it must name the same user; every tenant named
// (certificate, username, host name) must be the same one.
func (s *Service) check(ctx context.Context, req *connectRequest) connectReply {
	refuse := func(result, why string) connectReply {
		s.log.Info("connect refused", "username", req.Username, "cert", req.CertIdentity, "client", req.ClientID, "remote", req.Remote, "why", why)
		return connectReply{Result: result}
	}
	certLogin := req.CertIdentity != "" && len(req.Password) == 0
	// wasteTime makes a refusal of a password login cost what a check
	// does.
	wasteTime := func() {
		if !certLogin {
			auth.VerifyCredential(s.opts.Keyed, s.dummy, req.Password)
		}
	}
	login := req.Username
	if certLogin && login == "" {
		login = req.CertIdentity
	}
	user, slug := splitLogin(login)
	if host := s.hostTenant(req.ServerName); host != "" {
		if slug != "" && slug != host {
			wasteTime()
			return refuse(resultBadCredentials, "host name of another tenant")
		}
		slug = host
	}
	if certLogin {
		cu, cs := splitLogin(req.CertIdentity)
		if cs == "" {
			// One client CA serves every tenant and tenants choose their
			// usernames: a certificate naming only "sensor" would log
			// in as any tenant's "sensor" by way of the host name. A
			// certificate must name its tenant.
			return refuse(resultBadCredentials, "client certificate names no tenant (<user>@<tenant>)")
		}
		if cu != user {
			return refuse(resultBadCredentials, "username differs from the client certificate's")
		}
		if slug != "" && slug != cs {
			return refuse(resultBadCredentials, "client certificate of another tenant")
		}
		slug = cs
	}
	if slug == "" || user == "" {
		wasteTime()
		return refuse(resultBadCredentials, "no tenant in username or host name")
	}
	snap, err := s.cache.load(ctx, s.opts.Store, slug, user, false)
	reply := s.decide(ctx, req, refuse, wasteTime, certLogin, slug, user, snap, err)
	if reply.Result != resultOK && snap.cached {
		// The cache only ever says yes: decide a refusal again on fresh
		// rows (a rotated secret, a resumed tenant).
		snap, err = s.cache.load(ctx, s.opts.Store, slug, user, true)
		reply = s.decide(ctx, req, refuse, wasteTime, certLogin, slug, user, snap, err)
	}
	return reply
}

// decide is check's verdict on the rows it read (snap, or the error
// reading them).
func (s *Service) decide(ctx context.Context, req *connectRequest, refuse func(result, why string) connectReply, wasteTime func(),
	certLogin bool, slug, user string, snap snapshot, err error) connectReply {
	t, c, app := snap.t, snap.c, snap.app
	switch {
	case err == nil:
	case t == nil:
		wasteTime()
		if errors.Is(err, tenant.ErrNotFound) {
			return refuse(resultBadCredentials, "unknown tenant")
		}
		s.log.Error("loading tenant", "tenant", slug, "err", err)
		return connectReply{Result: resultUnavailable}
	case c == nil:
		wasteTime()
		if errors.Is(err, tenant.ErrNotFound) {
			return refuse(resultBadCredentials, "unknown username")
		}
		s.log.Error("loading credential", "tenant", slug, "err", err)
		return connectReply{Result: resultUnavailable}
	default:
		s.log.Error("loading app", "tenant", slug, "err", err)
		return connectReply{Result: resultUnavailable}
	}
	if certLogin {
		if c.Revoked {
			return refuse(resultBadCredentials, "credential revoked")
		}
		if !t.ClientCertAuth {
			return refuse(resultNotAuthorized, "client certificate logins are not enabled for the tenant")
		}
	} else {
		if c.HashScheme == tenant.SchemeArgon2id {
			// argon2id holds 19 MiB and tens of ms per check: bound them.
			select {
			case s.slow <- struct{}{}:
				defer func() { <-s.slow }()
			case <-ctx.Done():
				return connectReply{Result: resultUnavailable}
			}
		}
		if !auth.VerifyCredential(s.opts.Keyed, c, req.Password) {
			return refuse(resultBadCredentials, "wrong password or revoked")
		}
	}
	if t.Status != tenant.Active {
		return refuse(resultNotAuthorized, "tenant suspended")
	}
	if c.ClientIDPattern != "" && !clientIDAllowed(c.ClientIDPattern, req.ClientID, user) {
		return refuse(resultNotAuthorized, "client ID not allowed for this credential")
	}
	rules, err := s.opts.Policies.RulesFor(ctx, t.Slug, user, app.Name)
	if err != nil {
		s.log.Error("loading rules", "tenant", slug, "err", err)
		return connectReply{Result: resultUnavailable}
	}
	return connectReply{
		Result: resultOK, Tenant: t.Slug, Username: user, CredentialID: c.ID, App: app.Name,
		Limits: t.Limits, Rules: rules,
		// The edge may accept this password again without asking, until
		// a change of the tenant reaches it (Client, loginCache).
		TenantID: t.ID, ClientIDPattern: c.ClientIDPattern, Cacheable: !certLogin,
	}
}

// splitLogin splits "<user>@<slug>" (the last '@'); slug is "" without one.
func splitLogin(login string) (user, slug string) {
	if i := strings.LastIndexByte(login, '@'); i >= 0 {
		return login[:i], login[i+1:]
	}
	return login, ""
}

// hostTenant returns the tenant slug of a host name <slug>.<base-domain>
// (any case, a final dot and a port allowed: a WebSocket Host header has
// one).
func (s *Service) hostTenant(host string) string {
	if host == "" || s.opts.BaseDomain == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	suffix := "." + strings.ToLower(strings.TrimSuffix(s.opts.BaseDomain, "."))
	if !strings.HasSuffix(host, suffix) {
		return ""
	}
	slug := host[:len(host)-len(suffix)]
	if !tenant.ValidSlug(slug) {
		return ""
	}
	return slug
}

// clientIDAllowed matches a client ID against a credential's pattern: an
// MQTT-style filter in which '-' separates levels, '+' is one level, a final
// '#' the rest, and %u the username literally (it may contain '-').
func clientIDAllowed(pattern, clientID, username string) bool {
	if strings.ContainsAny(clientID, "/+#") || clientID == "" {
		return false
	}
	return matchID(strings.Split(pattern, "-"), clientID, username)
}

func matchID(levels []string, id, username string) bool {
	if len(levels) == 0 {
		return id == ""
	}
	l, rest := levels[0], levels[1:]
	var tail string
	switch l {
	case "#":
		return len(rest) == 0 // the rest, including nothing
	case "%u":
		if !strings.HasPrefix(id, username) {
			return false
		}
		tail = id[len(username):]
	default:
		seg := id
		if i := strings.IndexByte(id, '-'); i >= 0 {
			seg, tail = id[:i], id[i:]
		}
		if l != "+" && l != seg {
			return false
		}
	}
	if len(rest) == 0 {
		return tail == ""
	}
	if rest[0] == "#" && len(rest) == 1 && tail == "" {
		return true // "a-#" matches "a" [MQTT-4.7.1-2]
	}
	if !strings.HasPrefix(tail, "-") {
		return false
	}
	return matchID(rest, tail[1:], username)
}

func (s *Service) onRules(m *nats.Msg) {
	var req rulesRequest
	reply := rulesReply{Result: resultUnavailable}
	if err := json.Unmarshal(m.Data, &req); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rules, err := s.opts.Policies.RulesFor(ctx, req.Tenant, req.Username, req.App)
		cancel()
		if err == nil {
			reply = rulesReply{Result: resultOK, Rules: rules}
		} else {
			s.log.Error("loading rules", "tenant", req.Tenant, "err", err)
		}
	}
	data, _ := json.Marshal(&reply)
	m.Respond(data)
}

// pushChanges reads the change feed (audit records, written by every
// process that changes tenancy) and tells edges what to do.
func (s *Service) pushChanges() {
	defer s.wg.Done()
	// A writer stamps its record before it commits, so a record can show
	// up with a time a little before others already seen: read with an
	// overlap, and skip what was pushed already.
	const overlap = 5 * time.Second
	// Start a minute back: changes made while no service ran (a restart)
	// still reach the edges.
	latest := time.Now().UTC().Add(-time.Minute)
	seen := map[string]time.Time{} // pushed record ID → its time
	const pageSize = 1000
	full := false
	// A store that can tell whether anything was committed (SQLite) spares
	// the query while nothing was: the feed is read on the core that
	// serves MQTT in relay serve.
	marker, _ := s.opts.Store.(changeMarker)
	var mark uint64
	haveMark := false
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var next uint64
		nextOK := false
		if marker != nil {
			m, ok, err := marker.ChangeMark(ctx)
			if err != nil {
				s.log.Debug("reading change mark", "err", err)
			}
			if ok && err == nil {
				if haveMark && m == mark && !full {
					cancel()
					continue // nothing committed since the last read
				}
				next, nextOK = m, true
			}
		}
		from := latest.Add(-overlap)
		if full {
			from = latest // a full page: move on rather than re-read it
		}
		recs, err := s.opts.Store.AuditSince(ctx, from, pageSize)
		if err != nil {
			cancel()
			s.log.Warn("reading change feed", "err", err)
			continue
		}
		// The mark was taken before the read: a commit after it moves
		// the mark again. A read that skipped the overlap (after a full
		// page) may have missed a record stamped earlier and committed
		// late: the next poll reads with the overlap whatever the mark.
		mark, haveMark = next, nextOK && !full
		full = len(recs) == pageSize
		for id, at := range seen {
			if at.Before(latest.Add(-2 * overlap)) {
				delete(seen, id)
			}
		}
		// One push per (tenant, kind, user) per read: a bulk change
		// (10,000 credentials created by the CLI) costs the edges one
		// flush, not 10,000.
		type push struct{ tenantID, kind, user string }
		var order []push
		reload := false
		count := map[push]int{}
		first := map[push]tenant.AuditRecord{}
		for _, r := range recs {
			if _, ok := seen[r.ID]; ok {
				continue
			}
			if r.At.After(latest) {
				latest = r.At
			}
			seen[r.ID] = r.At
			kind, user := classify(r.Action)
			if kind == "" {
				// Edges still drop what they cached of the tenant
				// (a setting such as client_cert_auth changed).
				kind = changeFlush
			}
			if kind == changeRevoke {
				user = r.Target
			}
			reload = reload || policiesChanged(r.Action)
			p := push{r.TenantID, kind, user}
			if count[p] == 0 {
				order = append(order, p)
				first[p] = r
			}
			count[p]++
		}
		if reload {
			// Another process may have changed the policies: reload
			// before edges are told to fetch rules.
			if err := s.opts.Policies.Reload(ctx); err != nil {
				s.log.Warn("reloading policies", "err", err)
			}
		}
		slugs := map[string]string{}
		for _, p := range order {
			slug, ok := slugs[p.tenantID]
			if !ok {
				// Before anything is pushed: a client that reconnects
				// because of the change must be checked on fresh rows.
				s.cache.invalidate(p.tenantID)
				var err error
				if slug, err = s.slugOf(ctx, p.tenantID); err != nil {
					s.log.Warn("change for unknown tenant", "tenant_id", p.tenantID, "err", err)
				}
				slugs[p.tenantID] = slug
			}
			if slug == "" {
				continue
			}
			data, _ := json.Marshal(&change{Kind: p.kind, Username: p.user, Records: count[p]})
			if err := s.opts.Conn.Publish(SubjectChanged+slug, data); err != nil {
				s.log.Warn("pushing change", "err", err)
			}
			r := first[p]
			s.log.Info("change pushed to edges", "tenant", slug, "action", r.Action, "target", r.Target, "records", count[p])
		}
		cancel()
	}
}

// changeMarker is a Store that tells cheaply whether anything may have
// been committed since its previous answer (gormstore.Store on SQLite).
// ok false: it cannot tell.
type changeMarker interface {
	ChangeMark(ctx context.Context) (mark uint64, ok bool, err error)
}

func (s *Service) slugOf(ctx context.Context, tenantID string) (string, error) {
	t, err := s.opts.Store.TenantByID(ctx, tenantID)
	if err != nil {
		return "", err
	}
	return t.Slug, nil
}

// classify maps an audit action to the change edges must apply.
func classify(action string) (kind, username string) {
	switch {
	case action == "credential.revoke", action == "credential.rotate":
		return changeRevoke, ""
	case action == "tenant.suspend":
		return changeSuspend, ""
	case strings.HasPrefix(action, "acl."), action == "tenant.limits":
		return changeRules, ""
	}
	// credential.create among the rest: a new username has no live
	// connections whose rules could change (usernames are never reused),
	// so edges only drop what they cached of the tenant.
	return "", ""
}

// policiesChanged reports whether an action changed Casbin policies, which
// a control plane then reloads: ACL rules, and the link of a new
// credential to its app.
func policiesChanged(action string) bool {
	return strings.HasPrefix(action, "acl.") || action == "credential.create"
}
