package apps_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"helm.sh/helm/v4/pkg/action"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localeco"
)

// call calls the hub API with token ("" for admin) and returns the
// status code, decoding a 2xx answer into out.
func (w *world) call(method, path, token string, in, out any) (int, string) {
	w.t.Helper()
	err := w.hub.Do(w.t.Context(), method, path, token, in, out)
	var apiErr *localeco.APIError
	switch {
	case err == nil:
		return 200, ""
	case errors.As(err, &apiErr):
		return apiErr.Code, apiErr.Body
	}
	w.t.Fatalf("%s %s: %v", method, path, err)
	return 0, ""
}

// waitOperation polls operation id until it is finished and returns it.
func (w *world) waitOperation(id string, timeout time.Duration) apps.OperationJSON {
	w.t.Helper()
	var op apps.OperationJSON
	for deadline := time.Now().Add(timeout); ; {
		if code, body := w.call("GET", "/api/v1/operations/"+id, "", nil, &op); code != 200 {
			w.t.Fatalf("operation %s: %d %s", id, code, body)
		}
		if op.FinishedAt != nil {
			return op
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("operation %s still %s after %s: %s\n%s", id, op.State, timeout, op.Message, op.Log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// token creates a member token with role in the world's cluster.
func (w *world) token(name, role string) string {
	w.t.Helper()
	var tok hub.TokenJSON
	if err := w.hub.Do(w.t.Context(), "POST", "/api/v1/tokens", "", map[string]any{"name": name, "role": "member"}, &tok); err != nil {
		w.t.Fatal(err)
	}
	if err := w.hub.Do(w.t.Context(), "POST", "/api/v1/grants", "", map[string]string{"kind": "user", "subject": name, "cluster": w.id, "role": role}, nil); err != nil {
		w.t.Fatal(err)
	}
	return tok.Token
}

// helmDirect is Helm's own view of the cluster, straight to its API
// server as its admin: the release records the helm CLI would read.
type helmDirect struct{ cfg *rest.Config }

func (g helmDirect) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }
func (g helmDirect) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	d, err := discovery.NewDiscoveryClientForConfig(g.cfg)
	return memory.NewMemCacheClient(d), err
}
func (g helmDirect) ToRESTMapper() (meta.RESTMapper, error) {
	d, err := g.ToDiscoveryClient()
	return restmapper.NewDeferredDiscoveryRESTMapper(d), err
}
func (g helmDirect) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(*clientcmdapi.NewConfig(), &clientcmd.ConfigOverrides{})
}

// helmReleases lists every release in every namespace, every state, as
// Helm's own storage has them.
func helmReleases(t *testing.T) map[string]*release.Release {
	t.Helper()
	cfg := action.NewConfiguration()
	if err := cfg.Init(helmDirect{cluster.RESTConfig()}, "", "secret"); err != nil {
		t.Fatal(err)
	}
	l := action.NewList(cfg)
	l.AllNamespaces, l.All = true, true
	l.SetStateMask()
	rs, err := l.Run()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*release.Release{}
	for _, r := range rs {
		rel := r.(*release.Release)
		out[rel.Namespace+"/"+rel.Name] = rel
	}
	return out
}

// TestHelmThroughTheHub: the whole life of a release — preview, install,
// upgrade with a diff, rollback, uninstall — through hub, tunnel and agent
// onto a real cluster, as the signed-in hub user; checked with kubectl
// and Helm's own release records. A viewer may look, not change;
// schema-invalid values change nothing.
func TestHelmThroughTheHub(t *testing.T) {
	t.Cleanup(checkLeaks(t))
	w := newWorld(t)
	v1 := packageChart(t, "shop", nil)
	v2 := packageChart(t, "shop", func(version *string, values map[string]any) {
		*version = "1.1.0"
		values["greeting"] = "hello from shop 1.1"
	})
	base := "/api/v1/clusters/" + w.id + "/releases"
	install := map[string]any{"namespace": "shop-ns", "name": "shop", "chart": map[string]any{"archive": v1}, "values": "replicaCount: 3\n"}

	t.Run("preview changes nothing", func(t *testing.T) {
		in := clone(install)
		in["dryRun"] = true
		var p apps.Preview
		if code, body := w.call("POST", base, "", in, &p); code != 200 {
			t.Fatalf("dry run: %d %s", code, body)
		}
		for _, want := range []string{"kind: Deployment", "name: shop-web", "replicas: 3", "kind: Service", "kind: ConfigMap", "kind: StatefulSet", "kind: Widget", "hook: "} {
			if !strings.Contains(p.Manifest, want) {
				t.Errorf("preview lacks %q:\n%s", want, p.Manifest)
			}
		}
		if !strings.Contains(p.Notes, "runs 3 replicas") {
			t.Errorf("preview notes %q", p.Notes)
		}
		if out, _ := kubectlErr(t, "get", "secrets", "-A", "-l", "owner=helm", "-o", "name"); strings.TrimSpace(out) != "" {
			t.Fatalf("a dry run left release records: %s", out)
		}
	})

	t.Run("schema-invalid values are refused and change nothing", func(t *testing.T) {
		in := clone(install)
		in["values"] = "replicaCount: many\n"
		code, body := w.call("POST", base, "", in, nil)
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, "schema") || !strings.Contains(body, "replicaCount") {
			t.Fatalf("invalid values: %d %s, want 422 naming the schema and replicaCount", code, body)
		}
		if out, err := kubectlErr(t, "get", "namespace", "shop-ns"); err == nil {
			t.Fatalf("the namespace exists after a refused install: %s", out)
		}
		var ops struct{ Items []apps.OperationJSON }
		w.call("GET", "/api/v1/clusters/"+w.id+"/operations", "", nil, &ops)
		if len(ops.Items) != 0 {
			t.Fatalf("a refused install left operations: %+v", ops.Items)
		}
	})

	viewer := w.token("vera", "view")
	t.Run("a viewer is refused", func(t *testing.T) {
		if code, body := w.call("POST", base, viewer, install, nil); code != http.StatusForbidden || !strings.Contains(body, "vera") {
			t.Fatalf("viewer install: %d %s, want 403", code, body)
		}
		if code, _ := w.call("GET", base, viewer, nil, nil); code != 200 {
			t.Fatalf("viewer list: %d, want 200", code)
		}
	})

	var op apps.OperationJSON
	t.Run("install", func(t *testing.T) {
		if code, body := w.call("POST", base, "", install, &op); code != 200 || op.ID == "" || op.State != "running" {
			t.Fatalf("install: %d %s %+v", code, body, op)
		}
		done := w.waitOperation(op.ID, 2*time.Minute)
		if done.State != "succeeded" || done.Revision != 1 || !strings.Contains(done.Log, "install of release shop-ns/shop") {
			t.Fatalf("install ended %s (%s), revision %d, log:\n%s", done.State, done.Message, done.Revision, done.Log)
		}
		// Everything landed in the release namespace (helm#9256), the
		// CRD's object too.
		for _, obj := range []string{"deployment/shop-web", "service/shop-web", "configmap/shop-config", "statefulset/shop-cache", "widget.shop.eco.test/shop-widget", "configmap/shop-migration", "configmap/shop-welcome", "secret/sh.helm.release.v1.shop.v1"} {
			kubectl(t, "get", "-n", "shop-ns", obj)
		}
		if out, _ := kubectlErr(t, "get", "widgets.shop.eco.test", "-n", "default", "-o", "name"); strings.TrimSpace(out) != "" {
			t.Fatalf("objects landed in default: %s", out)
		}
		if got := kubectl(t, "get", "-n", "shop-ns", "deployment/shop-web", "-o", "jsonpath={.spec.replicas}"); got != "3" {
			t.Fatalf("replicas %s, want 3 from the values", got)
		}
		// Helm's own records: deployed, revision 1, the values given.
		rel := helmReleases(t)["shop-ns/shop"]
		if rel == nil || rel.Info.Status != "deployed" || rel.Version != 1 || rel.Chart.Metadata.Version != "1.0.0" || fmt.Sprint(rel.Config["replicaCount"]) != "3" {
			t.Fatalf("Helm's record: %+v", rel)
		}
		// The cluster saw the hub user (eco:admin), through the agent.
		if got := kubectl(t, "get", "-n", "shop-ns", "configmap/shop-config", "-o", "jsonpath={.metadata.managedFields[0].manager}"); got == "" {
			t.Fatal("no field manager")
		}
	})

	t.Run("list history values manifest", func(t *testing.T) {
		var list struct{ Items []apps.Release }
		if code, body := w.call("GET", base, viewer, nil, &list); code != 200 || len(list.Items) != 1 {
			t.Fatalf("list: %d %s %+v", code, body, list)
		}
		r := list.Items[0]
		if r.Name != "shop" || r.Namespace != "shop-ns" || r.Status != "deployed" || r.Chart != "shop-1.0.0" || r.AppVersion != "2.4.1" || r.Updated.IsZero() {
			t.Fatalf("listed %+v", r)
		}
		var d apps.Details
		if code, body := w.call("GET", base+"/shop-ns/shop", "", nil, &d); code != 200 || fmt.Sprint(d.Values["replicaCount"]) != "3" || !strings.Contains(d.Manifest, "shop-web") || d.Revision != 1 {
			t.Fatalf("get: %d %s %+v", code, body, d.Values)
		}
		// Values and manifests may hold secrets: a viewer (whom the
		// cluster's view role denies Secrets) sees the list, not them.
		if code, body := w.call("GET", base+"/shop-ns/shop", viewer, nil, nil); code != http.StatusForbidden || !strings.Contains(body, "eco:vera") {
			t.Fatalf("viewer get values: %d %s, want the cluster's 403", code, body)
		}
		if code, _ := w.call("GET", base+"/shop-ns/nothere", "", nil, nil); code != 404 {
			t.Fatalf("an unknown release: %d, want 404", code)
		}
	})

	t.Run("upgrade with a diff", func(t *testing.T) {
		up := map[string]any{"chart": map[string]any{"archive": v2}, "values": "replicaCount: 3\n", "dryRun": true}
		var p apps.Preview
		if code, body := w.call("POST", base+"/shop-ns/shop/upgrade", "", up, &p); code != 200 {
			t.Fatalf("upgrade preview: %d %s", code, body)
		}
		if !strings.Contains(p.Diff, "-  greeting: \"hello from the shop\"") || !strings.Contains(p.Diff, "+  greeting: \"hello from shop 1.1\"") {
			t.Fatalf("diff:\n%s", p.Diff)
		}
		delete(up, "dryRun")
		if code, body := w.call("POST", base+"/shop-ns/shop/upgrade", "", up, &op); code != 200 {
			t.Fatalf("upgrade: %d %s", code, body)
		}
		if done := w.waitOperation(op.ID, 2*time.Minute); done.State != "succeeded" || done.Revision != 2 {
			t.Fatalf("upgrade ended %s: %s\n%s", done.State, done.Message, done.Log)
		}
		if got := kubectl(t, "get", "-n", "shop-ns", "configmap/shop-config", "-o", "jsonpath={.data.greeting}"); got != "hello from shop 1.1" {
			t.Fatalf("greeting after upgrade %q", got)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		if code, body := w.call("POST", base+"/shop-ns/shop/rollback", "", map[string]any{"revision": 1}, &op); code != 200 {
			t.Fatalf("rollback: %d %s", code, body)
		}
		if done := w.waitOperation(op.ID, 2*time.Minute); done.State != "succeeded" || done.Revision != 3 {
			t.Fatalf("rollback ended %s: %s\n%s", done.State, done.Message, done.Log)
		}
		if got := kubectl(t, "get", "-n", "shop-ns", "configmap/shop-config", "-o", "jsonpath={.data.greeting}"); got != "hello from the shop" {
			t.Fatalf("greeting after rollback %q", got)
		}
		var h struct{ Items []apps.Release }
		w.call("GET", base+"/shop-ns/shop/history", viewer, nil, &h)
		var got []string
		for _, r := range h.Items {
			got = append(got, fmt.Sprintf("%d:%s:%s", r.Revision, r.Status, r.Version))
		}
		if strings.Join(got, " ") != "1:superseded:1.0.0 2:superseded:1.1.0 3:deployed:1.0.0" {
			t.Fatalf("history %v", got)
		}
		if code, _ := w.call("POST", base+"/shop-ns/shop/rollback", viewer, map[string]any{"revision": 2}, nil); code != http.StatusForbidden {
			t.Fatalf("viewer rollback: %d, want 403", code)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		if code, body := w.call("DELETE", base+"/shop-ns/shop", viewer, nil, nil); code != http.StatusForbidden {
			t.Fatalf("viewer uninstall: %d %s, want 403", code, body)
		}
		if code, body := w.call("DELETE", base+"/shop-ns/shop", "", nil, &op); code != 200 {
			t.Fatalf("uninstall: %d %s", code, body)
		}
		if done := w.waitOperation(op.ID, 2*time.Minute); done.State != "succeeded" {
			t.Fatalf("uninstall ended %s: %s\n%s", done.State, done.Message, done.Log)
		}
		if out, err := kubectlErr(t, "get", "-n", "shop-ns", "deployment/shop-web"); err == nil {
			t.Fatalf("the deployment outlived the uninstall: %s", out)
		}
		if rel := helmReleases(t)["shop-ns/shop"]; rel != nil {
			t.Fatalf("Helm still has the release: %s", rel.Info.Status)
		}
	})
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

// checkLeaks returns a cleanup that fails t if goroutines started during
// it are still running a few seconds after it (the hub's, the agent's,
// Helm's operations'), other than those more ignores.
func checkLeaks(t *testing.T, more ...goleak.Option) func() {
	opts := append([]goleak.Option{goleak.IgnoreCurrent(), goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// client-go caches TLS transports process-wide (the test's own
		// direct clients to the cluster); their idle HTTP/2 connections
		// stay.
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop")}, more...)
	return func() {
		if err := goleak.Find(opts...); err != nil {
			t.Error(err)
		}
	}
}
