package authsvc

import "testing"

func TestHostTenant(t *testing.T) {
	s := &Service{opts: ServiceOptions{BaseDomain: "relay.example.com"}}
	tests := []struct{ host, want string }{
		{"acme.relay.example.com", "acme"},
		{"ACME.Relay.Example.Com.", "acme"},
		{"relay.example.com", ""},
		{"a.b.relay.example.com", ""}, // not a single label
		{"acme.other.com", ""},
		{"-bad.relay.example.com", ""},
		{"", ""},
		{"acme.relay.example.com:8083", "acme"}, // a WebSocket Host header
		{"acme.relay.example.com.:8084", "acme"},
		{"[::1]:8083", ""},
	}
	for _, tt := range tests {
		if got := s.hostTenant(tt.host); got != tt.want {
			t.Errorf("hostTenant(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
	if got := (&Service{}).hostTenant("acme.relay.example.com"); got != "" {
		t.Errorf("no base domain: %q", got)
	}
}

func TestClientIDAllowed(t *testing.T) {
	tests := []struct {
		pattern, clientID, user string
		want                    bool
	}{
		{"%u-+", "dev1-abc", "dev1", true},
		{"%u-+", "dev2-abc", "dev1", false},
		{"%u-+", "dev1-abc-x", "dev1", false},
		{"%u-#", "dev1-abc-x", "dev1", true},
		{"sensor-#", "sensor-7", "u", true},
		{"sensor-#", "pump-7", "u", false},
		{"exact", "exact", "u", true},
		{"%u-+", "dev1-a/b", "dev1", false}, // no level separators smuggled in
		{"%u-+", "dev1-+", "dev1", false},
		{"%u-+", "x-1111-2222", "x-1111", true}, // %u is literal, '-' and all
		{"%u-+", "x-1111", "x-1111", false},
		{"%u", "x-11111111-22222222", "x-11111111", false},
		{"%u", "x-11111111", "x-11111111", true},
		{"sensor-#", "sensor", "u", true},
	}
	for _, tt := range tests {
		if got := clientIDAllowed(tt.pattern, tt.clientID, tt.user); got != tt.want {
			t.Errorf("clientIDAllowed(%q, %q, %q) = %v, want %v", tt.pattern, tt.clientID, tt.user, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct{ action, kind string }{
		{"credential.revoke", changeRevoke},
		{"credential.rotate", changeRevoke},
		{"tenant.suspend", changeSuspend},
		{"acl.add", changeRules},
		{"acl.remove", changeRules},
		{"credential.create", ""},
		{"tenant.limits", changeRules},
		{"tenant.create", ""},
		{"apikey.create", ""},
	}
	for _, tt := range tests {
		if kind, _ := classify(tt.action); kind != tt.kind {
			t.Errorf("classify(%q) = %q, want %q", tt.action, kind, tt.kind)
		}
	}
}

func TestSplitLogin(t *testing.T) {
	tests := []struct{ login, user, slug string }{
		{"dev1@acme", "dev1", "acme"},
		{"dev1", "dev1", ""},
		{"a@b@acme", "a@b", "acme"},
		{"@acme", "", "acme"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if u, s := splitLogin(tt.login); u != tt.user || s != tt.slug {
			t.Errorf("splitLogin(%q) = %q, %q; want %q, %q", tt.login, u, s, tt.user, tt.slug)
		}
	}
}
