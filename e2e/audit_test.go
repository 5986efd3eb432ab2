package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
)

// TestAuditJoinsTheClusterAuditLog: a change made with real kubectl through
// the hub is in the hub's audit log as the hub user, and the cluster's own
// kube-apiserver audit log shows the same request — the impersonated hub
// user, with the hub's request ID as the user extra eco.dev/request-id —
// so the two logs join on that ID.
func TestAuditJoinsTheClusterAuditLog(t *testing.T) {
	if cluster.AuditLogFile == "" {
		t.Fatal("the shared cluster runs without an audit log")
	}
	w := newWorld(t)
	ctx := t.Context()
	mustKubectl(t, w.kc, "create", "configmap", "audited-by-eco", "-n", "default", "--from-literal=k=v")

	// The hub's side: the create, as admin.
	var ev hub.AuditPageJSON
	var hubID string
	for deadline := time.Now().Add(10 * time.Second); hubID == ""; time.Sleep(50 * time.Millisecond) {
		if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/audit", "", nil, &ev); err != nil {
			t.Fatal(err)
		}
		for _, e := range ev.Items {
			if e.Verb == "create" && e.Resource == "configmaps" && e.Namespace == "default" && e.Source == "proxy" {
				if e.User != "admin" || e.Code != 201 || e.RequestID == "" {
					t.Fatalf("hub audit event %+v: want user admin, code 201 and a request ID", e)
				}
				hubID = e.RequestID
			}
		}
		if hubID == "" && time.Now().After(deadline) {
			t.Fatalf("no create of configmaps in the hub's audit log: %+v", ev.Items)
		}
	}

	// The cluster's side: the same request, found by the hub's ID.
	type clusterEvent struct {
		Verb         string
		ObjectRef    struct{ Resource, Namespace, Name string }
		User         struct{ Username string }
		Impersonated *struct {
			Username string
			Groups   []string
			Extra    map[string][]string
		} `json:"impersonatedUser"`
		ResponseStatus struct{ Code int }
	}
	var found *clusterEvent
	for deadline := time.Now().Add(10 * time.Second); found == nil; time.Sleep(100 * time.Millisecond) {
		data, err := os.ReadFile(cluster.AuditLogFile)
		if err != nil {
			t.Fatal(err)
		}
		// Whole lines only: kube-apiserver appends while this reads, and
		// the last line may be only partly written yet.
		data = data[:bytes.LastIndexByte(data, '\n')+1]
		for line := range bytes.Lines(data) {
			if !bytes.Contains(line, []byte(hubID)) {
				continue
			}
			var e clusterEvent
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("cluster audit line: %v", err)
			}
			found = &e
		}
		if found == nil && time.Now().After(deadline) {
			t.Fatalf("the cluster's audit log has no request with the hub's request ID %s", hubID)
		}
	}
	// The hub impersonates its users with its user prefix (eco-hub
	// --user-prefix, default "eco:").
	if found.Impersonated == nil || found.Impersonated.Username != "eco:admin" || found.Verb != "create" ||
		found.ObjectRef.Resource != "configmaps" || found.ResponseStatus.Code != 201 {
		t.Fatalf("cluster audit event for %s: %+v", hubID, *found)
	}
	if got := found.Impersonated.Extra[hub.RequestIDExtra]; len(got) != 1 || got[0] != hubID {
		t.Errorf("impersonated extra %s = %v, want [%s]", hub.RequestIDExtra, got, hubID)
	}
	if !strings.HasPrefix(found.User.Username, "system:serviceaccount:") {
		t.Errorf("the API server saw %q act, want the agent's ServiceAccount impersonating", found.User.Username)
	}
}
