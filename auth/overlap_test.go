package auth

import (
	"testing"

	"github.com/relaymq/relay/broker/topic"
)

func TestOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "+/b", true},
		{"a/+/c", "a/b", false},
		{"a/#", "a", true},
		{"a", "a/#", true},
		{"a/#", "a/b/c/d", true},
		{"a/+", "a/#", true},
		{"a/+/#", "a", false},
		{"#", "x", true},
		{"#", "#", true},
		{"#", "$SYS/x", false},
		{"$SYS/x", "#", false},
		{"+/x", "$SYS/x", false},
		{"+/#", "$SYS/#", false},
		{"$SYS/#", "$SYS/+/x", true},
		{"+", "+", true},
		{"/#", "+", false}, // only "" would match both, not a valid topic
		{"+", "/#", false},
		{"/#", "+/#", true}, // "/"
		{"/#", "/", true},
		{"/", "+/+", true},
		{"+/+", "+", false},
		{"a//b", "a/+/b", true},
		{"a//b", "a/#", true},
		{"", "a", false},      // invalid
		{"a/#/b", "a", false}, // invalid
	}
	for _, tt := range tests {
		if got := Overlap(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestOverlapExhaustive checks Overlap against brute-force Match: for every
// pair of generated filters, Overlap must hold exactly when some generated
// topic matches both. A witness, when one exists, needs no more levels than
// the longer filter and no level value other than the filters' own and one
// fresh one ("z").
func TestOverlapExhaustive(t *testing.T) {
	filters := genFilters([]string{"a", "$s", "", "+", "#"}, 4)
	topics := genTopics([]string{"a", "$s", "", "z"}, 4)
	t.Logf("%d filters, %d topics", len(filters), len(topics))
	matches := make([][]bool, len(filters))
	for i, f := range filters {
		matches[i] = make([]bool, len(topics))
		for j, tp := range topics {
			matches[i][j] = topic.Match(f, tp)
		}
	}
	for i, a := range filters {
		for k, b := range filters {
			var witness []byte
			for j, tp := range topics {
				if matches[i][j] && matches[k][j] {
					witness = tp
					break
				}
			}
			if got := Overlap(a, b); got != (witness != nil) {
				t.Errorf("Overlap(%q, %q) = %v; witness %q", a, b, got, witness)
			}
		}
	}
}

func TestOverlapAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { benchBool = Overlap("a/+/c/#", "a/b/+/d") }); n != 0 {
		t.Errorf("Overlap: %v allocs, want 0", n)
	}
}
