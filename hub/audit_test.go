package hub_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// auditPage reads one page of an audit endpoint as the admin.
func (e *env) auditPage(path string) hub.AuditPageJSON {
	e.t.Helper()
	var page hub.AuditPageJSON
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code := e.do("GET", path, e.admin, "", &page); code != http.StatusOK {
			e.t.Fatalf("GET %s: %d", path, code)
		}
		// The recorder writes in the background: wait for it.
		if len(page.Items) > 0 || time.Now().After(deadline) {
			return page
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuditLog: hub API actions and proxied mutations land in the audit
// log with who, what, where, the result and the hub's own request ID (the
// client's X-Request-Id only beside it); reads do not, by default; only
// admins read it.
func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("audited")
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("{}"))
	})
	if _, err := e.agent(c.ID, e.credential(c.ID), "fp", ok); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)

	send := func(method, path, clientID string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+"/clusters/"+c.ID+"/k8s"+path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+e.admin)
		if clientID != "" {
			req.Header.Set("X-Request-Id", clientID)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	send("GET", "/api/v1/namespaces/prod/configmaps/read-only", "")
	resp := send("POST", "/api/v1/namespaces/prod/configmaps", strings.Repeat("x", 200))
	resp2 := send("DELETE", "/apis/apps/v1/namespaces/prod/deployments/web", "client-42")

	// The recorder writes in batches: the import may be in while the
	// proxied requests are not yet. Wait for all three.
	page := e.auditPage("/api/v1/clusters/" + c.ID + "/audit")
	for deadline := time.Now().Add(10 * time.Second); len(page.Items) < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		page = e.auditPage("/api/v1/clusters/" + c.ID + "/audit")
	}
	type row struct{ verb, resource, ns, name, user, reqID, clientID, source string }
	var got []row
	for _, ev := range page.Items {
		got = append(got, row{ev.Verb, ev.Resource, ev.Namespace, ev.Name, ev.User, ev.RequestID, ev.ClientRequestID, ev.Source})
		if ev.Code != http.StatusCreated || ev.TokenID == "" || ev.Time.IsZero() || ev.RequestID == "" {
			t.Errorf("event %+v: want code 201, a token ID and a time", ev)
		}
	}
	want := []row{
		{"delete", "deployments", "prod", "web", "admin", resp2.Header.Get("X-Request-Id"), "client-42", "proxy"},
		// A client ID is cut to 64 bytes of a safe alphabet.
		{"create", "configmaps", "prod", "", "admin", resp.Header.Get("X-Request-Id"), strings.Repeat("x", 64), "proxy"},
		{"create-cluster", "", "", "", "admin", "*", "", "api"},
	}
	if len(got) != len(want) {
		t.Fatalf("cluster audit log = %+v, want %+v (the import and the proxied mutations; the GET is not audited)", got, want)
	}
	for i := range want {
		if want[i].reqID == "*" {
			want[i].reqID = got[i].reqID
		}
		if got[i] != want[i] {
			t.Errorf("event %d = %+v\n          want %+v", i, got[i], want[i])
		}
	}
	if resp2.Header.Get("X-Request-Id") == "client-42" {
		t.Errorf("the hub used the client's X-Request-Id as its own")
	}

	// The hub API's own actions: the import above, a refused one, a delete.
	e.do("POST", "/api/v1/clusters", e.admin, `{"name":"bad name!","provider":"eks"}`, nil)
	if code := e.do("DELETE", "/api/v1/clusters/"+c.ID, e.admin, "", nil); code != http.StatusNoContent {
		t.Fatalf("delete cluster: %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	var verbs []string
	for time.Now().Before(deadline) {
		page = e.auditPage("/api/v1/audit?user=admin")
		verbs = verbs[:0]
		for _, ev := range page.Items {
			if ev.Source == "api" {
				verbs = append(verbs, ev.Verb+":"+http.StatusText(ev.Code))
			}
		}
		if len(verbs) == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := []string{"delete-cluster:No Content", "create-cluster:Bad Request", "create-cluster:Created"}; strings.Join(verbs, ",") != strings.Join(want, ",") {
		t.Errorf("API audit = %v, want %v", verbs, want)
	}
	// The deleted cluster's trail stays (import, two proxied requests,
	// delete); the page cursor reaches the rest of it.
	page = e.auditPage("/api/v1/audit?cluster=" + c.ID + "&limit=3")
	if page.Next == "" || len(page.Items) != 3 {
		t.Fatalf("a full page of %d events has next cursor %q", len(page.Items), page.Next)
	}
	rest := e.auditPage("/api/v1/audit?cluster=" + c.ID + "&before=" + page.Next)
	if len(rest.Items) != 1 || rest.Items[0].Verb != "create-cluster" || rest.Next != "" {
		t.Errorf("the deleted cluster's events after the cursor: %+v (next %q), want its import only", rest.Items, rest.Next)
	}

	// Only admins read the audit log; bad cursors are refused.
	secret, _, err := e.hub.NewAPIToken(t.Context(), "vera", store.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/audit", secret, http.StatusForbidden},
		{"/api/v1/audit", "", http.StatusUnauthorized},
		{"/api/v1/audit?before=-1", e.admin, http.StatusBadRequest},
		{"/api/v1/audit?before=x", e.admin, http.StatusBadRequest},
		{"/api/v1/audit?limit=100000", e.admin, http.StatusBadRequest},
	} {
		if code := e.do("GET", tt.path, tt.token, "", nil); code != tt.want {
			t.Errorf("GET %s: %d, want %d", tt.path, code, tt.want)
		}
	}
}
