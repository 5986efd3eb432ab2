package hubclient

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The Helm service (hub/openapi.yaml, tag apps): releases, and the
// operations that change them, which the hub runs as jobs. The types
// mirror the hub's JSON (package apps).

// Release is one revision of a Helm release, as Helm's release Secret
// records it.
type Release struct {
	Name        string    `json:"name"`
	Namespace   string    `json:"namespace"`
	Revision    int       `json:"revision"`
	Status      string    `json:"status"`
	Chart       string    `json:"chart"`
	ChartName   string    `json:"chartName"`
	Version     string    `json:"version"`
	AppVersion  string    `json:"appVersion,omitempty"`
	Updated     time.Time `json:"updated"`
	Description string    `json:"description,omitempty"`
	Notes       string    `json:"notes,omitempty"`
}

// ReleaseDetails is a revision with its values and manifest.
type ReleaseDetails struct {
	Release
	// Values are those given at install or upgrade (not the chart's
	// defaults).
	Values map[string]any `json:"values"`
	// Manifest is what Helm applied, hooks included.
	Manifest string `json:"manifest"`
}

// ChartSpec says which chart to install: a chart archive (helm package),
// or a chart of the App Catalog (Repo, Name and optionally Version).
type ChartSpec struct {
	// Archive is a packaged chart (.tgz); it is sent base64.
	Archive []byte `json:"archive,omitempty"`
	Repo    string `json:"repo,omitempty"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// InstallRequest is the body of an install (Namespace and Name set) or
// an upgrade (they are in the path, and left empty here).
type InstallRequest struct {
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name,omitempty"`
	Chart     ChartSpec `json:"chart"`
	// Values is YAML overriding the chart's defaults.
	Values string `json:"values,omitempty"`
	// DryRun previews instead of changing anything: use the DryRun
	// methods.
	DryRun bool `json:"dryRun,omitempty"`
	// Wait makes the operation wait for the workloads to be ready.
	Wait bool `json:"wait,omitempty"`
}

// Preview is a dry run's answer: the manifests, the chart's notes and,
// for an upgrade, a unified diff from the deployed revision.
type Preview struct {
	Manifest string `json:"manifest"`
	Notes    string `json:"notes,omitempty"`
	Diff     string `json:"diff,omitempty"`
}

// Operation is a Helm operation the hub runs as a job.
type Operation struct {
	ID        string `json:"id"`
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Release   string `json:"release"`
	Kind      string `json:"kind"`
	User      string `json:"user"`
	// State is running, recovering, succeeded, failed or interrupted.
	State string `json:"state"`
	// Message is the outcome, or Helm's error as it said it.
	Message string `json:"message"`
	// Log is Helm's own log so far (its last 64 KiB).
	Log        string     `json:"log"`
	Revision   int        `json:"revision,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Link       string     `json:"link"`
}

// Operation states.
const (
	OperationRunning     = "running"
	OperationRecovering  = "recovering"
	OperationSucceeded   = "succeeded"
	OperationFailed      = "failed"
	OperationInterrupted = "interrupted"
)

// Finished reports whether the operation is over.
func (o Operation) Finished() bool {
	switch o.State {
	case OperationSucceeded, OperationFailed, OperationInterrupted:
		return true
	}
	return false
}

func releasePath(cluster, ns, name string) string {
	return "/api/v1/clusters/" + url.PathEscape(cluster) + "/releases/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

// ListReleases returns cluster's Helm releases in namespace ns ("": every
// namespace).
func (c *Client) ListReleases(ctx context.Context, cluster, ns string) ([]Release, error) {
	q := url.Values{}
	if ns != "" {
		q.Set("namespace", ns)
	}
	var out struct {
		Items []Release `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(cluster)+"/releases", q, nil, &out)
	return out.Items, err
}

// GetRelease returns revision rev (0: the latest) of release ns/name.
func (c *Client) GetRelease(ctx context.Context, cluster, ns, name string, rev int) (ReleaseDetails, error) {
	q := url.Values{}
	if rev > 0 {
		q.Set("revision", strconv.Itoa(rev))
	}
	var d ReleaseDetails
	err := c.do(ctx, http.MethodGet, releasePath(cluster, ns, name), q, nil, &d)
	return d, err
}

// ReleaseHistory returns every stored revision of release ns/name,
// oldest first.
func (c *Client) ReleaseHistory(ctx context.Context, cluster, ns, name string) ([]Release, error) {
	var out struct {
		Items []Release `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, releasePath(cluster, ns, name)+"/history", nil, nil, &out)
	return out.Items, err
}

// errDryRun refuses a DryRun request given to a method that starts an
// operation.
var errDryRun = errors.New("hubclient: a dry run is InstallDryRun or UpgradeDryRun")

// Install starts installing req.Chart as release req.Namespace/req.Name
// and returns the operation.
func (c *Client) Install(ctx context.Context, cluster string, req InstallRequest) (Operation, error) {
	if req.DryRun {
		return Operation{}, errDryRun
	}
	var op Operation
	err := c.do(ctx, http.MethodPost, "/api/v1/clusters/"+url.PathEscape(cluster)+"/releases", nil, req, &op)
	return op, err
}

// InstallDryRun renders an install without changing anything.
func (c *Client) InstallDryRun(ctx context.Context, cluster string, req InstallRequest) (Preview, error) {
	req.DryRun = true
	var p Preview
	err := c.do(ctx, http.MethodPost, "/api/v1/clusters/"+url.PathEscape(cluster)+"/releases", nil, req, &p)
	return p, err
}

// Upgrade starts upgrading release ns/name to req.Chart with req.Values
// (req.Namespace and req.Name are ignored) and returns the operation.
func (c *Client) Upgrade(ctx context.Context, cluster, ns, name string, req InstallRequest) (Operation, error) {
	if req.DryRun {
		return Operation{}, errDryRun
	}
	req.Namespace, req.Name = "", ""
	var op Operation
	err := c.do(ctx, http.MethodPost, releasePath(cluster, ns, name)+"/upgrade", nil, req, &op)
	return op, err
}

// UpgradeDryRun renders an upgrade and its diff from the deployed
// revision without changing anything.
func (c *Client) UpgradeDryRun(ctx context.Context, cluster, ns, name string, req InstallRequest) (Preview, error) {
	req.Namespace, req.Name, req.DryRun = "", "", true
	var p Preview
	err := c.do(ctx, http.MethodPost, releasePath(cluster, ns, name)+"/upgrade", nil, req, &p)
	return p, err
}

// Rollback starts rolling release ns/name back to revision (0: the
// previous one) and returns the operation.
func (c *Client) Rollback(ctx context.Context, cluster, ns, name string, revision int) (Operation, error) {
	var op Operation
	err := c.do(ctx, http.MethodPost, releasePath(cluster, ns, name)+"/rollback", nil, map[string]int{"revision": revision}, &op)
	return op, err
}

// Uninstall starts uninstalling release ns/name and returns the
// operation.
func (c *Client) Uninstall(ctx context.Context, cluster, ns, name string) (Operation, error) {
	var op Operation
	err := c.do(ctx, http.MethodDelete, releasePath(cluster, ns, name), nil, nil, &op)
	return op, err
}

// GetOperation returns operation id.
func (c *Client) GetOperation(ctx context.Context, id string) (Operation, error) {
	var op Operation
	err := c.do(ctx, http.MethodGet, "/api/v1/operations/"+url.PathEscape(id), nil, nil, &op)
	return op, err
}

// OperationQuery filters ListOperations.
type OperationQuery struct {
	// Namespace and Release, when set, keep one release's operations.
	Namespace, Release string
}

// ListOperations returns cluster's Helm operations, newest first.
func (c *Client) ListOperations(ctx context.Context, cluster string, q OperationQuery) ([]Operation, error) {
	v := url.Values{}
	if q.Namespace != "" {
		v.Set("namespace", q.Namespace)
	}
	if q.Release != "" {
		v.Set("release", q.Release)
	}
	var out struct {
		Items []Operation `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/clusters/"+url.PathEscape(cluster)+"/operations", v, nil, &out)
	return out.Items, err
}

// WaitOptions tune WaitOperation.
type WaitOptions struct {
	// Interval is how often the operation is read. Zero means 500 ms.
	Interval time.Duration
	// CallTimeout bounds each read. Zero means the client's timeout.
	CallTimeout time.Duration
	// OnChange, if set, is called with the operation whenever it changed
	// (its state, message or log), the first time too, and the first time
	// after the hub could not be reached.
	OnChange func(Operation)
	// OnUnreachable, if set, is called with each error of a read that
	// could not reach the hub (ErrUnreachable); the wait goes on, as the
	// operation survives a hub restart. Nil: such an error ends the wait.
	OnUnreachable func(error)
}

// WaitOperation reads operation id until it is finished, and returns it
// finished; or ctx's error with the operation as last read.
func (c *Client) WaitOperation(ctx context.Context, id string, opts WaitOptions) (Operation, error) {
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = c.hc.Timeout
	}
	var last Operation
	seen := false
	for {
		cctx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
		op, err := c.GetOperation(cctx, id)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return last, ctx.Err()
		case err != nil && errors.Is(err, ErrUnreachable) && opts.OnUnreachable != nil:
			opts.OnUnreachable(err)
			seen = false
		case err != nil:
			return last, err
		default:
			if !seen || op.State != last.State || op.Message != last.Message || op.Log != last.Log {
				if opts.OnChange != nil {
					opts.OnChange(op)
				}
			}
			seen, last = true, op
			if op.Finished() {
				return op, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(opts.Interval):
		}
	}
}
