package argocd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var applicationsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// freePort returns a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// moduleDir returns where the Go module cache keeps argo-cd's source
// (its CRDs are in manifests/crds).
func moduleDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-cd/v3").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// process runs a program until the test ends, its output in a log file
// shown when the test fails.
func process(t *testing.T, name string, env []string, bin string, args ...string) {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		f.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logFile)
			t.Logf("%s log (last lines):\n%s", name, lines(string(data), 40))
		}
	})
}

// gitRepo creates a git repository with a Deployment and a ConfigMap and
// returns its file:// URL.
func gitRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(filepath.Join(dir, "guestbook"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"guestbook/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: guestbook}
spec:
  replicas: 1
  selector: {matchLabels: {app: guestbook}}
  template:
    metadata: {labels: {app: guestbook}}
    spec:
      containers: [{name: web, image: registry.example/guestbook:1}]
`,
		"guestbook/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: guestbook}
data: {greeting: hello from git}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=eco", "-c", "user.email=eco@example.invalid", "commit", "-q", "-m", "guestbook"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return "file://" + dir
}

// gitCommit writes one file of the repository at url and commits it.
func gitCommit(t *testing.T, url, name, content string) {
	t.Helper()
	dir := strings.TrimPrefix(url, "file://")
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "-c", "user.name=eco", "-c", "user.email=eco@example.invalid", "commit", "-q", "-am", "change")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git commit: %v\n%s", err, out)
	}
}

// argoCD runs the real argocd-repo-server and argocd-application-controller
// (Argo CD's own binary, built from this module) with Redis from Debian,
// against namespace argocd of the demo's local cluster.
func argoCD(t *testing.T, d *demo) {
	t.Helper()
	ctx := t.Context()
	binDir, err := DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bin, err := Build(ctx, ".", binDir, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Argo CD binary ready in %s (%s)", time.Since(start).Round(time.Millisecond), bin)
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is missing: tools/setup.sh test installs it")
	}

	crds := filepath.Join(moduleDir(t), "manifests", "crds")
	for _, f := range []string{"application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml"} {
		if _, err := d.kubectl(ctx, "", "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(crds, f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.kubectl(ctx, "", "wait", "--for=condition=Established", "--timeout=60s",
		"crd/applications.argoproj.io", "crd/appprojects.argoproj.io"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.kubectl(ctx, `apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}
data:
  timeout.reconciliation: 10s
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}
stringData: {server.secretkey: e2e-not-secret}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	redisPort := freePort(t)
	process(t, "redis", nil, redisServer, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	redis := "127.0.0.1:" + strconv.Itoa(redisPort)
	repoPort := freePort(t)
	// What Argo CD's image has under /app/config, in temporary
	// directories; no commit signature verification (no gpg needed).
	appConfig := t.TempDir()
	for _, sub := range []string{"tls", "ssh", "gpg/source", "gpg/keys"} {
		if err := os.MkdirAll(filepath.Join(appConfig, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	common := []string{"ARGOCD_FAKE_IN_CLUSTER=true", "KUBECONFIG=" + d.kubeconfig, "HOME=" + t.TempDir(),
		"ARGOCD_GPG_ENABLED=false", "ARGOCD_GNUPGHOME=" + filepath.Join(appConfig, "gpg/keys"),
		"ARGOCD_TLS_DATA_PATH=" + filepath.Join(appConfig, "tls"), "ARGOCD_SSH_DATA_PATH=" + filepath.Join(appConfig, "ssh")}
	process(t, "argocd-repo-server", append([]string{"ARGOCD_BINARY_NAME=argocd-repo-server"}, common...), bin,
		"--port", strconv.Itoa(repoPort), "--metrics-port", strconv.Itoa(freePort(t)), "--redis", redis,
		"--disable-tls", "--loglevel", "info")
	process(t, "argocd-application-controller", append([]string{"ARGOCD_BINARY_NAME=argocd-application-controller"}, common...), bin,
		"--kubeconfig", d.kubeconfig, "--namespace", "argocd",
		"--repo-server", "127.0.0.1:"+strconv.Itoa(repoPort), "--repo-server-plaintext",
		"--redis", redis, "--metrics-port", strconv.Itoa(freePort(t)),
		"--status-processors", "2", "--operation-processors", "2", "--loglevel", "info")
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }
	process(t, "argocd-applicationset-controller", append([]string{"ARGOCD_BINARY_NAME=argocd-applicationset-controller"}, common...), bin,
		"--kubeconfig", d.kubeconfig, "--namespace", "argocd",
		"--argocd-repo-server", "127.0.0.1:"+strconv.Itoa(repoPort), "--repo-server-plaintext",
		"--metrics-addr", addr(), "--probe-addr", addr(), "--webhook-addr", addr(), "--enable-leader-election=false")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRealArgoCDSyncsThroughTheHub: a real application-controller and
// repo-server sync an Application from a file:// git repository into the
// demo cluster, which they reach only through the hub, by the Secret the
// hub wrote: Synced and Healthy.
func TestRealArgoCDSyncsThroughTheHub(t *testing.T) {
	d := need(t)
	argoCD(t, d)
	ctx := t.Context()
	repo := gitRepo(t)
	server := d.hubURL + "/clusters/" + d.clusterID + "/k8s"
	app := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
spec:
  project: default
  source: {repoURL: %q, targetRevision: main, path: guestbook}
  destination: {server: %q, namespace: guestbook}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
`, repo, server)
	if _, err := d.kubectl(ctx, app, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	_, cfg := d.clientset(t)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	status := func() (string, string, string) {
		u, err := dyn.Resource(applicationsGVR).Namespace("argocd").Get(ctx, "guestbook", metav1.GetOptions{})
		if err != nil {
			return "", "", err.Error()
		}
		s, _, _ := unstructured.NestedString(u.Object, "status", "sync", "status")
		h, _, _ := unstructured.NestedString(u.Object, "status", "health", "status")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		return s, h, fmt.Sprint(conds)
	}
	took := eventually(t, "Application Synced and Healthy", 3*time.Minute, func() error {
		s, h, conds := status()
		if s != "Synced" || h != "Healthy" {
			return fmt.Errorf("sync %q health %q conditions %s", s, h, conds)
		}
		return nil
	})
	t.Logf("Synced/Healthy %s after the Application was created", took.Round(time.Millisecond))
	cs, _ := d.clientset(t)
	cm, err := cs.CoreV1().ConfigMaps("guestbook").Get(ctx, "guestbook", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "hello from git" {
		t.Errorf("ConfigMap from git: %v %v", cm, err)
	}
	if _, err := cs.AppsV1().Deployments("guestbook").Get(ctx, "guestbook", metav1.GetOptions{}); err != nil {
		t.Errorf("Deployment from git: %v", err)
	}
	// The hub's audit log names Argo CD for what it applied.
	var audit struct {
		Items []struct {
			User     string `json:"user"`
			Resource string `json:"resource"`
		} `json:"items"`
	}
	// The recorder writes in the background, after the requests that
	// applied them: awaited.
	eventually(t, "the audit log of service:argocd naming what it applied", 30*time.Second, func() error {
		if err := d.api(ctx, "GET", "/api/v1/audit?user=service:argocd&limit=1000", nil, &audit); err != nil {
			return err
		}
		applied := map[string]bool{}
		for _, e := range audit.Items {
			applied[e.Resource] = true
		}
		if !applied["deployments"] || !applied["configmaps"] {
			return fmt.Errorf("it has %v, want deployments and configmaps", applied)
		}
		return nil
	})

	// The hub's API shows the Application on the cluster's Argo CD view.
	var view struct {
		Applications []struct {
			Name, Sync, Health string
		} `json:"applications"`
	}
	if err := d.api(ctx, "GET", "/api/v1/clusters/"+d.clusterID+"/argocd", nil, &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Applications) != 1 || view.Applications[0].Name != "guestbook" || view.Applications[0].Sync != "Synced" {
		t.Errorf("hub view = %+v", view)
	}

	// ApplicationSet's cluster generator selects the cluster by eco's
	// labels and its Application syncs through the hub too.
	appset := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: by-eco-labels, namespace: argocd}
spec:
  goTemplate: true
  generators:
  - clusters:
      selector:
        matchLabels: {eco.dev/provider: generic, app.kubernetes.io/managed-by: eco-hub}
  template:
    metadata: {name: '{{.name}}-appset'}
    spec:
      project: default
      source: {repoURL: %q, targetRevision: main, path: guestbook}
      destination: {server: '{{.server}}', namespace: appset}
      syncPolicy:
        automated: {}
        syncOptions: [CreateNamespace=true]
`, repo)
	if _, err := d.kubectl(ctx, appset, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ApplicationSet's Application Synced and Healthy", 3*time.Minute, func() error {
		u, err := dyn.Resource(applicationsGVR).Namespace("argocd").Get(ctx, "local-appset", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, _, _ := unstructured.NestedString(u.Object, "status", "sync", "status")
		h, _, _ := unstructured.NestedString(u.Object, "status", "health", "status")
		if s != "Synced" || h != "Healthy" {
			return fmt.Errorf("sync %q health %q", s, h)
		}
		return nil
	})

	// Across credential rotations (a 45 s token is replaced when 15 s are
	// left; wait for two, so the first token has expired) a change in
	// git still reaches the cluster through the hub: no failed sync.
	tokenIDs := map[string]bool{}
	eventually(t, "two token rotations", 2*time.Minute, func() error {
		s, err := cs.CoreV1().Secrets("argocd").Get(ctx, "eco-"+d.clusterID, metav1.GetOptions{})
		if err != nil {
			return err
		}
		tokenIDs[s.Annotations["eco.dev/token-id"]] = true
		if len(tokenIDs) < 3 {
			return fmt.Errorf("tokens seen: %d", len(tokenIDs))
		}
		return nil
	})
	gitCommit(t, repo, "guestbook/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: guestbook}\ndata: {greeting: hello after rotation}\n")
	// What a git webhook does: Argo CD would otherwise notice the new
	// commit only when its revision cache expires (3 min).
	if _, err := d.kubectl(ctx, "", "-n", "argocd", "annotate", "application", "guestbook", "argocd.argoproj.io/refresh=hard", "--overwrite"); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, "the change synced after rotations", 2*time.Minute, func() error {
		cm, err := cs.CoreV1().ConfigMaps("guestbook").Get(ctx, "guestbook", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["greeting"] != "hello after rotation" {
			return fmt.Errorf("greeting %q", cm.Data["greeting"])
		}
		return nil
	})
	t.Logf("a git change synced %s after its commit, across %d tokens", took.Round(time.Millisecond), len(tokenIDs))
	// The controller writes the Application's status after the sync
	// that changed the ConfigMap: a moment later.
	eventually(t, "Synced/Healthy after rotations", time.Minute, func() error {
		if s, h, conds := status(); s != "Synced" || h != "Healthy" {
			return fmt.Errorf("sync %q health %q %s", s, h, conds)
		}
		return nil
	})

	// A Secret deleted by hand is back in seconds, and Argo CD stays
	// Synced.
	if err := cs.CoreV1().Secrets("argocd").Delete(ctx, "eco-"+d.clusterID, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	back := eventually(t, "the Secret back", 30*time.Second, func() error {
		_, err := cs.CoreV1().Secrets("argocd").Get(ctx, "eco-"+d.clusterID, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return errNotYet
		}
		return err
	})
	t.Logf("Secret back after %s", back.Round(time.Millisecond))
	// A change in git is synced through the hub with the new token.
	eventually(t, "still Synced and Healthy", time.Minute, func() error {
		s, h, conds := status()
		if s != "Synced" || h != "Healthy" {
			return fmt.Errorf("sync %q health %q conditions %s", s, h, conds)
		}
		return nil
	})
}
