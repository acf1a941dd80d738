package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck probes a running Relay from inside its container (the
// image has no shell, curl or nc): an HTTP GET that must answer 200
// (--url, e.g. the dashboard's /healthz), or a TCP connect (--tcp, e.g.
// an edge's MQTT port). Exit 0 healthy, 1 not.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("healthcheck", "Probe a running Relay: GET --url must answer 200, or --tcp must accept a connection.\nFor container health checks (docker compose healthcheck: [\"CMD\", \"relay\", \"healthcheck\", \"--tcp\", \"127.0.0.1:1883\"]).")
	url := fs.String("url", "", "HTTP URL that must answer 200, e.g. http://127.0.0.1:18083/healthz")
	tcp := fs.String("tcp", "", "host:port that must accept a TCP connection, e.g. 127.0.0.1:1883")
	timeout := fs.Duration("timeout", 3*time.Second, "limit on the probe")
	if code := parse(fs, args, stderr); code != 0 {
		return max(code, 0)
	}
	if (*url == "") == (*tcp == "") {
		fmt.Fprintln(stderr, "relay healthcheck: give exactly one of --url and --tcp")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *tcp != "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", *tcp)
		if err != nil {
			fmt.Fprintln(stderr, "unhealthy:", err)
			return 1
		}
		c.Close()
		fmt.Fprintln(stdout, "ok")
		return 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "relay healthcheck:", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "unhealthy: %s: %s\n", resp.Status, body)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
