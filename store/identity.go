package store

import (
	"fmt"
	"time"
)

// IdentityState is where a cluster's identity pin stands: how the hub
// knows the keys that sign the cluster's ServiceAccount tokens when no OIDC
// issuer is configured for it.
type IdentityState string

// The identity states.
const (
	// IdentityUnpinned: nothing pinned yet; the next agent that proves
	// itself against the keys its cluster serves pins them (trust on
	// first use).
	IdentityUnpinned IdentityState = ""
	// IdentityAwaitingApproval: keys were pinned from a first connect, but
	// the cluster requires an administrator's approval before any agent
	// is admitted with them.
	IdentityAwaitingApproval IdentityState = "AwaitingApproval"
	// IdentityPinned: the keys are the cluster's trust anchor.
	IdentityPinned IdentityState = "Pinned"
)

// Limits on identity fields, in bytes.
const (
	MaxIssuerLen = 1024
	MaxJWKSLen   = 64 << 10
)

// IdentityConfig is how an administrator chose to establish a cluster's
// identity.
type IdentityConfig struct {
	// OIDCIssuer, if not empty, is the cluster's public service-account
	// issuer (EKS, AKS and GKE publish one): the hub verifies agent
	// tokens with the keys its OIDC discovery serves and pins nothing.
	OIDCIssuer string
	// RequireApproval holds a first-use pin as IdentityAwaitingApproval
	// until an administrator approves it.
	RequireApproval bool
}

// Validate reports the first problem with c, wrapping [ErrInvalid]. The
// store checks size and text only; the hub checks that the issuer is an
// https URL.
func (c IdentityConfig) Validate() error {
	return validateText("OIDC issuer", c.OIDCIssuer, MaxIssuerLen)
}

// Identity is a cluster's identity configuration and pin.
type Identity struct {
	IdentityConfig
	State IdentityState
	// Issuer and JWKS are the pinned issuer and its key set (a JWKS JSON
	// document); empty while State is IdentityUnpinned.
	Issuer string
	JWKS   []byte
	// PinnedAt is when the keys were first pinned; KeysUpdatedAt when
	// they last changed (the cluster rotated its keys). Zero while
	// unpinned.
	PinnedAt, KeysUpdatedAt time.Time
}

// ValidatePin checks a pin's issuer and JWKS sizes.
func ValidatePin(issuer string, jwks []byte) error {
	if issuer == "" {
		return fmt.Errorf("%w: pinned issuer is empty", ErrInvalid)
	}
	if err := validateText("pinned issuer", issuer, MaxIssuerLen); err != nil {
		return err
	}
	if len(jwks) == 0 || len(jwks) > MaxJWKSLen {
		return fmt.Errorf("%w: pinned JWKS must be 1 to %d bytes, got %d", ErrInvalid, MaxJWKSLen, len(jwks))
	}
	return nil
}
