package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Transports the generator speaks (Config.Transport).
const (
	TCP = "tcp" // MQTT over TCP (the default)
	TLS = "tls" // MQTT over TLS
	WS  = "ws"  // MQTT over WebSocket, binary frames, subprotocol "mqtt"
	WSS = "wss" // MQTT over WebSocket over TLS
)

// ParseURL reads a broker URL into cfg's Addr, Transport and Path:
// mqtt:// or tcp:// (port 1883 by default), mqtts://, ssl:// or tls://
// (8883), ws:// (8083) and wss:// (8084); a WebSocket path defaults to
// /mqtt. cfg.TLS, if set, keeps its settings; its ServerName defaults to
// the URL's host (the SNI selects the tenant on Relay).
func ParseURL(cfg *Config, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("broker URL %q: want scheme://host[:port][/path]", raw)
	}
	var port string
	switch u.Scheme {
	case "mqtt", "tcp":
		cfg.Transport, port = TCP, "1883"
	case "mqtts", "ssl", "tls":
		cfg.Transport, port = TLS, "8883"
	case "ws":
		cfg.Transport, port = WS, "8083"
	case "wss":
		cfg.Transport, port = WSS, "8084"
	default:
		return fmt.Errorf("broker URL %q: unknown scheme %q (mqtt, tcp, mqtts, ssl, tls, ws, wss)", raw, u.Scheme)
	}
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), port)
	}
	cfg.Path = ""
	if cfg.Transport == WS || cfg.Transport == WSS {
		cfg.Path = u.EscapedPath()
		if cfg.Path == "" {
			cfg.Path = "/mqtt"
		}
	}
	if cfg.Transport == TLS || cfg.Transport == WSS {
		if cfg.TLS == nil {
			cfg.TLS = &tls.Config{}
		}
		if cfg.TLS.ServerName == "" {
			cfg.TLS.ServerName = u.Hostname()
		}
	}
	return nil
}

// TLSConfig builds the client TLS settings of --ca, --insecure and
// --server-name: caFile "" trusts the system's roots.
func TLSConfig(caFile string, insecure bool, serverName string) (*tls.Config, error) {
	c := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// dialBroker opens the byte stream of client n to the broker on cfg's
// transport; the TLS and WebSocket handshakes happen within ctx.
func dialBroker(ctx context.Context, cfg *Config, n int) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1} // MQTT has its own keep-alive; fewer system calls per connect
	if len(cfg.LocalIPs) > 0 {
		// Spread over source addresses, as a fleet is: brokers limit
		// handshakes and connects per source address.
		d.LocalAddr = &net.TCPAddr{IP: cfg.LocalIPs[n%len(cfg.LocalIPs)]}
	}
	switch cfg.Transport {
	case "", TCP:
		return d.DialContext(ctx, "tcp", cfg.Addr)
	case TLS:
		td := tls.Dialer{NetDialer: &d, Config: cfg.tlsConfig()}
		return td.DialContext(ctx, "tcp", cfg.Addr)
	case WS, WSS:
		wd := websocket.Dialer{
			TLSClientConfig:  cfg.tlsConfig(),
			Subprotocols:     []string{"mqtt"},
			HandshakeTimeout: cfg.ConnectTimeout,
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
		}
		scheme := "ws"
		if cfg.Transport == WSS {
			scheme = "wss"
		}
		// Dial the address; name the host of --server-name (else the
		// address) in the Host header, which selects the tenant as the
		// SNI does.
		addr, host := cfg.Addr, cfg.Addr
		if cfg.TLS != nil && cfg.TLS.ServerName != "" {
			if _, port, err := net.SplitHostPort(cfg.Addr); err == nil {
				host = net.JoinHostPort(cfg.TLS.ServerName, port)
			}
		}
		wd.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
		u := url.URL{Scheme: scheme, Host: host, Path: cfg.Path}
		ws, resp, err := wd.DialContext(ctx, u.String(), nil)
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket handshake: %s: %w", resp.Status, err)
			}
			return nil, fmt.Errorf("websocket handshake: %w", err)
		}
		if ws.Subprotocol() != "mqtt" {
			ws.Close()
			return nil, errors.New("websocket handshake: the broker did not accept subprotocol \"mqtt\"")
		}
		return &wsStream{ws: ws}, nil
	}
	return nil, fmt.Errorf("unknown transport %q", cfg.Transport)
}

// tlsConfig returns cfg.TLS (a copy), or defaults.
func (cfg *Config) tlsConfig() *tls.Config {
	if cfg.TLS == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return cfg.TLS.Clone()
}

// wsStream is a client's byte stream over WebSocket binary messages: each
// Write is one message (the generator writes whole packets, buffered);
// Read reads messages' payloads back to back. One reader and one writer
// at a time, as for a net.Conn used by the generator.
type wsStream struct {
	ws  *websocket.Conn
	r   io.Reader
	wmu sync.Mutex
}

func (c *wsStream) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: a %d frame where MQTT needs binary", typ)
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsStream) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a close frame (gorilla allows WriteControl alongside a
// writer, so a Write blocked on a broker that stopped reading does not
// hold it up) and closes the connection.
func (c *wsStream) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

func (c *wsStream) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsStream) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// Deadlines go through gorilla, which sets its own write deadline on the
// connection at every frame.
func (c *wsStream) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}
func (c *wsStream) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsStream) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// ReadCredentials reads per-client credentials, one per line: either
// "username password" or a JSON object with "username" and "password" (what
// `relay credential create --count N --json` prints). Blank lines and lines
// starting with '#' are skipped.
func ReadCredentials(r io.Reader) ([]Credential, error) {
	var out []Credential
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var c Credential
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		} else {
			f := strings.Fields(line)
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: want \"username password\" or a JSON object", n)
			}
			c.Username, c.Password = f[0], f[1]
		}
		if c.Username == "" {
			return nil, fmt.Errorf("line %d: no username", n)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no credentials")
	}
	return out, nil
}

// ParseIPs reads a list of source addresses: comma-separated addresses
// and ranges of IPv4 addresses that differ in the last byte
// ("127.0.0.2-127.0.0.33").
func ParseIPs(s string) ([]net.IP, error) {
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(lo)
		if a == nil {
			return nil, fmt.Errorf("%q: not an IP address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(hi)
		a4, b4 := a.To4(), b.To4()
		if a4 == nil || b4 == nil || !a4[:3:3].Equal(b4[:3:3]) || a4[3] > b4[3] {
			return nil, fmt.Errorf("%q: want a range of IPv4 addresses that differ in the last byte, low to high", part)
		}
		for i := int(a4[3]); i <= int(b4[3]); i++ {
			out = append(out, net.IPv4(a4[0], a4[1], a4[2], byte(i)))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no addresses")
	}
	return out, nil
}

// Credential is one client's user name and password (Config.Credentials).
type Credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}
