package hub_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// TestFeatureClientsShareTheAccessChain: a hub feature's client
// (ClusterConfig) goes through the proxy's chain — the hub's request ID
// reaches the cluster as the impersonated extra, a change is audited with
// the feature's source, and the user's caps apply (a 429 with Retry-After
// past them, given back when a watch's body is closed).
func TestFeatureClientsShareTheAccessChain(t *testing.T) {
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.Limits.StreamsPerUser = 1 }})
	c := e.createCluster("featured")
	release := make(chan struct{})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-release
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"header": r.Header})
	})
	if _, err := e.agent(c.ID, e.credential(c.ID), "fp", echo); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	ident, err := e.hub.AuthenticateToken(t.Context(), e.admin)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := e.hub.ClusterConfig(c.ID, ident)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + c.ID

	resp, err := hc.Post(base+"/api/v1/namespaces/default/configmaps", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Header http.Header }
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	reqID := got.Header.Get("Impersonate-Extra-Eco.dev%2frequest-Id")
	if reqID == "" || got.Header.Get("Impersonate-User") == "" {
		t.Fatalf("the cluster saw no hub request ID or user: %v", got.Header)
	}
	var events []store.AuditEvent
	for deadline := time.Now().Add(5 * time.Second); len(events) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		events, _ = e.hub.Store().ListAudit(t.Context(), store.AuditQuery{ClusterID: c.ID, User: ident.Name})
		for len(events) > 0 && events[0].Source != "hub" {
			events = events[1:]
		}
	}
	if len(events) == 0 || events[0].RequestID != reqID || events[0].Verb != "create" || events[0].Resource != "configmaps" {
		t.Fatalf("audit of the feature's create: %+v, want source hub, verb create and request ID %s", events, reqID)
	}

	// One stream per user: a watch holds it, the next request is a 429.
	watch, err := hc.Get(base + "/api/v1/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	over, err := hc.Get(base + "/api/v1/pods")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(over.Body)
	over.Body.Close()
	if over.StatusCode != http.StatusTooManyRequests || over.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "TooManyRequests") {
		t.Fatalf("past the cap: %d %q (Retry-After %q), want a 429 Status with Retry-After", over.StatusCode, body, over.Header.Get("Retry-After"))
	}
	close(release)
	watch.Body.Close()
	again, err := hc.Get(base + "/api/v1/pods")
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode == http.StatusTooManyRequests {
		t.Fatalf("the cap was not given back when the watch's body was closed")
	}
}

// TestServiceIdentity: a hub feature acting on its own is the named
// service user in the clusters it was given, with the group of its role,
// and reaches no other cluster.
func TestServiceIdentity(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("served")
	other := e.createCluster("not-served")
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"header": r.Header})
	})
	if _, err := e.agent(c.ID, e.credential(c.ID), "fp", echo); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)

	svc := e.hub.ServiceIdentity("argocd", store.ClusterEdit, c.ID)
	for _, tc := range []struct {
		cluster string
		want    store.ClusterRole
	}{{c.ID, store.ClusterEdit}, {other.ID, ""}} {
		if got := svc.ClusterRole(tc.cluster); got != tc.want {
			t.Errorf("role in %s = %q, want %q", tc.cluster, got, tc.want)
		}
	}
	if got := e.hub.ServiceIdentity("addons", store.ClusterAdmin).ClusterRole(other.ID); got != store.ClusterAdmin {
		t.Errorf("a service identity without clusters has role %q in any cluster, want admin", got)
	}
	if _, err := e.hub.ClusterConfig(other.ID, svc); !errors.Is(err, hub.ErrNoAccess) {
		t.Fatalf("ClusterConfig for a cluster not given: %v, want ErrNoAccess", err)
	}
	cfg, err := e.hub.ClusterConfig(c.ID, svc)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("http://" + c.ID + "/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Header http.Header }
	json.NewDecoder(resp.Body).Decode(&got)
	if u, g := got.Header.Get("Impersonate-User"), got.Header.Get("Impersonate-Group"); u != e.hub.KubeUser(svc) || !strings.HasSuffix(u, "service:argocd") || g != hub.GroupEditors {
		t.Fatalf("the cluster saw user %q group %q, want %s in %s", u, g, e.hub.KubeUser(svc), hub.GroupEditors)
	}
}
