package store

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
)

// ID prefixes.
const (
	ClusterIDPrefix = "c-"
	TokenIDPrefix   = "t-"
	idRandLen       = 10 // base32 characters: 50 random bits

	// idAlphabet is the RFC 4648 base32 alphabet in lowercase, so IDs are
	// URL-safe and fit in DNS labels.
	idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"
)

// NewClusterID returns a fresh random cluster ID such as "c-k3x7q2mvaz".
// Backends call it; an ID that happens to collide is drawn again.
func NewClusterID() string { return newID(ClusterIDPrefix) }

// NewTokenID returns a fresh random API token ID such as "t-p4n2b7xqre".
func NewTokenID() string { return newID(TokenIDPrefix) }

func newID(prefix string) string {
	var b [8]byte
	rand.Read(b[:]) // never fails; see crypto/rand.Read
	n := binary.LittleEndian.Uint64(b[:])
	id := make([]byte, 0, len(prefix)+idRandLen)
	id = append(id, prefix...)
	for range idRandLen {
		id = append(id, idAlphabet[n&31])
		n >>= 5
	}
	return string(id)
}

// ValidID reports whether id has the shape of an ID with the given prefix.
// Callers can use it to reject garbage before a lookup.
func ValidID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) != idRandLen {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if strings.IndexByte(idAlphabet, c) < 0 {
			return false
		}
	}
	return true
}
