package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/pki"
	"github.com/eco-project/eco/tunnel"
)

// TestDependencies keeps the agent small: no database drivers, migration
// tool, Helm, Argo CD, browser automation, nor any of the hub's packages,
// and not client-go's typed clientset (which links every Kubernetes API
// group).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"modernc.org/sqlite", "github.com/jackc/", "github.com/lib/pq", "github.com/mattn/go-sqlite3",
		"github.com/pressly/goose", "helm.sh/", "github.com/argoproj/", "github.com/chromedp/",
		"github.com/eco-project/eco/hub", "github.com/eco-project/eco/store",
		"k8s.io/client-go/kubernetes",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, f) ||
				(!strings.HasSuffix(f, "/") && strings.HasPrefix(d, f+"/")) {
				t.Errorf("eco-agent depends on %s (forbidden: %s)", d, f)
			}
		}
	}
	t.Logf("eco-agent has %d dependencies (packages, standard library included)", len(deps))
}

// noEnv is a getenv for an empty environment.
func noEnv(string) string { return "" }

// TestDefaultOptions pins every flag's default.
func TestDefaultOptions(t *testing.T) {
	o := defaultOptions(noEnv)
	fs := o.flagSet(io.Discard)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	want := options{configDir: "/etc/eco-agent", identityTok: "/var/run/secrets/eco.dev/identity/token", healthAddr: ":8081", maxStreams: 1500, logFormat: "json", logLevel: "info"}
	if o != want {
		t.Errorf("defaults = %+v, want %+v", o, want)
	}
	if err := o.validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	// The install YAML runs --config-dir=install.ConfigDir and probes the
	// health port.
	if o.configDir != install.ConfigDir || o.healthAddr != fmt.Sprintf(":%d", install.HealthPort) || o.identityTok != install.IdentityTokenPath {
		t.Errorf("defaults disagree with the install YAML: %+v", o)
	}
	for _, name := range []string{install.ConfigDirFlag, install.IdentityTokenFlag, "kubeconfig", "namespace", "proxy-ca-file", "health-addr", "max-streams", "log-format", "log-level", "version"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no --%s flag", name)
		}
	}
	// ECO_PROXY_CA_FILE is --proxy-ca-file's default; the flag wins.
	env := func(k string) string {
		if k == "ECO_PROXY_CA_FILE" {
			return "/env/proxy-ca.crt"
		}
		return ""
	}
	o = defaultOptions(env)
	if err := o.flagSet(io.Discard).Parse(nil); err != nil || o.proxyCAFile != "/env/proxy-ca.crt" {
		t.Errorf("with ECO_PROXY_CA_FILE set, --proxy-ca-file = %q (%v), want the variable's value", o.proxyCAFile, err)
	}
	o = defaultOptions(env)
	if err := o.flagSet(io.Discard).Parse([]string{"--proxy-ca-file=/flag/ca.crt"}); err != nil || o.proxyCAFile != "/flag/ca.crt" {
		t.Errorf("--proxy-ca-file = %q (%v) with the flag and ECO_PROXY_CA_FILE given, want the flag's", o.proxyCAFile, err)
	}
}

// TestProxyCAFile: --proxy-ca-file and ECO_PROXY_CA_FILE name a PEM file
// of CA certificates added to the system roots for an https:// proxy; a
// file that is missing or holds no certificate stops the agent at start
// with an error naming it, before anything else is read.
func TestProxyCAFile(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("corporate proxy CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("another CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.crt":    ca.CertPEM,
		"two.crt":   append(append([]byte("# corporate CAs\n"), ca.CertPEM...), other.CertPEM...),
		"key.pem":   ca.KeyPEM, // PEM, but no certificate
		"empty.crt": nil,
		"text.crt":  []byte("not a certificate\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	missing := file("missing.crt")

	// loadProxyRoots itself.
	for _, tc := range []struct {
		name, file string
		trusts     []*x509.Certificate // nil with err: the error
		err        string
	}{
		{"unset", "", nil, ""},
		{"one CA", file("ca.crt"), []*x509.Certificate{ca.Cert}, ""},
		{"two CAs", file("two.crt"), []*x509.Certificate{ca.Cert, other.Cert}, ""},
		{"missing file", missing, nil, missing + ": no such file"},
		{"directory", dir, nil, dir},
		{"key, no certificate", file("key.pem"), nil, file("key.pem") + " (--proxy-ca-file or $ECO_PROXY_CA_FILE) holds no PEM certificate"},
		{"empty file", file("empty.crt"), nil, file("empty.crt") + " (--proxy-ca-file or $ECO_PROXY_CA_FILE) holds no PEM certificate"},
		{"not PEM", file("text.crt"), nil, file("text.crt") + " (--proxy-ca-file or $ECO_PROXY_CA_FILE) holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := loadProxyRoots(tc.file, slog.New(slog.DiscardHandler))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("loadProxyRoots(%q) = %v, want an error containing %q", tc.file, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.file == "" {
				if pool != nil {
					t.Error("no file, but roots: the proxy would not be verified like the hub")
				}
				return
			}
			for _, c := range tc.trusts {
				if _, err := c.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
					t.Errorf("%s not trusted: %v", c.Subject.CommonName, err)
				}
			}
			// The system roots are kept.
			want, err := x509.SystemCertPool()
			if err != nil {
				t.Skipf("no system roots to compare with: %v", err)
			}
			for _, c := range tc.trusts {
				want.AddCert(c)
			}
			if !pool.Equal(want) {
				t.Error("the roots are not the system roots plus the file's certificates")
			}
		})
	}

	// Through the command line, from the flag and from the environment:
	// exit 1 at start, the file named in the log.
	for _, tc := range []struct {
		name string
		args []string
		env  string
		err  string
	}{
		{"flag, missing file", []string{"--proxy-ca-file", missing}, "", missing},
		{"flag, no certificate", []string{"--proxy-ca-file=" + file("key.pem")}, "", file("key.pem") + " (--proxy-ca-file or $ECO_PROXY_CA_FILE) holds no PEM certificate"},
		{"env, missing file", nil, missing, missing},
		{"env, no certificate", nil, file("text.crt"), file("text.crt") + " (--proxy-ca-file or $ECO_PROXY_CA_FILE) holds no PEM certificate"},
		{"flag over env", []string{"--proxy-ca-file", missing}, file("text.crt"), missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ECO_PROXY_CA_FILE", tc.env)
			args := append([]string{"--config-dir", "/nonexistent", "--log-format=text"}, tc.args...)
			var stderr bytes.Buffer
			code := run(args, io.Discard, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.err) || !strings.Contains(stderr.String(), "proxy CA") {
				t.Errorf("run(%q) with ECO_PROXY_CA_FILE=%q = %d, stderr %q; want 1 and an error about the proxy CA containing %q",
					args, tc.env, code, stderr.String(), tc.err)
			}
		})
	}
	// The roots reach the agent's Config, and only with a file.
	cfgDir := filepath.Join(dir, "config")
	if err := os.Mkdir(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	token, err := install.NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{install.KeyHubURL: "https://hub.example.com", install.KeyClusterID: "c1",
		install.KeyToken: token, install.KeyCACert: string(other.CertPEM)} {
		if err := os.WriteFile(filepath.Join(cfgDir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := file("agent.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, proxyCAFile := range []string{"", file("ca.crt")} {
		o := defaultOptions(noEnv)
		o.configDir, o.kubeconfig, o.proxyCAFile = cfgDir, kubeconfig, proxyCAFile
		cfg, err := o.agentConfig(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("agentConfig with --proxy-ca-file=%q: %v", proxyCAFile, err)
		}
		switch {
		case proxyCAFile == "" && cfg.ProxyRootCAs != nil:
			t.Error("ProxyRootCAs set without --proxy-ca-file")
		case proxyCAFile != "" && cfg.ProxyRootCAs == nil:
			t.Error("ProxyRootCAs not set with --proxy-ca-file")
		case proxyCAFile != "":
			if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: cfg.ProxyRootCAs}); err != nil {
				t.Errorf("the agent's ProxyRootCAs do not trust the file's CA: %v", err)
			}
		}
		if string(cfg.HubCAPEM) != strings.TrimSpace(string(other.CertPEM)) {
			t.Errorf("HubCAPEM = %q, want ca.crt from the config directory", cfg.HubCAPEM)
		}
	}
}

func TestCommandLine(t *testing.T) {
	t.Setenv("ECO_PROXY_CA_FILE", "") // as if unset
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"version", []string{"--version"}, 0, "eco-agent dev\n", ""},
		{"help", []string{"--help"}, 0, "", "Usage: eco-agent [flags]"},
		{"bad format", []string{"--log-format=xml"}, 2, "", "--log-format must be json or text"},
		{"bad level", []string{"--log-level=loud"}, 2, "", "--log-level must be debug, info, warn or error"},
		{"unknown flag", []string{"--nope"}, 2, "", "flag provided but not defined"},
		{"arguments", []string{"extra"}, 2, "", "unexpected arguments: extra"},
		{"missing config", []string{"--config-dir", "/nonexistent", "--log-format=text"}, 1, "", "reading the agent configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code || (tc.out != "" && stdout.String() != tc.out) || !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, stderr containing %q",
					tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
			}
		})
	}
	var stderr bytes.Buffer
	run([]string{"--help"}, io.Discard, &stderr)
	for _, name := range []string{"--config-dir", "--identity-token-file", "--kubeconfig", "--namespace", "--proxy-ca-file", "--health-addr", "--max-streams", "--log-format", "--log-level", "--version", "HTTPS_PROXY", "ECO_PROXY_CA_FILE"} {
		if !strings.Contains(stderr.String(), strings.TrimLeft(name, "-")) {
			t.Errorf("--help does not mention %s", name)
		}
	}
}

// maxBinarySize bounds the eco-agent binary (unstripped, as `go build`
// makes it). Linking client-go's typed clientset would add about 14 MB.
const maxBinarySize = 35 << 20

// TestBinary builds eco-agent with a version, checks its size, and runs it
// as the local demo does: outside a cluster, with a kubeconfig holding the
// agent ServiceAccount's token, dialing a hub through HTTPS_PROXY. It
// connects, reports Ready, serves its health endpoints, and on SIGTERM (no
// namespace deletion) exits 0 without saying goodbye.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	t.Cleanup(func() {
		goleak.VerifyNone(t, goleak.IgnoreAnyFunction("github.com/eco-project/eco/localcluster.(*process).start.func1"))
	})
	dir := t.TempDir()
	bin := filepath.Join(dir, "eco-agent")
	const version = "v1.2.3-test"
	built := time.Now()
	if out, err := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version="+version, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("eco-agent binary: %.1f MB (built in %v)", float64(fi.Size())/(1<<20), time.Since(built).Round(time.Millisecond))
	if fi.Size() > maxBinarySize {
		t.Errorf("eco-agent is %d bytes, more than %d: what grew?", fi.Size(), maxBinarySize)
	}
	if out, err := exec.Command(bin, "--version").Output(); err != nil || string(out) != "eco-agent "+version+"\n" {
		t.Errorf("eco-agent --version = %q, %v", out, err)
	}

	c := clustertest.Start(t, localcluster.Config{Name: "agent-cmd"})
	token, err := install.NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	hub := startHub(t, token)
	proxy := startConnectProxy(t, hub.addr)

	// The install, applied with real kubectl, and the agent's token.
	hubURL := "https://example.com:" + portOf(t, hub.addr) // the test certificate's name; the proxy resolves it
	yaml, err := install.Render(install.Options{ClusterID: "cmd-cluster", HubURL: hubURL, Token: token,
		HubCAPEM: hub.caPEM, AgentVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	apply := c.Kubectl(ctx, "apply", "-f", "-")
	apply.Stdin = bytes.NewReader(yaml)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(install.DefaultNamespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "sa-token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "agent.kubeconfig")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: eco-agent
  user:
    tokenFile: %s
contexts:
- name: local
  context: {cluster: local, user: eco-agent}
current-context: local
`, c.URL, b64(c.CAPEM), tokenFile), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config directory, as the Secret would be mounted.
	cfgDir := filepath.Join(dir, "config")
	if err := os.Mkdir(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{install.KeyHubURL: hubURL, install.KeyClusterID: "cmd-cluster",
		install.KeyToken: token, install.KeyCACert: string(hub.caPEM), install.KeyNamespace: install.DefaultNamespace} {
		if err := os.WriteFile(filepath.Join(cfgDir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	healthAddr := freeAddr(t)
	cmd := exec.Command(bin, "--config-dir", cfgDir, "--kubeconfig", kubeconfig, "--health-addr", healthAddr)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://"+proxy.addr, "NO_PROXY=")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("eco-agent logs:\n%s", logs.String())
		}
	})

	ev := hub.wait(t, 20*time.Second, "Connected", func(ev tunnel.Event) bool { return ev.Kind == tunnel.EventConnected })
	if ev.Hello.AgentVersion != version || ev.Hello.KubernetesVersion != localcluster.KubernetesVersion || ev.Hello.Fingerprint == "" {
		t.Errorf("Hello = %+v", ev.Hello)
	}
	hub.wait(t, 10*time.Second, "Ready", func(ev tunnel.Event) bool {
		return ev.Kind == tunnel.EventStatus && ev.Status.State == tunnel.StateReady
	})
	if got := proxy.targets(); len(got) == 0 || got[0] != "example.com:"+portOf(t, hub.addr) {
		t.Errorf("CONNECT targets through HTTPS_PROXY = %v, want the hub only", got)
	}
	for _, target := range proxy.targets() {
		if strings.Contains(c.URL, target) {
			t.Errorf("API server traffic went through HTTPS_PROXY: %s", target)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for path, want := range map[string]string{
		install.HealthzPath: "ok",
		install.ReadyzPath:  "connected to the hub",
		agent.MetricsPath:   `eco_agent_build_info{version="` + version + `"} 1`,
	} {
		resp, err := hc.Get("http://" + healthAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", path, resp.StatusCode, body, want)
		}
	}
	// JSON logs by default.
	if line, _, _ := strings.Cut(logs.String(), "\n"); !strings.HasPrefix(line, "{") {
		t.Errorf("first log line is not JSON: %q", line)
	}

	// SIGTERM without a namespace deletion: a rollout.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("eco-agent exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("eco-agent did not exit within 15s of SIGTERM")
	}
	hub.wait(t, 5*time.Second, "Disconnected", func(ev tunnel.Event) bool { return ev.Kind == tunnel.EventDisconnected })
	for _, ev := range hub.all() {
		if ev.Kind == tunnel.EventGoodbye {
			t.Errorf("goodbye after a plain SIGTERM: %+v", ev)
		}
	}
}

// cmdHub is a minimal hub: a tunnel.Server behind a TLS test server.
type cmdHub struct {
	addr  string
	caPEM []byte
	token string

	mu      sync.Mutex
	events  []tunnel.Event
	changed chan struct{}
}

func startHub(t *testing.T, token string) *cmdHub {
	h := &cmdHub{changed: make(chan struct{}), token: token}
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		Authenticate: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") != "Bearer "+h.token {
				return "", errors.New("unknown credential")
			}
			return r.Header.Get(tunnel.HeaderClusterID), nil
		},
		Events: func(ev tunnel.Event) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, ev)
			close(h.changed)
			h.changed = make(chan struct{})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(agent.DefaultTunnelPath, srv)
	hs := httptest.NewUnstartedServer(mux)
	hs.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	h.addr = hs.Listener.Addr().String()
	h.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})
	return h
}

func (h *cmdHub) all() []tunnel.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]tunnel.Event(nil), h.events...)
}

func (h *cmdHub) wait(t *testing.T, timeout time.Duration, what string, ok func(tunnel.Event) bool) tunnel.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		for _, ev := range h.events {
			if ok(ev) {
				h.mu.Unlock()
				return ev
			}
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %s event within %v (%d events)", what, timeout, len(h.all()))
		}
	}
}

// connectProxy is an HTTP CONNECT proxy that records its targets and
// sends every tunnel to one address.
type connectProxy struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func startConnectProxy(t *testing.T, to string) *connectProxy {
	p := &connectProxy{}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.mu.Lock()
		p.seen = append(p.seen, r.Host)
		p.mu.Unlock()
		up, err := net.Dial("tcp", to)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		wg.Go(func() {
			defer conn.Close()
			defer up.Close()
			go func() {
				_, _ = io.Copy(up, brw)
				up.Close()
			}()
			_, _ = io.Copy(conn, up)
		})
	}))
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	p.addr = srv.Listener.Addr().String()
	return p
}

func (p *connectProxy) targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func portOf(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
