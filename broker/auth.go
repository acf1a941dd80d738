package broker

import (
	"context"
	"errors"
	"net"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/tenant"
)

// ErrClientIDRejected means the client identifier is not acceptable.
var ErrClientIDRejected = errors.New("client identifier rejected")

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

// describeTransport fills in what the transport knows about the
// connection: the host name the client asked for (TLS SNI, WebSocket
// Host), if nc offers it.
func describeTransport(nc net.Conn, info *ConnectInfo) {
	if s, ok := nc.(interface{ ServerName() string }); ok {
		info.ServerName = s.ServerName()
	}
}

// Authenticator decides who a connecting client is.
type Authenticator interface {
	// Authenticate returns the principal for info, with its rules compiled
	// for info.ClientID, or an error wrapping auth.ErrBadCredentials,
	// auth.ErrNotAuthorized, auth.ErrUnavailable, auth.ErrThrottled or
	// ErrClientIDRejected.
	Authenticate(ctx context.Context, info *ConnectInfo) (*auth.Principal, error)
}

// Anonymous authenticates every client without credentials into the
// default tenant, with every right there, when Allow is set, and refuses
// every client otherwise. It is the authenticator of an edge without a
// tenancy service, and the fallback of one with it.
type Anonymous struct {
	// Allow lets clients in without credentials.
	Allow bool
}

// Authenticate implements Authenticator.
func (a Anonymous) Authenticate(_ context.Context, info *ConnectInfo) (*auth.Principal, error) {
	if !a.Allow || info.HasUsername {
		return nil, auth.ErrNotAuthorized
	}
	return AnonymousPrincipal(), nil
}

// AnonymousPrincipal returns a principal of the default tenant that may
// publish and subscribe to everything there, $SYS topics included (which
// no client can publish to).
func AnonymousPrincipal() *auth.Principal {
	p := &auth.Principal{Tenant: tenant.DefaultSlug}
	p.SetRules(anonymousRules)
	return p
}

var anonymousRules = auth.Compile([]auth.Rule{
	{Effect: auth.Allow, Action: auth.PubSub, Filter: "#"},
	{Effect: auth.Allow, Action: auth.Subscribe, Filter: "$SYS/#"},
}, "", "")

var _ Authenticator = Anonymous{}
