package localcluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
)

// TestVersionsMatchToolsModule keeps the version constants, which name the
// binary cache, true to the module the binaries are built from.
func TestVersionsMatchToolsModule(t *testing.T) {
	gomod, err := os.ReadFile("../tools/kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"k8s.io/kubernetes " + localcluster.KubernetesVersion,
		"go.etcd.io/etcd/server/v3 " + localcluster.EtcdVersion,
	} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("tools/kube/go.mod does not require %q", want)
		}
	}
}

func TestFindBinariesNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := localcluster.FindBinaries(dir)
	if !errors.Is(err, localcluster.ErrMissingBinaries) {
		t.Fatalf("FindBinaries(empty dir) error = %v, want ErrMissingBinaries", err)
	}
	for _, want := range []string{"kube-apiserver", "etcd", "kwok", "make kube"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestLightClusterSmoke is the harness's end-to-end proof: a namespace, a
// ConfigMap and a watch on a real kube-apiserver, and real kubectl.
func TestLightClusterSmoke(t *testing.T) {
	c := clustertest.Start(t, localcluster.Config{})
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps("smoke").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "greeting"},
		Data:       map[string]string{"hello": "world"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("smoke").Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=greeting",
		ResourceVersion: cm.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cm.Data["hello"] = "eco"
	if _, err := cs.CoreV1().ConfigMaps("smoke").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		got, ok := ev.Object.(*corev1.ConfigMap)
		if ev.Type != watch.Modified || !ok || got.Data["hello"] != "eco" {
			t.Fatalf("watch event = %s %#v, want MODIFIED with hello=eco", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}

	out, err := c.Kubectl(ctx, "get", "configmap", "greeting", "-n", "smoke", "-o", "jsonpath={.data.hello}").CombinedOutput()
	if err != nil || string(out) != "eco" {
		t.Fatalf("kubectl get = %q, %v; want eco", out, err)
	}
	out, err = c.Kubectl(ctx, "version", "-o", "json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), localcluster.KubernetesVersion) {
		t.Fatalf("kubectl version = %s, %v; want %s on both sides", out, err, localcluster.KubernetesVersion)
	}
}

// TestAPIServerRestart stops and restarts kube-apiserver alone, as tests of
// an unreachable API server do; data in etcd survives.
func TestAPIServerRestart(t *testing.T) {
	c := clustertest.Start(t, localcluster.Config{})
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	shortCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cs.CoreV1().Namespaces().Get(shortCtx, "kept", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("API server still answered after StopAPIServer")
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace lost across API server restart: %v", err)
	}
}

// TestFullCluster proves what eco needs from the controllers and kwok:
// default ServiceAccounts and TokenRequest, Deployments that become Running
// pods, logs -f and exec, aggregated roles, and namespace deletion.
func TestFullCluster(t *testing.T) {
	c := clustertest.Start(t, localcluster.Config{Full: true})
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "-n", "apps", "create", "deployment", "web", "--image=nginx", "--replicas=2").CombinedOutput(); err != nil {
		t.Fatalf("kubectl create deployment: %v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "-n", "apps", "rollout", "status", "deployment/web", "--timeout=60s").CombinedOutput(); err != nil {
		t.Fatalf("rollout: %v\n%s", err, out)
	}
	pods, err := cs.CoreV1().Pods("apps").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 2 {
		t.Fatalf("got %d pods, want 2", len(pods.Items))
	}
	pod := pods.Items[0]
	if pod.Status.Phase != corev1.PodRunning || pod.Spec.NodeName != c.NodeName {
		t.Fatalf("pod %s phase=%s node=%q, want Running on %s", pod.Name, pod.Status.Phase, pod.Spec.NodeName, c.NodeName)
	}

	// Like a kubelet, kwok keeps the node's Lease fresh; without it the
	// controller manager marks the node NotReady after ~50 s, and kwok's
	// re-initialisation drops the node's addresses, which exec, logs and
	// port-forward need.
	t.Run("node lease renewed", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		var first *metav1.MicroTime
		for {
			l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, c.NodeName, metav1.GetOptions{})
			if err == nil && l.Spec.RenewTime != nil {
				if first == nil {
					first = l.Spec.RenewTime
				} else if l.Spec.RenewTime.After(first.Time) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node lease of %s not renewed within 30 s (lease: %v, err: %v)", c.NodeName, first, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("exec", func(t *testing.T) {
		out, err := c.Kubectl(ctx, "-n", "apps", "exec", pod.Name, "--", "echo", "exec-works").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "exec-works" {
			t.Fatalf("kubectl exec = %q, %v", out, err)
		}
	})

	t.Run("logs follow", func(t *testing.T) {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := c.Kubectl(lctx, "-n", "apps", "logs", "-f", pod.Name)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() {
			t.Fatalf("no first log line: %v", lines.Err())
		}
		want := fmt.Sprintf("line written at %d", time.Now().UnixNano())
		if err := c.AppendPodLog(want); err != nil {
			t.Fatal(err)
		}
		for lines.Scan() {
			if lines.Text() == want {
				return
			}
		}
		t.Fatalf("logs -f never showed %q: %v", want, lines.Err())
	})

	t.Run("port-forward", func(t *testing.T) {
		clustertest.PortForwardRoundTrip(t, c, c.AdminKubeconfig, "apps", pod.Name)
	})

	t.Run("service account token", func(t *testing.T) {
		tr, err := cs.CoreV1().ServiceAccounts("apps").CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := c.RESTConfig()
		cfg.CertData, cfg.KeyData, cfg.BearerToken = nil, nil, tr.Status.Token
		sa, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := review.Status.UserInfo.Username; got != "system:serviceaccount:apps:default" {
			t.Fatalf("token authenticates as %q", got)
		}
	})

	t.Run("namespace deletion", func(t *testing.T) {
		if err := cs.CoreV1().Namespaces().Delete(ctx, "apps", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, err := cs.CoreV1().Namespaces().Get(ctx, "apps", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespace still there after 60s: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// TestStartFailureShowsComponentLog replaces etcd with a program that
// fails: Start must say which component failed and show its output.
func TestStartFailureShowsComponentLog(t *testing.T) {
	real, err := localcluster.FindBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(real.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join(real.Dir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	etcd := filepath.Join(dir, localcluster.Etcd)
	if err := os.Remove(etcd); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(etcd, []byte("#!/bin/sh\necho 'etcd refuses: disk on fire' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = localcluster.Start(t.Context(), localcluster.Config{BinDir: dir, StartTimeout: 20 * time.Second})
	if err == nil {
		t.Fatal("Start succeeded with a broken etcd")
	}
	for _, want := range []string{"etcd", "exited during start-up", "disk on fire"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestNoStrayProcessesWhenTestDies runs a cluster in a child process that
// is then killed with SIGKILL, as an interrupted or timed-out go test
// would be, and checks its components die with it.
func TestNoStrayProcessesWhenTestDies(t *testing.T) {
	if os.Getenv("ECO_LOCALCLUSTER_CHILD") == "1" {
		c, err := localcluster.Start(context.Background(), localcluster.Config{})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println("DIR", c.Dir)
		select {} // wait to be killed
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoStrayProcessesWhenTestDies$")
	cmd.Env = append(os.Environ(), "ECO_LOCALCLUSTER_CHILD=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	var dir string
	for lines.Scan() {
		if d, ok := strings.CutPrefix(lines.Text(), "DIR "); ok {
			dir = d
			break
		}
		if strings.HasPrefix(lines.Text(), "ERROR") {
			t.Fatal(lines.Text())
		}
	}
	if dir == "" {
		_ = cmd.Process.Kill()
		t.Fatal("child never reported its cluster")
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	children := childPIDs(t, cmd.Process.Pid)
	if len(children) < 2 {
		t.Fatalf("child runs %d component processes, want etcd and kube-apiserver", len(children))
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range children {
		for syscall.Kill(pid, 0) == nil {
			if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(stat), ") Z ") {
				break // a zombie awaiting its reaper is dead
			}
			if time.Now().After(deadline) {
				t.Fatalf("component pid %d outlived its killed parent", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// childPIDs lists the direct children of pid from /proc: children hang
// off whichever thread of a Go process started them.
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, task := range tasks {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(data)) {
			p, _ := strconv.Atoi(f)
			pids = append(pids, p)
		}
	}
	return pids
}
