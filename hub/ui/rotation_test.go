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

// TestRotateCredentialButton: the ECO tab offers admins "Rotate agent
// credential"; the POST needs the CSRF token, rotates, is audited, and the
// tab then shows the new generation and says to re-apply the YAML (no
// agent is connected). Members are not offered it and are refused.
func TestRotateCredentialButton(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	c, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "rot"})
	if err != nil {
		t.Fatal(err)
	}
	yaml0, _ := h.hub.InstallYAML(c.ID)
	b := h.browser()
	csrf := h.signIn(b, h.admin)
	code, _, page := do(t, b, "GET", h.url+"/ui/clusters/"+c.ID+"/eco", nil, nil)
	if code != http.StatusOK || !strings.Contains(page, "Rotate agent credential") || !strings.Contains(page, "generation 0") {
		t.Fatalf("ECO tab = %d, without the button or generation 0", code)
	}
	path := h.url + "/ui/clusters/" + c.ID + "/rotate-credential"
	if code, _, _ := do(t, b, "POST", path, url.Values{}, nil); code != http.StatusForbidden {
		t.Fatalf("rotate without CSRF = %d, want 403", code)
	}
	code, loc, _ := do(t, b, "POST", path, url.Values{"csrf": {csrf}}, nil)
	if code != http.StatusSeeOther || !strings.HasSuffix(loc, "/eco?rotated="+hub.DeliveryNotConnected) {
		t.Fatalf("rotate = %d %q", code, loc)
	}
	code, _, page = do(t, b, "GET", h.url+loc, nil, nil)
	if code != http.StatusOK || !strings.Contains(page, "No agent is connected: re-apply the YAML") || !strings.Contains(page, "generation 1 (rotation pending") {
		t.Fatalf("ECO tab after rotation = %d:\n%s", code, page)
	}
	if yaml1, _ := h.hub.InstallYAML(c.ID); string(yaml1) == string(yaml0) {
		t.Fatal("the install YAML did not change")
	}
	// The audit recorder writes in the background: awaited.
	eventually(t, 10*time.Second, func() error {
		events, err := h.hub.Store().ListAudit(t.Context(), store.AuditQuery{ClusterID: c.ID, Limit: 10})
		if err != nil {
			return err
		}
		for _, ev := range events {
			if ev.Verb == "rotate-credential" && ev.Source == "ui" && ev.Code == http.StatusSeeOther {
				return nil
			}
		}
		return fmt.Errorf("no audit event for the rotation: %+v", events)
	})

	m := h.browser()
	mcsrf := h.signIn(m, h.viewer("victor"))
	if _, _, page := do(t, m, "GET", h.url+"/ui/clusters/"+c.ID+"/eco", nil, nil); strings.Contains(page, "Rotate agent credential") {
		t.Error("a member is offered the rotation")
	}
	if code, _, _ := do(t, m, "POST", path, url.Values{"csrf": {mcsrf}}, nil); code != http.StatusForbidden {
		t.Errorf("member rotate = %d, want 403", code)
	}
	if got, _ := h.hub.Store().GetCluster(t.Context(), c.ID); got.Credential.Generation != 1 {
		t.Errorf("generation %d after the member's attempt, want 1", got.Credential.Generation)
	}
}
