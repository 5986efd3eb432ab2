package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/eco-project/eco/install"
)

// TestDeriveCredential: generation 0 is decision 0004's derivation, so
// agents installed before rotation keep their credential; every other
// generation, cluster and key gives another credential, in the agent
// token format.
func TestDeriveCredential(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	m := hmac.New(sha256.New, key)
	m.Write([]byte("eco agent credential\x00c-aaaaaaaaaa"))
	legacy := install.TokenPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	if got := deriveCredential(key, "c-aaaaaaaaaa", 0); got != legacy {
		t.Fatalf("generation 0 = %s, want the 0004 derivation %s", got, legacy)
	}
	seen := map[string]string{}
	for _, tt := range []struct {
		name, id string
		key      []byte
		gen      int64
	}{
		{"gen 0", "c-aaaaaaaaaa", key, 0},
		{"gen 1", "c-aaaaaaaaaa", key, 1},
		{"gen 2", "c-aaaaaaaaaa", key, 2},
		{"gen 10", "c-aaaaaaaaaa", key, 10},
		{"another cluster, gen 1", "c-bbbbbbbbbb", key, 1},
		{"a cluster whose ID ends like a generation", "c-aaaaaaaaaa\x00generation\x001", key, 0},
		{"another key, gen 1", "c-aaaaaaaaaa", []byte("fedcba9876543210fedcba9876543210"), 1},
	} {
		c := deriveCredential(tt.key, tt.id, tt.gen)
		if err := install.CheckTokenFormat(c); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if c != deriveCredential(tt.key, tt.id, tt.gen) {
			t.Errorf("%s: not deterministic", tt.name)
		}
		if other, dup := seen[c]; dup {
			t.Errorf("%s gives the same credential as %s", tt.name, other)
		}
		seen[c] = tt.name
	}
}
