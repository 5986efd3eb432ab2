package hubapps_test

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a hub with the features, the built-in repository made with
// the generated charts gen.
func start(t *testing.T, gen fs.FS) (*localeco.Hub, *hubapps.Features, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	var features *hubapps.Features
	h, err := localeco.StartHub(t.Context(), localeco.HubConfig{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Mount: func(h *hub.Hub) error {
			var err error
			features, err = hubapps.Start(t.Context(), hubapps.Config{Hub: h, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})), GeneratedCharts: gen})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		features.Close()
		h.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return h, features, logs
}

// TestAddonChartsBuiltIn: a hub's App Catalog has the add-on charts built
// in as eco-addons, out of the box: the Helm service loads every curated
// add-on's pinned chart from it, as the add-ons do.
func TestAddonChartsBuiltIn(t *testing.T) {
	dir := t.TempDir()
	if _, err := chartrepo.WriteGenerated(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	h, f, logs := start(t, os.DirFS(dir))
	var st catalog.RepositoryStatus
	if err := h.Do(t.Context(), "GET", "/api/v1/catalog/repositories/eco-addons", "", nil, &st); err != nil {
		t.Fatal(err)
	}
	if !st.BuiltIn || st.Charts != 3 || len(st.Missing) != 0 || st.RefreshError != "" {
		t.Fatalf("status %+v", st)
	}
	for _, a := range f.Addons.Addons() {
		ch, err := f.Apps.Chart(t.Context(), a.Chart)
		if err != nil {
			t.Fatalf("add-on %s: %v", a.Name, err)
		}
		if a.Chart.Repo != "eco-addons" || ch.Metadata.Name != a.Chart.Name || ch.Metadata.Version != a.Chart.Version {
			t.Fatalf("add-on %s (%+v): loaded %s %s", a.Name, a.Chart, ch.Metadata.Name, ch.Metadata.Version)
		}
	}
	if strings.Contains(logs.String(), "missing") {
		t.Fatalf("a warning with every chart there:\n%s", logs)
	}
}

// TestAddonChartsBuiltWithoutGenerated: a hub built without the generated
// metrics-server chart warns at start, still serves the other add-on
// charts, and says why metrics-server cannot be installed (the add-on's
// status shows this error).
func TestAddonChartsBuiltWithoutGenerated(t *testing.T) {
	h, f, logs := start(t, fstest.MapFS{})
	if l := logs.String(); !strings.Contains(l, "a chart of a built-in repository is missing") || !strings.Contains(l, "chart=metrics-server") || !strings.Contains(l, "go generate ./catalog/chartrepo") {
		t.Fatalf("no clear warning at start:\n%s", l)
	}
	var list struct{ Items []catalog.RepositoryStatus }
	if err := h.Do(t.Context(), "GET", "/api/v1/catalog/repositories", "", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "eco-addons" || list.Items[0].Charts != 2 || list.Items[0].Missing["metrics-server"] == "" {
		t.Fatalf("repositories %+v", list.Items)
	}
	for _, a := range addons.Defaults("eco-addons") {
		_, err := f.Apps.Chart(t.Context(), a.Chart)
		switch {
		case a.Name == "metrics-server" && (err == nil || !strings.Contains(err.Error(), "metrics-server is not in the built-in repository eco-addons: this eco-hub was built without it")):
			t.Fatalf("metrics-server: %v", err)
		case a.Name != "metrics-server" && err != nil:
			t.Fatalf("add-on %s: %v", a.Name, err)
		}
	}
}

// TestAddonVersionFromTheUI: a hub admin rolls an add-on's version out
// from a cluster's Add-ons tab: the version is pinned for every cluster
// (kept in the store), the tab shows it, and the action is audited; an
// empty version is refused with the reason, and a member may not.
func TestAddonVersionFromTheUI(t *testing.T) {
	var features *hubapps.Features
	h, err := localeco.StartHub(t.Context(), localeco.HubConfig{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Mount: func(h *hub.Hub) error {
			var err error
			features, err = hubapps.Start(t.Context(), hubapps.Config{Hub: h, Logger: slog.New(slog.DiscardHandler), GeneratedCharts: fstest.MapFS{}})
			if err != nil {
				return err
			}
			u, err := ui.New(ui.Config{Hub: h, Apps: features.UI(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return err
			}
			for _, p := range ui.Patterns() {
				h.Mount(p, u)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { features.Close(); h.Close() })
	c, err := h.Import(t.Context(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	member, _, err := h.Hub.NewAPIToken(t.Context(), "mia", store.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	post := func(token, version string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.URL+"/ui/clusters/"+c.ID+"/addons/logging/version",
			strings.NewReader(url.Values{"version": {version}}.Encode()))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		client := *h.Client()
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	pinned := func() string {
		for _, a := range features.Addons.Addons() {
			if a.Name == "logging" {
				return a.Chart.Version
			}
		}
		return ""
	}
	before := pinned()
	for _, tc := range []struct {
		who, token, version string
		code                int
		want                string
	}{
		{"member", member, "0.2.0", http.StatusForbidden, "needs the admin role"},
		{"admin, no version", h.AdminToken, " ", http.StatusBadRequest, "Give the chart version"},
	} {
		if code, body := post(tc.token, tc.version); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want %d saying %q", tc.who, code, tc.code, tc.want)
		}
	}
	if got := pinned(); got != before {
		t.Fatalf("a refused form changed the version: %s, was %s", got, before)
	}
	if code, _ := post(h.AdminToken, "0.2.0"); code != http.StatusSeeOther {
		t.Fatalf("admin: %d, want 303 back to the tab", code)
	}
	if got := pinned(); got != "0.2.0" {
		t.Errorf("pinned version %s, want 0.2.0", got)
	}
	stored, err := h.Hub.Store().AddonVersions(t.Context())
	if err != nil || len(stored) != 1 || stored[0].Addon != "logging" || stored[0].Version != "0.2.0" || stored[0].UpdatedBy != "admin" {
		t.Errorf("stored versions %+v, %v", stored, err)
	}
	// A cluster's desired version is the new one once the rollout (over
	// no cluster with the add-on enabled here) has finished; until then
	// the tab says the rollout runs.
	var page []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.URL+"/ui/clusters/"+c.ID+"/addons", nil)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		resp, err := h.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(page), `id="version-logging"`) && strings.Contains(string(page), "0.2.0 / —") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Add-ons tab lacks the form or the new version:\n%s", page)
		}
	}
	if strings.Contains(string(page), "rolling out") {
		t.Errorf("the tab still says the finished rollout runs:\n%s", page)
	}
	waitAudit(t, h, "addons")
}

// waitAudit waits (10 s at most) for an audit event of verb from the UI.
func waitAudit(t *testing.T, h *localeco.Hub, verb string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		events, err := h.Hub.Store().ListAudit(t.Context(), store.AuditQuery{Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if ev.Verb == verb && ev.Source == "ui" && ev.Code == http.StatusSeeOther {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event %s from the UI in %+v", verb, events)
		}
	}
}
