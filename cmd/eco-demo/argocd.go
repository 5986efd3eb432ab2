package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/eco-project/eco/localcluster"
)

// argoCDDemo runs the real Argo CD (its application controller and repo
// server, Argo CD's own binary as make demo-argocd builds it) with Redis
// from Debian against namespace argocd of the local cluster, and writes an
// example git repository and Application for the demo cluster.
type argoCDDemo struct {
	bin     string // Argo CD's binary
	crds    string // Argo CD's manifests/crds directory
	dir     string // the demo's directory
	cluster *localcluster.Cluster
	procs   []*exec.Cmd
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start applies Argo CD's CRDs and settings, starts its processes and
// returns the path of the example Application for server.
func (a *argoCDDemo) start(ctx context.Context, server string) (string, error) {
	kubectl := func(stdin string, args ...string) error {
		cmd := a.cluster.Kubectl(ctx, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
		}
		return nil
	}
	for _, f := range []string{"application-crd.yaml", "appproject-crd.yaml"} {
		if err := kubectl("", "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(a.crds, f)); err != nil {
			return "", err
		}
	}
	if err := kubectl("", "wait", "--for=condition=Established", "--timeout=60s", "crd/applications.argoproj.io", "crd/appprojects.argoproj.io"); err != nil {
		return "", err
	}
	if err := kubectl(`apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}
data: {timeout.reconciliation: 30s}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: argocd, labels: {app.kubernetes.io/part-of: argocd}}
stringData: {server.secretkey: eco-demo-not-secret}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
`, "apply", "-f", "-"); err != nil {
		return "", err
	}

	repo, err := a.gitRepo()
	if err != nil {
		return "", err
	}
	redis, err := freePort()
	if err != nil {
		return "", err
	}
	repoPort, err := freePort()
	if err != nil {
		return "", err
	}
	m1, _ := freePort()
	m2, _ := freePort()
	home := filepath.Join(a.dir, "argocd")
	for _, sub := range []string{"home", "tls", "ssh", "gpg"} {
		if err := os.MkdirAll(filepath.Join(home, sub), 0o700); err != nil {
			return "", err
		}
	}
	env := []string{"ARGOCD_FAKE_IN_CLUSTER=true", "KUBECONFIG=" + a.cluster.AdminKubeconfig, "HOME=" + filepath.Join(home, "home"),
		"ARGOCD_GPG_ENABLED=false", "ARGOCD_GNUPGHOME=" + filepath.Join(home, "gpg"),
		"ARGOCD_TLS_DATA_PATH=" + filepath.Join(home, "tls"), "ARGOCD_SSH_DATA_PATH=" + filepath.Join(home, "ssh")}
	redisAddr := "127.0.0.1:" + strconv.Itoa(redis)
	if err := a.run("redis", nil, "redis-server", "--port", strconv.Itoa(redis), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"); err != nil {
		return "", fmt.Errorf("%w (tools/setup.sh test installs redis-server)", err)
	}
	if err := a.run("argocd-repo-server", append(env, "ARGOCD_BINARY_NAME=argocd-repo-server"), a.bin,
		"--port", strconv.Itoa(repoPort), "--metrics-port", strconv.Itoa(m1), "--redis", redisAddr, "--disable-tls"); err != nil {
		return "", err
	}
	if err := a.run("argocd-application-controller", append(env, "ARGOCD_BINARY_NAME=argocd-application-controller"), a.bin,
		"--kubeconfig", a.cluster.AdminKubeconfig, "--namespace", "argocd", "--repo-server", "127.0.0.1:"+strconv.Itoa(repoPort),
		"--repo-server-plaintext", "--redis", redisAddr, "--metrics-port", strconv.Itoa(m2)); err != nil {
		return "", err
	}
	app := filepath.Join(a.dir, "guestbook-application.yaml")
	err = os.WriteFile(app, []byte(fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
spec:
  project: default
  source: {repoURL: %q, targetRevision: main, path: guestbook}
  destination: {server: %q, namespace: guestbook}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
`, repo, server)), 0o600)
	return app, err
}

// run starts a process whose output goes to DIR/argocd/NAME.log.
func (a *argoCDDemo) run(name string, env []string, bin string, args ...string) error {
	log, err := os.Create(filepath.Join(a.dir, "argocd", name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	a.procs = append(a.procs, cmd)
	return nil
}

// stop ends every process start started.
func (a *argoCDDemo) stop() {
	for _, p := range a.procs {
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}

// gitRepo writes the example repository: a Deployment and a ConfigMap.
func (a *argoCDDemo) gitRepo() (string, error) {
	dir := filepath.Join(a.dir, "guestbook-repo")
	if err := os.MkdirAll(filepath.Join(dir, "guestbook"), 0o755); err != nil {
		return "", err
	}
	files := map[string]string{
		"guestbook/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: guestbook}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: guestbook}}\n  template:\n    metadata: {labels: {app: guestbook}}\n    spec:\n      containers: [{name: web, image: registry.example/guestbook:1}]\n",
		"guestbook/configmap.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: guestbook}\ndata: {greeting: hello from git}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."},
		{"-c", "user.name=eco", "-c", "user.email=eco@example.invalid", "commit", "-q", "-m", "guestbook"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %v: %w\n%s", args, err, out)
		}
	}
	return "file://" + dir, nil
}
