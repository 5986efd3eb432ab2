package ui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// TestUpdateClusterForm: the General tab shows a cluster's labels and
// offers admins a form to rename it and set them; the POST needs the CSRF
// token, saves, is audited, and shows the change. A name taken and a bad
// label are refused with the reason and change nothing. A member granted
// admin on the cluster may do what the API lets it (rename, install YAML,
// audit tab, delete page), not rotate the credential; members with view or
// edit are not offered the form and are refused; a member not granted the
// cluster is told it does not exist.
func TestUpdateClusterForm(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	c, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "edit-me"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	csrf := h.signIn(b, h.admin)
	if code, _, page := do(t, b, "GET", h.url+"/ui/clusters/"+c.ID, nil, nil); code != http.StatusOK || !strings.Contains(page, `id="update-cluster"`) {
		t.Fatalf("General tab = %d, without the form", code)
	}
	path := h.url + "/ui/clusters/" + c.ID + "/update"
	form := url.Values{"name": {"edited"}, "labels": {"env=prod\n\n team.example.com/owner = web \n"}}
	if code, _, _ := do(t, b, "POST", path, form, nil); code != http.StatusForbidden {
		t.Fatalf("update without CSRF = %d, want 403", code)
	}
	form.Set("csrf", csrf)
	code, loc, _ := do(t, b, "POST", path, form, nil)
	if code != http.StatusSeeOther || !strings.HasSuffix(loc, "/ui/clusters/"+c.ID+"?updated=1") {
		t.Fatalf("update = %d %q", code, loc)
	}
	code, _, page := do(t, b, "GET", h.url+loc, nil, nil)
	for _, want := range []string{"Cluster edited was saved.", "env=prod", "team.example.com/owner=web"} {
		if code != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("General tab after saving (%d) lacks %q", code, want)
		}
	}
	got, err := h.hub.Store().GetCluster(t.Context(), c.ID)
	if err != nil || got.Name != "edited" || got.Labels["env"] != "prod" || got.Labels["team.example.com/owner"] != "web" || len(got.Labels) != 2 {
		t.Fatalf("stored: %+v, %v", got, err)
	}

	for _, tc := range []struct {
		name, labels, want string
		code               int
	}{
		{"taken", "", "Another cluster is already named taken.", http.StatusConflict},
		{"edited", "env", `Labels: &#34;env&#34; is not KEY=VALUE.`, http.StatusBadRequest},
		{"edited", "eco.dev/cluster-id=x", "the prefix eco.dev/", http.StatusBadRequest},
		{"", "env=dev", "A cluster needs a name.", http.StatusBadRequest},
	} {
		code, _, page := do(t, b, "POST", path, url.Values{"csrf": {csrf}, "name": {tc.name}, "labels": {tc.labels}}, nil)
		if code != tc.code || !strings.Contains(page, tc.want) {
			t.Errorf("name %q labels %q = %d, want %d with %q", tc.name, tc.labels, code, tc.code, tc.want)
		}
	}
	if after, _ := h.hub.Store().GetCluster(t.Context(), c.ID); after.Name != "edited" || len(after.Labels) != 2 {
		t.Errorf("after refused updates: %+v", after)
	}

	// The audit recorder writes in the background: awaited.
	eventually(t, 10*time.Second, func() error {
		events, err := h.hub.Store().ListAudit(t.Context(), store.AuditQuery{ClusterID: c.ID, Limit: 20})
		if err != nil {
			return err
		}
		for _, ev := range events {
			if ev.Verb == "update-cluster" && ev.Source == "ui" && ev.Code == http.StatusSeeOther {
				return nil
			}
		}
		return fmt.Errorf("no audit event for the update: %+v", events)
	})

	m := h.browser()
	mcsrf := h.signIn(m, h.viewer("victor"))
	if _, _, page := do(t, m, "GET", h.url+"/ui/clusters/"+c.ID, nil, nil); strings.Contains(page, `id="update-cluster"`) {
		t.Error("a member is offered the form")
	}
	if code, _, _ := do(t, m, "POST", path, url.Values{"csrf": {mcsrf}, "name": {"mine"}}, nil); code != http.StatusForbidden {
		t.Errorf("member update = %d, want 403", code)
	}

	// Members by their grant on this one cluster.
	other, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "not-yours"})
	if err != nil {
		t.Fatal(err)
	}
	member := func(name string, role store.ClusterRole) (*http.Client, string) {
		t.Helper()
		secret := h.token(name, store.RoleMember)
		if _, err := h.hub.CreateGrant(t.Context(), store.NewGrant{Kind: store.SubjectUser, Subject: name, ClusterID: c.ID, Role: role}); err != nil {
			t.Fatal(err)
		}
		b := h.browser()
		return b, h.signIn(b, secret)
	}
	ann, acsrf := member("ann", store.ClusterAdmin)
	ed, ecsrf := member("ed", store.ClusterEdit)
	base := h.url + "/ui/clusters/"
	for _, tc := range []struct {
		who          string
		b            *http.Client
		method, path string
		form         url.Values
		code         int
	}{
		{"cluster admin", ann, "GET", base + c.ID + "/install.yaml", nil, http.StatusOK},
		{"cluster admin", ann, "GET", base + c.ID + "/audit", nil, http.StatusOK},
		{"cluster admin", ann, "GET", base + c.ID + "/delete", nil, http.StatusOK},
		{"cluster admin", ann, "POST", base + c.ID + "/update", url.Values{"csrf": {acsrf}, "name": {"anns"}, "labels": {"owner=ann"}}, http.StatusSeeOther},
		{"cluster admin", ann, "POST", base + c.ID + "/rotate-credential", url.Values{"csrf": {acsrf}}, http.StatusForbidden},
		{"cluster admin of another cluster", ann, "GET", base + other.ID + "/install.yaml", nil, http.StatusNotFound},
		{"cluster admin of another cluster", ann, "POST", base + other.ID + "/update", url.Values{"csrf": {acsrf}, "name": {"grab"}}, http.StatusNotFound},
		{"cluster editor", ed, "GET", base + c.ID + "/install.yaml", nil, http.StatusForbidden},
		{"cluster editor", ed, "GET", base + c.ID + "/audit", nil, http.StatusForbidden},
		{"cluster editor", ed, "POST", base + c.ID + "/update", url.Values{"csrf": {ecsrf}, "name": {"eds"}}, http.StatusForbidden},
		{"cluster editor", ed, "POST", base + c.ID + "/delete", url.Values{"csrf": {ecsrf}}, http.StatusForbidden},
	} {
		if code, _, _ := do(t, tc.b, tc.method, tc.path, tc.form, nil); code != tc.code {
			t.Errorf("%s: %s %s = %d, want %d", tc.who, tc.method, strings.TrimPrefix(tc.path, h.url), code, tc.code)
		}
	}
	if got, _ := h.hub.Store().GetCluster(t.Context(), c.ID); got.Name != "anns" || got.Labels["owner"] != "ann" {
		t.Errorf("after the cluster admin's update: %+v", got)
	}
	if got, _ := h.hub.Store().GetCluster(t.Context(), other.ID); got.Name != "not-yours" {
		t.Errorf("another cluster changed: %+v", got)
	}
	for _, tc := range []struct {
		who        string
		b          *http.Client
		form, yaml bool
	}{{"cluster admin", ann, true, true}, {"cluster editor", ed, false, false}} {
		_, _, general := do(t, tc.b, "GET", base+c.ID, nil, nil)
		_, _, eco := do(t, tc.b, "GET", base+c.ID+"/eco", nil, nil)
		if got := strings.Contains(general, `id="update-cluster"`); got != tc.form {
			t.Errorf("%s offered the form: %v, want %v", tc.who, got, tc.form)
		}
		if got := strings.Contains(eco, `id="install-yaml"`); got != tc.yaml {
			t.Errorf("%s shown the install YAML: %v, want %v", tc.who, got, tc.yaml)
		}
		if strings.Contains(eco, `id="rotate-credential"`) {
			t.Errorf("%s offered credential rotation (hub admins only)", tc.who)
		}
	}
}
