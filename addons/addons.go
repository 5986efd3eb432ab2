// Package addons runs eco's managed add-ons: a hub-curated list of charts
// with pinned versions and hub-managed values (metrics-server, in-cluster
// monitoring, log shipping), enabled per cluster or for every cluster.
// The desired state — where each add-on is enabled, and the version a hub
// admin set — is in the store; a Manager reconciles it when a
// cluster connects (lifecycle events), when an add-on's version changes
// and on a periodic resync, repairing drift (a release changed or deleted
// by hand, a workload gone). Health comes from the add-on's workloads. A
// new version is rolled out across clusters one at a time, stopping at the
// first failure. Add-ons act in clusters as the hub's service identity
// "addons" through the Helm service (package apps), so their changes are
// operations like any other and the audit log names them.
package addons

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/store"
)

// Addon is one managed add-on.
type Addon struct {
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	// Chart is the chart in the App Catalog, at its pinned version.
	Chart apps.ChartRef `json:"chart"`
	// Namespace and Release are where it is installed.
	Namespace string `json:"namespace"`
	Release   string `json:"release"`
	// Values are hub-managed: a release with other values is drift.
	Values map[string]any `json:"values,omitempty"`
}

// Defaults is the curated list: charts from the App Catalog repository
// named repo (the hub's add-on repository).
func Defaults(repo string) []Addon {
	return []Addon{
		{
			Name: "metrics-server", Title: "Metrics Server",
			Description: "Resource metrics (kubectl top, autoscaling) from the kubelets.",
			Chart:       apps.ChartRef{Repo: repo, Name: "metrics-server", Version: "3.12.2"},
			Namespace:   "kube-system", Release: "eco-metrics-server",
			Values: map[string]any{"args": []any{"--kubelet-insecure-tls"}},
		},
		{
			Name: "monitoring", Title: "Monitoring",
			Description: "Prometheus with kube-state-metrics and node-exporter; the hub's Monitoring dashboard reads it.",
			Chart:       apps.ChartRef{Repo: repo, Name: "eco-monitoring", Version: "0.1.0"},
			Namespace:   "eco-monitoring", Release: "eco-monitoring",
			Values: map[string]any{"retention": "24h"},
		},
		{
			Name: "logging", Title: "Log shipping",
			Description: "A node-level log shipper (DaemonSet) that forwards container logs.",
			Chart:       apps.ChartRef{Repo: repo, Name: "eco-logging", Version: "0.1.0"},
			Namespace:   "eco-logging", Release: "eco-logging",
		},
	}
}

// Config configures a Manager.
type Config struct {
	// Hub gives clusters, the store and lifecycle events. Required.
	Hub *hub.Hub
	// Apps runs the Helm operations. Required.
	Apps *apps.Service
	// Addons is the curated list. Nil means Defaults("eco-addons"). A
	// version a hub admin set (SetVersion), which the store keeps,
	// replaces an add-on's Chart.Version here: an admin's upgrade
	// outlives hub restarts and upgrades, until an admin sets another.
	Addons []Addon
	// Logger receives the manager's logs. Nil discards them.
	Logger *slog.Logger
	// ResyncInterval is how often every connected cluster is reconciled.
	// Zero means 5 minutes.
	ResyncInterval time.Duration
	// RecheckInterval is how often clusters where an enabled add-on is
	// not healthy are reconciled again (a fresh install turning ready, a
	// workload lost). Zero means 15 s.
	RecheckInterval time.Duration
	// HealthTimeout is how long a rollout waits for an upgraded add-on to
	// turn healthy before it stops. Zero means 3 minutes.
	HealthTimeout time.Duration
	// Registerer receives the manager's metrics. Nil means none.
	Registerer prometheus.Registerer
}

// Health of an add-on in a cluster.
const (
	Healthy      = "healthy"
	Unhealthy    = "unhealthy"
	NotInstalled = "not-installed"
	Disabled     = "disabled"
	Unknown      = "unknown" // not connected, or not checked yet
)

// Status is an add-on in one cluster.
type Status struct {
	Addon     string    `json:"addon"`
	Title     string    `json:"title"`
	Cluster   string    `json:"cluster"`
	Enabled   bool      `json:"enabled"`
	Desired   string    `json:"desiredVersion"`
	Installed string    `json:"installedVersion,omitempty"`
	Health    string    `json:"health"`
	Reason    string    `json:"reason,omitempty"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
}

// KeepInstalled as a rollout's From keeps whatever version a cluster runs
// until the rollout reaches it (the rollout a hub starts with).
const KeepInstalled = "installed"

// Rollout is where the rollout of an add-on's new version stands.
type Rollout struct {
	Addon     string   `json:"addon"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	Done      []string `json:"done"`
	Pending   []string `json:"pending"`
	StoppedAt string   `json:"stoppedAt,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Finished  bool     `json:"finished"`
}

// Manager reconciles the managed add-ons. Run owns its goroutines.
type Manager struct {
	cfg   Config
	hub   *hub.Hub
	store store.Store
	log   *slog.Logger
	ident hub.Identity

	queue chan task

	mu       sync.Mutex
	addons   map[string]*Addon            // guarded by mu; Chart.Version is the current target
	status   map[string]map[string]Status // cluster → addon → status; guarded by mu
	rollouts map[string]*Rollout          // guarded by mu

	reconciles *prometheus.CounterVec
	unhealthy  *prometheus.GaugeVec
}

type task struct {
	cluster string // reconcile one cluster ("" with all: every cluster)
	all     bool
	rollout string // roll out this add-on's new version
	done    chan struct{}
}

// New returns a Manager. It reads the versions hub admins set from the
// store with ctx, here rather than in Run, so that Addons and the API
// give the target versions from the start; an error reading them fails
// New, since starting on the built-in versions would roll every cluster
// back from the admin's.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Hub == nil || cfg.Apps == nil {
		return nil, errors.New("addons: Config.Hub and Config.Apps are required")
	}
	if cfg.Addons == nil {
		cfg.Addons = Defaults("eco-addons")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 5 * time.Minute
	}
	if cfg.RecheckInterval <= 0 {
		cfg.RecheckInterval = 15 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 3 * time.Minute
	}
	m := &Manager{cfg: cfg, hub: cfg.Hub, store: cfg.Hub.Store(), log: cfg.Logger,
		ident: cfg.Hub.ServiceIdentity("addons", store.ClusterAdmin),
		queue: make(chan task, 256), addons: map[string]*Addon{}, status: map[string]map[string]Status{}, rollouts: map[string]*Rollout{}}
	for i := range cfg.Addons {
		a := cfg.Addons[i]
		if _, dup := m.addons[a.Name]; dup || a.Name == "" {
			return nil, fmt.Errorf("addons: add-on %q is listed twice or unnamed", a.Name)
		}
		m.addons[a.Name] = &a
	}
	if err := m.loadVersions(ctx); err != nil {
		return nil, err
	}
	m.reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eco_addon_reconciles_total", Help: "Add-on reconciliations of a cluster, by action taken (none, install, upgrade, uninstall, error).",
	}, []string{"action"})
	m.unhealthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eco_addons_unhealthy", Help: "Clusters where an enabled add-on is not healthy, by add-on.",
	}, []string{"addon"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.reconciles, m.unhealthy} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("addons: registering metrics: %w", err)
			}
		}
	}
	return m, nil
}

// loadVersions replaces the built-in versions with those hub admins set.
func (m *Manager) loadVersions(ctx context.Context) error {
	set, err := m.store.AddonVersions(ctx)
	if err != nil {
		return fmt.Errorf("addons: reading the versions hub admins set: %w", err)
	}
	for _, v := range set {
		a, ok := m.addons[v.Addon]
		if !ok {
			m.log.Warn("ignoring the stored version of an add-on no longer in the list", "addon", v.Addon, "version", v.Version)
			continue
		}
		if a.Chart.Version != v.Version {
			// A hub upgrade's new built-in version does not apply either:
			// worth saying, since it is what an operator would expect.
			m.log.Info("add-on version set by a hub admin replaces the built-in one", "addon", v.Addon,
				"version", v.Version, "builtIn", a.Chart.Version, "setBy", v.UpdatedBy, "setAt", v.UpdatedAt)
		}
		a.Chart.Version = v.Version
	}
	return nil
}

// Addons returns the curated list with the current target versions.
func (m *Manager) Addons() []Addon {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Addon, 0, len(m.addons))
	for _, a := range m.addons {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run reconciles until ctx ends: every cluster at once, a cluster when it
// connects, everything every ResyncInterval, and the tasks Enable and
// SetVersion queue. One worker does the work, so rollouts go one cluster
// at a time.
func (m *Manager) Run(ctx context.Context) error {
	events, stop := m.hub.Subscribe(64)
	defer stop()
	t := time.NewTicker(m.cfg.ResyncInterval)
	defer t.Stop()
	recheck := time.NewTicker(m.cfg.RecheckInterval)
	defer recheck.Stop()
	// The target versions may be new (a new hub's built-in ones, or an
	// admin's that a restart cut short): each add-on's version reaches the
	// clusters as a rollout, one at a time, from whatever each runs now.
	m.mu.Lock()
	for name, a := range m.addons {
		if m.rollouts[name] == nil {
			m.rollouts[name] = &Rollout{Addon: name, From: KeepInstalled, To: a.Chart.Version, Done: []string{}}
		}
	}
	names := make([]string, 0, len(m.addons))
	for name := range m.addons {
		names = append(names, name)
	}
	m.mu.Unlock()
	sort.Strings(names)
	for _, name := range names {
		m.enqueue(task{rollout: name})
	}
	m.enqueue(task{all: true})
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			switch ev.Kind {
			case lifecycle.Connected:
				for _, a := range m.pendingRollouts(ev.ClusterID) {
					m.enqueue(task{rollout: a})
				}
				m.enqueue(task{cluster: ev.ClusterID})
			case lifecycle.Lagged:
				m.enqueue(task{all: true})
			case lifecycle.Deleted, lifecycle.Removed:
				m.mu.Lock()
				delete(m.status, ev.ClusterID)
				m.mu.Unlock()
			}
		case <-t.C:
			m.enqueue(task{all: true})
		case <-recheck.C:
			for _, c := range m.unhealthyClusters() {
				if m.hub.Connected(c) {
					m.reconcile(ctx, c)
				}
			}
		case tk := <-m.queue:
			m.do(ctx, tk)
			if tk.done != nil {
				close(tk.done)
			}
		}
	}
}

// unhealthyClusters lists the clusters where an enabled add-on was last
// seen other than healthy.
func (m *Manager) unhealthyClusters() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for c, byAddon := range m.status {
		for _, st := range byAddon {
			if st.Enabled && st.Health != Healthy {
				out = append(out, c)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func (m *Manager) enqueue(t task) {
	select {
	case m.queue <- t:
	default:
		m.log.Warn("add-on queue full; the next resync catches up")
	}
}

// Resync reconciles every cluster and waits (or until ctx ends).
func (m *Manager) Resync(ctx context.Context) error {
	done := make(chan struct{})
	m.enqueue(task{all: true, done: done})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) do(ctx context.Context, t task) {
	switch {
	case t.rollout != "":
		m.runRollout(ctx, t.rollout)
	case t.all:
		for _, c := range m.clusters(ctx) {
			if m.hub.Connected(c) {
				m.reconcile(ctx, c)
			} else {
				m.markUnknown(c, "eco is not connected to this cluster")
			}
		}
	default:
		if m.hub.Connected(t.cluster) {
			m.reconcile(ctx, t.cluster)
		}
	}
}

// clusters lists every cluster's ID.
func (m *Manager) clusters(ctx context.Context) []string {
	var ids []string
	for off := 0; ; off += store.MaxPageSize {
		page, err := m.store.ListClusters(ctx, store.ListOptions{Limit: store.MaxPageSize, Offset: off})
		if err != nil {
			m.log.Warn("listing clusters", "err", err)
			return ids
		}
		for _, c := range page.Clusters {
			ids = append(ids, c.ID)
		}
		if len(page.Clusters) < store.MaxPageSize {
			return ids
		}
	}
}

// enabled returns the effective settings: addon → cluster → enabled, the
// cluster's own setting over the one for all.
func (m *Manager) enabled(ctx context.Context, cluster string) (map[string]bool, error) {
	settings, err := m.store.ListAddons(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	own := map[string]bool{}
	for _, s := range settings {
		switch s.ClusterID {
		case cluster:
			out[s.Addon], own[s.Addon] = s.Enabled, true
		case "":
			if !own[s.Addon] {
				out[s.Addon] = s.Enabled
			}
		}
	}
	return out, nil
}

// desiredVersion is the version cluster should run: during a rollout,
// the new one only where it was rolled out.
func (m *Manager) desiredVersion(a *Addon, cluster string) string {
	if r := m.rollouts[a.Name]; r != nil && !r.Finished && !slices.Contains(r.Done, cluster) {
		return r.From
	}
	return a.Chart.Version
}

// Enable sets addon enabled or not in cluster ("" for every cluster) and
// reconciles. Only a hub admin may.
func (m *Manager) Enable(ctx context.Context, ident hub.Identity, addon, cluster string, enabled bool) error {
	if err := m.mayManage(ident); err != nil {
		return err
	}
	m.mu.Lock()
	_, ok := m.addons[addon]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("add-on %q: %w", addon, ErrNotFound)
	}
	if _, err := m.store.SetAddon(ctx, store.AddonSetting{Addon: addon, ClusterID: cluster, Enabled: enabled, UpdatedBy: ident.Name}); err != nil {
		return err
	}
	if cluster == "" {
		m.enqueue(task{all: true})
	} else {
		m.enqueue(task{cluster: cluster})
	}
	return nil
}

// Errors.
var (
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrInvalid   = errors.New("invalid")
)

func (m *Manager) mayManage(ident hub.Identity) error {
	if ident.Role != store.RoleAdmin || ident.Scope.ReadOnly || ident.Scope.Clusters != nil {
		return fmt.Errorf("%w: hub user %q may not manage add-ons: the admin role is required", ErrForbidden, ident.Name)
	}
	return nil
}

// SetVersion changes addon's pinned chart version and rolls it out
// across the clusters where it is enabled, one at a time, stopping at the
// first failure. The version is kept in the store first, so that a hub
// restart resumes it instead of rolling back to the built-in version; if
// the store refuses, nothing changes.
func (m *Manager) SetVersion(ctx context.Context, ident hub.Identity, addon, version string) (Rollout, error) {
	if err := m.mayManage(ident); err != nil {
		return Rollout{}, err
	}
	if version == "" {
		return Rollout{}, fmt.Errorf("%w: a version is required", ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.addons[addon]
	if !ok {
		return Rollout{}, fmt.Errorf("add-on %q: %w", addon, ErrNotFound)
	}
	if r := m.rollouts[addon]; r != nil && !r.Finished && r.StoppedAt == "" && len(r.Done) > 0 && r.From != KeepInstalled {
		return Rollout{}, fmt.Errorf("%w: the rollout of %s %s is running", ErrInvalid, addon, r.To)
	}
	from := a.Chart.Version
	if r := m.rollouts[addon]; r != nil && !r.Finished {
		from = r.From // an unfinished rollout is replaced; clusters it reached move on
	}
	// m.mu is held across the write so that the check above, the write and
	// the change below are one step; the worker waits for one small write.
	if _, err := m.store.SetAddonVersion(ctx, store.AddonVersion{Addon: addon, Version: version, UpdatedBy: ident.Name}); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return Rollout{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return Rollout{}, fmt.Errorf("add-on %q: keeping version %s: %w", addon, version, err)
	}
	r := &Rollout{Addon: addon, From: from, To: version, Done: []string{}}
	a.Chart.Version = version
	m.rollouts[addon] = r
	m.enqueue(task{rollout: addon})
	return *r, nil
}

// Rollouts returns the rollouts' state.
func (m *Manager) Rollouts() []Rollout {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Rollout{}
	for _, r := range m.rollouts {
		c := *r
		c.Done, c.Pending = slices.Clone(r.Done), slices.Clone(r.Pending)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addon < out[j].Addon })
	return out
}

// runRollout takes a rollout as far as it can: each pending cluster in
// order, if connected, is moved to the new version and must turn healthy;
// the first failure stops the rollout. A cluster not connected stays
// pending and the rollout resumes when it connects (Run enqueues it).
func (m *Manager) runRollout(ctx context.Context, addon string) {
	m.mu.Lock()
	r := m.rollouts[addon]
	if r == nil || r.Finished || r.StoppedAt != "" {
		m.mu.Unlock()
		return
	}
	first := r.Pending == nil
	m.mu.Unlock()
	if first {
		targets := []string{}
		for _, c := range m.clusters(ctx) {
			on, err := m.enabled(ctx, c)
			if err == nil && on[addon] {
				targets = append(targets, c)
			}
		}
		m.mu.Lock()
		r.Pending = targets
		m.mu.Unlock()
	}
	m.mu.Lock()
	pending := slices.Clone(r.Pending)
	m.mu.Unlock()
	for _, c := range pending {
		if !m.hub.Connected(c) {
			continue // resumed when it connects
		}
		m.mu.Lock()
		r.Done = append(r.Done, c) // desiredVersion is now the new one here
		r.Pending = slices.DeleteFunc(r.Pending, func(p string) bool { return p == c })
		m.mu.Unlock()
		if st := m.reconcileAddon(ctx, c, addon, true); st.Health != Healthy {
			fail := st.Health + ": " + st.Reason
			m.mu.Lock()
			r.StoppedAt, r.Reason = c, fail
			m.mu.Unlock()
			m.log.Warn("add-on rollout stopped", "addon", addon, "version", r.To, "cluster", c, "reason", fail)
			return
		}
		m.log.Info("add-on rolled out", "addon", addon, "version", r.To, "cluster", c)
	}
	m.mu.Lock()
	if len(r.Pending) == 0 {
		r.Finished = true
	}
	m.mu.Unlock()
}

// pendingRollouts lists the add-ons whose running rollout waits for
// cluster.
func (m *Manager) pendingRollouts(cluster string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name, r := range m.rollouts {
		if !r.Finished && r.StoppedAt == "" && slices.Contains(r.Pending, cluster) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (m *Manager) markUnknown(cluster, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, st := range m.status[cluster] {
		st.Health, st.Reason = Unknown, reason
		m.status[cluster][name] = st
	}
}

// reconcile puts every add-on of cluster in its desired state.
func (m *Manager) reconcile(ctx context.Context, cluster string) {
	for _, a := range m.Addons() {
		m.reconcileAddon(ctx, cluster, a.Name, false)
	}
}

// reconcileAddon puts one add-on of cluster in its desired state and
// returns its status; waitHealthy waits up to HealthTimeout for it to be
// healthy (rollouts).
func (m *Manager) reconcileAddon(ctx context.Context, cluster, name string, waitHealthy bool) Status {
	m.mu.Lock()
	a := *m.addons[name]
	pin := a.Chart.Version
	a.Chart.Version = m.desiredVersion(m.addons[name], cluster)
	m.mu.Unlock()
	st := Status{Addon: a.Name, Title: a.Title, Cluster: cluster, Desired: a.Chart.Version, CheckedAt: time.Now().UTC()}
	defer func() { m.record(st) }()
	on, err := m.enabled(ctx, cluster)
	if err != nil {
		st.Health, st.Reason = Unknown, err.Error()
		return st
	}
	st.Enabled = on[a.Name]
	cur, err := m.cfg.Apps.Get(ctx, m.ident, cluster, a.Namespace, a.Release, 0)
	exists := err == nil
	if err != nil && !isNotFound(err) {
		st.Health, st.Reason = Unknown, err.Error()
		m.reconciles.WithLabelValues("error").Inc()
		return st
	}
	if exists {
		st.Installed = cur.Version
	}
	if a.Chart.Version == KeepInstalled { // a rollout has not reached this cluster
		a.Chart.Version = pin
		if exists {
			a.Chart.Version = cur.Version
		}
		st.Desired = a.Chart.Version
	}
	if !st.Enabled {
		st.Health = Disabled
		if exists {
			m.reconciles.WithLabelValues("uninstall").Inc()
			if _, err := m.run(ctx, apps.Request{Kind: apps.KindUninstall, Cluster: cluster, Namespace: a.Namespace, Release: a.Release}); err != nil {
				st.Reason = "uninstalling: " + err.Error()
				return st
			}
			st.Installed = ""
		}
		return st
	}
	action := ""
	switch {
	case !exists:
		action = apps.KindInstall
	case cur.Status != "deployed" || cur.Version != a.Chart.Version || !sameValues(cur.Values, a.Values):
		action = apps.KindUpgrade
	default:
		if healthy, reason := m.health(ctx, cluster, cur.Manifest, a.Namespace); !healthy && strings.Contains(reason, "not found") {
			action = apps.KindUpgrade // a workload deleted by hand: drift
		}
	}
	if action != "" {
		m.reconciles.WithLabelValues(action).Inc()
		if err := m.apply(ctx, cluster, a, action); err != nil {
			st.Health, st.Reason = Unhealthy, action+" failed: "+err.Error()
			return st
		}
		if cur, err = m.cfg.Apps.Get(ctx, m.ident, cluster, a.Namespace, a.Release, 0); err != nil {
			st.Health, st.Reason = Unknown, err.Error()
			return st
		}
		st.Installed = cur.Version
	} else {
		m.reconciles.WithLabelValues("none").Inc()
	}
	deadline := time.Now().Add(m.cfg.HealthTimeout)
	for {
		healthy, reason := m.health(ctx, cluster, cur.Manifest, a.Namespace)
		st.CheckedAt = time.Now().UTC()
		if healthy {
			st.Health, st.Reason = Healthy, ""
			return st
		}
		st.Health, st.Reason = Unhealthy, reason
		if !waitHealthy || time.Now().After(deadline) || ctx.Err() != nil {
			return st
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (m *Manager) apply(ctx context.Context, cluster string, a Addon, kind string) error {
	ch, err := m.chart(ctx, a)
	if err != nil {
		return err
	}
	op, err := m.run(ctx, apps.Request{Kind: kind, Cluster: cluster, Namespace: a.Namespace, Release: a.Release, Chart: ch, Values: cloneValues(a.Values)})
	if err != nil {
		return err
	}
	m.log.Info("add-on "+kind, "addon", a.Name, "cluster", cluster, "version", a.Chart.Version, "operation", op.ID)
	return nil
}

// chart loads the add-on's chart from the App Catalog.
func (m *Manager) chart(ctx context.Context, a Addon) (*chart.Chart, error) {
	return m.cfg.Apps.Chart(ctx, a.Chart)
}

// run starts a Helm operation as the add-ons' identity and waits for it.
func (m *Manager) run(ctx context.Context, r apps.Request) (store.Operation, error) {
	op, err := m.cfg.Apps.Start(ctx, m.ident, r)
	if err != nil {
		return op, err
	}
	if op, err = m.cfg.Apps.Wait(ctx, op.ID); err != nil {
		return op, err
	}
	if op.State != store.OperationSucceeded {
		return op, fmt.Errorf("%s %s", op.State, op.Message)
	}
	return op, nil
}

func (m *Manager) record(st Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status[st.Cluster] == nil {
		m.status[st.Cluster] = map[string]Status{}
	}
	m.status[st.Cluster][st.Addon] = st
	n := 0
	for _, byAddon := range m.status {
		if s, ok := byAddon[st.Addon]; ok && s.Enabled && s.Health != Healthy {
			n++
		}
	}
	m.unhealthy.WithLabelValues(st.Addon).Set(float64(n))
}

// Status returns the add-ons' status in cluster: every add-on of the
// list, as last reconciled.
func (m *Manager) Status(ctx context.Context, cluster string) ([]Status, error) {
	on, err := m.enabled(ctx, cluster)
	if err != nil {
		return nil, err
	}
	connected := m.hub.Connected(cluster)
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Status{}
	names := make([]string, 0, len(m.addons))
	for n := range m.addons {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st, ok := m.status[cluster][n]
		if !ok {
			st = Status{Addon: n, Title: m.addons[n].Title, Cluster: cluster, Health: Unknown, Reason: "not reconciled yet"}
		}
		st.Enabled = on[n]
		st.Desired = m.desiredVersion(m.addons[n], cluster)
		if st.Desired == KeepInstalled {
			st.Desired = cmp.Or(st.Installed, m.addons[n].Chart.Version)
		}
		if !st.Enabled && st.Installed == "" {
			st.Health, st.Reason = Disabled, ""
		}
		if !connected && st.Enabled {
			st.Health, st.Reason = Unknown, "eco is not connected to this cluster"
		}
		out = append(out, st)
	}
	return out, nil
}

// health checks the workloads in a release's manifest: every Deployment,
// StatefulSet and DaemonSet must exist and be ready.
func (m *Manager) health(ctx context.Context, cluster, manifest, namespace string) (bool, string) {
	cfg, err := m.hub.ClusterConfig(cluster, m.ident)
	if err != nil {
		return false, err.Error()
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, err.Error()
	}
	for _, doc := range strings.Split(manifest, "\n---") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if yaml.Unmarshal([]byte(doc), &obj) != nil || obj.Metadata.Name == "" {
			continue
		}
		ns := obj.Metadata.Namespace
		if ns == "" {
			ns = namespace
		}
		var ready bool
		var why string
		switch obj.Kind {
		case "Deployment":
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, obj.Metadata.Name, metav1.GetOptions{})
			if err != nil {
				return false, workloadErr("Deployment", ns, obj.Metadata.Name, err)
			}
			ready, why = deploymentReady(d)
		case "StatefulSet":
			s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, obj.Metadata.Name, metav1.GetOptions{})
			if err != nil {
				return false, workloadErr("StatefulSet", ns, obj.Metadata.Name, err)
			}
			want := int32(1)
			if s.Spec.Replicas != nil {
				want = *s.Spec.Replicas
			}
			ready, why = s.Status.ReadyReplicas >= want, fmt.Sprintf("%d of %d replicas ready", s.Status.ReadyReplicas, want)
		case "DaemonSet":
			d, err := cs.AppsV1().DaemonSets(ns).Get(ctx, obj.Metadata.Name, metav1.GetOptions{})
			if err != nil {
				return false, workloadErr("DaemonSet", ns, obj.Metadata.Name, err)
			}
			ready = d.Status.DesiredNumberScheduled > 0 && d.Status.NumberReady >= d.Status.DesiredNumberScheduled
			why = fmt.Sprintf("%d of %d pods ready", d.Status.NumberReady, d.Status.DesiredNumberScheduled)
		default:
			continue
		}
		if !ready {
			return false, fmt.Sprintf("%s %s/%s: %s", obj.Kind, ns, obj.Metadata.Name, why)
		}
	}
	return true, ""
}

func workloadErr(kind, ns, name string, err error) string {
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("%s %s/%s not found", kind, ns, name)
	}
	return fmt.Sprintf("%s %s/%s: %v", kind, ns, name, err)
}

func deploymentReady(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration < d.Generation {
		return false, "rollout not observed yet"
	}
	if d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want {
		return false, fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, want)
	}
	return true, ""
}

func isNotFound(err error) bool {
	return errors.Is(err, apps.ErrReleaseNotFound)
}

// sameValues compares values as Helm stores them (JSON numbers).
func sameValues(a, b map[string]any) bool {
	norm := func(v map[string]any) any {
		if len(v) == 0 {
			return map[string]any{}
		}
		data, _ := yaml.Marshal(v)
		var out any
		yaml.Unmarshal(data, &out)
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func cloneValues(v map[string]any) map[string]any {
	out := map[string]any{}
	if v == nil {
		return out
	}
	data, _ := yaml.Marshal(v)
	yaml.Unmarshal(data, &out)
	return out
}
