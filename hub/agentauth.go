package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// authenticateAgent is the tunnel's Authenticate: the bearer credential
// must be the one derived for the cluster the request names.
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
	return c.ID, nil
}

// admitAgent is the tunnel's Admit: it pins the cluster's fingerprint on
// first connect and refuses an agent running in a different cluster.
func (h *Hub) admitAgent(ctx context.Context, clusterID string, hello tunnel.Hello) error {
	c, err := h.store.GetCluster(ctx, clusterID)
	if err != nil {
		return fmt.Errorf("loading cluster %s: %w", clusterID, err)
	}
	switch {
	case hello.Fingerprint == "" && c.Fingerprint != "":
		return h.rejectAgent(ctx, c, "the agent could not read its cluster's fingerprint (kube-system UID), so the hub cannot tell it runs in the imported cluster")
	case hello.Fingerprint == "":
		// Not pinned and unknown: admit, so the agent can report why its
		// API server is unreachable; pinning happens on a later connect.
		return nil
	case c.Fingerprint == "":
		err := h.store.PinFingerprint(ctx, clusterID, hello.Fingerprint)
		if errors.Is(err, store.ErrConflict) {
			c, _ = h.store.GetCluster(ctx, clusterID)
			return h.rejectAgent(ctx, c, fmt.Sprintf("this install YAML belongs to cluster %s (kube-system UID %s) and was applied to a different cluster (kube-system UID %s)", c.Name, c.Fingerprint, hello.Fingerprint))
		}
		if err != nil {
			return fmt.Errorf("pinning fingerprint: %w", err)
		}
		h.logger.Info("cluster fingerprint pinned", "cluster", clusterID, "fingerprint", hello.Fingerprint)
		return nil
	case c.Fingerprint != hello.Fingerprint:
		return h.rejectAgent(ctx, c, fmt.Sprintf("this install YAML belongs to cluster %s (kube-system UID %s) and was applied to a different cluster (kube-system UID %s)", c.Name, c.Fingerprint, hello.Fingerprint))
	}
	return nil
}

// rejectAgent refuses an agent and, unless the cluster's own agent is
// connected, records the reason as the cluster's Failing status so the
// operator sees it.
func (h *Hub) rejectAgent(ctx context.Context, c store.Cluster, reason string) error {
	h.metrics.agentAuthFailures.WithLabelValues("fingerprint").Inc()
	h.logger.Warn("agent rejected", "cluster", c.ID, "reason", reason)
	if !h.connected(c.ID) {
		h.status.record(c.ID, store.StatusUpdate{State: store.StateFailing, Reason: "agent rejected: " + reason})
	}
	return &tunnel.RejectError{Reason: reason}
}

// connected reports whether clusterID has a live tunnel.
func (h *Hub) connected(clusterID string) bool { return h.tunnels.Connected(clusterID) }
