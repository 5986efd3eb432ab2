package argocd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eco-project/eco/localcluster"
)

// demo is eco's demo (cmd/eco-demo, run as a built binary): a local
// cluster, a hub, the cluster imported with its agent connected, and its
// Argo CD cluster Secret in namespace argocd of that same cluster.
type demo struct {
	dir        string
	hubURL     string
	token      string // admin API token
	caPEM      []byte
	kubeconfig string // straight to the local cluster
	clusterID  string
	bins       localcluster.Binaries
	cmd        *exec.Cmd
	done       chan struct{}
	log        *bytes.Buffer
	// metricsClient reads the hub's /metrics (load_test.go's scrape).
	metricsOnce   sync.Once
	metricsClient *http.Client
}

// demoTokenTTL is the demo's Argo CD token lifetime: short, so that the
// real Argo CD lives through rotations during the tests.
const demoTokenTTL = 45 * time.Second

// the demo every test of this package shares; nil when the cluster's
// binaries are not built (the tests skip).
var shared *demo

func TestMain(m *testing.M) {
	code := func() int {
		bins, err := localcluster.FindBinaries("")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e/argocd: no local cluster binaries (make kube); tests skip:", err)
			return m.Run()
		}
		d, err := startDemo(bins)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e/argocd: starting the demo:", err)
			return 1
		}
		shared = d
		defer d.stop()
		return m.Run()
	}()
	os.Exit(code)
}

// root is the main module's directory.
func root() string { abs, _ := filepath.Abs("../.."); return abs }

// goBuild builds a package of the main module into dir.
func goBuild(dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

func startDemo(bins localcluster.Binaries) (*demo, error) {
	tmp, err := os.MkdirTemp("", "eco-argocd-e2e-")
	if err != nil {
		return nil, err
	}
	demoBin, err := goBuild(tmp, "./cmd/eco-demo")
	if err != nil {
		return nil, err
	}
	agentBin, err := goBuild(tmp, "./cmd/eco-agent")
	if err != nil {
		return nil, err
	}
	d := &demo{dir: filepath.Join(tmp, "demo"), bins: bins, done: make(chan struct{}), log: &bytes.Buffer{}}
	d.cmd = exec.Command(demoBin, "--dir", d.dir, "--hub-addr", "127.0.0.1:0", "--agent-bin", agentBin,
		"--kube-module", filepath.Join(root(), "tools/kube"), "--argocd-resync", "2s", "--argocd-token-ttl", demoTokenTTL.String(),
		// BenchmarkClusterCacheThroughHub holds 8 Argo CD caches' watches.
		"--max-streams-per-user", "1000", "--max-watches-per-user", "1000")
	if addr := os.Getenv("ECO_ARGOCD_PROFILE_ADDR"); addr != "" {
		// go tool pprof http://ADDR/heap?gc=1 while the benchmark runs.
		d.cmd.Args = append(d.cmd.Args, "--profile-addr", addr)
	}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	env := filepath.Join(d.dir, "hub.env")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if data, err := os.ReadFile(env); err == nil && bytes.Contains(data, []byte("ECO_TOKEN=")) {
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "ECO_HUB_URL="); ok {
					d.hubURL = v
				}
				if v, ok := strings.CutPrefix(line, "ECO_TOKEN="); ok {
					d.token = v
				}
			}
			break
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("eco-demo exited:\n%s", d.log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("eco-demo not up after 3 min:\n%s", d.log)
		}
	}
	d.kubeconfig = filepath.Join(d.dir, "cluster.kubeconfig")
	if d.caPEM, err = os.ReadFile(filepath.Join(d.dir, "hub", "tls", "ca.crt")); err != nil {
		return nil, err
	}
	var list struct {
		Clusters []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	if err := d.api(context.Background(), http.MethodGet, "/api/v1/clusters", nil, &list); err != nil {
		d.stop()
		return nil, err
	}
	if len(list.Clusters) != 1 {
		d.stop()
		return nil, fmt.Errorf("the demo hub has %d clusters, want 1", len(list.Clusters))
	}
	d.clusterID = list.Clusters[0].ID
	return d, nil
}

func (d *demo) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	os.RemoveAll(filepath.Dir(d.dir))
}

// api calls the hub API as the admin.
func (d *demo) api(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.hubURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(d.caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// clientset reaches the local cluster directly, as an administrator.
func (d *demo) clientset(t testing.TB) (*kubernetes.Clientset, *rest.Config) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", d.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, cfg
}

// kubectl runs the cluster's kubectl with the direct kubeconfig.
func (d *demo) kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.bins.Path(localcluster.Kubectl), append([]string{"--kubeconfig", d.kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func need(t *testing.T) *demo {
	t.Helper()
	if shared == nil {
		t.Skip("no local cluster binaries (make kube)")
	}
	return shared
}

// eventually polls f every 100 ms until it returns nil or timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lines returns the last n lines of s.
func lines(s string, n int) string {
	var all []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}

var errNotYet = errors.New("not yet")
