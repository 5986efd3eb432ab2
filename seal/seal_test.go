package seal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/eco-project/eco/seal"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// TestSealer: a sealed value opens with its purpose and associated data
// under the key that sealed it, also once that key is a previous one
// (and says so); anything else is ErrUnseal, never a panic.
func TestSealer(t *testing.T) {
	cur, err := seal.New(key(1))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("hunter2")
	sealed, err := cur.Seal("catalog/repository", secret, []byte("charts"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed value holds the secret in clear")
	}
	if got, prev, err := cur.Open("catalog/repository", sealed, []byte("charts")); err != nil || prev || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v, %v", got, prev, err)
	}
	again, _ := cur.Seal("catalog/repository", secret, []byte("charts"))
	if bytes.Equal(again, sealed) {
		t.Error("two seals of one value are equal: the nonce is not random")
	}

	rotated, err := seal.New(key(2), key(1))
	if err != nil {
		t.Fatal(err)
	}
	if got, prev, err := rotated.Open("catalog/repository", sealed, []byte("charts")); err != nil || !prev || !bytes.Equal(got, secret) {
		t.Fatalf("after rotation: Open = %q, previous %v, %v; want the secret from the previous key", got, prev, err)
	}

	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	other, _ := seal.New(key(3))
	for _, tc := range []struct {
		name    string
		s       *seal.Sealer
		purpose string
		sealed  []byte
		aad     string
	}{
		{"another purpose", cur, "cloud/account", sealed, "charts"},
		{"other associated data", cur, "catalog/repository", sealed, "other"},
		{"purpose and data shifted", cur, "catalog/repositor", sealed, "ycharts"},
		{"tampered", cur, "catalog/repository", flipped, "charts"},
		{"another hub's key", other, "catalog/repository", sealed, "charts"},
		{"empty", cur, "catalog/repository", nil, "charts"},
		{"unknown version", cur, "catalog/repository", append([]byte{9}, sealed[1:]...), "charts"},
		{"truncated", cur, "catalog/repository", sealed[:5], "charts"},
	} {
		if _, _, err := tc.s.Open(tc.purpose, tc.sealed, []byte(tc.aad)); !errors.Is(err, seal.ErrUnseal) {
			t.Errorf("%s: %v, want ErrUnseal", tc.name, err)
		}
	}

	if _, err := seal.New(); err == nil {
		t.Error("New without a key")
	}
	if _, err := seal.New(key(1), []byte("short")); err == nil {
		t.Error("New with a short key")
	}
}
