package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

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
	// CertIdentity names the client certificate, if the client sent one
	// and it was verified against the listener's client CA (a certificate
	// that does not verify fails the TLS handshake): its subject common
	// name, else its first DNS name, else its first URI. Empty otherwise.
	// The Authenticator may accept it instead of a password.
	CertIdentity string
}

// describeTransport fills in what the transport knows about the
// connection: the host name the client asked for (TLS SNI, WebSocket
// Host) and the identity of a verified client certificate, if nc offers
// them (broker/listener connections and *tls.Conn do).
func describeTransport(nc net.Conn, info *ConnectInfo) {
	if s, ok := nc.(interface{ ServerName() string }); ok {
		info.ServerName = s.ServerName()
	}
	if s, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := s.ConnectionState()
		if info.ServerName == "" {
			info.ServerName = strings.ToLower(st.ServerName)
		}
		// VerifiedChains is empty unless the chain was verified against
		// the configured ClientCAs (tls.VerifyClientCertIfGiven or
		// RequireAndVerifyClientCert): an unverified certificate never
		// gives an identity.
		if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
			info.CertIdentity = CertIdentity(st.VerifiedChains[0][0])
		}
	}
}

// CertIdentity is the name a client certificate authenticates as: its
// subject common name, else its first DNS subject alternative name, else
// its first URI one; "" if it has none of them.
func CertIdentity(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
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
