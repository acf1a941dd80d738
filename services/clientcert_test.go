package services_test

// Client-certificate logins (issue 6): a certificate verified against
// --client-ca that names a credential replaces the password, only in
// tenants that allow it, and never across tenants.

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
)

func TestClientCertAuth(t *testing.T) {
	ca := newClientCA(t, "relay-test-clients")
	e := startTransports(t, withTLS(func(c *services.TLSConfig) { c.ClientCAFile = ca.file }))
	acme := e.setup(t, "acme")
	acme2 := e.newCred(t, "acme", "devices", "")
	globex := e.setup(t, "globex")
	aUser, gUser := userOf(acme), userOf(globex)

	// Certificates: qualified and short names, a DNS-name identity, and
	// one from a CA the server does not trust.
	acmeCert := ca.issue(t, aUser+"@acme", nil)
	acmeShort := ca.issue(t, aUser, nil)
	acmeDNS := ca.issue(t, "", []string{aUser + "@acme"}) // no CN: first DNS name
	acme2Cert := ca.issue(t, userOf(acme2)+"@acme", nil)
	globexCert := ca.issue(t, gUser+"@globex", nil)
	rogue := newClientCA(t, "rogue").issue(t, aUser+"@acme", nil)

	tlsTo := func(sni string, cert tls.Certificate) clientOption {
		return overTLS(e.mqtts, clientTLS(e.ca, sni, cert))
	}
	setCerts := func(slug string, on bool) {
		t.Helper()
		if _, err := e.adm.SetClientCertAuth(opCtx(t), actor, slug, on); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("tenant has not enabled certificate logins", func(t *testing.T) {
		expectRefused(t, "certificate, tenant off", 5, tlsTo("localhost", acmeCert))
		// Passwords still work alongside a certificate.
		expectAccepted(t, "password with a certificate", "cc-pass", tlsTo("localhost", acmeCert), withCred(acme))
	})
	setCerts("acme", true)
	setCerts("globex", true) // both allow it: the tests below are about the tenant boundary

	t.Run("qualified certificate, no username", func(t *testing.T) {
		in := newInbox()
		c := expectAccepted(t, "certificate login", "cc-qualified", tlsTo("localhost", acmeCert))
		subscribe(t, c, "cc/#", 1, in)
		publish(t, connect(t, e.addr, "cc-pub", withCred(acme)), "cc/x", 1, false, "to acme")
		in.exactly(t, 1) // the certificate client is in acme
	})
	t.Run("certificate naming no tenant", func(t *testing.T) {
		// One client CA serves every tenant and tenants choose usernames:
		// a bare "<user>" would be that user in whichever tenant the host
		// name picks, so it is refused even on the right host name.
		expectRefused(t, "CN without tenant, SNI acme", 4, tlsTo(hostOf("acme"), acmeShort))
		expectRefused(t, "CN without tenant, no tenant host", 4, tlsTo("localhost", acmeShort))
	})
	t.Run("DNS name identity", func(t *testing.T) {
		expectAccepted(t, "DNS SAN, SNI acme", "cc-dns", tlsTo(hostOf("acme"), acmeDNS))
	})
	t.Run("username naming the certificate's credential", func(t *testing.T) {
		expectAccepted(t, "full username", "cc-user", tlsTo("localhost", acmeCert), withUser(acme.Username))
		expectAccepted(t, "short username, SNI acme", "cc-user2", tlsTo(hostOf("acme"), acmeCert), withUser(aUser))
		expectRefused(t, "another credential's username", 4, tlsTo("localhost", acmeCert), withUser(acme2.Username))
	})
	t.Run("wrong password with a valid certificate", func(t *testing.T) {
		expectRefused(t, "wrong password", 4, tlsTo("localhost", acmeCert), withLogin(acme.Username, "wrong"))
	})
	t.Run("cross-tenant", func(t *testing.T) {
		expectRefused(t, "acme certificate on globex's host name", 4, tlsTo(hostOf("globex"), acmeCert))
		expectRefused(t, "short acme certificate on globex's host name", 4, tlsTo(hostOf("globex"), acmeShort))
		expectRefused(t, "acme certificate claiming a globex username", 4, tlsTo("localhost", acmeCert), withUser(globex.Username))
		expectRefused(t, "globex certificate with an acme username", 4, tlsTo("localhost", globexCert), withUser(acme.Username))
		expectRefused(t, "globex certificate on acme's host name", 4, tlsTo(hostOf("acme"), globexCert))
		expectAccepted(t, "globex certificate on its own host name", "cc-globex", tlsTo(hostOf("globex"), globexCert))
		// MQTT 5: reason code 0x86.
		rc := rawTLS(t, e.mqtts, clientTLS(e.ca, hostOf("globex"), acmeCert))
		p := packet.Connect{ProtocolVersion: packet.V5, ClientID: "cc-v5", CleanStart: true, KeepAlive: 60}
		if ack := rc.connack(p); ack.ReasonCode != packet.BadUsernameOrPassword {
			t.Errorf("MQTT 5, acme certificate on globex: reason code 0x%02X, want 0x86", byte(ack.ReasonCode))
		}
	})
	t.Run("certificate from an untrusted CA", func(t *testing.T) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", e.mqtts, clientTLS(e.ca, hostOf("acme"), rogue))
		if err != nil {
			return // refused in the handshake (TLS 1.2)
		}
		// TLS 1.3: the client's handshake ends before the server has
		// checked its certificate; the verdict comes with the first read.
		rc := rawOver(t, c)
		rc.writeBytes(packet.AppendPingreq(nil))
		if _, _, err := rc.read(waitTimeout); err == nil || isTimeout(err) {
			t.Fatalf("connection with an untrusted client certificate still usable (%v)", err)
		}
	})
	t.Run("over secure WebSocket", func(t *testing.T) {
		expectAccepted(t, "wss certificate login", "cc-wss", overWSS(e.wss, clientTLS(e.ca, hostOf("acme"), acmeCert)))
	})
	t.Run("revoked credential", func(t *testing.T) {
		expectAccepted(t, "before revocation", "cc-acme2", tlsTo("localhost", acme2Cert))
		if err := e.adm.RevokeCredential(opCtx(t), actor, "acme", acme2.Username); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, "after revocation", 4, tlsTo("localhost", acme2Cert))
	})
	t.Run("tenant turns certificate logins off", func(t *testing.T) {
		setCerts("acme", false)
		expectRefused(t, "certificate, tenant off again", 5, tlsTo(hostOf("acme"), acmeCert))
		tn, err := e.adm.Tenant(opCtx(t), "acme")
		if err != nil || tn.ClientCertAuth {
			t.Fatalf("tenant %+v, %v: want ClientCertAuth off", tn, err)
		}
	})
}
