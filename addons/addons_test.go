package addons_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// member is one of the test's clusters, imported into the hub.
type member struct {
	name    string
	id      string
	cluster *localcluster.Cluster
	setup   *localeco.AgentSetup
	stop    context.CancelFunc
	done    chan error
}

func (m *member) startAgent(t *testing.T) {
	cfg := m.setup.AgentConfig()
	cfg.Logger = logger(t).With("side", "agent", "cluster", m.name)
	cfg.CheckInterval, cfg.BackoffMax = time.Second, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	m.done = make(chan error, 1)
	go func() { m.done <- agent.Run(ctx, cfg) }()
	m.stop = cancel
	t.Cleanup(func() {
		cancel()
		<-m.done
	})
}

func (m *member) kubectl(t *testing.T, args ...string) (string, error) {
	out, err := m.cluster.Kubectl(t.Context(), args...).CombinedOutput()
	return string(out), err
}

// waitFor polls cond every 200 ms for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("%s: not after %s (last: %s)", what, timeout, last)
}

// TestManagedAddons: an add-on enabled for three clusters, one of them
// not connected yet, is installed where connected and, when the third
// connects, there; deleted by hand it is restored; a new version rolls out
// one cluster at a time and stops at the cluster where it fails, leaving
// the next one alone. A viewer may look, not change.
func TestManagedAddons(t *testing.T) {
	if testing.Short() {
		t.Skip("needs three local clusters")
	}
	top := t
	ctx := t.Context()
	// The add-ons' chart repository: the demo charts behind TLS, under a
	// name of its own (the hub's built-in eco-addons has one version of
	// each chart; this test adds versions).
	repoDir := t.TempDir()
	if err := chartrepo.WriteDemoRepository(ctx, repoDir, true); err != nil {
		t.Fatal(err)
	}
	repoSrv, err := chartrepo.New(chartrepo.Config{Dir: repoDir})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(repoSrv)
	defer srv.Close()

	var features *hubapps.Features
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: t.TempDir(), HeartbeatInterval: time.Second, Logger: logger(t),
		Mount: func(h *hub.Hub) error {
			logging := addons.Defaults("test-addons")[2] // a DaemonSet on every node
			var err error
			features, err = hubapps.Start(ctx, hubapps.Config{Hub: h, Logger: logger(t), AddonRepository: "test-addons",
				Addons:      []addons.Addon{metricsServer(), logging},
				AddonResync: time.Hour, AddonHealthTimeout: 45 * time.Second, AddonRecheck: time.Second, RecoverInterval: time.Second})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.Close() }()
	defer func() { features.Close() }()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	if err := h.Do(ctx, "POST", "/api/v1/catalog/repositories", "", map[string]any{"name": "test-addons", "url": srv.URL, "caPEM": caPEM}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := features.Catalog.RefreshAndWait(ctx, "test-addons"); err != nil {
		t.Fatal(err)
	}

	// Three real clusters (kwok runs their pods), imported in name order.
	members := []*member{{name: "a-first"}, {name: "b-second"}, {name: "c-third"}}
	for _, m := range members {
		m.cluster = clustertest.Start(t, localcluster.Config{Full: true, Name: m.name})
		c, err := h.Import(ctx, m.name)
		if err != nil {
			t.Fatal(err)
		}
		m.id = c.ID
		if m.setup, err = localeco.Install(ctx, h, m.cluster, m.id, t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members[:2] {
		m.startAgent(t)
		if _, err := h.WaitState(ctx, m.id, store.StateConnected, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	status := func(m *member) addons.Status {
		var out struct{ Items []addons.Status }
		if err := h.Do(ctx, "GET", "/api/v1/clusters/"+m.id+"/addons", "", nil, &out); err != nil {
			t.Fatal(err)
		}
		for _, st := range out.Items {
			if st.Addon == "logging" {
				return st
			}
		}
		t.Fatalf("no logging add-on in %+v", out.Items)
		return addons.Status{}
	}
	healthyAt := func(m *member, version string) func() (bool, string) {
		return func() (bool, string) {
			st := status(m)
			return st.Health == addons.Healthy && st.Installed == version, st.Health + " " + st.Installed + " " + st.Reason
		}
	}

	var viewer hub.TokenJSON
	h.Do(ctx, "POST", "/api/v1/tokens", "", map[string]any{"name": "vera", "role": "member"}, &viewer)
	h.Do(ctx, "POST", "/api/v1/grants", "", map[string]string{"kind": "user", "subject": "vera", "cluster": members[0].id, "role": "view"}, nil)
	t.Run("a viewer looks but does not change", func(t *testing.T) {
		err := h.Do(ctx, "PUT", "/api/v1/addons/logging", viewer.Token, map[string]any{"enabled": true}, nil)
		var apiErr *localeco.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusForbidden {
			t.Fatalf("viewer enable: %v, want 403", err)
		}
		if err := h.Do(ctx, "GET", "/api/v1/clusters/"+members[0].id+"/addons", viewer.Token, nil, nil); err != nil {
			t.Fatalf("viewer status: %v", err)
		}
	})

	t.Run("enabled for all: installed where connected, then on connect", func(t *testing.T) {
		if err := h.Do(ctx, "PUT", "/api/v1/addons/logging", "", map[string]any{"enabled": true}, nil); err != nil {
			t.Fatal(err)
		}
		for _, m := range members[:2] {
			waitFor(t, 90*time.Second, "logging healthy in "+m.name, healthyAt(m, "0.1.0"))
		}
		if st := status(members[2]); st.Health != addons.Unknown || !strings.Contains(st.Reason, "not connected") {
			t.Fatalf("the disconnected cluster: %+v", st)
		}
		members[2].startAgent(top) // runs past this subtest
		waitFor(t, 90*time.Second, "logging healthy in the cluster that connected", healthyAt(members[2], "0.1.0"))
		// Helm's release record is in the cluster, made by the add-ons'
		// service identity.
		out, err := members[2].kubectl(t, "get", "secrets", "-n", "eco-logging", "-l", "owner=helm,name=eco-logging", "-o", "name")
		if err != nil || !strings.Contains(out, "sh.helm.release.v1.eco-logging.v1") {
			t.Fatalf("release secret: %s %v", out, err)
		}
		// The audit recorder writes in the background: awaited.
		waitFor(t, 10*time.Second, "the audit log naming the add-ons' service identity", func() (bool, string) {
			events, err := h.Store().ListAudit(ctx, store.AuditQuery{ClusterID: members[2].id, User: "service:addons"})
			return err == nil && len(events) > 0, fmt.Sprintf("%d events, %v", len(events), err)
		})
	})

	t.Run("the real metrics-server chart in one cluster", func(t *testing.T) {
		m := members[0]
		if err := h.Do(ctx, "PUT", "/api/v1/addons/metrics-server/clusters/"+m.id, "", map[string]any{"enabled": true}, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 90*time.Second, "metrics-server healthy", func() (bool, string) {
			var out struct{ Items []addons.Status }
			h.Do(ctx, "GET", "/api/v1/clusters/"+m.id+"/addons", "", nil, &out)
			for _, st := range out.Items {
				if st.Addon == "metrics-server" {
					return st.Health == addons.Healthy && st.Installed == "3.12.2", st.Health + " " + st.Reason
				}
			}
			return false, "not listed"
		})
		if out, err := m.kubectl(t, "get", "deployment", "-n", "kube-system", "eco-metrics-server", "-o", "jsonpath={.status.readyReplicas}"); err != nil || out != "1" {
			t.Fatalf("metrics-server deployment: %s %v", out, err)
		}
		if out, _ := members[1].kubectl(t, "get", "deployment", "-n", "kube-system", "eco-metrics-server"); !strings.Contains(out, "NotFound") {
			t.Fatalf("metrics-server is in a cluster it was not enabled for: %s", out)
		}
	})

	t.Run("deleted by hand, restored", func(t *testing.T) {
		m := members[0]
		if out, err := m.kubectl(t, "delete", "daemonset", "-n", "eco-logging", "eco-logging", "--wait=true"); err != nil {
			t.Fatalf("%s %v", out, err)
		}
		waitFor(t, 30*time.Second, "unhealthy after the delete", func() (bool, string) {
			features.Addons.Resync(ctx)
			st := status(m)
			return st.Health == addons.Healthy, st.Health + " " + st.Reason
		})
		if out, err := m.kubectl(t, "get", "daemonset", "-n", "eco-logging", "eco-logging"); err != nil {
			t.Fatalf("not restored: %s", out)
		}
		// The whole release uninstalled by hand: installed again. The
		// uninstall runs in the background, and until it has, the add-on
		// still looks healthy: the reinstall is awaited after it.
		var op apps.OperationJSON
		if err := h.Do(ctx, "DELETE", "/api/v1/clusters/"+m.id+"/releases/eco-logging/eco-logging", "", nil, &op); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "the uninstall", func() (bool, string) {
			var now apps.OperationJSON
			if err := h.Do(ctx, "GET", "/api/v1/operations/"+op.ID, "", nil, &now); err != nil {
				return false, err.Error()
			}
			if now.FinishedAt != nil && now.State != "succeeded" {
				t.Fatalf("the uninstall ended %s: %s", now.State, now.Message)
			}
			return now.FinishedAt != nil, now.State
		})
		waitFor(t, 60*time.Second, "reinstalled after an uninstall", func() (bool, string) {
			features.Addons.Resync(ctx)
			st := status(m)
			return st.Health == addons.Healthy && st.Installed == "0.1.0", st.Health + " " + st.Reason
		})
	})

	t.Run("a new version rolls out one at a time and stops at a failure", func(t *testing.T) {
		// Version 0.2.0 adds a ConfigMap; cluster b has one of that name
		// that Helm does not own, so the upgrade fails there.
		ch, err := chartrepo.Demo("eco-logging")
		if err != nil {
			t.Fatal(err)
		}
		ch.Templates = append(ch.Templates, &common.File{Name: "templates/extra.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: eco-logging-extra\ndata:\n  v: \"2\"\n")})
		if _, err := chartrepo.Package(ch, "0.2.0", nil, repoDir); err != nil {
			t.Fatal(err)
		}
		if err := repoSrv.Reindex(); err != nil {
			t.Fatal(err)
		}
		if _, err := features.Catalog.RefreshAndWait(ctx, "test-addons"); err != nil {
			t.Fatal(err)
		}
		if out, err := members[1].kubectl(t, "create", "configmap", "eco-logging-extra", "-n", "eco-logging", "--from-literal=owner=someone-else"); err != nil {
			t.Fatalf("%s %v", out, err)
		}
		if err := h.Do(ctx, "PUT", "/api/v1/addons/logging", "", map[string]any{"version": "0.2.0"}, nil); err != nil {
			t.Fatal(err)
		}
		var ro addons.Rollout
		waitFor(t, 120*time.Second, "the rollout stops", func() (bool, string) {
			var out struct{ Rollouts []addons.Rollout }
			h.Do(ctx, "GET", "/api/v1/addons", "", nil, &out)
			for _, r := range out.Rollouts {
				if r.Addon == "logging" && r.To == "0.2.0" {
					ro = r
				}
			}
			return ro.StoppedAt != "" || ro.Finished, ro.StoppedAt
		})
		if ro.Finished || ro.StoppedAt != members[1].id || !slices.Equal(ro.Done, []string{members[0].id, members[1].id}) || !slices.Equal(ro.Pending, []string{members[2].id}) {
			t.Fatalf("rollout %+v, want stopped at %s after %s, %s pending", ro, members[1].id, members[0].id, members[2].id)
		}
		if !strings.Contains(ro.Reason, "eco-logging-extra") {
			t.Errorf("the reason does not say what failed: %s", ro.Reason)
		}
		if st := status(members[0]); st.Installed != "0.2.0" || st.Health != addons.Healthy {
			t.Fatalf("first cluster: %+v, want 0.2.0 healthy", st)
		}
		if st := status(members[1]); st.Health != addons.Unhealthy {
			t.Fatalf("failing cluster: %+v, want unhealthy with a reason", st)
		}
		// The third cluster was left alone, and a resync keeps it so.
		features.Addons.Resync(ctx)
		if st := status(members[2]); st.Installed != "0.1.0" || st.Desired != "0.1.0" {
			t.Fatalf("third cluster: %+v, want 0.1.0 left alone", st)
		}
		var ops struct{ Items []apps.OperationJSON }
		h.Do(ctx, "GET", "/api/v1/clusters/"+members[2].id+"/operations", "", nil, &ops)
		for _, op := range ops.Items {
			if op.Kind == "upgrade" {
				t.Fatalf("the third cluster saw an upgrade: %+v", op)
			}
		}
	})

	t.Run("a restarted hub rolls the admin's version out from what runs, not the built-in one back", func(t *testing.T) {
		// The foreign ConfigMap is gone; the hub restarts, its built-in
		// version still 0.1.0, with the stopped rollout to 0.2.0 cut.
		if out, err := members[1].kubectl(t, "delete", "configmap", "eco-logging-extra", "-n", "eco-logging"); err != nil {
			t.Fatalf("%s %v", out, err)
		}
		features.Close()
		next, err := h.Restart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h = next
		for _, m := range members {
			if _, err := h.WaitState(ctx, m.id, store.StateConnected, 30*time.Second); err != nil {
				select {
				case aerr := <-m.done:
					t.Fatalf("%v; the agent of %s ended: %v", err, m.name, aerr)
				default:
				}
				t.Fatal(err)
			}
		}
		var ro addons.Rollout
		waitFor(t, 120*time.Second, "the startup rollout finishes", func() (bool, string) {
			var out struct{ Rollouts []addons.Rollout }
			h.Do(ctx, "GET", "/api/v1/addons", "", nil, &out)
			for _, r := range out.Rollouts {
				if r.Addon == "logging" {
					ro = r
				}
			}
			return ro.Finished || ro.StoppedAt != "", fmt.Sprintf("%+v", ro)
		})
		if !ro.Finished || ro.From != addons.KeepInstalled || ro.To != "0.2.0" || len(ro.Done) != 3 {
			t.Fatalf("startup rollout %+v, want finished over the three clusters", ro)
		}
		for _, m := range members {
			waitFor(t, 60*time.Second, "0.2.0 healthy in "+m.name, healthyAt(m, "0.2.0"))
		}
	})
}

// metricsServer is the curated metrics-server add-on without its
// APIService: kwok's pods serve nothing, and an unavailable aggregated API
// would break discovery (and namespace deletion) in the test clusters.
func metricsServer() addons.Addon {
	a := addons.Defaults("test-addons")[0]
	a.Values = map[string]any{"args": []any{"--kubelet-insecure-tls"}, "apiService": map[string]any{"create": false}}
	return a
}

// TestVersionKeptAcrossRestart: a version a hub admin set is in the store
// and a restarted hub targets it (its start-up rollout goes to it) instead
// of rolling back to the built-in one; a version the store refuses, or a
// store that fails, changes nothing. No cluster is needed: rollouts over
// none finish at once.
func TestVersionKeptAcrossRestart(t *testing.T) {
	ctx := t.Context()
	var features *hubapps.Features
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: t.TempDir(), Logger: logger(t),
		Mount: func(h *hub.Hub) error {
			var err error
			features, err = hubapps.Start(ctx, hubapps.Config{Hub: h, Logger: logger(t), AddonResync: time.Hour})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.Close() }()
	defer func() { features.Close() }()
	builtIn := map[string]string{}
	for _, a := range addons.Defaults("eco-addons") {
		builtIn[a.Name] = a.Chart.Version
	}
	versions := func() map[string]string {
		out := map[string]string{}
		for _, a := range features.Addons.Addons() {
			out[a.Name] = a.Chart.Version
		}
		return out
	}
	// rollout awaits the start-up rollout of addon (Run starts it).
	rollout := func(t *testing.T, addon string) addons.Rollout {
		var ro addons.Rollout
		waitFor(t, 10*time.Second, "the rollout of "+addon, func() (bool, string) {
			for _, r := range features.Addons.Rollouts() {
				if r.Addon == addon {
					ro = r
					return true, ""
				}
			}
			return false, "none"
		})
		return ro
	}

	if err := h.Do(ctx, "PUT", "/api/v1/addons/logging", "", map[string]any{"version": "0.2.0"}, nil); err != nil {
		t.Fatal(err)
	}
	// An add-on dropped from the list since its version was set.
	if _, err := h.Store().SetAddonVersion(ctx, store.AddonVersion{Addon: "retired", Version: "9.9.9"}); err != nil {
		t.Fatal(err)
	}
	features.Close()
	if h, err = h.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"metrics-server": builtIn["metrics-server"], "monitoring": builtIn["monitoring"], "logging": "0.2.0"}
	if got := versions(); !maps.Equal(got, want) {
		t.Fatalf("versions after a restart: %v, want %v (the admin's for logging, built-in for the others)", got, want)
	}
	if ro := rollout(t, "logging"); ro.From != addons.KeepInstalled || ro.To != "0.2.0" {
		t.Fatalf("start-up rollout %+v, want from %q to 0.2.0", ro, addons.KeepInstalled)
	}
	set, err := h.Store().AddonVersions(ctx)
	if err != nil || len(set) != 2 || set[0].Addon != "logging" || set[0].UpdatedBy != "admin" {
		t.Fatalf("stored versions %+v, %v; want logging's set by admin, and retired's", set, err)
	}

	t.Run("a version the store refuses changes nothing", func(t *testing.T) {
		err := h.Do(ctx, "PUT", "/api/v1/addons/logging", "", map[string]any{"version": strings.Repeat("9", store.MaxAddonVersion+1)}, nil)
		var apiErr *localeco.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest {
			t.Fatalf("a too long version: %v, want 400", err)
		}
		if got := versions(); got["logging"] != "0.2.0" {
			t.Fatalf("logging's version %s after a refused one, want 0.2.0", got["logging"])
		}
	})

	t.Run("a failed store write changes nothing", func(t *testing.T) {
		// The real store, closed: the write fails as a broken disk would.
		// The hub is of no further use.
		h.Store().Close()
		admin := hub.Identity{Name: "admin", Role: store.RoleAdmin}
		if _, err := features.Addons.SetVersion(ctx, admin, "logging", "0.3.0"); err == nil {
			t.Fatal("SetVersion with a closed store succeeded")
		}
		if got := versions(); got["logging"] != "0.2.0" {
			t.Fatalf("logging's version %s after a failed write, want 0.2.0", got["logging"])
		}
		if ro := rollout(t, "logging"); ro.To != "0.2.0" {
			t.Fatalf("rollout %+v after a failed write, want the one to 0.2.0", ro)
		}
	})
}
