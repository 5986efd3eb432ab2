package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/eco-project/eco/store"
)

// Groups a hub identity is given in a managed cluster. The install YAML
// binds them to cluster-admin and view.
const (
	GroupAdmins  = "eco:admins"
	GroupViewers = "eco:viewers"
)

// apiTokenPrefix starts every hub API token.
const apiTokenPrefix = "ecot_"

// Identity is an authenticated hub user.
type Identity struct {
	// Name is the user name, also the Kubernetes user impersonated.
	Name string
	Role store.Role
	// TokenID is the API token that authenticated the request.
	TokenID string
	// Token is the bearer token as presented; a kubeconfig for the caller
	// embeds it.
	Token string
}

// Groups returns the Kubernetes groups the identity acts with.
func (id Identity) Groups() []string {
	if id.Role == store.RoleAdmin {
		return []string{GroupAdmins}
	}
	return []string{GroupViewers}
}

type identityKey struct{}

func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

var errUnauthenticated = errors.New("a valid hub API token is required (Authorization: Bearer ecot_...)")

// authenticate resolves the request's bearer token.
func (h *Hub) authenticate(r *http.Request) (Identity, error) {
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		return Identity{}, errUnauthenticated
	}
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, apiTokenPrefix) || len(token) > 256 {
		return Identity{}, errUnauthenticated
	}
	hash := hashSecret(token)
	if t, ok := h.tokens.get(string(hash), h.cfg.Now()); ok {
		return Identity{Name: t.Name, Role: t.Role, TokenID: t.ID, Token: token}, nil
	}
	t, err := h.store.TokenByHash(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, errUnauthenticated
	}
	if err != nil {
		return Identity{}, fmt.Errorf("looking up token: %w", err)
	}
	h.tokens.put(string(hash), t, h.cfg.Now())
	// Recording use is cheap but a write; once a minute is plenty.
	if h.cfg.Now().Sub(t.LastUsedAt) > time.Minute {
		if err := h.store.TouchToken(r.Context(), t.ID); err != nil {
			h.logger.Warn("recording token use", "token", t.ID, "err", err)
		}
	}
	return Identity{Name: t.Name, Role: t.Role, TokenID: t.ID, Token: token}, nil
}

// requireUser wraps next with authentication; minRole admin also
// requires the admin role.
func (h *Hub) requireUser(minRole store.Role, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := h.authenticate(r)
		if err != nil {
			if errors.Is(err, errUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="eco"`)
				writeError(w, http.StatusUnauthorized, err.Error())
				return
			}
			h.logger.Error("authenticating", "err", err)
			writeError(w, http.StatusInternalServerError, "authentication is unavailable")
			return
		}
		if who, ok := r.Context().Value(auditIdentityKey{}).(*Identity); ok {
			*who = id // for the audit event countAPI records
		}
		if minRole == store.RoleAdmin && id.Role != store.RoleAdmin {
			writeError(w, http.StatusForbidden, fmt.Sprintf("hub user %q (role %s) may not do this: the admin role is required", id.Name, id.Role))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// NewAPIToken creates a hub API token for user name with role and returns
// the secret, which is shown once: the store keeps only its hash.
func (h *Hub) NewAPIToken(ctx context.Context, name string, role store.Role) (string, store.Token, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", store.Token{}, fmt.Errorf("generating token: %w", err)
	}
	secret := apiTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	t, err := h.store.CreateToken(ctx, store.NewToken{Name: name, Role: role, Hash: hashSecret(secret)})
	if err != nil {
		return "", store.Token{}, fmt.Errorf("creating token: %w", err)
	}
	return secret, t, nil
}

// Bootstrap creates the first admin token when the store has no valid
// token, and returns its secret; it returns "" when tokens exist already.
// cmd/eco-hub prints the secret once at first start.
func (h *Hub) Bootstrap(ctx context.Context) (string, error) {
	n, err := h.store.CountTokens(ctx)
	if err != nil {
		return "", fmt.Errorf("counting tokens: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	secret, _, err := h.NewAPIToken(ctx, "admin", store.RoleAdmin)
	return secret, err
}

// tokenCacheTTL bounds how long a token lookup is reused. Revoking a
// token through this hub drops the cache at once; another hub replica
// sharing the store notices within this time.
const tokenCacheTTL = 10 * time.Second

// tokenCacheMax bounds the cache; when full it starts over.
const tokenCacheMax = 10000

// tokenCache remembers recent token lookups so that the proxy's hot path
// does not query the store on every request.
type tokenCache struct {
	mu      sync.Mutex // guards entries
	entries map[string]tokenCacheEntry
}

type tokenCacheEntry struct {
	token   store.Token
	expires time.Time
}

func (c *tokenCache) get(hash string, now time.Time) (store.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || now.After(e.expires) {
		return store.Token{}, false
	}
	return e.token, true
}

func (c *tokenCache) put(hash string, t store.Token, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= tokenCacheMax {
		c.entries = make(map[string]tokenCacheEntry)
	}
	c.entries[hash] = tokenCacheEntry{token: t, expires: now.Add(tokenCacheTTL)}
}

// clear forgets every entry, e.g. after a revocation.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = nil
}
