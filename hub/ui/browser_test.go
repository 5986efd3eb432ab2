package ui_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/store"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// findChromium fails t, naming the package to install, when Chromium is
// missing: a UI test that silently skips proves nothing.
func findChromium(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatalf("the UI tests drive a real browser and Chromium is not installed (looked for %s and chromium on PATH): run `make setup-test` (as root it installs it; otherwise it prints the apt-get command)", chromiumPath)
	return ""
}

// artifactDir is where screenshots go: $ECO_ARTIFACTS/ui if set, else a
// directory under the system temp dir that outlives the test.
func artifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("ECO_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "eco-artifacts")
	}
	dir = filepath.Join(dir, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chrome is a headless Chromium for one test.
type chrome struct {
	t         *testing.T
	ctx       context.Context
	artifacts string

	mu     sync.Mutex // guards errors
	errors []string   // uncaught page exceptions
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	path := findChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The hub's certificate comes from a CA made for the test.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	c := &chrome{t: t, ctx: ctx, artifacts: artifactDir(t)}
	// The first Do starts the browser and binds it to ctx: no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting Chromium %s: %v", path, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// HTTP errors the test provokes (403s) are logged too; they are not bugs.
			if m.Type == chromedp.ConsoleException || (m.Type == chromedp.ConsoleError && !strings.Contains(m.Text, "Failed to load resource")) {
				c.mu.Lock()
				c.errors = append(c.errors, fmt.Sprintf("%s (%s:%d)", m.Text, m.URL, m.Line))
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.errors {
			t.Errorf("JavaScript exception in a page: %s", e)
		}
	})
	t.Logf("screenshots go to %s", c.artifacts)
	return c
}

// run runs actions, failing t with what was being done.
func (c *chrome) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.failed(what, err)
	}
}

// value runs a and returns its value, failing c's test with what was
// being done.
func value[T any](c *chrome, what string, a chromedp.Action[T]) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		c.failed(what, err)
	}
	return v
}

func (c *chrome) failed(what string, err error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	c.shot("failure")
	c.t.Fatalf("%s: %v (page at %s; screenshot failure.png in %s)", what, err, loc, c.artifacts)
}

// shot saves a full-page PNG screenshot named name.
func (c *chrome) shot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(c.artifacts, name+".png"), png, 0o644); err != nil {
		c.t.Error(err)
	}
}

// text returns the text of the first element matching sel.
func (c *chrome) text(sel string) string {
	c.t.Helper()
	c.run("waiting for "+sel, chromedp.WaitReady(chromedp.CSS(sel)))
	return value(c, "reading "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// wantText fails unless the page's main text contains every string.
func (c *chrome) wantText(page string, want ...string) {
	c.t.Helper()
	got := c.text("main")
	for _, w := range want {
		if !strings.Contains(got, w) {
			c.t.Errorf("%s does not show %q; it shows:\n%s", page, w, got)
		}
	}
}

// TestBrowser walks through the UI in Chromium against a real hub, a
// real local cluster and a real agent: sign in, import, install ECO with
// the downloaded YAML and real kubectl, watch the row turn Connected
// without a reload, use every dashboard, and be refused as a viewer.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster and Chromium")
	}
	findChromium(t)
	var cluster *localcluster.Cluster
	var ch *chrome
	var wg sync.WaitGroup
	wg.Go(func() { ch = newChrome(t) })
	cluster = clustertest.Start(t, localcluster.Config{Full: true, Name: "ui"})
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	h := newTestHub(t, hubOptions{poll: 500 * time.Millisecond, heartbeat: time.Second})
	ctx := t.Context()

	// Objects for the dashboards to show, created while the rest runs.
	objects := make(chan error, 1)
	go func() { objects <- createObjects(ctx, cluster) }()

	// Sign in.
	ch.run("opening the hub", chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	ch.shot("01-sign-in")
	ch.run("signing in",
		chromedp.SendKeys(chromedp.CSS("#token"), h.admin),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("table.clusters")))
	title := value(ch, "reading the title", chromedp.Title())
	if title != "Imported Clusters · eco" || ch.text("h1") != "Imported Clusters" {
		t.Errorf("after sign-in the page is %q / %q, want Imported Clusters", title, ch.text("h1"))
	}

	// Import a cluster.
	ch.run("opening the import form", chromedp.Click(chromedp.CSS(`a[href="/ui/clusters/new"]`)), chromedp.WaitVisible(chromedp.CSS("#name")))
	ch.run("filling the import form",
		chromedp.SendKeys(chromedp.CSS("#name"), "shop-prod"),
		chromedp.SetValue(chromedp.CSS("#provider"), "generic"),
		chromedp.SendKeys(chromedp.CSS("#region"), "local-1"))
	ch.shot("02-import")
	ch.run("importing", chromedp.Submit(chromedp.CSS("#name")), chromedp.WaitVisible(chromedp.CSS("#install-yaml")))
	cl, err := h.hub.Store().GetClusterByName(ctx, "shop-prod")
	if err != nil {
		t.Fatalf("the imported cluster is not in the store: %v", err)
	}
	ch.wantText("the ECO tab", "was imported", "kubectl apply -f eco-shop-prod.yaml", "NotInstalled", "agent has never connected")

	// It shows NotInstalled, in red, with its reason and an Install ECO link.
	row := fmt.Sprintf(`tr[data-id=%q]`, cl.ID)
	ch.run("opening the clusters page", chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS(row)))
	color := value(ch, "reading the status colour", chromedp.Evaluate[string](fmt.Sprintf(`getComputedStyle(document.querySelector('%s [data-field=state]')).color`, row)))
	if got := ch.text(row + " [data-field=state]"); got != "NotInstalled" || color != "rgb(179, 38, 30)" {
		t.Errorf("new cluster's status = %q in %s, want NotInstalled in red rgb(179, 38, 30)", got, color)
	}
	if got := ch.text(row + " [data-field=reason]"); got != store.ReasonNeverConnected {
		t.Errorf("reason shown = %q", got)
	}
	ch.shot("03-clusters-not-installed")

	// Select it with the radio button and Edit, then the ECO tab.
	ch.run("selecting and editing",
		chromedp.Click(chromedp.CSS(row+` input[type=radio]`)),
		chromedp.Click(chromedp.CSS(`button[value=edit]`)),
		chromedp.WaitVisible(chromedp.CSS(`dl.details`)))
	ch.wantText("the General tab", "Edit Cluster", "shop-prod", "Generic", "local-1", "NotInstalled")
	ch.shot("04-edit-general")
	ch.run("opening the ECO tab", chromedp.Click(chromedp.CSS(`a[href$="/eco"]`)), chromedp.WaitVisible(chromedp.CSS("#install-yaml")))

	// Copy the YAML.
	wantYAML, err := h.hub.InstallYAML(cl.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, perm := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ch.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: perm}, Setting: browser.PermissionSettingGranted, Origin: h.url,
		}); err != nil {
			t.Logf("granting %s: %v", perm, err)
		}
	}
	ch.run("copying the YAML", chromedp.Click(chromedp.CSS("#copy-yaml")), chromedp.WaitVisible(chromedp.CSS(`#copy-yaml[data-copied]`)))
	if got := ch.text("#copy-status"); got != "Copied to the clipboard." {
		t.Errorf("after Copy the page says %q", got)
	}
	cctx, cancel := context.WithTimeout(ch.ctx, 10*time.Second)
	copied, err := chromedp.Run(cctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	cancel()
	if err != nil {
		t.Logf("reading the clipboard back: %v (the page reported the copy)", err)
	} else if copied != string(wantYAML) {
		t.Errorf("the clipboard holds %d bytes, not the install YAML (%d bytes)", len(copied), len(wantYAML))
	}
	ch.shot("05-edit-eco-install")

	// Download it, and apply the downloaded file with real kubectl.
	downloads := t.TempDir()
	ch.run("downloading the YAML",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
			})
			return err
		}),
		chromedp.Click(chromedp.CSS("#download-yaml")))
	yamlPath := filepath.Join(downloads, "eco-shop-prod.yaml")
	eventually(t, 20*time.Second, func() error {
		b, err := os.ReadFile(yamlPath)
		if err != nil {
			return err
		}
		if string(b) != string(wantYAML) {
			return errors.New("the downloaded YAML differs from the hub's")
		}
		return nil
	})
	command := ch.text("#apply-cmd")
	args := strings.Fields(command)
	if len(args) != 4 || args[0] != "kubectl" || args[3] != "eco-shop-prod.yaml" {
		t.Fatalf("the page's command is %q", command)
	}
	kc := cluster.Kubectl(ctx, args[1:]...)
	kc.Dir = downloads
	if out, err := kc.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}

	// Watch the row turn Connected without a reload, as the agent the YAML
	// configured connects.
	ch.run("opening the clusters page", chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`))
			return err
		}))
	runAgent(t, cluster)
	ch.run("waiting for Connected",
		chromedp.Steps(voidOf(chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s [data-field=state]').textContent === "Connected"`, row),
			chromedp.WithPollingTimeout(45*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))))
	notReloaded := value(ch, "checking for a reload", chromedp.Evaluate[bool](`window.notReloaded === true`))
	if !notReloaded {
		t.Error("the page reloaded to show Connected")
	}
	value(ch, "waiting for versions", chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s [data-field=kubernetes]').textContent !== ""`, row),
		chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
	color = value(ch, "reading the status colour", chromedp.Evaluate[string](fmt.Sprintf(`getComputedStyle(document.querySelector('%s [data-field=state]')).color`, row)))
	installHidden := value(ch, "reading the install link", chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector('%s [data-field=install]').hidden`, row)))
	if color == "rgb(179, 38, 30)" || !installHidden {
		t.Errorf("Connected row: colour %s, install link hidden %v", color, installHidden)
	}
	if got := ch.text(row + " [data-field=kubernetes]"); got != localcluster.KubernetesVersion {
		t.Errorf("Kubernetes version shown = %q, want %s", got, localcluster.KubernetesVersion)
	}
	ch.shot("06-clusters-connected")

	ch.run("opening the ECO tab", chromedp.Navigate(h.url+"/ui/clusters/"+cl.ID+"/eco"), chromedp.WaitVisible(chromedp.CSS("#install-yaml")))
	ch.wantText("the ECO tab when connected", "Connected", "NotInstalled", localcluster.KubernetesVersion, agentTestVersion)
	ch.shot("07-edit-eco-connected")

	if err := <-objects; err != nil {
		t.Fatalf("creating the dashboards' objects: %v", err)
	}
	base := h.url + "/ui/clusters/" + cl.ID

	// Workloads, and the pod page with events and a log tail.
	ch.run("opening Workloads", chromedp.Navigate(base+"/workloads?ns=shop"), chromedp.WaitVisible(chromedp.CSS("#ns")))
	ch.wantText("Workloads", "Pods", "web-", "Running", cluster.NodeName, "Deployments", "1/1", "StatefulSets", "DaemonSets", "Jobs", "CronJobs", "nightly", "Services", "80/TCP")
	ch.shot("08-workloads")
	ch.run("opening the pod", chromedp.Click(chromedp.CSS(`a[href*="/pods/shop/web-"]`)), chromedp.WaitVisible(chromedp.CSS("#log")))
	ch.wantText("the pod page", "Events", "Scheduled", "hello from the web pod")
	ch.shot("09-pod")

	ch.run("opening Storage", chromedp.Navigate(base+"/storage?ns=shop"), chromedp.WaitVisible(chromedp.CSS("#ns")))
	ch.wantText("Storage", "PersistentVolumes", "pv-shop", "1Gi", "PersistentVolumeClaims", "data", "StorageClasses", "slow", "example.com/slow")
	ch.shot("10-storage")

	ch.run("opening RBAC", chromedp.Navigate(base+"/rbac?ns=shop"), chromedp.WaitVisible(chromedp.CSS("#subject")))
	ch.wantText("RBAC", "Roles", "reader", "ClusterRoles", "RoleBindings", "ClusterRoleBindings", "eco:admins", "ServiceAccounts", "default")
	ch.run("binding alice to view in shop",
		chromedp.SetValue(chromedp.CSS("#subjectKind"), "User"),
		chromedp.SendKeys(chromedp.CSS("#subject"), "alice"),
		chromedp.SetValue(chromedp.CSS("#roleKind"), "ClusterRole"),
		chromedp.SendKeys(chromedp.CSS("#role"), "view"),
		chromedp.Submit(chromedp.CSS("#subject")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	ch.wantText("RBAC after binding", "Created binding shop/eco-alice-view-", "User alice")
	ch.shot("11-rbac")
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	rbs, err := cs.RbacV1().RoleBindings("shop").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=eco-hub"})
	if err != nil || len(rbs.Items) != 1 || rbs.Items[0].Subjects[0].Name != "alice" || rbs.Items[0].RoleRef.Name != "view" {
		t.Errorf("bindings created from the UI: %+v, %v", rbs, err)
	}

	ch.run("opening Monitoring", chromedp.Navigate(base+"/monitoring"), chromedp.WaitVisible(chromedp.CSS("#ns")))
	ch.wantText("Monitoring", "Nodes", cluster.NodeName, "Ready", "metrics.k8s.io is not installed", "Recent events")
	ch.shot("12-monitoring")

	// A dashboard of a cluster without ECO says so plainly.
	off, err := h.hub.ImportCluster(ctx, hubImport("offline"))
	if err != nil {
		t.Fatal(err)
	}
	ch.run("opening an unconnected cluster's Workloads", chromedp.Navigate(h.url+"/ui/clusters/"+off.ID+"/workloads"), chromedp.WaitVisible(chromedp.CSS(".notconnected")))
	ch.wantText("an unconnected dashboard", "ECO is not connected to this cluster", "NotInstalled", "All Workloads dashboards", "All RBAC dashboards", "All Argo CD features")
	ch.shot("13-not-connected")

	// A POST without the CSRF token, with the session cookie, is refused.
	type answer struct {
		Status int
		Body   string
	}
	csrfless := value(ch, "posting without a CSRF token", chromedp.Evaluate[answer](`fetch("/ui/clusters/new", {method: "POST", body: new URLSearchParams({name: "csrf-less"})}).then(async r => ({Status: r.status, Body: await r.text()}))`,
		chromedp.EvalAwaitPromise))
	if csrfless.Status != http.StatusForbidden || !strings.Contains(csrfless.Body, "CSRF") {
		t.Errorf("CSRF-less POST = %d", csrfless.Status)
	}
	if _, err := h.hub.Store().GetClusterByName(ctx, "csrf-less"); err == nil {
		t.Error("the CSRF-less POST created a cluster")
	}

	// The clusters table at a narrow width.
	ch.run("narrowing the window", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS(row)))
	ch.shot("14-clusters-narrow")
	ch.run("widening the window", chromedp.EmulateViewport(1280, 900))

	// Sign out, sign in as a viewer: reading works, writing is refused by
	// the cluster's RBAC.
	ch.run("signing out", chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS(`button.link`)),
		chromedp.Click(chromedp.CSS(`button.link`)), chromedp.WaitVisible(chromedp.CSS("#token")))
	viewer := h.viewer("victor")
	ch.run("signing in as a viewer",
		chromedp.SendKeys(chromedp.CSS("#token"), viewer),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("table.clusters")))
	importLinks := value(ch, "counting import links", chromedp.Evaluate[int](`document.querySelectorAll('a[href="/ui/clusters/new"]').length`))
	if importLinks != 0 {
		t.Error("a viewer is offered Import")
	}
	ch.run("opening RBAC as a viewer", chromedp.Navigate(base+"/rbac?ns=shop"), chromedp.WaitVisible(chromedp.CSS("#subject")))
	ch.run("binding as a viewer",
		chromedp.SendKeys(chromedp.CSS("#subject"), "mallory"),
		chromedp.SendKeys(chromedp.CSS("#role"), "cluster-admin"),
		chromedp.Submit(chromedp.CSS("#subject")),
		// Not just any .error: the viewer's RBAC page has one already (a
		// section it may not read); the refusal's page has an alert.
		chromedp.WaitVisible(chromedp.CSS("p.error[role=alert]")))
	ch.wantText("a viewer's binding", "The cluster refused the binding", "forbidden", "victor")
	ch.shot("15-viewer-refused")
	rbs, err = cs.RbacV1().RoleBindings("shop").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=eco-hub"})
	if err != nil || len(rbs.Items) != 1 {
		t.Errorf("after the viewer's attempt there are %d UI bindings, want 1 (%v)", len(rbs.Items), err)
	}
	ch.run("opening Workloads as a viewer", chromedp.Navigate(base+"/workloads?ns=shop"), chromedp.WaitVisible(chromedp.CSS("#ns")))
	ch.wantText("Workloads as a viewer", "web-", "Running")

	if os.Getenv("ECO_UPDATE_SCREENSHOTS") != "" {
		copyScreenshots(t, ch.artifacts, "../../docs/screenshots",
			"01-sign-in", "03-clusters-not-installed", "05-edit-eco-install", "06-clusters-connected", "08-workloads", "11-rbac", "13-not-connected", "14-clusters-narrow")
	}
}

// voidOf drops an action's value.
func voidOf[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

const agentTestVersion = "v0.0.0-uitest-agent"

func hubImport(name string) hub.ImportRequest { return hub.ImportRequest{Name: name} }

// runAgent runs the agent that the applied install YAML describes, in
// this process: its Secret gives the hub URL, cluster ID, credential and
// CA, and a TokenRequest for its ServiceAccount gives it the token a pod
// would have mounted.
func runAgent(t *testing.T, c *localcluster.Cluster) {
	t.Helper()
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets(install.DefaultNamespace).Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the install's Secret: %v", err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(install.DefaultNamespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for the agent: %v", err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	// The identity token, as the Deployment's projected volume gives it.
	hubURL := string(sec.Data[install.KeyHubURL])
	idExp := int64(install.IdentityTokenExpirySeconds)
	idTok, err := cs.CoreV1().ServiceAccounts(install.DefaultNamespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &idExp, Audiences: []string{hubURL}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for the agent's identity token: %v", err)
	}
	identityFile := filepath.Join(t.TempDir(), "identity-token")
	if err := os.WriteFile(identityFile, []byte(idTok.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		HubURL:            hubURL,
		IdentityTokenFile: identityFile,
		ClusterID:         string(sec.Data[install.KeyClusterID]),
		Token:             string(sec.Data[install.KeyToken]),
		HubCAPEM:          sec.Data[install.KeyCACert],
		Proxy:             func(*http.Request) (*url.URL, error) { return nil, nil },
		Namespace:         install.DefaultNamespace,
		RESTConfig:        &rest.Config{Host: c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM}, BearerTokenFile: tokenFile},
		Version:           agentTestVersion,
		HealthListener:    ln,
		Logger:            testLogger(t, 0).With("side", "agent"),
	}
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(actx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("agent.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("agent.Run did not return within 30s of being cancelled")
		}
	})
}

// createObjects creates what the dashboards should show, with real
// kubectl, and waits for the deployment's pod to run.
func createObjects(ctx context.Context, c *localcluster.Cluster) error {
	const manifest = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: busybox}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: slow}
provisioner: example.com/slow
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-shop}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: slow
  hostPath: {path: /tmp/pv-shop}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: slow
  resources: {requests: {storage: 1Gi}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: shop}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
`
	cmd := c.Kubectl(ctx, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "-n", "shop", "rollout", "status", "deployment/web", "--timeout=90s").CombinedOutput(); err != nil {
		return fmt.Errorf("rollout: %v\n%s", err, out)
	}
	return c.AppendPodLog("hello from the web pod")
}

// copyScreenshots copies the named screenshots into dir (for README).
func copyScreenshots(t *testing.T, from, dir string, names ...string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(from, n+".png"))
		if err != nil {
			t.Error(err)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, n+".png"), b, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
