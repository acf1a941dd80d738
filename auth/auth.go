// Package auth decides who a client is and what it may do: password and
// secret hashing, ACL rules and their compiled, allocation-free checks, the
// Casbin policy store, and the principal an edge holds for each connection.
package auth

import (
	"errors"
	"sync/atomic"

	"github.com/relaymq/relay/tenant"
)

// Errors of authentication. The broker maps them to CONNACK codes; callers
// never learn which part of a credential was wrong.
var (
	// ErrBadCredentials: unknown user, wrong password, revoked credential.
	ErrBadCredentials = errors.New("bad username or password")
	// ErrNotAuthorized: valid credentials that may not connect now (tenant
	// suspended, client ID not allowed, host name of another tenant).
	ErrNotAuthorized = errors.New("not authorized")
	// ErrUnavailable: the authentication service cannot be reached.
	ErrUnavailable = errors.New("authentication service unavailable")
	// ErrThrottled: too many failed attempts from this address or for
	// this username; try later.
	ErrThrottled = errors.New("too many failed attempts")
)

// Action is what a rule allows or denies.
type Action uint8

const (
	// Publish covers PUBLISH, will messages and HTTP publishing.
	Publish Action = 1 << iota
	// Subscribe covers SUBSCRIBE (and the retained messages it brings).
	Subscribe
	// PubSub is both.
	PubSub = Publish | Subscribe
)

// Effect is a rule's verdict; deny beats allow.
type Effect uint8

const (
	// Allow grants the action on the filter.
	Allow Effect = iota + 1
	// Deny refuses it, whatever any allow rule says.
	Deny
)

// Rule is one ACL rule as stored and sent to edges. Filter is an MQTT topic
// filter that may contain the placeholders %c (the client ID) and %u (the
// username), each standing for a whole topic level.
type Rule struct {
	Effect Effect `json:"effect"`
	Action Action `json:"action"`
	Filter string `json:"filter"`
}

// Principal is an authenticated connection's identity and rights, held by
// the edge for the life of the connection. Its rules can be replaced while
// the connection lives (a policy change pushed by the control plane).
type Principal struct {
	// Tenant is the tenant slug: it prefixes every subject the
	// connection touches.
	Tenant string
	// Username is the credential's username ("" for anonymous).
	Username string
	// CredentialID and App identify the credential (empty for anonymous).
	CredentialID string
	App          string
	// Limits are the tenant's plan limits.
	Limits tenant.Limits

	rules atomic.Pointer[RuleSet]
}

// Rules returns the connection's compiled rules.
func (p *Principal) Rules() *RuleSet { return p.rules.Load() }

// SetRules replaces the connection's compiled rules.
func (p *Principal) SetRules(r *RuleSet) { p.rules.Store(r) }
