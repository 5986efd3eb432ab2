package hub

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Secrets at rest. Hub features that must keep a secret they will use
// again — a chart repository's password, a registry token — seal it with
// a key derived from the hub's secret key (HKDF-SHA256, one key per
// purpose) in AES-256-GCM, and store only the sealed bytes. A value sealed
// under a previous secret key (Config.PreviousSecretKeys) still opens, so
// rotating the hub's key loses nothing; sealing again moves it to the new
// one.

// ErrUnseal is returned by Unseal for bytes that no key of the hub opens:
// tampered, sealed for another purpose, or by a key the hub no longer has.
var ErrUnseal = errors.New("sealed secret: cannot open with the hub's keys")

// sealVersion starts every sealed value, so the format can change.
const sealVersion = 1

func sealAEAD(key []byte, purpose string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key, nil, "eco secret at rest\x00"+purpose, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// Seal encrypts plaintext for purpose (e.g. "catalog/repository") with
// the hub's current secret key. The purpose is bound to the result: it
// opens only for the same purpose.
func (h *Hub) Seal(purpose string, plaintext []byte) ([]byte, error) {
	a, err := sealAEAD(h.cfg.SecretKey, purpose)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	return a.Seal([]byte{sealVersion}, nil, plaintext, []byte(purpose)), nil
}

// Unseal opens what Seal sealed for purpose, with the current secret key
// or a previous one.
func (h *Hub) Unseal(purpose string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1 || sealed[0] != sealVersion {
		return nil, ErrUnseal
	}
	for _, key := range h.secretKeys() {
		a, err := sealAEAD(key, purpose)
		if err != nil {
			return nil, fmt.Errorf("unsealing: %w", err)
		}
		if out, err := a.Open(nil, nil, sealed[1:], []byte(purpose)); err == nil {
			return out, nil
		}
	}
	return nil, ErrUnseal
}

// Registerer is the hub's Prometheus registry, for hub features' metrics:
// they are served with the hub's at /metrics.
func (h *Hub) Registerer() prometheus.Registerer { return h.registry }
