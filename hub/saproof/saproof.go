// Package saproof verifies the proof an eco agent gives of the cluster it
// runs in: a Kubernetes ServiceAccount token (a JWT) minted for the agent's
// ServiceAccount with the hub's URL as audience and a short expiry, signed by
// the cluster's service-account issuer. The hub checks the token's signature
// against the issuer's keys (a JWKS: from the issuer's OIDC discovery, or
// pinned from what the cluster served at the first connect) and its claims
// against what it expects of the agent.
//
// Parsing and signatures are go-jose's; this package only bounds the input
// (sizes, key types, algorithms) and checks the claims. Every failure is an
// *Error whose Reason is a short code (for metrics) and whose Detail says
// what failed; Detail is meant for the hub's administrators only, never for
// the agent.
package saproof

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Limits on untrusted input.
const (
	// MaxTokenLen bounds a token, in bytes. Kubernetes' projected tokens
	// are about 1 KiB.
	MaxTokenLen = 8 << 10
	// MaxJWKSLen bounds a JWKS document, in bytes.
	MaxJWKSLen = 64 << 10
	// MaxKeys bounds the keys of a JWKS.
	MaxKeys = 32
	// MinRSABits is the smallest RSA key accepted.
	MinRSABits = 2048
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultMaxLifetime bounds exp - iat: the agent's tokens live 10
	// minutes; a token meant to live a day or more is not one of them.
	DefaultMaxLifetime = 24 * time.Hour
)

// Algorithms are the JWS algorithms accepted: those a Kubernetes
// service-account issuer signs with (RS256, ES256 and kin). Never "none",
// never HMAC.
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
}

// Reason says, in a word, why a proof failed.
type Reason string

// The reasons of an *Error.
const (
	ReasonMissing     Reason = "missing"       // no token
	ReasonMalformed   Reason = "malformed"     // not a signed JWT within the limits
	ReasonUnknownKey  Reason = "unknown-key"   // no key of the set may have signed it
	ReasonSignature   Reason = "signature"     // no key's signature verifies
	ReasonIssuer      Reason = "issuer"        // iss is not the cluster's issuer
	ReasonAudience    Reason = "audience"      // aud does not name the hub
	ReasonExpired     Reason = "expired"       // exp is past, or missing
	ReasonNotYetValid Reason = "not-yet-valid" // nbf or iat in the future
	ReasonLifetime    Reason = "lifetime"      // exp - iat over the maximum
	ReasonSubject     Reason = "subject"       // not the agent's ServiceAccount
	ReasonKeys        Reason = "keys"          // the issuer's keys are not to be had or not valid
)

// Error is a failed proof. Detail is for administrators only.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return "service account token: " + string(e.Reason) + ": " + e.Detail }

func fail(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of err if it is an *Error, else ReasonKeys for
// other errors (a failed fetch) and "" for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonKeys
}

// Token is a parsed, not yet verified token.
type Token struct {
	jws *jwt.JSONWebToken
	// KeyID is the kid of the token's header, possibly empty.
	KeyID string
	// UnverifiedIssuer is the token's iss claim, not yet verified: use it
	// only to find the keys to verify it with.
	UnverifiedIssuer string
}

// Parse parses a compact JWS without verifying it. It checks the size, the
// characters and that the algorithm is one of Algorithms.
func Parse(token string) (*Token, error) {
	if token == "" {
		return nil, fail(ReasonMissing, "no token")
	}
	if len(token) > MaxTokenLen {
		return nil, fail(ReasonMalformed, "token is %d bytes, at most %d", len(token), MaxTokenLen)
	}
	if err := CheckTokenSyntax(token); err != nil {
		return nil, err
	}
	tok, err := jwt.ParseSigned(token, Algorithms)
	if err != nil {
		return nil, fail(ReasonMalformed, "not a signed JWT with an accepted algorithm: %v", err)
	}
	if len(tok.Headers) != 1 {
		return nil, fail(ReasonMalformed, "%d signatures, want 1", len(tok.Headers))
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, fail(ReasonMalformed, "claims: %v", err)
	}
	return &Token{jws: tok, KeyID: tok.Headers[0].KeyID, UnverifiedIssuer: c.Issuer}, nil
}

// CheckTokenSyntax checks that s looks like a compact JWS: three non-empty
// base64url parts separated by dots, within MaxTokenLen.
func CheckTokenSyntax(s string) error {
	if len(s) > MaxTokenLen {
		return fail(ReasonMalformed, "token is %d bytes, at most %d", len(s), MaxTokenLen)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return fail(ReasonMalformed, "a compact JWS has 3 parts, this has %d", len(parts))
	}
	for _, p := range parts {
		if p == "" {
			return fail(ReasonMalformed, "empty part")
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fail(ReasonMalformed, "character %q is not base64url", c)
			}
		}
	}
	return nil
}

// Expect is what a token must say.
type Expect struct {
	// Issuer is the exact iss. Required.
	Issuer string
	// Audience must be among aud: the hub's external URL. Required.
	Audience string
	// Namespace and ServiceAccount are the agent's: sub must be
	// system:serviceaccount:NAMESPACE:NAME and the kubernetes.io claims
	// must name them too. Required.
	Namespace, ServiceAccount string
	// Leeway is the clock skew allowed. Zero means DefaultLeeway.
	Leeway time.Duration
	// MaxLifetime bounds exp - iat. Zero means DefaultMaxLifetime.
	MaxLifetime time.Duration
}

// Claims are the verified claims of a token.
type Claims struct {
	Issuer, Subject        string
	Audience               []string
	Expiry, IssuedAt       time.Time
	Namespace              string
	ServiceAccount         string
	ServiceAccountUID      string
	PodName, PodUID, KeyID string
}

// kubeClaims is the private claim Kubernetes adds.
type kubeClaims struct {
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// Verify checks t's signature against keys and its claims against want at
// time now. The key is chosen by kid; a token without kid is tried against
// every key.
func (t *Token) Verify(keys *jose.JSONWebKeySet, want Expect, now time.Time) (Claims, error) {
	if keys == nil || len(keys.Keys) == 0 {
		return Claims{}, fail(ReasonKeys, "no keys to verify with")
	}
	if want.Issuer == "" || want.Audience == "" || want.Namespace == "" || want.ServiceAccount == "" {
		return Claims{}, errors.New("saproof: Expect needs Issuer, Audience, Namespace and ServiceAccount")
	}
	if want.Leeway == 0 {
		want.Leeway = DefaultLeeway
	}
	if want.MaxLifetime == 0 {
		want.MaxLifetime = DefaultMaxLifetime
	}
	candidates := keys.Keys
	if t.KeyID != "" {
		candidates = keys.Key(t.KeyID)
	}
	if len(candidates) == 0 {
		return Claims{}, fail(ReasonUnknownKey, "no key with kid %q among the %d of the issuer", t.KeyID, len(keys.Keys))
	}
	alg := t.jws.Headers[0].Algorithm
	var c jwt.Claims
	var kc kubeClaims
	verified := false
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if err := t.jws.Claims(k.Key, &c, &kc); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Claims{}, fail(ReasonSignature, "the signature (%s, kid %q) does not verify with the issuer's keys", alg, t.KeyID)
	}
	if c.Issuer != want.Issuer {
		return Claims{}, fail(ReasonIssuer, "iss %q is not the cluster's issuer %q", c.Issuer, want.Issuer)
	}
	if !c.Audience.Contains(want.Audience) {
		return Claims{}, fail(ReasonAudience, "aud %q does not name the hub (%q)", []string(c.Audience), want.Audience)
	}
	if c.Expiry == nil {
		return Claims{}, fail(ReasonExpired, "the token has no exp")
	}
	if c.IssuedAt == nil {
		return Claims{}, fail(ReasonMalformed, "the token has no iat")
	}
	switch err := c.ValidateWithLeeway(jwt.Expected{Time: now}, want.Leeway); {
	case errors.Is(err, jwt.ErrExpired):
		return Claims{}, fail(ReasonExpired, "expired at %s (now %s)", c.Expiry.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Claims{}, fail(ReasonNotYetValid, "not valid before %s (now %s): check the clocks", c.IssuedAt.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case err != nil:
		return Claims{}, fail(ReasonMalformed, "%v", err)
	}
	if life := c.Expiry.Time().Sub(c.IssuedAt.Time()); life > want.MaxLifetime {
		return Claims{}, fail(ReasonLifetime, "the token lives %s, at most %s are accepted", life, want.MaxLifetime)
	}
	sub := "system:serviceaccount:" + want.Namespace + ":" + want.ServiceAccount
	if c.Subject != sub {
		return Claims{}, fail(ReasonSubject, "sub %q is not the agent's ServiceAccount %q", c.Subject, sub)
	}
	k := kc.Kubernetes
	if k == nil || k.Namespace != want.Namespace || k.ServiceAccount == nil || k.ServiceAccount.Name != want.ServiceAccount {
		return Claims{}, fail(ReasonSubject, "the kubernetes.io claims do not name ServiceAccount %s/%s", want.Namespace, want.ServiceAccount)
	}
	out := Claims{
		Issuer: c.Issuer, Subject: c.Subject, Audience: slices.Clone([]string(c.Audience)),
		Expiry: c.Expiry.Time(), IssuedAt: c.IssuedAt.Time(),
		Namespace: k.Namespace, ServiceAccount: k.ServiceAccount.Name, ServiceAccountUID: k.ServiceAccount.UID,
		KeyID: t.KeyID,
	}
	if k.Pod != nil {
		out.PodName, out.PodUID = k.Pod.Name, k.Pod.UID
	}
	return out, nil
}

// ParseJWKS parses an untrusted JWKS document: at most MaxJWKSLen bytes and
// MaxKeys keys, each a public RSA (at least MinRSABits) or ECDSA key for
// signatures. Keys of other types (e.g. encryption keys of a shared OIDC
// provider) are skipped; a set left without keys is an error.
func ParseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	if len(b) > MaxJWKSLen {
		return nil, fail(ReasonKeys, "JWKS is %d bytes, at most %d", len(b), MaxJWKSLen)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&raw); err != nil {
		return nil, fail(ReasonKeys, "JWKS is not a JSON object with keys: %v", err)
	}
	if len(raw.Keys) > MaxKeys {
		return nil, fail(ReasonKeys, "JWKS has %d keys, at most %d", len(raw.Keys), MaxKeys)
	}
	set := &jose.JSONWebKeySet{}
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			return nil, fail(ReasonKeys, "key %d: %v", i, err)
		}
		if !k.IsPublic() {
			return nil, fail(ReasonKeys, "key %d (kid %q) is not a public key", i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && !slices.Contains(Algorithms, jose.SignatureAlgorithm(k.Algorithm)) {
			continue
		}
		switch pk := k.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < MinRSABits {
				return nil, fail(ReasonKeys, "key %d (kid %q) is RSA of %d bits, at least %d", i, k.KeyID, pk.N.BitLen(), MinRSABits)
			}
		case *ecdsa.PublicKey:
		default:
			continue
		}
		set.Keys = append(set.Keys, k)
	}
	if len(set.Keys) == 0 {
		return nil, fail(ReasonKeys, "JWKS holds no usable signing key")
	}
	return set, nil
}

// KeyIDs lists the kids of set, for logs and the admin API.
func KeyIDs(set *jose.JSONWebKeySet) []string {
	if set == nil {
		return nil
	}
	ids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		ids = append(ids, k.KeyID)
	}
	return ids
}
