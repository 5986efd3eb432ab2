package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFlagDefaults pins every default, so --help and docs stay true.
func TestFlagDefaults(t *testing.T) {
	var o options
	fs := flag.NewFlagSet("eco-hub", flag.ContinueOnError)
	o.flags(fs)
	want := map[string]string{
		"listen": ":8443", "data-dir": "eco-hub-data", "store": "", "external-url": "",
		"tls-cert": "", "tls-key": "", "tls-hosts": "", "agent-image": "", "agent-image-pull-policy": "",
		"agent-image-repository": "ghcr.io/eco-project/eco-agent", "agent-namespace": "", "heartbeat-interval": "10s", "shutdown-timeout": "30s",
		"log-format": "json", "log-level": "info", "admin-token-file": "", "bootstrap-token-file": "", "version": "false", "print-ca": "false",
		"metrics-addr": "", "max-streams-per-user": "250", "max-streams-per-cluster": "1000",
		"max-watches-per-user": "150", "max-watches-per-cluster": "750", "body-timeout": "2m0s",
		"user-prefix": "eco:", "kubeconfig-ttl": "8h0m0s", "audit-log": "", "audit-reads": "false",
		"credential-grace": "10m0s", "previous-secret-key-file": "",
		// Cloud import and health (cloud.go).
		"cloud-providers": "eks,aks,gke", "cloud-poll-interval": "2m0s", "cloud-fast-poll-interval": "15s",
		"eks-endpoint": "", "sts-endpoint": "", "gke-endpoint": "",
		// Argo CD registration (cmd/eco-hub/argocd.go).
		"argocd-config": "", "argocd-kubeconfig": "", "argocd-in-cluster": "false", "argocd-cluster": "",
		"argocd-namespace": "argocd", "argocd-project": "", "argocd-url": "", "argocd-grant": "admin",
		"argocd-token-ttl": "24h0m0s", "argocd-resync": "5m0s",
		// App Catalog, Helm service, managed add-ons (package hubapps).
		"addon-repository": "eco-addons", "catalog-refresh": "10m0s", "helm-timeout": "5m0s", "addon-resync": "5m0s",
	}
	fs.VisitAll(func(f *flag.Flag) {
		w, ok := want[f.Name]
		if !ok {
			t.Errorf("flag --%s has no pinned default", f.Name)
		} else if f.DefValue != w {
			t.Errorf("--%s default = %q, want %q", f.Name, f.DefValue, w)
		}
		delete(want, f.Name)
	})
	for name := range want {
		t.Errorf("flag --%s is gone", name)
	}
}

// TestAgentImage pins which agent image install YAMLs name.
func TestAgentImage(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ flag, repo, version, digest, want string }{
		{"", "ghcr.io/eco-project/eco-agent", "v1.0.0", "", "ghcr.io/eco-project/eco-agent:v1.0.0"},
		{"", "ghcr.io/eco-project/eco-agent", "v1.0.0", d, "ghcr.io/eco-project/eco-agent:v1.0.0@" + d},
		{"", "mirror.example/eco/eco-agent", "v1.0.0", d, "mirror.example/eco/eco-agent:v1.0.0@" + d},
		{"my/agent:x", "ghcr.io/eco-project/eco-agent", "v1.0.0", d, "my/agent:x"},
	} {
		if got := agentImage(tc.flag, tc.repo, tc.version, tc.digest); got != tc.want {
			t.Errorf("agentImage(%q, %q, %q, %q) = %q, want %q", tc.flag, tc.repo, tc.version, tc.digest, got, tc.want)
		}
	}
}

// TestBootstrapTokenFile starts the hub with --bootstrap-token-file: that
// token is the admin's and nothing is printed; a malformed one is refused.
func TestBootstrapTokenFile(t *testing.T) {
	dir := t.TempDir()
	const token = "ecot_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	for _, tc := range []struct{ name, content, want string }{
		{"too short", "ecot_short", "bootstrap token must be"},
		{"no prefix", strings.Repeat("a", 60), "bootstrap token must be"},
		{"bad characters", "ecot_" + strings.Repeat("a", 42) + "!", "bootstrap token must be"},
		{"missing file", "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "token")
			if tc.content != "" {
				os.WriteFile(f, []byte(tc.content), 0o600)
			}
			o := options{listen: "127.0.0.1:0", dataDir: t.TempDir(), logFormat: "text", logLevel: "error", bootstrapToken: f, shutdownTimeout: time.Second}
			err := run(o, io.Discard, make(chan os.Signal))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want %q", err, tc.want)
			}
		})
	}

	f := filepath.Join(dir, "token")
	os.WriteFile(f, []byte(token+"\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := options{listen: addr, dataDir: filepath.Join(dir, "data"), logFormat: "text", logLevel: "error", bootstrapToken: f, shutdownTimeout: time.Second, heartbeat: time.Second}
	out := &syncBuffer{}
	sigs := make(chan os.Signal, 2)
	done := make(chan error, 1)
	go func() { done <- run(o, out, sigs) }()
	defer func() {
		sigs <- syscall.SIGTERM
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ca, err := os.ReadFile(filepath.Join(o.dataDir, "tls", "ca.crt"))
		if err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca)
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
			req, _ := http.NewRequest("GET", "https://"+addr+"/api/v1/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := c.Do(req); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				c.CloseIdleConnections()
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"admin"`) {
					t.Fatalf("whoami with the bootstrap token = %d %s", resp.StatusCode, body)
				}
				break
			}
			c.CloseIdleConnections()
		}
		if time.Now().After(deadline) {
			t.Fatal("hub not serving within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(out.String(), "ecot_") {
		t.Errorf("the hub printed a token:\n%s", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeAndRestart runs the hub as main does: the first start prints an
// admin token once and serves TLS with its own CA; a signal drains and
// stops it; the second start on the same data directory mints no token.
func TestServeAndRestart(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := mln.Addr().String()
	mln.Close()
	o := options{
		listen: addr, dataDir: dir, heartbeat: time.Second, shutdownTimeout: 5 * time.Second,
		logFormat: "text", logLevel: "warn", adminTokenFile: filepath.Join(dir, "admin.token"),
		metricsAddr: metricsAddr,
	}
	start := func() (*syncBuffer, chan os.Signal, chan error) {
		out := &syncBuffer{}
		sigs := make(chan os.Signal, 2)
		done := make(chan error, 1)
		go func() { done <- run(o, out, sigs) }()
		return out, sigs, done
	}
	client := func() *http.Client {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(dir, "tls", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(ca)
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	}
	waitHealthy := func(done chan error) *http.Client {
		deadline := time.Now().Add(30 * time.Second)
		for {
			select {
			case err := <-done:
				t.Fatalf("hub exited: %v", err)
			default:
			}
			if _, err := os.Stat(filepath.Join(dir, "tls", "ca.crt")); err == nil {
				c := client()
				if resp, err := c.Get("https://" + addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						return c
					}
				}
				c.CloseIdleConnections()
			}
			if time.Now().After(deadline) {
				t.Fatal("hub not ready within 30s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop := func(sigs chan os.Signal, done chan error) {
		sigs <- syscall.SIGTERM
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run returned %v after a signal", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("hub did not stop within 10s of a signal")
		}
	}

	out, sigs, done := start()
	c := waitHealthy(done)
	token := regexp.MustCompile(`ecot_[A-Za-z0-9_-]{43}`).FindString(out.String())
	if token == "" {
		t.Fatalf("first start printed no admin token:\n%s", out.String())
	}
	if saved, _ := os.ReadFile(o.adminTokenFile); strings.TrimSpace(string(saved)) != token {
		t.Fatalf("--admin-token-file holds %q, want the printed token", saved)
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"admin"`) {
		t.Fatalf("whoami = %d %s", resp.StatusCode, body)
	}
	// Without Argo CD flags, the Argo CD view says the hub has none, as
	// JSON (a client can tell it from a cluster it may not see).
	req, _ = http.NewRequest("GET", "https://"+addr+"/api/v1/clusters/c-any/argocd", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	var noArgo struct{ Error, Reason string }
	err = json.NewDecoder(resp.Body).Decode(&noArgo)
	resp.Body.Close()
	if resp.StatusCode != 404 || err != nil || noArgo.Reason != "NotConfigured" || !strings.Contains(noArgo.Error, "no Argo CD instance") {
		t.Fatalf("Argo CD view without Argo CD: %d %+v (%v), want 404 NotConfigured", resp.StatusCode, noArgo, err)
	}
	// Without a token it says nothing about Argo CD: 401.
	req, _ = http.NewRequest("GET", "https://"+addr+"/api/v1/clusters/c-any/argocd", nil)
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || strings.Contains(string(body), "Argo CD") {
		t.Fatalf("Argo CD view without a token: %d %s, want 401", resp.StatusCode, body)
	}
	// The add-on charts are built in: the catalog lists eco-addons.
	req, _ = http.NewRequest("GET", "https://"+addr+"/api/v1/catalog/repositories/eco-addons", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := c.Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"builtIn": true`) || !strings.Contains(string(body), `"charts": `) {
			t.Fatalf("the built-in add-on repository: %d %s", resp.StatusCode, body)
		}
	}
	// /metrics: admins only on --listen, open on --metrics-addr.
	if resp, err := c.Get("https://" + addr + "/metrics"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics on --listen without a token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "eco_hub_tunnels") {
			t.Fatalf("--metrics-addr /metrics = %d %.200s", resp.StatusCode, body)
		}
	}
	if resp, err := c.Get("https://" + addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("web UI at / answered %d", resp.StatusCode)
		}
	}
	c.CloseIdleConnections()
	stop(sigs, done)

	out, sigs, done = start()
	c = waitHealthy(done)
	c.CloseIdleConnections()
	if strings.Contains(out.String(), "ecot_") {
		t.Fatalf("second start printed a token again:\n%s", out.String())
	}
	req, _ = http.NewRequest("GET", "https://"+addr+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := client().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the first token after restart: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	stop(sigs, done)
}
