// Package seal keeps the hub's secrets at rest: a chart repository's
// password, a cloud account's credentials. A value is sealed with
// AES-256-GCM under a key derived (HKDF-SHA256) from the hub's secret key
// for one purpose, with associated data the caller chooses (what the
// value belongs to), and only the sealed bytes are stored. A value
// sealed under a previous secret key still opens, and says so, so that
// rotating the hub's key loses nothing and the caller can seal it again
// under the current one (docs/decisions/0018-cloud-accounts.md).
//
// A sealed value is one version byte, GCM's 12-byte random nonce and the
// ciphertext with its tag.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrUnseal is returned for bytes that no key opens: tampered with,
// sealed for another purpose or other associated data, or under a key
// the hub no longer has.
var ErrUnseal = errors.New("sealed secret: cannot open with any of the hub's secret keys")

// version starts every sealed value, so the format can change.
const version = 1

// MinKeyLen is the shortest secret key a Sealer takes.
const MinKeyLen = 32

// Sealer seals under the first of its keys and opens under any.
type Sealer struct {
	keys [][]byte
}

// New returns a Sealer over the hub's secret keys, current first. Each
// must be at least MinKeyLen bytes.
func New(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no secret key")
	}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("seal: secret key %d is shorter than %d bytes", i, MinKeyLen)
		}
	}
	return &Sealer{keys: keys}, nil
}

func aead(key []byte, purpose string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key, nil, "eco secret at rest\x00"+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("seal: deriving the key for %s: %w", purpose, err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// Seal encrypts plaintext for purpose (e.g. "catalog/repository") under
// the current key, bound to purpose and aad: it opens only with both.
func (s *Sealer) Seal(purpose string, plaintext, aad []byte) ([]byte, error) {
	a, err := aead(s.keys[0], purpose)
	if err != nil {
		return nil, err
	}
	return a.Seal([]byte{version}, nil, plaintext, additional(purpose, aad)), nil
}

// Open decrypts what Seal sealed for purpose and aad; previous reports
// that a previous key opened it, so the caller may seal it again.
func (s *Sealer) Open(purpose string, sealed, aad []byte) (plaintext []byte, previous bool, err error) {
	if len(sealed) < 1 || sealed[0] != version {
		return nil, false, ErrUnseal
	}
	ad := additional(purpose, aad)
	for i, key := range s.keys {
		a, err := aead(key, purpose)
		if err != nil {
			return nil, false, err
		}
		if p, err := a.Open(nil, nil, sealed[1:], ad); err == nil {
			return p, i > 0, nil
		}
	}
	return nil, false, ErrUnseal
}

// additional is the GCM associated data: the purpose, a zero byte, and
// the caller's.
func additional(purpose string, aad []byte) []byte {
	return append(append([]byte(purpose), 0), aad...)
}
