package authsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
	"github.com/relaymq/relay/tenant/gormstore"
)

// countingStore is a real SQLite store that counts change-feed reads
// and the row lookups of CONNECT checks.
type countingStore struct {
	*gormstore.Store
	reads   atomic.Int64
	lookups atomic.Int64
}

func (c *countingStore) AuditSince(ctx context.Context, since time.Time, limit int) ([]tenant.AuditRecord, error) {
	c.reads.Add(1)
	return c.Store.AuditSince(ctx, since, limit)
}

func (c *countingStore) TenantBySlug(ctx context.Context, slug string) (*tenant.Tenant, error) {
	c.lookups.Add(1)
	return c.Store.TenantBySlug(ctx, slug)
}

func (c *countingStore) CredentialByUsername(ctx context.Context, tenantID, username string) (*tenant.Credential, error) {
	c.lookups.Add(1)
	return c.Store.CredentialByUsername(ctx, tenantID, username)
}

func (c *countingStore) CredentialsAfter(ctx context.Context, tenantID, after string, limit int) ([]tenant.Credential, error) {
	c.lookups.Add(1)
	return c.Store.CredentialsAfter(ctx, tenantID, after, limit)
}

func (c *countingStore) ListApps(ctx context.Context, tenantID string) ([]tenant.App, error) {
	c.lookups.Add(1)
	return c.Store.ListApps(ctx, tenantID)
}

func (c *countingStore) AppByID(ctx context.Context, tenantID, id string) (*tenant.App, error) {
	c.lookups.Add(1)
	return c.Store.AppByID(ctx, tenantID, id)
}

// TestChangeFeedSkipsIdleReads: on SQLite the change feed is read only
// after something was committed (ChangeMark), yet a change another process
// commits still reaches the edges of its tenant, and only of its tenant.
func TestChangeFeedSkipsIdleReads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	dsn := filepath.Join(t.TempDir(), "relay.db")
	open := func() *gormstore.Store {
		st, err := gormstore.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	store := &countingStore{Store: open()}
	other := open() // another process on the same database (the CLI)
	a, b := &tenant.Tenant{Slug: "acme"}, &tenant.Tenant{Slug: "beta"}
	for _, tn := range []*tenant.Tenant{a, b} {
		if err := other.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := auth.NewPolicies(ctx, store.DB(), nil)
	if err != nil {
		t.Fatal(err)
	}
	keyed, err := auth.NewKeyed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	pushedA, err := nc.SubscribeSync(SubjectChanged + "acme")
	if err != nil {
		t.Fatal(err)
	}
	pushedB, err := nc.SubscribeSync(SubjectChanged + "beta")
	if err != nil {
		t.Fatal(err)
	}
	const poll = 20 * time.Millisecond
	svc, err := NewService(ServiceOptions{Conn: nc, Store: store, Policies: pol, Keyed: keyed, PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })

	// The first look reads (a restart must catch up); then nothing is
	// committed, so nothing is read for 25 polls.
	deadline := time.Now().Add(5 * time.Second)
	for store.reads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(poll)
	}
	if store.reads.Load() == 0 {
		t.Fatal("the change feed was never read")
	}
	quiet := func(what string) {
		t.Helper()
		// A read may legitimately follow the last one (a commit between
		// taking the mark and reading): wait until the count holds for
		// a few polls, then it must hold for 25 more.
		last := store.reads.Load()
		deadline := time.Now().Add(3 * time.Second)
		for held := 0; held < 5; {
			if time.Now().After(deadline) {
				t.Fatalf("the change feed is read at every poll %s although nothing is committed", what)
			}
			time.Sleep(poll)
			if n := store.reads.Load(); n != last {
				last, held = n, 0
			} else {
				held++
			}
		}
		time.Sleep(25 * poll)
		if n := store.reads.Load() - last; n != 0 {
			t.Fatalf("%d change-feed reads while nothing was committed %s", n, what)
		}
	}
	quiet("at the start")
	start := store.reads.Load()

	// Another process suspends acme: the push reaches acme's edges, with
	// a read of the feed; beta hears nothing.
	rec := tenant.AuditRecord{TenantID: a.ID, Actor: "cli", Action: "tenant.suspend", Target: "acme"}
	if err := other.AddAudit(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	m, err := pushedA.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no change pushed to acme's edges: %v", err)
	}
	var ch change
	if err := json.Unmarshal(m.Data, &ch); err != nil || ch.Kind != changeSuspend {
		t.Fatalf("pushed %s (%v), want a %s change", m.Data, err, changeSuspend)
	}
	if store.reads.Load() == start {
		t.Fatal("a change was pushed without a read of the feed")
	}
	if m, err := pushedB.NextMsg(3 * poll); err == nil {
		t.Fatalf("beta's edges were told of acme's change: %s", m.Data)
	}

	// A bulk change (the CLI creating 100 credentials) reaches the edges
	// as a few flushes, not 100.
	for i := 0; i < 100; i++ {
		rec := tenant.AuditRecord{TenantID: a.ID, Actor: "cli", Action: "credential.create", Target: fmt.Sprintf("dev%d", i)}
		if err := other.AddAudit(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	pushes, records := 0, 0
	for records < 100 {
		m, err := pushedA.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("pushes for %d of 100 records: %v", records, err)
		}
		var ch change
		if err := json.Unmarshal(m.Data, &ch); err != nil {
			t.Fatal(err)
		}
		pushes++
		records += ch.Records
	}
	if records != 100 || pushes > 50 {
		t.Errorf("100 credentials created: %d pushes for %d records, want at most 50 pushes (one per tenant and poll) for 100", pushes, records)
	}
	t.Logf("100 credentials created: %d pushes", pushes)

	// Quiet again: no more reads.
	quiet("after the changes")
}
