package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
)

// Groups a hub identity is given in a managed cluster, one for each
// cluster role. The install YAML binds them to cluster-admin, edit and view.
const (
	GroupAdmins  = install.AdminsGroup
	GroupEditors = install.EditorsGroup
	GroupViewers = install.ViewersGroup
)

// KubeGroup returns the Kubernetes group the hub impersonates for role, or
// "" for no role.
func KubeGroup(role store.ClusterRole) string {
	switch role {
	case store.ClusterAdmin:
		return GroupAdmins
	case store.ClusterEdit:
		return GroupEditors
	case store.ClusterView:
		return GroupViewers
	}
	return ""
}

// apiTokenPrefix starts every hub API token.
const apiTokenPrefix = "ecot_"

// Identity is an authenticated hub user.
type Identity struct {
	// Name is the hub user name; the hub impersonates it in clusters with
	// the hub's user prefix (Config.UserPrefix) before it.
	Name string
	Role store.Role
	// Groups are the user's hub groups (from the token), which grants may
	// name; they are not sent to clusters.
	Groups []string
	// TokenID is the API token that authenticated the request.
	TokenID string
	// Token is the bearer token as presented.
	Token string
	// ExpiresAt is when the token expires; zero means never.
	ExpiresAt time.Time
	// Scope narrows the token below the user's grants.
	Scope store.TokenScope
	// grants are the grants to the user and its groups.
	grants []store.Grant
}

// ClusterRole returns the identity's role in cluster id, or "" if it may
// not reach it: an admin is admin everywhere, a member has the greatest of
// its grants for id or for all clusters; a token scoped to other clusters
// has no role, a read-only token at most view.
func (id Identity) ClusterRole(clusterID string) store.ClusterRole {
	if id.Scope.Clusters != nil && !slices.Contains(id.Scope.Clusters, clusterID) {
		return ""
	}
	var role store.ClusterRole
	if id.Role == store.RoleAdmin {
		role = store.ClusterAdmin
	} else {
		for _, g := range id.grants {
			if g.ClusterID == "" || g.ClusterID == clusterID {
				role = role.Max(g.Role)
			}
		}
	}
	if id.Scope.ReadOnly {
		role = role.Min(store.ClusterView)
	}
	return role
}

// VisibleClusters returns the IDs of the clusters the identity may see,
// or nil if it may see every cluster.
func (id Identity) VisibleClusters() []string {
	all := id.Role == store.RoleAdmin || slices.ContainsFunc(id.grants, func(g store.Grant) bool { return g.ClusterID == "" })
	if all {
		return id.Scope.Clusters
	}
	ids := []string{}
	for _, g := range id.grants {
		if !slices.Contains(ids, g.ClusterID) && (id.Scope.Clusters == nil || slices.Contains(id.Scope.Clusters, g.ClusterID)) {
			ids = append(ids, g.ClusterID)
		}
	}
	return ids
}

// Grants returns the grants that apply to the identity.
func (id Identity) Grants() []store.Grant { return slices.Clone(id.grants) }

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
	now := h.cfg.Now()
	e, ok := h.tokens.get(string(hash), now)
	if !ok {
		t, err := h.store.TokenByHash(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) {
			return Identity{}, errUnauthenticated
		}
		if err != nil {
			return Identity{}, fmt.Errorf("looking up token: %w", err)
		}
		var grants []store.Grant
		if t.Role != store.RoleAdmin {
			if grants, err = h.store.GrantsFor(r.Context(), t.Name, t.Groups); err != nil {
				return Identity{}, fmt.Errorf("looking up grants: %w", err)
			}
		}
		e = tokenCacheEntry{token: t, grants: grants}
		h.tokens.put(string(hash), e, now)
		// Recording use is cheap but a write; once a minute is plenty.
		if now.Sub(t.LastUsedAt) > time.Minute {
			if err := h.store.TouchToken(r.Context(), t.ID); err != nil {
				h.logger.Warn("recording token use", "token", t.ID, "err", err)
			}
		}
	}
	t := e.token
	// The cache may hold a token past its expiry; the store never returns
	// one.
	if t.Expired(now) {
		return Identity{}, errUnauthenticated
	}
	return Identity{
		Name: t.Name, Role: t.Role, Groups: t.Groups, TokenID: t.ID, Token: token,
		ExpiresAt: t.ExpiresAt, Scope: t.Scope, grants: e.grants,
	}, nil
}

// Who may call an API route, besides any authenticated user.
type access int

const (
	// anyUser: every authenticated user; handlers of cluster routes check
	// the user's access to the cluster themselves.
	anyUser access = iota
	// clusterAdmin: the admin role, with a token that may be scoped to the
	// route's cluster (the handler checks it).
	clusterAdmin
	// hubAdmin: the admin role, with a token scoped to no cluster: it
	// manages the hub itself (clusters, tokens, grants).
	hubAdmin
)

// requireUser wraps next with authentication and the access check. A
// read-only token may only read (GET, HEAD), whatever its role.
func (h *Hub) requireUser(need access, next http.HandlerFunc) http.HandlerFunc {
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
		if need != anyUser && id.Role != store.RoleAdmin {
			writeError(w, http.StatusForbidden, fmt.Sprintf("hub user %q (role %s) may not do this: the admin role is required", id.Name, id.Role))
			return
		}
		if need == hubAdmin && id.Scope.Clusters != nil {
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %s is scoped to clusters; managing the hub needs a token without a cluster scope", id.TokenID))
			return
		}
		if id.Scope.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusForbidden, fmt.Sprintf("token %s is read-only", id.TokenID))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// NewAPIToken creates a hub API token for user name with role that never
// expires and returns the secret, which is shown once: the store keeps
// only its hash.
func (h *Hub) NewAPIToken(ctx context.Context, name string, role store.Role) (string, store.Token, error) {
	return h.CreateToken(ctx, store.NewToken{Name: name, Role: role})
}

// CreateToken creates the hub API token nt describes (its Hash is
// computed here) and returns the secret, which is shown once.
func (h *Hub) CreateToken(ctx context.Context, nt store.NewToken) (string, store.Token, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", store.Token{}, fmt.Errorf("generating token: %w", err)
	}
	secret := apiTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	nt.Hash = hashSecret(secret)
	t, err := h.store.CreateToken(ctx, nt)
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

// tokenCacheTTL bounds how long a token lookup (with the grants of its
// user) is reused. Revoking a token or changing a grant through this hub
// drops the cache at once; another hub replica sharing the store notices
// within this time. Expiry is checked on every request.
const tokenCacheTTL = 10 * time.Second

// tokenCacheMax bounds the cache; when full it starts over.
const tokenCacheMax = 10000

// tokenCache remembers recent token lookups so that the proxy's hot path
// does not query the store on every request.
type tokenCache struct {
	mu      sync.Mutex // guards entries and lastPrune
	entries map[string]tokenCacheEntry
	// lastPrune is when expired tokens were last deleted from the store.
	lastPrune time.Time
}

// Expired tokens are kept ExpiredTokenRetention (they show in the token
// list, revoked or not) and then deleted, at most every tokenPruneEvery,
// by the request that mints a kubeconfig's token.
const (
	ExpiredTokenRetention = 7 * 24 * time.Hour
	tokenPruneEvery       = time.Hour
)

// prunePending reports whether expired tokens are due to be deleted, and
// if so notes that they are being.
func (c *tokenCache) prunePending(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastPrune) < tokenPruneEvery {
		return false
	}
	c.lastPrune = now
	return true
}

// pruneTokens deletes tokens that expired more than ExpiredTokenRetention
// ago, if due.
func (h *Hub) pruneTokens(ctx context.Context) {
	now := h.cfg.Now()
	if !h.tokens.prunePending(now) {
		return
	}
	n, err := h.store.DeleteExpiredTokens(ctx, now.Add(-ExpiredTokenRetention))
	if err != nil {
		h.logger.Warn("deleting expired tokens", "err", err)
		return
	}
	if n > 0 {
		h.logger.Info("expired tokens deleted", "count", n, "expired_before", now.Add(-ExpiredTokenRetention))
	}
}

// tokenCacheEntry is a token and the grants to its user and groups.
type tokenCacheEntry struct {
	token   store.Token
	grants  []store.Grant
	expires time.Time
}

func (c *tokenCache) get(hash string, now time.Time) (tokenCacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || now.After(e.expires) {
		return tokenCacheEntry{}, false
	}
	return e, true
}

func (c *tokenCache) put(hash string, e tokenCacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= tokenCacheMax {
		c.entries = make(map[string]tokenCacheEntry)
	}
	e.expires = now.Add(tokenCacheTTL)
	c.entries[hash] = e
}

// clear forgets every entry, e.g. after a revocation or a change of
// grants.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = nil
}

// DefaultUserPrefix is cmd/eco-hub's default Config.UserPrefix.
const DefaultUserPrefix = "eco:"

// DefaultKubeconfigTTL is how long the token of a kubeconfig from
// GET /api/v1/clusters/{id}/kubeconfig lasts unless asked otherwise: a
// working day.
const DefaultKubeconfigTTL = 8 * time.Hour

// MaxTokenTTL is the longest expiry a token may be created with, short of
// never expiring (which must be asked for explicitly).
const MaxTokenTTL = 366 * 24 * time.Hour

// DefaultTokenTTL is the expiry of a token created through the API without
// one: 90 days.
const DefaultTokenTTL = 90 * 24 * time.Hour

// validateUserPrefix checks Config.UserPrefix.
func validateUserPrefix(p string) error {
	if strings.HasPrefix(p, "system:") {
		return fmt.Errorf("user prefix %q: the system: prefix is Kubernetes' own", p)
	}
	if len(p) > 64 {
		return fmt.Errorf("user prefix %q is longer than 64 bytes", p)
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f || c > '~' {
			return fmt.Errorf("user prefix %q: only printable ASCII without spaces is allowed", p)
		}
	}
	return nil
}
