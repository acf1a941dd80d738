package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestPasswordRoundTrip(t *testing.T) {
	phc, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("HashPassword = %q, want the PHC format with OWASP parameters", phc)
	}
	if ok, err := VerifyPassword(phc, []byte("correct horse battery staple")); !ok || err != nil {
		t.Errorf("VerifyPassword(right) = %v, %v", ok, err)
	}
	if ok, err := VerifyPassword(phc, []byte("correct horse battery stapler")); ok || err != nil {
		t.Errorf("VerifyPassword(wrong) = %v, %v", ok, err)
	}
	if NeedsRehash(phc) {
		t.Error("NeedsRehash(fresh hash) = true")
	}
	other, _ := HashPassword("correct horse battery staple")
	if other == phc {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestHashPasswordEmpty(t *testing.T) {
	if _, err := HashPassword(""); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("HashPassword(\"\") = %v, want ErrEmptyPassword", err)
	}
}

// TestVerifyPasswordReferenceVectors checks known-answer vectors of the
// Argon2 reference implementation (phc-winner-argon2, src/test.c), made
// with other parameters than ours: parameters are read from the string,
// and NeedsRehash asks for an upgrade.
func TestVerifyPasswordReferenceVectors(t *testing.T) {
	for _, phc := range []string{
		"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
		"$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
	} {
		if ok, err := VerifyPassword(phc, []byte("password")); err != nil || !ok {
			t.Errorf("VerifyPassword(%q, password) = %v, %v", phc, ok, err)
		}
		if ok, err := VerifyPassword(phc, []byte("Password")); err != nil || ok {
			t.Errorf("VerifyPassword(%q, Password) = %v, %v", phc, ok, err)
		}
		if !NeedsRehash(phc) {
			t.Errorf("NeedsRehash(%q) = false", phc)
		}
	}
}

func TestVerifyPasswordInvalid(t *testing.T) {
	const salt, hash = "c29tZXNhbHQ", "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	tests := []struct{ name, phc string }{
		{"empty", ""},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"},
		{"argon2i", "$argon2i$v=19$m=256,t=1,p=1$" + salt + "$" + hash},
		{"old version", "$argon2id$v=16$m=256,t=1,p=1$" + salt + "$" + hash},
		{"no version", "$argon2id$m=256,t=1,p=1$" + salt + "$" + hash},
		{"parameter order", "$argon2id$v=19$t=2,m=256,p=1$" + salt + "$" + hash},
		{"leading zero", "$argon2id$v=19$m=0256,t=1,p=1$" + salt + "$" + hash},
		{"no threads", "$argon2id$v=19$m=256,t=1,p=0$" + salt + "$" + hash},
		{"too many threads", "$argon2id$v=19$m=4096,t=1,p=256$" + salt + "$" + hash},
		{"no passes", "$argon2id$v=19$m=256,t=0,p=1$" + salt + "$" + hash},
		{"too little memory", "$argon2id$v=19$m=7,t=1,p=1$" + salt + "$" + hash},
		{"too much memory", "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + hash},
		{"too many passes", "$argon2id$v=19$m=256,t=1000,p=1$" + salt + "$" + hash},
		{"padded salt", "$argon2id$v=19$m=256,t=1,p=1$" + salt + "==$" + hash},
		{"short salt", "$argon2id$v=19$m=256,t=1,p=1$c2FsdA$" + hash},
		{"short hash", "$argon2id$v=19$m=256,t=1,p=1$" + salt + "$c2FsdA"},
		{"trailing field", "$argon2id$v=19$m=256,t=1,p=1$" + salt + "$" + hash + "$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.phc, []byte("pw"))
			if ok || !errors.Is(err, ErrInvalidHash) {
				t.Errorf("VerifyPassword(%q) = %v, %v; want false, ErrInvalidHash", tt.phc, ok, err)
			}
			if !NeedsRehash(tt.phc) {
				t.Errorf("NeedsRehash(%q) = false", tt.phc)
			}
		})
	}
}

func BenchmarkVerifyPassword(b *testing.B) {
	phc, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	pw := []byte("correct horse battery staple")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = VerifyPassword(phc, pw)
	}
}
