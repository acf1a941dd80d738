package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

func allow(a Action, f string) Rule { return Rule{Effect: Allow, Action: a, Filter: f} }
func deny(a Action, f string) Rule  { return Rule{Effect: Deny, Action: a, Filter: f} }

// aclCase is one check against a compiled rule set: publish to a topic, or
// subscribe to a filter.
type aclCase struct {
	act  Action // Publish or Subscribe
	obj  string
	want bool
}

func pub(t string, want bool) aclCase { return aclCase{Publish, t, want} }
func sub(f string, want bool) aclCase { return aclCase{Subscribe, f, want} }

func (c aclCase) check(t *testing.T, rs *RuleSet) {
	t.Helper()
	var got bool
	if c.act == Publish {
		got = rs.CanPublish([]byte(c.obj))
	} else {
		got = rs.CanSubscribe(c.obj)
	}
	if got != c.want {
		t.Errorf("%v %q = %v, want %v", c.act, c.obj, got, c.want)
	}
}

var ruleSetTests = []struct {
	name     string
	rules    []Rule
	clientID string
	username string
	cases    []aclCase
}{
	{
		name:  "no rules, no access",
		rules: nil,
		cases: []aclCase{pub("a", false), sub("a", false), sub("#", false)},
	},
	{
		name:  "plus does not grant hash",
		rules: []Rule{allow(PubSub, "a/+")},
		cases: []aclCase{
			pub("a/b", true), pub("a", false), pub("a/b/c", false), pub("a/", true),
			sub("a/+", true), sub("a/b", true), sub("a/#", false), sub("#", false), sub("a", false),
		},
	},
	{
		name:  "hash does not grant dollar topics",
		rules: DefaultAppRules(),
		cases: []aclCase{
			pub("x", true), pub("a/b/c", true), pub("/", true),
			pub("$SYS/x", false), pub("$share/g/x", false),
			sub("#", true), sub("+/#", true), sub("a/+/c", true),
			sub("$SYS/x", false), sub("$SYS/#", false),
		},
	},
	{
		name:  "explicit dollar rule",
		rules: []Rule{allow(Subscribe, "$SYS/#")},
		cases: []aclCase{sub("$SYS/broker/load", true), sub("$SYS/#", true), sub("#", false), pub("$SYS/x", false)},
	},
	{
		name:  "actions are separate",
		rules: []Rule{allow(Publish, "up/#"), allow(Subscribe, "down/#")},
		cases: []aclCase{pub("up/1", true), pub("down/1", false), sub("down/+", true), sub("up/+", false)},
	},
	{
		name:  "deny beats allow",
		rules: []Rule{allow(PubSub, "#"), deny(Publish, "secret/#"), deny(Subscribe, "secret/+/key")},
		cases: []aclCase{
			pub("public/x", true), pub("secret", false), pub("secret/x", false),
			sub("secret/x", true), sub("secret/x/key", false),
		},
	},
	{
		name:  "deny listed first still wins",
		rules: []Rule{deny(PubSub, "a/b"), allow(PubSub, "a/+")},
		cases: []aclCase{pub("a/b", false), pub("a/c", true), sub("a/b", false), sub("a/c", true)},
	},
	{
		name:  "overlapping deny refuses a wider subscription",
		rules: []Rule{allow(Subscribe, "#"), deny(Subscribe, "secret/#")},
		cases: []aclCase{
			sub("public/#", true), sub("secretive/x", true),
			sub("#", false), sub("+/x", false), sub("+/+/#", false), sub("secret", false),
			sub("+", false), // would deliver "secret" ('#' matches its parent)
		},
	},
	{
		name:  "deny of a single level",
		rules: []Rule{allow(Subscribe, "a/#"), deny(Subscribe, "a/b")},
		cases: []aclCase{sub("a/c/#", true), sub("a/+/c", true), sub("a/+", false), sub("a/#", false), sub("a/b/c", true)},
	},
	{
		name:     "client ID placeholder",
		rules:    []Rule{allow(PubSub, "devices/%c/#")},
		clientID: "d1",
		cases: []aclCase{
			pub("devices/d1", true), pub("devices/d1/temp", true), pub("devices/d2/temp", false),
			pub("devices/%c/temp", false),
			sub("devices/d1/#", true), sub("devices/+/temp", false), sub("devices/#", false),
		},
	},
	{
		name:     "client ID with a slash grants nothing",
		rules:    []Rule{allow(PubSub, "devices/%c/#"), allow(Publish, "public")},
		clientID: "d1/x",
		cases:    []aclCase{pub("devices/d1/x/temp", false), pub("devices/d1", false), sub("devices/d1/x/#", false), pub("public", true)},
	},
	{
		name:     "client ID plus grants nothing",
		rules:    []Rule{allow(PubSub, "devices/%c/#")},
		clientID: "+",
		cases:    []aclCase{pub("devices/d2/temp", false), pub("devices/+/temp", false), sub("devices/+/#", false)},
	},
	{
		name:     "client ID hash grants nothing",
		rules:    []Rule{allow(PubSub, "devices/%c")},
		clientID: "#",
		cases:    []aclCase{pub("devices/x", false), sub("devices/#", false)},
	},
	{
		name:     "empty client ID grants nothing",
		rules:    []Rule{allow(PubSub, "devices/%c/#")},
		clientID: "",
		cases:    []aclCase{pub("devices//temp", false), pub("devices/", false), sub("devices//#", false)},
	},
	{
		name:     "dollar client ID at the first level grants nothing",
		rules:    []Rule{allow(PubSub, "%c/#"), allow(PubSub, "devices/%c")},
		clientID: "$SYS",
		cases:    []aclCase{pub("$SYS/x", false), sub("$SYS/#", false), pub("devices/$SYS", true)},
	},
	{
		name:     "username placeholder",
		rules:    []Rule{allow(PubSub, "users/%u/#"), allow(Publish, "%u/%c/+")},
		clientID: "c1",
		username: "alice",
		cases: []aclCase{
			pub("users/alice/x", true), pub("users/bob/x", false),
			pub("alice/c1/t", true), pub("alice/c2/t", false), sub("users/alice/+", true),
		},
	},
	{
		name:     "deny with a usable client ID",
		rules:    []Rule{allow(PubSub, "devices/#"), deny(Publish, "devices/%c/config")},
		clientID: "d1",
		cases:    []aclCase{pub("devices/d1/config", false), pub("devices/d2/config", true), pub("devices/d1/temp", true)},
	},
	{
		name:     "deny with an unusable client ID fails closed below its parent",
		rules:    []Rule{allow(PubSub, "#"), deny(Publish, "devices/%c/config")},
		clientID: "d1/x",
		cases: []aclCase{
			pub("devices/d1/x/config", false), pub("devices/d2/config", false), pub("devices", false),
			pub("other/x", true), sub("devices/#", true), // only Publish is denied
		},
	},
	{
		name:     "deny with an unusable client ID at the first level denies everything",
		rules:    []Rule{allow(PubSub, "#"), deny(Subscribe, "%c/secret")},
		clientID: "+",
		cases:    []aclCase{sub("a", false), sub("#", false), pub("a", true)},
	},
	{
		name:  "invalid allow rules are dropped",
		rules: []Rule{allow(PubSub, "a/#/b"), allow(PubSub, "x%c"), allow(PubSub, ""), {Effect: 9, Action: PubSub, Filter: "#"}, allow(0, "#"), allow(Publish, "ok")},
		cases: []aclCase{pub("a/x/b", false), pub("x%c", false), pub("z", false), pub("ok", true)},
	},
	{
		name:  "an invalid deny rule fails closed",
		rules: []Rule{allow(PubSub, "#"), deny(Publish, "a/#/b")},
		cases: []aclCase{pub("z", false), sub("z", true)},
	},
	{
		name:  "invalid requested filters are refused",
		rules: DefaultAppRules(),
		cases: []aclCase{sub("", false), sub("a/#/b", false), sub("a+", false), sub("a\x00", false)},
	},
	{
		name:  "empty levels",
		rules: []Rule{allow(PubSub, "a//b"), allow(Subscribe, "/#")},
		cases: []aclCase{pub("a//b", true), pub("a/b", false), sub("/+", true), sub("+", false), sub("/#", true)},
	},
}

func TestRuleSet(t *testing.T) {
	for _, tt := range ruleSetTests {
		t.Run(tt.name, func(t *testing.T) {
			rs := Compile(tt.rules, tt.clientID, tt.username)
			for _, c := range tt.cases {
				c.check(t, rs)
			}
		})
	}
}

func TestNilRuleSetDenies(t *testing.T) {
	var rs *RuleSet
	if rs.CanPublish([]byte("a")) || rs.CanSubscribe("a") {
		t.Error("nil RuleSet allows")
	}
}

func TestAllowAll(t *testing.T) {
	rs := AllowAll()
	for _, c := range []aclCase{pub("a", true), pub("a/b/c", true), sub("#", true), sub("$SYS/#", false), pub("$SYS/x", false)} {
		c.check(t, rs)
	}
}

func TestValidateRule(t *testing.T) {
	tests := []struct {
		name string
		r    Rule
		ok   bool
	}{
		{"default", DefaultAppRules()[0], true},
		{"placeholders", allow(Publish, "devices/%c/%u/#"), true},
		{"percent literal", allow(Publish, "rate/100%"), true},
		{"placeholder inside a level", allow(Publish, "devices/d-%c"), false},
		{"username inside a level", deny(Publish, "%u%u"), false},
		{"misplaced hash", allow(Publish, "a/#/b"), false},
		{"empty filter", allow(Publish, ""), false},
		{"too long", allow(Publish, strings.Repeat("a", MaxFilterLen+1)), false},
		{"longest", allow(Publish, strings.Repeat("a", MaxFilterLen)), true},
		{"no action", allow(0, "a"), false},
		{"unknown action bit", allow(8, "a"), false},
		{"no effect", Rule{Action: Publish, Filter: "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRule(tt.r)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateRule(%+v) = %v, want ok=%v", tt.r, err, tt.ok)
			}
			if err != nil && !errors.Is(err, tenant.ErrInvalid) {
				t.Errorf("error %v does not wrap tenant.ErrInvalid", err)
			}
		})
	}
}

func TestActionEffectNames(t *testing.T) {
	for _, a := range []Action{Publish, Subscribe, PubSub} {
		if got, err := ParseAction(a.String()); err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a.String(), got, err)
		}
	}
	for _, e := range []Effect{Allow, Deny} {
		if got, err := ParseEffect(e.String()); err != nil || got != e {
			t.Errorf("ParseEffect(%q) = %v, %v", e.String(), got, err)
		}
	}
	if _, err := ParseAction("all"); !errors.Is(err, tenant.ErrInvalid) {
		t.Errorf("ParseAction(all) = %v", err)
	}
	if _, err := ParseEffect("Allow"); !errors.Is(err, tenant.ErrInvalid) {
		t.Errorf("ParseEffect(Allow) = %v", err)
	}
	if s := Action(8).String(); s != "Action(8)" {
		t.Errorf("Action(8) = %q", s)
	}
}

func TestCanPublishAllocs(t *testing.T) {
	rs := Compile(benchRules, "sensor-42", "acme-dev")
	for _, tp := range [][]byte{benchTopic, []byte("nope/x"), []byte("tenants/acme/admin/x")} {
		if n := testing.AllocsPerRun(100, func() { benchBool = rs.CanPublish(tp) }); n != 0 {
			t.Errorf("CanPublish(%q): %v allocs, want 0", tp, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { benchBool = rs.CanSubscribe("devices/sensor-42/#") }); n != 0 {
		t.Errorf("CanSubscribe: %v allocs, want 0", n)
	}
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------

var (
	benchBool bool
	// benchRules are ten rules, one with a placeholder, as an app might
	// have them; benchTopic is allowed by the placeholder rule (the last
	// allow) and checked against both deny rules.
	benchRules = []Rule{
		allow(Subscribe, "commands/broadcast/#"),
		allow(Subscribe, "config/+/public"),
		allow(Publish, "telemetry/site-1/+/temp"),
		allow(Publish, "telemetry/site-2/+/temp"),
		allow(Publish, "logs/+/+"),
		allow(Subscribe, "alerts/#"),
		allow(PubSub, "chat/room-1"),
		allow(PubSub, "devices/%c/#"),
		deny(PubSub, "devices/+/admin/#"),
		deny(Publish, "devices/+/firmware"),
	}
	benchTopic = []byte("devices/sensor-42/telemetry/temp")
)

func BenchmarkCanPublish(b *testing.B) {
	rs := Compile(benchRules, "sensor-42", "acme-dev")
	cases := []struct {
		name  string
		topic []byte
	}{
		{"allowed", benchTopic},
		{"denied-no-allow", []byte("devices/sensor-43/telemetry/temp")},
		{"denied-by-deny", []byte("devices/sensor-42/firmware")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchBool = rs.CanPublish(c.topic)
			}
		})
	}
}

func BenchmarkCanSubscribe(b *testing.B) {
	rs := Compile(benchRules, "sensor-42", "acme-dev")
	for _, f := range []string{"devices/sensor-42/#", "alerts/+/high", "devices/+/temp"} {
		b.Run(strings.ReplaceAll(f, "/", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchBool = rs.CanSubscribe(f)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Compile(benchRules, "sensor-42", "acme-dev")
	}
}

// ---------------------------------------------------------------------------
// Brute-force helpers
// ---------------------------------------------------------------------------

// genLevels returns every '/'-join of 1..maxLevels elements of alphabet.
func genLevels(alphabet []string, maxLevels int) []string {
	var out []string
	prev := []string{""}
	for n := 1; n <= maxLevels; n++ {
		var next []string
		for _, p := range prev {
			for _, a := range alphabet {
				s := a
				if n > 1 {
					s = p + "/" + a
				}
				next = append(next, s)
			}
		}
		out = append(out, next...)
		prev = next
	}
	return out
}

// genTopics returns every valid topic of 1..maxLevels levels over alphabet.
func genTopics(alphabet []string, maxLevels int) [][]byte {
	var out [][]byte
	for _, s := range genLevels(alphabet, maxLevels) {
		if topic.ValidateTopic([]byte(s)) == nil {
			out = append(out, []byte(s))
		}
	}
	return out
}

// genFilters returns every valid filter of 1..maxLevels levels over alphabet.
func genFilters(alphabet []string, maxLevels int) []string {
	var out []string
	for _, s := range genLevels(alphabet, maxLevels) {
		if topic.ValidateFilter(s) == nil {
			out = append(out, s)
		}
	}
	return out
}
