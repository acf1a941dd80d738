// Command relay runs Relay, the multi-tenant MQTT messaging service.
//
//	relay serve   all-in-one: embedded NATS + JetStream, MQTT edge, HTTP
//	relay edge    one MQTT edge node against an external NATS cluster
//
// Every flag can also be set from the environment as RELAY_<FLAG>, with
// dashes as underscores (--mqtt-addr → RELAY_MQTT_ADDR).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/broker"
	"github.com/relaymq/relay/natsbus"
	"github.com/relaymq/relay/services"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Relay — multi-tenant MQTT messaging on a NATS backbone.

Usage:
  relay <command> [flags]

Commands:
  serve       run everything in one process (embedded NATS with JetStream on disk, SQLite)
  edge        run one MQTT edge node against an external NATS cluster
  control     run the control plane (tenancy database, authentication service) against NATS
  migrate     apply the database migrations
  tenant      create, list, suspend and resume tenants
  app         create apps
  credential  create and revoke MQTT credentials
  apikey      create HTTP API keys
  acl         add, list and remove ACL rules
  user        create dashboard users (platform operators, tenant owners)
  healthcheck probe a running Relay (HTTP /healthz or a TCP port), for container health checks
  version     print the version
  bench       MQTT load generator (fan-in, fan-out, pairs, latency, connections)
  help        show this help, or "relay help <command>"

Every flag can also be set from the environment: --mqtt-addr is RELAY_MQTT_ADDR.
Run "relay <command> --help" for the flags of a command.
`

// run is main without the process: tests call it with their own context
// and writers. It returns the exit code (0 ok, 1 failure, 2 usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "edge":
		return runEdge(ctx, args[1:], stdout, stderr)
	case "control":
		return runControl(ctx, args[1:], stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args[1:], stdout, stderr)
	case "tenant", "app", "credential", "apikey", "acl", "user":
		return runAdmin(ctx, args[0], args[1:], stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "relay", version())
		return 0
	case "help", "-h", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "relay: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// commonFlags are the flags every MQTT-serving command has.
type commonFlags struct {
	mqttAddr       string
	nodeID         string
	allowAnonymous bool
	logLevel       string
	logFormat      string
	limits         broker.Options
	bus            natsbus.Options
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.mqttAddr, "mqtt-addr", ":1883", "MQTT over TCP listen address (empty disables)")
	fs.StringVar(&c.nodeID, "node-id", "", "this node's unique ID (default: host name plus a random suffix)")
	fs.BoolVar(&c.allowAnonymous, "allow-anonymous", false, "let clients without credentials into the default tenant (like Mosquitto's allow_anonymous); otherwise they get CONNACK 0x05")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&c.limits.MaxPacketSize, "max-packet-size", 1<<20, "largest MQTT packet accepted, in bytes")
	fs.IntVar(&c.limits.MaxInflight, "max-inflight", 32, "unacknowledged QoS 1/2 messages per client and direction")
	fs.IntVar(&c.limits.MaxQueued, "max-queued", 10000, "messages queued for a connected client before new ones are dropped")
	fs.IntVar(&c.bus.SessionQueueMax, "max-session-queue", 1000, "messages queued for one persistent session (offline or behind); beyond it the oldest are dropped")
	fs.IntVar(&c.limits.MaxConnections, "max-connections", 0, "connections this node accepts (0: unlimited)")
	fs.DurationVar(&c.limits.SessionExpiry, "session-expiry", 24*time.Hour, "how long a persistent session outlives its connection")
	fs.DurationVar(&c.limits.ConnectTimeout, "connect-timeout", 10*time.Second, "time a new connection has to send CONNECT")
	fs.DurationVar(&c.limits.MaxKeepAlive, "max-keepalive", 0, "cap on the keep-alive clients ask for (0: none)")
	fs.DurationVar(&c.bus.NodeTTL, "node-ttl", 15*time.Second, "a node silent this long is dead; survivors then publish its clients' wills")
	fs.DurationVar(&c.bus.AckWait, "ack-wait", 30*time.Second, "a queued message unacknowledged this long is offered again (after an edge crash)")
	fs.Int64Var(&c.bus.MessageMaxBytes, "queue-max-bytes", -1, "bytes of queued messages for offline sessions, all sessions together; oldest dropped beyond (-1: unlimited)")
}

// transportFlags are the TLS and WebSocket flags of relay serve and relay
// edge.
type transportFlags struct {
	mqttsAddr, wsAddr, wssAddr string
	cert, key, certDir         string
	clientCA, baseDomain       string
}

func (t *transportFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.mqttsAddr, "mqtts-addr", ":8883", "MQTT over TLS listen address (empty disables)")
	fs.StringVar(&t.wsAddr, "ws-addr", ":8083", "MQTT over WebSocket listen address, path /mqtt (empty disables)")
	fs.StringVar(&t.wssAddr, "wss-addr", ":8084", "MQTT over secure WebSocket listen address, path /mqtt (empty disables)")
	fs.StringVar(&t.cert, "tls-cert", "", "TLS certificate chain (PEM) for --mqtts-addr and --wss-addr; reloaded when it changes")
	fs.StringVar(&t.key, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&t.certDir, "tls-cert-dir", "", "directory of per-host certificates (NAME.crt or NAME.pem with NAME.key), chosen by SNI; instead of --tls-cert")
	fs.StringVar(&t.clientCA, "client-ca", "", "CA bundle (PEM) for client certificates: TLS clients are asked for one, and tenants that allow it (relay tenant set --client-certs on) accept it instead of a password")
	fs.StringVar(&t.baseDomain, "base-domain", services.DefaultBaseDomain, "tenant host names are <slug>.<base-domain> (TLS SNI, WebSocket Host)")
}

// apply puts the flags into an edge's configuration.
func (t *transportFlags) apply(c *services.EdgeConfig) {
	c.MQTTSAddr, c.WSAddr, c.WSSAddr = t.mqttsAddr, t.wsAddr, t.wssAddr
	c.TLS.CertFile, c.TLS.KeyFile, c.TLS.CertDir = t.cert, t.key, t.certDir
	c.TLS.ClientCAFile, c.TLS.BaseDomain = t.clientCA, t.baseDomain
}

// printTransports prints the TLS and WebSocket addresses of a started
// edge.
func (t *transportFlags) printTransports(w io.Writer, e *services.Edge) {
	if a := e.MQTTSAddr(); a != nil {
		fmt.Fprintf(w, "  MQTTS mqtts://%s  (tenant by host name: <slug>.%s)\n", a, t.baseDomain)
	}
	if a := e.WSAddr(); a != nil {
		fmt.Fprintf(w, "  WS    ws://%s/mqtt\n", a)
	}
	if a := e.WSSAddr(); a != nil {
		fmt.Fprintf(w, "  WSS   wss://%s/mqtt\n", a)
	}
	if ca := e.DevCAFile(); ca != "" {
		fmt.Fprintf(w, "  TLS   development CA %s (clients: mosquitto_sub --cafile %s …; production: --tls-cert/--tls-key or --tls-cert-dir)\n", ca, ca)
	}
}

func (c *commonFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", c.logFormat)
}

// parse parses args, then fills every flag not given on the command line
// from RELAY_<FLAG>. It returns an exit code > 0 (or -1 for --help) when
// the caller should stop.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return -1
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relay %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	code := 0
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "RELAY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				fmt.Fprintf(stderr, "relay %s: %s=%q: %v\n", fs.Name(), env, v, err)
				code = 2
			}
		}
	})
	return code
}

func newFlagSet(name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: relay %s [flags]\n\n%s\n\nFlags (each also read from RELAY_<FLAG>, e.g. --mqtt-addr from RELAY_MQTT_ADDR):\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "Run all of Relay in one process: an embedded NATS server with JetStream\npersisted under --data-dir, an MQTT edge, and the HTTP endpoint.")
	var cf commonFlags
	cf.register(fs)
	dataDir := fs.String("data-dir", "./data", "directory for all state (JetStream files)")
	httpAddr := fs.String("http-addr", ":18083", "HTTP listen address for health checks (empty disables)")
	natsAddr := fs.String("nats-addr", "", "expose the embedded NATS on HOST:PORT so that other edges (relay edge --nats-url) can join")
	databaseURL := fs.String("database-url", "", "control-plane database: postgres://… (default: SQLite relay.db in --data-dir)")
	keyFile := fs.String("secret-key-file", "", "key of the keyed hash of generated secrets (default: --data-dir/secret.key)")
	var proxies prefixList
	fs.Var(&proxies, "trusted-proxies", trustedProxiesUsage)
	var tf transportFlags
	tf.register(fs)
	if code := parse(fs, args, stderr); code != 0 {
		return max(code, 0)
	}
	log, err := cf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relay serve:", err)
		return 2
	}
	sc := services.ServeConfig{
		DataDir: *dataDir, NATSAddr: *natsAddr, HTTPAddr: *httpAddr, Logger: log,
		Control: services.ControlConfig{DatabaseURL: *databaseURL, SecretKeyFile: *keyFile, BaseDomain: tf.baseDomain},
		Edge: services.EdgeConfig{
			NodeID: cf.nodeID, MQTTAddr: cf.mqttAddr, AllowAnonymous: cf.allowAnonymous, Broker: cf.limits, Bus: cf.bus,
		},
	}
	tf.apply(&sc.Edge)
	sc.API.TrustedProxies = proxies
	srv, err := services.NewServer(sc)
	if err != nil {
		fmt.Fprintln(stderr, "relay serve:", err)
		return 2
	}
	if err := srv.Start(ctx); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	fmt.Fprintf(stdout, "Relay %s is running (node %s, data in %s)\n", version(), srv.Edge().NodeID(), *dataDir)
	if a := srv.Edge().MQTTAddr(); a != nil {
		fmt.Fprintf(stdout, "  MQTT  mqtt://%s\n", a)
	}
	tf.printTransports(stdout, srv.Edge())
	if a := srv.HTTPAddr(); a != nil {
		fmt.Fprintf(stdout, "  HTTP  http://%s\n", a)
	}
	if host, _, _ := net.SplitHostPort(*natsAddr); *natsAddr != "" && host != "127.0.0.1" && host != "localhost" && host != "::1" {
		log.Warn("the embedded NATS is reachable beyond this host and has no authentication: anyone who reaches it can read every tenant's messages; expose it only on a private network", "nats_addr", *natsAddr)
	}
	if u := srv.NATSURL(); u != "" {
		fmt.Fprintf(stdout, "  NATS  %s  (other edges: relay edge --nats-url %s)\n", u, u)
	}
	if !cf.allowAnonymous {
		fmt.Fprintln(stdout, "  Anonymous clients are refused (--allow-anonymous lets them into the default tenant);")
		fmt.Fprintln(stdout, "  create credentials with: relay tenant create acme && relay app create --tenant acme app1 && relay credential create --tenant acme --app app1")
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := srv.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("edge", "Run one stateless MQTT edge node against an external NATS cluster with JetStream.\nEdges on one NATS behave as one broker.")
	var cf commonFlags
	cf.register(fs)
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	var na natsAuthFlags
	na.register(fs)
	replicas := fs.Int("replicas", 1, "JetStream replicas for Relay's streams and buckets (3 in a production cluster)")
	var tf transportFlags
	tf.register(fs)
	maxControlLine := fs.Int("nats-max-control-line", 4096, "the NATS servers' max_control_line; MQTT topics whose subject would exceed it are refused (set 262144 with deploy/nats configs)")
	if code := parse(fs, args, stderr); code != 0 {
		return max(code, 0)
	}
	log, err := cf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relay edge:", err)
		return 2
	}
	var cfg services.EdgeConfig
	cfg.NodeID, cfg.MQTTAddr, cfg.AllowAnonymous, cfg.Broker, cfg.Logger = cf.nodeID, cf.mqttAddr, cf.allowAnonymous, cf.limits, log
	cfg.NATSURLs = strings.Split(*natsURL, ",")
	cfg.NATSOptions = na.options()
	cfg.Bus = cf.bus
	cfg.Bus.Replicas = *replicas
	cfg.Bus.MaxControlLine = *maxControlLine
	tf.apply(&cfg)
	e, err := services.NewEdge(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "relay edge:", err)
		return 2
	}
	if err := e.Start(ctx); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	fmt.Fprintf(stdout, "Relay edge %s is running (node %s, NATS %s)\n", version(), e.NodeID(), *natsURL)
	if a := e.MQTTAddr(); a != nil {
		fmt.Fprintf(stdout, "  MQTT  mqtt://%s\n", a)
	}
	tf.printTransports(stdout, e)
	<-ctx.Done()
	log.Info("shutting down")
	if err := e.Close(); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// natsAuthFlags are the credentials a process presents to an external NATS.
type natsAuthFlags struct {
	creds, user, password, caFile string
}

func (n *natsAuthFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.creds, "nats-creds", "", "NATS user credentials file (JWT + nkey seed)")
	fs.StringVar(&n.user, "nats-user", "", "NATS user name (with --nats-password; RELAY_NATS_PASSWORD keeps it off the command line)")
	fs.StringVar(&n.password, "nats-password", "", "NATS password")
	fs.StringVar(&n.caFile, "nats-ca", "", "CA certificate to verify the NATS servers' TLS certificates")
}

func (n *natsAuthFlags) options() []nats.Option {
	var o []nats.Option
	if n.creds != "" {
		o = append(o, nats.UserCredentials(n.creds))
	}
	if n.user != "" {
		o = append(o, nats.UserInfo(n.user, n.password))
	}
	if n.caFile != "" {
		o = append(o, nats.RootCAs(n.caFile))
	}
	return o
}
