package auth

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/relaymq/relay/broker/topic"
	"github.com/relaymq/relay/tenant"
)

// Placeholders a rule's filter may contain, each as a whole topic level.
const (
	// PlaceholderClientID stands for the connection's client ID.
	PlaceholderClientID = "%c"
	// PlaceholderUsername stands for the credential's username.
	PlaceholderUsername = "%u"
)

// MaxFilterLen is the longest rule filter ValidateRule accepts, in bytes.
// The casbin_rule columns are TEXT (migration 002), but the unique index
// over all of them must fit a PostgreSQL B-tree entry (at most 2,704
// bytes); subject, tenant, action and effect take at most about 120.
const MaxFilterLen = 1024

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

// String returns "publish", "subscribe", "pubsub", or "Action(n)".
func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	case PubSub:
		return "pubsub"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ParseAction parses "publish", "subscribe" or "pubsub" (Action.String).
// Anything else is an error wrapping tenant.ErrInvalid.
func ParseAction(s string) (Action, error) {
	for _, a := range []Action{Publish, Subscribe, PubSub} {
		if s == a.String() {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%w: action %q: want publish, subscribe or pubsub", tenant.ErrInvalid, s)
}

// String returns "allow", "deny", or "Effect(n)".
func (e Effect) String() string {
	switch e {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("Effect(%d)", uint8(e))
}

// ParseEffect parses "allow" or "deny" (Effect.String). Anything else is
// an error wrapping tenant.ErrInvalid.
func ParseEffect(s string) (Effect, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("%w: effect %q: want allow or deny", tenant.ErrInvalid, s)
}

// DefaultAppRules returns the rule a new app starts with, visible and
// editable like any other: allow publish and subscribe on "#", every topic
// of the tenant (HiveMQ Cloud's default permission). By the MQTT rules '#'
// does not match topics starting with '$' [MQTT-4.7.2-1], so "$SYS/…" and
// other server topics need a rule of their own.
func DefaultAppRules() []Rule {
	return []Rule{{Effect: Allow, Action: PubSub, Filter: "#"}}
}

// ValidateRule reports whether r can be stored: Effect Allow or Deny, a
// non-empty Action within PubSub, and a valid topic filter of at most
// MaxFilterLen bytes in which "%c" and "%u" appear only as whole levels.
// A literal level "%c" or "%u" cannot be expressed. Errors wrap
// tenant.ErrInvalid.
func ValidateRule(r Rule) error {
	if r.Effect != Allow && r.Effect != Deny {
		return fmt.Errorf("%w: rule effect %d", tenant.ErrInvalid, r.Effect)
	}
	if r.Action == 0 || r.Action&^PubSub != 0 {
		return fmt.Errorf("%w: rule action %d", tenant.ErrInvalid, r.Action)
	}
	if len(r.Filter) > MaxFilterLen {
		return fmt.Errorf("%w: rule filter longer than %d bytes", tenant.ErrInvalid, MaxFilterLen)
	}
	if err := validateRuleFilter(r.Filter); err != nil {
		return fmt.Errorf("%w: rule filter %q: %w", tenant.ErrInvalid, r.Filter, err)
	}
	return nil
}

// errPlaceholder is the reason a filter with a placeholder inside a level
// is invalid.
var errPlaceholder = fmt.Errorf("placeholders %s and %s must be whole levels", PlaceholderClientID, PlaceholderUsername)

// validateRuleFilter checks a rule's filter with its placeholders in place.
func validateRuleFilter(f string) error {
	if strings.Contains(f, "%") {
		levels := strings.Split(f, "/")
		for i, l := range levels {
			switch {
			case l == PlaceholderClientID || l == PlaceholderUsername:
				levels[i] = "x" // any literal level
			case strings.Contains(l, PlaceholderClientID) || strings.Contains(l, PlaceholderUsername):
				return errPlaceholder
			}
		}
		f = strings.Join(levels, "/")
	}
	return topic.ValidateFilter(f)
}

// ---------------------------------------------------------------------------
// Compiled rules
// ---------------------------------------------------------------------------

// RuleSet is the compiled ACL of one connection: its rules with the
// placeholders resolved, split by action and effect. Edges evaluate it on
// every PUBLISH and SUBSCRIBE, with no I/O; CanPublish does not allocate.
// A RuleSet is immutable and safe for concurrent use; a nil *RuleSet
// denies everything.
type RuleSet struct {
	pub, sub ruleList
}

// ruleList holds the filters of one action.
type ruleList struct {
	allow []string
	deny  []string
	// denyAll is set by a deny rule that could not be resolved for this
	// connection and falls back to denying every topic.
	denyAll bool
}

// Compile resolves rules for one connection and returns its RuleSet.
//
// Placeholders: each whole level "%c" becomes clientID and "%u" becomes
// username. A value is usable only if it is non-empty, valid UTF-8 without
// U+0000, contains none of '/', '+' and '#', and, when it replaces the
// first level, does not start with '$'. Otherwise it would widen the rule:
// a client must not gain topics by choosing its ID ("a/b" or "" in
// "devices/%c/#" would reach other devices' subtrees or a shared empty
// level, "+" or "#" would be a wildcard, "$SYS" in "%c/#" would reach
// server topics). So for an unusable value:
//
//   - an Allow rule using it grants nothing;
//   - a Deny rule using it fails closed: it is cut at that level and ends
//     in '#' ("devices/%c/secret" denies "devices/#"), or, at the first
//     level, denies every topic. Dropping it instead would let a client
//     escape a deny by choosing an odd ID.
//
// Rules that do not pass ValidateRule are treated the same way: an invalid
// Allow rule is dropped, an invalid Deny rule denies every topic of its
// actions. Rules with an unknown Effect or no Action are ignored.
func Compile(rules []Rule, clientID, username string) *RuleSet {
	rs := &RuleSet{}
	seen := make(map[compiledKey]bool, len(rules))
	for _, r := range rules {
		if (r.Effect != Allow && r.Effect != Deny) || r.Action&PubSub == 0 {
			continue
		}
		f, ok, fallback := resolve(r, clientID, username)
		if !ok {
			if r.Effect == Allow {
				continue
			}
			f = fallback
		}
		for _, a := range []Action{Publish, Subscribe} {
			if r.Action&a == 0 {
				continue
			}
			l := &rs.pub
			if a == Subscribe {
				l = &rs.sub
			}
			k := compiledKey{r.Effect, a, f}
			if seen[k] {
				continue
			}
			seen[k] = true
			switch {
			case r.Effect == Allow:
				l.allow = append(l.allow, f)
			case f == "":
				l.denyAll = true
			default:
				l.deny = append(l.deny, f)
			}
		}
	}
	return rs
}

// compiledKey identifies a compiled filter, to drop duplicates.
type compiledKey struct {
	e Effect
	a Action
	f string
}

// resolve substitutes the placeholders of r's filter. It returns the
// resolved filter and true, or, if the rule is invalid or a placeholder's
// value unusable, false and the filter a deny rule falls back to: r's
// filter cut at the first unusable placeholder, ending in "#", or "" for
// every topic.
func resolve(r Rule, clientID, username string) (filter string, ok bool, fallback string) {
	if ValidateRule(r) != nil {
		return "", false, ""
	}
	if !strings.Contains(r.Filter, "%") {
		return r.Filter, true, ""
	}
	levels := strings.Split(r.Filter, "/")
	for i, l := range levels {
		var v string
		switch l {
		case PlaceholderClientID:
			v = clientID
		case PlaceholderUsername:
			v = username
		default:
			continue
		}
		if !usable(v, i) {
			if i == 0 {
				return "", false, ""
			}
			cut := strings.Join(levels[:i], "/") + "/#"
			if topic.ValidateFilter(cut) != nil {
				cut = ""
			}
			return "", false, cut
		}
		levels[i] = v
	}
	f := strings.Join(levels, "/")
	if topic.ValidateFilter(f) != nil { // too long
		return "", false, ""
	}
	return f, true, ""
}

// usable reports whether v may replace a placeholder at the given level.
func usable(v string, level int) bool {
	return v != "" && !strings.ContainsAny(v, "/+#\x00") && utf8.ValidString(v) &&
		!(level == 0 && v[0] == '$')
}

// AllowAll returns the rule set of the anonymous default tenant:
// DefaultAppRules, publish and subscribe on every topic not starting with
// '$'.
func AllowAll() *RuleSet { return Compile(DefaultAppRules(), "", "") }

// CanPublish reports whether the connection may publish to topic (a valid
// topic name, see topic.ValidateTopic): some Allow rule for Publish matches
// it and no Deny rule for Publish does (deny beats allow; no rule, no
// access). It does not allocate.
func (rs *RuleSet) CanPublish(t []byte) bool {
	if rs == nil || rs.pub.denyAll {
		return false
	}
	allowed := false
	for _, f := range rs.pub.allow {
		if topic.Match(f, t) {
			allowed = true
			break
		}
	}
	if !allowed {
		return false
	}
	for _, f := range rs.pub.deny {
		if topic.Match(f, t) {
			return false
		}
	}
	return true
}

// CanSubscribe reports whether the connection may subscribe to filter (the
// plain filter: for "$share/g/f" pass "f", topic.Filter.Topic). It is true
// if and only if filter is valid, is contained in the filter of some Allow
// rule for Subscribe (topic.Subset: "a/+" does not grant "a/#"), and
// overlaps no Deny rule for Subscribe (no topic is matched by both: with
// "deny secret/#", "+/x" is refused because it would deliver "secret/x").
func (rs *RuleSet) CanSubscribe(filter string) bool {
	if rs == nil || rs.sub.denyAll || topic.ValidateFilter(filter) != nil {
		return false
	}
	allowed := false
	for _, f := range rs.sub.allow {
		if topic.Subset(filter, f) {
			allowed = true
			break
		}
	}
	if !allowed {
		return false
	}
	for _, f := range rs.sub.deny {
		if topic.Overlap(filter, f) {
			return false
		}
	}
	return true
}
