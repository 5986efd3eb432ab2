package deploy_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/eco-project/eco/pki"
)

// TestRenderedPodRuns runs the hub the chart describes: eco-hub built
// from this tree, started with the Deployment's args and environment, its
// volumes as directories (Secrets written out as Kubernetes mounts them),
// and probed as the kubelet would. The chart's pod never runs on the test
// cluster (kwok's nodes run nothing), so this is what proves the chart
// and the binary agree: every flag exists, the mounted paths are the ones
// the flags name, the probes answer, the admin token Secret signs in, and
// the metrics port serves without a token.
func TestRenderedPodRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs eco-hub")
	}
	bin := filepath.Join(t.TempDir(), "eco-hub")
	build := exec.Command("go", "build", "-o", bin, "../cmd/eco-hub")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build eco-hub: %v\n%s", err, out)
	}
	ca, err := pki.NewCA("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.LeafRequest{CommonName: "eco-hub", Hosts: []string{"127.0.0.1", "eco.example.com"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		vals map[string]any
		// secrets are the Secrets the values name that the chart does
		// not make (an administrator's).
		secrets map[string]map[string][]byte
		// roots verify the hub's certificate; nil: the hub's own CA,
		// read from its data directory.
		roots []byte
	}{
		{name: "defaults: a self-signed certificate, a generated admin token", vals: map[string]any{"externalURL": "https://eco.example.com"}},
		{
			name: "TLS and the admin token from Secrets, extra args",
			vals: map[string]any{
				"externalURL": "https://eco.example.com",
				"tls":         map[string]any{"secretName": "eco-tls"},
				"adminToken":  map[string]any{"existingSecret": "my-admin", "key": "secret"},
				"extraArgs":   []any{"--audit-reads"},
				"logLevel":    "debug",
			},
			secrets: map[string]map[string][]byte{
				"eco-tls":  {"tls.crt": serving.CertPEM, "tls.key": serving.KeyPEM},
				"my-admin": {"secret": []byte("ecot_" + strings.Repeat("a1", 24))},
			},
			roots: ca.CertPEM,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := render(t, tc.vals)
			if err != nil {
				t.Fatal(err)
			}
			secrets := map[string]map[string][]byte{}
			for name, data := range tc.secrets {
				secrets[name] = data
			}
			for key, u := range objs {
				if strings.HasPrefix(key, "Secret/") {
					s := convert[corev1.Secret](t, u)
					secrets[s.Name] = s.Data
				}
			}
			d := convert[appsv1.Deployment](t, objs["Deployment/eco-eco-hub"])
			p := runPod(t, bin, d, secrets)

			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: p.roots(t, tc.roots), ServerName: "eco.example.com"}}}
			c := d.Spec.Template.Spec.Containers[0]
			for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
					t.Fatalf("probe %+v: want an HTTPS GET", probe)
				}
				u := "https://" + p.addr(t, c, probe.HTTPGet.Port.String()) + probe.HTTPGet.Path
				waitOK(t, client, u, nil)
			}
			token := adminToken(t, d, secrets)
			var who struct{ Name, Role string }
			body := waitOK(t, client, "https://"+p.addr(t, c, "https")+"/api/v1/whoami", http.Header{"Authorization": {"Bearer " + token}})
			if err := json.Unmarshal(body, &who); err != nil || who.Role != "admin" {
				t.Errorf("whoami with the admin token Secret: %s, %v", body, err)
			}
			metrics := waitOK(t, &http.Client{Timeout: 5 * time.Second}, "http://"+p.addr(t, c, "metrics")+"/metrics", nil)
			if !strings.Contains(string(metrics), "eco_hub_") {
				t.Errorf("the metrics port serves no eco_hub_ series")
			}
			if strings.Contains(p.output(), token) {
				t.Error("the hub printed the admin token")
			}
		})
	}
}

// pod is an eco-hub process run as a Deployment's container.
type pod struct {
	mounts map[string]string // mount path → directory
	ports  map[string]string // container port name → loopback address
	mu     sync.Mutex
	out    strings.Builder
}

// runPod starts bin as d's only container: its args with $(VAR)
// expanded from its env, every mount path mapped to a directory of its
// own (a Secret's keys written as files), and each container port on a
// free loopback address. It stops when the test ends.
func runPod(t *testing.T, bin string, d *appsv1.Deployment, secrets map[string]map[string][]byte) *pod {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	p := &pod{mounts: map[string]string{}, ports: map[string]string{}}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	root := t.TempDir()
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("mount %s names no volume", m.Name)
		}
		dir := filepath.Join(root, m.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if v.Secret != nil {
			data, ok := secrets[v.Secret.SecretName]
			if !ok {
				t.Fatalf("volume %s: no Secret %s", m.Name, v.Secret.SecretName)
			}
			for path, b := range secretFiles(v.Secret, data) {
				if err := os.WriteFile(filepath.Join(dir, path), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		p.mounts[m.MountPath] = dir
	}
	for _, port := range c.Ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.ports[port.Name] = ln.Addr().String()
		ln.Close()
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s from a source this test does not read", e.Name)
		}
		env[e.Name] = e.Value
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	args := make([]string, 0, len(c.Args))
	for _, a := range c.Args {
		a = ref.ReplaceAllStringFunc(a, func(s string) string { return env[s[2:len(s)-1]] })
		args = append(args, p.rewrite(t, c, a))
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"HOME=" + p.mounts["/tmp"], "TMPDIR=" + p.mounts["/tmp"]}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p, p
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("eco-hub %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

// rewrite maps an argument's container paths to their directories and its
// listen ports to their loopback addresses.
func (p *pod) rewrite(t *testing.T, c corev1.Container, a string) string {
	flag, value, ok := strings.Cut(a, "=")
	if !ok {
		return a
	}
	for _, port := range c.Ports {
		if value == fmt.Sprintf(":%d", port.ContainerPort) {
			return flag + "=" + p.ports[port.Name]
		}
	}
	for mount, dir := range p.mounts {
		if value == mount || strings.HasPrefix(value, mount+"/") {
			return flag + "=" + dir + strings.TrimPrefix(value, mount)
		}
	}
	return a
}

// addr is the loopback address of the container port named or numbered
// port.
func (p *pod) addr(t *testing.T, c corev1.Container, port string) string {
	t.Helper()
	for _, cp := range c.Ports {
		if cp.Name == port || fmt.Sprint(cp.ContainerPort) == port {
			return p.ports[cp.Name]
		}
	}
	t.Fatalf("no container port %s", port)
	return ""
}

// roots is a pool of pemCA, or of the hub's own CA from its data
// directory once it wrote it.
func (p *pod) roots(t *testing.T, pemCA []byte) *x509.CertPool {
	t.Helper()
	if pemCA == nil {
		path := filepath.Join(p.mounts["/var/lib/eco-hub"], "tls", "ca.crt")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			b, err := os.ReadFile(path)
			if err == nil && len(b) > 0 {
				pemCA = b
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the hub wrote no CA at %s: %v", path, err)
			}
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		t.Fatal("no certificate in the CA PEM")
	}
	return pool
}

func (p *pod) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pod) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// adminToken reads the admin token the Deployment's bootstrap token file
// holds, from the Secret mounted there.
func adminToken(t *testing.T, d *appsv1.Deployment, secrets map[string]map[string][]byte) string {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	var file string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--bootstrap-token-file="); ok {
			file = v
		}
	}
	for _, m := range c.VolumeMounts {
		if rest, ok := strings.CutPrefix(file, m.MountPath+"/"); ok {
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					if b, ok := secretFiles(v.Secret, secrets[v.Secret.SecretName])[rest]; ok {
						return strings.TrimSpace(string(b))
					}
				}
			}
		}
	}
	t.Fatalf("no Secret holds the bootstrap token file %q", file)
	return ""
}

// secretFiles are the files a Secret volume holds, by path: every key of
// data, or only its items, at their paths.
func secretFiles(v *corev1.SecretVolumeSource, data map[string][]byte) map[string][]byte {
	files := map[string][]byte{}
	if len(v.Items) == 0 {
		for k, b := range data {
			files[k] = b
		}
		return files
	}
	for _, it := range v.Items {
		if b, ok := data[it.Key]; ok {
			files[it.Path] = b
		}
	}
	return files
}

// waitOK GETs url until it answers 200 (30 s at most) and returns the
// body.
func waitOK(t *testing.T, c *http.Client, url string, h http.Header) []byte {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return body
		}
		last = resp.Status + " " + string(body)
	}
	t.Fatalf("GET %s: not 200 within 30 s: %s", url, last)
	return nil
}
