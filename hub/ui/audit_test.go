package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

// TestAuditTab: the UI's own actions (import, delete) reach the audit log
// with the user who acted, and the cluster's Audit tab shows them to
// admins only.
func TestAuditTab(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	b := h.browser()
	csrf := h.signIn(b, h.admin)
	code, loc, _ := do(t, b, "POST", h.url+"/ui/clusters/new", url.Values{"csrf": {csrf}, "name": {"audited"}, "provider": {"generic"}}, nil)
	if code != http.StatusSeeOther {
		t.Fatalf("import = %d", code)
	}
	id := strings.Split(strings.TrimPrefix(loc, "/ui/clusters/"), "/")[0]

	var page string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		code, _, page = do(t, b, "GET", h.url+"/ui/clusters/"+id+"/audit", nil, nil)
		if strings.Contains(page, "create-cluster") {
			break
		}
	}
	if code != http.StatusOK || !strings.Contains(page, "create-cluster") || !strings.Contains(page, "<td>ui</td>") || !strings.Contains(page, ">Audit</a>") {
		t.Fatalf("Audit tab after an import = %d:\n%s", code, page)
	}

	// A viewer sees no Audit tab and may not open it.
	v := h.browser()
	h.signIn(v, h.viewer("victor"))
	if _, _, page := do(t, v, "GET", h.url+"/ui/clusters/"+id, nil, nil); strings.Contains(page, ">Audit</a>") {
		t.Error("a viewer is offered the Audit tab")
	}
	if code, _, _ := do(t, v, "GET", h.url+"/ui/clusters/"+id+"/audit", nil, nil); code != http.StatusForbidden {
		t.Errorf("viewer GET audit tab = %d, want 403", code)
	}

	// A delete from the UI is audited too; the trail outlives the cluster.
	if code, _, _ := do(t, b, "POST", h.url+"/ui/clusters/"+id+"/delete", url.Values{"csrf": {csrf}, "confirm": {"audited"}}, nil); code >= 400 {
		t.Fatalf("delete = %d", code)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		events, err := h.hub.Store().ListAudit(t.Context(), store.AuditQuery{ClusterID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 2 && events[0].Verb == "delete-cluster" && events[0].User == "admin" && events[0].Source == "ui" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit after the UI delete: %+v", events)
		}
	}
}
