package services_test

// Multi-tenancy end to end: real MQTT clients (paho and raw) against a real
// Server whose tenants, apps, credentials and rules are made through the
// control plane. Isolation between tenants, credentials and their CONNACK
// codes, ACL rules and their live changes, revocation, suspension, the
// authentication service going away, brute-force throttling, plan limits,
// and the rate of authenticated CONNECTs.

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaymq/relay/auth"
	"github.com/relaymq/relay/broker/packet"
	"github.com/relaymq/relay/services/admin"
	"github.com/relaymq/relay/tenant"
)

// ---------------------------------------------------------------------------
// Isolation

// TestTenantIsolation: two tenants use the same client IDs and topics and
// never see each other: live messages, retained messages, persistent
// sessions, shared subscriptions and client-ID takeover all stay within
// the tenant.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	tenants := []string{"acme", "globex"}
	creds := map[string]*admin.NewCredential{}
	for _, s := range tenants {
		creds[s] = e.setup(t, s)
	}

	t.Run("wildcard subscribers", func(t *testing.T) {
		// Topics that would reach another tenant if a topic were pasted
		// into a NATS subject unescaped.
		topics := []string{"sensor/1/temp", "sensor/1/temp", "sensor/2/hum", "globex/x", "acme/x",
			"../globex/x", "x.>.y", "*", ">", "rly/msg/globex/0/x", "a//b/", "%2E"}
		watchers := map[string]*inbox{}
		for _, s := range tenants {
			watchers[s] = newInbox()
			subscribe(t, connect(t, e.addr, "watcher", withCred(creds[s])), "#", 1, watchers[s])
		}
		for _, s := range tenants {
			pub := connect(t, e.addr, "publisher", withCred(creds[s]))
			for i, tp := range topics {
				publish(t, pub, tp, byte(i%2), false, fmt.Sprintf("%s-%d", s, i))
			}
		}
		for _, s := range tenants {
			got := watchers[s].exactly(t, len(topics))
			for _, m := range got {
				if !strings.HasPrefix(m.Payload, s+"-") {
					t.Errorf("tenant %s's '#' subscriber got another tenant's message %v", s, m)
				}
			}
		}
	})

	t.Run("retained", func(t *testing.T) {
		acmePub := connect(t, e.addr, "publisher", withCred(creds["acme"]))
		publish(t, acmePub, "config/device", 1, true, "acme-config")
		publish(t, acmePub, "config/acme-only", 1, true, "acme-only")

		// The publishing tenant sees them (so the lookups below work).
		mine := newInbox()
		subscribe(t, connect(t, e.addr, "reader", withCred(creds["acme"])), "config/+", 1, mine)
		if got := sortedStrings(mine.exactly(t, 2)); !slices.Equal(got, []string{
			`config/acme-only="acme-only"(q1,rtrue)`, `config/device="acme-config"(q1,rtrue)`}) {
			t.Fatalf("acme's own retained messages: %v", got)
		}
		// The other tenant sees none of them, by exact name or wildcard.
		filters := []string{"config/device", "config/acme-only", "config/+", "config/#", "#", "+/+"}
		others := make([]*inbox, len(filters))
		for i, f := range filters {
			others[i] = newInbox()
			subscribe(t, connect(t, e.addr, fmt.Sprintf("reader-%d", i), withCred(creds["globex"])), f, 1, others[i])
		}
		time.Sleep(quietPeriod) // retained messages follow SUBACK
		for i, f := range filters {
			if got := others[i].all(); len(got) != 0 {
				t.Errorf("globex subscribing %q got acme's retained messages %v", f, got)
			}
		}
		// Same topic, each tenant its own retained message. (Only the
		// retained deliveries count: a new subscriber joining a route that
		// globex's readers above keep open can also get, live, a message
		// published just before its SUBSCRIBE.)
		retained := func(s string, want ...string) {
			t.Helper()
			in := newInbox()
			subscribe(t, connect(t, e.addr, "reader", withCred(creds[s])), "config/device", 1, in)
			if len(want) > 0 {
				in.wait(t, len(want))
			}
			time.Sleep(quietPeriod)
			var got []string
			for _, m := range in.all() {
				if !strings.HasPrefix(m.Payload, s+"-") && m.Payload != "" {
					t.Errorf("tenant %s's subscriber to config/device got another tenant's message %v", s, m)
				}
				if m.Retained {
					got = append(got, m.Payload)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("tenant %s: retained config/device %q, want %q", s, got, want)
			}
		}
		globexPub := connect(t, e.addr, "publisher", withCred(creds["globex"]))
		publish(t, globexPub, "config/device", 1, true, "globex-config")
		retained("acme", "acme-config")
		retained("globex", "globex-config")
		// Clearing it in one tenant leaves the other's.
		publish(t, globexPub, "config/device", 1, true, "")
		retained("acme", "acme-config")
		retained("globex")
	})

	t.Run("persistent sessions", func(t *testing.T) {
		for _, s := range tenants {
			c := connect(t, e.addr, "device-1", withCred(creds[s]), persistent())
			subscribe(t, c, "cmd/device-1", 1, nil)
			disconnect(c)
		}
		queued := map[string]int{"acme": 3, "globex": 2}
		for _, s := range tenants {
			pub := connect(t, e.addr, "commander", withCred(creds[s]))
			for i := range queued[s] {
				publish(t, pub, "cmd/device-1", 1, false, fmt.Sprintf("%s-cmd-%d", s, i))
			}
		}
		for _, s := range tenants {
			in := newInbox()
			_, present := connectSession(t, e.addr, "device-1", withCred(creds[s]), persistent(), onMessage(in))
			if !present {
				t.Errorf("tenant %s: Session Present = false for its stored session", s)
			}
			var want []string
			for i := range queued[s] {
				want = append(want, received{Topic: "cmd/device-1", Payload: fmt.Sprintf("%s-cmd-%d", s, i), QoS: 1}.String())
			}
			if got := sortedStrings(in.exactly(t, queued[s])); !slices.Equal(got, want) {
				t.Errorf("tenant %s's session device-1 got %v, want %v", s, got, want)
			}
		}
	})

	t.Run("shared subscriptions", func(t *testing.T) {
		groups := map[string]*inbox{}
		for _, s := range tenants {
			groups[s] = newInbox()
			for m := range 2 {
				subscribe(t, connect(t, e.addr, fmt.Sprintf("worker-%d", m), withCred(creds[s])), "$share/g/jobs", 1, groups[s])
			}
		}
		n := map[string]int{"acme": 12, "globex": 7}
		for _, s := range tenants {
			pub := connect(t, e.addr, "dispatcher", withCred(creds[s]))
			for i := range n[s] {
				publish(t, pub, "jobs", 1, false, fmt.Sprintf("%s-job-%d", s, i))
			}
		}
		for _, s := range tenants {
			var want []string
			for i := range n[s] {
				want = append(want, received{Topic: "jobs", Payload: fmt.Sprintf("%s-job-%d", s, i), QoS: 1}.String())
			}
			slices.Sort(want)
			if got := sortedStrings(groups[s].exactly(t, n[s])); !slices.Equal(got, want) {
				t.Errorf("tenant %s's share group g got %v, want each of its own jobs once: %v", s, got, want)
			}
		}
	})

	t.Run("client IDs", func(t *testing.T) {
		lostA, lostB := make(chan error, 1), make(chan error, 1)
		a := connect(t, e.addr, "same-id", withCred(creds["acme"]), onLost(lostA))
		inA := newInbox()
		subscribe(t, a, "ping", 1, inA)
		connect(t, e.addr, "same-id", withCred(creds["globex"]), onLost(lostB))
		time.Sleep(quietPeriod)
		stillConnected(t, lostA, "acme's same-id after globex's same-id connected")
		publish(t, connect(t, e.addr, "pinger", withCred(creds["acme"])), "ping", 1, false, "still-here")
		inA.exactly(t, 1)

		// The same client ID in the same tenant does take over.
		connect(t, e.addr, "same-id", withCred(creds["acme"]))
		waitLost(t, lostA, "acme's same-id after another acme same-id connected", waitTimeout)
		stillConnected(t, lostB, "globex's same-id after acme's takeover")
	})
}

// ---------------------------------------------------------------------------
// Credentials

// TestCredentials: "<user>@<tenant>" with its password connects, in every
// protocol version; every other combination is refused with a code that
// does not say which part was wrong.
func TestCredentials(t *testing.T) {
	t.Parallel()

	t.Run("accepted", func(t *testing.T) {
		t.Parallel()
		e := startTenancy(t)
		cred := e.setup(t, "acme")
		for _, v := range []byte{packet.V31, packet.V311, packet.V5} {
			t.Run(fmt.Sprintf("MQTT level %d", v), func(t *testing.T) {
				rc, c := connackCode(t, e.addr, credLogin(v, fmt.Sprintf("raw-v%d", v), cred))
				if rc != packet.Success {
					t.Fatalf("valid credentials: CONNACK 0x%02X", byte(rc))
				}
				c.ping()
			})
		}
		in := newInbox()
		subscribe(t, connect(t, e.addr, "paho-sub", withCred(cred)), "hello", 1, in)
		publish(t, connect(t, e.addr, "paho-pub", withCred(cred), protocol31()), "hello", 1, false, "world")
		in.exactly(t, 1)
	})

	// Each refusal gets its own server: the address throttle would block
	// 127.0.0.1 after five failures on one.
	type refusal struct {
		name       string
		p          func(acme, globex *admin.NewCredential) packet.Connect
		v3, v5     packet.ReasonCode
		paho       byte
		badSecrets bool // one of the "bad username or password" group
	}
	refusals := []refusal{
		{"wrong password", func(a, _ *admin.NewCredential) packet.Connect {
			return login(0, "", a.Username, a.Password+"x")
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"unknown user", func(a, _ *admin.NewCredential) packet.Connect {
			return login(0, "", "devices-00000000@acme", a.Password)
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"unknown tenant", func(a, _ *admin.NewCredential) packet.Connect {
			return login(0, "", userOf(a)+"@nosuch", a.Password)
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"valid user with another tenant's suffix", func(a, _ *admin.NewCredential) packet.Connect {
			return login(0, "", userOf(a)+"@globex", a.Password)
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"another credential's password", func(a, g *admin.NewCredential) packet.Connect {
			return login(0, "", a.Username, g.Password)
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"no tenant suffix", func(a, _ *admin.NewCredential) packet.Connect {
			return login(0, "", userOf(a), a.Password)
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"empty password", func(a, _ *admin.NewCredential) packet.Connect {
			return login(0, "", a.Username, "")
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"username without password", func(a, _ *admin.NewCredential) packet.Connect {
			p := login(0, "", a.Username, "")
			p.PasswordFlag = false
			return p
		}, 0x04, packet.BadUsernameOrPassword, 4, true},
		{"no username, anonymous not allowed", func(_, _ *admin.NewCredential) packet.Connect {
			return packet.Connect{CleanStart: true, KeepAlive: 60}
		}, 0x05, packet.NotAuthorized, 5, false},
	}
	var mu sync.Mutex
	codes := map[string]packet.ReasonCode{}
	t.Run("refused", func(t *testing.T) {
		for _, tt := range refusals {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := startTenancy(t)
				acme := e.setup(t, "acme")
				globex := e.setup(t, "globex")
				p := tt.p(acme, globex)

				p.ProtocolVersion, p.ClientID = packet.V311, "refused-v4"
				got := expectConnack(t, e.addr, "MQTT 3.1.1", p, tt.v3)
				mu.Lock()
				codes[tt.name] = got
				mu.Unlock()
				p.ProtocolVersion, p.ClientID = packet.V5, "refused-v5"
				expectConnack(t, e.addr, "MQTT 5", p, tt.v5)

				opts := []clientOption{}
				if p.UsernameFlag {
					opts = append(opts, withLogin(p.Username, string(p.Password)))
				}
				_, tok := tryConnect(t, e.addr, "refused-paho", opts...)
				if tok.Error() == nil || tok.ReturnCode() != tt.paho {
					t.Errorf("paho: error %v return code %d, want refusal with %d", tok.Error(), tok.ReturnCode(), tt.paho)
				}
			})
		}
	})
	// Whatever was wrong — user, password, tenant — the answer is the same.
	var first string
	for _, tt := range refusals {
		if !tt.badSecrets {
			continue
		}
		if first == "" {
			first = tt.name
			continue
		}
		if codes[tt.name] != codes[first] {
			t.Errorf("%q got CONNACK 0x%02X but %q got 0x%02X: the code tells which part was wrong",
				tt.name, byte(codes[tt.name]), first, byte(codes[first]))
		}
	}
}

// TestCredentialClientIDPattern: a credential created with a client-ID
// pattern connects only with matching client IDs ('-' separates levels,
// %u is the username); others get "not authorized".
func TestCredentialClientIDPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		ok      []string // %u is replaced by the username
		refused []string
	}{
		{"sensor-+", []string{"sensor-1", "sensor-abc"}, []string{"sensor-1-2", "other", "sensor-+"}},
		{"%u-#", []string{"%u", "%u-a", "%u-a-b"}, []string{"devices-ffffffff-a", "x-%u", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			e := startTenancy(t)
			e.setup(t, "acme")
			cred := e.newCred(t, "acme", "devices", tt.pattern)
			user := userOf(cred)
			for _, id := range tt.ok {
				id = strings.ReplaceAll(id, "%u", user)
				if rc, _ := connackCode(t, e.addr, credLogin(packet.V311, id, cred)); rc != packet.Success {
					t.Errorf("client ID %q with pattern %q: CONNACK 0x%02X, want accepted", id, tt.pattern, byte(rc))
				}
			}
			for _, id := range tt.refused {
				id = strings.ReplaceAll(id, "%u", user)
				expectConnack(t, e.addr, fmt.Sprintf("client ID %q with pattern %q", id, tt.pattern),
					credLogin(packet.V311, id, cred), packet.ConnRefusedNotAuthorized)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// ACL

// TestACL: a new app may use every topic of its tenant (not "$…"); rules
// added or removed — through the Server's control plane or through a
// second one on the same database, as the CLI does — reach connected
// clients within a second.
func TestACL(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	cred := e.setup(t, "acme")
	const app = "app:devices"
	f := packet.SubackFailure

	t.Run("default rule", func(t *testing.T) {
		c := rawLogin(t, e.addr, "default-sub", cred)
		got := c.subackCodes(1, "#", "a/b", "+/+/c", "$SYS/#", "$SYS/broker/load", "$share/g/a/#")
		if want := []packet.ReasonCode{1, 1, 1, f, f, 1}; !slices.Equal(got, want) {
			t.Errorf("SUBACK codes for #, a/b, +/+/c, $SYS/#, $SYS/broker/load, $share/g/a/#: %v, want %v", got, want)
		}
		in := newInbox()
		subscribe(t, connect(t, e.addr, "default-watch", withCred(cred)), "#", 1, in)
		pub := connect(t, e.addr, "default-pub", withCred(cred))
		for _, tp := range []string{"any/topic/at/all", "x"} {
			publish(t, pub, tp, 1, false, tp)
		}
		in.exactly(t, 2)
	})

	// A watcher on '#' and a publisher, connected before every change
	// below. Deny-subscribe rules are given to other credentials (cred:…):
	// one that overlaps '#' would stop the watcher's subscription.
	watch := newInbox()
	subscribe(t, connect(t, e.addr, "watcher", withCred(cred)), "#", 1, watch)
	pub := connect(t, e.addr, "publisher", withCred(cred))
	subCred := e.newCred(t, "acme", "devices", "")
	subSubject := auth.CredentialSubject(userOf(subCred))
	subber := rawLogin(t, e.addr, "subscriber", subCred)

	t.Run("deny publish live", func(t *testing.T) {
		untilDelivery(t, pub, watch, "secret/x", "public/x", true)
		start := time.Now()
		e.addRule(t, "acme", app, denyPublish("secret/#"))
		untilDelivery(t, pub, watch, "secret/x", "public/x", false)
		checkLive(t, "deny publish secret/#", time.Since(start))

		// From now on nothing under secret/ gets through, the rest does.
		before := len(watch.all())
		for i := range 5 {
			publish(t, pub, "secret/a/b", 1, false, "s"+strconv.Itoa(i))
			publish(t, pub, "secret", 0, false, "s"+strconv.Itoa(i))
			publish(t, pub, "public/y", 1, false, "p"+strconv.Itoa(i))
		}
		watch.waitMessage(t, "public/y", "p4", waitTimeout)
		time.Sleep(quietPeriod)
		for _, m := range watch.all()[before:] {
			if m.Topic != "public/y" {
				t.Errorf("denied publish delivered: %v", m)
			}
		}
		// A new connection of the credential gets the rule at CONNECT.
		fresh := connect(t, e.addr, "fresh-publisher", withCred(cred))
		untilDelivery(t, fresh, watch, "secret/new", "public/new", false)
	})

	t.Run("subscribe denied", func(t *testing.T) {
		subber.t = t
		if got := subber.subackCodes(1, "private/x"); !slices.Equal(got, []packet.ReasonCode{1}) {
			t.Fatalf("before the rule: SUBACK %v, want [1]", got)
		}
		start := time.Now()
		e.addRule(t, "acme", subSubject, denySubscribe("private/#"))
		untilSuback(t, subber, "private/x", f)
		checkLive(t, "deny subscribe private/#", time.Since(start))
		// Refused: every filter that could deliver a topic under private/.
		got := subber.subackCodes(2, "private/#", "private", "+/x", "#", "+/y/z", "public/#", "public/+/z")
		if want := []packet.ReasonCode{f, f, f, f, f, 1, 1}; !slices.Equal(got, want) {
			t.Errorf("SUBACK codes for private/#, private, +/x, #, +/y/z, public/#, public/+/z: %v, want %v", got, want)
		}
		// MQTT 5 says why.
		v5 := rawLoginV5(t, e.addr, "subscriber-v5", subCred)
		if got := v5.subackCodes(1, "private/x", "public/x"); !slices.Equal(got, []packet.ReasonCode{packet.NotAuthorized, 1}) {
			t.Errorf("MQTT 5 SUBACK %v, want [0x87 1]", got)
		}
	})

	t.Run("remove rules live", func(t *testing.T) {
		subber.t = t
		start := time.Now()
		e.removeRule(t, "acme", app, denyPublish("secret/#"))
		untilDelivery(t, pub, watch, "secret/x", "public/x", true)
		checkLive(t, "removing deny publish secret/#", time.Since(start))

		start = time.Now()
		e.removeRule(t, "acme", subSubject, denySubscribe("private/#"))
		untilSuback(t, subber, "private/x", 1)
		checkLive(t, "removing deny subscribe private/#", time.Since(start))
	})

	t.Run("client ID placeholder", func(t *testing.T) {
		e.newApp(t, "acme", "fleet")
		e.removeRule(t, "acme", "app:fleet", allowAll("#"))
		e.addRule(t, "acme", "app:fleet", allowAll("devices/%c/#"))
		fleet := e.newCred(t, "acme", "fleet", "")

		d1 := rawLogin(t, e.addr, "d1", fleet)
		got := d1.subackCodes(1, "devices/d1/#", "devices/d1/status", "devices/d1", "devices/d2/#", "devices/+/status", "devices/#", "#")
		if want := []packet.ReasonCode{1, 1, 1, f, f, f, f}; !slices.Equal(got, want) {
			t.Errorf("d1's SUBACK codes %v, want %v", got, want)
		}
		// Client IDs that are not one topic level grant nothing.
		for id, filter := range map[string]string{"+": "devices/+/#", "a/b": "devices/a/b/#", "#": "devices/#"} {
			c := rawLogin(t, e.addr, id, fleet)
			if got := c.subackCodes(1, filter); !slices.Equal(got, []packet.ReasonCode{f}) {
				t.Errorf("client ID %q subscribing %q: SUBACK %v, want [0x80]", id, filter, got)
			}
		}

		own := newInbox()
		subscribe(t, connect(t, e.addr, "d2", withCred(fleet)), "devices/d2/#", 1, own)
		fleetWatch := newInbox()
		subscribe(t, connect(t, e.addr, "fleet-watcher", withCred(cred)), "devices/#", 1, fleetWatch)
		d1p := connect(t, e.addr, "d1", withCred(fleet))
		publish(t, d1p, "devices/d2/cmd", 1, false, "from-d1-to-d2")
		publish(t, d1p, "other/x", 1, false, "from-d1-elsewhere")
		publish(t, d1p, "devices/d1/status", 1, false, "d1-ok")
		if got := fleetWatch.exactly(t, 1); got[0].Topic != "devices/d1/status" {
			t.Errorf("d1's publishes delivered %v, want only devices/d1/status", got)
		}
		own.none(t)
	})

	t.Run("second control plane", func(t *testing.T) {
		ctl := e.openControl(t)
		ctx := opCtx(t)
		start := time.Now()
		if err := ctl.Admin().AddRule(ctx, "cli", "acme", app, denyPublish("cli/#")); err != nil {
			t.Fatalf("add rule through a second control plane: %v", err)
		}
		untilDelivery(t, pub, watch, "cli/x", "public/x", false)
		checkLive(t, "deny publish cli/# from another process", time.Since(start))

		start = time.Now()
		if err := ctl.Admin().RemoveRule(ctx, "cli", "acme", app, denyPublish("cli/#")); err != nil {
			t.Fatalf("remove rule through a second control plane: %v", err)
		}
		untilDelivery(t, pub, watch, "cli/x", "public/x", true)
		checkLive(t, "removing deny publish cli/# from another process", time.Since(start))
	})

	// A deny-subscribe rule also stops the live subscriptions it no longer
	// allows (the whole subscription: MQTT cannot narrow one); the others
	// carry on, and removing the rule brings them back.
	t.Run("deny subscribe stops live subscriptions", func(t *testing.T) {
		feedCred := e.newCred(t, "acme", "devices", "")
		feedSubject := auth.CredentialSubject(userOf(feedCred))
		narrow, wide := newInbox(), newInbox()
		nc := connect(t, e.addr, "feed-narrow", withCred(feedCred))
		subscribe(t, nc, "feed/secret/+", 1, narrow)
		subscribe(t, nc, "feed/public/+", 1, narrow)
		subscribe(t, connect(t, e.addr, "feed-wide", withCred(feedCred)), "#", 1, wide)
		const grace = 100 * time.Millisecond // two subscriptions: no order between them
		untilDeliveryGrace(t, pub, narrow, "feed/secret/x", "feed/public/x", true, grace)

		start := time.Now()
		e.addRule(t, "acme", feedSubject, denySubscribe("feed/secret/#"))
		untilDeliveryGrace(t, pub, narrow, "feed/secret/x", "feed/public/x", false, grace)
		checkLive(t, "deny subscribe feed/secret/# on live subscriptions", time.Since(start))
		// Check again, with time for stragglers.
		before, wideBefore := len(narrow.all()), len(wide.all())
		for i := range 3 {
			publish(t, pub, "feed/secret/y", 1, false, "late-"+strconv.Itoa(i))
		}
		publish(t, pub, "feed/public/y", 1, false, "after")
		narrow.waitMessage(t, "feed/public/y", "after", waitTimeout)
		time.Sleep(quietPeriod)
		for _, m := range narrow.all()[before:] {
			if m.Topic != "feed/public/y" {
				t.Errorf("feed/secret/+ subscription delivered %v after deny subscribe feed/secret/#", m)
			}
		}
		if got := wide.all()[wideBefore:]; len(got) != 0 {
			t.Errorf("'#' subscription (overlapping deny subscribe feed/secret/#) delivered %v", got)
		}

		start = time.Now()
		e.removeRule(t, "acme", feedSubject, denySubscribe("feed/secret/#"))
		untilDeliveryGrace(t, pub, narrow, "feed/secret/x", "feed/public/x", true, grace)
		checkLive(t, "removing deny subscribe feed/secret/#", time.Since(start))
		publish(t, pub, "feed/back", 1, false, "back")
		wide.waitMessage(t, "feed/back", "back", waitTimeout)
	})

	// A will is a publish (auth.Publish covers it): checked at CONNECT and,
	// like any other publish, against the rules in force when it is sent.
	t.Run("will under a deny rule added after CONNECT", func(t *testing.T) {
		willCred := e.newCred(t, "acme", "devices", "")
		subject := auth.CredentialSubject(userOf(willCred))
		withWillOn := func(id, topic string, c *admin.NewCredential) packet.Connect {
			p := credLogin(packet.V311, id, c)
			p.WillFlag, p.WillTopic, p.WillPayload, p.WillQoS = true, topic, []byte("gone"), 1
			return p
		}
		dying := dialRaw(t, e.addr)
		dying.connect(withWillOn("dying", "wills/dying", willCred))
		control := dialRaw(t, e.addr) // same will rights, no rule change
		control.connect(withWillOn("dying-control", "wills/control", cred))

		probe := connect(t, e.addr, "will-probe", withCred(willCred))
		start := time.Now()
		e.addRule(t, "acme", subject, denyPublish("wills/#"))
		untilDelivery(t, probe, watch, "wills/probe", "public/x", false)
		checkLive(t, "deny publish wills/#", time.Since(start))
		expectConnack(t, e.addr, "CONNECT with a will on a denied topic", withWillOn("dying-2", "wills/x", willCred), packet.ConnRefusedNotAuthorized)

		dying.nc.Close() // no DISCONNECT: the will is due
		control.nc.Close()
		watch.waitMessage(t, "wills/control", "gone", waitTimeout)
		time.Sleep(quietPeriod)
		if watch.has("wills/dying", "gone") {
			t.Errorf("will on wills/dying published although 'deny publish wills/#' reached the connection before it closed")
		}
	})

	// A persistent session resumed under rules that no longer allow one of
	// its stored subscriptions must not be served from it: not its queued
	// messages, not new ones.
	t.Run("resumed session is checked against the current rules", func(t *testing.T) {
		vaultCred := e.newCred(t, "acme", "devices", "")
		c := connect(t, e.addr, "vault-reader", withCred(vaultCred), persistent())
		subscribe(t, c, "vault/#", 1, nil)
		subscribe(t, c, "lobby/#", 1, nil)
		disconnect(c)
		e.addRule(t, "acme", auth.CredentialSubject(userOf(vaultCred)), denySubscribe("vault/#"))
		publish(t, pub, "vault/gold", 1, false, "queued-after-deny")
		publish(t, pub, "lobby/news", 1, false, "queued-lobby")

		in := newInbox()
		connect(t, e.addr, "vault-reader", withCred(vaultCred), persistent(), onMessage(in))
		publish(t, pub, "vault/gold", 1, false, "live-after-deny")
		publish(t, pub, "lobby/news", 1, false, "live-lobby")
		got := in.exactly(t, 2)
		for _, m := range got {
			if m.Topic != "lobby/news" {
				t.Errorf("session resumed under 'deny subscribe vault/#' was served %v", m)
			}
		}
	})

	t.Run("resumed session is checked against another credential's rules", func(t *testing.T) {
		// Same tenant, same client ID: a credential of "fleet" (only
		// devices/<client ID>/#) resumes a session a "devices" credential
		// subscribed to "bank/#".
		fleet := e.newCred(t, "acme", "fleet", "")
		c := connect(t, e.addr, "teller", withCred(cred), persistent())
		subscribe(t, c, "bank/#", 1, nil)
		disconnect(c)
		publish(t, pub, "bank/ledger", 1, false, "queued-for-devices")

		in := newInbox()
		connect(t, e.addr, "teller", withCred(fleet), persistent(), onMessage(in))
		publish(t, pub, "bank/ledger", 1, false, "live")
		in.none(t)
	})
}

// ---------------------------------------------------------------------------
// Revocation and suspension

// TestRevocation: revoking a credential disconnects its live clients within
// a second, and only those, and refuses it from then on; a revocation made
// by another process (the CLI) reaches the edge too.
func TestRevocation(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	credA := e.setup(t, "acme")
	credB := e.newCred(t, "acme", "devices", "")
	credG := e.setup(t, "globex")

	a1 := rawLogin(t, e.addr, "a1", credA)
	a2 := rawLogin(t, e.addr, "a2", credA)
	b1 := rawLogin(t, e.addr, "b1", credB)
	g1 := rawLogin(t, e.addr, "a1", credG) // same client ID, other tenant
	in := newInbox()
	subscribe(t, connect(t, e.addr, "b-sub", withCred(credB)), "news", 1, in)
	bPub := connect(t, e.addr, "b-pub", withCred(credB))

	start := time.Now()
	if err := e.adm.RevokeCredential(opCtx(t), actor, "acme", credA.Username); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	a1.waitClosed(livePoll)
	a2.waitClosed(livePoll)
	checkLive(t, "revocation", time.Since(start))

	b1.ping()
	g1.ping()
	publish(t, bPub, "news", 1, false, "after-revoke")
	in.exactly(t, 1)

	expectConnack(t, e.addr, "revoked credential, MQTT 3.1.1", credLogin(packet.V311, "a3", credA), packet.ConnRefusedBadCredentials)
	expectConnack(t, e.addr, "revoked credential, MQTT 5", credLogin(packet.V5, "a3", credA), packet.BadUsernameOrPassword)

	// Through a second control plane on the same database, as the CLI.
	ctl := e.openControl(t)
	lost := make(chan error, 1)
	connect(t, e.addr, "b2", withCred(credB), onLost(lost))
	start = time.Now()
	if err := ctl.Admin().RevokeCredential(opCtx(t), "cli", "acme", credB.Username); err != nil {
		t.Fatalf("revoke through a second control plane: %v", err)
	}
	b1.waitClosed(livePoll)
	waitLost(t, lost, "b2 after its credential was revoked by another process", livePoll)
	checkLive(t, "revocation from another process", time.Since(start))
	g1.ping()
	expectConnack(t, e.addr, "credential revoked by another process", credLogin(packet.V311, "b3", credB), packet.ConnRefusedBadCredentials)
}

// TestSuspendTenant: suspending a tenant disconnects all its clients within
// a second and refuses new ones ("not authorized" with the right password,
// "bad username or password" without it); other tenants carry on; resuming
// lets the tenant back in.
func TestSuspendTenant(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	acme := e.setup(t, "acme")
	acme2 := e.newCred(t, "acme", "devices", "")
	globex := e.setup(t, "globex")

	c1 := rawLogin(t, e.addr, "c1", acme)
	c2 := rawLogin(t, e.addr, "c2", acme2)
	lost := make(chan error, 1)
	connect(t, e.addr, "c3", withCred(acme), persistent(), onLost(lost))
	g := rawLogin(t, e.addr, "c1", globex)

	start := time.Now()
	if _, err := e.adm.SetStatus(opCtx(t), actor, "acme", tenant.Suspended); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	c1.waitClosed(livePoll)
	c2.waitClosed(livePoll)
	waitLost(t, lost, "c3 of the suspended tenant", livePoll)
	checkLive(t, "suspension", time.Since(start))
	g.ping()

	expectConnack(t, e.addr, "suspended tenant, MQTT 3.1.1", credLogin(packet.V311, "c4", acme), packet.ConnRefusedNotAuthorized)
	expectConnack(t, e.addr, "suspended tenant, MQTT 5", credLogin(packet.V5, "c4", acme), packet.NotAuthorized)
	expectConnack(t, e.addr, "suspended tenant, wrong password", login(packet.V311, "c4", acme.Username, "wrong"), packet.ConnRefusedBadCredentials)

	if _, err := e.adm.SetStatus(opCtx(t), actor, "acme", tenant.Active); err != nil {
		t.Fatalf("resume: %v", err)
	}
	in := newInbox()
	subscribe(t, connect(t, e.addr, "c1", withCred(acme)), "back", 1, in)
	publish(t, connect(t, e.addr, "c2", withCred(acme2)), "back", 1, false, "resumed")
	in.exactly(t, 1)
}

// ---------------------------------------------------------------------------
// Authentication service down

// TestAuthDown: with no control plane answering, a new CONNECT with
// credentials gets "server unavailable" (and is not counted as a failed
// login), while connections already in keep publishing and receiving; a
// control plane that comes back serves CONNECTs again.
func TestAuthDown(t *testing.T) {
	t.Parallel()
	e := startTenancy(t, withNATSListener())
	cred := e.setup(t, "acme")
	in := newInbox()
	old := connect(t, e.addr, "old-timer", withCred(cred))
	subscribe(t, old, "live/#", 1, in)
	oldRaw := rawLogin(t, e.addr, "old-raw", cred)

	if err := e.srv.Control().Close(); err != nil {
		t.Fatalf("closing the control plane: %v", err)
	}
	for i := range 6 { // more than the throttle's 5 failures
		expectConnack(t, e.addr, "auth service down, MQTT 3.1.1", credLogin(packet.V311, "new-"+strconv.Itoa(i), cred), packet.ConnRefusedServerUnavailable)
	}
	expectConnack(t, e.addr, "auth service down, MQTT 5", credLogin(packet.V5, "new-v5", cred), packet.ServerUnavailable)
	_, tok := tryConnect(t, e.addr, "new-paho", withCred(cred))
	if tok.Error() == nil || tok.ReturnCode() != 3 {
		t.Errorf("paho with the auth service down: error %v return code %d, want refusal with 3", tok.Error(), tok.ReturnCode())
	}

	publish(t, old, "live/1", 1, false, "q1")
	publish(t, old, "live/0", 0, false, "q0")
	oldRaw.sendPacket(publishPacket("live/raw", 1, 7, "raw"))
	oldRaw.expectAck(packet.PUBACK, 7)
	if got := sortedStrings(in.exactly(t, 3)); !slices.Equal(got, []string{
		`live/0="q0"(q0,rfalse)`, `live/1="q1"(q1,rfalse)`, `live/raw="raw"(q1,rfalse)`}) {
		t.Errorf("existing connection during the outage got %v", got)
	}

	// A control plane on the same database comes back.
	ctl := e.openControl(t)
	nc, err := nats.Connect(e.srv.NATSURL(), nats.Name("test-control"))
	if err != nil {
		t.Fatalf("NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	if err := ctl.Serve(opCtx(t), nc); err != nil {
		t.Fatalf("serving: %v", err)
	}
	if rc, _ := connackCode(t, e.addr, credLogin(packet.V311, "after-outage", cred)); rc != packet.Success {
		t.Errorf("after the control plane came back (and 6 refusals while it was away): CONNACK 0x%02X, want accepted", byte(rc))
	}
}

// ---------------------------------------------------------------------------
// Brute force

// TestBruteForceThrottle follows broker/throttle.go: five failed logins
// within a minute block the username and the source address for 2 s; a
// blocked CONNECT is refused even with the right password. All clients
// here come from 127.0.0.1, so the address block covers every username.
func TestBruteForceThrottle(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	credA := e.setup(t, "acme")
	credB := e.newCred(t, "acme", "devices", "")
	wrong := func(c *admin.NewCredential) packet.Connect {
		return login(packet.V311, "guess", c.Username, "guess")
	}

	// 5 wrong passwords for one username from one address block that
	// (username, address) pair (broker/throttle.go).
	for i := range 5 {
		expectConnack(t, e.addr, fmt.Sprintf("wrong password #%d", i+1), wrong(credA), packet.ConnRefusedBadCredentials)
	}
	blockedAt := time.Now()
	// 3.1.1 has no "rate exceeded": 0x03, try again later.
	throttled := expectConnack(t, e.addr, "right password after 5 failures, MQTT 3.1.1", credLogin(packet.V311, "right", credA), packet.ConnRefusedServerUnavailable)
	expectConnack(t, e.addr, "right password after 5 failures, MQTT 5", credLogin(packet.V5, "right", credA), packet.ConnectionRateExceeded)
	if throttled == packet.Success {
		t.Fatalf("the right password was accepted right after 5 failures")
	}
	// Another username from the same address is not blocked yet: the
	// address alone allows 20 failures a minute (NAT: many devices).
	if rc, _ := connackCode(t, e.addr, credLogin(packet.V311, "other-user", credB)); rc != packet.Success {
		t.Fatalf("another username from the address: CONNACK 0x%02X, want success", byte(rc))
	}

	// The block ends after 2 s (throttleFirstBlock); polling while blocked
	// does not extend it.
	var waited time.Duration
	for {
		rc, c := connackCode(t, e.addr, credLogin(packet.V311, "right", credA))
		if rc == packet.Success {
			waited = time.Since(blockedAt)
			c.ping()
			break
		}
		if time.Since(blockedAt) > 4*time.Second {
			t.Fatalf("still refused (0x%02X) %v after the block began, want about 2 s", byte(rc), time.Since(blockedAt))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("block lifted after %v", waited.Round(time.Millisecond))
	if waited < 1500*time.Millisecond {
		t.Errorf("block lifted after %v, want about 2 s", waited)
	}

	// The address counts the failures of every username, and a success
	// does not reset it: 20 in all (5 above, 15 for unknown users) block
	// the address for every username.
	for i := range 15 {
		expectConnack(t, e.addr, "unknown user", login(packet.V311, "guess", fmt.Sprintf("nobody%d@acme", i), "guess"), packet.ConnRefusedBadCredentials)
	}
	for _, c := range []*admin.NewCredential{credA, credB} {
		expectConnack(t, e.addr, c.Username+" from an address with 20 recent failures", credLogin(packet.V311, "right", c), throttled)
	}
}

// ---------------------------------------------------------------------------
// Limits

// TestLimitMaxConnections: a tenant at its connection limit refuses the
// next CONNECT (3.1.1: server unavailable; 5.0: quota exceeded) but not a
// takeover of a connected client ID; other tenants are not affected; a
// disconnect frees a place.
func TestLimitMaxConnections(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	small := e.setup(t, "small")
	big := e.setup(t, "big")
	e.setLimits(t, "small", tenant.Limits{MaxConnections: 2})

	c1 := rawLogin(t, e.addr, "c1", small)
	c2 := rawLogin(t, e.addr, "c2", small)
	expectConnack(t, e.addr, "third connection, MQTT 3.1.1", credLogin(packet.V311, "c3", small), packet.ConnRefusedServerUnavailable)
	expectConnack(t, e.addr, "third connection, MQTT 5", credLogin(packet.V5, "c3", small), packet.QuotaExceeded)
	_, tok := tryConnect(t, e.addr, "c3", withCred(small))
	if tok.Error() == nil || tok.ReturnCode() != 3 {
		t.Errorf("paho third connection: error %v return code %d, want refusal with 3", tok.Error(), tok.ReturnCode())
	}
	c1.ping()
	c2.ping()
	for i := range 3 {
		rawLogin(t, e.addr, fmt.Sprintf("c%d", i+1), big)
	}

	// Taking over c1 adds no connection.
	c1b := rawLogin(t, e.addr, "c1", small)
	c1.waitClosed(waitTimeout)
	c1b.ping()

	// A disconnect frees a place.
	c2.send(disconnectPacket)
	c2.waitClosed(waitTimeout)
	deadline := time.Now().Add(waitTimeout)
	for {
		rc, c := connackCode(t, e.addr, credLogin(packet.V311, "c4", small))
		if rc == packet.Success {
			c.ping()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after c2 disconnected a new connection still gets 0x%02X", byte(rc))
		}
		time.Sleep(20 * time.Millisecond)
	}
	expectConnack(t, e.addr, "over the limit again", credLogin(packet.V311, "c5", small), packet.ConnRefusedServerUnavailable)
}

// TestLimitMaxConnectionsConcurrent: CONNECTs arriving together do not
// overshoot the limit on one edge.
func TestLimitMaxConnectionsConcurrent(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	small := e.setup(t, "small")
	e.setLimits(t, "small", tenant.Limits{MaxConnections: 2})
	const n = 16
	var accepted atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, rc, err := dialLogin(e.addr, credLogin(packet.V311, fmt.Sprintf("burst-%d", i), small))
			if err != nil {
				errs <- err
				return
			}
			if rc == packet.Success {
				accepted.Add(1)
			} else if rc != packet.ConnRefusedServerUnavailable {
				errs <- fmt.Errorf("CONNACK 0x%02X", byte(rc))
			}
			t.Cleanup(func() { nc.Close() })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := accepted.Load(); got != 2 {
		t.Errorf("%d concurrent CONNECTs to a tenant limited to 2 connections: %d accepted", n, got)
	}
}

// TestLimitMessageRate: a client over its tenant's message rate is slowed
// down, not cut off, and loses nothing; a tenant without the limit is not
// slowed.
func TestLimitMessageRate(t *testing.T) {
	t.Parallel()
	e := startTenancy(t)
	creds := map[string]*admin.NewCredential{"fast": e.setup(t, "fast"), "slow": e.setup(t, "slow")}
	e.setLimits(t, "slow", tenant.Limits{MaxMessageRate: 50})
	const n = 200
	took := map[string]time.Duration{}
	for _, s := range []string{"fast", "slow"} {
		in := newInbox()
		subscribe(t, connect(t, e.addr, "sub", withCred(creds[s])), "rate/x", 0, in)
		pub := connect(t, e.addr, "pub", withCred(creds[s]))
		start := time.Now()
		for i := range n {
			pub.Publish("rate/x", 0, false, strconv.Itoa(i)) // QoS 0: no token to wait for
		}
		got := in.exactlyWithin(t, n, 15*time.Second)
		took[s] = time.Since(start) - quietPeriod
		for i, m := range got {
			if m.Payload != strconv.Itoa(i) {
				t.Fatalf("tenant %s: message %d is %v, want payload %d (in order, none lost)", s, i, m, i)
			}
		}
		t.Logf("tenant %s: %d QoS 0 messages delivered in %v", s, n, took[s].Round(time.Millisecond))
	}
	t.Logf("rate-limited waits: %d", e.srv.Edge().Broker().Stats().RateLimited.Load())
	if took["slow"] < 3*time.Second {
		t.Errorf("%d messages at MaxMessageRate 50/s took %v, want ≥ 3 s", n, took["slow"])
	}
	if took["fast"] > 2*time.Second {
		t.Errorf("%d messages without a rate limit took %v", n, took["fast"])
	}
}

// ---------------------------------------------------------------------------
// Measurement

// TestConnectAuthenticatedRate measures CONNECTs per second with
// credentials (through the auth service) against anonymous ones on the
// same server; it asserts only that every one is accepted.
func TestConnectAuthenticatedRate(t *testing.T) {
	t.Parallel()
	const n, workers = 1000, 32
	e := startTenancy(t, withAnonymous())
	var creds []*admin.NewCredential
	creds = append(creds, e.setup(t, "acme"))
	for range 9 {
		creds = append(creds, e.newCred(t, "acme", "devices", ""))
	}
	run := func(name string, p func(i int) packet.Connect) {
		conns := make([]net.Conn, n)
		var next atomic.Int64
		var failed atomic.Int64
		var firstErr sync.Once
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					nc, rc, err := dialLogin(e.addr, p(i))
					if err == nil && rc != packet.Success {
						err = fmt.Errorf("CONNACK 0x%02X", byte(rc))
					}
					if err != nil {
						failed.Add(1)
						firstErr.Do(func() { t.Errorf("%s connection %d: %v", name, i, err) })
						if nc != nil {
							nc.Close()
						}
						continue
					}
					conns[i] = nc
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		t.Logf("%s: %d CONNECTs (concurrency %d) in %v: %.0f connects/s; %d failed",
			name, n, workers, took.Round(time.Millisecond), float64(n)/took.Seconds(), failed.Load())
		if failed.Load() != 0 {
			t.Errorf("%s: %d of %d CONNECTs failed", name, failed.Load(), n)
		}
		// The count goes up just after CONNACK is written.
		waitUntil(t, fmt.Sprintf("%d live connections", n), func() bool {
			return e.srv.Edge().Broker().Stats().Connections.Load() == int64(n-int(failed.Load()))
		})
		for _, c := range conns {
			if c != nil {
				c.Write(disconnectPacket)
				c.Close()
			}
		}
		waitUntil(t, "every connection closed", func() bool { return e.srv.Edge().Broker().Stats().Connections.Load() == 0 })
	}
	run("authenticated", func(i int) packet.Connect {
		return credLogin(packet.V311, fmt.Sprintf("auth-%d", i), creds[i%len(creds)])
	})
	run("anonymous", func(i int) packet.Connect {
		return packet.Connect{ProtocolVersion: packet.V311, ClientID: fmt.Sprintf("anon-%d", i), CleanStart: true, KeepAlive: 60}
	})
}

// dialLogin connects, sends CONNECT p and returns the connection with the
// CONNACK code; it is safe in any goroutine (it does not touch testing.T).
func dialLogin(addr string, p packet.Connect) (net.Conn, packet.ReasonCode, error) {
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		return nil, 0, err
	}
	if p.ProtocolVersion == 0 {
		p.ProtocolVersion = packet.V311
	}
	b, err := p.Encode(nil, p.ProtocolVersion)
	if err != nil {
		nc.Close()
		return nil, 0, err
	}
	nc.SetDeadline(time.Now().Add(2 * waitTimeout))
	if _, err := nc.Write(b); err != nil {
		nc.Close()
		return nil, 0, err
	}
	rd := packet.NewReader(bufio.NewReader(nc), 0)
	fh, body, err := rd.ReadPacket()
	if err != nil {
		nc.Close()
		return nil, 0, fmt.Errorf("reading CONNACK: %w", err)
	}
	var ack packet.Connack
	if fh.Type != packet.CONNACK {
		nc.Close()
		return nil, 0, fmt.Errorf("got %v, want CONNACK", fh.Type)
	}
	if err := ack.Decode(p.ProtocolVersion, fh, body); err != nil {
		nc.Close()
		return nil, 0, err
	}
	nc.SetDeadline(time.Time{})
	return nc, ack.ReasonCode, nil
}
