package install

import (
	"encoding/base64"
	"math/bits"
	"strings"
	"testing"
)

func TestNewAgentToken(t *testing.T) {
	const n = 1000
	seen := make(map[string]bool, n)
	var ones, total int
	for range n {
		tok, err := NewAgentToken()
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckTokenFormat(tok); err != nil {
			t.Fatalf("NewAgentToken() = %q: %v", tok, err)
		}
		if !strings.HasPrefix(tok, "ecoa_") || len(tok) != TokenLen {
			t.Fatalf("token %q: want ecoa_ prefix and %d characters", tok, TokenLen)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, TokenPrefix))
		if err != nil || len(raw) < 32 {
			t.Fatalf("token %q: %d random bytes (%v), want ≥ 32 (256 bits)", tok, len(raw), err)
		}
		for _, b := range raw {
			ones += bits.OnesCount8(b)
		}
		total += 8 * len(raw)
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
	}
	// Random bits are about half ones: 256000 bits, σ ≈ 253.
	if frac := float64(ones) / float64(total); frac < 0.49 || frac > 0.51 {
		t.Errorf("fraction of one bits %.4f: not random", frac)
	}
}

func TestCheckTokenFormat(t *testing.T) {
	good := testToken
	for _, tc := range []struct {
		name, token, wantErr string
	}{
		{"good", good, ""},
		{"empty", "", "prefix"},
		{"other prefix", "ecox_" + good[5:], "prefix"},
		{"short", good[:len(good)-1], "characters"},
		{"long", good + "A", "characters"},
		{"not base64url", good[:len(good)-1] + "+", "base64url"},
		{"padded", good[:len(good)-1] + "=", "base64url"},
		{"hash", HashToken(good), "prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTokenFormat(tc.token)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckTokenFormat(%q) = %v, want error containing %q", tc.token, err, tc.wantErr)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Error("error contains the token")
			}
		})
	}
}

func TestHashToken(t *testing.T) {
	// echo -n ecoa_dGVzdC10b2tlbi1ub3Qtc2VjcmV0LWF0LWFsbC0wMTI | sha256sum
	const want = "04020054e5689de8fadc0f3b4e090f5da126d11f5dc79b29cd8a37d3dac20c1f"
	got := HashToken(testToken)
	if len(got) != 64 || strings.ToLower(got) != got || strings.Contains(got, testToken) {
		t.Fatalf("HashToken = %q: want 64 lowercase hex digits", got)
	}
	if got != want {
		t.Errorf("HashToken = %s, want %s", got, want)
	}
	if !TokenMatches(testToken, got) || !TokenMatches(testToken, strings.ToUpper(got)) {
		t.Error("TokenMatches rejects the token's own hash")
	}
	other, err := NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{HashToken(other), "", got[:63], testToken} {
		if TokenMatches(testToken, h) {
			t.Errorf("TokenMatches(token, %q) = true", h)
		}
	}
}
