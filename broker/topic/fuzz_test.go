package topic

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzSubjectRoundTrip checks that every valid topic round-trips through
// AppendSubject and DecodeSubject into a valid literal NATS subject, and,
// reading the input as a subject, that everything DecodeSubject accepts is
// a valid topic that encodes back to the same subject (the encoding is a
// bijection).
func FuzzSubjectRoundTrip(f *testing.F) {
	for _, tt := range subjectFixtures {
		f.Add([]byte(tt.topic))
		f.Add([]byte(tt.subject))
	}
	f.Add([]byte("a%2e"))
	f.Add([]byte("%.%"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if ValidateTopic(in) == nil {
			subj := AppendSubject(nil, in)
			checkSubject(t, in, subj)
			if n := SubjectLen(in); n != len(subj) {
				t.Errorf("SubjectLen(%q) = %d, want %d", in, n, len(subj))
			}
			got, err := DecodeSubject(nil, subj)
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("DecodeSubject(AppendSubject(%q) = %q) = %q, %v", in, subj, got, err)
			}
		}
		topic, err := DecodeSubject([]byte("p"), in)
		if err != nil {
			if !errors.Is(err, ErrInvalidSubject) || string(topic) != "p" {
				t.Fatalf("DecodeSubject(%q) = %q, %v", in, topic, err)
			}
			return
		}
		topic = topic[1:]
		if err := ValidateTopic(topic); err != nil {
			t.Errorf("DecodeSubject(%q) = %q, not a valid topic: %v", in, topic, err)
		}
		if back := AppendSubject(nil, topic); !bytes.Equal(back, in) {
			t.Errorf("DecodeSubject(%q) = %q, which encodes to %q", in, topic, back)
		}
	})
}

// FuzzMatchSubset checks that Subset is reflexive and sound with respect to
// Match: Subset(a, b) && Match(a, t) implies Match(b, t), and that Match
// agrees with the subscriber-side NATS mapping. Random filters rarely match
// random topics, so a third filter is derived from the topic itself by
// replacing the levels selected by mask with '+' or a final '#'.
func FuzzMatchSubset(f *testing.F) {
	seeds := []struct {
		a, b, topic string
		mask        uint32
	}{
		{"a/+/c", "a/#", "a/b/c", 0b0100},
		{"a/#", "a/+/c", "a/b/c", 0b1000},
		{"#", "+/#", "x", 0b10},
		{"$SYS/#", "#", "$SYS/x", 0b01},
		{"+/x", "$SYS/+", "$SYS/x", 0b0001},
		{"sport/tennis/player1/#", "sport/#", "sport/tennis/player1", 0b100000},
		{"/+", "+/+", "/finance", 0b0101},
		{"a//b/", "a/+/b/#", "a//b/", 0b11000100},
		{"/#", "/+/#", "//", 0b1000},
	}
	for _, s := range seeds {
		f.Add(s.a, s.b, s.topic, s.mask)
	}
	f.Fuzz(func(t *testing.T, a, b, topic string, mask uint32) {
		tp := []byte(topic)
		if ValidateTopic(tp) != nil {
			return
		}
		derived := generalize(topic, mask)
		if err := ValidateFilter(derived); err != nil {
			t.Fatalf("generalize(%q, %b) = %q: %v", topic, mask, derived, err)
		}
		if !Match(derived, tp) && !(NeedsDollarCheck(derived) && topic[0] == '$') {
			t.Errorf("Match(%q, %q) = false for a filter derived from the topic", derived, topic)
		}
		filters := []string{derived}
		for _, x := range []string{a, b} {
			if ValidateFilter(x) == nil {
				filters = append(filters, x)
			}
		}
		for _, x := range filters {
			if !Subset(x, x) {
				t.Errorf("Subset(%q, %q) = false, want reflexive", x, x)
			}
			checkFilterSubjects(t, x, tp)
			for _, y := range filters {
				if Subset(x, y) && Match(x, tp) && !Match(y, tp) {
					t.Errorf("Subset(%q, %q) but %q matches only the first", x, y, topic)
				}
			}
		}
	})
}

// generalize turns topic into a filter that matches it (unless the '$' rule
// applies): level i becomes '+' if bit 2i of mask is set, and '#' ending the
// filter if bit 2i+1 is set.
func generalize(topic string, mask uint32) string {
	levels := strings.Split(topic, "/")
	for i := range levels {
		if i < 16 && mask>>(2*i+1)&1 == 1 {
			return strings.Join(append(levels[:i], "#"), "/")
		}
		if i < 16 && mask>>(2*i)&1 == 1 {
			levels[i] = "+"
		}
	}
	return strings.Join(levels, "/")
}

// checkFilterSubjects fails unless a NATS subscriber on FilterSubjects(filter)
// that applies NeedsDollarCheck receives topic exactly when Match says so,
// and at most once.
func checkFilterSubjects(t testing.TB, filter string, topic []byte) {
	t.Helper()
	subject := string(AppendSubject(nil, topic))
	n := 0
	for _, s := range FilterSubjects(filter) {
		if natsMatch(s, subject) {
			n++
		}
	}
	want := Match(filter, topic)
	if got := n == 1 && !(NeedsDollarCheck(filter) && subject[0] == '$'); got != want || n > 1 {
		t.Errorf("FilterSubjects(%q) receives %q (%q) %d times; Match = %v", filter, topic, subject, n, want)
	}
}

// FuzzValidate checks that no exported function panics on arbitrary input
// and that the validators agree with each other.
func FuzzValidate(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.filter, []byte(tt.topic))
	}
	f.Add("$share/g/a/+", []byte("a/b"))
	f.Add("$queue/#", []byte("\x00"))
	f.Add("$local/", []byte("a\xff"))
	f.Fuzz(func(t *testing.T, filter string, topic []byte) {
		topicErr := ValidateTopic(topic)
		filterErr := ValidateFilter(filter)
		// A valid topic name is a valid filter without wildcards.
		if topicErr == nil && ValidateFilter(string(topic)) != nil {
			t.Errorf("ValidateTopic(%q) ok but ValidateFilter rejects it", topic)
		}
		if topicErr == nil && !Match(string(topic), topic) {
			t.Errorf("Match(%q, %q) = false for a literal filter", topic, topic)
		}
		_ = Match(filter, topic)
		_ = Subset(filter, string(topic))
		_ = Subset(string(topic), filter)
		_ = NeedsDollarCheck(filter)
		_ = AppendSubject(nil, topic)
		_ = SubjectLen(topic)
		_, _ = DecodeSubject(nil, topic)
		if filterErr == nil {
			_ = FilterSubjects(filter)
		}
		pf, err := ParseFilter(filter)
		if err == nil {
			if ValidateFilter(pf.Topic) != nil {
				t.Errorf("ParseFilter(%q) = %+v with an invalid Topic", filter, pf)
			}
			if (pf.Kind == Shared) != (pf.Group != "") {
				t.Errorf("ParseFilter(%q) = %+v: Group set iff Shared", filter, pf)
			}
		}
	})
}
