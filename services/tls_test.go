package services_test

// MQTT over TLS (issue 6): the tenant chosen by SNI, bad input on the TLS
// and plain ports, certificate reload, and Mosquitto's clients against the
// development CA.

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaymq/relay/broker/listener"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
)

// TestTLSTenantBySNI: a credential of acme logs in over TLS by its short
// username on acme's host name; on globex's host name the same credential
// (short or full) is refused as bad username or password.
func TestTLSTenantBySNI(t *testing.T) {
	e := startTransports(t)
	acme := e.setup(t, "acme")
	globex := e.setup(t, "globex")
	acmeTLS := clientTLS(e.ca, hostOf("acme"))
	globexTLS := clientTLS(e.ca, hostOf("globex"))

	t.Run("short username on the tenant's host name", func(t *testing.T) {
		in := newInbox()
		sub := expectAccepted(t, "acme by SNI", "sni-sub", overTLS(e.mqtts, acmeTLS), withLogin(userOf(acme), acme.Password))
		subscribe(t, sub, "sni/#", 1, in)
		// Published on plain TCP with the full username: same tenant.
		pub := connect(t, e.addr, "sni-pub", withCred(acme))
		publish(t, pub, "sni/x", 1, false, "over TLS")
		in.exactly(t, 1)
		// A globex client on the same topic gets nothing.
		gin := newInbox()
		gsub := expectAccepted(t, "globex by SNI", "sni-gsub", overTLS(e.mqtts, globexTLS), withLogin(userOf(globex), globex.Password))
		subscribe(t, gsub, "sni/#", 1, gin)
		publish(t, pub, "sni/y", 1, false, "acme only")
		in.exactly(t, 2)
		if got := gin.all(); len(got) != 0 {
			t.Errorf("globex subscriber got acme's messages: %v", got)
		}
	})
	t.Run("full username on its own host name", func(t *testing.T) {
		expectAccepted(t, "full username", "sni-full", overTLS(e.mqtts, acmeTLS), withCred(acme))
	})
	t.Run("no SNI: tenant from the username", func(t *testing.T) {
		expectAccepted(t, "by IP", "sni-none", overTLS(e.mqtts, clientTLS(e.ca, "127.0.0.1")), withCred(acme))
		expectRefused(t, "short username without a host name", 4, overTLS(e.mqtts, clientTLS(e.ca, "localhost")), withLogin(userOf(acme), acme.Password))
	})
	t.Run("another tenant's host name", func(t *testing.T) {
		expectRefused(t, "acme short username on globex", 4, overTLS(e.mqtts, globexTLS), withLogin(userOf(acme), acme.Password))
		expectRefused(t, "acme full username on globex", 4, overTLS(e.mqtts, globexTLS), withCred(acme))
		// MQTT 5: reason code 0x86 bad user name or password.
		rc := rawTLS(t, e.mqtts, globexTLS)
		if ack := rc.connack(login(packet.V5, "sni-v5", acme.Username, acme.Password)); ack.ReasonCode != packet.BadUsernameOrPassword {
			t.Errorf("MQTT 5 on another tenant's host name: reason code 0x%02X, want 0x86", byte(ack.ReasonCode))
		}
		rc.expectClosed(waitTimeout)
	})
	t.Run("client certificate without a client CA is ignored", func(t *testing.T) {
		ca := newClientCA(t, "unconfigured")
		cert := ca.issue(t, acme.Username, nil)
		// No username: anonymous, refused (this server has none).
		expectRefused(t, "certificate, no client CA", 5, overTLS(e.mqtts, clientTLS(e.ca, hostOf("acme"), cert)))
	})
}

// TestTLSBadInput: plain MQTT and garbage on the TLS port, a client that
// does not trust the certificate, and HTTP on the plain MQTT port each end
// in a clean close, and a client connected meanwhile is not affected.
func TestTLSBadInput(t *testing.T) {
	e := startTransports(t, withTLS(func(c *services.TLSConfig) { c.HandshakeTimeout = time.Second }))
	acme := e.setup(t, "acme")
	lost := make(chan error, 1)
	in := newInbox()
	good := expectAccepted(t, "bystander", "bystander", overTLS(e.mqtts, clientTLS(e.ca, hostOf("acme"))), withCred(acme), onLost(lost))
	subscribe(t, good, "bad/#", 1, in)

	closedWithin := func(t *testing.T, what string, c net.Conn, send []byte) {
		t.Helper()
		defer c.Close()
		if send != nil {
			c.SetWriteDeadline(time.Now().Add(waitTimeout))
			c.Write(send)
		}
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		n, err := io.Copy(io.Discard, c)
		if isTimeout(err) {
			t.Errorf("%s: connection still open after %v", what, waitTimeout)
		}
		t.Logf("%s: closed after %d bytes from the server (%v)", what, n, err)
	}
	dial := func(t *testing.T, addr string) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	connectPacket := func() []byte {
		p := login(packet.V311, "plain-on-tls", acme.Username, acme.Password)
		b, err := p.Encode(nil, packet.V311)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("plain MQTT on the TLS port", func(t *testing.T) {
		closedWithin(t, "plain CONNECT on 8883", dial(t, e.mqtts), connectPacket())
	})
	t.Run("garbage on the TLS port", func(t *testing.T) {
		closedWithin(t, "garbage on 8883", dial(t, e.mqtts), bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff}, 64))
	})
	t.Run("silent client on the TLS port", func(t *testing.T) {
		start := time.Now()
		closedWithin(t, "silence on 8883", dial(t, e.mqtts), nil)
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("closed after %v, before the 1 s handshake timeout", took)
		}
	})
	t.Run("client does not trust the certificate", func(t *testing.T) {
		_, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", e.mqtts, &tls.Config{ServerName: hostOf("acme")})
		if err == nil {
			t.Fatal("TLS handshake succeeded without the development CA")
		}
		t.Logf("client: %v", err)
	})
	t.Run("HTTP on the MQTT port", func(t *testing.T) {
		closedWithin(t, "HTTP GET on 1883", dial(t, e.addr),
			[]byte("GET / HTTP/1.1\r\nHost: acme.relay.localhost:1883\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"))
	})
	t.Run("HTTP on the MQTT over TLS port", func(t *testing.T) {
		closedWithin(t, "HTTP GET on 8883", dial(t, e.mqtts), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	})

	pub := connect(t, e.addr, "bad-pub", withCred(acme))
	publish(t, pub, "bad/after", 1, false, "still here")
	in.exactly(t, 1)
	stillConnected(t, lost, "TLS client during bad input")
}

// TestTLSCertificateReload: new certificate files are served to new
// handshakes without a restart; a bad file keeps the previous certificate.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	a, err := listener.EnsureDevCA(filepath.Join(t.TempDir(), "a"), testBaseDomain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := listener.EnsureDevCA(filepath.Join(t.TempDir(), "b"), testBaseDomain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install := func(d *listener.DevCA) {
		t.Helper()
		// Key first, then certificate: a reload between the two sees a
		// mismatched pair and keeps the old one until both are there.
		copyTo(t, d.KeyFile, keyFile)
		copyTo(t, d.CertFile, certFile)
	}
	install(a)
	e := startTransports(t, withTLS(func(c *services.TLSConfig) {
		c.CertFile, c.KeyFile, c.ReloadInterval = certFile, keyFile, 50*time.Millisecond
	}))
	if e.caFile != "" {
		t.Fatalf("development CA %s in use although certificate files are configured", e.caFile)
	}
	acme := e.setup(t, "acme")
	// served returns the serial number of the certificate a new handshake
	// gets (without verifying it).
	served := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", e.mqtts,
			&tls.Config{ServerName: hostOf("acme"), InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	serial := func(d *listener.DevCA) string {
		crt, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return crt.Leaf.SerialNumber.String()
	}
	if got := served(); got != serial(a) {
		t.Fatalf("serving %s, want the first certificate %s", got, serial(a))
	}
	lost := make(chan error, 1)
	expectAccepted(t, "with the first CA", "reload-a", overTLS(e.mqtts, clientTLS(certPool(t, a.CAFile), hostOf("acme"))), withCred(acme), onLost(lost))

	install(b)
	start := time.Now()
	waitUntil(t, "the new certificate is served", func() bool { return served() == serial(b) })
	t.Logf("new certificate served %v after the files changed", time.Since(start).Round(time.Millisecond))
	expectAccepted(t, "with the second CA", "reload-b", overTLS(e.mqtts, clientTLS(certPool(t, b.CAFile), hostOf("acme"))), withCred(acme))
	stillConnected(t, lost, "connection made with the first certificate")

	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a few reload intervals
	if got := served(); got != serial(b) {
		t.Errorf("after a bad file: serving %s, want the previous certificate %s", got, serial(b))
	}
}

func copyTo(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// TestMosquittoTLS: mosquitto_sub and mosquitto_pub over TLS trusting the
// development CA (--cafile), as the README tells users.
func TestMosquittoTLS(t *testing.T) {
	e := startTransports(t)
	acme := e.setup(t, "acme")
	_, port, _ := net.SplitHostPort(e.mqtts)
	addr := net.JoinHostPort("localhost", port) // a name the development certificate covers
	tlsArgs := []string{"--cafile", e.caFile, "-u", acme.Username, "-P", acme.Password}
	sub := startMosqSub(t, addr, append(tlsArgs, "-i", "mosq-tls-sub", "-q", "1", "-t", "mosq/tls/#", "-C", "2")...)
	mosqPub(t, addr, append(tlsArgs, "-i", "mosq-tls-pub", "-q", "1", "-t", "mosq/tls/a", "-m", "hello over TLS")...)
	mosqPub(t, addr, append(tlsArgs, "-V", "mqttv5", "-i", "mosq-tls-pub5", "-q", "1", "-t", "mosq/tls/b", "-m", "MQTT 5 over TLS")...)
	got := sub.messages(t, 2)
	if got[0].Payload != "hello over TLS" || got[1].Payload != "MQTT 5 over TLS" {
		t.Errorf("got %v", got)
	}
}

// TestEdgeWithoutCertificates: relay edge with no certificate configured
// (and no development CA directory) keeps its TLS listeners closed and
// still serves MQTT over WebSocket.
func TestEdgeWithoutCertificates(t *testing.T) {
	srv, _ := startServer(t, withNATSListener())
	edge, err := services.NewEdge(services.EdgeConfig{
		NodeID: "edge-no-tls", NATSURLs: []string{srv.NATSURL()}, AllowAnonymous: true,
		MQTTAddr: "127.0.0.1:0", MQTTSAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", WSSAddr: "127.0.0.1:0",
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Start(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	if edge.MQTTSAddr() != nil || edge.WSSAddr() != nil || edge.DevCAFile() != "" {
		t.Errorf("TLS listeners open without certificates: mqtts %v, wss %v, CA %q", edge.MQTTSAddr(), edge.WSSAddr(), edge.DevCAFile())
	}
	if edge.WSAddr() == nil {
		t.Fatal("no WebSocket listener")
	}
	in := newInbox()
	c := expectAccepted(t, "anonymous over ws", "edge-ws", overWS(edge.WSAddr().String(), ""))
	subscribe(t, c, "edge/ws", 0, in)
	publish(t, connect(t, edge.MQTTAddr().String(), "edge-tcp"), "edge/ws", 0, false, "hi")
	in.exactly(t, 1)
}
