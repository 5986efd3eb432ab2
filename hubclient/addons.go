package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Managed add-ons (hub/openapi.yaml, tag addons). The types mirror the
// hub's JSON (package addons).

// Addon is one managed add-on of the hub's curated list.
type Addon struct {
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	// Chart is its chart in the App Catalog at the pinned version.
	Chart ChartRef `json:"chart"`
	// Namespace and Release are where it is installed.
	Namespace string         `json:"namespace"`
	Release   string         `json:"release"`
	Values    map[string]any `json:"values,omitempty"`
}

// ChartRef names a chart of the App Catalog at a version.
type ChartRef struct {
	Repo    string `json:"repo"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// AddonRollout is where the rollout of an add-on's new version stands.
type AddonRollout struct {
	Addon     string   `json:"addon"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	Done      []string `json:"done"`
	Pending   []string `json:"pending"`
	StoppedAt string   `json:"stoppedAt,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Finished  bool     `json:"finished"`
}

// Addons is the answer of GET /api/v1/addons.
type Addons struct {
	Items    []Addon        `json:"items"`
	Rollouts []AddonRollout `json:"rollouts"`
}

// AddonStatus is an add-on in one cluster.
type AddonStatus struct {
	Addon     string `json:"addon"`
	Title     string `json:"title"`
	Cluster   string `json:"cluster"`
	Enabled   bool   `json:"enabled"`
	Desired   string `json:"desiredVersion"`
	Installed string `json:"installedVersion,omitempty"`
	// Health is healthy, unhealthy, not-installed, disabled or unknown;
	// Reason says why when not healthy.
	Health    string    `json:"health"`
	Reason    string    `json:"reason,omitempty"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
}

// ClusterAddons is the answer of GET /api/v1/clusters/{id}/addons.
type ClusterAddons struct {
	Items []AddonStatus `json:"items"`
	// Connected is false while ECO has no tunnel to the cluster.
	Connected bool `json:"connected"`
}

// ListAddons returns the curated add-ons and their rollouts.
func (c *Client) ListAddons(ctx context.Context) (Addons, error) {
	var out Addons
	err := c.do(ctx, http.MethodGet, "/api/v1/addons", nil, nil, &out)
	return out, err
}

// AddonsIn returns each add-on's state in cluster.
func (c *Client) AddonsIn(ctx context.Context, cluster string) (ClusterAddons, error) {
	var out ClusterAddons
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(cluster)+"/addons", nil, nil, &out)
	return out, err
}

// EnableAddon enables or disables addon in cluster, or for every cluster
// when cluster is "" (hub admins). A cluster's own setting overrides the
// one for every cluster.
func (c *Client) EnableAddon(ctx context.Context, addon, cluster string, enabled bool) error {
	path := "/api/v1/addons/" + url.PathEscape(addon)
	if cluster != "" {
		path += "/clusters/" + url.PathEscape(cluster)
	}
	return c.do(ctx, http.MethodPut, path, nil, map[string]bool{"enabled": enabled}, nil)
}

// SetAddonVersion pins addon's chart version and starts rolling it out
// across the clusters where it is enabled, one at a time (hub admins).
func (c *Client) SetAddonVersion(ctx context.Context, addon, version string) (AddonRollout, error) {
	var r AddonRollout
	err := c.do(ctx, http.MethodPut, "/api/v1/addons/"+url.PathEscape(addon), nil, map[string]string{"version": version}, &r)
	return r, err
}

// ResyncAddons starts reconciling every connected cluster's add-ons now
// (hub admins).
func (c *Client) ResyncAddons(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v1/addons/resync", nil, nil, nil)
}
