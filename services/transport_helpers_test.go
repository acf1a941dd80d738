package services_test

// Helpers for the TLS, WebSocket and client-certificate tests
// (tls_test.go, ws_test.go, clientcert_test.go): a Server with every
// listener on a random local port and the development CA in its data
// directory, paho and raw clients over TLS and WebSocket, and a client CA
// that issues client certificates.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services"
)

// testBaseDomain is the base domain of the transport tests: tenant acme's
// host name is acme.relay.localhost. Nothing resolves it: the tests dial
// 127.0.0.1 and send the name as SNI or Host header.
const testBaseDomain = "relay.localhost"

// hostOf returns a tenant's host name.
func hostOf(slug string) string { return slug + "." + testBaseDomain }

// withTransports opens MQTT over TLS, WebSocket and secure WebSocket on
// random local ports, with the base domain testBaseDomain (and, without
// certificate files, the development CA in the data directory).
func withTransports() serverOption {
	return func(c *services.ServeConfig) {
		c.Edge.MQTTSAddr, c.Edge.WSAddr, c.Edge.WSSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.Control.BaseDomain = testBaseDomain
	}
}

// withTLS changes the edge's TLS configuration.
func withTLS(f func(*services.TLSConfig)) serverOption {
	return func(c *services.ServeConfig) { f(&c.Edge.TLS) }
}

// transportEnv is a running Server (refusing anonymous clients) with all
// its listeners.
type transportEnv struct {
	*tenancyEnv
	mqtts, ws, wss string
	// caFile and ca are the development CA (empty, nil with certificate
	// files configured).
	caFile string
	ca     *x509.CertPool
}

// startTransports starts a Server with every listener.
func startTransports(t testing.TB, opts ...serverOption) *transportEnv {
	t.Helper()
	e := startTenancy(t, append([]serverOption{withTransports()}, opts...)...)
	edge := e.srv.Edge()
	for name, a := range map[string]net.Addr{"MQTTS": edge.MQTTSAddr(), "WS": edge.WSAddr(), "WSS": edge.WSSAddr()} {
		if a == nil {
			t.Fatalf("server has no %s listener", name)
		}
	}
	te := &transportEnv{
		tenancyEnv: e, mqtts: edge.MQTTSAddr().String(), ws: edge.WSAddr().String(), wss: edge.WSSAddr().String(),
		caFile: edge.DevCAFile(),
	}
	if te.caFile != "" {
		te.ca = certPool(t, te.caFile)
	}
	return te
}

// certPool reads a PEM CA file.
func certPool(t testing.TB, file string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s: no CA certificate", file)
	}
	return pool
}

// clientTLS is a client's TLS configuration: trust roots, the server name
// it asks for (SNI; it is also the name verified), client certificates.
func clientTLS(roots *x509.CertPool, serverName string, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: serverName, Certificates: certs, MinVersion: tls.VersionTLS12}
}

// ---------------------------------------------------------------------------
// paho over TLS and WebSocket

// viaURL makes a paho client connect to u (ssl://, ws://, wss://) instead
// of the address it was given.
func viaURL(u string) clientOption {
	return func(o *mqtt.ClientOptions) {
		o.Servers = nil
		o.AddBroker(u)
	}
}

// overTLS connects paho over TLS to addr with cfg.
func overTLS(addr string, cfg *tls.Config) clientOption {
	return func(o *mqtt.ClientOptions) {
		viaURL("ssl://" + addr)(o)
		o.SetTLSConfig(cfg)
	}
}

// overWS connects paho over WebSocket to addr at /mqtt, sending host as
// the Host header ("" keeps addr).
func overWS(addr, host string) clientOption {
	return func(o *mqtt.ClientOptions) {
		viaURL("ws://" + addr + "/mqtt")(o)
		if host != "" {
			o.SetHTTPHeaders(http.Header{"Host": {host}})
		}
	}
}

// overWSS connects paho over secure WebSocket to addr at /mqtt with cfg
// (whose ServerName is also sent as Host).
func overWSS(addr string, cfg *tls.Config) clientOption {
	return func(o *mqtt.ClientOptions) {
		viaURL("wss://" + addr + "/mqtt")(o)
		o.SetTLSConfig(cfg)
		if cfg.ServerName != "" {
			_, port, _ := net.SplitHostPort(addr)
			o.SetHTTPHeaders(http.Header{"Host": {net.JoinHostPort(cfg.ServerName, port)}})
		}
	}
}

// withUser logs in with a username and no password.
func withUser(user string) clientOption {
	return func(o *mqtt.ClientOptions) { o.SetUsername(user).SetPassword("") }
}

// expectRefused connects and fails the test unless the CONNACK has return
// code want (MQTT 3.1.1: 4 bad username or password, 5 not authorized).
func expectRefused(t testing.TB, what string, want byte, opts ...clientOption) {
	t.Helper()
	_, tok := tryConnect(t, "unused:0", "refused", opts...)
	if tok.Error() == nil {
		t.Errorf("%s: connected, want return code %d", what, want)
		return
	}
	if got := tok.ReturnCode(); got != want {
		t.Errorf("%s: return code %d (%v), want %d", what, got, tok.Error(), want)
	}
}

// expectAccepted connects and fails the test unless it is accepted.
func expectAccepted(t testing.TB, what, id string, opts ...clientOption) mqtt.Client {
	t.Helper()
	c, tok := tryConnect(t, "unused:0", id, opts...)
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v (return code %d)", what, err, tok.ReturnCode())
	}
	return c
}

// ---------------------------------------------------------------------------
// Raw clients over TLS and WebSocket

// rawTLS opens a raw MQTT client over TLS.
func rawTLS(t testing.TB, addr string, cfg *tls.Config) *rawClient {
	t.Helper()
	d := &net.Dialer{Timeout: waitTimeout}
	nc, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	return rawOver(t, nc)
}

// rawOver makes a raw MQTT client of an established connection.
func rawOver(t testing.TB, nc net.Conn) *rawClient {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, rd: packet.NewReader(bufio.NewReader(nc), 0), version: packet.V311}
}

// dialWS opens a WebSocket to the /mqtt endpoint of a ws:// or wss:// URL
// base with subprotocols; a refusal returns the HTTP response.
func dialWS(t testing.TB, base string, cfg *tls.Config, header http.Header, protos ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: waitTimeout, TLSClientConfig: cfg}
	ws, resp, err := d.Dial(base+"/mqtt", header)
	if err == nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, err
}

// wsCloseCode reads until the server's close frame and returns its code
// (-1 if the connection ends without one).
func wsCloseCode(t testing.TB, ws *websocket.Conn) int {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, _, err := ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		if err != nil {
			if isTimeout(err) {
				t.Fatal("the server did not close the WebSocket")
			}
			return -1
		}
	}
}

// ---------------------------------------------------------------------------
// Client certificates

// clientCA is a CA for client certificates, its certificate in file.
type clientCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

// newClientCA creates a CA and writes its certificate to a PEM file.
func newClientCA(t testing.TB, name string) *clientCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &clientCA{cert: cert, key: key, file: file}
}

// issue returns a client certificate with the common name cn and the
// given DNS and URI subject alternative names.
func (ca *clientCA) issue(t testing.TB, cn string, dnsNames []string, uris ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
