package topic

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// subjectFixtures drive both AppendSubject and DecodeSubject.
var subjectFixtures = []struct {
	name    string
	topic   string
	subject string
}{
	{"two levels", "a/b", "a.b"},
	{"single level", "a", "a"},
	{"leading slash", "/a", "%.a"},
	{"empty levels", "a//b/", "a.%.b.%"},
	{"only slash", "/", "%.%"},
	{"two slashes", "//", "%.%.%"},
	{"dot and space", "v1.2/x y", "v1%2E2.x%20y"},
	{"wildcard bytes", "*/>", "%2A.%3E"},
	{"wildcard bytes inside", "a*b/c>d", "a%2Ab.c%3Ed"},
	{"percent", "100%", "100%25"},
	{"percent alone", "%", "%25"},
	{"percent percent", "%%/%", "%25%25.%25"},
	{"tab newline", "a\tb\nc", "a%09b%0Ac"},
	{"control", "\x01\x1f", "%01%1F"},
	{"DEL", "a\x7f", "a%7F"},
	{"dollar", "$SYS/broker/uptime", "$SYS.broker.uptime"},
	{"utf8 copied", "温度/센서", "温度.센서"},
	{"U+00A0 copied", "a\u00a0b", "a\u00a0b"}, // NATS only splits on ASCII whitespace
	{"U+0085 copied", "a\u0085b", "a\u0085b"},
	{"tilde and punctuation", "a-b_c~d:e!f", "a-b_c~d:e!f"},
	{"looks like escape", "%2E", "%252E"},
	{"sport", "sport/tennis/player1", "sport.tennis.player1"},
}

func TestAppendSubject(t *testing.T) {
	for _, tt := range subjectFixtures {
		t.Run(tt.name, func(t *testing.T) {
			if ValidateTopic([]byte(tt.topic)) != nil {
				t.Fatalf("fixture topic %q is not valid", tt.topic)
			}
			got := AppendSubject([]byte("prefix."), []byte(tt.topic))
			if want := "prefix." + tt.subject; string(got) != want {
				t.Errorf("AppendSubject(%q) = %q, want %q", tt.topic, got, want)
			}
			if n := SubjectLen([]byte(tt.topic)); n != len(tt.subject) {
				t.Errorf("SubjectLen(%q) = %d, want %d", tt.topic, n, len(tt.subject))
			}
		})
	}
}

func TestDecodeSubject(t *testing.T) {
	for _, tt := range subjectFixtures {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeSubject([]byte("x"), []byte(tt.subject))
			if err != nil {
				t.Fatalf("DecodeSubject(%q) error: %v", tt.subject, err)
			}
			if want := "x" + tt.topic; string(got) != want {
				t.Errorf("DecodeSubject(%q) = %q, want %q", tt.subject, got, want)
			}
		})
	}
}

func TestDecodeSubjectInvalid(t *testing.T) {
	tests := []struct {
		name    string
		subject string
	}{
		{"empty", ""},
		{"empty token middle", "a..b"},
		{"leading dot", ".a"},
		{"trailing dot", "a."},
		{"only dot", "."},
		{"only empty level", "%"}, // would decode to "" [MQTT-4.7.3-1]
		{"truncated escape", "a%2"},
		{"truncated escape at end", "a%"},
		{"escape then dot", "%2.a"},
		{"lower-case hex", "v1%2e2"},
		{"non-hex", "%G0"},
		{"unneeded escape", "%41"},      // 'A' is never escaped
		{"escaped slash", "a%2Fb"},      // would add a level
		{"escaped plus", "%2B"},         // [MQTT-3.3.2-2]
		{"escaped hash", "%23"},         // [MQTT-3.3.2-2]
		{"escaped nul", "a%00"},         // [MQTT-4.7.3-2]
		{"escaped high byte", "%C3%A9"}, // UTF-8 is copied, never escaped
		{"percent then text", "%a"},
		{"double percent", "%%"},
		{"raw space", "a b"},
		{"raw tab", "a\tb"},
		{"raw nul", "a\x00"},
		{"raw DEL", "a\x7f"},
		{"raw star", "a.*"},
		{"raw gt", "a.>"},
		{"raw star inside", "a*b"},
		{"raw slash", "a/b"},
		{"raw plus", "a+"},
		{"raw hash", "#"},
		{"invalid utf8", "a\xff"},     // [MQTT-1.5.3-1]
		{"surrogate", "\xed\xa0\x80"}, // [MQTT-1.5.3-1]
		{"too long", strings.Repeat("a.", MaxLen/2) + "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := DecodeSubject(dst, []byte(tt.subject))
			if !errors.Is(err, ErrInvalidSubject) {
				t.Errorf("DecodeSubject(%q) = %q, %v; want ErrInvalidSubject", tt.subject, got, err)
			}
			if string(got) != "keep" {
				t.Errorf("DecodeSubject(%q) returned dst %q, want it unchanged", tt.subject, got)
			}
		})
	}
}

// TestSubjectRoundTrip checks DecodeSubject(AppendSubject(t)) == t for
// generated topics and for every byte that may appear in a topic, and that
// every subject is a valid literal NATS subject.
func TestSubjectRoundTrip(t *testing.T) {
	alphabet := []string{"", "a", "$", ".", "*", ">", "%", " ", "%25", "é"}
	topics := genTopics(t, alphabet, 3)
	for c := 1; c < 0x80; c++ {
		if c != '+' && c != '#' {
			topics = append(topics, []byte{'x', byte(c), '/', byte(c)})
		}
	}
	topics = append(topics, bytes.Repeat([]byte("a.b/"), MaxLen/4+1)[:MaxLen])
	for _, tp := range topics {
		subj := AppendSubject(nil, tp)
		checkSubject(t, tp, subj)
		got, err := DecodeSubject(nil, subj)
		if err != nil || !bytes.Equal(got, tp) {
			t.Errorf("DecodeSubject(AppendSubject(%q) = %q) = %q, %v", tp, subj, got, err)
		}
		if n := SubjectLen(tp); n != len(subj) {
			t.Errorf("SubjectLen(%q) = %d, want %d", tp, n, len(subj))
		}
	}
}

// checkSubject fails unless subj is a valid literal NATS subject: non-empty
// tokens, no whitespace or control bytes, no '*' or '>' anywhere.
func checkSubject(t testing.TB, topic, subj []byte) {
	t.Helper()
	for tok := range bytes.SplitSeq(subj, []byte{'.'}) {
		if len(tok) == 0 {
			t.Errorf("subject %q for topic %q has an empty token", subj, topic)
		}
	}
	for _, c := range subj {
		if c <= ' ' || c == 0x7f || c == '*' || c == '>' || c == '/' {
			t.Errorf("subject %q for topic %q contains raw byte %#x", subj, topic, c)
			return
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		filter string
		want   []string
	}{
		{"a/b", []string{"a.b"}},
		{"a/+/c", []string{"a.*.c"}},
		{"a/#", []string{"a", "a.>"}},
		{"#", []string{">"}},
		{"+", []string{"*"}},
		{"+/#", []string{"*", "*.>"}},
		{"+/+", []string{"*.*"}},
		{"/#", []string{"%", "%.>"}},
		{"/+", []string{"%.*"}},
		{"a//b/", []string{"a.%.b.%"}},
		{"v1.2/+/x y/#", []string{"v1%2E2.*.x%20y", "v1%2E2.*.x%20y.>"}},
		{"*/>", []string{"%2A.%3E"}},
		{"$SYS/#", []string{"$SYS", "$SYS.>"}},
		{"sport/tennis/player1/#", []string{"sport.tennis.player1", "sport.tennis.player1.>"}},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			if got := FilterSubjects(tt.filter); !slices.Equal(got, tt.want) {
				t.Errorf("FilterSubjects(%q) = %q, want %q", tt.filter, got, tt.want)
			}
		})
	}
}

func TestNeedsDollarCheck(t *testing.T) {
	tests := []struct {
		filter string
		want   bool
	}{
		{"#", true}, // [MQTT-4.7.2-1]
		{"+", true}, // [MQTT-4.7.2-1]
		{"+/monitor/Clients", true},
		{"+/#", true},
		{"$SYS/#", false},
		{"a/+", false},
		{"a/#", false},
		{"/+", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			if got := NeedsDollarCheck(tt.filter); got != tt.want {
				t.Errorf("NeedsDollarCheck(%q) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

// natsMatch reports whether the NATS subject matches pattern, with NATS token
// semantics: "*" matches exactly one token, a final ">" matches one or more
// tokens, anything else matches itself.
func natsMatch(pattern, subject string) bool {
	pt := strings.Split(pattern, ".")
	st := strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" && i == len(pt)-1 {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

func TestNATSMatch(t *testing.T) {
	tests := []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.*", "a", false},
		{"a.*", "a.b.c", false},
		{"a.>", "a", false},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{">", "a", true},
		{"*", "a.b", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.subject, func(t *testing.T) {
			if got := natsMatch(tt.pattern, tt.subject); got != tt.want {
				t.Errorf("natsMatch(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
			}
		})
	}
}

// TestFilterSubjectsAgainstMatch checks that a NATS subscriber on
// FilterSubjects(f), dropping '$' topics when NeedsDollarCheck(f), receives
// exactly the topics Match(f, topic) accepts, each exactly once.
func TestFilterSubjectsAgainstMatch(t *testing.T) {
	filters := genFilters(t, []string{"a", "$s", "", ".", "%", "+", "#"}, 3)
	topics := genTopics(t, []string{"a", "$s", "", ".", "%", "z"}, 4)
	for _, f := range filters {
		subs := FilterSubjects(f)
		for _, s := range subs {
			for tok := range strings.SplitSeq(s, ".") {
				if tok == "" || strings.ContainsAny(tok, " \t\r\n\f") {
					t.Errorf("FilterSubjects(%q) = %q: invalid NATS subject", f, subs)
				}
			}
		}
		for _, tp := range topics {
			checkFilterSubjects(t, f, tp)
		}
	}
}

// TestHotPathAllocs keeps Match, ValidateTopic, AppendSubject and
// DecodeSubject allocation-free; the benchmarks report the same numbers.
func TestHotPathAllocs(t *testing.T) {
	topic := []byte("tenants/acme/devices/sensor-42/temp.celsius")
	subj := AppendSubject(nil, topic)
	buf := make([]byte, 0, 256)
	tests := []struct {
		name string
		fn   func()
	}{
		{"Match", func() { _ = Match("tenants/+/devices/#", topic) }},
		{"ValidateTopic", func() { _ = ValidateTopic(topic) }},
		{"AppendSubject", func() { buf = AppendSubject(buf[:0], topic) }},
		{"DecodeSubject", func() { buf, _ = DecodeSubject(buf[:0], subj) }},
		{"SubjectLen", func() { _ = SubjectLen(topic) }},
		{"Subset", func() { _ = Subset("tenants/acme/+/x", "tenants/acme/#") }},
		{"NeedsDollarCheck", func() { _ = NeedsDollarCheck("+/x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
			}
		})
	}
}
