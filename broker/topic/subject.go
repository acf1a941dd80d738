package topic

import (
	"strings"
	"unicode/utf8"
)

// ---------------------------------------------------------------------------
// MQTT topic ⇄ NATS subject (see the package documentation for the rules)
// ---------------------------------------------------------------------------

const (
	subjectSep = '.' // NATS token separator
	emptyLevel = '%' // token for an empty MQTT level
	escapeChar = '%' // starts a two-digit upper-case hex escape
	upperHex   = "0123456789ABCDEF"
)

// byteClass classifies a byte inside a topic level or subject token.
type byteClass uint8

const (
	plain    byteClass = iota // copied unchanged in both directions
	escaped                   // written as %XX
	rejected                  // never appears raw in a subject: '/', '+', '#'
)

// classes is indexed by byte value.
var classes = func() (t [256]byteClass) {
	for c := 0; c <= 0x20; c++ {
		t[c] = escaped
	}
	for _, c := range []byte{'%', '.', '*', '>', 0x7F} {
		t[c] = escaped
	}
	for _, c := range []byte{'/', '+', '#'} {
		t[c] = rejected
	}
	return t
}()

// fromHex decodes one upper-case hexadecimal digit; ok is false for anything
// else, including lower-case digits, which AppendSubject never writes.
func fromHex(c byte) (v byte, ok bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// AppendSubject appends the NATS subject tail for the valid topic name topic
// to dst and returns the extended slice: one token per level, joined with
// '.', with no leading or trailing '.'. Bytes '%', '.', '*', '>', <= 0x20 and
// 0x7F are escaped as %XX, and an empty level becomes the token "%". It does
// not allocate when dst has SubjectLen(topic) bytes of spare capacity. For an
// invalid topic the result is unspecified.
func AppendSubject(dst []byte, topic []byte) []byte {
	return appendEscaped(dst, topic)
}

// appendEscaped is AppendSubject for a topic name or for one literal filter
// level, given as a string or a byte slice.
func appendEscaped[S ~string | ~[]byte](dst []byte, topic S) []byte {
	levelStart := 0
	for i := 0; i <= len(topic); {
		// Copy the run of plain bytes starting at i.
		j := i
		for j < len(topic) && classes[topic[j]] != escaped && topic[j] != '/' {
			j++
		}
		dst = append(dst, topic[i:j]...)
		if j == len(topic) || topic[j] == '/' {
			if j == levelStart {
				dst = append(dst, emptyLevel)
			}
			if j == len(topic) {
				break
			}
			dst = append(dst, subjectSep)
			levelStart = j + 1
		} else {
			c := topic[j]
			dst = append(dst, escapeChar, upperHex[c>>4], upperHex[c&0xF])
		}
		i = j + 1
	}
	return dst
}

// SubjectLen returns len(AppendSubject(nil, topic)) without building the
// subject. Callers use it to size buffers and to keep subjects below the
// NATS server's max_control_line.
func SubjectLen(topic []byte) int {
	n, levelLen := 0, 0
	for _, c := range topic {
		switch {
		case c == '/':
			if levelLen == 0 {
				n++
			}
			n++
			levelLen = 0
			continue
		case classes[c] == escaped:
			n += 3
		default:
			n++
		}
		levelLen++
	}
	if levelLen == 0 {
		n++
	}
	return n
}

// DecodeSubject appends the MQTT topic name encoded by the NATS subject tail
// subject to dst and returns the extended slice. It accepts exactly the
// subjects AppendSubject produces from valid topic names; for anything else
// (an empty token, a bad or lower-case or unnecessary escape, a raw byte that
// must be escaped, a raw '/', '+' or '#', or a result that is not a valid
// topic name) it returns dst unchanged and ErrInvalidSubject. It does not
// allocate when dst has len(subject) bytes of spare capacity; the subject
// may be a string (as nats.go hands it out) or bytes.
func DecodeSubject[S ~string | ~[]byte](dst []byte, subject S) ([]byte, error) {
	start := len(dst)
	tokenStart := true // at the first byte of a token
	for i := 0; i < len(subject); {
		c := subject[i]
		switch {
		case c == subjectSep:
			if tokenStart {
				return dst[:start], ErrInvalidSubject // empty token
			}
			dst = append(dst, '/')
			tokenStart = true
			i++
		case c == emptyLevel && tokenStart && (i+1 == len(subject) || subject[i+1] == subjectSep):
			// The token "%": an empty level, nothing to write.
			tokenStart = false
			i++
		case c == escapeChar:
			if i+2 >= len(subject) {
				return dst[:start], ErrInvalidSubject
			}
			hi, ok1 := fromHex(subject[i+1])
			lo, ok2 := fromHex(subject[i+2])
			b := hi<<4 | lo
			if !ok1 || !ok2 || classes[b] != escaped || b == 0 {
				// Not an escape AppendSubject writes, or U+0000.
				return dst[:start], ErrInvalidSubject
			}
			dst = append(dst, b)
			tokenStart = false
			i += 3
		case classes[c] != plain:
			return dst[:start], ErrInvalidSubject
		default:
			j := i + 1
			for j < len(subject) && classes[subject[j]] == plain {
				j++
			}
			dst = append(dst, subject[i:j]...)
			tokenStart = false
			i = j
		}
	}
	if tokenStart {
		return dst[:start], ErrInvalidSubject // empty subject or trailing '.'
	}
	out := dst[start:]
	if len(out) == 0 || len(out) > MaxLen || !utf8.Valid(out) {
		return dst[:start], ErrInvalidSubject
	}
	return dst, nil
}

// FilterSubjects returns the NATS subject tails, possibly with wildcards,
// that together receive exactly the topic names the valid filter matches,
// ignoring the '$' rule (see NeedsDollarCheck). '+' becomes "*", literal
// levels are escaped as by AppendSubject, and a trailing '#' becomes the
// parent subject plus parent+".>"; "#" alone becomes ">". The subjects match
// disjoint sets. Examples:
//
//	"a/b"   → ["a.b"]
//	"a/+/c" → ["a.*.c"]
//	"a/#"   → ["a", "a.>"]
//	"+/#"   → ["*", "*.>"]
//	"#"     → [">"]
//
// A shared or local filter must be passed as its Filter.Topic. For an
// invalid filter the result is unspecified.
func FilterSubjects(filter string) []string {
	if filter == "#" {
		return []string{">"}
	}
	parent, multi := strings.CutSuffix(filter, "/#")
	b := make([]byte, 0, 3*len(parent)+3)
	for i, level := range strings.Split(parent, "/") {
		if i > 0 {
			b = append(b, subjectSep)
		}
		if level == "+" {
			b = append(b, '*')
		} else {
			b = appendEscaped(b, level)
		}
	}
	if !multi {
		return []string{string(b)}
	}
	return []string{string(b), string(b) + ".>"}
}

// NeedsDollarCheck reports whether the valid filter starts with a wildcard
// level. Such a filter must not match topics starting with '$'
// [MQTT-4.7.2-1], but its NATS subjects do, so deliveries on them whose
// topic (equivalently, subject tail) starts with '$' must be dropped.
func NeedsDollarCheck(filter string) bool {
	return len(filter) > 0 && (filter[0] == '+' || filter[0] == '#')
}
