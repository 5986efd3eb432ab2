package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/hubclient"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// applicationCRD is enough of Argo CD's Application CRD for the hub to
// list Applications (their status is written with them: no subresource).
const applicationCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: applications.argoproj.io}
spec:
  group: argoproj.io
  scope: Namespaced
  names: {kind: Application, listKind: ApplicationList, plural: applications, singular: application}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// until runs ecoctl every 200 ms until its output holds want, for at
// most 30 s, and returns that output.
func (r *rig) until(config, want string, args ...string) string {
	r.t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, err = r.run(config, "", args...); err == nil && strings.Contains(out, want) {
			return out
		}
	}
	r.t.Fatalf("ecoctl %v: no %q after 30s; last: %v\n%s", args, want, err, out)
	return ""
}

// TestArgoCDOnCluster: a hub registering clusters into an Argo CD
// instance (its namespace "argocd" in a real local cluster, with the
// Application CRD): ecoctl argocd shows the registration (since, last
// reconcile) and the Application deployed to the cluster with its sync
// and health; a cluster never connected is waiting, and one ECO lost
// says so while staying registered.
func TestArgoCDOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	cluster := clustertest.Start(t, localcluster.Config{Name: "argocd-ecoctl"})
	kubectl := func(stdin string, args ...string) {
		t.Helper()
		cmd := cluster.Kubectl(t.Context(), args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	kubectl("", "create", "namespace", "argocd")
	kubectl(applicationCRD, "apply", "-f", "-")
	kubectl("", "wait", "--for=condition=Established", "--timeout=30s", "crd/applications.argoproj.io")

	var reg *argocd.Registrar
	r := newRigWith(t, func(c *localeco.HubConfig) {
		c.HeartbeatInterval = time.Second
		c.Mount = func(h *hub.Hub) error {
			var err error
			reg, err = argocd.New(argocd.Config{Hub: h, Resync: time.Second,
				Instances: []argocd.Instance{{Name: "main", Kubeconfig: cluster.AdminKubeconfig, Namespace: "argocd", URL: "https://argocd.example"}}})
			if err != nil {
				return err
			}
			h.Mount(argocd.APIPath, reg.Handler(h))
			return nil
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done }) // before the hub closes
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))

	r.ok("admin.yaml", "clusters", "import", "later")
	r.until("admin.yaml", "false: waiting for the cluster's first connection", "argocd", "later")

	id, stopAgent := r.connect("prod", cluster)
	app := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
spec:
  project: default
  destination: {server: %q, namespace: guestbook}
status:
  sync: {status: Synced}
  health: {status: Healthy}
`, argocd.ServerURL(r.hub.URL, id))
	kubectl(app, "apply", "-f", "-")
	out := r.until("admin.yaml", "guestbook", "argocd", "prod")
	if !grepRow(out, "main", "true", "argocd/eco-"+id) || !grepRow(out, "main", "argocd/guestbook", "default", "Synced", "Healthy") || strings.Contains(out, "not connected") {
		t.Errorf("argocd prod:\n%s", out)
	}
	var v hubclient.ArgoCDView
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "argocd", "prod", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if !v.Connected || len(v.Registrations) != 1 || !v.Registrations[0].Registered || v.Registrations[0].Since.IsZero() || v.Registrations[0].LastReconcile.IsZero() ||
		len(v.Applications) != 1 || v.Applications[0].Link != "https://argocd.example/applications/argocd/guestbook" {
		t.Errorf("argocd -o json: %+v", v)
	}

	stopAgent()
	if _, err := r.hub.WaitState(t.Context(), id, store.StateDisconnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	out = r.ok("admin.yaml", "argocd", "prod")
	if !strings.Contains(out, "ECO is not connected to cluster prod (Disconnected") || !grepRow(out, "main", "true", "argocd/eco-"+id) {
		t.Errorf("argocd prod, disconnected:\n%s", out)
	}
}
