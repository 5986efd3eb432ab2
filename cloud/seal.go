package cloud

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Cloud account credentials are sealed at rest with AES-256-GCM under a key
// derived (HKDF-SHA256) from the hub's secret key, the one that derives
// agent credentials (docs/decisions/0018-cloud-accounts.md). The account's
// provider and name are the associated data, so a sealed blob cannot be
// moved to another account.

// sealVersion is the first byte of a sealed blob.
const sealVersion = 1

// hkdfInfo separates this key from every other use of the secret key.
const hkdfInfo = "eco cloud account credentials v1"

// ErrUnseal reports that no key of the hub opens a sealed blob: it was
// sealed under a key the hub no longer has, or it was tampered with.
var ErrUnseal = errors.New("cannot open the sealed cloud credentials with any of the hub's secret keys")

// Sealer seals and opens account credentials. Keys[0] seals; every key is
// tried to open, so credentials sealed under a previous secret key still
// open while the hub's key is rotated.
type Sealer struct {
	aeads []cipher.AEAD
}

// NewSealer derives one AEAD per secret key, current first. Each key must
// be at least 32 bytes.
func NewSealer(secretKeys ...[]byte) (*Sealer, error) {
	if len(secretKeys) == 0 {
		return nil, errors.New("cloud: no secret key")
	}
	s := &Sealer{}
	for i, k := range secretKeys {
		if len(k) < 32 {
			return nil, fmt.Errorf("cloud: secret key %d is shorter than 32 bytes", i)
		}
		dk, err := hkdf.Key(sha256.New, k, nil, hkdfInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("cloud: deriving the sealing key: %w", err)
		}
		block, err := aes.NewCipher(dk)
		if err != nil {
			return nil, fmt.Errorf("cloud: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("cloud: %w", err)
		}
		s.aeads = append(s.aeads, aead)
	}
	return s, nil
}

// Seal encrypts plaintext under the current key, bound to aad.
func (s *Sealer) Seal(plaintext, aad []byte) []byte {
	a := s.aeads[0]
	out := make([]byte, 1+a.NonceSize(), 1+a.NonceSize()+len(plaintext)+a.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:]) // never fails; see crypto/rand.Read
	return a.Seal(out, out[1:], plaintext, aad)
}

// Open decrypts what Seal wrote; previous reports that a previous key
// opened it (the caller seals it again under the current one).
func (s *Sealer) Open(sealed, aad []byte) (plaintext []byte, previous bool, err error) {
	if len(sealed) < 1 || sealed[0] != sealVersion {
		return nil, false, ErrUnseal
	}
	for i, a := range s.aeads {
		n := a.NonceSize()
		if len(sealed) < 1+n+a.Overhead() {
			return nil, false, ErrUnseal
		}
		if p, err := a.Open(nil, sealed[1:1+n], sealed[1+n:], aad); err == nil {
			return p, i > 0, nil
		}
	}
	return nil, false, ErrUnseal
}
