package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Argo CD registration (hub/openapi.yaml, /api/v1/clusters/{id}/argocd),
// served by hubs that run with an Argo CD instance (eco-hub --argocd-*).
// The types mirror the hub's JSON (package hub/argocd).

// ArgoCDView is a cluster as Argo CD sees it through the hub.
type ArgoCDView struct {
	ClusterID string `json:"clusterId"`
	// Connected is false while ECO has no tunnel to the cluster: Argo
	// CD's features are unavailable then.
	Connected     bool                 `json:"connected"`
	State         string               `json:"state"`
	Reason        string               `json:"reason,omitempty"`
	Registrations []ArgoCDRegistration `json:"registrations"`
	Applications  []ArgoCDApplication  `json:"applications"`
	// Errors are the instances whose Applications could not be read.
	Errors map[string]string `json:"errors,omitempty"`
}

// ArgoCDRegistration is the cluster's Secret in one Argo CD instance.
type ArgoCDRegistration struct {
	Instance       string    `json:"instance"`
	Namespace      string    `json:"namespace"`
	Secret         string    `json:"secret"`
	URL            string    `json:"url,omitempty"`
	Server         string    `json:"server"`
	Registered     bool      `json:"registered"`
	Since          time.Time `json:"since,omitzero"`
	LastReconcile  time.Time `json:"lastReconcile,omitzero"`
	TokenExpiresAt time.Time `json:"tokenExpiresAt,omitzero"`
	// Error is the last reconcile's error; Reason why it is not
	// registered.
	Error  string `json:"error,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ArgoCDApplication is an Argo CD Application whose destination is the
// cluster.
type ArgoCDApplication struct {
	Instance  string `json:"instance"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Project   string `json:"project,omitempty"`
	Sync      string `json:"sync,omitempty"`
	Health    string `json:"health,omitempty"`
	Link      string `json:"link,omitempty"`
}

// ArgoCD returns cluster's Argo CD view. A hub without an Argo CD
// instance does not serve it: 404.
func (c *Client) ArgoCD(ctx context.Context, cluster string) (ArgoCDView, error) {
	var v ArgoCDView
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(cluster)+"/argocd", nil, nil, &v)
	return v, err
}
