package hub

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
)

// ImportRequest is what a user gives to import a cluster.
type ImportRequest struct {
	Name string
	// Provider is empty for store.ProviderGeneric.
	Provider store.Provider
	Region   string
	CloudRef string
	// Identity configures how the cluster's agents prove their identity:
	// an OIDC issuer, or first-use pinning, held for approval if
	// RequireApproval.
	Identity store.IdentityConfig
}

// ImportCluster records a new cluster and gives it its agent credential.
// The credential is derived from the ID the store assigns, so the cluster
// is created with the hash of a throwaway secret first and then rotated to
// the derived one. Store errors are wrapped (errors.Is works with
// store.ErrInvalid, store.ErrConflict).
func (h *Hub) ImportCluster(ctx context.Context, req ImportRequest) (store.Cluster, error) {
	if req.Provider == "" {
		req.Provider = store.ProviderGeneric
	}
	if err := h.validateIdentityConfig(req.Identity); err != nil {
		return store.Cluster{}, fmt.Errorf("importing cluster: %w", err)
	}
	placeholder, err := install.NewAgentToken()
	if err != nil {
		return store.Cluster{}, err
	}
	c, err := h.store.CreateCluster(ctx, store.NewCluster{
		Name: req.Name, Provider: req.Provider, Region: req.Region, CloudRef: req.CloudRef,
		AgentCredentialHash: hashSecret(placeholder), Identity: req.Identity,
	})
	if err != nil {
		return store.Cluster{}, fmt.Errorf("importing cluster: %w", err)
	}
	hash := hashSecret(h.agentCredential(c.ID))
	if err := h.store.RotateCredential(ctx, c.ID, hash); err != nil {
		return store.Cluster{}, fmt.Errorf("importing cluster: setting its credential: %w", err)
	}
	c.AgentCredentialHash = hash
	ident, _ := identityFrom(ctx)
	h.logger.Info("cluster imported", "cluster", c.ID, "name", c.Name, "provider", c.Provider, "by", ident.Name)
	h.events.Publish(lifecycle.Event{Kind: lifecycle.Imported, ClusterID: c.ID, At: h.cfg.Now()})
	return c, nil
}

// UpdateCluster renames cluster id and/or replaces its labels (see
// store.ClusterUpdate), and tells the hub's features (Argo CD's Secret
// follows).
func (h *Hub) UpdateCluster(ctx context.Context, id string, u store.ClusterUpdate) (store.Cluster, error) {
	c, err := h.store.UpdateCluster(ctx, id, u)
	if err != nil {
		return store.Cluster{}, fmt.Errorf("updating cluster: %w", err)
	}
	h.events.Publish(lifecycle.Event{Kind: lifecycle.Updated, ClusterID: id, At: h.cfg.Now()})
	return c, nil
}

// DeleteCluster removes cluster id from the hub: its agent credential stops
// matching at once and its tunnel, if any, is closed with a reason the
// agent logs.
func (h *Hub) DeleteCluster(ctx context.Context, id string) error {
	if err := h.status.deleteCluster(ctx, id); err != nil {
		return fmt.Errorf("deleting cluster: %w", err)
	}
	h.tunnels.Disconnect(id, "the cluster was deleted from the hub")
	// Its metric series go with it: labels name imported clusters only.
	h.metrics.proxyDuration.DeletePartialMatch(prometheus.Labels{"cluster": id})
	h.events.Publish(lifecycle.Event{Kind: lifecycle.Deleted, ClusterID: id, At: h.cfg.Now()})
	return nil
}
