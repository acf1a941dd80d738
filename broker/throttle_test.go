package broker

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	th := newThrottle()
	now := time.Unix(1000, 0)
	ip := addrKey(&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1})
	other := addrKey(&net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1})
	alice, aliceElsewhere := userKey("alice@acme", ip), userKey("alice@acme", other)
	for i := range throttleUserFailures {
		if th.blocked(now, ip, alice) {
			t.Fatalf("blocked after %d failures", i)
		}
		th.fail(now, alice, throttleUserFailures)
		th.fail(now, ip, throttleAddrFailures)
	}
	if !th.blocked(now, ip, alice) {
		t.Fatal("username not blocked after 5 failures from one address")
	}
	if th.blocked(now, other, aliceElsewhere) {
		t.Fatal("an attacker's failures lock the username out from other addresses")
	}
	if th.blocked(now, ip, userKey("bob@acme", ip)) {
		t.Fatal("5 failures block the whole address; its limit is 20")
	}
	if th.blocked(now.Add(throttleFirstBlock+time.Millisecond), ip, alice) {
		t.Fatal("still blocked after the first block")
	}
	// IPv6 addresses are keyed by their /64.
	a := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::1")})
	b := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9")})
	if a != b {
		t.Fatalf("IPv6 keys %q and %q differ within one /64", a, b)
	}
	// Huge usernames do not make huge entries.
	if k := userKey(strings.Repeat("x", 60000), ip); len(k) > 64 {
		t.Fatalf("username key of %d bytes", len(k))
	}
}
