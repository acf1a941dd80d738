package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymq/relay/bench"
	"github.com/relaymq/relay/services"
)

// tlsRelay is a Relay with every listener (TCP, TLS, WebSocket, secure
// WebSocket) on a random port, anonymous clients refused, and a
// development CA for *.relay.test.
type tlsRelay struct {
	srv  *services.Server
	ca   string
	base string
}

func startTLSRelay(t *testing.T) *tlsRelay {
	t.Helper()
	const base = "relay.test"
	srv := startServer(t, services.EdgeConfig{
		NodeID:   "bench-tls",
		MQTTAddr: "127.0.0.1:0", MQTTSAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", WSSAddr: "127.0.0.1:0",
		TLS: services.TLSConfig{BaseDomain: base, DevCADir: filepath.Join(t.TempDir(), "ca")},
	})
	return &tlsRelay{srv: srv, ca: srv.Edge().DevCAFile(), base: base}
}

// credentials creates n credentials in a new tenant slug, as
// `relay credential create --count n --json` prints them.
func (r *tlsRelay) credentials(t *testing.T, slug string, n int) []bench.Credential {
	t.Helper()
	ctx := context.Background()
	adm := r.srv.Control().Admin()
	if _, err := adm.CreateTenant(ctx, "test", slug, slug); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateApp(ctx, "test", slug, "devices"); err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for i := 0; i < n; i++ {
		cr, err := adm.CreateCredential(ctx, "test", slug, "devices", "")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(cr)
		lines.Write(append(data, '\n'))
	}
	creds, err := bench.ReadCredentials(strings.NewReader(lines.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != n {
		t.Fatalf("read %d credentials of %d", len(creds), n)
	}
	return creds
}

// TestTransports runs the generator over TCP, TLS, WebSocket and secure
// WebSocket with a distinct credential per client: every message counted,
// every connection authenticated. Another tenant's credentials on this
// tenant's host name are refused.
func TestTransports(t *testing.T) {
	t.Parallel()
	r := startTLSRelay(t)
	acme := r.credentials(t, "acme", 8)
	beta := r.credentials(t, "beta", 2)
	edge := r.srv.Edge()
	host := "acme." + r.base
	urls := map[string]string{
		"tcp": "mqtt://" + edge.MQTTAddr().String(),
		"tls": "mqtts://" + edge.MQTTSAddr().String(),
		"ws":  "ws://" + edge.WSAddr().String() + "/mqtt",
		"wss": "wss://" + edge.WSSAddr().String(),
	}
	for _, name := range []string{"tcp", "tls", "ws", "wss"} {
		t.Run(name, func(t *testing.T) {
			tc, err := bench.TLSConfig(r.ca, false, host)
			if err != nil {
				t.Fatal(err)
			}
			cfg := bench.Config{Scenario: bench.Pairs, QoS: 1, Clients: 4, Rate: 500, Duration: time.Second, TLS: tc, Credentials: acme}
			if err := bench.ParseURL(&cfg, urls[name]); err != nil {
				t.Fatal(err)
			}
			res := run(t, cfg)
			checkCounts(t, res, 1, false)

			// 200 connections over 8 distinct credentials, 40 at a time
			// from 8 source addresses (an edge admits 16 handshakes at once
			// per address).
			ips, err := bench.ParseIPs("127.0.0.2-127.0.0.9")
			if err != nil {
				t.Fatal(err)
			}
			res = run(t, bench.Config{
				Scenario: bench.Conn, Addr: cfg.Addr, Transport: cfg.Transport, Path: cfg.Path, TLS: tc,
				Clients: 200, Concurrency: 40, Duration: 200 * time.Millisecond, Credentials: acme, LocalIPs: ips,
			})
			if c := res.Conn; c.Connected != 200 || c.Failed != 0 {
				t.Errorf("connected %d, failed %d: want 200, 0 (errors %q)", c.Connected, c.Failed, res.Errors)
			}
		})
	}
	t.Run("another tenant's credentials", func(t *testing.T) {
		tc, err := bench.TLSConfig(r.ca, false, host)
		if err != nil {
			t.Fatal(err)
		}
		// beta's usernames carry "@beta"; on acme's host name that is a
		// conflict, and without the suffix they are unknown to acme.
		bare := make([]bench.Credential, len(beta))
		for i, c := range beta {
			bare[i] = bench.Credential{Username: strings.TrimSuffix(c.Username, "@beta"), Password: c.Password}
		}
		for _, creds := range [][]bench.Credential{beta, bare} {
			cfg := bench.Config{Scenario: bench.Pairs, Clients: 1, Duration: 200 * time.Millisecond, TLS: tc, Credentials: creds}
			if err := bench.ParseURL(&cfg, urls["tls"]); err != nil {
				t.Fatal(err)
			}
			if _, err := bench.Run(context.Background(), cfg); !errors.Is(err, bench.ErrRefused) {
				t.Errorf("beta's credential %q on %s: err = %v, want ErrRefused", creds[0].Username, host, err)
			}
		}
	})
	t.Run("unverified certificate", func(t *testing.T) {
		// No CA: the development certificate is not trusted.
		cfg := bench.Config{Scenario: bench.Pairs, Clients: 1, Duration: 200 * time.Millisecond, Credentials: acme, ConnectTimeout: 5 * time.Second}
		if err := bench.ParseURL(&cfg, urls["tls"]); err != nil {
			t.Fatal(err)
		}
		if _, err := bench.Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("err = %v, want a certificate error", err)
		}
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url, addr, transport, path string
	}{
		{"mqtt://h", "h:1883", bench.TCP, ""},
		{"tcp://h:1", "h:1", bench.TCP, ""},
		{"mqtts://h", "h:8883", bench.TLS, ""},
		{"ssl://h:2", "h:2", bench.TLS, ""},
		{"ws://h", "h:8083", bench.WS, "/mqtt"},
		{"wss://h/x/y", "h:8084", bench.WSS, "/x/y"},
		{"ws://[::1]:9/mqtt", "[::1]:9", bench.WS, "/mqtt"},
	}
	for _, tt := range tests {
		var cfg bench.Config
		if err := bench.ParseURL(&cfg, tt.url); err != nil {
			t.Errorf("ParseURL(%q): %v", tt.url, err)
			continue
		}
		if cfg.Addr != tt.addr || cfg.Transport != tt.transport || cfg.Path != tt.path {
			t.Errorf("ParseURL(%q) = %q %q %q, want %q %q %q", tt.url, cfg.Addr, cfg.Transport, cfg.Path, tt.addr, tt.transport, tt.path)
		}
		if (tt.transport == bench.TLS || tt.transport == bench.WSS) && (cfg.TLS == nil || cfg.TLS.ServerName != "h") {
			t.Errorf("ParseURL(%q): TLS %+v, want server name h", tt.url, cfg.TLS)
		}
	}
	for _, bad := range []string{"http://h", "h:1883", "mqtt://", "::"} {
		var cfg bench.Config
		if err := bench.ParseURL(&cfg, bad); err == nil {
			t.Errorf("ParseURL(%q): no error", bad)
		}
	}
}

func TestReadCredentials(t *testing.T) {
	in := "# fleet\n\ndev1@acme s1\n{\"username\":\"dev2@acme\",\"password\":\"s2\",\"tenant\":\"acme\"}\n"
	got, err := bench.ReadCredentials(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []bench.Credential{{"dev1@acme", "s1"}, {"dev2@acme", "s2"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "# only a comment\n", "one-field\n", "a b c\n", "{\"password\":\"x\"}\n", "{bad json\n"} {
		if _, err := bench.ReadCredentials(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadCredentials(%q): no error", bad)
		}
	}
}

func TestParseIPs(t *testing.T) {
	got, err := bench.ParseIPs("127.0.0.2-127.0.0.4, ::1,10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[127.0.0.2 127.0.0.3 127.0.0.4 ::1 10.0.0.1]" {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"", "x", "127.0.0.5-127.0.0.4", "127.0.0.1-127.0.1.2", "::1-::2", "127.0.0.1-"} {
		if _, err := bench.ParseIPs(bad); err == nil {
			t.Errorf("ParseIPs(%q): no error", bad)
		}
	}
}
