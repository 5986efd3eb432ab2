// Package hubclient is a Go client of the eco hub's HTTP API
// (hub/openapi.yaml), used by ecoctl: clusters and tokens, the App
// Catalog, Helm releases and their operations, managed add-ons, Argo CD
// registration and cloud accounts. Its errors say what went wrong in
// terms a user can act on: the hub unreachable, its certificate not
// trusted, the token refused (401) or not allowed (403), an object not
// found, a conflict (409), a cluster ECO is not connected to (503).
package hubclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/eco-project/eco/hub"
)

// Config configures a Client.
type Config struct {
	// URL is the hub's base URL, such as https://eco.example.com.
	// Required; https unless AllowHTTP.
	URL string
	// CAPEM is the PEM CA bundle that verifies the hub's certificate.
	// Empty means the system roots.
	CAPEM []byte
	// Token is the hub API token. Required for every call but Ping.
	Token string
	// Timeout bounds each call. Zero means 30 seconds.
	Timeout time.Duration
	// AllowHTTP permits an http URL (tests on loopback only).
	AllowHTTP bool
	// Transport, if set, replaces the transport built from CAPEM.
	Transport http.RoundTripper
}

// Client calls one hub's API.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(cfg.AllowHTTP && u.Scheme == "http")) {
		return nil, fmt.Errorf("hub URL %q: want https://HOST[:PORT][/PATH]", cfg.URL)
	}
	rt := cfg.Transport
	if rt == nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(cfg.CAPEM) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(cfg.CAPEM) {
				return nil, errors.New("the hub CA holds no PEM certificate")
			}
			tc.RootCAs = pool
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		rt = t
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return &Client{base: u, token: cfg.Token, hc: &http.Client{Transport: rt, Timeout: timeout}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// URL is the hub's base URL.
func (c *Client) URL() string { return c.base.String() }

// APIError is an answer other than 2xx.
type APIError struct {
	// Code is the HTTP status.
	Code int
	// Message is the hub's error message.
	Message string
	// Operation is the operation a 409 of the Helm service names: the one
	// holding the release.
	Operation string
}

func (e *APIError) Error() string {
	switch e.Code {
	case http.StatusUnauthorized:
		return fmt.Sprintf("the hub refused the token (401): %s; log in again with a valid token (ecoctl login)", e.Message)
	case http.StatusForbidden:
		return fmt.Sprintf("not allowed (403): %s", e.Message)
	case http.StatusNotFound:
		return fmt.Sprintf("not found (404): %s", e.Message)
	case http.StatusConflict:
		return fmt.Sprintf("conflict (409): %s", e.Message)
	case http.StatusServiceUnavailable:
		return fmt.Sprintf("unavailable (503): %s", e.Message)
	}
	return fmt.Sprintf("the hub answered %d: %s", e.Code, e.Message)
}

// Errors for conditions a caller may test with errors.Is.
var (
	// ErrUnreachable: no connection to the hub.
	ErrUnreachable = errors.New("hub unreachable")
	// ErrTLS: the hub's certificate was not verified.
	ErrTLS = errors.New("hub certificate not trusted")
)

// IsStatus reports whether err is an APIError with code.
func IsStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// do calls the API; in is sent as JSON when not nil; a 2xx answer is
// decoded into out (*[]byte takes it raw).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	// path's segments are escaped (url.PathEscape): kept as they are.
	u := *c.base
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("path %q: %w", path, err)
	}
	u.Path, u.RawPath = c.base.Path+unescaped, c.base.EscapedPath()+path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the hub's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error     string `json:"error"`
			Operation string `json:"operation"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &APIError{Code: resp.StatusCode, Message: msg, Operation: e.Operation}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the hub's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// transportError says in plain words why no answer came.
func (c *Client) transportError(err error) error {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		recordHdr tls.RecordHeaderError
		opErr     *net.OpError
		dnsErr    *net.DNSError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &verify), errors.As(err, &invalid):
		return fmt.Errorf("%w: %s: %v (give the hub's CA with ecoctl login --ca-file)", ErrTLS, c.base.Host, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: %s: %v (the certificate is for other names; use a URL with one of them)", ErrTLS, c.base.Host, err)
	case errors.As(err, &recordHdr):
		return fmt.Errorf("%w: %s does not speak TLS (is it an http:// address?)", ErrTLS, c.base.Host)
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, c.base.Host, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		// The hub closed a kept-alive connection: it is stopping.
		return fmt.Errorf("%w: %s closed the connection: %v", ErrUnreachable, c.base.Host, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s did not answer in time: %v", ErrUnreachable, c.base.Host, err)
	}
	return fmt.Errorf("calling the hub at %s: %w", c.base.Host, err)
}

// Whoami is the answer to GET /api/v1/whoami.
type Whoami struct {
	Name           string    `json:"name"`
	Role           string    `json:"role"`
	Groups         []string  `json:"groups"`
	KubernetesUser string    `json:"kubernetesUser"`
	TokenID        string    `json:"tokenId"`
	ReadOnly       bool      `json:"readOnly"`
	Version        string    `json:"version"`
	Clusters       []string  `json:"clusters,omitempty"`
	ExpiresAt      time.Time `json:"expiresAt,omitzero"`
}

// Whoami returns who the token is.
func (c *Client) Whoami(ctx context.Context) (Whoami, error) {
	var w Whoami
	err := c.do(ctx, http.MethodGet, "/api/v1/whoami", nil, nil, &w)
	return w, err
}

// ListOptions filter ListClusters.
type ListOptions struct {
	// Search matches names; empty: all.
	Search string
}

// ListClusters returns the clusters the token may see.
func (c *Client) ListClusters(ctx context.Context, opts ListOptions) ([]hub.ClusterJSON, error) {
	q := url.Values{}
	if opts.Search != "" {
		q.Set("search", opts.Search)
	}
	var page struct {
		Items []hub.ClusterJSON `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters", q, nil, &page)
	return page.Items, err
}

// GetCluster returns cluster id.
func (c *Client) GetCluster(ctx context.Context, id string) (hub.ClusterJSON, error) {
	var cl hub.ClusterJSON
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(id), nil, nil, &cl)
	return cl, err
}

// FindCluster returns the cluster whose ID, or else whose name, is ref.
func (c *Client) FindCluster(ctx context.Context, ref string) (hub.ClusterJSON, error) {
	cl, err := c.GetCluster(ctx, ref)
	if err == nil || !IsStatus(err, http.StatusNotFound) {
		return cl, err
	}
	all, lerr := c.ListClusters(ctx, ListOptions{Search: ref})
	if lerr != nil {
		return cl, lerr
	}
	var found []hub.ClusterJSON
	for _, x := range all {
		if x.Name == ref {
			found = append(found, x)
		}
	}
	switch len(found) {
	case 0:
		return cl, &APIError{Code: http.StatusNotFound, Message: fmt.Sprintf("no cluster with ID or name %q", ref)}
	case 1:
		return found[0], nil
	}
	return cl, fmt.Errorf("%d clusters are named %q: give the ID", len(found), ref)
}

// ImportRequest is the body of POST /api/v1/clusters.
type ImportRequest struct {
	Name            string `json:"name"`
	Provider        string `json:"provider"`
	Region          string `json:"region,omitempty"`
	CloudRef        string `json:"cloudRef,omitempty"`
	OIDCIssuer      string `json:"oidcIssuer,omitempty"`
	RequireApproval bool   `json:"requireApproval,omitempty"`
}

// ImportCluster creates a cluster record; its agent is installed with
// InstallYAML.
func (c *Client) ImportCluster(ctx context.Context, req ImportRequest) (hub.ClusterJSON, error) {
	var cl hub.ClusterJSON
	err := c.do(ctx, http.MethodPost, "/api/v1/clusters", nil, req, &cl)
	return cl, err
}

// UpdateRequest renames a cluster and/or replaces its labels; nil
// fields stay as they are.
type UpdateRequest struct {
	Name   *string            `json:"name,omitempty"`
	Labels *map[string]string `json:"labels,omitempty"`
}

// UpdateCluster renames cluster id and/or replaces its labels.
func (c *Client) UpdateCluster(ctx context.Context, id string, req UpdateRequest) (hub.ClusterJSON, error) {
	var cl hub.ClusterJSON
	err := c.do(ctx, http.MethodPatch, "/api/v1/clusters/"+url.PathEscape(id), nil, req, &cl)
	return cl, err
}

// DeleteCluster deletes cluster id.
func (c *Client) DeleteCluster(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/clusters/"+url.PathEscape(id), nil, nil, nil)
}

// InstallOptions adjust an install YAML.
type InstallOptions struct {
	// HTTPSProxy is the agent's HTTPS_PROXY for dialling the hub. Empty
	// means none.
	HTTPSProxy string
	// NoProxy is the agent's NO_PROXY. Empty means none.
	NoProxy string
}

// InstallYAML returns cluster id's install YAML.
func (c *Client) InstallYAML(ctx context.Context, id string, opts InstallOptions) ([]byte, error) {
	q := url.Values{}
	if opts.HTTPSProxy != "" {
		q.Set("httpsProxy", opts.HTTPSProxy)
	}
	if opts.NoProxy != "" {
		q.Set("noProxy", opts.NoProxy)
	}
	var b []byte
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(id)+"/install.yaml", q, nil, &b)
	return b, err
}

// Kubeconfig returns a kubeconfig reaching cluster id through the hub
// with a token for that cluster that expires after ttl (0: the hub's
// default).
func (c *Client) Kubeconfig(ctx context.Context, id string, ttl time.Duration) ([]byte, error) {
	q := url.Values{}
	if ttl > 0 {
		q.Set("ttl", ttl.String())
	}
	var b []byte
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(id)+"/kubeconfig", q, nil, &b)
	return b, err
}

// Status returns cluster id's operator status.
func (c *Client) Status(ctx context.Context, id string) (hub.StatusJSON, error) {
	var st hub.StatusJSON
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(id)+"/status", nil, nil, &st)
	return st, err
}

// Identity returns cluster id's identity proof state (admins only).
func (c *Client) Identity(ctx context.Context, id string) (hub.IdentityJSON, error) {
	var ij hub.IdentityJSON
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(id)+"/identity", nil, nil, &ij)
	return ij, err
}

// ListTokens returns the hub's API tokens (admins only).
func (c *Client) ListTokens(ctx context.Context) ([]hub.TokenJSON, error) {
	var out struct {
		Items []hub.TokenJSON `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, &out)
	return out.Items, err
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name         string   `json:"name"`
	Role         string   `json:"role"`
	Groups       []string `json:"groups,omitempty"`
	ExpiresIn    string   `json:"expiresIn,omitempty"`
	NeverExpires bool     `json:"neverExpires,omitempty"`
	Clusters     []string `json:"clusters,omitempty"`
	ReadOnly     bool     `json:"readOnly,omitempty"`
}

// CreateToken creates an API token; the answer's Token is its secret,
// shown only this once.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (hub.TokenJSON, error) {
	var t hub.TokenJSON
	err := c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, req, &t)
	return t, err
}

// RevokeToken revokes token id.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
}
