package catalog_test

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/store"
)

// addonCharts is the built-in add-on repository as eco-hub builds it:
// with the generated metrics-server chart (written now, as go generate
// does) or, withoutGenerated, as a hub built without it.
func addonCharts(t *testing.T, withGenerated bool) catalog.BuiltInRepository {
	t.Helper()
	var gen fs.FS = fstest.MapFS{}
	if withGenerated {
		dir := t.TempDir()
		if _, err := chartrepo.WriteGenerated(t.Context(), dir); err != nil {
			t.Fatal(err)
		}
		gen = os.DirFS(dir)
	}
	charts, missing, err := chartrepo.AddonCharts(gen)
	if err != nil {
		t.Fatal(err)
	}
	return catalog.BuiltInRepository{Name: chartrepo.AddonRepository, Charts: charts, Missing: missing}
}

// repoByName finds a repository in the API's list.
func (w *hubWith) repoByName(name string) (catalog.RepositoryStatus, bool) {
	w.t.Helper()
	var list struct{ Items []catalog.RepositoryStatus }
	if code, body := w.call("GET", "/api/v1/catalog/repositories", "", nil, &list); code != 200 {
		w.t.Fatalf("list: %d %s", code, body)
	}
	for _, r := range list.Items {
		if r.Name == name {
			return r, true
		}
	}
	return catalog.RepositoryStatus{}, false
}

// TestBuiltInRepository: the add-on charts built into the hub are a
// repository like the others — listed (marked built in, indexed at once,
// no network), searched, a chart's page, every curated add-on's pinned
// chart loaded as the Helm service loads it — that cannot be deleted or
// replaced, stays out of the store and is there again after a restart.
func TestBuiltInRepository(t *testing.T) {
	b := addonCharts(t, true)
	if len(b.Missing) != 0 {
		t.Fatalf("charts missing with the generated ones given: %v", b.Missing)
	}
	w := startHubWith(t, b)

	t.Run("listed, built in, indexed at start", func(t *testing.T) {
		// No wait: the index is read when the catalog starts.
		st, ok := w.repoByName("eco-addons")
		if !ok || !st.BuiltIn || st.Kind != catalog.KindBuiltIn || st.URL != "builtin://eco-addons" || st.RefreshedAt == nil ||
			st.RefreshError != "" || st.Charts != 3 || st.Versions != 3 || len(st.Missing) != 0 || st.HasSecret {
			t.Fatalf("status %+v (listed %v)", st, ok)
		}
		var raw []byte
		w.call("GET", "/api/v1/catalog/repositories/eco-addons", "", nil, &raw)
		if !bytes.Contains(raw, []byte(`"builtIn": true`)) {
			t.Fatalf("the API does not say built in: %s", raw)
		}
	})

	t.Run("searched, and a chart's page", func(t *testing.T) {
		var hits struct{ Items []catalog.Hit }
		w.call("GET", "/api/v1/catalog/charts?q=prometheus", "", nil, &hits)
		if len(hits.Items) != 1 || hits.Items[0].Repo != "eco-addons" || hits.Items[0].Name != "eco-monitoring" || hits.Items[0].Version != "0.1.0" {
			t.Fatalf("search prometheus: %+v", hits.Items)
		}
		w.call("GET", "/api/v1/catalog/charts?q=metrics-server", "", nil, &hits)
		if len(hits.Items) != 1 || hits.Items[0].Version != "3.12.2" {
			t.Fatalf("search metrics-server: %+v", hits.Items)
		}
		var page catalog.Page
		if code, body := w.call("GET", "/api/v1/catalog/charts/eco-addons/eco-monitoring", "", nil, &page); code != 200 {
			t.Fatalf("chart page: %d %s", code, body)
		}
		if page.Version != "0.1.0" || !strings.Contains(page.Values, "retention: 24h") || len(page.Versions) != 1 {
			t.Fatalf("chart page: %+v", page)
		}
		if code, body := w.call("GET", "/api/v1/catalog/charts/eco-addons/metrics-server?version=3.12.2", "", nil, &page); code != 200 || !strings.Contains(page.Values, "apiService") {
			t.Fatalf("metrics-server's page: %d %s %+v", code, body, page)
		}
	})

	t.Run("every curated add-on's pinned chart loads", func(t *testing.T) {
		for _, a := range addons.Defaults(chartrepo.AddonRepository) {
			ch, err := w.cat.Chart(t.Context(), a.Chart)
			if err != nil {
				t.Fatalf("add-on %s: %v", a.Name, err)
			}
			if ch.Metadata.Name != a.Chart.Name || ch.Metadata.Version != a.Chart.Version || len(ch.Templates) == 0 {
				t.Fatalf("add-on %s: loaded %s %s with %d templates", a.Name, ch.Metadata.Name, ch.Metadata.Version, len(ch.Templates))
			}
		}
	})

	t.Run("a refresh re-reads it", func(t *testing.T) {
		if code, body := w.call("POST", "/api/v1/catalog/repositories/eco-addons/refresh", "", nil, nil); code != 200 {
			t.Fatalf("refresh: %d %s", code, body)
		}
		if st := w.waitRefreshed("eco-addons"); st.RefreshError != "" || st.Versions != 3 {
			t.Fatalf("after a refresh: %+v", st)
		}
	})

	t.Run("cannot be deleted or replaced", func(t *testing.T) {
		code, body := w.call("DELETE", "/api/v1/catalog/repositories/eco-addons", "", nil, nil)
		if code != http.StatusConflict || !strings.Contains(body, "built into the hub") || !strings.Contains(body, "cannot be deleted") {
			t.Fatalf("delete: %d %s, want 409 saying it is built in", code, body)
		}
		code, body = w.call("POST", "/api/v1/catalog/repositories", "", map[string]any{"name": "eco-addons", "url": "https://charts.example.com"}, nil)
		if code != http.StatusConflict || !strings.Contains(body, "reserved") {
			t.Fatalf("add of the name: %d %s, want 409 saying the name is reserved", code, body)
		}
		if st, ok := w.repoByName("eco-addons"); !ok || !st.BuiltIn || st.Versions != 3 {
			t.Fatalf("after the refusals: %+v", st)
		}
	})

	t.Run("not in the store, there after a restart", func(t *testing.T) {
		if _, err := w.h.Store().GetRepository(t.Context(), "eco-addons"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the built-in reached the store: %v", err)
		}
		w.restart()
		if st, ok := w.repoByName("eco-addons"); !ok || !st.BuiltIn || st.Versions != 3 {
			t.Fatalf("after a restart: %+v", st)
		}
		if _, err := w.cat.Chart(t.Context(), apps.ChartRef{Repo: "eco-addons", Name: "eco-logging", Version: "0.1.0"}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBuiltInWithoutGeneratedCharts: a hub built without the generated
// metrics-server chart lists and installs the other add-on charts, warns
// at start, and says why metrics-server is not there when it is asked
// for.
func TestBuiltInWithoutGeneratedCharts(t *testing.T) {
	b := addonCharts(t, false)
	w := startHubWith(t, b)
	st, ok := w.repoByName("eco-addons")
	if !ok || !st.BuiltIn || st.Charts != 2 || st.RefreshError != "" || !strings.Contains(st.Missing["metrics-server"], "built without it") {
		t.Fatalf("status %+v", st)
	}
	if hits := w.cat.Search("", 0); len(hits) != 2 || hits[0].Name != "eco-logging" || hits[1].Name != "eco-monitoring" {
		t.Fatalf("search: %+v", hits)
	}
	if _, err := w.cat.Chart(t.Context(), apps.ChartRef{Repo: "eco-addons", Name: "eco-logging", Version: "0.1.0"}); err != nil {
		t.Fatal(err)
	}
	_, err := w.cat.Chart(t.Context(), addons.Defaults("eco-addons")[0].Chart)
	if !errors.Is(err, catalog.ErrNotFound) || !strings.Contains(err.Error(), "metrics-server is not in the built-in repository eco-addons: this eco-hub was built without it") ||
		!strings.Contains(err.Error(), "go generate") {
		t.Fatalf("metrics-server: %v", err)
	}
	if code, body := w.call("GET", "/api/v1/catalog/charts/eco-addons/metrics-server", "", nil, nil); code != http.StatusNotFound || !strings.Contains(body, "built without it") {
		t.Fatalf("metrics-server's page: %d %s", code, body)
	}
	if logs := w.logs.String(); !strings.Contains(logs, "a chart of a built-in repository is missing") || !strings.Contains(logs, "chart=metrics-server") {
		t.Fatalf("no warning at start:\n%s", logs)
	}
}

// TestStoredRepositoryShadowsBuiltIn: a hub that had a repository of the
// built-in's name added by hand keeps using it (and says so); deleted, the
// built-in takes its place.
func TestStoredRepositoryShadowsBuiltIn(t *testing.T) {
	dir := t.TempDir()
	packageShop(t, dir, "1.0.0")
	logging, err := chartrepo.Demo("eco-logging") // an add-on chart with other values
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chartrepo.Package(logging, "", map[string]any{"from": "the stored repository"}, dir); err != nil {
		t.Fatal(err)
	}
	repoSrv, err := chartrepo.New(chartrepo.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(repoSrv)
	defer srv.Close()
	w := startHubWith(t) // a hub from before the built-in
	if code, body := w.call("POST", "/api/v1/catalog/repositories", "", map[string]any{"name": "eco-addons", "url": srv.URL}, nil); code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}
	w.waitRefreshed("eco-addons")

	w.builtIn = []catalog.BuiltInRepository{addonCharts(t, false)}
	w.restart()
	st, ok := w.repoByName("eco-addons")
	if !ok || st.BuiltIn || st.Kind != "http" || st.URL != srv.URL || st.Charts != 2 {
		t.Fatalf("after the restart with the built-in: %+v, want the stored repository", st)
	}
	if logs := w.logs.String(); !strings.Contains(logs, "the stored one is used, not the built-in") {
		t.Fatalf("no warning that the stored repository shadows the built-in:\n%s", logs)
	}
	if hits := w.cat.Search("eco-monitoring", 0); len(hits) != 0 {
		t.Fatalf("the shadowed built-in is searched: %+v", hits)
	}
	loggingRef := apps.ChartRef{Repo: "eco-addons", Name: "eco-logging", Version: "0.1.0"}
	if ch, err := w.cat.Chart(t.Context(), loggingRef); err != nil || ch.Values["from"] != "the stored repository" {
		t.Fatalf("eco-logging from the stored repository: %v %v", err, ch)
	}

	if code, body := w.call("DELETE", "/api/v1/catalog/repositories/eco-addons", "", nil, nil); code != 200 {
		t.Fatalf("delete of the stored repository: %d %s", code, body)
	}
	if st, ok := w.repoByName("eco-addons"); !ok || !st.BuiltIn || st.Charts != 2 {
		t.Fatalf("after the delete: %+v, want the built-in", st)
	}
	if hits := w.cat.Search("eco-monitoring", 0); len(hits) != 1 || hits[0].Repo != "eco-addons" {
		t.Fatalf("search after the delete: %+v", hits)
	}
	if ch, err := w.cat.Chart(t.Context(), loggingRef); err != nil || ch.Values["from"] != nil {
		t.Fatalf("eco-logging after the delete: %v, values %v; want the built-in's, not the stored one's kept in the cache", err, ch.Values)
	}
	if code, _ := w.call("POST", "/api/v1/catalog/repositories", "", map[string]any{"name": "eco-addons", "url": srv.URL}, nil); code != http.StatusConflict {
		t.Fatalf("adding the name again: %d, want 409", code)
	}
}
