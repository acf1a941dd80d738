package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/term"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/services"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/tenant"
)

// The operator's commands work on the database `relay serve` uses (SQLite
// in --data-dir, or --database-url). Changes reach running edges within a
// second through the control plane's change feed.

// storeFlags are the flags that locate the control-plane database.
type storeFlags struct {
	dataDir     string
	databaseURL string
	keyFile     string
	asJSON      bool
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.dataDir, "data-dir", "./data", "data directory of relay serve (SQLite database relay.db and secret.key)")
	fs.StringVar(&s.databaseURL, "database-url", "", "control-plane database: postgres://… (default: SQLite in --data-dir)")
	fs.StringVar(&s.keyFile, "secret-key-file", "", "key of the keyed hash of generated secrets (default: --data-dir/secret.key)")
	fs.BoolVar(&s.asJSON, "json", false, "print machine-readable JSON")
}

func (s *storeFlags) control() services.ControlConfig {
	c := services.ControlConfig{DatabaseURL: s.databaseURL, SecretKeyFile: s.keyFile}
	c.DataDirDefaults(s.dataDir)
	return c
}

// parseMixed parses flags that may come before, between or after the
// positional arguments, then applies RELAY_<FLAG> for unset flags.
func parseMixed(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, int) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, -1
			}
			return nil, 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if code := parse(fs, nil, stderr); code != 0 {
		return nil, code
	}
	return pos, 0
}

// adminCommand is one "relay <noun> <verb>" command.
type adminCommand struct {
	usage string // after "relay <noun> <verb>"
	help  string
	nargs int // positional arguments
	flags func(fs *flag.FlagSet) func(ctx context.Context, c *services.Control, args []string, out io.Writer, asJSON bool) error
}

func runAdmin(ctx context.Context, noun string, args []string, stdout, stderr io.Writer) int {
	verbs := adminCommands[noun]
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "Usage: relay %s <command> [flags]\n\nCommands:\n", noun)
		for _, v := range sortedKeys(verbs) {
			fmt.Fprintf(stderr, "  relay %s %s %s\n      %s\n", noun, v, verbs[v].usage, verbs[v].help)
		}
		fmt.Fprintf(stderr, "\nRun \"relay %s <command> --help\" for its flags.\n", noun)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "relay %s: unknown command %q\n", noun, args[0])
		return 2
	}
	name := noun + " " + args[0]
	fs := newFlagSet(name, cmd.help+"\n\n  relay "+name+" "+cmd.usage)
	var sf storeFlags
	sf.register(fs)
	run := cmd.flags(fs)
	pos, code := parseMixed(fs, args[1:], stderr)
	if code != 0 {
		return max(code, 0)
	}
	if len(pos) != cmd.nargs {
		fmt.Fprintf(stderr, "usage: relay %s %s\n", name, cmd.usage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cc := sf.control()
	cc.Logger = log
	ctl, err := services.OpenControl(ctx, cc)
	if err != nil {
		fmt.Fprintf(stderr, "relay %s: %v\n", name, err)
		return 1
	}
	defer ctl.Close()
	if err := run(ctx, ctl, pos, stdout, sf.asJSON); err != nil {
		fmt.Fprintf(stderr, "relay %s: %v\n", name, err)
		if errors.Is(err, tenant.ErrInvalid) {
			return 2
		}
		return 1
	}
	return 0
}

const actorCLI = "cli"

// maxBulkCredentials bounds `relay credential create --count`.
const maxBulkCredentials = 100_000

// createCredentials creates n credentials of the app and prints each as
// it is made (the passwords are shown once): "username password" lines,
// or JSON lines, the format `relay bench --credentials` reads. A generated
// username that is taken (a 32-bit suffix) is drawn again.
func createCredentials(ctx context.Context, c *services.Control, slug, app, pattern string, n int, out io.Writer, asJSON bool) error {
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	for i := 0; i < n; i++ {
		var cr *admin.NewCredential
		var err error
		for try := 0; try < 5; try++ {
			if cr, err = c.Admin().CreateCredential(ctx, actorCLI, slug, app, pattern); !errors.Is(err, tenant.ErrConflict) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("credential %d of %d: %w", i+1, n, err)
		}
		if asJSON {
			err = enc.Encode(cr)
		} else {
			_, err = fmt.Fprintf(bw, "%s %s\n", cr.Username, cr.Password)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

var adminCommands = map[string]map[string]adminCommand{
	"tenant": {
		"create": {usage: "SLUG [--name NAME]", help: "create a tenant (its hostname is SLUG.<base-domain>)", nargs: 1,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				name := fs.String("name", "", "display name (default: the slug)")
				return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
					t, err := c.Admin().CreateTenant(ctx, actorCLI, a[0], *name)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, map[string]any{"slug": t.Slug, "name": t.Name, "status": t.Status})
					}
					fmt.Fprintf(out, "tenant %s created\n", t.Slug)
					return nil
				}
			}},
		"list": {usage: "", help: "list tenants", nargs: 0,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				return func(ctx context.Context, c *services.Control, _ []string, out io.Writer, asJSON bool) error {
					ts, err := c.Admin().ListTenants(ctx)
					if err != nil {
						return err
					}
					if asJSON {
						rows := make([]map[string]any, 0, len(ts))
						for _, t := range ts {
							rows = append(rows, map[string]any{"slug": t.Slug, "name": t.Name, "status": t.Status, "limits": t.Limits, "created_at": t.CreatedAt})
						}
						return printJSON(out, rows)
					}
					w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "SLUG\tNAME\tSTATUS\tCREATED")
					for _, t := range ts {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.Slug, t.Name, t.Status, t.CreatedAt.Format("2006-01-02 15:04"))
					}
					return w.Flush()
				}
			}},
		"suspend": {usage: "SLUG", help: "suspend a tenant: its clients are disconnected and its credentials stop working", nargs: 1,
			flags: statusCommand(tenant.Suspended)},
		"resume": {usage: "SLUG", help: "resume a suspended tenant", nargs: 1, flags: statusCommand(tenant.Active)},
		"limits": {usage: "SLUG [--max-connections N] [--max-message-rate N] [--max-retained N] [--max-session-queue N]",
			help: "set a tenant's plan limits (0: unlimited; they apply to new connections)", nargs: 1,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				var l tenant.Limits
				fs.IntVar(&l.MaxConnections, "max-connections", 0, "live MQTT connections of the tenant, all edges")
				fs.IntVar(&l.MaxMessageRate, "max-message-rate", 0, "publishes per second per client (faster clients are slowed)")
				fs.IntVar(&l.MaxRetained, "max-retained", 0, "retained messages of the tenant")
				fs.IntVar(&l.MaxSessionQueue, "max-session-queue", 0, "messages queued per offline session")
				return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
					t, err := c.Admin().SetLimits(ctx, actorCLI, a[0], l)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, map[string]any{"slug": t.Slug, "limits": t.Limits})
					}
					fmt.Fprintf(out, "tenant %s limits: %+v\n", t.Slug, t.Limits)
					return nil
				}
			}},
		"set": {usage: "SLUG --client-certs on|off",
			help: "change a tenant's settings: --client-certs on lets clients log in with a client certificate (verified against the edges' --client-ca) naming one of the tenant's credentials, without a password", nargs: 1,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				certs := fs.String("client-certs", "", "on or off: client-certificate logins (new connections)")
				return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
					var on bool
					switch *certs {
					case "on", "true":
						on = true
					case "off", "false":
					default:
						return fmt.Errorf("%w: --client-certs on|off is required", tenant.ErrInvalid)
					}
					t, err := c.Admin().SetClientCertAuth(ctx, actorCLI, a[0], on)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, map[string]any{"slug": t.Slug, "client_cert_auth": t.ClientCertAuth})
					}
					fmt.Fprintf(out, "tenant %s: client-certificate logins %s\n", t.Slug, map[bool]string{true: "on", false: "off"}[t.ClientCertAuth])
					return nil
				}
			}},
	},
	"app": {
		"create": {usage: "--tenant SLUG NAME", help: "create an app (it starts with one rule: allow publish and subscribe on #)", nargs: 1,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				slug := fs.String("tenant", "", "tenant slug")
				return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
					app, err := c.Admin().CreateApp(ctx, actorCLI, *slug, a[0])
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, map[string]any{"tenant": *slug, "name": app.Name})
					}
					fmt.Fprintf(out, "app %s created in tenant %s (rule: allow all #)\n", app.Name, *slug)
					return nil
				}
			}},
	},
	"credential": {
		"create": {usage: "--tenant SLUG --app NAME [--client-id-pattern P] [--count N]", help: "create an MQTT credential (--count: N of them, one per device); the password is shown once", nargs: 0,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				slug := fs.String("tenant", "", "tenant slug")
				app := fs.String("app", "", "app name")
				pattern := fs.String("client-id-pattern", "", "restrict client IDs: a filter where '-' separates levels and %u is the username, e.g. \"%u-+\"")
				count := fs.Int("count", 1, "how many credentials to create (1 to 100000); more than one prints one per line: \"username password\", or with --json one JSON object per line")
				return func(ctx context.Context, c *services.Control, _ []string, out io.Writer, asJSON bool) error {
					if *count < 1 || *count > maxBulkCredentials {
						return fmt.Errorf("%w: --count %d: want 1 to %d", tenant.ErrInvalid, *count, maxBulkCredentials)
					}
					if *count > 1 {
						return createCredentials(ctx, c, *slug, *app, *pattern, *count, out, asJSON)
					}
					cr, err := c.Admin().CreateCredential(ctx, actorCLI, *slug, *app, *pattern)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, cr)
					}
					fmt.Fprintf(out, "username: %s\npassword: %s\n(the password is not stored and will not be shown again)\n", cr.Username, cr.Password)
					return nil
				}
			}},
		"revoke": {usage: "--tenant SLUG USERNAME", help: "revoke a credential; its connected clients are disconnected", nargs: 1,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				slug := fs.String("tenant", "", "tenant slug")
				return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
					if err := c.Admin().RevokeCredential(ctx, actorCLI, *slug, a[0]); err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, map[string]any{"revoked": a[0]})
					}
					fmt.Fprintf(out, "credential %s revoked\n", a[0])
					return nil
				}
			}},
	},
	"apikey": {
		"create": {usage: "--tenant SLUG --app NAME [--scope publish|admin]", help: "create an HTTP API key (Authorization: Bearer <key>); shown once. A publish key publishes, reads and watches messages within its app's ACL; an admin key also manages the tenant (apps, credentials, API keys, ACL)", nargs: 0,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				slug := fs.String("tenant", "", "tenant slug")
				app := fs.String("app", "", "app name")
				scope := fs.String("scope", "publish", "publish (messages only) or admin (also manages the tenant)")
				return func(ctx context.Context, c *services.Control, _ []string, out io.Writer, asJSON bool) error {
					sc, err := tenant.ParseAPIKeyScope(*scope)
					if err != nil {
						return err
					}
					k, err := c.Admin().CreateAPIKey(ctx, actorCLI, *slug, *app, sc)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, k)
					}
					fmt.Fprintf(out, "key: %s\nscope: %s\n(not stored; it will not be shown again)\n", k.Key, k.Scope)
					return nil
				}
			}},
	},
	"acl": {
		"add": {usage: "--tenant SLUG --subject app:NAME|cred:USER|role:NAME allow|deny publish|subscribe|all FILTER",
			help: "add a rule; FILTER is an MQTT filter that may use %c (client ID) and %u (username) as whole levels; deny beats allow, nothing allowed is denied", nargs: 3,
			flags: ruleCommand(true)},
		"remove": {usage: "--tenant SLUG --subject SUBJECT allow|deny publish|subscribe|all FILTER", help: "remove a rule", nargs: 3,
			flags: ruleCommand(false)},
		"list": {usage: "--tenant SLUG", help: "list a tenant's rules", nargs: 0,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				slug := fs.String("tenant", "", "tenant slug")
				return func(ctx context.Context, c *services.Control, _ []string, out io.Writer, asJSON bool) error {
					rules, err := c.Admin().ListRules(ctx, *slug)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, rules)
					}
					w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(w, "SUBJECT\tEFFECT\tACTION\tFILTER")
					for _, r := range rules {
						fmt.Fprintf(w, "%s\t%s\n", r.Subject, strings.ReplaceAll(ruleText(r.Rule), " ", "\t"))
					}
					return w.Flush()
				}
			}},
	},
	"user": {
		"create": {usage: "--email EMAIL (--operator | --tenant SLUG) [--password-stdin]",
			help: "create a dashboard user: a platform operator (sees and suspends every tenant) or the owner of a tenant; the password is asked for, or read from stdin", nargs: 0,
			flags: func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
				email := fs.String("email", "", "the user's email address (their sign-in name)")
				operator := fs.Bool("operator", false, "make a platform operator")
				slug := fs.String("tenant", "", "make the owner of this tenant")
				fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
				return func(ctx context.Context, c *services.Control, _ []string, out io.Writer, asJSON bool) error {
					if *operator == (*slug != "") {
						return fmt.Errorf("%w: give either --operator or --tenant SLUG", tenant.ErrInvalid)
					}
					pw, err := readPassword(*fromStdin)
					if err != nil {
						return err
					}
					u, err := c.CreateUser(ctx, *email, pw, *slug)
					if err != nil {
						return err
					}
					if asJSON {
						return printJSON(out, map[string]any{"email": u.Email, "role": u.Role, "tenant": *slug})
					}
					if *operator {
						fmt.Fprintf(out, "operator %s created: sign in to the dashboard (relay serve --http-addr, default http://localhost:18083)\n", u.Email)
					} else {
						fmt.Fprintf(out, "user %s created as owner of tenant %s\n", u.Email, *slug)
					}
					return nil
				}
			}},
	},
}

// stdin is where readPassword reads (tests replace it).
var stdin io.Reader = os.Stdin

// readPassword reads a new password: the first line of stdin with
// --password-stdin, else asked twice on the terminal without echo.
func readPassword(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if f, ok := stdin.(*os.File); !ok || f != os.Stdin || !term.IsTerminal(fd) {
		return "", fmt.Errorf("%w: stdin is not a terminal: use --password-stdin", tenant.ErrInvalid)
	}
	fmt.Fprint(os.Stderr, "Password (at least 10 characters): ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(os.Stderr, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", err
	}
	if string(pw) != string(again) {
		return "", fmt.Errorf("%w: the passwords differ", tenant.ErrInvalid)
	}
	return string(pw), nil
}

func statusCommand(st tenant.Status) func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
	return func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
		return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
			t, err := c.Admin().SetStatus(ctx, actorCLI, a[0], st)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, map[string]any{"slug": t.Slug, "status": t.Status})
			}
			fmt.Fprintf(out, "tenant %s %s\n", t.Slug, t.Status)
			return nil
		}
	}
}

func ruleCommand(add bool) func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
	return func(fs *flag.FlagSet) func(context.Context, *services.Control, []string, io.Writer, bool) error {
		slug := fs.String("tenant", "", "tenant slug")
		subject := fs.String("subject", "", "who the rule is for: app:NAME, cred:USERNAME or role:NAME")
		return func(ctx context.Context, c *services.Control, a []string, out io.Writer, asJSON bool) error {
			r, err := parseRuleArgs(a)
			if err != nil {
				return err
			}
			if add {
				err = c.Admin().AddRule(ctx, actorCLI, *slug, *subject, r)
			} else {
				err = c.Admin().RemoveRule(ctx, actorCLI, *slug, *subject, r)
			}
			if err != nil {
				return err
			}
			verb := "added"
			if !add {
				verb = "removed"
			}
			if asJSON {
				return printJSON(out, map[string]any{verb: ruleText(r), "subject": *subject})
			}
			fmt.Fprintf(out, "rule %s: %s %s\n", verb, *subject, ruleText(r))
			return nil
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func parseRuleArgs(a []string) (auth.Rule, error) { return admin.ParseRule(a[0], a[1], a[2]) }

func ruleText(r auth.Rule) string { return admin.RuleString(r) }

// runMigrate applies pending migrations.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("migrate", "Apply the database migrations (relay serve and relay control also do it on start).")
	var sf storeFlags
	sf.register(fs)
	if code := parse(fs, args, stderr); code != 0 {
		return max(code, 0)
	}
	cc := sf.control()
	cc.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctl, err := services.OpenControl(ctx, cc)
	if err != nil {
		fmt.Fprintln(stderr, "relay migrate:", err)
		return 1
	}
	defer ctl.Close()
	fmt.Fprintln(stdout, "database is up to date")
	return 0
}

// runControl runs the control plane against an external NATS.
func runControl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("control", "Run the control plane: the tenancy database and the authentication service that\nedges ask at CONNECT (over NATS, in a queue group: run several for load sharing).")
	var sf storeFlags
	sf.register(fs)
	natsURL := fs.String("nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated")
	var na natsAuthFlags
	na.register(fs)
	baseDomain := fs.String("base-domain", "relay.localhost", "tenant host names are <slug>.<base-domain>")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	// The HTTP API joins the backbone as a node with its own Bus, which
	// creates or updates Relay's streams: their settings must be the
	// edges'.
	httpAddr := fs.String("http-addr", "", "serve the dashboard and HTTP API on this address, e.g. :18083 (empty disables); then the stream flags below must match the edges'")
	var hc services.ControlHTTPConfig
	fs.IntVar(&hc.Bus.Replicas, "replicas", 1, "JetStream replicas for Relay's streams and buckets (as the edges' --replicas)")
	fs.IntVar(&hc.Bus.SessionQueueMax, "max-session-queue", 1000, "as the edges' --max-session-queue")
	fs.Int64Var(&hc.Bus.MessageMaxBytes, "queue-max-bytes", -1, "as the edges' --queue-max-bytes")
	fs.DurationVar(&hc.Bus.MessageMaxAge, "session-expiry", 24*time.Hour, "as the edges' --session-expiry")
	fs.IntVar(&hc.Bus.MaxControlLine, "nats-max-control-line", 4096, "as the edges' --nats-max-control-line")
	fs.IntVar(&hc.MaxPacketSize, "max-packet-size", 1<<20, "as the edges' --max-packet-size: larger HTTP messages are refused")
	var proxies prefixList
	fs.Var(&proxies, "trusted-proxies", trustedProxiesUsage)
	if code := parse(fs, args, stderr); code != 0 {
		return max(code, 0)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(stderr, "relay control:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cc := sf.control()
	cc.Logger, cc.BaseDomain = log, *baseDomain
	ctl, err := services.OpenControl(ctx, cc)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	defer ctl.Close()
	nc, err := nats.Connect(*natsURL, append([]nats.Option{nats.Name("relay-control"), nats.MaxReconnects(-1)}, na.options()...)...)
	if err != nil {
		log.Error("connecting to NATS", "err", err)
		return 1
	}
	defer nc.Drain()
	if err := ctl.Serve(ctx, nc); err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if *httpAddr != "" {
		hc.Addr = *httpAddr
		hc.API.TrustedProxies = proxies
		if err := ctl.ServeHTTP(ctx, nc, hc); err != nil {
			log.Error("start failed", "err", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "Relay control plane %s is running (NATS %s)\n", version(), *natsURL)
	if a := ctl.HTTPAddr(); a != nil {
		fmt.Fprintf(stdout, "  HTTP  http://%s\n", a)
	}
	<-ctx.Done()
	log.Info("shutting down")
	ctl.Close() // before the NATS connection drains
	return 0
}

// trustedProxiesUsage is the help of --trusted-proxies (serve, control).
const trustedProxiesUsage = "reverse proxies in front of the HTTP port (comma-separated CIDRs or addresses, e.g. 10.0.0.0/8): client addresses for sign-in and API key throttling are then read from their X-Forwarded-For"

// prefixList is a flag of comma-separated CIDRs or single addresses.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	if p == nil {
		return ""
	}
	out := make([]string, len(*p))
	for i, x := range *p {
		out[i] = x.String()
	}
	return strings.Join(out, ",")
}

func (p *prefixList) Set(v string) error {
	*p = nil
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return fmt.Errorf("%q: want a CIDR (10.0.0.0/8) or an address", f)
			}
			*p = append(*p, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		x, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q: want a CIDR (10.0.0.0/8) or an address", f)
		}
		*p = append(*p, x.Masked())
	}
	return nil
}
