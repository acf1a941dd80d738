package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/relaymq/relay/bench"
	"github.com/relaymq/relay/broker/packet"
)

const benchUsage = `Usage: relay bench <scenario> [flags]

Load-test an MQTT broker (Relay or any other) from this process.

Scenarios:
  fanin     --clients publishers, each on its own topic → 1 subscriber on a wildcard
  fanout    1 publisher → --clients subscribers on its topic
  pairs     --clients publisher/subscriber pairs, each pair on its own topic
  latency   pairs (default 1) at a fixed --rate (default 1000 msg/s): p50/p90/p99/p99.9/max
  conn      open --clients idle connections (default 1000), --concurrency at a time;
            report connects/s, hold them for --duration, sample --pid's RSS
  forward   run the trivial in-process forwarder (the generator's ceiling) on --addr

Every payload carries its publisher, a sequence number and the send time, so
the result counts sent, acknowledged, received, duplicated, reordered and lost
messages exactly, and end-to-end latency for every message. Publishers stop
after --duration; delivered msg/s is every message received, per second from
the start of the window to the last delivery (the broker's backlog, if any,
counts as time; what it never delivers within --drain is lost).

Examples:
  relay bench fanin --addr 127.0.0.1:1883 --qos 1 --clients 10 --duration 10s
  relay bench latency --qos 1 --rate 1000 --json
  relay bench conn --clients 10000 --concurrency 200 --pid "$(pgrep -n mosquitto)"
  relay bench pairs --forwarder            # the generator's ceiling, in one process
  relay bench pairs --url wss://acme.relay.example.com/mqtt --ca ca.pem --credentials creds.jsonl
  relay bench conn -n 10000 --credentials creds.jsonl   # creds: relay credential create --count 10000 --json

Run "relay bench <scenario> --help" for the flags.
`

// runBench is "relay bench": the MQTT load generator (package bench).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(stdout, benchUsage)
			return 0
		}
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	name := args[0]
	if name == "help" {
		fmt.Fprint(stdout, benchUsage)
		return 0
	}
	if name == "forward" {
		return runBenchForward(ctx, args[1:], stdout, stderr)
	}
	scenario := bench.Scenario(name)
	known := false
	for _, s := range bench.Scenarios {
		known = known || s == scenario
	}
	if !known {
		fmt.Fprintf(stderr, "relay bench: unknown scenario %q\n\n%s", name, benchUsage)
		return 2
	}

	fs := newFlagSet("bench "+name, "Run the "+name+" scenario against an MQTT broker (see \"relay bench help\").\n-n is short for --clients.")
	cfg := bench.Config{Scenario: scenario}
	addr := fs.String("addr", "127.0.0.1:1883", "broker address, host:port")
	rawURL := fs.String("url", "", "broker URL (overrides --addr): mqtt:// or tcp:// (port 1883), mqtts://, ssl:// or tls:// (8883), ws:// (8083), wss:// (8084); WebSocket path default /mqtt")
	caFile := fs.String("ca", "", "TLS: PEM file of the CA that signed the broker's certificate (default: the system's roots)")
	insecure := fs.Bool("insecure", false, "TLS: do not verify the broker's certificate")
	serverName := fs.String("server-name", "", "TLS server name (SNI) and WebSocket Host, e.g. acme.relay.example.com (default: the URL's host)")
	localIPs := fs.String("local-ips", "", "source addresses to spread the connections over, e.g. 127.0.0.2-127.0.0.65 (an edge admits 16 TLS/WebSocket handshakes at once per address)")
	credFile := fs.String("credentials", "", "file of per-client credentials, one \"username password\" or JSON object per line (relay credential create --count N --json); client i uses line i mod N")
	qos := fs.Uint("qos", 0, "QoS of every publish and subscription: 0, 1 or 2")
	fs.IntVar(&cfg.Size, "size", 64, "payload size in bytes (at least 16)")
	fs.IntVar(&cfg.Clients, "clients", 0, "publishers (fanin), subscribers (fanout), pairs (pairs, latency) or connections (conn); default 10, latency 1, conn 1000")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measurement window (conn: how long the connections are held)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "messages per second per publisher, 0 for as fast as possible (latency: default 1000)")
	fs.IntVar(&cfg.Inflight, "inflight", 64, "QoS 1/2 messages in flight per publisher")
	fs.IntVar(&cfg.Concurrency, "concurrency", 100, "connections set up at once")
	fs.StringVar(&cfg.Username, "username", "", "user name sent in CONNECT; {i} becomes the client's index")
	fs.StringVar(&cfg.Password, "password", "", "password sent in CONNECT; {i} becomes the client's index")
	clean := fs.Bool("clean", true, "clean sessions (--clean=false: persistent sessions, removed again after the run)")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	fs.IntVar(&cfg.PID, "pid", 0, "broker process ID: conn reports its RSS growth per connection from /proc/PID/status")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 60*time.Second, "keep-alive sent in CONNECT")
	version := fs.String("mqtt-version", "3.1.1", "MQTT version: 3.1, 3.1.1 or 5")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "longest wait after the window for acknowledgements and messages in flight")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 10*time.Second, "limit on each connection's TCP connect, CONNACK and SUBACK")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", "bench", "first topic levels (a random run ID follows)")
	forwarder := fs.Bool("forwarder", false, "start the trivial in-process forwarder and run against it: the generator's ceiling")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the generator to this file")
	if code := parse(fs, shortClients(args[1:]), stderr); code != 0 {
		return max(code, 0)
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "relay bench %s: %s\n", name, fmt.Sprintf(format, a...))
		return code
	}
	cfg.Addr = *addr
	if *caFile != "" || *insecure || *serverName != "" {
		tc, err := bench.TLSConfig(*caFile, *insecure, *serverName)
		if err != nil {
			return fail(2, "TLS settings: %v", err)
		}
		cfg.TLS = tc
	}
	if *rawURL != "" {
		if err := bench.ParseURL(&cfg, *rawURL); err != nil {
			return fail(2, "--url: %v", err)
		}
	}
	if cfg.TLS != nil && (cfg.Transport == "" || cfg.Transport == bench.TCP) {
		return fail(2, "--ca, --insecure and --server-name need a --url with mqtts://, wss:// or ws://")
	}
	if *localIPs != "" {
		ips, err := bench.ParseIPs(*localIPs)
		if err != nil {
			return fail(2, "--local-ips: %v", err)
		}
		cfg.LocalIPs = ips
	}
	if *credFile != "" {
		f, err := os.Open(*credFile)
		if err != nil {
			return fail(2, "--credentials: %v", err)
		}
		cfg.Credentials, err = bench.ReadCredentials(f)
		f.Close()
		if err != nil {
			return fail(2, "--credentials %s: %v", *credFile, err)
		}
	}
	if *qos > 2 {
		return fail(2, "--qos %d: want 0, 1 or 2", *qos)
	}
	cfg.QoS = byte(*qos)
	switch *version {
	case "3.1", "3":
		cfg.Version = packet.V31
	case "3.1.1", "4":
		cfg.Version = packet.V311
	case "5", "5.0":
		cfg.Version = packet.V5
	default:
		return fail(2, "--mqtt-version %q: want 3.1, 3.1.1 or 5", *version)
	}
	cfg.Persistent = !*clean
	if !*quiet {
		cfg.Progress = stderr
	}

	if *forwarder {
		f, err := bench.NewForwarder(bench.ForwarderOptions{Logger: slog.New(slog.NewTextHandler(stderr, nil))})
		if err == nil {
			err = f.Start()
		}
		if err != nil {
			return fail(1, "%v", err)
		}
		defer f.Close()
		cfg.Addr, cfg.Transport, cfg.TLS = f.Addr().String(), bench.TCP, nil // it speaks plain TCP
		fmt.Fprintf(stderr, "forwarder listening on %s (in process)\n", cfg.Addr)
	}
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(1, "%v", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fail(1, "%v", err)
		}
		defer pprof.StopCPUProfile()
	}

	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return fail(1, "%v", err)
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail(1, "%v", err)
		}
	} else {
		res.WriteText(stdout)
	}
	if res.Scenario == bench.Conn && res.Conn.Connected == 0 {
		return 1
	}
	return 0
}

// shortClients rewrites -n (and -n=N) to --clients: one flag, so that
// RELAY_CLIENTS is read once.
func shortClients(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a == "--":
			return append(out, args[len(out):]...)
		case a == "-n" || a == "--n":
			a = "--clients"
		case strings.HasPrefix(a, "-n=") || strings.HasPrefix(a, "--n="):
			a = "--clients=" + a[strings.IndexByte(a, '=')+1:]
		}
		out = append(out, a)
	}
	return out
}

// runBenchForward is "relay bench forward": the trivial forwarder as a
// process of its own (pinned to a core like a broker, by bench/compare).
func runBenchForward(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench forward", "Run the trivial MQTT forwarder (no sessions, ACLs or queues: it acknowledges and copies\nevery PUBLISH to matching subscribers) until interrupted. Benchmarks against it measure\nthe generator's ceiling.")
	addr := fs.String("addr", "127.0.0.1:1883", "listen address, host:port")
	if code := parse(fs, args, stderr); code != 0 {
		return max(code, 0)
	}
	f, err := bench.NewForwarder(bench.ForwarderOptions{Addr: *addr, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if err == nil {
		err = f.Start()
	}
	if err != nil {
		fmt.Fprintln(stderr, "relay bench forward:", err)
		return 1
	}
	fmt.Fprintf(stdout, "forwarder listening on %s\n", f.Addr())
	<-ctx.Done()
	f.Close()
	return 0
}
