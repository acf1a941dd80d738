package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Filter
		wantErr error
	}{
		{"normal", "a/+/c", Filter{Kind: Normal, Topic: "a/+/c"}, nil},
		{"normal hash", "#", Filter{Kind: Normal, Topic: "#"}, nil},
		{"normal dollar", "$SYS/#", Filter{Kind: Normal, Topic: "$SYS/#"}, nil},
		{"share", "$share/g1/a/+/c", Filter{Kind: Shared, Group: "g1", Topic: "a/+/c"}, nil},
		{"share hash", "$share/g/#", Filter{Kind: Shared, Group: "g", Topic: "#"}, nil},
		{"share dollar filter", "$share/g/$SYS/#", Filter{Kind: Shared, Group: "g", Topic: "$SYS/#"}, nil},
		{"share empty-level filter", "$share/g//a", Filter{Kind: Shared, Group: "g", Topic: "/a"}, nil},
		{"share utf8 group", "$share/グループ/a", Filter{Kind: Shared, Group: "グループ", Topic: "a"}, nil},
		{"share group with dollar", "$share/$queue/a", Filter{Kind: Shared, Group: "$queue", Topic: "a"}, nil},
		{"queue", "$queue/a/b", Filter{Kind: Shared, Group: QueueGroup, Topic: "a/b"}, nil},
		{"queue hash", "$queue/#", Filter{Kind: Shared, Group: QueueGroup, Topic: "#"}, nil},
		{"local", "$local/a/#", Filter{Kind: Local, Topic: "a/#"}, nil},
		{"local then share is literal", "$local/$share/g/a", Filter{Kind: Local, Topic: "$share/g/a"}, nil},
		{"share without slash is normal", "$share", Filter{Kind: Normal, Topic: "$share"}, nil},
		{"queue without slash is normal", "$queue", Filter{Kind: Normal, Topic: "$queue"}, nil},
		{"case sensitive prefix", "$SHARE/g/a", Filter{Kind: Normal, Topic: "$SHARE/g/a"}, nil},

		{"share empty group", "$share//a", Filter{}, ErrInvalidShare},         // [MQTT-4.8.2-1]
		{"share nothing", "$share/", Filter{}, ErrInvalidShare},               // [MQTT-4.8.2-1]
		{"share no filter separator", "$share/g", Filter{}, ErrInvalidShare},  // [MQTT-4.8.2-2]
		{"share empty filter", "$share/g/", Filter{}, ErrInvalidShare},        // [MQTT-4.8.2-2]
		{"share plus in group", "$share/g+/a", Filter{}, ErrInvalidShare},     // [MQTT-4.8.2-2]
		{"share hash in group", "$share/#/a", Filter{}, ErrInvalidShare},      // [MQTT-4.8.2-2]
		{"share plus group", "$share/+/a", Filter{}, ErrInvalidShare},         // [MQTT-4.8.2-2]
		{"share nul in group", "$share/g\x00/a", Filter{}, ErrNUL},            // [MQTT-4.7.3-2]
		{"share bad utf8 group", "$share/g\xff/a", Filter{}, ErrInvalidUTF8},  // [MQTT-1.5.3-1]
		{"share bad inner filter", "$share/g/a#", Filter{}, ErrInvalidFilter}, // [MQTT-4.7.1-2]
		{"share nul inner", "$share/g/a\x00", Filter{}, ErrNUL},
		{"queue empty", "$queue/", Filter{}, ErrInvalidShare},
		{"queue bad inner", "$queue/a+", Filter{}, ErrInvalidFilter},
		{"local empty", "$local/", Filter{}, ErrInvalidShare},
		{"local bad inner", "$local/#/a", Filter{}, ErrInvalidFilter},
		{"normal empty", "", Filter{}, ErrEmpty},
		{"normal invalid", "a/#/b", Filter{}, ErrInvalidFilter},
		{"too long", "$share/g/" + strings.Repeat("a", MaxLen), Filter{}, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFilter(tt.in)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ParseFilter(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseFilter(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		kind Kind
		want string
	}{
		{Normal, "normal"},
		{Shared, "shared"},
		{Local, "local"},
		{Kind(42), "Kind(42)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", uint8(tt.kind), got, tt.want)
			}
		})
	}
}
