package agent_test

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/tunnel"
)

// Two real clusters serve the package: "main" for every test that leaves
// the install in place (run one after the other), "removal" for the test
// that deletes the agent's namespace. Both start at once in TestMain.
var mainCluster, removalCluster *localcluster.Cluster

const (
	testNamespace = install.DefaultNamespace
	testClusterID = "test-cluster"
	testVersion   = "v9.9.9-test"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var wg sync.WaitGroup
	var errMain, errRemoval error
	wg.Go(func() {
		mainCluster, errMain = localcluster.Start(context.Background(),
			localcluster.Config{Full: true, Name: "agent-main", Logger: logger})
	})
	wg.Go(func() {
		removalCluster, errRemoval = localcluster.Start(context.Background(),
			localcluster.Config{Full: true, Name: "agent-removal", Logger: logger})
	})
	wg.Wait()
	code := 1
	if err := errors.Join(errMain, errRemoval); err != nil {
		fmt.Fprintf(os.Stderr, "starting local clusters: %v\n", err)
	} else {
		code = m.Run()
	}
	for _, c := range []*localcluster.Cluster{mainCluster, removalCluster} {
		if c == nil {
			continue
		}
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping local cluster: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needCluster skips t in -short mode and checks for leaked goroutines at
// its end.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	checkLeaks(t)
}

// checkLeaks fails t if goroutines it started outlive it. Registered
// first, it runs after every other cleanup.
func checkLeaks(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		// localcluster's process waiters (StopAPIServer/StartAPIServer).
		goleak.IgnoreAnyFunction("github.com/eco-project/eco/localcluster.(*process).start.func1"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// testLogger sends logs to t until t ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// env is a cluster with the agent's install YAML applied.
type env struct {
	c           *localcluster.Cluster
	fingerprint string // kube-system UID
	nsUID       string
}

var (
	envMu sync.Mutex
	envs  = map[*localcluster.Cluster]*env{}
)

// setup applies the install YAML to c with real kubectl (once per
// cluster) and returns what tests need to know about it.
func setup(t *testing.T, c *localcluster.Cluster) *env {
	t.Helper()
	envMu.Lock()
	defer envMu.Unlock()
	if e := envs[c]; e != nil {
		return e
	}
	token, err := install.NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	yaml, err := install.Render(install.Options{
		ClusterID:    testClusterID,
		HubURL:       "https://hub.invalid",
		Token:        token,
		AgentVersion: testVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.Kubectl(ctx, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(string(yaml))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	admin := adminClient(t, c)
	ks, err := admin.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := admin.CoreV1().Namespaces().Get(ctx, testNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{c: c, fingerprint: string(ks.UID), nsUID: string(ns.UID)}
	envs[c] = e
	return e
}

// forgetEnv makes the next setup of c install again (after a test
// deleted the namespace).
func forgetEnv(c *localcluster.Cluster) {
	envMu.Lock()
	defer envMu.Unlock()
	delete(envs, c)
}

// adminClient returns an admin clientset on a transport of its own,
// closed when t ends (client-go's shared transports would outlive it).
func adminClient(t *testing.T, c *localcluster.Cluster) *kubernetes.Clientset {
	t.Helper()
	cfg := c.RESTConfig()
	return clientFor(t, cfg)
}

func clientFor(t *testing.T, cfg *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	if cfg.Transport == nil {
		// A Proxy function keeps client-go from sharing the transport.
		cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { utilnet.CloseIdleConnectionsFor(hc.Transport) })
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// agentToken writes a fresh token of the agent's ServiceAccount, from the
// TokenRequest API, to a file in dir and returns its path. bound, if not
// nil, binds the token to that object: deleting it revokes the token.
func agentToken(t *testing.T, e *env, dir string, bound *authenticationv1.BoundObjectReference) string {
	t.Helper()
	tok := requestToken(t, e, bound)
	path := filepath.Join(dir, "token")
	writeFileAtomic(t, path, tok)
	return path
}

func requestToken(t *testing.T, e *env, bound *authenticationv1.BoundObjectReference) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp := int64(3600)
	tr, err := adminClient(t, e.c).CoreV1().ServiceAccounts(testNamespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp, BoundObjectRef: bound}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", testNamespace, install.AgentName, err)
	}
	return tr.Status.Token
}

// writeFileAtomic replaces path's content at once, as the kubelet does.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// agentRESTConfig is the agent's API server configuration: the cluster's
// URL and CA, and the ServiceAccount token in tokenFile.
func agentRESTConfig(e *env, tokenFile string) *rest.Config {
	return &rest.Config{
		Host:            e.c.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.c.CAPEM},
		BearerTokenFile: tokenFile,
	}
}

// testHub is a hub for tests: a real tunnel.Server behind an httptest TLS
// server on loopback, recording every event.
type testHub struct {
	t     *testing.T
	token string
	caPEM []byte
	addr  string // stays the same across restarts
	log   *slog.Logger

	mu      sync.Mutex // guards the fields below
	srv     *tunnel.Server
	hs      *httptest.Server
	events  []tunnel.Event
	changed chan struct{} // closed and replaced when events grows
	reject  string        // if set, Admit refuses with this reason
	admits  int
	tokens  []string // the identity token of every Admit
}

func newTestHub(t *testing.T) *testHub {
	t.Helper()
	token, err := install.NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	h := &testHub{t: t, token: token, changed: make(chan struct{}), log: testLogger(t).With("side", "hub")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.start(ln)
	h.addr = ln.Addr().String()
	t.Cleanup(h.stop)
	return h
}

// start serves the hub on ln.
func (h *testHub) start(ln net.Listener) {
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		Authenticate: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") != "Bearer "+h.token {
				return "", errors.New("agent credential unknown or revoked")
			}
			return r.Header.Get(tunnel.HeaderClusterID), nil
		},
		Admit: func(ctx context.Context, clusterID string, hello tunnel.Hello) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.admits++
			h.tokens = append(h.tokens, hello.IdentityToken)
			if h.reject != "" {
				return &tunnel.RejectError{Reason: h.reject}
			}
			return nil
		},
		Events: func(ev tunnel.Event) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, ev)
			close(h.changed)
			h.changed = make(chan struct{})
		},
		HeartbeatInterval: time.Second,
		Logger:            h.log,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(agent.DefaultTunnelPath, srv)
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)}}
	hs.StartTLS()
	h.mu.Lock()
	h.srv, h.hs = srv, hs
	if h.caPEM == nil {
		h.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})
	}
	h.mu.Unlock()
}

// stop closes the hub (saying goodbye to its agents, as a hub shutting
// down does).
func (h *testHub) stop() {
	h.mu.Lock()
	srv, hs := h.srv, h.hs
	h.srv, h.hs = nil, nil
	h.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	hs.Close()
}

// restart serves the hub again on the same address.
func (h *testHub) restart() {
	h.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatalf("listening on %s again: %v", h.addr, err)
	}
	h.start(ln)
}

func (h *testHub) url() string { return "https://" + h.addr }

func (h *testHub) setReject(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reject = reason
}

// lastToken returns the identity token of the last Admit.
func (h *testHub) lastToken() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tokens) == 0 {
		return ""
	}
	return h.tokens[len(h.tokens)-1]
}

func (h *testHub) admitCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.admits
}

// eventsSince returns the events from index from on.
func (h *testHub) eventsSince(from int) []tunnel.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]tunnel.Event(nil), h.events[from:]...)
}

// waitEvent waits up to timeout for an event at index from or later (0
// for all) that matches ok, and returns it with the index after it.
func (h *testHub) waitEvent(from int, timeout time.Duration, what string, ok func(tunnel.Event) bool) (tunnel.Event, int) {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		for i := from; i < len(h.events); i++ {
			if ok(h.events[i]) {
				ev := h.events[i]
				h.mu.Unlock()
				return ev, i + 1
			}
		}
		from = len(h.events)
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			h.t.Fatalf("no %s event within %v; events: %s", what, timeout, h.describeEvents())
		}
	}
}

func (h *testHub) describeEvents() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, ev := range h.events {
		if ev.Kind == tunnel.EventHeartbeat {
			continue
		}
		fmt.Fprintf(&b, "\n  %s %s session=%d", ev.Kind, ev.ClusterID, ev.SessionID)
		switch ev.Kind {
		case tunnel.EventConnected:
			fmt.Fprintf(&b, " hello=%+v", ev.Hello)
		case tunnel.EventStatus:
			fmt.Fprintf(&b, " status=%+v", ev.Status)
		case tunnel.EventGoodbye:
			fmt.Fprintf(&b, " reason=%q", ev.Reason)
		case tunnel.EventDisconnected:
			fmt.Fprintf(&b, " err=%v", ev.Err)
		}
	}
	return b.String()
}

func isConnected(id string) func(tunnel.Event) bool {
	return func(ev tunnel.Event) bool { return ev.Kind == tunnel.EventConnected && ev.ClusterID == id }
}

func isState(id string, st tunnel.State) func(tunnel.Event) bool {
	return func(ev tunnel.Event) bool {
		return ev.Kind == tunnel.EventStatus && ev.ClusterID == id && ev.Status.State == st
	}
}

// transport returns an HTTP transport that reaches clusters through the
// hub's tunnels: http://CLUSTER-ID/... goes to that cluster's agent.
func (h *testHub) transport(t *testing.T) *http.Transport {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			h.mu.Lock()
			srv := h.srv
			h.mu.Unlock()
			if srv == nil {
				return nil, tunnel.ErrServerClosed
			}
			return srv.DialAddr(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// kubeClient returns a clientset that reaches clusterID through the hub
// and impersonates user in groups, as the hub's proxy does.
func (h *testHub) kubeClient(t *testing.T, clusterID, user string, groups ...string) *kubernetes.Clientset {
	t.Helper()
	return clientFor(t, &rest.Config{
		Host:        "http://" + clusterID,
		Transport:   h.transport(t),
		Impersonate: rest.ImpersonationConfig{UserName: user, Groups: groups},
	})
}

// runningAgent is agent.Run on a goroutine.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan error
	health string // base URL of the health server
	ended  bool
	err    error
}

// startAgent runs an agent for clusterID against hub and e's cluster,
// with the token in tokenFile; mutate may change its Config. The agent is
// stopped when t ends.
func startAgent(t *testing.T, e *env, h *testHub, clusterID, tokenFile string, mutate func(*agent.Config)) *runningAgent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		HubURL:         h.url(),
		ClusterID:      clusterID,
		Token:          h.token,
		HubCAPEM:       h.caPEM,
		Namespace:      testNamespace,
		RESTConfig:     agentRESTConfig(e, tokenFile),
		Version:        testVersion,
		HealthListener: ln,
		Logger:         testLogger(t).With("side", "agent", "cluster", clusterID),
		// No proxy from the environment in tests.
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{cancel: cancel, done: make(chan error, 1), health: "http://" + ln.Addr().String()}
	go func() { ra.done <- agent.Run(ctx, cfg) }()
	t.Cleanup(func() {
		if err := ra.stop(30 * time.Second); err != nil {
			t.Errorf("agent.Run: %v", err)
		}
	})
	return ra
}

// stop cancels the agent's ctx and waits for Run to return.
func (ra *runningAgent) stop(timeout time.Duration) error {
	ra.cancel()
	return ra.wait(timeout)
}

// wait waits for Run to return and returns its error.
func (ra *runningAgent) wait(timeout time.Duration) error {
	if ra.ended {
		return ra.err
	}
	select {
	case ra.err = <-ra.done:
		ra.ended = true
		return ra.err
	case <-time.After(timeout):
		return fmt.Errorf("Run did not return within %v", timeout)
	}
}

// get fetches path from the agent's health server.
func (ra *runningAgent) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(ra.health + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 50 ms until it returns nil or timeout
// passes, and fails t with cond's last error.
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
		time.Sleep(50 * time.Millisecond)
	}
}

// proxyKubeconfig serves a minimal hub proxy on loopback that sends every
// request through clusterID's tunnel impersonating user in groups, as the
// hub does, and returns a kubeconfig file for it.
func (h *testHub) proxyKubeconfig(t *testing.T, clusterID, user string, groups ...string) string {
	t.Helper()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: clusterID})
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("Impersonate-User", user)
			for _, g := range groups {
				pr.Out.Header.Add("Impersonate-Group", g)
			}
		},
		Transport:     h.transport(t),
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	ps := httptest.NewServer(rp)
	t.Cleanup(ps.Close)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: hub
  cluster:
    server: %s
users:
- name: user
  user: {}
contexts:
- name: hub
  context:
    cluster: hub
    user: user
current-context: hub
`, ps.URL)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
