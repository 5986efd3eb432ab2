package image_test

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eco-project/eco/image"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// needRoot skips a test that chroots.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
}

// platformImage returns idx's image for this machine's architecture.
func platformImage(t *testing.T, idx v1.ImageIndex) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Skipf("no linux/%s image", runtime.GOARCH)
	return nil
}

// unpack writes img's filesystem under dir with the owners and modes the
// layers give, as a container runtime would.
func unpack(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("unexpected %s of type %c in the image", h.Name, h.Typeflag)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
		// syscall.Chmod keeps the sticky bit of /tmp.
		if err := syscall.Chmod(p, uint32(h.Mode&0o7777)); err != nil {
			t.Fatal(err)
		}
	}
}

// containerCmd runs img's entrypoint in rootfs as the image's config says
// (user, environment, working directory), chrooted, with args.
func containerCmd(ctx context.Context, t *testing.T, img v1.Image, rootfs string, args ...string) *exec.Cmd {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, ok := strings.Cut(cf.Config.User, ":")
	u, err1 := strconv.Atoi(uid)
	g, err2 := strconv.Atoi(gid)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("image user %q is not numeric uid:gid", cf.Config.User)
	}
	argv := append(append([]string{}, cf.Config.Entrypoint...), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cf.Config.Env
	cmd.Dir = cf.Config.WorkingDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: uint32(u), Gid: uint32(g)}}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start starts cmd, logging its output, and stops it when the test ends.
func start(t *testing.T, cmd *exec.Cmd, name string) {
	t.Helper()
	out := &logWriter{t: t, name: name}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in its image: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
}

type logWriter struct {
	t    *testing.T
	name string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRunFromImage unpacks this machine's agent and hub images and runs
// them from their root filesystems (chroot, as the images' user): the
// agent against a real local cluster and a real hub until Connected,
// reporting the image's version; the hub until it serves /readyz, naming
// the agent image by digest in its install YAMLs.
func TestRunFromImage(t *testing.T) {
	needRoot(t)
	res, _ := ecoImages(t)
	ctx := t.Context()

	t.Run("agent", func(t *testing.T) {
		cluster := clustertest.Start(t, localcluster.Config{Name: "image"})
		h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: t.TempDir(), HeartbeatInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		c, err := h.Import(ctx, "image")
		if err != nil {
			t.Fatal(err)
		}
		rootfs := t.TempDir()
		img := platformImage(t, res.Agent)
		unpack(t, img, rootfs)

		// What the pod would have mounted, inside the root filesystem.
		setup, err := localeco.Install(ctx, h, cluster, c.ID, filepath.Join(rootfs, "run", "eco"))
		if err != nil {
			t.Fatal(err)
		}
		kc := clientcmdapi.NewConfig()
		kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: cluster.URL, CertificateAuthorityData: cluster.CAPEM}
		kc.AuthInfos["eco-agent"] = &clientcmdapi.AuthInfo{TokenFile: "/run/eco/token"}
		kc.Contexts["eco-agent"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "eco-agent", Namespace: setup.Namespace}
		kc.CurrentContext = "eco-agent"
		if err := clientcmd.WriteToFile(*kc, filepath.Join(rootfs, "run", "eco", "chroot.kubeconfig")); err != nil {
			t.Fatal(err)
		}
		if err := chownTree(filepath.Join(rootfs, "run"), image.UID); err != nil {
			t.Fatal(err)
		}
		refresh, stop := context.WithCancel(ctx)
		defer stop()
		go setup.KeepTokenFresh(refresh)

		health := freeAddr(t)
		start(t, containerCmd(ctx, t, img, rootfs,
			"--config-dir=/run/eco/config",
			"--kubeconfig=/run/eco/chroot.kubeconfig",
			"--identity-token-file=/run/eco/identity.token",
			"--namespace="+setup.Namespace,
			"--health-addr="+health,
			"--log-format=text",
		), "eco-agent")
		st, err := h.WaitState(ctx, c.ID, store.StateConnected, 90*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st.AgentVersion != testVersion {
			t.Errorf("the connected agent reports version %q, want the image's %q", st.AgentVersion, testVersion)
		}
		// Its health endpoint, probed as the kubelet does, again and
		// again: the hub records Connected when it has registered the
		// session, which may be before the agent has taken its answer.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get("http://" + health + install.ReadyzPath)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent %s = %d after 30s", install.ReadyzPath, resp.StatusCode)
			}
		}
	})

	t.Run("hub", func(t *testing.T) {
		rootfs := t.TempDir()
		img := platformImage(t, res.Hub)
		unpack(t, img, rootfs)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		// The admin token as the Helm chart mounts it.
		const token = "ecot_imageTestToken0123456789abcdefghijklmnopqrstuv"
		if err := os.MkdirAll(filepath.Join(rootfs, "etc", "eco-hub", "admin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "etc", "eco-hub", "admin", "token"), []byte(token), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(rootfs, "etc", "eco-hub", "admin", "token"), image.UID, image.UID); err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		args := append(append([]string{}, cf.Config.Cmd...), "--listen="+addr, "--external-url=https://"+addr,
			"--bootstrap-token-file=/etc/eco-hub/admin/token", "--log-format=text")
		start(t, containerCmd(ctx, t, img, rootfs, args...), "eco-hub")

		caFile := filepath.Join(rootfs, strings.TrimPrefix(image.HubDataDir, "/"), "tls", "ca.crt")
		var client *http.Client
		deadline := time.Now().Add(60 * time.Second)
		for {
			if ca, err := os.ReadFile(caFile); err == nil {
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(ca)
				client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
				if resp, err := client.Get("https://" + addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				client.CloseIdleConnections()
			}
			if time.Now().After(deadline) {
				t.Fatal("the hub from its image did not serve /readyz within 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		defer client.CloseIdleConnections()
		// Its data directory is the image's, owned by the image's user.
		var fi syscall.Stat_t
		if err := syscall.Stat(filepath.Join(rootfs, strings.TrimPrefix(image.HubDataDir, "/"), "eco.db"), &fi); err != nil {
			t.Fatal(err)
		}
		if fi.Uid != image.UID {
			t.Errorf("eco.db owned by %d, want %d", fi.Uid, image.UID)
		}

		// Its install YAMLs name the agent image it was built with, by digest.
		call := func(method, path string) []byte {
			req, _ := http.NewRequestWithContext(ctx, method, "https://"+addr+path, strings.NewReader(`{"name":"x","provider":"generic"}`))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode/100 != 2 {
				t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
			}
			return b
		}
		var created struct{ ID string }
		if err := json.Unmarshal(call("POST", "/api/v1/clusters"), &created); err != nil {
			t.Fatal(err)
		}
		y := string(call("GET", "/api/v1/clusters/"+created.ID+"/install.yaml"))
		if !strings.Contains(y, "image: "+res.AgentRef) {
			t.Errorf("install YAML does not name %s:\n%s", res.AgentRef, grep(y, "image:"))
		}

		// ecoctl ships beside it.
		ver := exec.CommandContext(ctx, "/usr/local/bin/ecoctl", "--version")
		ver.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: image.UID, Gid: image.UID}}
		vout, err := ver.CombinedOutput()
		if err != nil || !strings.Contains(string(vout), testVersion) {
			t.Errorf("ecoctl --version in the hub image: %v %s", err, vout)
		}
	})
}

func chownTree(dir string, uid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(out)
}
