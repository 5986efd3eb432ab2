package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// cluster is the full local cluster every test of this package shares.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	clustertest.Main(m, localcluster.Config{Full: true, Name: "e2e", AuditLog: true}, &cluster)
}

// world is a hub with the shared cluster imported and its agent running.
type world struct {
	t       *testing.T
	hub     *localeco.Hub
	id      string
	setup   *localeco.AgentSetup
	kc      string // admin kubeconfig through the hub
	stop    context.CancelFunc
	done    chan error
	agentMu sync.Mutex
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return newWorldWith(t, nil)
}

// newWorldWith is newWorld with the hub's configuration changed by mutate.
func newWorldWith(t *testing.T, mutate func(*localeco.HubConfig)) *world {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	// Heartbeats every second (3 s to declare a peer dead) keep loss
	// detection quick without tripping on the stalls of a 2-core CI
	// machine under -race: hub and agent share this process, and with
	// 500 ms (1.5 s) a stall during the 50 MB LIST once ended the
	// session on both sides at the same moment.
	hcfg := localeco.HubConfig{Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(t)}
	if mutate != nil {
		mutate(&hcfg)
	}
	h, err := localeco.StartHub(ctx, hcfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, hub: h}
	t.Cleanup(func() { w.hub.Close() })
	c, err := h.Import(ctx, "local")
	if err != nil {
		t.Fatal(err)
	}
	w.id = c.ID
	if st, _ := h.Status(ctx, w.id); st.State != string(store.StateNotInstalled) {
		t.Fatalf("new cluster is %s, want NotInstalled", st.State)
	}
	if w.setup, err = localeco.Install(ctx, h, cluster, w.id, filepath.Join(dir, "agent")); err != nil {
		t.Fatal(err)
	}
	w.startAgent(w.setup.AgentConfig())
	if _, err := h.WaitState(ctx, w.id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	w.kc = filepath.Join(dir, "hub.kubeconfig")
	if err := h.WriteKubeconfig(ctx, w.id, "", w.kc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The agent's namespace and RBAC go, so the next world installs
		// afresh; the controller-manager finishes the namespace.
		w.stopAgent()
		cluster.Kubectl(context.Background(), "delete", "namespace", install.DefaultNamespace, "--ignore-not-found", "--wait=true", "--timeout=60s").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrolebinding", "eco:admins", "eco:editors", "eco:viewers", "eco-agent", "--ignore-not-found").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrole", "eco-agent", "--ignore-not-found").Run()
	})
	return w
}

// startAgent runs the agent in-process with cfg until stopAgent.
func (w *world) startAgent(cfg agent.Config) {
	w.agentMu.Lock()
	defer w.agentMu.Unlock()
	cfg.Logger = logger(w.t).With("side", "agent")
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = time.Second
	}
	cfg.BackoffMax = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg) }()
	w.stop, w.done = cancel, done
}

// stopAgent stops the agent and returns what Run returned.
func (w *world) stopAgent() error {
	w.agentMu.Lock()
	defer w.agentMu.Unlock()
	if w.stop == nil {
		return nil
	}
	w.stop()
	w.stop = nil
	select {
	case err := <-w.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("agent did not stop within 30s")
	}
}

// kubectl runs real kubectl with kubeconfig and returns its output.
func kubectl(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, cluster.Bin.Path(localcluster.Kubectl), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustKubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := kubectl(t.Context(), kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// clientset returns a client-go clientset through the hub from kubeconfig.
func clientset(t *testing.T, kubeconfig string, mutate func(*rest.Config)) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	if mutate != nil {
		mutate(cfg)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func admin(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestThroughTheHub is the core promise: kubectl and client-go reach the
// cluster through hub, tunnel and agent, as the hub user, unchanged.
func TestThroughTheHub(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()

	t.Run("kubectl get apply watch delete", func(t *testing.T) {
		mustKubectl(t, w.kc, "create", "namespace", "through-hub")
		manifest := filepath.Join(t.TempDir(), "cm.yaml")
		os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: through-hub\ndata:\n  hello: world\n"), 0o600)
		if out := mustKubectl(t, w.kc, "apply", "-f", manifest); !strings.Contains(out, "created") {
			t.Fatalf("apply: %s", out)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		watchCmd := exec.CommandContext(wctx, cluster.Bin.Path(localcluster.Kubectl), "get", "configmap", "greeting", "-n", "through-hub", "--watch", "--output-watch-events", "-o", "jsonpath={.type} {.object.data.hello}{\"\\n\"}")
		watchCmd.Env = append(os.Environ(), "KUBECONFIG="+w.kc)
		stdout, _ := watchCmd.StdoutPipe()
		if err := watchCmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); watchCmd.Wait() }()
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || lines.Text() != "ADDED world" {
			t.Fatalf("first watch line %q", lines.Text())
		}
		mustKubectl(t, w.kc, "patch", "configmap", "greeting", "-n", "through-hub", "-p", `{"data":{"hello":"eco"}}`)
		if !lines.Scan() || lines.Text() != "MODIFIED eco" {
			t.Fatalf("watch after patch: %q", lines.Text())
		}
		mustKubectl(t, w.kc, "delete", "configmap", "greeting", "-n", "through-hub")
		if !lines.Scan() || !strings.HasPrefix(lines.Text(), "DELETED") {
			t.Fatalf("watch after delete: %q", lines.Text())
		}
	})

	t.Run("server-side apply", func(t *testing.T) {
		manifest := filepath.Join(t.TempDir(), "ssa.yaml")
		os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: through-hub\ndata:\n  owner: eco\n"), 0o600)
		if out := mustKubectl(t, w.kc, "apply", "--server-side", "--field-manager=eco-e2e", "-f", manifest); !strings.Contains(out, "serverside-applied") {
			t.Fatalf("server-side apply: %s", out)
		}
		cm, err := admin(t).CoreV1().ConfigMaps("through-hub").Get(ctx, "ssa", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cm.ManagedFields) == 0 || cm.ManagedFields[0].Manager != "eco-e2e" {
			t.Fatalf("managed fields = %+v, want manager eco-e2e", cm.ManagedFields)
		}
	})

	t.Run("kubectl auth whoami shows the hub identity", func(t *testing.T) {
		// A client's own impersonation (kubectl --as) is checked by the
		// cluster: e2e/security_access_test.go.
		for _, args := range [][]string{
			{"auth", "whoami", "-o", "json"},
		} {
			var who struct {
				Status struct {
					UserInfo struct {
						Username string
						Groups   []string
						Extra    map[string][]string
					}
				}
			}
			if err := json.Unmarshal([]byte(mustKubectl(t, w.kc, args...)), &who); err != nil {
				t.Fatal(err)
			}
			u := who.Status.UserInfo
			if u.Username != hub.DefaultUserPrefix+"admin" || !contains(u.Groups, hub.GroupAdmins) || contains(u.Groups, "system:masters") {
				t.Fatalf("kubectl %v: user %q groups %v, want %sadmin in %s", args, u.Username, u.Groups, hub.DefaultUserPrefix, hub.GroupAdmins)
			}
			if len(u.Extra[hub.RequestIDExtra]) != 1 {
				t.Errorf("no request ID in the user's extra: %v", u.Extra)
			}
		}
	})

	t.Run("a viewer reads but cannot write", func(t *testing.T) {
		var tok hub.TokenJSON
		if err := w.hub.Do(ctx, "POST", "/api/v1/tokens", "", map[string]string{"name": "vera", "role": "member"}, &tok); err != nil {
			t.Fatal(err)
		}
		if err := w.hub.Do(ctx, "POST", "/api/v1/grants", "", map[string]string{"kind": "user", "subject": "vera", "cluster": w.id, "role": "view"}, nil); err != nil {
			t.Fatal(err)
		}
		vkc := filepath.Join(t.TempDir(), "viewer.kubeconfig")
		if err := w.hub.WriteKubeconfig(ctx, w.id, tok.Token, vkc); err != nil {
			t.Fatal(err)
		}
		mustKubectl(t, vkc, "get", "configmaps", "-n", "through-hub")
		out, err := kubectl(ctx, vkc, "create", "configmap", "nope", "-n", "through-hub")
		if err == nil || !strings.Contains(out, "forbidden") || !strings.Contains(out, `"eco:vera"`) {
			t.Fatalf("viewer create: err=%v out=%s; want forbidden for vera", err, out)
		}
		// can-i answers "no" with exit status 1.
		if out, _ := kubectl(ctx, vkc, "auth", "can-i", "create", "deployments", "--all-namespaces"); strings.TrimSpace(out) != "no" {
			t.Fatalf("viewer can-i create deployments = %q", out)
		}
	})

	t.Run("table and protobuf", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, "GET", w.hub.URL+"/clusters/"+w.id+"/k8s/api/v1/namespaces", nil)
		req.Header.Set("Authorization", "Bearer "+w.hub.AdminToken)
		req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
		resp, err := w.hub.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var table struct{ Kind string }
		json.NewDecoder(resp.Body).Decode(&table)
		resp.Body.Close()
		if table.Kind != "Table" {
			t.Fatalf("Accept Table got kind %q", table.Kind)
		}
		pb := clientset(t, w.kc, func(c *rest.Config) { c.ContentType = "application/vnd.kubernetes.protobuf" })
		nss, err := pb.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil || len(nss.Items) < 4 {
			t.Fatalf("protobuf list: %d namespaces, %v", len(nss.Items), err)
		}
	})

	t.Run("exec port-forward and logs -f through the hub", func(t *testing.T) {
		mustKubectl(t, w.kc, "-n", "through-hub", "create", "deployment", "web", "--image=nginx")
		mustKubectl(t, w.kc, "-n", "through-hub", "rollout", "status", "deployment/web", "--timeout=60s")
		pod := strings.TrimSpace(mustKubectl(t, w.kc, "-n", "through-hub", "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"))
		// kubectl 1.34 speaks WebSocket for exec; SPDY is the fallback
		// older clients and client-go users still use.
		for _, proto := range []string{"websocket", "spdy"} {
			ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
			// head exits after one line: stdin EOF is not needed.
			cmd := exec.CommandContext(ectx, cluster.Bin.Path(localcluster.Kubectl), "-n", "through-hub", "exec", "-i", pod, "--", "head", "-n", "1")
			cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kc, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS="+fmt.Sprint(proto == "websocket"))
			cmd.Stdin = strings.NewReader("stdin through eco over " + proto + "\n")
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil || strings.TrimSpace(string(out)) != "stdin through eco over "+proto {
				t.Fatalf("exec -i over %s printed %q, %v", proto, out, err)
			}
		}
		clustertest.PortForwardRoundTrip(t, cluster, w.kc, "through-hub", pod)
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(lctx, cluster.Bin.Path(localcluster.Kubectl), "-n", "through-hub", "logs", "-f", pod)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+w.kc)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		lines := bufio.NewScanner(stdout)
		lines.Scan()
		want := fmt.Sprintf("followed through eco at %d", time.Now().UnixNano())
		if err := cluster.AppendPodLog(want); err != nil {
			t.Fatal(err)
		}
		for lines.Scan() {
			if lines.Text() == want {
				return
			}
		}
		t.Fatalf("logs -f through the hub never showed %q", want)
	})

	t.Run("hub restart: the agent comes back on its own", func(t *testing.T) {
		start := time.Now()
		h, err := w.hub.Restart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w.hub = h
		if _, err := h.WaitState(ctx, w.id, store.StateConnected, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		// Connected is recorded on the new hub; wait for the tunnel too.
		deadline := time.Now().Add(30 * time.Second)
		for !h.Connected(w.id) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("agent back %s after the hub restart began", time.Since(start).Round(time.Millisecond))
		mustKubectl(t, w.kc, "get", "namespace", "through-hub")
	})

	t.Run("API server stopped: Failing with a reason; restarted: Connected", func(t *testing.T) {
		if err := cluster.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		st, err := w.hub.WaitState(ctx, w.id, store.StateFailing, 30*time.Second)
		restartErr := cluster.StartAPIServer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if restartErr != nil {
			t.Fatal(restartErr)
		}
		if !strings.Contains(st.Reason, "API server") {
			t.Errorf("Failing reason %q does not name the API server", st.Reason)
		}
		if _, err := w.hub.WaitState(ctx, w.id, store.StateConnected, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		mustKubectl(t, w.kc, "get", "namespace", "through-hub")
	})

	var hist struct{ Items []hub.TransitionJSON }
	if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/history", "", nil, &hist); err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, tr := range hist.Items {
		states = append(states, tr.To)
	}
	t.Logf("status history, newest first: %v", states)
	if len(states) < 4 {
		t.Errorf("history has %d transitions, want at least Connected, Disconnected, Connected, Failing...", len(states))
	}
}

// TestBigListsAndManyWatches pushes a 50 MB LIST and 100 concurrent
// watches through one tunnel, and checks a stalled reader does not stall
// other requests.
func TestBigListsAndManyWatches(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	direct := admin(t)
	if _, err := direct.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "big"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 900<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := direct.CoreV1().ConfigMaps("big").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("blob-%02d", i)},
				Data:       map[string]string{"blob": payload},
			}, metav1.CreateOptions{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	through := clientset(t, w.kc, nil)

	t.Run("50 MB LIST", func(t *testing.T) {
		start := time.Now()
		out, err := kubectl(ctx, w.kc, "get", "configmaps", "-n", "big", "-o", "json", "--chunk-size=0")
		if err != nil {
			t.Fatalf("kubectl get: %v", err)
		}
		if len(out) < 50<<20 {
			t.Fatalf("LIST through the hub returned %d bytes, want ≥ 50 MiB", len(out))
		}
		el := time.Since(start)
		start = time.Now()
		if _, err := kubectl(ctx, cluster.AdminKubeconfig, "get", "configmaps", "-n", "big", "-o", "json", "--chunk-size=0"); err != nil {
			t.Fatal(err)
		}
		t.Logf("kubectl get -o json of %.1f MiB: %s through the hub, %s direct", float64(len(out))/(1<<20), el.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		// Chunked, as client-go pages it.
		var n int
		opts := metav1.ListOptions{Limit: 7}
		for {
			page, err := through.CoreV1().ConfigMaps("big").List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, cm := range page.Items {
				if strings.HasPrefix(cm.Name, "blob-") {
					n++
				}
			}
			if page.Continue == "" {
				break
			}
			opts.Continue = page.Continue
		}
		if n != 60 {
			t.Fatalf("chunked list saw %d objects, want 60", n)
		}
	})

	t.Run("a stalled reader does not stall other requests", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, "GET", w.hub.URL+"/clusters/"+w.id+"/k8s/api/v1/namespaces/big/configmaps", nil)
		req.Header.Set("Authorization", "Bearer "+w.hub.AdminToken)
		stalled, err := w.hub.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Body.Close() // never read: its stream's window fills up
		var lat []time.Duration
		for range 30 {
			start := time.Now()
			if _, err := through.CoreV1().Namespaces().Get(ctx, "big", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("GET latency beside a stalled 50 MiB response: p50 %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
		if lat[len(lat)-1] > 5*time.Second {
			t.Fatalf("a GET took %s beside a stalled stream", lat[len(lat)-1])
		}
	})

	t.Run("100 concurrent watches", func(t *testing.T) {
		const n = 100
		cm, err := direct.CoreV1().ConfigMaps("big").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		watchers := make([]watch.Interface, n)
		for i := range watchers {
			wi, err := through.CoreV1().ConfigMaps("big").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=watched", ResourceVersion: cm.ResourceVersion})
			if err != nil {
				t.Fatalf("watch %d: %v", i, err)
			}
			defer wi.Stop()
			watchers[i] = wi
		}
		cm.Data = map[string]string{"seen": "by all"}
		sent := time.Now()
		if _, err := direct.CoreV1().ConfigMaps("big").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		var slowest time.Duration
		for i, wi := range watchers {
			select {
			case ev := <-wi.ResultChan():
				if ev.Type != watch.Modified {
					t.Fatalf("watch %d got %s", i, ev.Type)
				}
				if d := time.Since(sent); d > slowest {
					slowest = d
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("watch %d saw nothing in 15s", i)
			}
		}
		t.Logf("all %d watches through one tunnel saw the update within %s", n, slowest.Round(time.Millisecond))
	})

	if err := direct.CoreV1().Namespaces().Delete(ctx, "big", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// TestYAMLServesOneClusterOnly applies cluster A's install YAML to a second
// real cluster: its real agent, with a real token of that cluster, cannot
// prove it runs in A; the hub refuses it without naming anything pinned.
func TestYAMLServesOneClusterOnly(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	other := clustertest.Start(t, localcluster.Config{Name: "other"})
	var yaml []byte
	if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/install.yaml", "", nil, &yaml); err != nil {
		t.Fatal(err)
	}
	if _, err := localeco.ApplyYAML(ctx, other, yaml); err != nil {
		t.Fatal(err)
	}
	impostor, err := localeco.Install(ctx, w.hub, other, w.id, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := impostor.AgentConfig()
	cfg.Logger = logger(t).With("side", "impostor")
	cfg.BackoffMax = time.Second
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(ictx, cfg) }()
	defer func() { cancel(); <-done }()

	// While the rightful agent is connected it keeps the tunnel and its
	// status; once it is gone, the impostor's rejection becomes the reason.
	time.Sleep(2 * time.Second)
	if st, _ := w.hub.Status(ctx, w.id); st.State != string(store.StateConnected) {
		t.Fatalf("the rightful agent's cluster is %s (%s) while an impostor knocks", st.State, st.Reason)
	}
	if err := w.stopAgent(); err != nil {
		t.Fatal(err)
	}
	st, err := w.hub.WaitState(ctx, w.id, store.StateFailing, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The status says the identity is not proven, and names nothing
	// pinned: no issuer, no kube-system UID.
	if !strings.HasPrefix(st.Reason, "agent identity not proven") || strings.Contains(st.Reason, "kubernetes.default.svc") {
		t.Fatalf("Failing reason %q, want the generic identity refusal", st.Reason)
	}
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var hist struct{ Items []hub.TransitionJSON }
	if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/history", "", nil, &hist); err != nil {
		t.Fatal(err)
	}
	for _, tr := range hist.Items {
		if strings.Contains(tr.Reason, string(ks.UID)) || strings.Contains(tr.Reason, "kubernetes.default.svc") {
			t.Fatalf("the history reveals a pinned value: %q", tr.Reason)
		}
	}
	// The rightful agent comes back and is admitted.
	cancel()
	<-done
	done <- nil
	w.startAgent(w.setup.AgentConfig())
	if _, err := w.hub.WaitState(ctx, w.id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestGarbageDoesNotHurtTunnels sends garbage to the tunnel endpoint while
// kubectl works through an established tunnel.
func TestGarbageDoesNotHurtTunnels(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	addr := strings.TrimPrefix(w.hub.URL, "https://")
	for i, junk := range []string{
		"GET /api/v1/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAA\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ecoa_" + strings.Repeat("A", 43) + "\r\n\r\n",
		"\x00\x01\x02garbage\r\n\r\n",
		"POST /api/v1/tunnel HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n" + strings.Repeat("z", 1<<16),
	} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, junk)
		reply, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if strings.Contains(reply, "101") {
			t.Fatalf("junk %d was upgraded: %q", i, reply)
		}
	}
	mustKubectl(t, w.kc, "get", "namespaces")
	if st, _ := w.hub.Status(ctx, w.id); st.State != string(store.StateConnected) {
		t.Fatalf("cluster is %s after garbage on the tunnel endpoint", st.State)
	}
}

// TestNamespaceDeletionRemovesTheAgent deletes the agent's namespace: the
// hub shows Removed (not Failing) and the cluster-scoped RBAC goes.
func TestNamespaceDeletionRemovesTheAgent(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	mustKubectl(t, cluster.AdminKubeconfig, "delete", "namespace", install.DefaultNamespace, "--wait=false")
	st, err := w.hub.WaitState(ctx, w.id, store.StateRemoved, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Removed: %s", st.Reason)
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("agent.Run returned %v after removal, want nil", err)
		}
		w.stop = nil
	case <-time.After(30 * time.Second):
		t.Fatal("agent still running after its namespace was deleted")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := kubectl(ctx, cluster.AdminKubeconfig, "get", "clusterrolebindings,clusterroles", "-o", "name")
		left := []string{}
		for _, name := range []string{"clusterrolebinding.rbac.authorization.k8s.io/eco:admins", "clusterrolebinding.rbac.authorization.k8s.io/eco:viewers", "clusterrolebinding.rbac.authorization.k8s.io/eco-agent", "clusterrole.rbac.authorization.k8s.io/eco-agent"} {
			if strings.Contains(out, name+"\n") {
				left = append(left, name)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster-scoped objects left after removal: %v", left)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
