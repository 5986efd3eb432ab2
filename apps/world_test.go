package apps_test

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// cluster is the real local cluster (kwok runs the pods) every test of
// this package shares.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	// The test registry's request log (package registrytest).
	logrus.SetOutput(io.Discard)
	if testing.Short() { // the real-cluster tests skip themselves
		os.Exit(m.Run())
	}
	clustertest.Main(m, localcluster.Config{Full: true, Name: "apps"}, &cluster)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// world is a hub with the Helm service and the App Catalog it installs
// catalog charts from (no repository in it until a test adds one), the
// shared cluster imported and its agent running in-process.
type world struct {
	t   testing.TB
	hub *localeco.Hub
	svc *apps.Service
	cat *catalog.Catalog
	id  string
	dir string

	setup   *localeco.AgentSetup
	agentMu sync.Mutex
	stop    context.CancelFunc
	done    chan error

	svcStop context.CancelFunc
	svcDone chan struct{}
}

func newWorld(t *testing.T) *world { return newWorldB(t) }

func newWorldB(t testing.TB) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	ctx := t.Context()
	w := &world{t: t, dir: t.TempDir()}
	h, err := localeco.StartHub(ctx, w.hubConfig())
	if err != nil {
		t.Fatal(err)
	}
	w.hub = h
	t.Cleanup(func() {
		w.closeService()
		w.hub.Close()
	})
	c, err := h.Import(ctx, "apps")
	if err != nil {
		t.Fatal(err)
	}
	w.id = c.ID
	if w.setup, err = localeco.Install(ctx, h, cluster, w.id, filepath.Join(w.dir, "agent")); err != nil {
		t.Fatal(err)
	}
	w.startAgent()
	if _, err := h.WaitState(ctx, w.id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.stopAgent()
		cluster.Kubectl(context.Background(), "delete", "namespace", install.DefaultNamespace, "--ignore-not-found", "--wait=true", "--timeout=60s").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrolebinding", "eco:admins", "eco:editors", "eco:viewers", "eco-agent", "--ignore-not-found").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrole", "eco-agent", "--ignore-not-found").Run()
	})
	return w
}

// hubConfig mounts a fresh Helm service and App Catalog on every start of
// the hub (a restart too), as hubapps does, and runs the service's
// recovery loop. The catalog refreshes when asked, not on a timer.
func (w *world) hubConfig() localeco.HubConfig {
	return localeco.HubConfig{
		Dir: filepath.Join(w.dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(w.t),
		Mount: func(h *hub.Hub) error {
			cat, err := catalog.New(context.Background(), catalog.Config{Hub: h, Logger: logger(w.t).With("component", "catalog"), Timeout: 10 * time.Second})
			if err != nil {
				return err
			}
			svc, err := apps.New(apps.Config{Hub: h, Logger: logger(w.t).With("component", "apps"), Charts: cat, RecoverInterval: 200 * time.Millisecond, Timeout: time.Minute})
			if err != nil {
				cat.Close()
				return err
			}
			cat.Mount(h)
			svc.Mount(h)
			w.cat = cat
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); svc.Run(ctx) }()
			w.svc, w.svcStop, w.svcDone = svc, cancel, done
			return nil
		},
	}
}

// closeService stops the Helm service and the catalog as eco-hub does
// before the hub.
func (w *world) closeService() {
	if w.svc == nil {
		return
	}
	w.svcStop()
	<-w.svcDone
	w.svc.Close()
	w.cat.Close()
	w.svc, w.cat = nil, nil
}

// restartHub stops the service and the hub and starts both again on the
// same directory and address.
func (w *world) restartHub() {
	w.t.Helper()
	w.closeService()
	next, err := w.hub.Restart(w.t.Context())
	if err != nil {
		w.t.Fatal(err)
	}
	w.hub = next
}

func (w *world) startAgent() {
	w.agentMu.Lock()
	defer w.agentMu.Unlock()
	cfg := w.setup.AgentConfig()
	cfg.Logger = logger(w.t).With("side", "agent")
	cfg.CheckInterval = time.Second
	cfg.BackoffMax = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg) }()
	w.stop, w.done = cancel, done
}

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

// kubectl runs real kubectl against the cluster directly, as its admin.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cluster.Kubectl(t.Context(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func kubectlErr(t *testing.T, args ...string) (string, error) {
	out, err := cluster.Kubectl(t.Context(), args...).CombinedOutput()
	return string(out), err
}

// packageChart packages demo chart name (package chartrepo) as helm
// package does, with version and values changed by mutate, and returns
// the archive base64.
func packageChartB(b testing.TB, name string) string { return packageChart(b, name, nil) }

func packageChart(t testing.TB, name string, mutate func(version *string, values map[string]any)) string {
	t.Helper()
	return base64.StdEncoding.EncodeToString(chartArchive(t, name, mutate))
}

// chartArchive is packageChart's archive, as it is.
func chartArchive(t testing.TB, name string, mutate func(version *string, values map[string]any)) []byte {
	t.Helper()
	ch, err := chartrepo.Demo(name)
	if err != nil {
		t.Fatal(err)
	}
	version, values := ch.Metadata.Version, ch.Values
	if mutate != nil {
		mutate(&version, values)
	}
	out, err := chartrepo.Package(ch, version, values, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
