package listener

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/relaymq/relay/internal/testlog"
)

const waitTimeout = 5 * time.Second

// testLogger writes to t.Log until the test ends (testlog).
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelDebug) }

// devCerts generates a development CA for relay.test in a temporary
// directory and returns it with Certificates serving its certificate.
func devCerts(t testing.TB, opts CertOptions) (*DevCA, *Certificates, *x509.CertPool) {
	t.Helper()
	dev, err := EnsureDevCA(t.TempDir(), "relay.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if opts.CertDir == "" {
		opts.CertFile, opts.KeyFile = dev.CertFile, dev.KeyFile
	}
	opts.Logger = testLogger(t)
	certs, err := NewCertificates(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { certs.Close() })
	return dev, certs, caPool(t, dev.CAFile)
}

func caPool(t testing.TB, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in", file)
	}
	return pool
}

// start starts l on a local port and closes it when the test ends.
func start(t testing.TB, mk func(net.Listener) (*Listener, error)) *Listener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := mk(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// acceptOne accepts one connection in the background.
func acceptOne(l net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			ch <- c
		}
		close(ch)
	}()
	return ch
}

func waitConn(t testing.TB, ch <-chan net.Conn) Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("Accept failed")
		}
		t.Cleanup(func() { c.Close() })
		return c.(Conn)
	case <-time.After(waitTimeout):
		t.Fatal("no connection accepted")
	}
	return nil
}

// expectClosed checks that the server closes c without sending anything
// but TLS or HTTP bytes the caller ignores.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not close the connection")
	}
}

// ---------------------------------------------------------------------------
// TLS

func TestTLSListener(t *testing.T) {
	_, certs, pool := devCerts(t, CertOptions{})
	l := start(t, func(raw net.Listener) (*Listener, error) {
		return NewTLS(raw, certs.ServerConfig(), Options{Logger: testLogger(t), HandshakeTimeout: 500 * time.Millisecond})
	})
	addr := l.Addr().String()

	t.Run("SNI", func(t *testing.T) {
		ch := acceptOne(l)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "Acme.Relay.Test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc := waitConn(t, ch)
		if got := sc.ServerName(); got != "acme.relay.test" {
			t.Errorf("ServerName = %q, want acme.relay.test", got)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("read %q, %v", buf, err)
		}
	})
	t.Run("no SNI", func(t *testing.T) {
		ch := acceptOne(l)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err) // the development certificate covers 127.0.0.1
		}
		defer c.Close()
		if got := waitConn(t, ch).ServerName(); got != "" {
			t.Errorf("ServerName = %q, want empty (an IP address is not sent as SNI)", got)
		}
	})
	// Bad input: none of it reaches Accept.
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"plain MQTT", []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"silence (handshake timeout)", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.send)
			expectClosed(t, c)
		})
	}
	t.Run("untrusted client", func(t *testing.T) {
		_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "acme.relay.test"}) // system roots
		if err == nil {
			t.Fatal("handshake with an unknown CA succeeded")
		}
	})
}

// TestTLSMaxHandshakes: with one handshake at a time, a client that
// stalls its handshake holds the next one back until it times out.
func TestTLSMaxHandshakes(t *testing.T) {
	_, certs, pool := devCerts(t, CertOptions{})
	const timeout = 400 * time.Millisecond
	l := start(t, func(raw net.Listener) (*Listener, error) {
		return NewTLS(raw, certs.ServerConfig(), Options{Logger: testLogger(t), HandshakeTimeout: timeout, MaxHandshakes: 1})
	})
	stalled, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	time.Sleep(50 * time.Millisecond) // accepted, handshaking
	ch := acceptOne(l)
	begin := time.Now()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "x.relay.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitConn(t, ch)
	if took := time.Since(begin); took < timeout/2 {
		t.Errorf("second handshake took %v: not held back by the stalled one (limit 1)", took)
	}
	expectClosed(t, stalled)
}

// TestTLSHandshakesPerSource: one host holding idle sockets takes only
// its own share of the handshake slots; another host still gets in, and a
// socket beyond the share is closed at once.
func TestTLSHandshakesPerSource(t *testing.T) {
	_, certs, pool := devCerts(t, CertOptions{})
	l := start(t, func(raw net.Listener) (*Listener, error) {
		return NewTLS(raw, certs.ServerConfig(), Options{
			Logger: testLogger(t), HandshakeTimeout: 5 * time.Second, MaxHandshakes: 8, MaxHandshakesPerSource: 4,
		})
	})
	addr := l.Addr().String()
	from := func(ip string) *net.Dialer {
		return &net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	}
	for range 4 {
		c, err := from("127.0.0.1").Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // accepted, handshaking (silently)
	extra, err := from("127.0.0.1").Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	begin := time.Now()
	expectClosed(t, extra)
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("a socket over its source's share was closed after %v, not at once", took)
	}
	ch := acceptOne(l)
	c, err := tls.DialWithDialer(from("127.0.0.2"), "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "x.relay.test"})
	if err != nil {
		t.Fatalf("a client from another address was kept out: %v", err)
	}
	defer c.Close()
	waitConn(t, ch)
}

// ---------------------------------------------------------------------------
// WebSocket

func wsURL(l net.Listener, scheme, path string) string {
	return scheme + "://" + l.Addr().String() + path
}

func TestWebSocketListener(t *testing.T) {
	l := start(t, func(raw net.Listener) (*Listener, error) {
		return NewWebSocket(raw, nil, Options{Logger: testLogger(t), MaxMessageSize: 1024})
	})
	dial := func(t *testing.T, header http.Header, protos ...string) (*websocket.Conn, Conn) {
		t.Helper()
		ch := acceptOne(l)
		d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: waitTimeout}
		ws, resp, err := d.Dial(wsURL(l, "ws", "/mqtt"), header)
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		t.Cleanup(func() { ws.Close() })
		if ws.Subprotocol() != protos[0] {
			t.Errorf("subprotocol %q, want %q", ws.Subprotocol(), protos[0])
		}
		return ws, waitConn(t, ch)
	}

	t.Run("stream over frames", func(t *testing.T) {
		ws, sc := dial(t, http.Header{"Host": {"Acme.Relay.Test:8083"}}, "mqtt")
		if got := sc.ServerName(); got != "acme.relay.test" {
			t.Errorf("ServerName = %q, want acme.relay.test (Host without port)", got)
		}
		// One packet in two messages, then two in one [MQTT-6.0.0-2].
		for _, m := range []string{"hel", "lo", "wor", "ld!"} {
			if err := ws.WriteMessage(websocket.BinaryMessage, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		if err := ws.WriteMessage(websocket.PingMessage, []byte("p")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 11)
		sc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "helloworld!" {
			t.Fatalf("read %q, %v", buf, err)
		}
		if _, err := sc.Write([]byte("back")); err != nil {
			t.Fatal(err)
		}
		typ, got, err := ws.ReadMessage()
		if err != nil || typ != websocket.BinaryMessage || string(got) != "back" {
			t.Fatalf("client read %d %q %v", typ, got, err)
		}
	})
	t.Run("read deadline keeps writes", func(t *testing.T) {
		ws, sc := dial(t, nil, "mqttv3.1")
		sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var ne net.Error
		if _, err := sc.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read after deadline: %v, want a timeout", err)
		}
		if _, err := sc.Write([]byte("bye")); err != nil {
			t.Fatalf("write after a read timeout: %v", err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != "bye" {
			t.Fatalf("client read %q %v", got, err)
		}
		if _, err := sc.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after a failed read succeeded")
		}
	})
	t.Run("client close is EOF", func(t *testing.T) {
		ws, sc := dial(t, nil, "mqtt")
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		sc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := sc.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read: %v, want EOF", err)
		}
	})
	closeCode := func(t *testing.T, ws *websocket.Conn) int {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(waitTimeout))
		for {
			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			if err != nil {
				t.Fatalf("read: %v, want a close frame", err)
			}
		}
	}
	t.Run("text frame", func(t *testing.T) {
		ws, sc := dial(t, nil, "mqtt")
		ws.WriteMessage(websocket.TextMessage, []byte("hello"))
		sc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, ErrTextFrame) {
			t.Fatalf("read: %v, want ErrTextFrame", err)
		}
		sc.Close()
		if code := closeCode(t, ws); code != websocket.CloseUnsupportedData {
			t.Errorf("close code %d, want 1003", code)
		}
	})
	t.Run("oversize message", func(t *testing.T) {
		ws, sc := dial(t, nil, "mqtt")
		ws.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{1}, 2000))
		sc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadAll(sc); !errors.Is(err, websocket.ErrReadLimit) {
			t.Fatalf("read: %v, want the read limit", err)
		}
		sc.Close()
		if code := closeCode(t, ws); code != websocket.CloseMessageTooBig {
			t.Errorf("close code %d, want 1009", code)
		}
	})
	for _, tc := range []struct {
		name   string
		path   string
		protos []string
		plain  bool // a plain HTTP GET
		status int
	}{
		{"wrong subprotocol", "/mqtt", []string{"chat"}, false, http.StatusBadRequest},
		{"no subprotocol", "/mqtt", nil, false, http.StatusBadRequest},
		{"wrong path", "/ws", []string{"mqtt"}, false, http.StatusNotFound},
		{"plain HTTP", "/mqtt", nil, true, http.StatusUpgradeRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			if tc.plain {
				resp, err := http.Get(wsURL(l, "http", tc.path))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				status = resp.StatusCode
			} else {
				d := websocket.Dialer{Subprotocols: tc.protos, HandshakeTimeout: waitTimeout}
				ws, resp, err := d.Dial(wsURL(l, "ws", tc.path), nil)
				if err == nil {
					ws.Close()
					t.Fatal("upgrade succeeded")
				}
				if resp == nil {
					t.Fatalf("no HTTP response: %v", err)
				}
				status = resp.StatusCode
			}
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
		})
	}
	t.Run("root path", func(t *testing.T) {
		ch := acceptOne(l)
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout}
		ws, _, err := d.Dial(wsURL(l, "ws", "/"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		waitConn(t, ch)
	})
}

func TestSecureWebSocketListener(t *testing.T) {
	_, certs, pool := devCerts(t, CertOptions{})
	l := start(t, func(raw net.Listener) (*Listener, error) {
		return NewWebSocket(raw, certs.ServerConfig("http/1.1"), Options{Logger: testLogger(t)})
	})
	dial := func(sni string, header http.Header) (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{
			Subprotocols: []string{"mqtt"}, HandshakeTimeout: waitTimeout,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: sni},
		}
		return d.Dial(wsURL(l, "wss", "/mqtt"), header)
	}
	t.Run("SNI", func(t *testing.T) {
		ch := acceptOne(l)
		ws, _, err := dial("acme.relay.test", http.Header{"Host": {"acme.relay.test:8084"}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		sc := waitConn(t, ch)
		if got := sc.ServerName(); got != "acme.relay.test" {
			t.Errorf("ServerName = %q", got)
		}
		if sc.ConnectionState().Version < tls.VersionTLS12 {
			t.Errorf("TLS state missing: %+v", sc.ConnectionState())
		}
	})
	t.Run("Host differs from SNI", func(t *testing.T) {
		ws, resp, err := dial("acme.relay.test", http.Header{"Host": {"globex.relay.test"}})
		if err == nil {
			ws.Close()
			t.Fatal("upgrade succeeded")
		}
		if resp == nil || resp.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("response %v, %v; want 421", resp, err)
		}
	})
	t.Run("plain WebSocket on the TLS port", func(t *testing.T) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
		expectClosed(t, c)
	})
}

// ---------------------------------------------------------------------------
// Certificates

func TestCertificatesDir(t *testing.T) {
	// Three certificates: the development one (*.relay.test, relay.test,
	// localhost), one for exact.relay.test and one for *.other.test.
	dir := t.TempDir()
	base, err := EnsureDevCA(filepath.Join(t.TempDir(), "a"), "relay.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	copyPair(t, base, dir, "wild")
	exact, err := EnsureDevCA(filepath.Join(t.TempDir(), "b"), "exact.relay.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "secret"), 0o755) // Kubernetes style
	copyFile(t, exact.CertFile, filepath.Join(dir, "secret", "tls.crt"))
	copyFile(t, exact.KeyFile, filepath.Join(dir, "secret", "tls.key"))
	other, err := EnsureDevCA(filepath.Join(t.TempDir(), "c"), "other.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	copyPair(t, other, dir, "aaa-other")                   // first by name, not the default
	copyFile(t, base.CAFile, filepath.Join(dir, "ca.pem")) // no key: skipped

	certs, err := NewCertificates(CertOptions{CertDir: dir, BaseDomain: "relay.test", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer certs.Close()
	for _, tc := range []struct{ sni, want string }{
		{"exact.relay.test", "*.exact.relay.test"}, // exact.relay.test is a name of the second
		{"acme.relay.test", "*.relay.test"},        // wildcard
		{"ACME.relay.test.", "*.relay.test"},
		{"x.other.test", "*.other.test"},
		{"", "*.relay.test"}, // default: *.BaseDomain
		{"unknown.example", "*.relay.test"},
	} {
		crt, _ := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
		if got := crt.Leaf.DNSNames[0]; got != tc.want {
			t.Errorf("SNI %q: certificate for %q, want %q", tc.sni, got, tc.want)
		}
	}
}

func copyPair(t testing.TB, d *DevCA, dir, name string) {
	t.Helper()
	copyFile(t, d.CertFile, filepath.Join(dir, name+".pem"))
	copyFile(t, d.KeyFile, filepath.Join(dir, name+".key"))
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCertificatesReload(t *testing.T) {
	dir := t.TempDir()
	a, _ := EnsureDevCA(filepath.Join(t.TempDir(), "a"), "relay.test", time.Now())
	b, _ := EnsureDevCA(filepath.Join(t.TempDir(), "b"), "relay.test", time.Now())
	copyPair(t, a, dir, "server")
	certs, err := NewCertificates(CertOptions{
		CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"),
		ReloadInterval: -1, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer certs.Close()
	serial := func() string {
		crt, _ := certs.GetCertificate(&tls.ClientHelloInfo{ServerName: "x.relay.test"})
		return crt.Leaf.SerialNumber.String()
	}
	leafSerial := func(d *DevCA) string {
		crt, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return crt.Leaf.SerialNumber.String()
	}
	if serial() != leafSerial(a) {
		t.Fatal("not serving the first certificate")
	}
	if err := certs.Reload(); err != nil || serial() != leafSerial(a) {
		t.Fatalf("unchanged files: %v", err)
	}
	// A new certificate with the old key does not load: kept.
	copyFile(t, b.CertFile, filepath.Join(dir, "server.pem"))
	if err := certs.Reload(); err == nil || serial() != leafSerial(a) {
		t.Fatalf("mismatched key: err %v; serving %s", err, serial())
	}
	// Then the key arrives.
	copyFile(t, b.KeyFile, filepath.Join(dir, "server.key"))
	if err := certs.Reload(); err != nil || serial() != leafSerial(b) {
		t.Fatalf("new pair: err %v; serving %s, want %s", err, serial(), leafSerial(b))
	}
	// Garbage: kept.
	os.WriteFile(filepath.Join(dir, "server.pem"), []byte("garbage"), 0o600)
	if err := certs.Reload(); err == nil || serial() != leafSerial(b) {
		t.Fatalf("garbage: err %v", err)
	}
	// A file that disappears: kept.
	os.Remove(filepath.Join(dir, "server.key"))
	if err := certs.Reload(); err == nil || serial() != leafSerial(b) {
		t.Fatalf("missing key: err %v", err)
	}
}

func TestEnsureDevCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	d, err := EnsureDevCA(dir, "Relay.Localhost", now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Created, ",") != "ca,server" {
		t.Errorf("first run created %v", d.Created)
	}
	for _, f := range []string{d.KeyFile, filepath.Join(dir, "ca.key")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	pool := caPool(t, d.CAFile)
	crt, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"acme.relay.localhost", "relay.localhost", "localhost", "127.0.0.1", "::1"} {
		if _, err := crt.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	caBefore, _ := os.ReadFile(d.CAFile)

	d2, err := EnsureDevCA(dir, "relay.localhost", now.Add(time.Hour))
	if err != nil || len(d2.Created) != 0 {
		t.Fatalf("second run: created %v, %v; want reuse", d2.Created, err)
	}
	d3, err := EnsureDevCA(dir, "other.localhost", now)
	if err != nil || strings.Join(d3.Created, ",") != "server" {
		t.Fatalf("new base domain: created %v, %v; want a new server certificate only", d3.Created, err)
	}
	d4, err := EnsureDevCA(dir, "other.localhost", now.Add(400*24*time.Hour))
	if err != nil || strings.Join(d4.Created, ",") != "server" {
		t.Fatalf("expired server certificate: created %v, %v", d4.Created, err)
	}
	if caAfter, _ := os.ReadFile(d.CAFile); !bytes.Equal(caBefore, caAfter) {
		t.Error("the CA changed although it was valid")
	}
	d5, err := EnsureDevCA(dir, "other.localhost", now.Add(11*365*24*time.Hour))
	if err != nil || strings.Join(d5.Created, ",") != "ca,server" {
		t.Fatalf("expired CA: created %v, %v", d5.Created, err)
	}
	os.WriteFile(d.CertFile, []byte("garbage"), 0o644)
	d6, err := EnsureDevCA(dir, "other.localhost", now.Add(11*365*24*time.Hour))
	if err != nil || strings.Join(d6.Created, ",") != "server" {
		t.Fatalf("garbage certificate: created %v, %v", d6.Created, err)
	}
}
