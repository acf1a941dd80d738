// Package authsvc carries authentication between edges and the control
// plane over NATS: the Service (control plane) answers CONNECT checks and
// rule lookups in a queue group and pushes tenancy changes; the Client
// (edge) is the broker's Authenticator and applies the pushed changes to
// live connections. Per-message ACL checks never leave the edge: the Client
// compiles the rules it receives into the connection's auth.RuleSet.
package authsvc

import (
	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// Subjects of the protocol (version 1).
const (
	// SubjectConnect: request connectRequest, reply connectReply.
	SubjectConnect = "rly.auth.v1.connect"
	// SubjectRules: request rulesRequest, reply rulesReply.
	SubjectRules = "rly.auth.v1.rules"
	// SubjectChanged + tenant slug: pushed change (change). SubjectChanged
	// + allTenants: a change for every tenant (a Service stopped).
	SubjectChanged = "rly.auth.v1.changed."
	// allTenants stands for every tenant after SubjectChanged; it is not
	// a valid slug (tenant.ValidSlug).
	allTenants = "_all"
	// QueueGroup is the queue group of every Service, so that several
	// control processes share the load.
	QueueGroup = "relay-auth"
)

// Results of a connect check.
const (
	resultOK             = "ok"
	resultBadCredentials = "bad_credentials"
	resultNotAuthorized  = "not_authorized"
	resultUnavailable    = "unavailable"
)

// connectRequest is one CONNECT to check. The edge is trusted for what its
// transport saw: the host name (ServerName) and the identity of a client
// certificate it verified against its client CA (CertIdentity).
type connectRequest struct {
	Username   string `json:"username"`
	Password   []byte `json:"password"`
	ClientID   string `json:"client_id"`
	ServerName string `json:"server_name,omitempty"`
	Remote     string `json:"remote,omitempty"`
	// CertIdentity is set for a certificate login: the client sent a
	// verified client certificate and no password (broker.ConnectInfo.
	// CertIdentity). It is the login when Username is empty.
	CertIdentity string `json:"cert_identity,omitempty"`
}

type connectReply struct {
	Result       string        `json:"result"`
	Tenant       string        `json:"tenant,omitempty"`
	Username     string        `json:"username,omitempty"`
	CredentialID string        `json:"credential_id,omitempty"`
	App          string        `json:"app,omitempty"`
	Limits       tenant.Limits `json:"limits"`
	Rules        []auth.Rule   `json:"rules,omitempty"`
	// TenantID, ClientIDPattern and Cacheable let the edge remember an
	// accepted password login (loginCache): the tenant's ID names it in
	// Service.Invalidate, the pattern is checked against later client IDs
	// at the edge. Cacheable is set for password logins only.
	TenantID        string `json:"tenant_id,omitempty"`
	ClientIDPattern string `json:"client_id_pattern,omitempty"`
	Cacheable       bool   `json:"cacheable,omitempty"`
}

type rulesRequest struct {
	Tenant   string `json:"tenant"`
	Username string `json:"username"`
	App      string `json:"app"`
}

type rulesReply struct {
	Result string      `json:"result"`
	Rules  []auth.Rule `json:"rules,omitempty"`
}

// Kinds of pushed changes.
const (
	// changeRules: a tenant's rules (or a credential's app) changed; edges
	// fetch the rules of its live connections again.
	changeRules = "rules"
	// changeRevoke: a credential was revoked; edges disconnect its clients.
	changeRevoke = "revoke"
	// changeSuspend: the tenant was suspended; edges disconnect all of it.
	changeSuspend = "suspend"
	// changeFlush: anything else changed (settings, a new app or key);
	// edges only drop what they cached of the tenant. Every kind does that
	// first; older edges ignore this one.
	changeFlush = "flush"
)

type change struct {
	Kind     string `json:"kind"`
	Username string `json:"username,omitempty"`
	// Records is how many audit records of the change feed this push
	// stands for (one per tenant, kind and user per read of the feed);
	// absent on the immediate push of Service.Invalidate. Edges ignore it.
	Records int `json:"records,omitempty"`
}
