package apps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	ri "helm.sh/helm/v4/pkg/release"
	"helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/client-go/rest"
)

// DefaultTimeout bounds one Helm operation (hooks included).
const DefaultTimeout = 5 * time.Minute

// helmClient runs Helm's own actions against one cluster, through cfg
// (a client-go config from the hub's access chain), with releases stored
// in Secrets of the release namespace as the helm CLI stores them.
type helmClient struct {
	rest   *rest.Config
	logger *slog.Logger
	// ctx ends Helm's waits (hooks, readiness) when the operation ends;
	// the calls themselves end through rest's transport (boundTransport).
	ctx context.Context
}

// waitOptions make Helm's waits end with c.ctx rather than only at the
// action's timeout.
func (c helmClient) waitOptions() []kube.WaitOption {
	if c.ctx == nil {
		return nil
	}
	return []kube.WaitOption{kube.WithWaitContext(c.ctx)}
}

// configuration returns Helm's action configuration for namespace ns
// ("" for every namespace, for list).
func (c helmClient) configuration(ns string) (*action.Configuration, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(c.logger.Handler()))
	if err := cfg.Init(newRESTGetter(c.rest, ns), ns, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration: %w", err)
	}
	return cfg, nil
}

// Release is a Helm release as the API shows it.
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

func releaseJSON(r *release.Release) Release {
	out := Release{Name: r.Name, Namespace: r.Namespace, Revision: r.Version}
	if r.Info != nil {
		out.Status = string(r.Info.Status)
		out.Updated = r.Info.LastDeployed.UTC()
		out.Description = r.Info.Description
		out.Notes = r.Info.Notes
	}
	if r.Chart != nil && r.Chart.Metadata != nil {
		out.ChartName = r.Chart.Metadata.Name
		out.Version = r.Chart.Metadata.Version
		out.AppVersion = r.Chart.Metadata.AppVersion
		out.Chart = out.ChartName + "-" + out.Version
	}
	return out
}

func v1(r ri.Releaser) (*release.Release, error) {
	switch r := r.(type) {
	case *release.Release:
		return r, nil
	case release.Release:
		return &r, nil
	}
	return nil, fmt.Errorf("unsupported release type %T", r)
}

func v1s(rs []ri.Releaser) ([]*release.Release, error) {
	out := make([]*release.Release, 0, len(rs))
	for _, r := range rs {
		rel, err := v1(r)
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// installOptions are what install and upgrade take.
type installOptions struct {
	Namespace, Release string
	Chart              *chart.Chart
	Values             map[string]any
	DryRun             bool
	// ClientDryRun renders without asking the API server to check.
	ClientDryRun bool
	Timeout      time.Duration
	// Wait makes Helm wait for the release's workloads to be ready.
	Wait bool
}

func waitStrategy(wait bool) kube.WaitStrategy {
	if wait {
		return kube.StatusWatcherStrategy
	}
	return kube.HookOnlyStrategy
}

// helmContext is the context given to Helm's RunWithContext: ctx's values,
// never its end. When that context ends, Helm v4.3 returns at once while
// the goroutine doing the work goes on writing the release, which the
// returning goroutine marks failed and stores at the same time: a data
// race (the race detector saw it with an install cut off in a hook). The
// operation's end reaches Helm instead through its waits (waitOptions) and
// its calls (Service.client's boundTransport), so the work fails on its own
// goroutine and RunWithContext returns after it.
func helmContext(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func (c helmClient) install(ctx context.Context, o installOptions) (*release.Release, error) {
	cfg, err := c.configuration(o.Namespace)
	if err != nil {
		return nil, err
	}
	in := action.NewInstall(cfg)
	in.Namespace, in.ReleaseName = o.Namespace, o.Release
	in.CreateNamespace = true
	in.Timeout = cmpDuration(o.Timeout)
	in.WaitStrategy = waitStrategy(o.Wait)
	in.WaitOptions = c.waitOptions()
	in.ServerSideApply = true
	if o.DryRun {
		in.DryRunStrategy = action.DryRunServer
		if o.ClientDryRun {
			in.DryRunStrategy = action.DryRunClient
		}
	}
	r, err := in.RunWithContext(helmContext(ctx), o.Chart, o.Values)
	if err != nil {
		return nil, err
	}
	return v1(r)
}

func (c helmClient) upgrade(ctx context.Context, o installOptions) (*release.Release, error) {
	cfg, err := c.configuration(o.Namespace)
	if err != nil {
		return nil, err
	}
	up := action.NewUpgrade(cfg)
	up.Namespace = o.Namespace
	up.Timeout = cmpDuration(o.Timeout)
	up.WaitStrategy = waitStrategy(o.Wait)
	up.WaitOptions = c.waitOptions()
	up.MaxHistory = 10
	if o.DryRun {
		up.DryRunStrategy = action.DryRunServer
	}
	r, err := up.RunWithContext(helmContext(ctx), o.Release, o.Chart, o.Values)
	if err != nil {
		return nil, err
	}
	return v1(r)
}

func (c helmClient) rollback(ns, name string, revision int, timeout time.Duration) error {
	cfg, err := c.configuration(ns)
	if err != nil {
		return err
	}
	rb := action.NewRollback(cfg)
	rb.Version = revision
	rb.Timeout = cmpDuration(timeout)
	rb.WaitStrategy = kube.HookOnlyStrategy
	rb.WaitOptions = c.waitOptions()
	rb.MaxHistory = 10
	return rb.Run(name)
}

func (c helmClient) uninstall(ns, name string, timeout time.Duration) (*release.Release, error) {
	cfg, err := c.configuration(ns)
	if err != nil {
		return nil, err
	}
	un := action.NewUninstall(cfg)
	un.Timeout = cmpDuration(timeout)
	un.WaitStrategy = kube.HookOnlyStrategy
	un.WaitOptions = c.waitOptions()
	res, err := un.Run(name)
	if err != nil {
		return nil, err
	}
	if res == nil || res.Release == nil {
		return nil, nil
	}
	return v1(res.Release)
}

// list returns the releases in namespace ns ("" for all), every state,
// newest revision of each.
func (c helmClient) list(ns string) ([]Release, error) {
	cfg, err := c.configuration(ns)
	if err != nil {
		return nil, err
	}
	l := action.NewList(cfg)
	l.AllNamespaces = ns == ""
	l.All = true
	l.StateMask = action.ListAll
	l.SetStateMask()
	rs, err := l.Run()
	if err != nil {
		return nil, err
	}
	rels, err := v1s(rs)
	if err != nil {
		return nil, err
	}
	out := make([]Release, 0, len(rels))
	for _, r := range rels {
		out = append(out, releaseJSON(r))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// history returns every stored revision of a release, oldest first.
func (c helmClient) history(ns, name string) ([]*release.Release, error) {
	cfg, err := c.configuration(ns)
	if err != nil {
		return nil, err
	}
	rs, err := action.NewHistory(cfg).Run(name)
	if err != nil {
		return nil, err
	}
	rels, err := v1s(rs)
	if err != nil {
		return nil, err
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].Version < rels[j].Version })
	return rels, nil
}

// get returns revision rev of a release, the latest if rev is 0.
func (c helmClient) get(ns, name string, rev int) (*release.Release, error) {
	cfg, err := c.configuration(ns)
	if err != nil {
		return nil, err
	}
	g := action.NewGet(cfg)
	g.Version = rev
	r, err := g.Run(name)
	if err != nil {
		return nil, err
	}
	return v1(r)
}

// recoverPending marks a release whose last revision was left pending-*
// (its operation was cut off: the hub stopped, the tunnel dropped) as
// failed, so Helm accepts the next upgrade, rollback or uninstall. It
// reports what it did; nothing if the release is not pending or is gone.
func (c helmClient) recoverPending(ns, name, why string) (string, error) {
	cfg, err := c.configuration(ns)
	if err != nil {
		return "", err
	}
	last, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return "no release left", nil
	}
	if err != nil {
		return "", err
	}
	r, err := v1(last)
	if err != nil {
		return "", err
	}
	if r.Info == nil || !r.Info.Status.IsPending() {
		return fmt.Sprintf("release %s revision %d is %s", r.Name, r.Version, r.Info.Status), nil
	}
	was := r.Info.Status
	r.SetStatus(common.StatusFailed, fmt.Sprintf("%s (was %s; marked failed by eco: %s)", r.Info.Description, was, why))
	if err := cfg.Releases.Update(r); err != nil {
		return "", fmt.Errorf("marking release %s revision %d failed: %w", r.Name, r.Version, err)
	}
	return fmt.Sprintf("release %s revision %d was %s; marked failed", r.Name, r.Version, was), nil
}

// validateValues checks values against the chart's values.schema.json
// (and its dependencies'), as Helm would at install, without touching
// any cluster.
func validateValues(ch *chart.Chart, values map[string]any) error {
	vals, err := chartutil.CoalesceValues(ch, values)
	if err != nil {
		return err
	}
	return chartutil.ValidateAgainstSchema(ch, vals)
}

func cmpDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}
