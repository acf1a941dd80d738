package broker

import (
	"context"
	"errors"
	"net"
)

// Errors an Authenticator returns; the broker maps them to CONNACK codes
// (see reasonFor).
var (
	// ErrBadCredentials means the username or password is wrong or missing.
	ErrBadCredentials = errors.New("bad username or password")
	// ErrNotAuthorized means the credentials are valid but may not connect
	// (anonymous access disabled, tenant suspended, client ID not allowed).
	ErrNotAuthorized = errors.New("not authorized")
	// ErrClientIDRejected means the client identifier is not acceptable.
	ErrClientIDRejected = errors.New("client identifier rejected")
	// ErrAuthUnavailable means the authentication service could not be
	// reached; the client should retry.
	ErrAuthUnavailable = errors.New("authentication service unavailable")
)

// ConnectInfo is what a client presents when it connects.
type ConnectInfo struct {
	// ClientID is the client identifier (after assignment of a generated
	// one for an empty ID).
	ClientID string
	// Username and Password are the CONNECT credentials; HasUsername and
	// HasPassword tell an empty value from a missing one.
	Username    string
	Password    []byte
	HasUsername bool
	HasPassword bool
	// Version is the MQTT protocol level (3, 4 or 5).
	Version byte
	// RemoteAddr is the client's network address.
	RemoteAddr net.Addr
	// ServerName is the host name the client asked for (TLS SNI or
	// WebSocket Host), empty on plain TCP.
	ServerName string
}

// Principal is an authenticated client.
type Principal struct {
	// Tenant owns the connection: its topics, sessions and client IDs.
	Tenant string
	// Username is the authenticated user name ("" for anonymous).
	Username string
}

// Authenticator decides who a connecting client is.
type Authenticator interface {
	// Authenticate returns the principal for info, or an error wrapping
	// ErrBadCredentials, ErrNotAuthorized, ErrClientIDRejected or
	// ErrAuthUnavailable.
	Authenticate(ctx context.Context, info *ConnectInfo) (*Principal, error)
}

// Authorizer decides what an authenticated client may do. Its methods are
// called per message and must not do network I/O.
type Authorizer interface {
	// CanPublish reports whether p (as clientID) may publish to topic.
	CanPublish(p *Principal, clientID string, topic []byte) bool
	// CanSubscribe reports whether p (as clientID) may subscribe to filter
	// (the plain filter, without $share or $local prefix).
	CanSubscribe(p *Principal, clientID, filter string) bool
}

// Anonymous authenticates every client into DefaultTenant when Allow is
// set, and refuses every client otherwise. It is the authenticator of an
// edge that has no tenancy service.
type Anonymous struct {
	// Allow lets clients in without credentials.
	Allow bool
}

// Authenticate implements Authenticator.
func (a Anonymous) Authenticate(_ context.Context, info *ConnectInfo) (*Principal, error) {
	if !a.Allow {
		return nil, ErrNotAuthorized
	}
	return &Principal{Tenant: DefaultTenant, Username: info.Username}, nil
}

// AllowAll is the Authorizer that permits everything within the tenant.
type AllowAll struct{}

// CanPublish implements Authorizer.
func (AllowAll) CanPublish(*Principal, string, []byte) bool { return true }

// CanSubscribe implements Authorizer.
func (AllowAll) CanSubscribe(*Principal, string, string) bool { return true }

var (
	_ Authenticator = Anonymous{}
	_ Authorizer    = AllowAll{}
)
