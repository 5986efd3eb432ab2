package hubapps_test

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localeco"
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
