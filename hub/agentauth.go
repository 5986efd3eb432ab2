package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/eco-project/eco/hub/saproof"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// authenticateAgent is the tunnel's Authenticate: the bearer credential
// must be the one derived for the cluster the request names, of its
// current generation or, within the grace period, the previous one.
func (h *Hub) authenticateAgent(r *http.Request) (string, error) {
	credential, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || credential == "" || len(credential) > 256 {
		h.metrics.agentAuthFailures.WithLabelValues("missing").Inc()
		return "", errors.New("agent credential missing")
	}
	claimed := r.Header.Get(tunnel.HeaderClusterID)
	c, err := h.store.ClusterByCredentialHash(r.Context(), hashSecret(credential))
	if errors.Is(err, store.ErrNotFound) {
		h.metrics.agentAuthFailures.WithLabelValues("unknown").Inc()
		h.logger.Warn("agent refused: unknown or revoked credential", "claimed_cluster", claimed, "remote", r.RemoteAddr)
		return "", errors.New("agent credential unknown or revoked: the cluster may have been deleted from the hub")
	}
	if err != nil {
		return "", fmt.Errorf("looking up agent credential: %w", err)
	}
	if claimed != "" && claimed != c.ID {
		h.metrics.agentAuthFailures.WithLabelValues("wrong-cluster").Inc()
		h.logger.Warn("agent refused: credential of another cluster", "claimed_cluster", claimed, "credential_cluster", c.ID)
		return "", fmt.Errorf("%w: this credential does not belong to cluster %q", tunnel.ErrForbidden, claimed)
	}
	if err := h.checkGeneration(r.Context(), c, hashSecret(credential)); err != nil {
		return "", err
	}
	return c.ID, nil
}

// admitAgent is the tunnel's Admit: the agent must prove, with a
// ServiceAccount token its cluster signed for the hub, that it runs in the
// imported cluster (docs/decisions/0009-cluster-identity-proof.md):
//
//   - with an OIDC issuer configured for the cluster, against the keys
//     that issuer publishes;
//   - with keys pinned, against them (and, when the token names a key
//     they lack while the cluster's proven agent is connected, against
//     the keys that agent fetches now: the cluster rotated its keys);
//   - with nothing pinned, on probation: proveAgent fetches the keys
//     through the new session itself and pins them (trust on first use),
//     unless the cluster's agent is connected.
//
// A refusal tells the agent only "agent identity not proven"; what failed
// goes to the logs and to the admin-only identity API.
func (h *Hub) admitAgent(ctx context.Context, clusterID string, hello tunnel.Hello) error {
	c, err := h.store.GetCluster(ctx, clusterID)
	if err != nil {
		return fmt.Errorf("loading cluster %s: %w", clusterID, err)
	}
	tok, err := saproof.Parse(hello.IdentityToken)
	if err != nil {
		return h.refuseIdentity(ctx, c, err)
	}
	want := h.expectedClaims()
	if issuer := c.Identity.OIDCIssuer; issuer != "" {
		keys, err := h.discovery.Keys(ctx, issuer, tok.KeyID)
		if err != nil {
			return h.refuseIdentity(ctx, c, err)
		}
		want.Issuer = issuer
		if _, err := tok.Verify(keys, want, h.cfg.Now()); err != nil {
			return h.refuseIdentity(ctx, c, err)
		}
		h.identityProven(ctx, c, hello, "issuer")
		return nil
	}
	ident, err := h.store.ClusterIdentity(ctx, clusterID)
	if err != nil {
		return fmt.Errorf("loading identity of cluster %s: %w", clusterID, err)
	}
	switch ident.State {
	case store.IdentityUnpinned:
		if h.connected(clusterID) {
			// Only after a reset with the agent still connected.
			return h.refuseIdentity(ctx, c, &saproof.Error{Reason: saproof.ReasonKeys,
				Detail: "nothing is pinned and the cluster's agent is connected: a first-use pin is only taken without a live session"})
		}
		return fmt.Errorf("cluster %s has no pinned keys: %w", clusterID, tunnel.ErrProbation)
	case store.IdentityAwaitingApproval:
		return h.awaitingApproval(ctx, c)
	}
	want.Issuer = ident.Issuer
	keys, err := saproof.ParseJWKS(ident.JWKS)
	if err != nil {
		return fmt.Errorf("cluster %s: pinned keys: %w", clusterID, err)
	}
	_, err = tok.Verify(keys, want, h.cfg.Now())
	if r := saproof.ReasonOf(err); (r == saproof.ReasonUnknownKey || r == saproof.ReasonSignature) && h.connected(clusterID) {
		// Perhaps the cluster rotated its keys: ask its proven agent.
		if fresh, ferr := h.refreshPinnedKeys(ctx, clusterID); ferr == nil && fresh != nil {
			_, err = tok.Verify(fresh, want, h.cfg.Now())
		} else if ferr != nil {
			h.logger.Warn("cannot refresh the cluster's keys through its agent", "cluster", clusterID, "err", ferr)
		}
	}
	if err != nil {
		return h.refuseIdentity(ctx, c, err)
	}
	h.identityProven(ctx, c, hello, "pinned")
	return nil
}

// proveAgent is the tunnel's Prove for an agent on probation (nothing
// pinned): it fetches the keys the agent's cluster serves through the new
// session, verifies the token with them and pins them, held for approval
// if the cluster requires it.
func (h *Hub) proveAgent(ctx context.Context, clusterID string, hello tunnel.Hello, dial func(context.Context) (net.Conn, error)) error {
	c, err := h.store.GetCluster(ctx, clusterID)
	if err != nil {
		return fmt.Errorf("loading cluster %s: %w", clusterID, err)
	}
	if c.Identity.OIDCIssuer != "" || c.IdentityState != store.IdentityUnpinned {
		// Configured or pinned meanwhile: the next connect is checked
		// the usual way.
		return h.refuseIdentity(ctx, c, &saproof.Error{Reason: saproof.ReasonKeys, Detail: "the cluster's identity configuration changed during the first connect"})
	}
	tok, err := saproof.Parse(hello.IdentityToken)
	if err != nil {
		return h.refuseIdentity(ctx, c, err)
	}
	body, err := fetchClusterJWKS(ctx, dial)
	if err != nil {
		return h.refuseIdentity(ctx, c, &saproof.Error{Reason: saproof.ReasonKeys, Detail: "fetching the cluster's keys through the new tunnel: " + err.Error()})
	}
	keys, err := saproof.ParseJWKS(body)
	if err != nil {
		return h.refuseIdentity(ctx, c, err)
	}
	want := h.expectedClaims()
	want.Issuer = tok.UnverifiedIssuer
	if err := store.ValidatePin(want.Issuer, body); err != nil {
		return h.refuseIdentity(ctx, c, &saproof.Error{Reason: saproof.ReasonIssuer, Detail: err.Error()})
	}
	if _, err := tok.Verify(keys, want, h.cfg.Now()); err != nil {
		return h.refuseIdentity(ctx, c, err)
	}
	awaiting := c.Identity.RequireApproval
	if err := h.store.PinIdentity(ctx, clusterID, want.Issuer, body, awaiting); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return h.refuseIdentity(ctx, c, &saproof.Error{Reason: saproof.ReasonKeys, Detail: "another agent pinned the cluster's keys first"})
		}
		return fmt.Errorf("pinning the keys of cluster %s: %w", clusterID, err)
	}
	if awaiting {
		h.idMetrics.pins.WithLabelValues("awaiting-approval").Inc()
		h.logger.Warn("cluster keys pinned on first use, awaiting an administrator's approval",
			"cluster", clusterID, "issuer", want.Issuer, "kids", saproof.KeyIDs(keys), "fingerprint", hello.Fingerprint)
		return h.awaitingApproval(ctx, c)
	}
	h.idMetrics.pins.WithLabelValues("pinned").Inc()
	h.logger.Info("cluster keys pinned on first use", "cluster", clusterID, "issuer", want.Issuer, "kids", saproof.KeyIDs(keys))
	h.identityProven(ctx, c, hello, "first-use")
	return nil
}

// connected reports whether clusterID has a live tunnel.
func (h *Hub) connected(clusterID string) bool { return h.tunnels.Connected(clusterID) }
