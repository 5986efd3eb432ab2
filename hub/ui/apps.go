package ui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// Apps is what the App Catalog page and the Apps and Add-ons tabs show and
// do; package hubapps implements it over the catalog, the Helm service and
// the add-ons (which this package does not import: Helm stays out of the
// UI's dependencies). Every method acts as ident.
type Apps interface {
	SearchCharts(ctx context.Context, ident hub.Identity, query string) ([]ChartHit, error)
	ChartPage(ctx context.Context, ident hub.Identity, repo, name, version string) (ChartPage, error)
	Releases(ctx context.Context, ident hub.Identity, cluster string) ([]Release, error)
	History(ctx context.Context, ident hub.Identity, cluster, namespace, name string) ([]Release, error)
	Operations(ctx context.Context, ident hub.Identity, cluster string) ([]Operation, error)
	// Install installs (or, if upgrade, upgrades) a catalog chart; with
	// dryRun it returns the manifests (and for an upgrade the diff)
	// without changing anything, else the operation's ID.
	Install(ctx context.Context, ident hub.Identity, cluster string, in InstallForm) (opID, preview string, err error)
	Rollback(ctx context.Context, ident hub.Identity, cluster, namespace, name string, revision int) (string, error)
	Uninstall(ctx context.Context, ident hub.Identity, cluster, namespace, name string) (string, error)
	Addons(ctx context.Context, ident hub.Identity, cluster string) ([]AddonStatus, error)
	// Repositories lists the catalog's repositories; AddRepository and
	// RefreshRepository change them (a hub admin only).
	Repositories(ctx context.Context, ident hub.Identity) ([]RepoStatus, error)
	AddRepository(ctx context.Context, ident hub.Identity, in RepoForm) error
	RefreshRepository(ctx context.Context, ident hub.Identity, name string) error
	// SetAddon enables or disables an add-on in cluster (a hub admin only).
	SetAddon(ctx context.Context, ident hub.Identity, cluster, addon string, enabled bool) error
	// SetAddonVersion pins an add-on's chart version and rolls it out
	// across every cluster where it is enabled, one at a time, stopping
	// at the first failure (a hub admin only).
	SetAddonVersion(ctx context.Context, ident hub.Identity, addon, version string) error
}

// ChartHit is a chart found in the App Catalog.
type ChartHit struct {
	Repo, Name, Version, AppVersion, Description string
	Versions                                     int
}

// ChartPage is a chart's page.
type ChartPage struct {
	Repo, Name, Version, AppVersion, Description string
	Versions                                     []string
	Readme, Values, Schema                       string
}

// Release is a Helm release.
type Release struct {
	Name, Namespace, Status, Chart, ChartName, AppVersion, Description string
	Revision                                                           int
	Updated                                                            time.Time
}

// Operation is a Helm operation (a hub job).
type Operation struct {
	ID, Namespace, Release, Kind, User, State, Message, Log string
	CreatedAt                                               time.Time
}

// InstallForm is the install and upgrade form.
type InstallForm struct {
	Repo, Chart, Version, Namespace, Name, Values string
	Upgrade, DryRun                               bool
}

// RepoStatus is a chart repository of the catalog.
type RepoStatus struct {
	Name, Kind, URL, Progress, Error string
	Charts, Versions                 int
	Refreshing, HasSecret, CustomCA  bool
	// BuiltIn: built into the hub (the add-on charts); Missing names the
	// charts it lacks.
	BuiltIn     bool
	Missing     []string
	RefreshedAt time.Time
	// Notice is what the last refresh says without failing (an OCI
	// discovery capped, repositories it could not read).
	Notice string
}

// RepoForm adds a repository. Password or Token is sealed by the hub and
// never shown again.
type RepoForm struct {
	Name, URL, Username, Password, Token, CAPEM string
	Charts                                      []string
}

// AddonStatus is a managed add-on in a cluster.
type AddonStatus struct {
	Addon, Title, Desired, Installed, Health, Reason string
	Enabled                                          bool
	// Rollout says where the rollout of the add-on's version stands
	// across the clusters, if one is running or stopped.
	Rollout string
}

// withApps answers 404 when the hub runs without the App Catalog.
func (u *UI) withApps(next func(http.ResponseWriter, *http.Request, *request)) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		if u.cfg.Apps == nil {
			u.fail(w, r, rq, http.StatusNotFound, "The App Catalog, Helm service and add-ons are not enabled on this hub.")
			return
		}
		next(w, r, rq)
	}
}

// catalogInstall is the App Catalog's install form: the cluster is a
// field of the form.
func (u *UI) catalogInstall(w http.ResponseWriter, r *http.Request, rq *request) {
	r.SetPathValue("id", r.PostForm.Get("cluster"))
	r.SetPathValue("action", "install")
	if r.PostForm.Get("upgrade") != "" {
		r.SetPathValue("action", "upgrade")
	}
	u.appsAction(w, r, rq)
}

type catalogData struct {
	Repos    []RepoStatus
	CanAdmin bool
	Query    string
	Hits     []ChartHit
	Page     *ChartPage
	Err      string
	Form     InstallForm
	Errs     map[string]string
	Choice   []clusterChoice
}

type clusterChoice struct{ ID, Name string }

// catalogPage is the App Catalog: search, a chart's page and its install
// form (to a cluster the user may change).
func (u *UI) catalogPage(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	v := rq.view("App Catalog", "catalog")
	d := &catalogData{Query: q.Get("q"), CanAdmin: rq.admin() && !rq.ident.Scope.ReadOnly && rq.ident.Scope.Clusters == nil}
	v.Data = d
	d.Repos, _ = u.cfg.Apps.Repositories(r.Context(), rq.ident)
	var err error
	if d.Hits, err = u.cfg.Apps.SearchCharts(r.Context(), rq.ident, d.Query); err != nil {
		d.Err = err.Error()
	}
	if repo, name := q.Get("repo"), q.Get("chart"); repo != "" && name != "" {
		p, err := u.cfg.Apps.ChartPage(r.Context(), rq.ident, repo, name, q.Get("version"))
		if err != nil {
			d.Err = err.Error()
		} else {
			d.Page = &p
			d.Form = InstallForm{Repo: repo, Chart: name, Version: p.Version, Namespace: name, Name: name, Values: ""}
			page, _ := u.hub.Store().ListClusters(r.Context(), store.ListOptions{Limit: store.MaxPageSize, IDs: rq.ident.VisibleClusters()})
			for _, c := range page.Clusters {
				if role := rq.ident.ClusterRole(c.ID); role == store.ClusterEdit || role == store.ClusterAdmin {
					d.Choice = append(d.Choice, clusterChoice{c.ID, c.Name})
				}
			}
		}
	}
	u.render(w, r, http.StatusOK, "catalog", v)
}

type appsData struct {
	NotConnected bool
	Releases     []Release
	History      []Release
	HistoryOf    string
	Ops          []Operation
	Running      bool // an operation runs: the page reloads itself
	Err          string
	Preview      string
	Form         InstallForm
	CanChange    bool
}

// appsTab is a cluster's Apps tab: releases, operations, history,
// rollback, uninstall, and the install/upgrade form's answers.
func (u *UI) appsTab(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	v := u.clusterView(rq, &c, "Apps", "apps")
	d := &appsData{CanChange: canChange(rq, c.ID)}
	v.Data = d
	if !v.Connected {
		d.NotConnected = true
		u.render(w, r, http.StatusOK, "apps", v)
		return
	}
	u.fillApps(r, rq, c.ID, d)
	u.render(w, r, http.StatusOK, "apps", v)
}

func (u *UI) fillApps(r *http.Request, rq *request, cluster string, d *appsData) {
	var err error
	if d.Releases, err = u.cfg.Apps.Releases(r.Context(), rq.ident, cluster); err != nil {
		d.Err = err.Error()
	}
	d.Ops, _ = u.cfg.Apps.Operations(r.Context(), rq.ident, cluster)
	for _, op := range d.Ops {
		if op.State == "running" || op.State == "recovering" {
			d.Running = true
		}
	}
	if h := r.URL.Query().Get("history"); h != "" {
		ns, name, _ := cut(h)
		d.HistoryOf = h
		d.History, _ = u.cfg.Apps.History(r.Context(), rq.ident, cluster, ns, name)
	}
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

func canChange(rq *request, cluster string) bool {
	role := rq.ident.ClusterRole(cluster)
	return role == store.ClusterEdit || role == store.ClusterAdmin
}

// appsAction handles the Apps forms: install/upgrade (with a dry run),
// rollback, uninstall. A change redirects to the Apps tab, where the
// operation shows.
func (u *UI) appsAction(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	if !canChange(rq, c.ID) {
		u.fail(w, r, rq, http.StatusForbidden, "You may look at this cluster's apps but not change them.")
		return
	}
	f := r.PostForm
	var op string
	var err error
	switch r.PathValue("action") {
	case "install", "upgrade":
		in := InstallForm{Repo: f.Get("repo"), Chart: f.Get("chart"), Version: f.Get("version"), Namespace: f.Get("namespace"),
			Name: f.Get("name"), Values: f.Get("values"), Upgrade: r.PathValue("action") == "upgrade", DryRun: f.Get("dryrun") != ""}
		var preview string
		op, preview, err = u.cfg.Apps.Install(r.Context(), rq.ident, c.ID, in)
		if err == nil && in.DryRun {
			v := u.clusterView(rq, &c, "Apps", "apps")
			d := &appsData{CanChange: true, Preview: preview, Form: in}
			u.fillApps(r, rq, c.ID, d)
			v.Data = d
			u.render(w, r, http.StatusOK, "apps", v)
			return
		}
		if err != nil {
			v := u.clusterView(rq, &c, "Apps", "apps")
			d := &appsData{CanChange: true, Form: in}
			u.fillApps(r, rq, c.ID, d)
			d.Err = err.Error()
			v.Data = d
			u.render(w, r, http.StatusUnprocessableEntity, "apps", v)
			return
		}
	case "rollback":
		rev, _ := strconv.Atoi(f.Get("revision"))
		op, err = u.cfg.Apps.Rollback(r.Context(), rq.ident, c.ID, f.Get("namespace"), f.Get("name"), rev)
	case "uninstall":
		op, err = u.cfg.Apps.Uninstall(r.Context(), rq.ident, c.ID, f.Get("namespace"), f.Get("name"))
	default:
		u.fail(w, r, rq, http.StatusNotFound, "No such action.")
		return
	}
	if err != nil {
		u.fail(w, r, rq, http.StatusConflict, err.Error())
		return
	}
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"/apps?op="+url.QueryEscape(op), http.StatusSeeOther)
}

type addonsData struct {
	CanManage    bool
	NotConnected bool
	Addons       []AddonStatus
	Err          string
}

// addonsTab is a cluster's Add-ons tab: each add-on's state and health,
// unhealthy ones in red with the reason.
func (u *UI) addonsTab(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	v := u.clusterView(rq, &c, "Add-ons", "addons")
	d := &addonsData{NotConnected: !v.Connected, CanManage: rq.admin() && !rq.ident.Scope.ReadOnly}
	v.Data = d
	var err error
	if d.Addons, err = u.cfg.Apps.Addons(r.Context(), rq.ident, c.ID); err != nil && !errors.Is(err, context.Canceled) {
		d.Err = err.Error()
	}
	u.render(w, r, http.StatusOK, "addons", v)
}

// promData is the monitoring add-on's Prometheus as the Monitoring
// dashboard shows it: where it is, and its scrape targets' health from
// the query `up`, read through the API server's service proxy (and so
// through the tunnel, as the user).
type promData struct {
	Namespace, Service string
	Targets            []promTarget
	Err                string
}

type promTarget struct {
	Job, Instance string
	Up            bool
}

// prometheusFromAddon finds the Service the monitoring add-on labels
// eco.dev/monitoring=prometheus and asks it for `up`; nil if there is none.
func prometheusFromAddon(ctx context.Context, cs kubernetes.Interface) *promData {
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: "eco.dev/monitoring=prometheus", Limit: 1})
	if err != nil || len(svcs.Items) == 0 {
		return nil
	}
	svc := svcs.Items[0]
	p := &promData{Namespace: svc.Namespace, Service: svc.Name}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := cs.CoreV1().Services(svc.Namespace).ProxyGet("http", svc.Name, "http", "/api/v1/query", map[string]string{"query": "up"}).DoRaw(qctx)
	if err != nil {
		p.Err = err.Error()
		return p
	}
	var res struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		p.Err = "Prometheus answered something else: " + err.Error()
		return p
	}
	for _, r := range res.Data.Result {
		up := len(r.Value) == 2 && r.Value[1] == "1"
		p.Targets = append(p.Targets, promTarget{Job: r.Metric["job"], Instance: r.Metric["instance"], Up: up})
	}
	return p
}

// addonSet is the Add-ons tab's Enable/Disable button (hub admins).
func (u *UI) addonSet(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	if err := u.cfg.Apps.SetAddon(r.Context(), rq.ident, c.ID, r.PathValue("addon"), r.PostForm.Get("enabled") == "true"); err != nil {
		u.fail(w, r, rq, http.StatusForbidden, err.Error())
		return
	}
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"/addons", http.StatusSeeOther)
}

// addonVersion pins an add-on's version for every cluster (the rollout
// goes one cluster at a time) and goes back to the cluster's Add-ons tab.
func (u *UI) addonVersion(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	version := strings.TrimSpace(r.PostForm.Get("version"))
	if version == "" {
		u.fail(w, r, rq, http.StatusBadRequest, "Give the chart version to roll out.")
		return
	}
	if err := u.cfg.Apps.SetAddonVersion(r.Context(), rq.ident, r.PathValue("addon"), version); err != nil {
		u.fail(w, r, rq, http.StatusBadRequest, err.Error())
		return
	}
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"/addons", http.StatusSeeOther)
}

// catalogRepo adds a repository (action "add") or refreshes one
// ("refresh"); hub admins only.
func (u *UI) catalogRepo(w http.ResponseWriter, r *http.Request, rq *request) {
	f := r.PostForm
	var err error
	switch r.PathValue("action") {
	case "add":
		var charts []string
		for _, c := range strings.Split(f.Get("charts"), ",") {
			if c = strings.TrimSpace(c); c != "" {
				charts = append(charts, c)
			}
		}
		err = u.cfg.Apps.AddRepository(r.Context(), rq.ident, RepoForm{Name: f.Get("name"), URL: f.Get("url"), Username: f.Get("username"),
			Password: f.Get("password"), Token: f.Get("token"), CAPEM: f.Get("ca"), Charts: charts})
	case "refresh":
		err = u.cfg.Apps.RefreshRepository(r.Context(), rq.ident, f.Get("name"))
	default:
		u.fail(w, r, rq, http.StatusNotFound, "No such action.")
		return
	}
	if err != nil {
		u.fail(w, r, rq, http.StatusBadRequest, err.Error())
		return
	}
	http.Redirect(w, r, "/ui/catalog", http.StatusSeeOther)
}
