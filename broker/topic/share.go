package topic

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind says how a subscription's messages are distributed.
type Kind uint8

// Subscription kinds, following MQTT 5.0 §4.8.2 and EMQ's conventions.
const (
	// Normal means every matching session receives every message.
	Normal Kind = iota
	// Shared means each message goes to one session of the share group
	// ("$share/<group>/<filter>", or "$queue/<filter>" for QueueGroup).
	Shared
	// Local means the subscription only receives messages published on the
	// same edge node ("$local/<filter>").
	Local
)

// String returns "normal", "shared", "local", or "Kind(n)" for other values.
func (k Kind) String() string {
	switch k {
	case Normal:
		return "normal"
	case Shared:
		return "shared"
	case Local:
		return "local"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// QueueGroup is the Group of every "$queue/<filter>" subscription: EMQ's
// queue subscriptions behave like one anonymous share group.
const QueueGroup = "$queue"

// Filter is a parsed SUBSCRIBE topic filter.
type Filter struct {
	// Kind is Normal, Shared or Local.
	Kind Kind
	// Group is the share group name when Kind is Shared (QueueGroup for
	// "$queue/" filters), and "" otherwise.
	Group string
	// Topic is the topic filter proper, without any prefix; pass it to
	// Match, Subset, FilterSubjects and NeedsDollarCheck.
	Topic string
}

// Prefixes recognised by ParseFilter. They are case-sensitive.
const (
	sharePrefix = "$share/"
	queuePrefix = "$queue/"
	localPrefix = "$local/"
)

// ParseFilter parses a SUBSCRIBE topic filter and validates it:
//
//	"$share/<group>/<filter>"  Shared, Group <group>
//	"$queue/<filter>"          Shared, Group QueueGroup
//	"$local/<filter>"          Local
//	anything else              Normal, the whole string is the filter
//
// The share group must be non-empty [MQTT-4.8.2-1], must not contain '+',
// '#' or '/', and must be followed by '/' and a non-empty filter
// [MQTT-4.8.2-2]; otherwise ParseFilter returns ErrInvalidShare, as it does
// for "$queue/" and "$local/" with nothing after them. A group that is not
// well-formed UTF-8 or contains U+0000 gives ErrInvalidUTF8 or ErrNUL. The
// inner filter is checked with ValidateFilter and its error returned
// unchanged. Prefixes are recognised once: in "$local/$share/g/a" the inner
// filter is the Normal-looking literal "$share/g/a".
//
// The input is limited to MaxLen bytes as a whole (ErrTooLong); the
// returned Group and Topic share its memory.
func ParseFilter(s string) (Filter, error) {
	if len(s) > MaxLen {
		return Filter{}, ErrTooLong
	}
	var f Filter
	var inner string
	switch {
	case strings.HasPrefix(s, sharePrefix):
		group, rest, ok := strings.Cut(s[len(sharePrefix):], "/")
		if group == "" {
			return Filter{}, ErrInvalidShare // [MQTT-4.8.2-1]
		}
		if !ok || strings.ContainsAny(group, "+#") {
			return Filter{}, ErrInvalidShare // [MQTT-4.8.2-2]
		}
		if strings.IndexByte(group, 0) >= 0 {
			return Filter{}, ErrNUL // [MQTT-4.7.3-2]
		}
		if !utf8.ValidString(group) {
			return Filter{}, ErrInvalidUTF8 // [MQTT-1.5.3-1]
		}
		f = Filter{Kind: Shared, Group: group}
		inner = rest
	case strings.HasPrefix(s, queuePrefix):
		f = Filter{Kind: Shared, Group: QueueGroup}
		inner = s[len(queuePrefix):]
	case strings.HasPrefix(s, localPrefix):
		f = Filter{Kind: Local}
		inner = s[len(localPrefix):]
	default:
		if err := ValidateFilter(s); err != nil {
			return Filter{}, err
		}
		return Filter{Kind: Normal, Topic: s}, nil
	}
	if inner == "" {
		return Filter{}, ErrInvalidShare // [MQTT-4.8.2-2] for $share
	}
	if err := ValidateFilter(inner); err != nil {
		return Filter{}, err
	}
	f.Topic = inner
	return f, nil
}
