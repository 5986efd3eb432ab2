package hubapps

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/store"
)

// UI returns the features as the web UI sees them (ui.Config.Apps).
func (f *Features) UI() ui.Apps { return uiApps{f} }

type uiApps struct{ f *Features }

func (a uiApps) SearchCharts(_ context.Context, _ hub.Identity, q string) ([]ui.ChartHit, error) {
	var out []ui.ChartHit
	for _, h := range a.f.Catalog.Search(q, 200) {
		out = append(out, ui.ChartHit{Repo: h.Repo, Name: h.Name, Version: h.Version, AppVersion: h.AppVersion, Description: h.Description, Versions: h.Versions})
	}
	return out, nil
}

func (a uiApps) ChartPage(ctx context.Context, _ hub.Identity, repo, name, version string) (ui.ChartPage, error) {
	p, err := a.f.Catalog.ChartPage(ctx, repo, name, version)
	if err != nil {
		return ui.ChartPage{}, err
	}
	out := ui.ChartPage{Repo: p.Repo, Name: p.Name, Version: p.Version, AppVersion: p.AppVersion, Description: p.Description, Readme: p.Readme, Values: p.Values, Schema: p.Schema}
	for _, v := range p.Versions {
		out.Versions = append(out.Versions, v.Version)
	}
	return out, nil
}

func uiRelease(r apps.Release) ui.Release {
	return ui.Release{Name: r.Name, Namespace: r.Namespace, Status: r.Status, Chart: r.Chart, ChartName: r.ChartName, AppVersion: r.AppVersion, Description: r.Description, Revision: r.Revision, Updated: r.Updated}
}

func (a uiApps) Releases(ctx context.Context, ident hub.Identity, cluster string) ([]ui.Release, error) {
	rs, err := a.f.Apps.List(ctx, ident, cluster, "")
	out := make([]ui.Release, 0, len(rs))
	for _, r := range rs {
		out = append(out, uiRelease(r))
	}
	return out, err
}

func (a uiApps) History(ctx context.Context, ident hub.Identity, cluster, ns, name string) ([]ui.Release, error) {
	rs, err := a.f.Apps.History(ctx, ident, cluster, ns, name)
	out := make([]ui.Release, 0, len(rs))
	for i := len(rs) - 1; i >= 0; i-- { // newest first
		out = append(out, uiRelease(rs[i]))
	}
	return out, err
}

func (a uiApps) Operations(ctx context.Context, ident hub.Identity, cluster string) ([]ui.Operation, error) {
	ops, err := a.f.Apps.Operations(ctx, ident, cluster, "", "")
	out := make([]ui.Operation, 0, len(ops))
	for _, o := range ops {
		out = append(out, ui.Operation{ID: o.ID, Namespace: o.Namespace, Release: o.Release, Kind: o.Kind, User: o.User, State: string(o.State), Message: o.Message, Log: o.Log, CreatedAt: o.CreatedAt})
	}
	return out, err
}

func (a uiApps) Install(ctx context.Context, ident hub.Identity, cluster string, in ui.InstallForm) (string, string, error) {
	ch, err := a.f.Catalog.Chart(ctx, apps.ChartRef{Repo: in.Repo, Name: in.Chart, Version: in.Version})
	if err != nil {
		return "", "", err
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(in.Values), &vals); err != nil {
		return "", "", fmt.Errorf("values are not YAML: %w", err)
	}
	if vals == nil {
		vals = map[string]any{}
	}
	r := apps.Request{Kind: apps.KindInstall, Cluster: cluster, Namespace: in.Namespace, Release: in.Name, Chart: ch, Values: vals}
	if in.Upgrade {
		r.Kind = apps.KindUpgrade
	}
	if in.DryRun {
		p, err := a.f.Apps.DryRun(ctx, ident, r)
		if err != nil {
			return "", "", err
		}
		if p.Diff != "" {
			return "", p.Diff, nil
		}
		return "", p.Manifest, nil
	}
	op, err := a.f.Apps.Start(ctx, ident, r)
	return op.ID, "", err
}

func (a uiApps) Rollback(ctx context.Context, ident hub.Identity, cluster, ns, name string, rev int) (string, error) {
	op, err := a.f.Apps.Start(ctx, ident, apps.Request{Kind: apps.KindRollback, Cluster: cluster, Namespace: ns, Release: name, Revision: rev})
	return op.ID, err
}

func (a uiApps) Uninstall(ctx context.Context, ident hub.Identity, cluster, ns, name string) (string, error) {
	op, err := a.f.Apps.Start(ctx, ident, apps.Request{Kind: apps.KindUninstall, Cluster: cluster, Namespace: ns, Release: name})
	return op.ID, err
}

func (a uiApps) Addons(ctx context.Context, ident hub.Identity, cluster string) ([]ui.AddonStatus, error) {
	if ident.ClusterRole(cluster) == "" {
		return nil, errors.New("no such cluster")
	}
	sts, err := a.f.Addons.Status(ctx, cluster)
	rollouts := map[string]string{}
	for _, r := range a.f.Addons.Rollouts() {
		switch {
		case r.StoppedAt != "":
			rollouts[r.Addon] = fmt.Sprintf("rollout of %s stopped at cluster %s: %s", r.To, r.StoppedAt, r.Reason)
		case !r.Finished:
			rollouts[r.Addon] = fmt.Sprintf("rolling out %s: %d cluster(s) done, %d pending", r.To, len(r.Done), len(r.Pending))
		}
	}
	out := make([]ui.AddonStatus, 0, len(sts))
	for _, s := range sts {
		out = append(out, ui.AddonStatus{Addon: s.Addon, Title: s.Title, Desired: s.Desired, Installed: s.Installed, Health: s.Health, Reason: s.Reason, Enabled: s.Enabled,
			Rollout: rollouts[s.Addon]})
	}
	return out, err
}

func (a uiApps) SetAddon(ctx context.Context, ident hub.Identity, cluster, addon string, enabled bool) error {
	return a.f.Addons.Enable(ctx, ident, addon, cluster, enabled)
}

func (a uiApps) SetAddonVersion(ctx context.Context, ident hub.Identity, addon, version string) error {
	_, err := a.f.Addons.SetVersion(ctx, ident, addon, version)
	return err
}

func (a uiApps) Repositories(context.Context, hub.Identity) ([]ui.RepoStatus, error) {
	var out []ui.RepoStatus
	for _, r := range a.f.Catalog.Repositories() {
		st := ui.RepoStatus{Name: r.Name, Kind: r.Kind, URL: r.URL, Progress: r.Progress, Error: r.RefreshError, Charts: r.Charts, Versions: r.Versions,
			Refreshing: r.Refreshing, HasSecret: r.HasSecret, CustomCA: r.CustomCA, BuiltIn: r.BuiltIn, Notice: r.Notice}
		for name := range r.Missing {
			st.Missing = append(st.Missing, name)
		}
		slices.Sort(st.Missing)
		if r.RefreshedAt != nil {
			st.RefreshedAt = *r.RefreshedAt
		}
		out = append(out, st)
	}
	return out, nil
}

func mayAdminCatalog(ident hub.Identity) error {
	if ident.Role != store.RoleAdmin || ident.Scope.ReadOnly || ident.Scope.Clusters != nil {
		return fmt.Errorf("hub user %q may not change the App Catalog: the admin role is required", ident.Name)
	}
	return nil
}

func (a uiApps) AddRepository(ctx context.Context, ident hub.Identity, in ui.RepoForm) error {
	if err := mayAdminCatalog(ident); err != nil {
		return err
	}
	_, err := a.f.Catalog.AddRepository(ctx, catalog.RepositoryInput{Name: in.Name, URL: in.URL, Username: in.Username, Password: in.Password,
		Token: in.Token, CAPEM: in.CAPEM, Charts: in.Charts})
	return err
}

func (a uiApps) RefreshRepository(_ context.Context, ident hub.Identity, name string) error {
	if err := mayAdminCatalog(ident); err != nil {
		return err
	}
	if _, err := a.f.Catalog.Repository(name); err != nil {
		return err
	}
	a.f.Catalog.Refresh(name)
	return nil
}
