package auth

import (
	"strings"
	"testing"

	"github.com/relaymq/relay/broker/topic"
)

// Fuzz alphabets. Rule filters are built from ruleLevels, requested filters
// from the same without the placeholder; topics for the brute force use
// every literal level of the filters plus a fresh one ("z"), one level
// deeper than the longest filter, which is enough to witness every
// non-inclusion and every overlap (see TestSubsetExhaustive in
// broker/topic and TestOverlapExhaustive).
var (
	ruleLevels  = []string{"a", "b", "$s", "", "+", "#", "%c"}
	fuzzIDs     = []string{"b", "a/b", "+", "", "$s"}
	fuzzTopics  = genTopics([]string{"a", "b", "$s", "", "z"}, 5)
	maxFuzzRule = 5
)

// fuzzSpec decodes a fuzz input into rules, a client ID and a requested
// filter, all valid by construction ('#' only last).
type fuzzSpec struct {
	rules     []Rule
	clientID  string
	requested string
}

func decodeSpec(data []byte) fuzzSpec {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	filter := func(n int, alphabet []string) string {
		levels := make([]string, n)
		for i := range levels {
			l := alphabet[int(next())%len(alphabet)]
			if l == "#" && i < n-1 {
				l = "+"
			}
			levels[i] = l
		}
		f := strings.Join(levels, "/")
		if f == "" {
			f = "a"
		}
		return f
	}
	var s fuzzSpec
	head := next()
	s.clientID = fuzzIDs[int(head>>4)%len(fuzzIDs)]
	for range int(head&0x0f) % (maxFuzzRule + 1) {
		h := next()
		r := Rule{Effect: Allow, Action: []Action{PubSub, Publish, Subscribe, PubSub}[(h>>1)&3]}
		if h&1 == 1 {
			r.Effect = Deny
		}
		r.Filter = filter(int(h>>3)%4+1, ruleLevels)
		s.rules = append(s.rules, r)
	}
	s.requested = filter(int(next())%4+1, ruleLevels[:6])
	return s
}

// modelFilter is the brute-force model of how a rule compiles for the
// client ID: the resolved filter, or, for a value that is empty, contains
// '/', '+' or '#', or starts with '$' at the first level, nothing (allow)
// or the filter cut there with '#' ("" = every topic) (deny).
func modelFilter(r Rule, clientID string) (f string, ok bool) {
	levels := strings.Split(r.Filter, "/")
	for i, l := range levels {
		if l != "%c" {
			continue
		}
		if clientID == "" || strings.ContainsAny(clientID, "/+#") || (i == 0 && clientID[0] == '$') {
			if r.Effect == Allow || i == 0 {
				return "", false
			}
			return strings.Join(levels[:i], "/") + "/#", false
		}
		levels[i] = clientID
	}
	return strings.Join(levels, "/"), true
}

// FuzzSubscribe checks CanSubscribe and CanPublish against a brute-force
// model over every generated topic: a filter may be subscribed to iff one
// allow filter matches every topic it matches and no deny filter matches
// any of them; a topic may be published to iff an allow filter matches it
// and no deny filter does.
func FuzzSubscribe(f *testing.F) {
	f.Add([]byte{0x01, 0x30, 0, 0x01, 5})                // allow "#"; sub "a/#"
	f.Add([]byte{0x02, 0x08, 0, 4, 0x0b, 1, 1})          // allow a/+; deny b; sub a/+
	f.Add([]byte{0x12, 0x34, 0, 6, 5, 0x0d, 5, 1, 5})    // allow a/%c/#; deny +/b
	f.Add([]byte{0x22, 0x28, 4, 6, 5, 0x19, 6, 5, 1, 4}) // client "+", deny on %c
	f.Add([]byte{0x45, 0x30, 2, 5, 5, 0x31, 5, 0x02, 3, 5, 0x00, 0x01, 2, 2})
	f.Add([]byte{0x02, 0x00, 5, 0x0d, 3, 5, 0, 4}) // allow #; deny sub /#; sub + (no common topic)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := decodeSpec(data)
		rs := Compile(s.rules, s.clientID, "u")

		type modelRule struct {
			effect  Effect
			action  Action
			filter  string
			all     bool // a deny of every topic
			matches []bool
		}
		var model []modelRule
		for _, r := range s.rules {
			f, ok := modelFilter(r, s.clientID)
			if !ok && (r.Effect == Allow || f == "") {
				if r.Effect == Deny {
					model = append(model, modelRule{effect: Deny, action: r.Action, all: true})
				}
				continue
			}
			m := modelRule{effect: r.Effect, action: r.Action, filter: f, matches: make([]bool, len(fuzzTopics))}
			for j, tp := range fuzzTopics {
				m.matches[j] = topic.Match(f, tp)
			}
			model = append(model, m)
		}
		has := func(m modelRule, a Action, j int) bool { return m.action&a != 0 && (m.all || m.matches[j]) }

		// Publish.
		for j, tp := range fuzzTopics {
			allowed, denied := false, false
			for _, m := range model {
				if has(m, Publish, j) {
					allowed = allowed || m.effect == Allow
					denied = denied || m.effect == Deny
				}
			}
			if got := rs.CanPublish(tp); got != (allowed && !denied) {
				t.Fatalf("rules %+v client %q: CanPublish(%q) = %v, model %v (allowed %v, denied %v)",
					s.rules, s.clientID, tp, got, !got, allowed, denied)
			}
		}

		// Subscribe.
		req := s.requested
		covered, overlapped := false, false
		for _, m := range model {
			if m.action&Subscribe == 0 {
				continue
			}
			inside, common := true, false
			for j, tp := range fuzzTopics {
				if topic.Match(req, tp) {
					inside = inside && has(m, Subscribe, j)
					common = common || has(m, Subscribe, j)
				}
			}
			if m.effect == Allow {
				covered = covered || inside
			} else {
				overlapped = overlapped || common || m.all
			}
		}
		got := rs.CanSubscribe(req)
		if got != (covered && !overlapped) {
			t.Fatalf("rules %+v client %q: CanSubscribe(%q) = %v, model: covered by one allow %v, overlaps a deny %v",
				s.rules, s.clientID, req, got, covered, overlapped)
		}
		if !got {
			return
		}
		// The brief's soundness statement, spelled out: every topic the
		// subscription can deliver is publishable-visible under the allow
		// set and in no deny filter.
		for j, tp := range fuzzTopics {
			if !topic.Match(req, tp) {
				continue
			}
			allowed := false
			for _, m := range model {
				if has(m, Subscribe, j) {
					if m.effect == Deny {
						t.Fatalf("CanSubscribe(%q) but %q is denied by %q", req, tp, m.filter)
					}
					allowed = true
				}
			}
			if !allowed {
				t.Fatalf("CanSubscribe(%q) but %q is not allowed", req, tp)
			}
		}
	})
}

// FuzzPlaceholder checks that no client ID widens a rule: whatever the
// client ID, an allow rule with "%c" grants no more than the rule with the
// ID substituted literally (when that is a valid filter) and no more than
// the rule with '+' in its place; and a deny rule with "%c" denies at
// least the literal substitution.
func FuzzPlaceholder(f *testing.F) {
	f.Add("devices/%c/#", "d1", "devices/d1/temp")
	f.Add("devices/%c/#", "d1/x", "devices/d1/x/temp")
	f.Add("devices/%c/#", "+", "devices/d2/temp")
	f.Add("devices/%c/#", "", "devices//temp")
	f.Add("%c/#", "$SYS", "$SYS/broker")
	f.Add("%c/%u/+", "a", "a/u/b")
	f.Add("a/%c", "#", "a/#")
	f.Fuzz(func(t *testing.T, filter, clientID, obj string) {
		r := allow(PubSub, filter)
		if ValidateRule(r) != nil {
			return
		}
		replace := func(id string) string {
			levels := strings.Split(filter, "/")
			for i, l := range levels {
				switch l {
				case "%c":
					levels[i] = id
				case "%u":
					levels[i] = "u"
				}
			}
			return strings.Join(levels, "/")
		}
		general, literal := replace("+"), replace(clientID)
		literalOK := topic.ValidateFilter(literal) == nil

		rs := Compile([]Rule{r}, clientID, "u")
		tp := []byte(obj)
		if topic.ValidateTopic(tp) == nil && rs.CanPublish(tp) {
			if !topic.Match(general, tp) {
				t.Errorf("client %q: %q grants publish on %q, beyond %q", clientID, filter, obj, general)
			}
			if literalOK && !topic.Match(literal, tp) {
				t.Errorf("client %q: %q grants publish on %q, beyond %q", clientID, filter, obj, literal)
			}
		}
		if rs.CanSubscribe(obj) {
			if !topic.Subset(obj, general) {
				t.Errorf("client %q: %q grants subscribe to %q, beyond %q", clientID, filter, obj, general)
			}
			if literalOK && !topic.Subset(obj, literal) {
				t.Errorf("client %q: %q grants subscribe to %q, beyond %q", clientID, filter, obj, literal)
			}
		}

		// The same filter as a deny, under allow rules that cover obj.
		allows := []Rule{allow(PubSub, "#")}
		if topic.ValidateFilter(obj) == nil && ValidateRule(allow(PubSub, obj)) == nil {
			allows = append(allows, allow(PubSub, obj))
		}
		rs = Compile(append(allows, deny(PubSub, filter)), clientID, "u")
		if !literalOK {
			return
		}
		if topic.ValidateTopic(tp) == nil && rs.CanPublish(tp) && topic.Match(literal, tp) {
			t.Errorf("client %q: deny %q (%q) lets %q be published", clientID, filter, literal, obj)
		}
		if rs.CanSubscribe(obj) && topic.Overlap(obj, literal) {
			t.Errorf("client %q: deny %q (%q) lets %q be subscribed to", clientID, filter, literal, obj)
		}
	})
}
