package argocd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/pki"
	"github.com/eco-project/eco/store"
)

// cluster is the local cluster the tests share: it is the managed cluster
// and also runs "Argo CD"'s namespace, as in make demo.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	if os.Getenv("ECO_SKIP_CLUSTER") != "" {
		os.Exit(m.Run())
	}
	// Full: namespace deletion (an agent's goodbye, Removed) needs the
	// controller-manager.
	clustertest.Main(m, localcluster.Config{Name: "argocd", Full: true}, &cluster)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// rig is a hub with the shared cluster imported, its agent connected, and
// a registrar writing into namespace ns of the same cluster.
type rig struct {
	t        *testing.T
	cfg      argocd.Config // the registrar's, for restart
	hub      *localeco.Hub
	id       string
	ns       string
	cs       *kubernetes.Clientset
	reg      *argocd.Registrar
	registry *prometheus.Registry
	stop     func()
	// stopAgent stops the cluster's agent: the cluster turns Disconnected.
	stopAgent func()
}

func newRig(t *testing.T, mutate func(*argocd.Config)) *rig {
	t.Helper()
	if cluster == nil {
		t.Skip("ECO_SKIP_CLUSTER is set")
	}
	// Checked after every other cleanup: the registrar, hub and agent
	// leave no goroutine behind.
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		// client-go shares one transport per TLS configuration in a
		// process-wide cache: its idle HTTP/2 connection to the local
		// cluster is the cache's, not the registrar's.
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/eco-project/eco/localcluster.(*process).start.func1")}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	ctx := t.Context()
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var api, pages atomic.Pointer[http.Handler]
	h, err := localeco.StartHub(ctx, localeco.HubConfig{
		Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger.With("side", "hub"),
		Mount: func(h *hub.Hub) error {
			h.Mount(argocd.APIPath, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if p := api.Load(); p != nil {
					(*p).ServeHTTP(w, req)
					return
				}
				http.Error(w, "starting", http.StatusServiceUnavailable)
			}))
			for _, p := range ui.Patterns() {
				h.Mount(p, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					if p := pages.Load(); p != nil {
						(*p).ServeHTTP(w, req)
						return
					}
					http.Error(w, "starting", http.StatusServiceUnavailable)
				}))
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := h.Import(ctx, "local")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := localeco.Install(ctx, h, cluster, c.ID, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	acfg := setup.AgentConfig()
	acfg.Logger = logger.With("side", "agent")
	acfg.CheckInterval = time.Second
	acfg.BackoffMax = time.Second
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- agent.Run(actx, acfg) }()
	stopAgent := sync.OnceFunc(func() { acancel(); <-adone })
	t.Cleanup(func() {
		stopAgent()
		// The agent's namespace and RBAC go, so the next rig installs
		// afresh.
		cluster.Kubectl(context.Background(), "delete", "namespace", install.DefaultNamespace, "--ignore-not-found", "--wait=true", "--timeout=60s").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrolebinding", "eco:admins", "eco:editors", "eco:viewers", "eco-agent", "--ignore-not-found").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrole", "eco-agent", "--ignore-not-found").Run()
	})
	if _, err := h.WaitState(ctx, c.ID, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := "argocd-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 63 {
		ns = ns[:63]
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	cfg := argocd.Config{
		Hub:        h.Hub,
		Instances:  []argocd.Instance{{Kubeconfig: cluster.AdminKubeconfig, Namespace: ns, URL: "https://argocd.example"}},
		CAPEM:      h.CAPEM,
		Resync:     time.Second,
		Registerer: registry,
		Logger:     logger.With("side", "argocd"),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	reg, err := argocd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	handler := reg.Handler(h.Hub)
	api.Store(&handler)
	u, err := ui.New(ui.Config{Hub: h.Hub, ArgoCD: reg, Logger: logger.With("side", "ui")})
	if err != nil {
		t.Fatal(err)
	}
	var uh http.Handler = u
	pages.Store(&uh)
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- reg.Run(rctx) }()
	r := &rig{t: t, cfg: cfg, hub: h, id: c.ID, ns: ns, cs: cs, reg: reg, registry: registry, stopAgent: stopAgent}
	r.stop = func() { rcancel(); <-rdone }
	t.Cleanup(func() { r.stop() })
	return r
}

// restart stops the registrar and runs a new one, as a hub restarted
// with its configuration changed by mutate would (the rig's API and UI
// keep the old one).
func (r *rig) restart(mutate func(*argocd.Config)) {
	r.t.Helper()
	r.stop()
	cfg := r.cfg
	cfg.Registerer = prometheus.NewRegistry()
	mutate(&cfg)
	reg, err := argocd.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	r.cfg, r.reg, r.registry = cfg, reg, cfg.Registerer.(*prometheus.Registry)
	r.stop = func() { cancel(); <-done }
}

// eventually polls f every 50 ms until it returns nil or timeout passes.
func (r *rig) eventually(what string, timeout time.Duration, f func() error) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rig) secret() (*corev1.Secret, error) {
	return r.cs.CoreV1().Secrets(r.ns).Get(context.Background(), argocd.SecretName(r.id), metav1.GetOptions{})
}

func (r *rig) waitSecret() *corev1.Secret {
	r.t.Helper()
	var s *corev1.Secret
	r.eventually("the cluster Secret", 15*time.Second, func() (err error) { s, err = r.secret(); return err })
	return s
}

// config returns the client configuration Argo CD builds from a Secret:
// server, bearer token and CA from its config field.
func config(t *testing.T, s *corev1.Secret) *rest.Config {
	t.Helper()
	var cc struct {
		BearerToken     string `json:"bearerToken"`
		TLSClientConfig struct {
			CAData []byte `json:"caData"`
		} `json:"tlsClientConfig"`
	}
	if err := json.Unmarshal(s.Data["config"], &cc); err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: string(s.Data["server"]), BearerToken: cc.BearerToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: cc.TLSClientConfig.CAData}, Timeout: 10 * time.Second}
}

// whoAmI asks the cluster, through the hub, who the Secret's token is.
func whoAmI(cfg *rest.Config) (authnv1.UserInfo, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	rv, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	return rv.Status.UserInfo, nil
}

func tokenID(s *corev1.Secret) string { return s.Annotations[argocd.AnnotationTokenID] }

func TestRegistration(t *testing.T) {
	r := newRig(t, nil)
	s := r.waitSecret()

	t.Run("the Secret is what Argo CD reads", func(t *testing.T) {
		for k, want := range map[string]string{
			argocd.LabelSecretType: "cluster", argocd.LabelClusterID: r.id, argocd.LabelClusterName: "local",
			argocd.LabelProvider: "generic", argocd.LabelRegion: "local", argocd.LabelManagedBy: "eco-hub",
		} {
			if s.Labels[k] != want {
				t.Errorf("label %s = %q, want %q", k, s.Labels[k], want)
			}
		}
		if got := string(s.Data["server"]); got != r.hub.URL+"/clusters/"+r.id+"/k8s" {
			t.Errorf("server = %q", got)
		}
		if string(s.Data["name"]) != "local" {
			t.Errorf("name = %q", s.Data["name"])
		}
		for k, v := range s.Annotations {
			if strings.Contains(v, "ecot_") {
				t.Errorf("annotation %s carries a token", k)
			}
		}
		found := false
		for _, mf := range s.ManagedFields {
			found = found || (mf.Manager == argocd.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
		}
		if !found {
			t.Errorf("no server-side apply by %s in managedFields: %+v", argocd.FieldManager, s.ManagedFields)
		}
	})

	t.Run("its token acts as service:argocd in that cluster only", func(t *testing.T) {
		cfg := config(t, s)
		u, err := whoAmI(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if u.Username != "eco:service:argocd" || len(u.Groups) == 0 || u.Groups[0] != "eco:admins" {
			t.Errorf("cluster sees %q in %v, want eco:service:argocd in eco:admins", u.Username, u.Groups)
		}
		// It is no hub administrator: the hub API refuses it.
		var e *localeco.APIError
		err = r.hub.Do(t.Context(), http.MethodPost, "/api/v1/clusters", cfg.BearerToken, map[string]string{"name": "x", "provider": "generic"}, nil)
		if !errors.As(err, &e) || e.Code != http.StatusForbidden {
			t.Errorf("creating a cluster with Argo CD's token: %v, want 403", err)
		}
		err = r.hub.Do(t.Context(), http.MethodGet, "/api/v1/clusters/"+r.id+"/install.yaml", cfg.BearerToken, nil, nil)
		if !errors.As(err, &e) || e.Code != http.StatusForbidden {
			t.Errorf("reading the install YAML with Argo CD's token: %v, want 403", err)
		}
	})

	t.Run("fields users add survive, fields eco owns are restored", func(t *testing.T) {
		ctx := t.Context()
		user := applycorev1.Secret(s.Name, r.ns).WithData(map[string][]byte{"shard": []byte("1"), "server": []byte("https://evil.example")})
		if _, err := r.cs.CoreV1().Secrets(r.ns).Apply(ctx, user, metav1.ApplyOptions{FieldManager: "someone", Force: true}); err != nil {
			t.Fatal(err)
		}
		r.eventually("server restored, shard kept", 10*time.Second, func() error {
			got, err := r.secret()
			if err != nil {
				return err
			}
			if string(got.Data["server"]) != string(s.Data["server"]) {
				return errors.New("server is " + string(got.Data["server"]))
			}
			if string(got.Data["shard"]) != "1" {
				return errors.New("shard was lost")
			}
			if got.UID != s.UID {
				return errors.New("the Secret was recreated")
			}
			return nil
		})
	})

	t.Run("a Secret deleted by hand comes back", func(t *testing.T) {
		if err := r.cs.CoreV1().Secrets(r.ns).Delete(t.Context(), s.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		back := r.waitSecret()
		t.Logf("back after %s", time.Since(start).Round(time.Millisecond))
		if _, err := whoAmI(config(t, back)); err != nil {
			t.Errorf("the new Secret's token: %v", err)
		}
		st := r.reg.Status(r.id)
		if len(st) != 1 || !st[0].Registered || st[0].Error != "" || st[0].URL != "https://argocd.example" {
			t.Errorf("status = %+v", st)
		}
		if n := r.metric("eco_argocd_registered_clusters", "argocd"); n != 1 {
			t.Errorf("eco_argocd_registered_clusters = %v", n)
		}
	})

	t.Run("the API shows the registration to users of the cluster only", func(t *testing.T) {
		var v argocd.ClusterView
		if err := r.hub.Do(t.Context(), http.MethodGet, "/api/v1/clusters/"+r.id+"/argocd", "", nil, &v); err != nil {
			t.Fatal(err)
		}
		if !v.Connected || len(v.Registrations) != 1 || !v.Registrations[0].Registered || v.Registrations[0].Since.IsZero() {
			t.Errorf("view = %+v", v)
		}
		if v.Errors["argocd"] == "" {
			t.Errorf("no Application CRD in this cluster, yet no error: %+v", v)
		}
		// The cluster page's Argo CD tab shows the same.
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, r.hub.URL+"/ui/clusters/"+r.id+"/argocd", nil)
		req.Header.Set("Authorization", "Bearer "+r.hub.AdminToken)
		resp, err := r.hub.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`>Argo CD</a>`, `id="argocd-registrations"`, r.ns + "/" + argocd.SecretName(r.id), "No Application has this cluster"} {
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), want) {
				t.Errorf("Argo CD tab (%d) lacks %q", resp.StatusCode, want)
			}
		}
		// A member without a grant is told the cluster does not exist.
		var tok struct {
			Token string `json:"token"`
		}
		if err := r.hub.Do(t.Context(), http.MethodPost, "/api/v1/tokens", "", map[string]any{"name": "bob", "role": "member"}, &tok); err != nil {
			t.Fatal(err)
		}
		var e *localeco.APIError
		if err := r.hub.Do(t.Context(), http.MethodGet, "/api/v1/clusters/"+r.id+"/argocd", tok.Token, nil, nil); !errors.As(err, &e) || e.Code != http.StatusNotFound {
			t.Errorf("member without a grant: %v, want 404", err)
		}
		if err := r.hub.Do(t.Context(), http.MethodGet, "/api/v1/clusters/"+r.id+"/argocd", "ecot_wrong", nil, nil); !errors.As(err, &e) || e.Code != http.StatusUnauthorized {
			t.Errorf("bad token: %v, want 401", err)
		}
	})

	t.Run("a rename and the user's labels reach the same Secret, and a label removed leaves it", func(t *testing.T) {
		before, err := r.secret()
		if err != nil {
			t.Fatal(err)
		}
		patch := func(body map[string]any) {
			t.Helper()
			if err := r.hub.Do(t.Context(), http.MethodPatch, "/api/v1/clusters/"+r.id, "", body, nil); err != nil {
				t.Fatal(err)
			}
		}
		patch(map[string]any{"name": "local-eu", "labels": map[string]string{"env": "prod", "team.example.com/owner": "web"}})
		r.eventually("renamed and labelled", 10*time.Second, func() error {
			got, err := r.secret()
			if err != nil {
				return err
			}
			switch {
			case got.UID != before.UID || got.Name != before.Name:
				return fmt.Errorf("the Secret was replaced: %s %s", got.Name, got.UID)
			case string(got.Data["name"]) != "local-eu" || got.Labels[argocd.LabelClusterName] != "local-eu":
				return fmt.Errorf("name %q, label %q", got.Data["name"], got.Labels[argocd.LabelClusterName])
			case got.Labels["env"] != "prod" || got.Labels["team.example.com/owner"] != "web":
				return fmt.Errorf("labels %v", got.Labels)
			case string(got.Data["server"]) != string(before.Data["server"]):
				return fmt.Errorf("server changed to %q", got.Data["server"])
			}
			return nil
		})
		patch(map[string]any{"labels": map[string]string{"env": "staging"}})
		r.eventually("a label changed, one removed", 10*time.Second, func() error {
			got, err := r.secret()
			if err != nil {
				return err
			}
			if _, still := got.Labels["team.example.com/owner"]; still || got.Labels["env"] != "staging" || got.Labels[argocd.LabelClusterID] != r.id {
				return fmt.Errorf("labels %v", got.Labels)
			}
			return nil
		})
	})

	t.Run("deleting the cluster from the hub deletes the Secret and revokes the token", func(t *testing.T) {
		cur := r.waitSecret()
		cfg := config(t, cur)
		if err := r.hub.Do(t.Context(), http.MethodDelete, "/api/v1/clusters/"+r.id, "", nil, nil); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r.eventually("the Secret gone", 10*time.Second, func() error {
			if _, err := r.secret(); !apierrors.IsNotFound(err) {
				return errors.New("still there")
			}
			return nil
		})
		t.Logf("gone after %s", time.Since(start).Round(time.Millisecond))
		if _, err := whoAmI(cfg); !apierrors.IsUnauthorized(err) {
			t.Errorf("the old token: %v, want 401", err)
		}
		tokens, err := r.hub.Store().ListTokens(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range tokens {
			if tk.Name == "service:argocd" && !tk.Revoked() && !tk.Expired(time.Now()) {
				t.Errorf("token %s of service:argocd is still live", tk.ID)
			}
		}
	})
}

// metric returns the value of the series of counter or gauge name whose
// first label is instance, or -1 if there is none.
func (r *rig) metric(name, instance string) float64 {
	mfs, err := r.registry.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if len(m.Label) > 0 && m.Label[0].GetValue() == instance {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func TestTokenRotation(t *testing.T) {
	// A 15 s token is replaced when less than 5 s is left.
	r := newRig(t, func(c *argocd.Config) { c.TokenTTL = 15 * time.Second })
	first := r.waitSecret()
	oldCfg := config(t, first)
	r.eventually("a new token", 20*time.Second, func() error {
		s, err := r.secret()
		if err != nil {
			return err
		}
		if tokenID(s) == tokenID(first) {
			return errors.New("same token")
		}
		if s.UID != first.UID {
			return errors.New("the Secret was recreated")
		}
		if _, err := whoAmI(config(t, s)); err != nil {
			return err
		}
		return nil
	})
	// The old token still works until it expires: Argo CD never holds one
	// the hub refuses.
	if _, err := whoAmI(oldCfg); err != nil {
		t.Errorf("old token right after rotation: %v", err)
	}
	if n := r.metric("eco_argocd_token_rotations_total", "argocd"); n < 1 {
		t.Errorf("eco_argocd_token_rotations_total = %v, want at least 1", n)
	}
}

// TestSelectorAndGrant: an instance whose selector does not pick the
// cluster says so and leaves alone the Secret another instance wrote in
// the same namespace (reached by another kubeconfig file, which
// ValidateInstances cannot tell from another cluster); the grant is the
// configured one, enforced by the cluster.
func TestSelectorAndGrant(t *testing.T) {
	// The same cluster by a kubeconfig file of another name.
	kc, err := os.ReadFile(cluster.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	alias := filepath.Join(t.TempDir(), "same-cluster.kubeconfig")
	if err := os.WriteFile(alias, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *argocd.Config) {
		c.Grant = store.ClusterView
		c.Instances = append(c.Instances, argocd.Instance{
			Name: "eks-only", Kubeconfig: alias, Namespace: c.Instances[0].Namespace,
			Selector: argocd.Selector{Providers: []store.Provider{store.ProviderEKS}},
		})
	})
	s := r.waitSecret()
	if s.Labels[argocd.LabelInstance] != argocd.DefaultInstanceName {
		t.Errorf("instance label %q", s.Labels[argocd.LabelInstance])
	}
	u, err := whoAmI(config(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Groups) == 0 || u.Groups[0] != "eco:viewers" {
		t.Errorf("groups %v, want eco:viewers first (grant view)", u.Groups)
	}
	// The view grant is enforced by the cluster: no writes.
	cs, _ := kubernetes.NewForConfig(config(t, s))
	_, err = cs.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "nope"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("creating a ConfigMap with a view grant: %v, want Forbidden", err)
	}
	var st []argocd.Registration
	r.eventually("both instances considered", 5*time.Second, func() error {
		st = r.reg.Status(r.id)
		if len(st) != 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if st[0].Instance != "argocd" || !st[0].Registered || st[1].Instance != "eks-only" || st[1].Registered || st[1].Reason == "" {
		t.Errorf("status = %+v", st)
	}
	// Two resyncs (a second each here) later, the Secret is still the
	// object first written: instance eks-only never deleted it (the
	// other would have written it again, under a new UID).
	since := st[0].LastReconcile
	r.eventually("two more resyncs", 15*time.Second, func() error {
		if st := r.reg.Status(r.id); len(st) != 2 || st[0].LastReconcile.Sub(since) < 2*time.Second {
			return errors.New("not yet")
		}
		return nil
	})
	if after, err := r.secret(); err != nil || after.UID != s.UID {
		t.Errorf("the registered Secret after instance eks-only's resync: %v (UID %s, was %s)", err, uidOf(after), s.UID)
	}
}

func uidOf(s *corev1.Secret) string {
	if s == nil {
		return ""
	}
	return string(s.UID)
}

func TestUnreachableInstance(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "dead.kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: dead, context: {cluster: dead, user: u}}]
current-context: dead
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *argocd.Config) {
		c.Instances = append(c.Instances, argocd.Instance{Name: "dead", Kubeconfig: kc})
	})
	r.waitSecret() // the live instance is not held up by the dead one
	r.eventually("the error shown", 10*time.Second, func() error {
		for _, s := range r.reg.Status(r.id) {
			if s.Instance == "dead" && s.Error != "" && !s.Registered {
				return nil
			}
		}
		return errors.New("no error yet")
	})
	r.eventually("instance_up 0", 10*time.Second, func() error {
		if r.metric("eco_argocd_instance_up", "dead") != 0 || r.metric("eco_argocd_instance_up", "argocd") != 1 {
			return errors.New("not yet")
		}
		return nil
	})
}

// TestDisconnectedStaysRegistered: while ECO is not connected the Secret
// stays, and what Argo CD gets through the hub is a Kubernetes Status
// naming eco's state and reason.
func TestDisconnectedStaysRegistered(t *testing.T) {
	r := newRig(t, nil)
	s := r.waitSecret()
	r.stopAgent()
	if _, err := r.hub.WaitState(t.Context(), r.id, store.StateDisconnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // a few resyncs and the Disconnected event
	got, err := r.secret()
	if err != nil || got.UID != s.UID || tokenID(got) != tokenID(s) {
		t.Fatalf("while Disconnected the Secret is %v, %v; want it unchanged", got, err)
	}
	_, err = whoAmI(config(t, got))
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Code != http.StatusServiceUnavailable || !strings.Contains(st.Status().Message, "Disconnected") {
		t.Errorf("Argo CD's request while Disconnected: %v, want a 503 Status naming Disconnected", err)
	}
	var v argocd.ClusterView
	if err := r.hub.Do(t.Context(), http.MethodGet, "/api/v1/clusters/"+r.id+"/argocd", "", nil, &v); err != nil {
		t.Fatal(err)
	}
	if v.Connected || v.State != "Disconnected" || len(v.Registrations) != 1 || !v.Registrations[0].Registered {
		t.Errorf("view while Disconnected = %+v", v)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, r.hub.URL+"/ui/clusters/"+r.id+"/argocd", nil)
	req.Header.Set("Authorization", "Bearer "+r.hub.AdminToken)
	resp, err := r.hub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "All Argo CD features") {
		t.Errorf("the Argo CD tab while Disconnected does not say Argo CD features are unavailable")
	}
}

// TestRemovedUnregisters: the agent's namespace deleted → the cluster is
// Removed → the Secret is deleted in seconds and its token revoked.
func TestRemovedUnregisters(t *testing.T) {
	r := newRig(t, nil)
	s := r.waitSecret()
	cfg := config(t, s)
	if err := cluster.Kubectl(t.Context(), "delete", "namespace", install.DefaultNamespace, "--wait=false").Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.hub.WaitState(t.Context(), r.id, store.StateRemoved, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.eventually("the Secret gone", 10*time.Second, func() error {
		if _, err := r.secret(); !apierrors.IsNotFound(err) {
			return errors.New("still there")
		}
		return nil
	})
	t.Logf("Secret gone %s after Removed", time.Since(start).Round(time.Millisecond))
	tokens, err := r.hub.Store().ListTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tokens {
		if tk.Name == "service:argocd" && !tk.Revoked() {
			t.Errorf("token %s of service:argocd is not revoked", tk.ID)
		}
	}
	if _, err := r.hub.AuthenticateToken(t.Context(), cfg.BearerToken); err == nil {
		t.Error("the hub still accepts the Removed cluster's Argo CD token")
	}
	// The grant goes after the Secret and the tokens.
	r.eventually("the grant of service:argocd gone", 10*time.Second, func() error {
		grants, err := r.hub.Store().ListGrants(t.Context(), r.id)
		if err != nil {
			return err
		}
		for _, g := range grants {
			if g.Subject == "service:argocd" {
				return fmt.Errorf("grant %s of service:argocd is still there", g.ID)
			}
		}
		return nil
	})
	// The registration and its end are in the audit log, which outlives
	// the cluster, with the reason.
	r.eventually("the registration and its end audited", 10*time.Second, func() error {
		events, err := r.hub.Store().ListAudit(t.Context(), store.AuditQuery{ClusterID: r.id, Limit: 200})
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, ev := range events {
			if ev.Source == "argocd" && ev.User == "service:argocd-registrar" && ev.Name == argocd.SecretName(r.id) {
				seen[ev.Verb] = seen[ev.Verb] || ev.Verb != "argocd-unregister" || strings.Contains(ev.Path, "agent's namespace was deleted")
			}
		}
		if !seen["argocd-register"] || !seen["argocd-unregister"] {
			return fmt.Errorf("audited: %v", seen)
		}
		return nil
	})
}

// TestInstanceThroughTunnel: Argo CD runs in a cluster eco manages (here
// the managed cluster itself); the hub writes its Secret through that
// cluster's tunnel, as service:argocd-registrar.
func TestInstanceThroughTunnel(t *testing.T) {
	r := newRig(t, func(c *argocd.Config) {
		c.Instances[0].Kubeconfig, c.Instances[0].Cluster = "", "local"
	})
	s := r.waitSecret()
	if _, err := whoAmI(config(t, s)); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range s.ManagedFields {
		found = found || mf.Manager == argocd.FieldManager
	}
	if !found {
		t.Errorf("managedFields %+v", s.ManagedFields)
	}
	// The audit recorder writes in the background, after the request
	// that wrote the Secret: awaited.
	r.eventually("an audit event of service:argocd-registrar writing the Secret", 10*time.Second, func() error {
		events, err := r.hub.Store().ListAudit(t.Context(), store.AuditQuery{ClusterID: r.id, Limit: 100})
		if err != nil {
			return err
		}
		for _, e := range events {
			if e.User == "service:argocd-registrar" && e.Resource == "secrets" {
				return nil
			}
		}
		return fmt.Errorf("none in %d events", len(events))
	})
}

// TestSelectorByLabels: an instance that selects clusters by user label
// registers a cluster once it is given the label, and unregisters it
// (Secret deleted, token revoked) once the label goes.
func TestSelectorByLabels(t *testing.T) {
	r := newRig(t, func(c *argocd.Config) {
		c.Instances[0].Selector = argocd.Selector{Labels: map[string]string{"env": "prod"}}
	})
	r.eventually("told why the cluster is not registered", 15*time.Second, func() error {
		if st := r.reg.Status(r.id); len(st) != 1 || st[0].Registered || !strings.Contains(st[0].Reason, "selector") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if _, err := r.secret(); !apierrors.IsNotFound(err) {
		t.Fatalf("Secret of an unselected cluster: %v", err)
	}
	label := func(labels map[string]string) {
		t.Helper()
		c, err := r.hub.Store().GetCluster(t.Context(), r.id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.hub.UpdateCluster(t.Context(), r.id, store.ClusterUpdate{Name: c.Name, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	label(map[string]string{"env": "prod"})
	cfg := config(t, r.waitSecret())
	if _, err := whoAmI(cfg); err != nil {
		t.Fatalf("the registration's token: %v", err)
	}
	label(map[string]string{"env": "dev"})
	r.eventually("the Secret gone once the label changed", 15*time.Second, func() error {
		if _, err := r.secret(); !apierrors.IsNotFound(err) {
			return errors.New("still there")
		}
		return nil
	})
	if _, err := whoAmI(cfg); !apierrors.IsUnauthorized(err) {
		t.Errorf("the unregistered cluster's token: %v, want 401", err)
	}
}

// TestHubCAChanged: a hub restarted with another CA bundle (here the old
// CA and a new one, as during a CA rotation) updates every Secret in
// place: same object, same token, the new bundle; Argo CD's config from
// it still reaches the cluster.
func TestHubCAChanged(t *testing.T) {
	r := newRig(t, nil)
	before := r.waitSecret()
	next, err := pki.NewCA("eco hub CA (next)", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, r.cfg.CAPEM...), next.CertPEM...)
	r.restart(func(c *argocd.Config) { c.CAPEM = bundle })
	var after *corev1.Secret
	r.eventually("the new CA bundle in the Secret", 15*time.Second, func() error {
		s, err := r.secret()
		if err != nil {
			return err
		}
		if !bytes.Contains(config(t, s).TLSClientConfig.CAData, next.CertPEM) {
			return errors.New("still the old CA")
		}
		after = s
		return nil
	})
	if after.UID != before.UID || tokenID(after) != tokenID(before) {
		t.Errorf("Secret %s token %s after the change, want the same object %s and token %s", after.UID, tokenID(after), before.UID, tokenID(before))
	}
	if _, err := whoAmI(config(t, after)); err != nil {
		t.Errorf("Argo CD's config with the new bundle: %v", err)
	}
}
