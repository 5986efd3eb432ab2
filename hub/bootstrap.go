package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/eco-project/eco/store"
)

// MinBootstrapSecretLen is the least length of a secret given to
// BootstrapWith after its "ecot_" prefix: 43 characters of base64url or
// [A-Za-z0-9] hold at least 256 bits.
const MinBootstrapSecretLen = 43

// ErrBadBootstrapSecret: a secret given to BootstrapWith is not a usable
// API token.
var ErrBadBootstrapSecret = errors.New("bootstrap token must be \"ecot_\" followed by at least 43 characters of [A-Za-z0-9_-]")

// BootstrapWith creates the first admin token with a secret chosen
// outside the hub, such as one a Helm chart generated into a Kubernetes
// Secret, when the store has no valid token; it reports whether it did.
// The secret never needs to be printed. It must be "ecot_" followed by at
// least MinBootstrapSecretLen characters of [A-Za-z0-9_-].
func (h *Hub) BootstrapWith(ctx context.Context, secret string) (bool, error) {
	rest, ok := strings.CutPrefix(secret, apiTokenPrefix)
	if !ok || len(rest) < MinBootstrapSecretLen || len(secret) > 256 || strings.ContainsFunc(rest, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return false, ErrBadBootstrapSecret
	}
	n, err := h.store.CountTokens(ctx)
	if err != nil {
		return false, fmt.Errorf("counting tokens: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := h.store.CreateToken(ctx, store.NewToken{Name: "admin", Role: store.RoleAdmin, Hash: hashSecret(secret)}); err != nil {
		return false, fmt.Errorf("creating token: %w", err)
	}
	return true, nil
}
