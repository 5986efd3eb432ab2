package argocd

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v3/util/db"
	"github.com/argoproj/argo-cd/v3/util/settings"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestArgoCDReadsTheSecret reads the Secret the hub wrote exactly as Argo
// CD does — its settings manager's Secret informer and db.GetCluster by
// server URL — and uses the cluster's own REST configuration, as Argo CD's
// controllers do, to reach the cluster through the hub.
func TestArgoCDReadsTheSecret(t *testing.T) {
	d := need(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cs, _ := d.clientset(t)
	sm := settings.NewSettingsManager(ctx, cs, "argocd")
	argoDB := db.NewDB("argocd", sm, cs)
	server := d.hubURL + "/clusters/" + d.clusterID + "/k8s"

	var err error
	took := eventually(t, "Argo CD finds the cluster", 30*time.Second, func() error {
		_, err = argoDB.GetCluster(ctx, server)
		return err
	})
	t.Logf("Argo CD's db found the cluster %s after start", took)
	cl, err := argoDB.GetCluster(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Name != "local" || cl.Server != server {
		t.Errorf("cluster = %q %q, want local %q", cl.Name, cl.Server, server)
	}
	if cl.Labels["eco.dev/cluster-id"] != d.clusterID || cl.Labels["eco.dev/provider"] != "generic" {
		t.Errorf("labels = %v", cl.Labels)
	}
	list, err := argoDB.ListClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range list.Items {
		found = found || c.Server == server
	}
	if !found {
		t.Errorf("ListClusters does not list %s: %+v", server, list.Items)
	}

	rc, err := cl.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	through, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := through.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing namespaces through the hub as Argo CD: %v", err)
	}
	if len(ns.Items) == 0 {
		t.Error("no namespaces listed")
	}
	rv, err := through.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := rv.Status.UserInfo; u.Username != "eco:service:argocd" {
		t.Errorf("the cluster sees %q, want eco:service:argocd", u.Username)
	}
	// The hub's audit log names Argo CD's identity for its writes.
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"argocd-audit-probe","namespace":"default"}}`
	if _, err := through.CoreV1().RESTClient().Post().AbsPath("/api/v1/namespaces/default/configmaps").Body([]byte(cm)).SetHeader("Content-Type", "application/json").DoRaw(ctx); err != nil {
		t.Fatal(err)
	}
	var audit struct {
		Events []struct {
			User string `json:"user"`
			Verb string `json:"verb"`
		} `json:"items"`
	}
	eventually(t, "the audit event", 10*time.Second, func() error {
		if err := d.api(ctx, "GET", "/api/v1/audit?user=service:argocd", nil, &audit); err != nil {
			return err
		}
		for _, e := range audit.Events {
			if e.User == "service:argocd" {
				return nil
			}
		}
		return errors.New("no audit event of service:argocd yet")
	})
}
