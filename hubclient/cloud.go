package hubclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/hub"
)

// Cloud accounts, discovery, import and one-click install
// (hub/openapi.yaml, docs/cloud.md): hub admins with an unscoped token.
// Credentials go to the hub and never come back.

// CloudAccounts is the answer of GET /api/v1/cloud/accounts.
type CloudAccounts struct {
	// Providers are those the hub enables (eco-hub --cloud-providers).
	Providers []string            `json:"providers"`
	Accounts  []cloud.AccountInfo `json:"accounts"`
}

// CloudAccountRequest is the body of POST /api/v1/cloud/accounts.
type CloudAccountRequest struct {
	Name     string   `json:"name"`
	Provider string   `json:"provider"`
	Scopes   []string `json:"scopes"`
	// Credentials are write-only; their String never shows them.
	Credentials cloud.Credentials `json:"credentials"`
}

// String never shows the credentials.
func (r CloudAccountRequest) String() string {
	return fmt.Sprintf("cloud account %s (%s, %v) [credentials redacted]", r.Name, r.Provider, r.Scopes)
}

// ListCloudAccounts returns the cloud accounts, never their credentials.
func (c *Client) ListCloudAccounts(ctx context.Context) (CloudAccounts, error) {
	var out CloudAccounts
	err := c.do(ctx, http.MethodGet, "/api/v1/cloud/accounts", nil, nil, &out)
	return out, err
}

// FindCloudAccount returns the account whose ID, or else whose name, is
// ref.
func (c *Client) FindCloudAccount(ctx context.Context, ref string) (cloud.AccountInfo, error) {
	all, err := c.ListCloudAccounts(ctx)
	if err != nil {
		return cloud.AccountInfo{}, err
	}
	for _, a := range all.Accounts {
		if a.ID == ref {
			return a, nil
		}
	}
	for _, a := range all.Accounts {
		if a.Name == ref {
			return a, nil
		}
	}
	return cloud.AccountInfo{}, &APIError{Code: http.StatusNotFound, Message: fmt.Sprintf("no cloud account with ID or name %q", ref)}
}

// AddCloudAccount adds a cloud account: the hub checks its credentials
// with one read-only call to the cloud, then stores them encrypted.
func (c *Client) AddCloudAccount(ctx context.Context, req CloudAccountRequest) (cloud.AccountInfo, error) {
	var a cloud.AccountInfo
	err := c.do(ctx, http.MethodPost, "/api/v1/cloud/accounts", nil, req, &a)
	return a, err
}

// RemoveCloudAccount deletes account id; refused (409) while clusters
// imported from it are on the hub.
func (c *Client) RemoveCloudAccount(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/cloud/accounts/"+url.PathEscape(id), nil, nil, nil)
}

// DiscoverClusters lists the clusters account id sees in scopes (regions,
// or its subscription or project; empty: all of the account's).
func (c *Client) DiscoverClusters(ctx context.Context, id string, scopes []string) ([]cloud.Discovered, error) {
	q := url.Values{}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	var out struct {
		Clusters []cloud.Discovered `json:"clusters"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/cloud/accounts/"+url.PathEscape(id)+"/clusters", q, nil, &out)
	return out.Clusters, err
}

// ImportCloudClusters imports discovered clusters of account id; each
// item succeeds or fails on its own.
func (c *Client) ImportCloudClusters(ctx context.Context, id string, items []cloud.ImportItem) ([]cloud.ImportResult, error) {
	var out struct {
		Results []cloud.ImportResult `json:"results"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/cloud/accounts/"+url.PathEscape(id)+"/import", nil, map[string]any{"clusters": items}, &out)
	return out.Results, err
}

// CloudInstall has the hub install ECO into cluster id with credentials
// from the cloud account it was imported from (one-click install).
func (c *Client) CloudInstall(ctx context.Context, id string) (hub.CloudInstall, error) {
	var out hub.CloudInstall
	err := c.do(ctx, http.MethodPost, "/api/v1/clusters/"+url.PathEscape(id)+"/cloud-install", nil, nil, &out)
	return out, err
}
