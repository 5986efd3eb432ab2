package main

import (
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hubclient"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// newFeaturesRig is a rig whose hub runs the App Catalog, the Helm
// service and the managed add-ons (package hubapps, as eco-hub does), the
// add-on charts built in without the generated metrics-server chart.
// configure, if set, changes the hub's config further.
func newFeaturesRig(t *testing.T, configure func(*localeco.HubConfig)) (*rig, *hubapps.Features) {
	t.Helper()
	var features *hubapps.Features
	r := newRigWith(t, func(c *localeco.HubConfig) {
		c.HeartbeatInterval = time.Second
		c.Mount = func(h *hub.Hub) error {
			var err error
			features, err = hubapps.Start(t.Context(), hubapps.Config{Hub: h, Logger: slog.New(slog.DiscardHandler), GeneratedCharts: fstest.MapFS{}})
			return err
		}
		if configure != nil {
			configure(c)
		}
	})
	// Registered after the hub's Close: runs before it.
	t.Cleanup(func() { features.Close() })
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	return r, features
}

// member creates hub member name with role in cluster id ("" for none)
// and logs it in as config name.yaml.
func (r *rig) member(name, role, id string) {
	r.t.Helper()
	if role != "" {
		if err := r.hub.Do(r.t.Context(), "POST", "/api/v1/grants", "", map[string]string{"kind": "user", "subject": name, "role": role, "cluster": id}, nil); err != nil {
			r.t.Fatal(err)
		}
	}
	var tok hub.TokenJSON
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "tokens", "create", name, "--role=member", "-o", "json")), &tok); err != nil {
		r.t.Fatal(err)
	}
	r.write(name+".token", tok.Token)
	r.ok(name+".yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, name+".token"))
}

// serveCharts serves the demo chart shop at 1.0.0 and 1.1.0 as a chart
// repository (package chartrepo) over TLS, behind basic auth if user is
// set, and returns its URL and CA file.
func (r *rig) serveCharts(user, password string) (string, string) {
	r.t.Helper()
	dir := r.t.TempDir()
	if err := chartrepo.WriteShopRepository(dir); err != nil {
		r.t.Fatal(err)
	}
	srv, err := chartrepo.New(chartrepo.Config{Dir: dir, Username: user, Password: password})
	if err != nil {
		r.t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv)
	r.t.Cleanup(ts.Close)
	ca := r.write("charts-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})))
	return ts.URL, ca
}

// TestCatalog: repositories added with their password from a file or
// stdin (never printed), refreshed; search finds the chart the served
// repository holds; a chart's page; a member may look but not change.
func TestCatalog(t *testing.T) {
	r, _ := newFeaturesRig(t, nil)
	const password = "hunter2-never-printed"
	var printed strings.Builder
	r.onRun = func(s string) { printed.WriteString(s) }
	url, ca := r.serveCharts("chartist", password)
	pwFile := r.write("repo.password", password+"\n")

	out := r.ok("admin.yaml", "catalog", "repos", "add", "demo", url, "--username=chartist", "--password-file="+pwFile, "--ca-file="+ca, "--wait")
	if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "demo") || !grepRow(out, "demo", "1", "2", "ok") {
		t.Errorf("repos add --wait:\n%s", out)
	}
	// The same with the password from stdin; then removed.
	if out, err := r.run("admin.yaml", password+"\n", "catalog", "repos", "add", "demo-stdin", url, "--username=chartist", "--password-file=-", "--ca-file="+ca, "--wait", "-o", "json"); err != nil {
		t.Fatalf("repos add --password-file=-: %v\n%s", err, out)
	} else {
		var repo hubclient.Repository
		if err := json.Unmarshal([]byte(out), &repo); err != nil || !repo.HasSecret || repo.Versions != 2 || repo.RefreshError != "" {
			t.Errorf("repos add -o json: %v %+v", err, repo)
		}
	}
	r.ok("admin.yaml", "catalog", "repos", "remove", "demo-stdin")
	// A wrong password: --wait fails with the refresh's error.
	r.write("wrong.password", "wrong")
	r.fails("admin.yaml", "the refresh failed", "catalog", "repos", "add", "bad", url, "--username=chartist", "--password-file="+filepath.Join(r.dir, "wrong.password"), "--ca-file="+ca, "--wait")

	list := r.ok("admin.yaml", "catalog", "repos", "list")
	if !grepRow(list, "eco-addons", "builtin (built in)") || !grepRow(list, "demo", url) || strings.Contains(list, "demo-stdin") {
		t.Errorf("repos list:\n%s", list)
	}
	if out := r.ok("admin.yaml", "catalog", "repos", "refresh", "demo", "--wait"); !grepRow(out, "demo", "ok") {
		t.Errorf("repos refresh --wait:\n%s", out)
	}
	// Shell completion of repositories and charts.
	if out := r.ok("admin.yaml", "__complete", "catalog", "repos", "refresh", "de"); !strings.Contains(out, "demo\t"+url) || strings.Contains(out, "eco-addons") {
		t.Errorf("completing a repository: %q", out)
	}
	if out := r.ok("admin.yaml", "__complete", "catalog", "show", "demo/"); !strings.Contains(out, "demo/shop\t1.1.0") {
		t.Errorf("completing a chart: %q", out)
	}

	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"search", "shop"}, []string{"demo/shop", "1.1.0", "2.4.1"}, nil},
		{[]string{"search", "web", "shop"}, []string{"demo/shop"}, nil},
		{[]string{"search", "database"}, nil, []string{"demo/shop"}},
		{[]string{"search"}, []string{"demo/shop", "eco-addons/eco-logging"}, nil},
		{[]string{"show", "demo/shop"}, []string{"VERSION:      1.1.0", "1.0.0", "DEFAULT VALUES (1.1.0)", "replicaCount: 2"}, []string{"README"}},
		{[]string{"show", "demo/shop", "--version=1.0.0", "--readme"}, []string{"VERSION:      1.0.0", "DEFAULT VALUES (1.0.0)", "README:\n# shop"}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r.t = t
			defer func() { r.t = t }()
			out := r.ok("admin.yaml", append([]string{"catalog"}, tc.args...)...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("%q in\n%s", n, out)
				}
			}
		})
	}
	r.t = t
	var page hubclient.ChartPage
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "catalog", "show", "demo/shop", "-o", "json")), &page); err != nil {
		t.Fatal(err)
	}
	if page.Version != "1.1.0" || len(page.Versions) != 2 || !strings.Contains(page.Values, "replicaCount") || page.Readme != "" {
		t.Errorf("show -o json: %+v", page)
	}

	// A member looks, and may not change the catalog.
	r.member("mia", "", "")
	if out := r.ok("mia.yaml", "catalog", "search", "shop"); !strings.Contains(out, "demo/shop") {
		t.Errorf("a member's search:\n%s", out)
	}
	for _, tc := range []struct {
		name, config, want string
		args               []string
	}{
		{"a member adds", "mia.yaml", "not allowed (403)", []string{"repos", "add", "x", url}},
		{"a member removes", "mia.yaml", "the admin role is required", []string{"repos", "remove", "demo"}},
		{"a member refreshes", "mia.yaml", "not allowed (403)", []string{"repos", "refresh", "demo"}},
		{"the built-in repository", "admin.yaml", "built into the hub", []string{"repos", "remove", "eco-addons"}},
		{"an unknown chart", "admin.yaml", "not found (404)", []string{"show", "demo/nothere"}},
		{"not REPO/CHART", "admin.yaml", "want REPO/CHART", []string{"show", "shop"}},
		{"a password on the command line", "admin.yaml", "unknown flag: --password", []string{"repos", "add", "x", url, "--username=u", "--password=" + password}},
		{"a password without a user", "admin.yaml", "needs --username", []string{"repos", "add", "x", url, "--password-file=" + pwFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.t = t
			defer func() { r.t = t }()
			r.fails(tc.config, tc.want, append([]string{"catalog"}, tc.args...)...)
		})
	}
	r.t = t
	if strings.Contains(printed.String(), password) {
		t.Errorf("ecoctl printed the repository's password")
	}
}

// TestAddons: the curated list with versions; enabling and disabling in
// one cluster and for all, the health with its reason (ECO not
// connected); a version rolled out; a member refused.
func TestAddons(t *testing.T) {
	r, _ := newFeaturesRig(t, nil)
	r.ok("admin.yaml", "clusters", "import", "prod")
	r.ok("admin.yaml", "clusters", "import", "staging")

	list := r.ok("admin.yaml", "addons", "list")
	for _, row := range [][]string{
		{"metrics-server", "eco-addons/metrics-server", "3.12.2", "kube-system"},
		{"monitoring", "eco-addons/eco-monitoring", "0.1.0"},
		{"logging", "eco-addons/eco-logging", "0.1.0", "eco-logging"},
	} {
		if !grepRow(list, row...) {
			t.Errorf("addons list has no row %v:\n%s", row, list)
		}
	}

	status := func(cluster string) map[string]hubclient.AddonStatus {
		t.Helper()
		var st hubclient.ClusterAddons
		if err := json.Unmarshal([]byte(r.ok("admin.yaml", "addons", "status", cluster, "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.Connected {
			t.Errorf("%s is connected", cluster)
		}
		out := map[string]hubclient.AddonStatus{}
		for _, s := range st.Items {
			out[s.Addon] = s
		}
		return out
	}
	if out := r.ok("admin.yaml", "addons", "enable", "logging", "prod"); !strings.Contains(out, "add-on logging enabled in cluster prod") {
		t.Errorf("enable: %s", out)
	}
	if s := status("prod")["logging"]; !s.Enabled || s.Health != "unknown" || !strings.Contains(s.Reason, "not connected") || s.Desired != "0.1.0" {
		t.Errorf("logging in prod: %+v", s)
	}
	if s := status("staging")["logging"]; s.Enabled {
		t.Errorf("logging enabled in staging: %+v", s)
	}
	table := r.ok("admin.yaml", "addons", "status", "prod")
	if !grepRow(table, "logging", "true", "0.1.0", "unknown", "eco is not connected") || !strings.Contains(table, "ECO is not connected to cluster prod (NotInstalled)") {
		t.Errorf("addons status:\n%s", table)
	}
	r.ok("admin.yaml", "addons", "enable", "monitoring", "--all")
	if s := status("staging")["monitoring"]; !s.Enabled {
		t.Errorf("monitoring --all: staging %+v", s)
	}
	r.ok("admin.yaml", "addons", "disable", "logging", "prod")
	if s := status("prod")["logging"]; s.Enabled || s.Health != "disabled" {
		t.Errorf("logging disabled in prod: %+v", s)
	}

	if out := r.ok("admin.yaml", "addons", "set-version", "monitoring", "0.2.0"); !strings.Contains(out, "rolling out 0.2.0 (from 0.1.0)") {
		t.Errorf("set-version: %s", out)
	}
	list = r.ok("admin.yaml", "addons", "list")
	if !grepRow(list, "monitoring", "eco-addons/eco-monitoring", "0.2.0") || !grepRow(list, "monitoring", "0.1.0", "0.2.0") || !strings.Contains(list, "ROLLOUTS:") {
		t.Errorf("addons list after set-version:\n%s", list)
	}
	r.ok("admin.yaml", "addons", "resync")
	if out := r.ok("admin.yaml", "__complete", "addons", "enable", "lo"); !strings.Contains(out, "logging\tLog shipping") {
		t.Errorf("completing an add-on: %q", out)
	}
	if out := r.ok("admin.yaml", "__complete", "addons", "disable", "logging", "st"); !strings.Contains(out, "staging") {
		t.Errorf("completing the cluster of an add-on: %q", out)
	}

	r.member("mia", "admin", "")
	for _, tc := range []struct {
		name, config, want string
		args               []string
	}{
		{"neither a cluster nor --all", "admin.yaml", "give a CLUSTER or --all", []string{"enable", "logging"}},
		{"both", "admin.yaml", "give a CLUSTER or --all", []string{"enable", "logging", "prod", "--all"}},
		{"an unknown add-on", "admin.yaml", "not found (404)", []string{"enable", "nope", "prod"}},
		{"an unknown cluster", "admin.yaml", "not found (404)", []string{"status", "nope"}},
		{"a member enables", "mia.yaml", "may not manage add-ons", []string{"enable", "logging", "prod"}},
		{"a member sets a version", "mia.yaml", "not allowed (403)", []string{"set-version", "logging", "0.3.0"}},
		{"a member resyncs", "mia.yaml", "not allowed (403)", []string{"resync"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.t = t
			defer func() { r.t = t }()
			r.fails(tc.config, tc.want, append([]string{"addons"}, tc.args...)...)
		})
	}
}

// TestArgoCDWithoutInstance: on a hub that registers no cluster into Argo
// CD, ecoctl argocd says so (and still says when the cluster is unknown).
func TestArgoCDWithoutInstance(t *testing.T) {
	r := newRig(t)
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	r.ok("admin.yaml", "clusters", "import", "prod")
	r.fails("admin.yaml", "this hub has no Argo CD instance", "argocd", "prod")
	r.fails("admin.yaml", `no cluster with ID or name "nope"`, "argocd", "nope")
}

// TestCloud: an EKS account (the hub's provider talks to awsfake) added
// with its secret from a file and from stdin — the secret in no output,
// never a flag; discovery, import by name and SCOPE/NAME, the one-click
// install refused for a private API server with what to do instead, an
// account in use kept.
func TestCloud(t *testing.T) {
	f := awsfake.New()
	t.Cleanup(f.Close)
	const secret = "s3cret-never-shown"
	f.AddKey("AKIDECO", secret)
	f.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.31"}, awsfake.Cluster{Name: "new", Status: "CREATING"})
	f.SetClusters("us-east-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.30", Private: true})
	r, _ := newFeaturesRig(t, func(c *localeco.HubConfig) {
		c.Configure = func(hc *hub.Config) {
			hc.CloudProviders = map[store.Provider]cloud.Provider{
				store.ProviderEKS: aws.New(aws.Config{EKSEndpoint: f.URL, STSEndpoint: f.URL, MaxAttempts: 1}),
			}
		}
	})
	var printed strings.Builder
	r.onRun = func(s string) { printed.WriteString(s) }

	if out := r.ok("admin.yaml", "cloud", "accounts", "list"); !strings.Contains(out, "providers this hub enables: eks") {
		t.Errorf("accounts list:\n%s", out)
	}
	secretFile := r.write("aws.secret", secret+"\n")
	add := []string{"cloud", "accounts", "add", "prod-aws", "--provider=eks", "--scope=eu-west-1,us-east-1", "--access-key-id=AKIDECO"}
	r.fails("admin.yaml", "give --secret-file", add...)
	r.fails("admin.yaml", "unknown flag: --secret", append(add, "--secret="+secret)...)
	r.fails("admin.yaml", "unknown flag: --secret-access-key", append(add, "--secret-access-key="+secret)...)
	r.write("wrong.secret", "wrong")
	r.fails("admin.yaml", "credentials rejected", append(add, "--secret-file="+filepath.Join(r.dir, "wrong.secret"))...)
	var acct cloud.AccountInfo
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", append(add, "--secret-file="+secretFile, "-o", "json")...)), &acct); err != nil {
		t.Fatal(err)
	}
	if acct.Name != "prod-aws" || acct.Provider != "eks" || len(acct.Scopes) != 2 {
		t.Errorf("added %+v", acct)
	}
	r.fails("admin.yaml", "409", append(add, "--secret-file="+secretFile)...)
	// From stdin.
	if out, err := r.run("admin.yaml", secret+"\n", "cloud", "accounts", "add", "eu-aws", "--provider=eks", "--scope=eu-west-1", "--access-key-id=AKIDECO", "--secret-file=-"); err != nil {
		t.Fatalf("accounts add --secret-file=-: %v\n%s", err, out)
	}
	for _, o := range []string{"table", "json", "yaml"} {
		if out := r.ok("admin.yaml", "cloud", "accounts", "list", "-o", o); !strings.Contains(out, "prod-aws") || !strings.Contains(out, "eu-aws") {
			t.Errorf("accounts list -o %s:\n%s", o, out)
		}
	}

	if out := r.ok("admin.yaml", "__complete", "cloud", "discover", "prod"); !strings.Contains(out, "prod-aws\teks "+acct.ID) || strings.Contains(out, "eu-aws") {
		t.Errorf("completing an account: %q", out)
	}
	disc := r.ok("admin.yaml", "cloud", "discover", "prod-aws")
	if !grepRow(disc, "prod", "eu-west-1", "1.31", "Healthy", "public", "importable") ||
		!grepRow(disc, "new", "eu-west-1", "no: still being created") ||
		!grepRow(disc, "prod", "us-east-1", "private", "importable") {
		t.Errorf("discover:\n%s", disc)
	}
	if out := r.ok("admin.yaml", "cloud", "discover", acct.ID, "--region=us-east-1"); strings.Contains(out, "eu-west-1") || !strings.Contains(out, "us-east-1") {
		t.Errorf("discover --region=us-east-1:\n%s", out)
	}

	r.fails("admin.yaml", `2 clusters are named "prod": give one of eu-west-1/prod, us-east-1/prod`, "cloud", "import", "prod-aws", "prod")
	r.fails("admin.yaml", `sees no cluster "gone"`, "cloud", "import", "prod-aws", "gone")
	out := r.ok("admin.yaml", "cloud", "import", "prod-aws", "eu-west-1/prod", f.ARN("us-east-1", "prod"))
	if !grepRow(out, f.ARN("eu-west-1", "prod"), "prod", "imported") || !grepRow(out, "prod-us-east-1", "private API server") {
		t.Errorf("import:\n%s", out)
	}
	out, err := r.run("admin.yaml", "", "cloud", "import", "prod-aws", "eu-west-1/prod")
	if err == nil || !strings.Contains(err.Error(), "1 of 1 imports failed") || !strings.Contains(out, "already imported") {
		t.Errorf("importing again: %v\n%s", err, out)
	}
	if out := r.ok("admin.yaml", "clusters", "get", "prod-us-east-1"); !grepRow(out, "prod-us-east-1", "eks", "NotInstalled") {
		t.Errorf("the imported cluster:\n%s", out)
	}

	r.fails("admin.yaml", "no one-click install for cluster prod-us-east-1; apply its install YAML yourself, from a machine that reaches its API server: ecoctl install prod-us-east-1 --apply", "cloud", "install", "prod-us-east-1")
	r.fails("admin.yaml", "no public endpoint", "cloud", "install", "prod-us-east-1")
	r.ok("admin.yaml", "clusters", "import", "generic-one")
	r.fails("admin.yaml", "no one-click install for cluster generic-one", "cloud", "install", "generic-one")

	r.fails("admin.yaml", "cloud account prod-aws still has clusters imported from it", "cloud", "accounts", "remove", "prod-aws")
	r.ok("admin.yaml", "clusters", "delete", "prod")
	r.ok("admin.yaml", "clusters", "delete", "prod-us-east-1")
	if out := r.ok("admin.yaml", "cloud", "accounts", "remove", "prod-aws"); !strings.Contains(out, "cloud account prod-aws ("+acct.ID+") removed") {
		t.Errorf("remove: %s", out)
	}

	// Hub admins only.
	r.member("mia", "admin", "")
	r.fails("mia.yaml", "not allowed (403)", "cloud", "accounts", "list")

	if p := printed.String(); strings.Contains(p, secret) {
		t.Errorf("ecoctl printed the account's secret")
	}
}

// grepRow reports whether a line of table holds every cell, in order.
func grepRow(table string, cells ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		rest, ok := line, true
		for _, c := range cells {
			i := strings.Index(rest, c)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(c):]
		}
		if ok {
			return true
		}
	}
	return false
}
