package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/relaymq/relay/tenant"
)

// SecretBits is the entropy of a NewSecret: 160 random bits.
const SecretBits = 160

// IDBits is the entropy of a NewID: 128 random bits.
const IDBits = 128

// KeySize is the size in bytes of the key file LoadOrCreateKey reads or
// creates, and the minimum key size NewKeyed accepts (256 bits).
const KeySize = 32

// ErrShortKey is returned by NewKeyed for a key shorter than KeySize.
var ErrShortKey = errors.New("auth: secret key shorter than 32 bytes")

// lowerBase32 is RFC 4648 base32 in lower case, without padding: URL-safe,
// case-insensitive to read aloud, no characters that config file formats
// or shells treat specially.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewSecret returns a new random secret for a generated credential or API
// key: 160 bits (SecretBits) from crypto/rand as 32 characters of
// lower-case, unpadded base32 ([a-z2-7]). Store it with (*Keyed).Hash.
func NewSecret() string {
	var b [SecretBits / 8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read crashes the program instead)
	return lowerBase32.EncodeToString(b[:])
}

// NewID returns a new random identifier: 128 bits (IDBits) from crypto/rand
// as 26 characters of lower-case, unpadded base32.
func NewID() string {
	var b [IDBits / 8]byte
	_, _ = rand.Read(b[:])
	return lowerBase32.EncodeToString(b[:])
}

// Keyed hashes and verifies generated secrets with HMAC-SHA-256 under a
// server key (tenant.SchemeKeyed). It is safe for concurrent use.
//
// Why two hash schemes, chosen by who made the secret: secrets Relay
// generates (NewSecret: 160 random bits) are stored as HMAC-SHA-256 under
// a server key. With at least 128 bits of entropy a secret cannot be
// guessed, and without the key a leaked hash cannot even be tested
// offline, so a slow hash would buy nothing; it would cost a lot: a
// reconnect storm of 10,000 devices after an edge restart at about 20 ms
// of argon2id each is 200 CPU-seconds (and 19 MiB per verification in
// flight), against a few milliseconds in total for HMAC. Passwords people
// choose have little entropy and are reused elsewhere, so they are hashed
// with argon2id (tenant.SchemeArgon2id, HashPassword), which makes every
// offline guess expensive.
type Keyed struct {
	key []byte
}

// NewKeyed returns a Keyed hasher under key, which it copies. It returns
// ErrShortKey if key is shorter than KeySize bytes.
func NewKeyed(key []byte) (*Keyed, error) {
	if len(key) < KeySize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrShortKey, len(key))
	}
	return &Keyed{key: append([]byte(nil), key...)}, nil
}

// Hash returns HMAC-SHA-256(key, secret), 32 bytes.
func (k *Keyed) Hash(secret []byte) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write(secret)
	return m.Sum(nil)
}

// Verify reports whether hash is Hash(secret), in constant time.
func (k *Keyed) Verify(hash, secret []byte) bool {
	return hmac.Equal(hash, k.Hash(secret))
}

// VerifyCredential reports whether password is c's secret, choosing the
// hash by c.HashScheme: SchemeKeyed with k, SchemeArgon2id with
// VerifyPassword. It is false for a revoked credential (the hash is still
// computed, so revocation does not show in the timing), for an unknown
// scheme, a malformed hash, or a keyed credential when k is nil.
//
// For an unknown username, callers should verify against a dummy
// credential of the same scheme, so that the answer takes as long.
func VerifyCredential(k *Keyed, c *tenant.Credential, password []byte) bool {
	if c == nil {
		return false
	}
	var ok bool
	switch c.HashScheme {
	case tenant.SchemeKeyed:
		ok = k != nil && k.Verify(c.SecretHash, password)
	case tenant.SchemeArgon2id:
		ok, _ = VerifyPassword(string(c.SecretHash), password)
	}
	return ok && !c.Revoked
}

// LoadOrCreateKey returns the server's secret key stored in the file at
// path: exactly KeySize raw bytes. If the file does not exist, it creates
// it (and its directory, mode 0700) with KeySize bytes from crypto/rand and
// mode 0600. Creation is atomic: the key is written to a temporary file
// and linked into place, so concurrent callers all end up with the same
// key and never read a partial file. The embedded all-in-one server keeps
// it in its data directory.
//
// Losing the key invalidates every generated credential and API key;
// anyone who has it can test guesses against leaked hashes offline (still
// 160-bit secrets). Back it up and protect it like a database password.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".relay-key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("auth: create key: %w", err)
	}
	defer os.Remove(tmp.Name())
	key = make([]byte, KeySize)
	_, _ = rand.Read(key)
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("auth: write key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKey(path) // another process created it first
		}
		return nil, fmt.Errorf("auth: create key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new directory entry durable
		d.Close()
	}
	return key, nil
}

// readKey reads a key file of exactly KeySize bytes.
func readKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read key: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("auth: key file %s: %d bytes, want %d", path, len(key), KeySize)
	}
	return key, nil
}
