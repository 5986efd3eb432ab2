package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.uber.org/goleak"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localeco"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/eco-project/eco/localcluster.(*process).start.func1"))
}

// rig is a live hub (localeco: TLS on loopback, SQLite) and ecoctl's
// files.
type rig struct {
	t      *testing.T
	hub    *localeco.Hub
	dir    string
	caFile string
	env    map[string]string
	// onRun, if set, sees everything each run printed, and its error.
	onRun func(string)
}

func newRig(t *testing.T) *rig { return newRigWith(t, nil) }

// newRigWith is newRig with the hub's config changed by configure (its
// features mounted, cloud providers).
func newRigWith(t *testing.T, configure func(*localeco.HubConfig)) *rig {
	t.Helper()
	dir := t.TempDir()
	cfg := localeco.HubConfig{Dir: filepath.Join(dir, "hub")}
	if configure != nil {
		configure(&cfg)
	}
	h, err := localeco.StartHub(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r := &rig{t: t, hub: h, dir: dir, caFile: filepath.Join(dir, "ca.crt"), env: map[string]string{}}
	r.write("ca.crt", string(h.CAPEM))
	r.write("admin.token", h.AdminToken+"\n")
	return r
}

func (r *rig) write(name, content string) string {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// run runs ecoctl with args and the given config file.
func (r *rig) run(config, stdin string, args ...string) (string, error) {
	r.t.Helper()
	stdout, stderr, err := r.runSplit(config, stdin, args...)
	return stdout + stderr, err
}

// runSplit runs ecoctl and returns its stdout and stderr apart.
func (r *rig) runSplit(config, stdin string, args ...string) (string, string, error) {
	r.t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(strings.NewReader(stdin), &out, &errb, func(k string) string { return r.env[k] })
	root.SetArgs(append([]string{"--config=" + filepath.Join(r.dir, config)}, args...))
	err := root.ExecuteContext(r.t.Context())
	if r.onRun != nil {
		r.onRun(out.String() + errb.String() + fmt.Sprint(err))
	}
	return out.String(), errb.String(), err
}

// ok runs ecoctl and fails the test on an error.
func (r *rig) ok(config string, args ...string) string {
	r.t.Helper()
	out, err := r.run(config, "", args...)
	if err != nil {
		r.t.Fatalf("ecoctl %v: %v\n%s", args, err, out)
	}
	return out
}

// fails runs ecoctl and wants an error saying want.
func (r *rig) fails(config, want string, args ...string) {
	r.t.Helper()
	out, err := r.run(config, "", args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		r.t.Errorf("ecoctl %v: err = %v, want it to say %q\n%s", args, err, want, out)
	}
}

func TestLogin(t *testing.T) {
	r := newRig(t)
	out := r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	if !strings.Contains(out, "Logged in") || !strings.Contains(out, "role admin") {
		t.Errorf("login printed %q", out)
	}
	fi, err := os.Stat(filepath.Join(r.dir, "admin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(filepath.Join(r.dir, "admin.yaml"))
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.Hub != r.hub.URL || c.Token != r.hub.AdminToken || c.CA != string(r.hub.CAPEM) {
		t.Errorf("config %+v", c)
	}
	if out := r.ok("admin.yaml", "whoami", "-o", "json"); !strings.Contains(out, `"role": "admin"`) {
		t.Errorf("whoami: %s", out)
	}
	// The token from stdin.
	if out, err := r.run("stdin.yaml", r.hub.AdminToken+"\n", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-stdin"); err != nil {
		t.Errorf("login --token-stdin: %v\n%s", err, out)
	}

	// A closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()
	bad := r.write("bad.token", "eco_bad_0000000000000000000000000000000000000000\n")
	otherCA := r.write("other-ca.crt", string(otherCAPEM(t)))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"login", closed, "--ca-file=" + r.caFile, "--token-file=" + bad}, "hub unreachable"},
		{"untrusted certificate", []string{"login", r.hub.URL, "--ca-file=" + otherCA, "--token-file=" + filepath.Join(r.dir, "admin.token")}, "hub certificate not trusted"},
		{"system roots do not know the hub", []string{"login", r.hub.URL, "--token-file=" + filepath.Join(r.dir, "admin.token")}, "hub certificate not trusted"},
		{"plain http", []string{"login", strings.Replace(r.hub.URL, "https", "http", 1), "--token-file=" + bad}, "want https"},
		{"bad token", []string{"login", r.hub.URL, "--ca-file=" + r.caFile, "--token-file=" + bad}, "refused the token (401)"},
		{"no token", []string{"login", r.hub.URL, "--ca-file=" + r.caFile}, "no token"},
		{"not a CA", []string{"login", r.hub.URL, "--ca-file=" + bad, "--token-file=" + bad}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.t = t
			defer func() { r.t = t }()
			r.fails("failed.yaml", tc.want, tc.args...)
		})
	}
	r.t = t
	if _, err := os.Stat(filepath.Join(r.dir, "failed.yaml")); err == nil {
		t.Error("a failed login wrote the config")
	}
	r.fails("none.yaml", "not logged in", "clusters", "list")
}

// otherCAPEM is the CA of another hub.
func otherCAPEM(t *testing.T) []byte {
	h, err := localeco.StartHub(t.Context(), localeco.HubConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	return h.CAPEM
}

func TestClustersAndTokens(t *testing.T) {
	r := newRig(t)
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))

	var created hub.ClusterJSON
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "clusters", "import", "prod-eu", "--provider=eks", "--region=eu-west-1", "-o", "json")), &created); err != nil {
		t.Fatal(err)
	}
	if created.Name != "prod-eu" || created.Provider != "eks" || created.ID == "" {
		t.Fatalf("imported %+v", created)
	}
	r.ok("admin.yaml", "clusters", "import", "staging")

	table := r.ok("admin.yaml", "clusters", "list")
	if !strings.HasPrefix(table, "NAME") || !strings.Contains(table, "prod-eu") || !strings.Contains(table, "staging") || !strings.Contains(table, "NotInstalled") {
		t.Errorf("table:\n%s", table)
	}
	var listed []hub.ClusterJSON
	if err := yaml.Unmarshal([]byte(r.ok("admin.yaml", "clusters", "list", "-o", "yaml", "--search", "prod")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != created.ID {
		t.Errorf("list --search prod -o yaml: %+v", listed)
	}
	// By name and by ID.
	for _, ref := range []string{"prod-eu", created.ID} {
		if out := r.ok("admin.yaml", "clusters", "get", ref); !strings.Contains(out, created.ID) {
			t.Errorf("get %s: %s", ref, out)
		}
	}
	r.fails("admin.yaml", "not found (404)", "clusters", "get", "nope")

	// Rename and label: the ID stays; labels are set and removed as
	// kubectl label does; the hub's refusals come through.
	var renamed hub.ClusterJSON
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "clusters", "rename", "prod-eu", "prod-west", "-o", "json")), &renamed); err != nil {
		t.Fatal(err)
	}
	if renamed.ID != created.ID || renamed.Name != "prod-west" {
		t.Errorf("renamed: %+v", renamed)
	}
	r.fails("admin.yaml", "409", "clusters", "rename", "prod-west", "staging")
	if out := r.ok("admin.yaml", "clusters", "label", "prod-west", "env=prod", "tier=web"); out != "env=prod\ntier=web\n" {
		t.Errorf("label printed %q", out)
	}
	if out := r.ok("admin.yaml", "clusters", "label", created.ID, "tier-", "env=staging"); out != "env=staging\n" {
		t.Errorf("label with a removal printed %q", out)
	}
	r.fails("admin.yaml", "400", "clusters", "label", "prod-west", "eco.dev/cluster-id=x")
	r.fails("admin.yaml", "want KEY=VALUE", "clusters", "label", "prod-west", "env")
	r.ok("admin.yaml", "clusters", "rename", "prod-west", "prod-eu")
	r.fails("admin.yaml", `-o "xml"`, "clusters", "list", "-o", "xml")

	if out := r.ok("admin.yaml", "status", "prod-eu", "-o", "json"); !strings.Contains(out, `"state": "NotInstalled"`) {
		t.Errorf("status: %s", out)
	}
	y := r.ok("admin.yaml", "install", "prod-eu")
	if !strings.Contains(y, "kind: Deployment") || !strings.Contains(y, created.ID) {
		t.Errorf("install printed no install YAML for the cluster:\n%.400s", y)
	}

	// Behind a proxy.
	y = r.ok("admin.yaml", "install", "prod-eu", "--https-proxy=http://proxy.corp:3128", "--no-proxy=10.0.0.0/8")
	if !strings.Contains(y, "name: HTTPS_PROXY\n          value: http://proxy.corp:3128") || !strings.Contains(y, "value: 10.0.0.0/8") {
		t.Errorf("install --https-proxy: no HTTPS_PROXY/NO_PROXY in\n%s", grepLines(y, "PROXY", 1))
	}
	r.fails("admin.yaml", "400", "install", "prod-eu", "--https-proxy=ftp://proxy.corp")

	// Hub user ci may administer every cluster; its token below is
	// scoped to prod-eu and read-only.
	if err := r.hub.Do(t.Context(), "POST", "/api/v1/grants", "", map[string]string{"kind": "user", "subject": "ci", "role": "admin"}, nil); err != nil {
		t.Fatal(err)
	}
	var tok hub.TokenJSON
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "tokens", "create", "ci", "--role=member", "--clusters=prod-eu", "--read-only", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.Token == "" || len(tok.Clusters) != 1 || tok.Clusters[0] != created.ID {
		t.Fatalf("token %+v", tok)
	}
	if out := r.ok("admin.yaml", "tokens", "list"); !strings.Contains(out, tok.ID) || !strings.Contains(out, "ci") {
		t.Errorf("tokens list:\n%s", out)
	}
	r.write("ci.token", tok.Token)
	r.ok("ci.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "ci.token"))
	if out := r.ok("ci.yaml", "clusters", "list"); strings.Contains(out, "staging") || !strings.Contains(out, "prod-eu") {
		t.Errorf("the scoped token lists:\n%s", out)
	}
	// Refused, with the hub's reason.
	r.fails("ci.yaml", "not allowed (403)", "tokens", "list")
	r.fails("ci.yaml", "not allowed (403)", "clusters", "import", "mine")
	r.fails("ci.yaml", "not allowed (403)", "install", "prod-eu")
	r.fails("ci.yaml", "not found (404)", "clusters", "get", "staging")

	r.ok("admin.yaml", "tokens", "revoke", tok.ID)
	r.fails("ci.yaml", "refused the token (401)", "clusters", "list")

	r.ok("admin.yaml", "clusters", "delete", "staging")
	if out := r.ok("admin.yaml", "clusters", "list"); strings.Contains(out, "staging") {
		t.Errorf("staging still listed:\n%s", out)
	}
}

func TestGetCredentials(t *testing.T) {
	r := newRig(t)
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	r.ok("admin.yaml", "clusters", "import", "prod-eu")

	// A kubeconfig with a context of its own, which must survive.
	kc := filepath.Join(r.dir, "kubeconfig")
	existing := clientcmdapi.NewConfig()
	existing.Clusters["home"] = &clientcmdapi.Cluster{Server: "https://home.example:6443"}
	existing.AuthInfos["me"] = &clientcmdapi.AuthInfo{Token: "t"}
	existing.Contexts["home"] = &clientcmdapi.Context{Cluster: "home", AuthInfo: "me"}
	existing.CurrentContext = "home"
	for _, f := range []string{kc, filepath.Join(r.dir, "home.kubeconfig")} {
		if err := clientcmd.WriteToFile(*existing, f); err != nil {
			t.Fatal(err)
		}
	}
	r.ok("admin.yaml", "get-credentials", "prod-eu", "--kubeconfig="+kc, "--ttl=1h")
	got, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	if got.CurrentContext != "eco-prod-eu" || got.Contexts["home"] == nil || got.Contexts["eco-prod-eu"] == nil {
		t.Fatalf("merged kubeconfig: current %q, contexts %v", got.CurrentContext, got.Contexts)
	}
	c := got.Clusters[got.Contexts["eco-prod-eu"].Cluster]
	if c == nil || !strings.HasPrefix(c.Server, r.hub.URL+"/clusters/") || len(c.CertificateAuthorityData) == 0 {
		t.Errorf("merged cluster %+v", c)
	}
	if fi, _ := os.Stat(kc); fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v", fi.Mode().Perm())
	}
	// Again: replaced, not duplicated.
	r.ok("admin.yaml", "get-credentials", "prod-eu", "--kubeconfig="+kc)
	again, _ := clientcmd.LoadFromFile(kc)
	if len(again.Contexts) != 2 {
		t.Errorf("contexts after a second merge: %v", again.Contexts)
	}

	// --apply refuses a context that does not look like the cluster.
	r.fails("admin.yaml", "does not look like cluster prod-eu", "install", "prod-eu", "--apply", "--kubeconfig="+filepath.Join(r.dir, "home.kubeconfig"), "--kubectl=false")
}

func TestCompletion(t *testing.T) {
	r := newRig(t)
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if out := r.ok("x.yaml", "completion", sh); len(out) < 100 {
			t.Errorf("completion %s: %q", sh, out)
		}
	}
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	r.ok("admin.yaml", "clusters", "import", "prod-eu")
	if out := r.ok("admin.yaml", "__complete", "status", "pro"); !strings.Contains(out, "prod-eu") {
		t.Errorf("completing a cluster name: %q", out)
	}
}

// TestDocsNameEveryCommand keeps docs/ecoctl.md complete.
func TestDocsNameEveryCommand(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ecoctl.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			if (sub.Runnable() || sub.Name() == "completion") && !strings.Contains(string(doc), "`"+sub.CommandPath()) {
				t.Errorf("docs/ecoctl.md does not name %q", sub.CommandPath())
			}
			if sub.Name() != "completion" { // one line for its four shells
				walk(sub)
			}
		}
	}
	root := newRoot(strings.NewReader(""), io.Discard, io.Discard, func(string) string { return "" })
	root.InitDefaultCompletionCmd()
	walk(root)
}

// TestStatusWatchThroughHubRestart: status --watch outlives a hub restart
// (an upgrade), saying so, and fails at once on a hub that refuses it.
func TestStatusWatchThroughHubRestart(t *testing.T) {
	r := newRig(t)
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	r.ok("admin.yaml", "clusters", "import", "prod")
	out := &lockedBuffer{}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		root := newRoot(strings.NewReader(""), out, out, func(string) string { return "" })
		root.SetArgs([]string{"--config=" + filepath.Join(r.dir, "admin.yaml"), "status", "prod", "--watch", "--interval=50ms", "--timeout=2s"})
		done <- root.ExecuteContext(ctx)
	}()
	waitFor(t, out, "NotInstalled")
	addr := strings.TrimPrefix(r.hub.URL, "https://")
	r.hub.Close()
	waitFor(t, out, "hub unreachable")
	h, err := localeco.StartHub(t.Context(), localeco.HubConfig{Dir: filepath.Join(r.dir, "hub"), Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	waitFor(t, out, "the hub answers again")
	select {
	case err := <-done:
		t.Fatalf("status --watch ended: %v\n%s", err, out.String())
	default:
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("status --watch: %v", err)
	}

	// A refused token ends it with the reason.
	r.env[envToken] = "ecot_" + strings.Repeat("x", 43)
	r.fails("admin.yaml", "refused the token (401)", "status", "prod", "--watch")
}

// grepLines returns the lines of s holding sub, with after lines after each.
func grepLines(s, sub string, after int) string {
	lines := strings.Split(s, "\n")
	var out []string
	for i, l := range lines {
		if strings.Contains(l, sub) {
			out = append(out, lines[i:min(len(lines), i+after+1)]...)
		}
	}
	return strings.Join(out, "\n")
}
