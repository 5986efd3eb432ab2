package apps_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/apps"
)

// waitRunning waits until the release's latest record is pending-install
// (Helm is inside the install, waiting on the hook that never ends).
func waitPending(t *testing.T, key string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if rel := helmReleases(t)[key]; rel != nil && rel.Info.Status.IsPending() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("release %s never went pending", key)
		}
	}
}

// TestOperationsAreJobs: one operation per release at a time (a second
// is 409), and an operation cut off — the tunnel dropped mid-install, the
// hub restarted mid-install — leaves a state the hub recovers: the
// operation ends interrupted, the release is no longer pending and the
// next operation on it works.
func TestOperationsAreJobs(t *testing.T) {
	t.Cleanup(checkLeaks(t))
	w := newWorld(t)
	slow := packageChart(t, "shop", nil)
	base := "/api/v1/clusters/" + w.id + "/releases"
	install := func(name string) apps.OperationJSON {
		t.Helper()
		var op apps.OperationJSON
		in := map[string]any{"namespace": "slow-ns", "name": name, "chart": map[string]any{"archive": slow}, "values": "slowHook: true\ncache: {enabled: false}\n"}
		if code, body := w.call("POST", base, "", in, &op); code != 200 {
			t.Fatalf("install %s: %d %s", name, code, body)
		}
		return op
	}
	uninstall := func(name string) {
		t.Helper()
		var op apps.OperationJSON
		if code, body := w.call("DELETE", base+"/slow-ns/"+name, "", nil, &op); code != 200 {
			t.Fatalf("uninstall %s: %d %s", name, code, body)
		}
		if done := w.waitOperation(op.ID, time.Minute); done.State != "succeeded" {
			t.Fatalf("uninstall of %s after recovery: %s %s\n%s", name, done.State, done.Message, done.Log)
		}
	}

	t.Run("a second operation on the release is 409", func(t *testing.T) {
		op := install("busy")
		waitPending(t, "slow-ns/busy")
		var busy struct{ Error, Operation string }
		code, body := w.call("DELETE", base+"/slow-ns/busy", "", nil, nil)
		if err := json.Unmarshal([]byte(body), &busy); code != http.StatusConflict || err != nil || busy.Operation != op.ID || !strings.Contains(busy.Error, op.ID) {
			t.Fatalf("second operation: %d %s, want 409 naming %s in operation and error", code, body, op.ID)
		}
		// The running one shows progress: Helm's log so far.
		var now apps.OperationJSON
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(now.Log, "slow-hook") && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			w.call("GET", "/api/v1/operations/"+op.ID, "", nil, &now)
		}
		if now.State != "running" || !strings.Contains(now.Log, "slow-hook") {
			t.Fatalf("running operation: %s, log:\n%s", now.State, now.Log)
		}
	})

	t.Run("the tunnel dropped mid-install", func(t *testing.T) {
		// "busy" is still waiting on its hook; the agent goes away.
		var ops struct{ Items []apps.OperationJSON }
		w.call("GET", "/api/v1/clusters/"+w.id+"/operations?namespace=slow-ns&release=busy", "", nil, &ops)
		if len(ops.Items) != 1 {
			t.Fatalf("operations of busy: %+v", ops.Items)
		}
		id := ops.Items[0].ID
		if err := w.stopAgent(); err != nil {
			t.Fatal(err)
		}
		var op apps.OperationJSON
		for deadline := time.Now().Add(90 * time.Second); op.State != "recovering" && op.FinishedAt == nil; time.Sleep(200 * time.Millisecond) {
			w.call("GET", "/api/v1/operations/"+id, "", nil, &op)
			if time.Now().After(deadline) {
				t.Fatalf("operation still %s with the tunnel down", op.State)
			}
		}
		t.Logf("with the tunnel down the operation is %s: %s", op.State, op.Message)
		w.startAgent()
		done := w.waitOperation(id, time.Minute)
		if done.State != "interrupted" && done.State != "failed" {
			t.Fatalf("after the tunnel came back: %s %s", done.State, done.Message)
		}
		if rel := helmReleases(t)["slow-ns/busy"]; rel == nil || rel.Info.Status.IsPending() {
			t.Fatalf("release left %v", rel)
		}
		uninstall("busy")
	})

	t.Run("the hub restarted mid-install", func(t *testing.T) {
		op := install("restarted")
		waitPending(t, "slow-ns/restarted")
		w.restartHub()
		done := w.waitOperation(op.ID, time.Minute)
		if done.State != "interrupted" || !strings.Contains(done.Message, "hub stopped") {
			t.Fatalf("after the restart: %s %q\n%s", done.State, done.Message, done.Log)
		}
		rel := helmReleases(t)["slow-ns/restarted"]
		if rel == nil || rel.Info.Status != "failed" {
			t.Fatalf("release after recovery: %+v", rel)
		}
		uninstall("restarted")
	})
}
