package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The App Catalog (hub/openapi.yaml, tag catalog). The types mirror the
// hub's JSON (package catalog) so that ecoctl does not link Helm;
// hubclient's tests check that they stay the same.

// Repository is a chart repository's status: never its secret.
type Repository struct {
	Name         string     `json:"name"`
	Kind         string     `json:"kind"`
	URL          string     `json:"url"`
	Username     string     `json:"username,omitempty"`
	HasSecret    bool       `json:"hasSecret"`
	CustomCA     bool       `json:"customCA"`
	Charts       int        `json:"charts"`
	Versions     int        `json:"versions"`
	Refreshing   bool       `json:"refreshing"`
	Progress     string     `json:"progress,omitempty"`
	RefreshedAt  *time.Time `json:"refreshedAt,omitempty"`
	RefreshError string     `json:"refreshError,omitempty"`
	// BuiltIn: built into the hub; it cannot be removed.
	BuiltIn bool `json:"builtIn"`
	// Missing are charts a built-in repository lacks, each with why.
	Missing map[string]string `json:"missing,omitempty"`
	// Notice is what the last refresh says without failing: an OCI
	// registry's discovery capped, or repositories it could not read.
	Notice string `json:"notice,omitempty"`
}

// RepositoryRequest is the body of POST /api/v1/catalog/repositories.
// Password or Token is the secret: the hub seals it and never returns it.
type RepositoryRequest struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
	Token    string   `json:"token,omitempty"`
	CAPEM    string   `json:"caPEM,omitempty"`
	Charts   []string `json:"charts,omitempty"`
}

// String never shows the secrets.
func (r RepositoryRequest) String() string {
	return "repository " + r.Name + " " + r.URL + " [secrets redacted]"
}

// ChartHit is a chart found by SearchCharts: its newest version.
type ChartHit struct {
	Repo        string   `json:"repo"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion,omitempty"`
	Description string   `json:"description,omitempty"`
	Icon        string   `json:"icon,omitempty"`
	Keywords    []string `json:"keywords,omitempty"`
	Versions    int      `json:"versions"`
	Deprecated  bool     `json:"deprecated,omitempty"`
}

// ChartVersion is one version of a chart.
type ChartVersion struct {
	Version    string    `json:"version"`
	AppVersion string    `json:"appVersion,omitempty"`
	Created    time.Time `json:"created,omitzero"`
}

// ChartPage is a chart's page: its versions and, for the version shown,
// its README, default values and values schema.
type ChartPage struct {
	Repo         string         `json:"repo"`
	Name         string         `json:"name"`
	Version      string         `json:"version"`
	AppVersion   string         `json:"appVersion,omitempty"`
	Description  string         `json:"description,omitempty"`
	Home         string         `json:"home,omitempty"`
	Icon         string         `json:"icon,omitempty"`
	Versions     []ChartVersion `json:"versions"`
	Readme       string         `json:"readme,omitempty"`
	Values       string         `json:"values"`
	Schema       string         `json:"schema,omitempty"`
	Dependencies []string       `json:"dependencies,omitempty"`
}

// ListRepositories returns the App Catalog's repositories, the built-in
// ones among them.
func (c *Client) ListRepositories(ctx context.Context) ([]Repository, error) {
	var out struct {
		Items []Repository `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/catalog/repositories", nil, nil, &out)
	return out.Items, err
}

// GetRepository returns repository name's status.
func (c *Client) GetRepository(ctx context.Context, name string) (Repository, error) {
	var r Repository
	err := c.do(ctx, http.MethodGet, "/api/v1/catalog/repositories/"+url.PathEscape(name), nil, nil, &r)
	return r, err
}

// AddRepository adds a chart repository (hub admins); its first refresh
// starts in the background.
func (c *Client) AddRepository(ctx context.Context, req RepositoryRequest) (Repository, error) {
	var r Repository
	err := c.do(ctx, http.MethodPost, "/api/v1/catalog/repositories", nil, req, &r)
	return r, err
}

// RemoveRepository removes repository name (hub admins).
func (c *Client) RemoveRepository(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/catalog/repositories/"+url.PathEscape(name), nil, nil, nil)
}

// RefreshRepository starts a refresh of repository name's index (hub
// admins) and returns its status, Refreshing while it runs.
func (c *Client) RefreshRepository(ctx context.Context, name string) (Repository, error) {
	var r Repository
	err := c.do(ctx, http.MethodPost, "/api/v1/catalog/repositories/"+url.PathEscape(name)+"/refresh", nil, nil, &r)
	return r, err
}

// SearchCharts finds charts whose name, description or keywords hold
// every word of query (empty: every chart), best first; at most limit (0:
// the hub's default, 100).
func (c *Client) SearchCharts(ctx context.Context, query string, limit int) ([]ChartHit, error) {
	q := url.Values{}
	if query != "" {
		q.Set("q", query)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Items []ChartHit `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/catalog/charts", q, nil, &out)
	return out.Items, err
}

// Chart returns the page of chart name in repository repo at version
// ("": the newest).
func (c *Client) Chart(ctx context.Context, repo, name, version string) (ChartPage, error) {
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	var p ChartPage
	err := c.do(ctx, http.MethodGet, "/api/v1/catalog/charts/"+url.PathEscape(repo)+"/"+url.PathEscape(name), q, nil, &p)
	return p, err
}
