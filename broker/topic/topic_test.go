package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		want  error
	}{
		{"simple", "sport/tennis/player1", nil},
		{"single level", "a", nil},
		{"only slash", "/", nil}, // [MQTT-4.7.3-1] "/" is a valid topic
		{"leading slash", "/finance", nil},
		{"trailing slash", "sport/", nil},
		{"empty levels", "a//b", nil},
		{"space", "Accounts payable", nil}, // §4.7.3: spaces are allowed
		{"dollar", "$SYS/broker/uptime", nil},
		{"utf8", "温度/센서/🌡", nil},
		{"dots and stars", "v1.2/*/>", nil},
		{"control char", "a\x01b", nil}, // SHOULD NOT, not MUST NOT
		{"U+FEFF", "\uFEFFa", nil},      // [MQTT-1.5.3-3] kept, not stripped
		{"max length", strings.Repeat("a", MaxLen), nil},
		{"empty", "", ErrEmpty},                                 // [MQTT-4.7.3-1]
		{"too long", strings.Repeat("a", MaxLen+1), ErrTooLong}, // [MQTT-4.7.3-3]
		{"plus", "sport/+", ErrWildcardInTopic},                 // [MQTT-3.3.2-2]
		{"hash", "sport/#", ErrWildcardInTopic},                 // [MQTT-3.3.2-2]
		{"plus inside level", "a+b", ErrWildcardInTopic},        // [MQTT-3.3.2-2]
		{"hash inside level", "a#b", ErrWildcardInTopic},        // [MQTT-3.3.2-2]
		{"nul", "a\x00b", ErrNUL},                               // [MQTT-1.5.3-2] [MQTT-4.7.3-2]
		{"invalid utf8", "a\xffb", ErrInvalidUTF8},              // [MQTT-1.5.3-1]
		{"truncated utf8", "a\xe6\xb8", ErrInvalidUTF8},         // [MQTT-1.5.3-1]
		{"surrogate", "\xed\xa0\x80", ErrInvalidUTF8},           // [MQTT-1.5.3-1] U+D800
		{"overlong", "\xc0\xaf", ErrInvalidUTF8},                // [MQTT-1.5.3-1]
		{"first error wins", "a\x00+", ErrNUL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidateTopic([]byte(tt.topic)); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("ValidateTopic(%q) = %v, want %v", tt.topic, got, tt.want)
			}
		})
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		want   error
	}{
		// §4.7.1.2 examples.
		{"hash alone", "#", nil},
		{"sport/tennis/#", "sport/tennis/#", nil},
		{"sport/tennis#", "sport/tennis#", ErrInvalidFilter},                   // [MQTT-4.7.1-2]
		{"sport/tennis/#/ranking", "sport/tennis/#/ranking", ErrInvalidFilter}, // [MQTT-4.7.1-2]
		// §4.7.1.3 examples.
		{"plus alone", "+", nil},
		{"+/tennis/#", "+/tennis/#", nil},
		{"sport+", "sport+", ErrInvalidFilter}, // [MQTT-4.7.1-3]
		{"sport/+/player1", "sport/+/player1", nil},
		// More placements.
		{"plus first", "+/a", nil},
		{"plus last", "a/+", nil},
		{"plus plus", "+/+", nil},
		{"plus hash", "+/#", nil},
		{"plus empty levels", "/+/", nil},
		{"hash after empty level", "/#", nil},
		{"hash then slash", "#/", ErrInvalidFilter},   // [MQTT-4.7.1-2]
		{"hash hash", "##", ErrInvalidFilter},         // [MQTT-4.7.1-2]
		{"hash twice", "#/#", ErrInvalidFilter},       // [MQTT-4.7.1-2]
		{"plus before text", "+a", ErrInvalidFilter},  // [MQTT-4.7.1-3]
		{"plus after text", "a+/b", ErrInvalidFilter}, // [MQTT-4.7.1-3]
		{"plus hash same level", "+#", ErrInvalidFilter},
		{"hash plus same level", "a/#+", ErrInvalidFilter},
		{"plus plus same level", "++", ErrInvalidFilter},
		{"only slash", "/", nil},
		{"dollar", "$SYS/#", nil},
		{"share-looking", "$share/g/a", nil}, // prefixes are ParseFilter's business
		{"utf8", "温度/+/센서", nil},
		{"max length", strings.Repeat("a", MaxLen), nil},
		{"empty", "", ErrEmpty},                                 // [MQTT-4.7.3-1]
		{"too long", strings.Repeat("a", MaxLen+1), ErrTooLong}, // [MQTT-4.7.3-3]
		{"nul", "a/\x00", ErrNUL},                               // [MQTT-4.7.3-2]
		{"invalid utf8", "+/\xff", ErrInvalidUTF8},              // [MQTT-1.5.3-1]
		{"surrogate", "a/\xed\xbf\xbf", ErrInvalidUTF8},         // [MQTT-1.5.3-1]
		{"first error wins", "a+/\x00", ErrInvalidFilter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidateFilter(tt.filter); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("ValidateFilter(%q) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

// matchTests holds filter/topic pairs with the expected Match result. It
// includes every example of MQTT 3.1.1 §4.7.
var matchTests = []struct {
	name   string
	filter string
	topic  string
	want   bool
}{
	// §4.7.1.2 Multi-level wildcard [MQTT-4.7.1-2].
	{"multi matches parent", "sport/tennis/player1/#", "sport/tennis/player1", true},
	{"multi matches child", "sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"multi matches grandchild", "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"multi not sibling", "sport/tennis/player1/#", "sport/tennis/player2", false},
	{"multi not prefix of level", "sport/tennis/player1/#", "sport/tennis/player10", false},
	{"multi not grandparent", "sport/tennis/player1/#", "sport/tennis", false},
	{"sport/# matches sport", "sport/#", "sport", true},
	{"sport/# matches sport/", "sport/#", "sport/", true},
	{"sport/# not sports", "sport/#", "sports", false},
	{"hash matches all", "#", "sport/tennis/player1", true},
	{"hash matches single", "#", "a", true},
	{"hash matches slash", "#", "/", true},
	{"sport/tennis/# matches", "sport/tennis/#", "sport/tennis/player1/ranking", true},
	// §4.7.1.3 Single-level wildcard [MQTT-4.7.1-3].
	{"plus player1", "sport/tennis/+", "sport/tennis/player1", true},
	{"plus player2", "sport/tennis/+", "sport/tennis/player2", true},
	{"plus not two levels", "sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+ not sport", "sport/+", "sport", false},
	{"sport/+ matches sport/", "sport/+", "sport/", true},
	{"+ matches level", "+", "sport", true},
	{"+/tennis/# matches", "+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/# matches parent", "+/tennis/#", "sport/tennis", true},
	{"sport/+/player1", "sport/+/player1", "sport/tennis/player1", true},
	{"/finance matches +/+", "+/+", "/finance", true},
	{"/finance matches /+", "/+", "/finance", true},
	{"/finance not +", "+", "/finance", false},
	// §4.7.2 Topics beginning with $ [MQTT-4.7.2-1].
	{"hash not $SYS", "#", "$SYS/broker/clients", false},
	{"hash not $", "#", "$", false},
	{"+/monitor/Clients not $SYS", "+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/# matches", "$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/# matches $SYS", "$SYS/#", "$SYS", true},
	{"$SYS/monitor/+ matches", "$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"+/# not $SYS", "+/#", "$SYS/x", false},
	{"+ not $", "+", "$x", false},
	{"/+ matches /$", "/+", "/$x", true}, // only the first level is special
	{"a/# matches a/$", "a/#", "a/$x", true},
	{"+ matches a$", "+", "a$", true},
	// §4.7.3 Topic semantic and usage.
	{"case sensitive", "ACCOUNTS", "Accounts", false},
	{"case equal", "Accounts", "Accounts", true},
	{"space", "Accounts payable", "Accounts payable", true},
	{"leading slash distinct", "/finance", "finance", false},
	{"leading slash distinct reverse", "finance", "/finance", false},
	{"only slash", "/", "/", true},
	{"slash vs empty levels", "+/+", "/", true},
	{"plus not slash", "+", "/", false},
	// Empty levels.
	{"empty middle level", "a//b", "a//b", true},
	{"plus matches empty", "a/+/b", "a//b", true},
	{"empty level not nonempty", "a//b", "a/x/b", false},
	{"trailing empty", "a/", "a/", true},
	{"trailing empty vs more", "a/", "a/b", false},
	{"trailing empty vs less", "a/", "a", false},
	{"hash after empty", "/#", "/", true},
	{"hash after empty deep", "/#", "//a", true},
	{"hash after empty not other", "/#", "a/b", false},
	// Literal edge cases.
	{"longer topic", "a/b", "a/b/c", false},
	{"shorter topic", "a/b/c", "a/b", false},
	{"topic level longer", "a/b", "a/bc", false},
	{"filter level longer", "a/bc", "a/b", false},
	{"exact", "a/b/c", "a/b/c", true},
	{"multibyte", "温度/+", "温度/센서", true},
	{"plus then more", "+/b", "a/b", true},
	{"plus then mismatch", "+/b", "a/c", false},
	{"plus then hash", "+/#", "a", true},
	{"plus plus vs one", "+/+", "a", false},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Match(tt.filter, []byte(tt.topic)); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
			}
		})
	}
}

func TestMatchInvalidInputDoesNotPanic(t *testing.T) {
	filters := []string{"", "#/a", "a#", "+a", "a+", "++", "/", "//", "+/", "#/", "a/#/b"}
	topics := []string{"", "/", "a", "a/b", "$", "+", "#"}
	for _, f := range filters {
		for _, tp := range topics {
			_ = Match(f, []byte(tp))
		}
	}
}

func TestSubset(t *testing.T) {
	tests := []struct {
		name               string
		requested, granted string
		want               bool
	}{
		{"equal literal", "a/b", "a/b", true},
		{"different literal", "a/b", "a/c", false},
		{"plus grants literal", "a/b/c", "a/+/c", true},
		{"plus does not grant hash", "a/#", "a/+/c", false},
		{"hash grants plus", "a/+/c", "a/#", true},
		{"hash grants parent", "a", "a/#", true}, // [MQTT-4.7.1-2]
		{"hash grants deeper hash", "a/b/c/#", "a/#", true},
		{"hash grants itself", "a/#", "a/#", true},
		{"hash does not grant sibling", "b", "a/#", false},
		{"deeper hash does not grant parent", "a/#", "a/b/#", false},
		{"plus-hash does not grant parent", "a/#", "a/+/#", false},
		{"plus-hash grants deeper", "a/b/#", "a/+/#", true},
		{"plus does not grant parent", "a", "a/+", false},
		{"plus grants empty level", "a/", "a/+", true},
		{"literal does not grant plus", "a/+", "a/b", false},
		{"literal does not grant hash", "a/#", "a", false},
		{"plus does not grant two levels", "a/b/c", "a/+", false},
		{"root hash grants all", "a/b/c", "#", true},
		{"root hash grants hash", "#", "#", true},
		{"root hash grants plus", "+/x", "#", true},
		{"root hash not $SYS", "$SYS/x", "#", false}, // [MQTT-4.7.2-1]
		{"root hash not $SYS/#", "$SYS/#", "#", false},
		{"root plus not $SYS", "$SYS/x", "+/x", false}, // [MQTT-4.7.2-1]
		{"root plus grants root plus", "+/x", "+/x", true},
		{"$SYS hash grants $SYS", "$SYS/x", "$SYS/#", true},
		{"$SYS does not grant root plus", "+/x", "$SYS/+", false},
		{"deep plus grants $", "a/$x", "a/+", true},
		{"hash equals plus-hash", "#", "+/#", true},
		{"plus-hash equals hash", "+/#", "#", true},
		{"hash not within plus", "#", "+", false},
		{"hash not within plus-plus-hash", "#", "+/+/#", false},
		{"plus within plus-hash", "+", "+/#", true},
		{"plus-hash not within plus", "+/#", "+", false},
		{"empty level literal", "/a", "+/a", true},
		{"empty level vs literal", "/a", "a", false},
		{"invalid requested", "a/#/b", "#", false},
		{"invalid granted", "a", "a#", false},
		{"empty requested", "", "#", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Subset(tt.requested, tt.granted); got != tt.want {
				t.Errorf("Subset(%q, %q) = %v, want %v", tt.requested, tt.granted, got, tt.want)
			}
		})
	}
}

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
func genTopics(t testing.TB, alphabet []string, maxLevels int) [][]byte {
	t.Helper()
	var out [][]byte
	for _, s := range genLevels(alphabet, maxLevels) {
		if ValidateTopic([]byte(s)) == nil {
			out = append(out, []byte(s))
		}
	}
	return out
}

// genFilters returns every valid filter of 1..maxLevels levels over alphabet.
func genFilters(t testing.TB, alphabet []string, maxLevels int) []string {
	t.Helper()
	var out []string
	for _, s := range genLevels(alphabet, maxLevels) {
		if ValidateFilter(s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// TestSubsetExhaustive checks that Subset is exact (sound and complete)
// against brute-force Match: for every pair of generated filters,
// Subset(r, g) must hold exactly when no generated topic matches r but not
// g. The topics use one more level than the filters and a level value ("z")
// no filter mentions, which is enough to witness every non-inclusion among
// these filters.
func TestSubsetExhaustive(t *testing.T) {
	filters := genFilters(t, []string{"a", "$s", "", "+", "#"}, 4)
	topics := genTopics(t, []string{"a", "$s", "", "z"}, 5)
	t.Logf("%d filters, %d topics", len(filters), len(topics))

	matches := make([][]bool, len(filters))
	for i, f := range filters {
		matches[i] = make([]bool, len(topics))
		for j, tp := range topics {
			matches[i][j] = Match(f, tp)
		}
	}
	for i, r := range filters {
		for k, g := range filters {
			var witness []byte
			for j, tp := range topics {
				if matches[i][j] && !matches[k][j] {
					witness = tp
					break
				}
			}
			got := Subset(r, g)
			switch {
			case got && witness != nil:
				t.Errorf("Subset(%q, %q) = true, but %q matches only the first (unsound)", r, g, witness)
			case !got && witness == nil:
				t.Errorf("Subset(%q, %q) = false, but no topic matches only the first (incomplete)", r, g)
			}
		}
	}
}
