package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLen is the maximum length in bytes of a topic name or topic filter
// [MQTT-4.7.3-3]: an MQTT UTF-8 encoded string has a two-byte length prefix.
const MaxLen = 65535

// Errors returned by the validation functions. Test with errors.Is.
var (
	// ErrEmpty is returned for a zero-length topic name or filter
	// [MQTT-4.7.3-1].
	ErrEmpty = errors.New("topic: empty")

	// ErrTooLong is returned for a topic name or filter longer than MaxLen
	// bytes [MQTT-4.7.3-3].
	ErrTooLong = errors.New("topic: longer than 65535 bytes")

	// ErrWildcardInTopic is returned for a topic name that contains '+' or
	// '#' [MQTT-3.3.2-2].
	ErrWildcardInTopic = errors.New("topic: wildcard in topic name")

	// ErrInvalidFilter is returned for a filter with a misplaced wildcard:
	// '#' that is not alone in the last level [MQTT-4.7.1-2], or '+' that is
	// not alone in its level [MQTT-4.7.1-3].
	ErrInvalidFilter = errors.New("topic: misplaced wildcard in filter")

	// ErrInvalidUTF8 is returned for a topic name or filter that is not
	// well-formed UTF-8 [MQTT-1.5.3-1].
	ErrInvalidUTF8 = errors.New("topic: invalid UTF-8")

	// ErrNUL is returned for a topic name or filter containing U+0000
	// [MQTT-1.5.3-2] [MQTT-4.7.3-2].
	ErrNUL = errors.New("topic: contains U+0000")

	// ErrInvalidShare is returned by ParseFilter for a malformed "$share/",
	// "$queue/" or "$local/" prefix: an empty share group [MQTT-4.8.2-1], a
	// share group containing '+' or '#' or not followed by '/' and a filter
	// [MQTT-4.8.2-2], or nothing after "$queue/" or "$local/".
	ErrInvalidShare = errors.New("topic: invalid shared subscription")

	// ErrInvalidSubject is returned by DecodeSubject for a subject tail that
	// AppendSubject cannot have produced from a valid topic name.
	ErrInvalidSubject = errors.New("topic: invalid NATS subject")
)

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

// ValidateTopic reports whether topic is a valid PUBLISH topic name: at least
// one byte [MQTT-4.7.3-1], at most MaxLen bytes [MQTT-4.7.3-3], no '+' or
// '#' [MQTT-3.3.2-2], well-formed UTF-8 [MQTT-1.5.3-1] without U+0000
// [MQTT-1.5.3-2] [MQTT-4.7.3-2]. It returns ErrEmpty, ErrTooLong, ErrWildcardInTopic,
// ErrInvalidUTF8 or ErrNUL, the first problem found scanning left to right,
// and never allocates.
func ValidateTopic(topic []byte) error {
	switch {
	case len(topic) == 0:
		return ErrEmpty // [MQTT-4.7.3-1]
	case len(topic) > MaxLen:
		return ErrTooLong // [MQTT-4.7.3-3]
	}
	for i := 0; i < len(topic); {
		c := topic[i]
		if c < utf8.RuneSelf {
			switch c {
			case 0:
				return ErrNUL // [MQTT-1.5.3-2]
			case '+', '#':
				return ErrWildcardInTopic // [MQTT-3.3.2-2]
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(topic[i:])
		if r == utf8.RuneError && n == 1 {
			return ErrInvalidUTF8 // [MQTT-1.5.3-1]
		}
		i += n
	}
	return nil
}

// ValidateFilter reports whether filter is a valid SUBSCRIBE topic filter: at
// least one byte [MQTT-4.7.3-1], at most MaxLen bytes [MQTT-4.7.3-3], '#'
// only as the whole last level [MQTT-4.7.1-2], '+' only as a whole level
// [MQTT-4.7.1-3], well-formed UTF-8 [MQTT-1.5.3-1] without U+0000
// [MQTT-1.5.3-2] [MQTT-4.7.3-2]. It returns
// ErrEmpty, ErrTooLong, ErrInvalidFilter, ErrInvalidUTF8 or ErrNUL, the first
// problem found scanning left to right. Shared-subscription prefixes are not
// interpreted here; see ParseFilter.
func ValidateFilter(filter string) error {
	switch {
	case len(filter) == 0:
		return ErrEmpty // [MQTT-4.7.3-1]
	case len(filter) > MaxLen:
		return ErrTooLong // [MQTT-4.7.3-3]
	}
	for i := 0; i < len(filter); {
		c := filter[i]
		if c < utf8.RuneSelf {
			switch c {
			case 0:
				return ErrNUL // [MQTT-1.5.3-2]
			case '+':
				// [MQTT-4.7.1-3] '+' must occupy an entire level.
				if (i > 0 && filter[i-1] != '/') || (i+1 < len(filter) && filter[i+1] != '/') {
					return ErrInvalidFilter
				}
			case '#':
				// [MQTT-4.7.1-2] '#' must occupy the entire last level.
				if (i > 0 && filter[i-1] != '/') || i+1 != len(filter) {
					return ErrInvalidFilter
				}
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(filter[i:])
		if r == utf8.RuneError && n == 1 {
			return ErrInvalidUTF8 // [MQTT-1.5.3-1]
		}
		i += n
	}
	return nil
}

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

// Match reports whether the topic name matches filter per MQTT 3.1.1 §4.7:
// '+' matches exactly one level, '#' matches its parent level and every level
// below it ("sport/#" matches "sport") [MQTT-4.7.1-2], and a filter whose
// first character is a wildcard does not match a topic starting with '$'
// [MQTT-4.7.2-1]. Empty levels are levels: "+/+" matches "/finance". The
// comparison is byte-wise and case-sensitive.
//
// Both arguments are assumed valid (ValidateFilter, ValidateTopic); for
// invalid input the result is unspecified but Match does not panic. A shared
// or local filter must be passed as its Filter.Topic. Match never allocates.
func Match(filter string, topic []byte) bool {
	// [MQTT-4.7.2-1] wildcards at the first level never match '$' topics.
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	fi, ti := 0, 0
	for fi < len(filter) {
		// Invariant: fi and ti are at the start of a level.
		switch filter[fi] {
		case '#':
			// [MQTT-4.7.1-2] the rest of the topic, whatever it is.
			return true
		case '+':
			// [MQTT-4.7.1-3] exactly one level, possibly empty.
			for ti < len(topic) && topic[ti] != '/' {
				ti++
			}
			fi++
		default:
			for fi < len(filter) && filter[fi] != '/' {
				if ti == len(topic) || topic[ti] != filter[fi] {
					return false
				}
				fi++
				ti++
			}
			if ti < len(topic) && topic[ti] != '/' {
				return false // topic level is longer
			}
		}
		// Both are at the end of a level.
		if fi == len(filter) {
			return ti == len(topic)
		}
		if ti == len(topic) {
			// The topic has no more levels: only a final "/#" still matches,
			// since '#' includes the parent level [MQTT-4.7.1-2].
			return filter[fi:] == "/#"
		}
		fi++
		ti++
	}
	// The filter ended with '/': its last level is empty, and so must the
	// topic's be.
	return ti == len(topic)
}

// Subset reports whether every topic name matched by the filter requested is
// also matched by the filter granted. It is exact for valid filters: sound
// (never true when some valid topic matches requested but not granted) and
// complete (never false otherwise). SUBSCRIBE authorization uses it:
//
//	Subset("a/#", "a/+/c")   == false // a grant of "a/+/c" does not grant "a/#"
//	Subset("a/+/c", "a/#")   == true
//	Subset("a", "a/#")       == true  // '#' includes the parent [MQTT-4.7.1-2]
//	Subset("$SYS/x", "+/x")  == false // [MQTT-4.7.2-1]
//	Subset("#", "+/#")       == true  // both match every topic not starting with '$'
//	Subset("/#", "/+/#")     == true  // the parent of "/#" would be the empty topic
//
// Subset returns false when either argument is not a valid filter (deny by
// default). A shared or local filter must be passed as its Filter.Topic.
func Subset(requested, granted string) bool {
	if ValidateFilter(requested) != nil || ValidateFilter(granted) != nil {
		return false
	}
	r, g := requested, granted
	for level := 0; ; level++ {
		rl, rrest, rmore := strings.Cut(r, "/")
		gl, grest, gmore := strings.Cut(g, "/")
		if gl == "#" {
			// granted covers this level, its parent and everything below,
			// except '$' topics when this is the first level [MQTT-4.7.2-1].
			return level > 0 || !isDollarLiteral(rl)
		}
		if rl == "#" {
			// requested covers its prefix (the parent level) and every topic
			// below it. granted has no '#' here, so it can only cover them
			// all when the parent is not a valid topic name, which makes
			// this '#' equivalent to "+/#": at the first level (there is no
			// parent) and after a first level that is empty (the parent
			// would be the empty topic [MQTT-4.7.3-1]). "#" ≡ "+/#" and
			// "/#" ≡ "/+/#".
			noParent := level == 0 || (level == 1 && requested[0] == '/')
			return noParent && gl == "+" && gmore && grest == "#"
		}
		if gl == "+" {
			if level == 0 && isDollarLiteral(rl) {
				return false // [MQTT-4.7.2-1]
			}
		} else if rl != gl {
			return false // a different literal, or '+' against a literal
		}
		switch {
		case !rmore && !gmore:
			return true
		case !rmore:
			// requested topics end here; granted must accept the parent.
			return grest == "#"
		case !gmore:
			return false // requested topics are longer
		}
		r, g = rrest, grest
	}
}

// isDollarLiteral reports whether a first filter level is a literal that
// starts with '$'.
func isDollarLiteral(level string) bool {
	return len(level) > 0 && level[0] == '$'
}
