package hub_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/eco-project/eco/hub"
)

// TestSeal: a sealed secret opens for its purpose only, not once
// tampered with, and still opens after the hub's key was rotated.
func TestSeal(t *testing.T) {
	e := newEnv(t)
	secret := []byte("s3cr3t password")
	sealed, err := e.hub.Seal("catalog/repository", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed bytes contain the secret")
	}
	if got, err := e.hub.Unseal("catalog/repository", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, tc := range map[string]struct {
		purpose string
		sealed  []byte
	}{
		"other purpose": {"registry", sealed},
		"tampered":      {"catalog/repository", tampered},
		"empty":         {"catalog/repository", nil},
	} {
		if _, err := e.hub.Unseal(tc.purpose, tc.sealed); !errors.Is(err, hub.ErrUnseal) {
			t.Errorf("%s: %v, want ErrUnseal", name, err)
		}
	}
	rotated := newEnvWith(t, envOpts{hub: func(c *hub.Config) {
		c.PreviousSecretKeys = [][]byte{c.SecretKey}
		c.SecretKey = []byte(strings.Repeat("n", 32))
	}})
	if got, err := rotated.hub.Unseal("catalog/repository", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("after key rotation: %q, %v", got, err)
	}
}
