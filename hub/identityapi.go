package hub

import (
	"errors"
	"net/http"
	"time"

	"github.com/eco-project/eco/hub/saproof"
	"github.com/eco-project/eco/store"
)

// IdentityJSON is a cluster's identity as its administrators see it
// (GET /api/v1/clusters/{id}/identity). Nothing of it is shown to viewers
// or agents.
type IdentityJSON struct {
	// OIDCIssuer and RequireApproval are the configuration.
	OIDCIssuer      string `json:"oidcIssuer,omitempty"`
	RequireApproval bool   `json:"requireApproval"`
	// State is "Issuer" when OIDCIssuer is set, else Unpinned,
	// AwaitingApproval or Pinned.
	State string `json:"state"`
	// PinnedIssuer and KeyIDs describe the pinned keys.
	PinnedIssuer  string     `json:"pinnedIssuer,omitempty"`
	KeyIDs        []string   `json:"keyIds,omitempty"`
	PinnedAt      *time.Time `json:"pinnedAt,omitempty"`
	KeysUpdatedAt *time.Time `json:"keysUpdatedAt,omitempty"`
	// Fingerprint is the kube-system namespace UID the first proven agent
	// reported: information, not a trust anchor.
	Fingerprint string `json:"fingerprint,omitempty"`
	// LastFailure is the last failed proof since the hub started.
	LastFailure *IdentityFailureJSON `json:"lastFailure,omitempty"`
}

// IdentityFailureJSON says why an agent's proof failed.
type IdentityFailureJSON struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
	// WhileConnected is set when the cluster's own agent was connected:
	// an attempted takeover, or a second agent.
	WhileConnected bool `json:"whileConnected"`
}

// identityRequest is the body of PATCH /api/v1/clusters/{id}/identity.
type identityRequest struct {
	OIDCIssuer      *string `json:"oidcIssuer"`
	RequireApproval *bool   `json:"requireApproval"`
}

// identityStateName is the identity state the API shows.
func identityStateName(cfg store.IdentityConfig, st store.IdentityState) string {
	switch {
	case cfg.OIDCIssuer != "":
		return "Issuer"
	case st == store.IdentityUnpinned:
		return "Unpinned"
	}
	return string(st)
}

func (h *Hub) identityJSON(r *http.Request, c store.Cluster) (IdentityJSON, error) {
	ident, err := h.store.ClusterIdentity(r.Context(), c.ID)
	if err != nil {
		return IdentityJSON{}, err
	}
	out := IdentityJSON{
		OIDCIssuer: ident.OIDCIssuer, RequireApproval: ident.RequireApproval,
		State: identityStateName(ident.IdentityConfig, ident.State), PinnedIssuer: ident.Issuer,
		Fingerprint: c.Fingerprint,
	}
	if ident.State != store.IdentityUnpinned {
		if keys, err := saproof.ParseJWKS(ident.JWKS); err == nil {
			out.KeyIDs = saproof.KeyIDs(keys)
		}
		p, k := ident.PinnedAt, ident.KeysUpdatedAt
		out.PinnedAt, out.KeysUpdatedAt = &p, &k
	}
	h.ids.mu.Lock()
	f, ok := h.ids.failures[c.ID]
	h.ids.mu.Unlock()
	if ok {
		out.LastFailure = &IdentityFailureJSON{At: f.At, Reason: string(f.Reason), Detail: f.Detail, WhileConnected: f.WhileConnected}
	}
	return out, nil
}

func (h *Hub) getIdentity(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	out, err := h.identityJSON(r, c)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// validateIdentityConfig checks an administrator's identity configuration.
func (h *Hub) validateIdentityConfig(cfg store.IdentityConfig) error {
	if cfg.OIDCIssuer == "" {
		return nil
	}
	if err := saproof.ValidateIssuer(cfg.OIDCIssuer, false); err != nil {
		return errors.Join(store.ErrInvalid, err)
	}
	return nil
}

func (h *Hub) patchIdentity(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	var req identityRequest
	if !readJSON(w, r, &req) {
		return
	}
	cfg := c.Identity
	if req.OIDCIssuer != nil {
		cfg.OIDCIssuer = *req.OIDCIssuer
	}
	if req.RequireApproval != nil {
		cfg.RequireApproval = *req.RequireApproval
	}
	if err := h.validateIdentityConfig(cfg); err != nil {
		writeStoreError(w, err)
		return
	}
	if err := h.store.SetIdentityConfig(r.Context(), c.ID, cfg); err != nil {
		writeStoreError(w, err)
		return
	}
	if c.Identity.OIDCIssuer != "" && c.Identity.OIDCIssuer != cfg.OIDCIssuer {
		h.discovery.Forget(c.Identity.OIDCIssuer)
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("cluster identity configured", "cluster", c.ID, "oidcIssuer", cfg.OIDCIssuer, "requireApproval", cfg.RequireApproval, "by", ident.Name)
	c.Identity = cfg
	h.writeIdentity(w, r, c)
}

// approveIdentity confirms a first-use pin awaiting approval.
func (h *Hub) approveIdentity(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	if err := h.store.ApproveIdentity(r.Context(), c.ID); err != nil {
		writeStoreError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("cluster identity approved", "cluster", c.ID, "by", ident.Name)
	if !h.connected(c.ID) {
		h.status.record(c.ID, store.StatusUpdate{State: store.StateFailing, Reason: reasonApproved})
	}
	h.writeIdentity(w, r, c)
}

// resetIdentity forgets the pinned keys and ends the cluster's tunnel: the
// next agent to connect pins anew (held for approval if required).
func (h *Hub) resetIdentity(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	if err := h.store.ResetIdentity(r.Context(), c.ID); err != nil {
		writeStoreError(w, err)
		return
	}
	h.tunnels.Disconnect(c.ID, "the cluster's identity was reset on the hub")
	ident, _ := identityFrom(r.Context())
	h.logger.Info("cluster identity reset", "cluster", c.ID, "by", ident.Name)
	h.writeIdentity(w, r, c)
}

func (h *Hub) writeIdentity(w http.ResponseWriter, r *http.Request, c store.Cluster) {
	c, err := h.store.GetCluster(r.Context(), c.ID)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	out, err := h.identityJSON(r, c)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
