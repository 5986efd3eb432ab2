package saproof

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer = "https://kubernetes.default.svc.cluster.local"
	testHub    = "https://hub.example.com"
	testNS     = "eco-system"
	testSA     = "eco-agent"
)

// signer is an issuer's key: it signs tokens and publishes its public half.
type signer struct {
	kid string
	key crypto.Signer
	alg jose.SignatureAlgorithm
}

func newRSASigner(t testing.TB, kid string, bits int) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: k, alg: jose.RS256}
}

func newECSigner(t testing.TB, kid string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: k, alg: jose.ES256}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}
}

func jwksOf(t testing.TB, ss ...signer) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, s := range ss {
		set.Keys = append(set.Keys, s.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims are what a Kubernetes projected token carries.
type claims struct {
	jwt.Claims
	Kube map[string]any `json:"kubernetes.io,omitempty"`
}

func agentClaims(now time.Time) claims {
	return claims{
		Claims: jwt.Claims{
			Issuer: testIssuer, Subject: "system:serviceaccount:" + testNS + ":" + testSA,
			Audience: jwt.Audience{testHub}, Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)),
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		},
		Kube: map[string]any{
			"namespace":      testNS,
			"serviceaccount": map[string]any{"name": testSA, "uid": "u-1"},
			"pod":            map[string]any{"name": "eco-agent-abc", "uid": "p-1"},
		},
	}
}

func (s signer) sign(t testing.TB, c any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader("kid", s.kid)
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sg).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func expect() Expect {
	return Expect{Issuer: testIssuer, Audience: testHub, Namespace: testNS, ServiceAccount: testSA}
}

// TestVerify names an attack on the proof in each row and the refusal it
// must get.
func TestVerify(t *testing.T) {
	now := time.Now()
	key := newRSASigner(t, "k1", 2048)
	other := newRSASigner(t, "k1", 2048) // same kid, another cluster's key
	ec := newECSigner(t, "e1")
	keys, err := ParseJWKS(jwksOf(t, key, ec))
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*claims)) claims { c := agentClaims(now); f(&c); return c }
	tests := []struct {
		attack string
		token  string
		want   Reason // "" means accepted
	}{
		{"none: the agent's own token", key.sign(t, agentClaims(now)), ""},
		{"none: an ECDSA-signed token", ec.sign(t, agentClaims(now)), ""},
		{"no token at all", "", ReasonMissing},
		{"garbage instead of a token", "not-a-jwt", ReasonMalformed},
		{"alg none", unsigned(agentClaims(now)), ReasonMalformed},
		{"HMAC-signed with the public key as secret", hmacSigned(t, agentClaims(now)), ReasonMalformed},
		{"token of another cluster (same kid, other key)", other.sign(t, agentClaims(now)), ReasonSignature},
		{"token signed by a key the issuer never published", newRSASigner(t, "k9", 2048).sign(t, agentClaims(now)), ReasonUnknownKey},
		{"payload altered after signing", splice(key.sign(t, agentClaims(now)), key.sign(t, mod(func(c *claims) { c.Subject = "x" }))), ReasonSignature},
		{"wrong issuer", key.sign(t, mod(func(c *claims) { c.Issuer = "https://evil.example" })), ReasonIssuer},
		{"audience of the API server", key.sign(t, mod(func(c *claims) { c.Audience = jwt.Audience{"https://kubernetes.default.svc.cluster.local"} })), ReasonAudience},
		{"no audience", key.sign(t, mod(func(c *claims) { c.Audience = nil })), ReasonAudience},
		{"expired token", key.sign(t, mod(func(c *claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-20 * time.Minute))
			c.NotBefore = c.IssuedAt
			c.Expiry = jwt.NewNumericDate(now.Add(-5 * time.Minute))
		})), ReasonExpired},
		{"token without exp", key.sign(t, mod(func(c *claims) { c.Expiry = nil })), ReasonExpired},
		{"token from the future", key.sign(t, mod(func(c *claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour))
			c.NotBefore = c.IssuedAt
			c.Expiry = jwt.NewNumericDate(now.Add(2 * time.Hour))
		})), ReasonNotYetValid},
		{"long-lived token", key.sign(t, mod(func(c *claims) { c.Expiry = jwt.NewNumericDate(now.Add(365 * 24 * time.Hour)) })), ReasonLifetime},
		{"token of another ServiceAccount", key.sign(t, mod(func(c *claims) {
			c.Subject = "system:serviceaccount:" + testNS + ":default"
			c.Kube["serviceaccount"] = map[string]any{"name": "default"}
		})), ReasonSubject},
		{"token of the same SA name in another namespace", key.sign(t, mod(func(c *claims) {
			c.Subject = "system:serviceaccount:other:" + testSA
			c.Kube["namespace"] = "other"
		})), ReasonSubject},
		{"sub right but kubernetes.io claims of another namespace", key.sign(t, mod(func(c *claims) { c.Kube["namespace"] = "other" })), ReasonSubject},
		{"no kubernetes.io claims", key.sign(t, mod(func(c *claims) { c.Kube = nil })), ReasonSubject},
		{"token of a user, not a ServiceAccount", key.sign(t, mod(func(c *claims) { c.Subject = "admin" })), ReasonSubject},
		{"oversized token", strings.Repeat("A", MaxTokenLen+1), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.attack, func(t *testing.T) {
			tok, err := Parse(tt.token)
			var c Claims
			if err == nil {
				c, err = tok.Verify(keys, expect(), now)
			}
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.want)
			}
			if tt.want == "" && (c.Namespace != testNS || c.ServiceAccount != testSA || c.PodName == "") {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

func unsigned(c claims) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(c)
	return b64(h) + "." + b64(p) + ".c2ln"
}

func hmacSigned(t *testing.T, c claims) string {
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sg).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var sb strings.Builder
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j <= k; j++ {
			sb.WriteByte(enc[(n>>(18-6*j))&63])
		}
	}
	return sb.String()
}

// splice puts the payload of other between the header and the signature
// of tok.
func splice(tok, other string) string {
	a, b := strings.Split(tok, "."), strings.Split(other, ".")
	return a[0] + "." + b[1] + "." + a[2]
}

func TestParseJWKS(t *testing.T) {
	key := newRSASigner(t, "k1", 2048)
	small := newRSASigner(t, "s1", 1024)
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.key, KeyID: "p"}}})
	many := jose.JSONWebKeySet{}
	for range MaxKeys + 1 {
		many.Keys = append(many.Keys, key.jwk())
	}
	manyJSON, _ := json.Marshal(many)
	enc := key.jwk()
	enc.Use = "enc"
	mixed, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{enc, key.jwk()}})
	tests := []struct {
		name  string
		in    []byte
		ok    bool
		nKeys int
	}{
		{"one RSA key", jwksOf(t, key), true, 1},
		{"an encryption key is skipped", mixed, true, 1},
		{"private key material", priv, false, 0},
		{"RSA key below 2048 bits", jwksOf(t, small), false, 0},
		{"too many keys", manyJSON, false, 0},
		{"oversized", append([]byte(`{"keys":[]}`), make([]byte, MaxJWKSLen)...), false, 0},
		{"not JSON", []byte("<html>"), false, 0},
		{"no keys", []byte(`{"keys":[]}`), false, 0},
		{"a symmetric key only", []byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseJWKS(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if tt.ok && len(set.Keys) != tt.nKeys {
				t.Fatalf("%d keys, want %d", len(set.Keys), tt.nKeys)
			}
		})
	}
}

// oidcServer is an issuer publishing discovery and keys over TLS.
type oidcServer struct {
	*httptest.Server
	jwks  atomic.Pointer[[]byte]
	hits  atomic.Int64
	issue string // the issuer the discovery document names; "" means the server's URL
}

func newOIDCServer(t *testing.T, jwks []byte) *oidcServer {
	s := &oidcServer{}
	s.jwks.Store(&jwks)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case WellKnownPath:
			iss := s.issue
			if iss == "" {
				iss = s.URL
			}
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": s.URL + "/keys"})
		case "/keys":
			s.hits.Add(1)
			w.Write(*s.jwks.Load())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestDiscovery(t *testing.T) {
	k1, k2 := newRSASigner(t, "k1", 2048), newRSASigner(t, "k2", 2048)
	srv := newOIDCServer(t, jwksOf(t, k1))
	now := time.Now()
	clock := func() time.Time { return now }
	d := NewDiscovery(DiscoveryConfig{Client: srv.Client(), Now: clock, MinRefetch: time.Minute})
	ctx := context.Background()

	keys, err := d.Keys(ctx, srv.URL, "k1")
	if err != nil || len(keys.Key("k1")) != 1 {
		t.Fatalf("keys %v, err %v", KeyIDs(keys), err)
	}
	// Cached: no second fetch.
	if _, err := d.Keys(ctx, srv.URL, "k1"); err != nil || srv.hits.Load() != 1 {
		t.Fatalf("fetched %d times, err %v", srv.hits.Load(), err)
	}
	// The issuer rotates: an unknown kid refetches, but not more often
	// than MinRefetch.
	b := jwksOf(t, k1, k2)
	srv.jwks.Store(&b)
	if keys, _ := d.Keys(ctx, srv.URL, "k2"); len(keys.Key("k2")) != 0 || srv.hits.Load() != 1 {
		t.Fatalf("refetched within MinRefetch: %d fetches", srv.hits.Load())
	}
	now = now.Add(2 * time.Minute)
	if keys, _ := d.Keys(ctx, srv.URL, "k2"); len(keys.Key("k2")) != 1 || srv.hits.Load() != 2 {
		t.Fatalf("unknown kid after MinRefetch: keys %v, %d fetches", KeyIDs(keys), srv.hits.Load())
	}
	// A flood of unknown kids costs one fetch per MinRefetch.
	for i := range 50 {
		d.Keys(ctx, srv.URL, "nope"+string(rune('a'+i%26)))
	}
	if srv.hits.Load() != 2 {
		t.Fatalf("unknown kids made %d fetches", srv.hits.Load())
	}
	// The issuer goes down: the keys fetched before still serve.
	now = now.Add(2 * time.Hour)
	srv.Close()
	if keys, err := d.Keys(ctx, srv.URL, "k1"); err != nil || len(keys.Key("k1")) != 1 {
		t.Fatalf("stale keys not served during an outage: %v", err)
	}
}

func TestDiscoveryRefusals(t *testing.T) {
	k1 := newRSASigner(t, "k1", 2048)
	ctx := context.Background()
	t.Run("discovery names another issuer", func(t *testing.T) {
		srv := newOIDCServer(t, jwksOf(t, k1))
		srv.issue = "https://evil.example"
		d := NewDiscovery(DiscoveryConfig{Client: srv.Client()})
		if _, err := d.Keys(ctx, srv.URL, ""); ReasonOf(err) != ReasonKeys {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("http issuer", func(t *testing.T) {
		d := NewDiscovery(DiscoveryConfig{})
		_, err := d.Keys(ctx, "http://example.com", "")
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(e.Detail, "https") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unreachable issuer", func(t *testing.T) {
		d := NewDiscovery(DiscoveryConfig{FetchTimeout: time.Second})
		if _, err := d.Keys(ctx, "https://127.0.0.1:1", ""); err == nil {
			t.Fatal("no error")
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	k := newRSASigner(f, "k1", 2048)
	f.Add(jwksOf(f, k))
	f.Add(jwksOf(f, newECSigner(f, "e")))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := ParseJWKS(b)
		if err != nil {
			if ReasonOf(err) != ReasonKeys {
				t.Fatalf("error %v has reason %q", err, ReasonOf(err))
			}
			return
		}
		if len(set.Keys) == 0 || len(set.Keys) > MaxKeys {
			t.Fatalf("%d keys", len(set.Keys))
		}
		for _, k := range set.Keys {
			if !k.IsPublic() {
				t.Fatal("a private key got through")
			}
		}
	})
}

func FuzzVerifyToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	k := newRSASigner(f, "k1", 2048)
	keys, err := ParseJWKS(jwksOf(f, k))
	if err != nil {
		f.Fatal(err)
	}
	good := k.sign(f, agentClaims(now))
	f.Add(good)
	f.Add(splice(good, k.sign(f, claims{Claims: jwt.Claims{Subject: "x"}})))
	f.Add(unsigned(agentClaims(now)))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if r := ReasonOf(err); r != ReasonMalformed && r != ReasonMissing {
				t.Fatalf("Parse error %v has reason %q", err, r)
			}
			return
		}
		c, err := tok.Verify(keys, expect(), now)
		if err == nil && s != good {
			// Only the one token k signed may verify: any other
			// string that does is a forgery (or the same token
			// re-encoded, which base64url's strictness rules out).
			t.Fatalf("accepted %q as %+v", s, c)
		}
	})
}

// BenchmarkAdmission is what admission pays per connect with pinned keys:
// parse the pinned JWKS, parse the token, verify it.
func BenchmarkAdmission(b *testing.B) {
	for _, tc := range []struct {
		name string
		s    signer
	}{{"RS256", newRSASigner(b, "k1", 2048)}, {"ES256", newECSigner(b, "e1")}} {
		b.Run(tc.name, func(b *testing.B) {
			now := time.Now()
			jwks := jwksOf(b, tc.s)
			tok := tc.s.sign(b, agentClaims(now))
			for b.Loop() {
				keys, err := ParseJWKS(jwks)
				if err != nil {
					b.Fatal(err)
				}
				t, err := Parse(tok)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := t.Verify(keys, expect(), now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
