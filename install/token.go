package install

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Agent credential format: TokenPrefix followed by TokenBytes random bytes
// in unpadded base64url.
const (
	// TokenPrefix starts every agent token, so that a leaked one is
	// recognisable (by secret scanners, in logs).
	TokenPrefix = "ecoa_"
	// TokenBytes is the number of random bytes in a token: 256 bits.
	TokenBytes = 32
	// TokenLen is the length of a token in characters.
	TokenLen = len(TokenPrefix) + (TokenBytes*8+5)/6
)

// NewAgentToken returns a new agent credential: TokenBytes bytes from
// crypto/rand, base64url-encoded without padding, after TokenPrefix. The
// hub gives it to the agent once, in the install YAML, and keeps only
// HashToken of it.
func NewAgentToken() (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating agent token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckTokenFormat reports whether token has the form NewAgentToken
// produces. It says nothing about whether the hub knows the token. Errors
// never contain the token.
func CheckTokenFormat(token string) error {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return fmt.Errorf("not an eco agent token: missing the %q prefix", TokenPrefix)
	}
	if len(token) != TokenLen {
		return fmt.Errorf("not an eco agent token: %d characters, want %d", len(token), TokenLen)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(rest); err != nil {
		return errors.New("not an eco agent token: not unpadded base64url after the prefix")
	}
	return nil
}

// HashToken returns the lowercase hex SHA-256 of token: what the hub
// stores instead of the token. A single unsalted hash suffices because
// tokens carry 256 random bits; nothing can be guessed from the hash.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenMatches reports whether token hashes to hash (as returned by
// HashToken), comparing in constant time.
func TokenMatches(token, hash string) bool {
	want := HashToken(token)
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(hash))) == 1
}
