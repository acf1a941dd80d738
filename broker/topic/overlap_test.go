package topic

import (
	"testing"
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
func TestOverlapAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { benchBool = Overlap("a/+/c/#", "a/b/+/d") }); n != 0 {
		t.Errorf("Overlap: %v allocs, want 0", n)
	}
}
