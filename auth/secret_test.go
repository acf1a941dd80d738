package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/relaymq/relay/tenant"
)

func TestNewSecret(t *testing.T) {
	re := regexp.MustCompile(`^[a-z2-7]{32}$`) // 32 × 5 bits = 160
	seen := map[string]bool{}
	for range 1000 {
		s := NewSecret()
		if !re.MatchString(s) {
			t.Fatalf("NewSecret() = %q, want 32 characters of [a-z2-7]", s)
		}
		if seen[s] {
			t.Fatalf("NewSecret() repeated %q", s)
		}
		seen[s] = true
	}
	if got, _ := lowerBase32.DecodeString(NewSecret()); len(got)*8 != SecretBits {
		t.Errorf("secret decodes to %d bits, want %d", len(got)*8, SecretBits)
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[a-z2-7]{26}$`)
	a, b := NewID(), NewID()
	if !re.MatchString(a) || a == b {
		t.Errorf("NewID() = %q, %q", a, b)
	}
}

func testKey(t testing.TB) []byte {
	t.Helper()
	return bytes.Repeat([]byte{0x42}, KeySize)
}

func TestKeyed(t *testing.T) {
	if _, err := NewKeyed(make([]byte, KeySize-1)); !errors.Is(err, ErrShortKey) {
		t.Errorf("NewKeyed(31 bytes) = %v, want ErrShortKey", err)
	}
	key := testKey(t)
	k, err := NewKeyed(key)
	if err != nil {
		t.Fatal(err)
	}
	key[0] = 0 // NewKeyed copies
	secret := []byte("topsecret")
	h := k.Hash(secret)
	m := hmac.New(sha256.New, testKey(t))
	m.Write(secret)
	if !bytes.Equal(h, m.Sum(nil)) {
		t.Errorf("Hash = %x, want HMAC-SHA-256 %x", h, m.Sum(nil))
	}
	if !k.Verify(h, secret) {
		t.Error("Verify(Hash(s), s) = false")
	}
	if k.Verify(h, []byte("topsecreT")) || k.Verify(h[:31], secret) || k.Verify(nil, secret) {
		t.Error("Verify accepts a wrong secret or hash")
	}
	other, _ := NewKeyed(bytes.Repeat([]byte{0x43}, KeySize))
	if other.Verify(h, secret) {
		t.Error("Verify under another key = true")
	}
}

// TestKeyedKnownAnswer checks RFC 4231 test case 6 (a 131-byte key).
func TestKeyedKnownAnswer(t *testing.T) {
	k, err := NewKeyed(bytes.Repeat([]byte{0xaa}, 131))
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(k.Hash([]byte("Test Using Larger Than Block-Size Key - Hash Key First")))
	if want := "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"; got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
}

func TestVerifyCredential(t *testing.T) {
	k, _ := NewKeyed(testKey(t))
	secret := NewSecret()
	keyed := &tenant.Credential{HashScheme: tenant.SchemeKeyed, SecretHash: k.Hash([]byte(secret))}
	phc, err := HashPassword("hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	argon := &tenant.Credential{HashScheme: tenant.SchemeArgon2id, SecretHash: []byte(phc)}
	revoked := *keyed
	revoked.Revoked = true
	unknown := *keyed
	unknown.HashScheme = "md5"
	broken := &tenant.Credential{HashScheme: tenant.SchemeArgon2id, SecretHash: []byte("$argon2id$garbage")}

	tests := []struct {
		name string
		k    *Keyed
		c    *tenant.Credential
		pw   string
		want bool
	}{
		{"keyed right", k, keyed, secret, true},
		{"keyed wrong", k, keyed, secret + "x", false},
		{"keyed empty", k, keyed, "", false},
		{"keyed without key", nil, keyed, secret, false},
		{"argon2id right", k, argon, "hunter2hunter2", true},
		{"argon2id wrong", k, argon, "hunter2", false},
		{"argon2id without key", nil, argon, "hunter2hunter2", true},
		{"revoked", k, &revoked, secret, false},
		{"unknown scheme", k, &unknown, secret, false},
		{"malformed hash", k, broken, "x", false},
		{"nil credential", k, nil, secret, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyCredential(tt.k, tt.c, []byte(tt.pw)); got != tt.want {
				t.Errorf("VerifyCredential = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "secret.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != KeySize || bytes.Equal(k1, make([]byte, KeySize)) {
		t.Fatalf("key = %x", k1)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("second load = %x, %v; want the first key", k2, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only the key (temporary file left behind?)", len(entries))
	}

	bad := filepath.Join(dir, "short.key")
	if err := os.WriteFile(bad, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(bad); err == nil {
		t.Error("LoadOrCreateKey(5-byte file) succeeded")
	}
}

// TestLoadOrCreateKeyConcurrent checks that concurrent first starts agree
// on one key.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateKey(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatalf("keys differ: %x vs %x", k, keys[0])
		}
	}
}

func BenchmarkKeyedVerify(b *testing.B) {
	k, _ := NewKeyed(testKey(b))
	secret := []byte(NewSecret())
	h := k.Hash(secret)
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Verify(h, secret)
	}
}
