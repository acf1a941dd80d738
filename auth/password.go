package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters of new password hashes: the OWASP Password Storage
// Cheat Sheet's first choice (19 MiB of memory, two passes, one lane),
// about 20-40 ms of one core each. Verification reads the parameters from
// the stored hash, so they can be raised later; NeedsRehash reports hashes
// made with other parameters, to be rehashed at the next successful login.
const (
	// Argon2Memory is the memory cost in KiB.
	Argon2Memory = 19 * 1024
	// Argon2Time is the number of passes.
	Argon2Time = 2
	// Argon2Threads is the degree of parallelism (lanes).
	Argon2Threads = 1
	// Argon2SaltLen is the salt length in bytes (128 bits).
	Argon2SaltLen = 16
	// Argon2KeyLen is the hash length in bytes (256 bits).
	Argon2KeyLen = 32
)

// Bounds on the parameters VerifyPassword accepts from a stored hash, so
// that a corrupt or hostile hash cannot make one verification take
// gigabytes of memory or minutes of CPU.
const (
	maxArgon2Memory  = 1 << 20 // KiB: 1 GiB
	maxArgon2Time    = 64
	minArgon2SaltLen = 8
	minArgon2KeyLen  = 16
	maxArgon2KeyLen  = 128
)

// ErrInvalidHash means a stored password hash is not a PHC argon2id string
// this package can verify (wrong algorithm or version, malformed or
// out-of-bounds parameters, bad base64).
var ErrInvalidHash = errors.New("auth: invalid password hash")

// ErrEmptyPassword is returned by HashPassword for an empty password.
var ErrEmptyPassword = errors.New("auth: empty password")

// phcB64 is the PHC string format's base64: standard alphabet, no padding.
var phcB64 = base64.RawStdEncoding.Strict()

// argon2Params are the parameters encoded in a PHC string.
type argon2Params struct {
	memory  uint32
	time    uint32
	threads uint8
}

// HashPassword hashes a password people chose with argon2id and returns it
// in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with a fresh random 16-byte salt and a 32-byte hash, both in unpadded
// standard base64. It returns ErrEmptyPassword for "".
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", ErrEmptyPassword
	}
	salt := make([]byte, Argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: password salt: %w", err)
	}
	p := argon2Params{memory: Argon2Memory, time: Argon2Time, threads: Argon2Threads}
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, Argon2KeyLen)
	return encodePHC(p, salt, key), nil
}

// VerifyPassword reports whether pw is the password hashed in phc (as made
// by HashPassword, with any parameters within sane bounds). The hashes are
// compared in constant time. It returns false and an error wrapping
// ErrInvalidHash if phc cannot be parsed; a wrong password is (false, nil).
//
// Each call allocates the memory cost of the hash (19 MiB with the current
// parameters) for its duration: callers verifying many passwords at once
// must bound their concurrency.
func VerifyPassword(phc string, pw []byte) (bool, error) {
	p, salt, want, err := decodePHC(phc)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey(pw, salt, p.time, p.memory, p.threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether phc was made with other parameters (or salt
// or hash length) than HashPassword uses now, or cannot be parsed: after a
// successful login, the caller should then store HashPassword's result.
func NeedsRehash(phc string) bool {
	p, salt, key, err := decodePHC(phc)
	return err != nil ||
		p != argon2Params{memory: Argon2Memory, time: Argon2Time, threads: Argon2Threads} ||
		len(salt) != Argon2SaltLen || len(key) != Argon2KeyLen
}

// encodePHC formats an argon2id hash as a PHC string.
func encodePHC(p argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, phcB64.EncodeToString(salt), phcB64.EncodeToString(key))
}

// decodePHC parses an argon2id PHC string strictly: parameters in the order
// m, t, p, decimal without leading zeros, within the bounds above.
func decodePHC(phc string) (argon2Params, []byte, []byte, error) {
	var p argon2Params
	fields := strings.Split(phc, "$")
	if len(fields) != 6 || fields[0] != "" || fields[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: not an argon2id PHC string", ErrInvalidHash)
	}
	if fields[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", ErrInvalidHash, fields[2])
	}
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return p, nil, nil, fmt.Errorf("%w: parameters %q", ErrInvalidHash, fields[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		s, ok := strings.CutPrefix(params[i], name)
		if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
			return p, nil, nil, fmt.Errorf("%w: parameters %q", ErrInvalidHash, fields[3])
		}
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return p, nil, nil, fmt.Errorf("%w: parameter %q: %w", ErrInvalidHash, params[i], err)
		}
		vals[i] = v
	}
	m, t, th := vals[0], vals[1], vals[2]
	// RFC 9106 §3.1: at least 8 KiB of memory per lane, 1-255 lanes here
	// (x/crypto takes a uint8), at least one pass.
	if th < 1 || th > 255 || t < 1 || t > maxArgon2Time || m < 8*th || m > maxArgon2Memory {
		return p, nil, nil, fmt.Errorf("%w: parameters %q out of bounds", ErrInvalidHash, fields[3])
	}
	p = argon2Params{memory: uint32(m), time: uint32(t), threads: uint8(th)}
	salt, err := phcB64.DecodeString(fields[4])
	if err != nil || len(salt) < minArgon2SaltLen {
		return p, nil, nil, fmt.Errorf("%w: salt", ErrInvalidHash)
	}
	key, err := phcB64.DecodeString(fields[5])
	if err != nil || len(key) < minArgon2KeyLen || len(key) > maxArgon2KeyLen {
		return p, nil, nil, fmt.Errorf("%w: hash", ErrInvalidHash)
	}
	return p, salt, key, nil
}
