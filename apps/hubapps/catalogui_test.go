package hubapps_test

import (
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/catalog/registrytest"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/localeco"
)

// TestOCIRegistryFromTheUI: a hub admin adds an OCI registry on the App
// Catalog page without naming its charts — the form says they may be left
// out and when they are needed — and the page shows the charts found, the
// repository ok and its notice (a repository these credentials may not
// read). A registry that does not list its repositories is refused with
// the reason, and nothing is added.
func TestOCIRegistryFromTheUI(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{User: "pusher", Password: "s3cret-token", Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/charts/locked/tags/list" {
				registrytest.Error(w, http.StatusForbidden, "DENIED", "not for you")
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	closed := registrytest.Start(t, registrytest.Config{Wrap: func(http.Handler) http.Handler { return http.NotFoundHandler() }})
	ch, err := chartrepo.Demo("shop")
	if err != nil {
		t.Fatal(err)
	}
	out, err := chartrepo.Package(ch, "1.0.0", nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	reg.PushChart(t, "charts/shop", "1.0.0", data)
	reg.PushImage(t, "charts/locked", "1.0.0")

	var features *hubapps.Features
	h, err := localeco.StartHub(t.Context(), localeco.HubConfig{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Mount: func(h *hub.Hub) error {
			var err error
			features, err = hubapps.Start(t.Context(), hubapps.Config{Hub: h, Logger: slog.New(slog.DiscardHandler), GeneratedCharts: fstest.MapFS{}, AddonResync: time.Hour})
			if err != nil {
				return err
			}
			_, err = ui.Mount(ui.Config{Hub: h, Apps: features.UI(), Logger: slog.New(slog.DiscardHandler)})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { features.Close(); h.Close() })
	client := *h.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	do := func(method, path string, form url.Values) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, h.URL+path, body)
		req.Header.Set("Authorization", "Bearer "+h.AdminToken)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, html.UnescapeString(string(b))
	}
	add := func(name string, r *registrytest.Registry) (int, string) {
		return do("POST", "/ui/catalog/repositories/add", url.Values{"name": {name}, "url": {"oci://" + r.Host + "/charts"},
			"username": {"pusher"}, "password": {"s3cret-token"}, "ca": {r.CAPEM}, "charts": {""}})
	}

	if _, page := do("GET", "/ui/catalog", nil); !strings.Contains(page, "empty: found through the registry's catalog API — a registry without one, such as GHCR or Docker Hub, needs them listed") {
		t.Fatalf("the add form does not say the charts may be left out:\n%s", page)
	}
	if code, page := add("nocatalog", closed); code != http.StatusBadRequest || !strings.Contains(page, "this registry does not list its repositories") || !strings.Contains(page, "list its charts") {
		t.Fatalf("a registry without a catalog: %d, want 400 with the reason:\n%s", code, page)
	}
	if code, _ := add("registry", reg); code != http.StatusSeeOther {
		t.Fatalf("add: %d, want 303 back to the catalog", code)
	}
	var page string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, page = do("GET", "/ui/catalog", nil)
		if row := between(page, `<tr data-repo="registry">`, "</tr>"); strings.Contains(row, "1 / 1") && strings.Contains(row, "ok") {
			if !strings.Contains(row, "left out, not readable with these credentials: locked") {
				t.Fatalf("the repository's row lacks the notice: %s", row)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry's row never showed its chart:\n%s", page)
		}
	}
	if strings.Contains(page, `data-repo="nocatalog"`) {
		t.Fatalf("the refused registry is listed:\n%s", page)
	}
	if !strings.Contains(between(page, `<table id="charts">`, "</table>"), "shop") {
		t.Fatalf("the chart is not in the catalog:\n%s", page)
	}
}

// between is the part of s from start to the next end after it ("" if
// start is not in s).
func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}
