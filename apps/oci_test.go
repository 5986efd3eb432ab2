package apps_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/registrytest"
)

// TestHelmFromOCIRegistry: a chart pushed to a real OCI registry (basic
// auth, TLS from its own CA) is discovered by the App Catalog — the
// registry added without chart names — and installed from it through
// hub, tunnel and agent onto the real cluster; a second version pushed
// later shows after a refresh and the release is upgraded to it. Checked
// with kubectl and Helm's own release records.
func TestHelmFromOCIRegistry(t *testing.T) {
	// The in-process registry keeps a notification broadcaster for the
	// process.
	t.Cleanup(checkLeaks(t, goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run")))
	w := newWorld(t)
	reg := registrytest.Start(t, registrytest.Config{User: "pusher", Password: "s3cret-token"})
	reg.PushChart(t, "charts/shop", "1.0.0", chartArchive(t, "shop", nil))
	reg.PushImage(t, "charts/web", "1.0.0") // beside the chart, not one
	base := "/api/v1/clusters/" + w.id + "/releases"
	cleanupNamespace(t, "oci-shop")

	t.Run("added without chart names, the chart is discovered", func(t *testing.T) {
		in := map[string]any{"name": "registry", "url": "oci://" + reg.Host + "/charts", "username": "pusher", "password": "s3cret-token", "caPEM": reg.CAPEM}
		if code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil); code != 200 {
			t.Fatalf("add: %d %s", code, body)
		}
		st := w.waitRepository("registry", "a finished refresh", func(st catalog.RepositoryStatus) bool { return !st.Refreshing && st.RefreshedAt != nil })
		if st.RefreshError != "" || st.Charts != 1 || st.Versions != 1 {
			t.Fatalf("status %+v, want shop alone", st)
		}
		var hits struct{ Items []catalog.Hit }
		w.call("GET", "/api/v1/catalog/charts?q=shop", "", nil, &hits)
		if len(hits.Items) != 1 || hits.Items[0].Repo != "registry" || hits.Items[0].Version != "1.0.0" {
			t.Fatalf("search: %+v", hits.Items)
		}
	})

	var op apps.OperationJSON
	t.Run("install from the registry", func(t *testing.T) {
		in := map[string]any{"namespace": "oci-shop", "name": "shop", "chart": map[string]any{"repo": "registry", "name": "shop", "version": "1.0.0"}, "values": "replicaCount: 2\n"}
		if code, body := w.call("POST", base, "", in, &op); code != 200 || op.ID == "" {
			t.Fatalf("install: %d %s %+v", code, body, op)
		}
		if done := w.waitOperation(op.ID, 2*time.Minute); done.State != "succeeded" || done.Revision != 1 {
			t.Fatalf("install ended %s (%s), revision %d, log:\n%s", done.State, done.Message, done.Revision, done.Log)
		}
		if got := kubectl(t, "get", "-n", "oci-shop", "deployment/shop-web", "-o", "jsonpath={.spec.replicas}"); got != "2" {
			t.Fatalf("replicas %s, want 2 from the values", got)
		}
		if got := kubectl(t, "get", "-n", "oci-shop", "configmap/shop-config", "-o", "jsonpath={.data.greeting}"); got != "hello from the shop" {
			t.Fatalf("greeting %q", got)
		}
		rel := helmReleases(t)["oci-shop/shop"]
		if rel == nil || rel.Info.Status != "deployed" || rel.Version != 1 || rel.Chart.Metadata.Version != "1.0.0" || fmt.Sprint(rel.Config["replicaCount"]) != "2" {
			t.Fatalf("Helm's record: %+v", rel)
		}
	})

	t.Run("a version pushed later shows after a refresh", func(t *testing.T) {
		reg.PushChart(t, "charts/shop", "1.1.0", chartArchive(t, "shop", func(version *string, values map[string]any) {
			*version = "1.1.0"
			values["greeting"] = "hello from the registry"
		}))
		if code, body := w.call("POST", "/api/v1/catalog/repositories/registry/refresh", "", nil, nil); code != 200 {
			t.Fatalf("refresh: %d %s", code, body)
		}
		st := w.waitRepository("registry", "two versions", func(st catalog.RepositoryStatus) bool { return !st.Refreshing && st.Versions == 2 })
		if st.RefreshError != "" || st.Charts != 1 {
			t.Fatalf("status %+v", st)
		}
	})

	t.Run("upgrade to the newest version", func(t *testing.T) {
		up := map[string]any{"chart": map[string]any{"repo": "registry", "name": "shop"}, "values": "replicaCount: 2\n"}
		if code, body := w.call("POST", base+"/oci-shop/shop/upgrade", "", up, &op); code != 200 {
			t.Fatalf("upgrade: %d %s", code, body)
		}
		if done := w.waitOperation(op.ID, 2*time.Minute); done.State != "succeeded" || done.Revision != 2 {
			t.Fatalf("upgrade ended %s: %s\n%s", done.State, done.Message, done.Log)
		}
		if got := kubectl(t, "get", "-n", "oci-shop", "configmap/shop-config", "-o", "jsonpath={.data.greeting}"); got != "hello from the registry" {
			t.Fatalf("greeting after the upgrade %q", got)
		}
		rel := helmReleases(t)["oci-shop/shop"]
		if rel == nil || rel.Info.Status != "deployed" || rel.Version != 2 || rel.Chart.Metadata.Version != "1.1.0" {
			t.Fatalf("Helm's record: %+v", rel)
		}
		var h struct{ Items []apps.Release }
		w.call("GET", base+"/oci-shop/shop/history", "", nil, &h)
		var got []string
		for _, r := range h.Items {
			got = append(got, fmt.Sprintf("%d:%s:%s", r.Revision, r.Status, r.Version))
		}
		if strings.Join(got, " ") != "1:superseded:1.0.0 2:deployed:1.1.0" {
			t.Fatalf("history %v", got)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		if code, body := w.call("DELETE", base+"/oci-shop/shop", "", nil, &op); code != 200 {
			t.Fatalf("uninstall: %d %s", code, body)
		}
		if done := w.waitOperation(op.ID, 2*time.Minute); done.State != "succeeded" {
			t.Fatalf("uninstall ended %s: %s\n%s", done.State, done.Message, done.Log)
		}
		if rel := helmReleases(t)["oci-shop/shop"]; rel != nil {
			t.Fatalf("Helm still has the release: %s", rel.Info.Status)
		}
	})
}

// waitRepository polls catalog repository name until cond holds of its
// status (30 s at most) and returns that status.
func (w *world) waitRepository(name, what string, cond func(catalog.RepositoryStatus) bool) catalog.RepositoryStatus {
	w.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var st catalog.RepositoryStatus
		if code, body := w.call("GET", "/api/v1/catalog/repositories/"+name, "", nil, &st); code != http.StatusOK {
			w.t.Fatalf("repository %s: %d %s", name, code, body)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("repository %s: %s never held: %+v", name, what, st)
		}
	}
}

// cleanupNamespace deletes namespace ns from the shared cluster when t
// ends, whatever it left there.
func cleanupNamespace(t *testing.T, ns string) {
	t.Cleanup(func() {
		cluster.Kubectl(context.Background(), "delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=60s").Run()
	})
}
