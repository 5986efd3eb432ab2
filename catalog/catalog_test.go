package catalog_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localeco"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// hubWith starts a hub with the App Catalog mounted; restart starts it
// again on the same directory.
type hubWith struct {
	t   testing.TB
	dir string
	h   *localeco.Hub
	cat *catalog.Catalog
	// builtIn are the catalog's built-in repositories, read at every
	// start (a restart too).
	builtIn []catalog.BuiltInRepository
	// maxDiscovered and catalogPageSize, when set, bound OCI discovery
	// (Config.MaxDiscovered) and the pages of a registry's catalog.
	maxDiscovered, catalogPageSize int
	// logs holds what the hub and the catalog logged (warnings and up).
	logs syncBuffer
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
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

func startHub(t *testing.T) *hubWith { return startHubB(t) }

func startHubB(t testing.TB) *hubWith { return startHubWith(t) }

// startHubWith starts a hub whose catalog has built-in repositories.
func startHubWith(t testing.TB, builtIn ...catalog.BuiltInRepository) *hubWith {
	return (&hubWith{t: t, builtIn: builtIn}).start()
}

// startHubTuned starts a hub whose catalog checks at most maxDiscovered
// repositories of a registry and reads its catalog pageSize entries a
// page (zero: the defaults).
func startHubTuned(t testing.TB, maxDiscovered, pageSize int) *hubWith {
	return (&hubWith{t: t, maxDiscovered: maxDiscovered, catalogPageSize: pageSize}).start()
}

func (w *hubWith) start() *hubWith {
	t := w.t
	w.dir = t.TempDir()
	h, err := localeco.StartHub(t.Context(), w.config())
	if err != nil {
		t.Fatal(err)
	}
	w.h = h
	t.Cleanup(func() {
		w.cat.Close()
		w.h.Close()
	})
	return w
}

func (w *hubWith) config() localeco.HubConfig {
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(tWriter{w.t}, &w.logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return localeco.HubConfig{Dir: w.dir, Logger: logger,
		Mount: func(h *hub.Hub) error {
			c, err := catalog.New(context.Background(), catalog.Config{Hub: h, Timeout: 5 * time.Second, Logger: logger, BuiltIn: w.builtIn, MaxDiscovered: w.maxDiscovered})
			if err != nil {
				return err
			}
			if w.catalogPageSize > 0 {
				catalog.SetCatalogPageSize(c, w.catalogPageSize)
			}
			c.Mount(h)
			w.cat = c
			return nil
		}}
}

func (w *hubWith) restart() {
	w.cat.Close()
	h, err := w.h.Restart(w.t.Context())
	if err != nil {
		w.t.Fatal(err)
	}
	w.h = h
}

func (w *hubWith) callB(tb testing.TB, method, path string, in any) (int, string) {
	return w.call(method, path, "", in, nil)
}

func (w *hubWith) call(method, path, token string, in, out any) (int, string) {
	w.t.Helper()
	err := w.h.Do(w.t.Context(), method, path, token, in, out)
	var apiErr *localeco.APIError
	switch {
	case err == nil:
		return 200, ""
	case errors.As(err, &apiErr):
		return apiErr.Code, apiErr.Body
	}
	w.t.Fatal(err)
	return 0, ""
}

// waitRefreshed polls repository name until no refresh runs.
func (w *hubWith) waitRefreshed(name string) catalog.RepositoryStatus {
	w.t.Helper()
	var st catalog.RepositoryStatus
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = catalog.RepositoryStatus{} // no field left from the last answer
		if code, body := w.call("GET", "/api/v1/catalog/repositories/"+name, "", nil, &st); code != 200 {
			w.t.Fatalf("repository %s: %d %s", name, code, body)
		}
		if !st.Refreshing && st.RefreshedAt != nil {
			return st
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("repository %s still refreshing: %+v", name, st)
		}
	}
}

func caPEM(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

// packageShop packages the demo chart at versions into dir.
func packageShop(t *testing.T, dir string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		ch, err := chartrepo.Demo("shop")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chartrepo.Package(ch, v, nil, dir); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHTTPRepository: a chart repository behind basic auth and TLS from
// its own CA — refreshed in the background, with its ETag, searched, a
// chart's page; the password sealed in the store and never returned; a
// viewer may look, not change; the hub restarted keeps it all.
func TestHTTPRepository(t *testing.T) {
	dir := t.TempDir()
	packageShop(t, dir, "1.0.0", "1.1.0")
	repoSrv, err := chartrepo.New(chartrepo.Config{Dir: dir, Username: "chartist", Password: "hunter2-secret"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(repoSrv)
	defer srv.Close()
	w := startHub(t)

	add := map[string]any{"name": "local", "url": srv.URL, "username": "chartist", "password": "wrong", "caPEM": caPEM(srv)}
	t.Run("a wrong password shows as the refresh error", func(t *testing.T) {
		if code, body := w.call("POST", "/api/v1/catalog/repositories", "", add, nil); code != 200 {
			t.Fatalf("add: %d %s", code, body)
		}
		st := w.waitRefreshed("local")
		if !strings.Contains(st.RefreshError, "401") || st.Versions != 0 {
			t.Fatalf("status %+v, want a 401 refresh error", st)
		}
		w.call("DELETE", "/api/v1/catalog/repositories/local", "", nil, nil)
	})
	t.Run("without its CA the TLS check fails", func(t *testing.T) {
		in := map[string]any{"name": "noca", "url": srv.URL, "username": "chartist", "password": "hunter2-secret"}
		w.call("POST", "/api/v1/catalog/repositories", "", in, nil)
		if st := w.waitRefreshed("noca"); !strings.Contains(st.RefreshError, "certificate") {
			t.Fatalf("status %+v, want a certificate error", st)
		}
		w.call("DELETE", "/api/v1/catalog/repositories/noca", "", nil, nil)
	})

	add["password"] = "hunter2-secret"
	t.Run("refresh, search and a chart's page", func(t *testing.T) {
		var raw []byte
		if code, body := w.call("POST", "/api/v1/catalog/repositories", "", add, &raw); code != 200 {
			t.Fatalf("add: %d %s", code, body)
		}
		st := w.waitRefreshed("local")
		if st.RefreshError != "" || st.Charts != 1 || st.Versions != 2 || !st.HasSecret || !st.CustomCA {
			t.Fatalf("status %+v", st)
		}
		var list []byte
		w.call("GET", "/api/v1/catalog/repositories", "", nil, &list)
		if bytes.Contains(list, []byte("hunter2")) || bytes.Contains(raw, []byte("hunter2")) {
			t.Fatalf("the API returned the password: %s", list)
		}
		var hits struct{ Items []catalog.Hit }
		w.call("GET", "/api/v1/catalog/charts?q=web+shop", "", nil, &hits)
		if len(hits.Items) != 1 || hits.Items[0].Name != "shop" || hits.Items[0].Version != "1.1.0" || hits.Items[0].Versions != 2 {
			t.Fatalf("search: %+v", hits.Items)
		}
		w.call("GET", "/api/v1/catalog/charts?q=database", "", nil, &hits)
		if len(hits.Items) != 0 {
			t.Fatalf("search for what is not there: %+v", hits.Items)
		}
		var page catalog.Page
		if code, body := w.call("GET", "/api/v1/catalog/charts/local/shop?version=1.0.0", "", nil, &page); code != 200 {
			t.Fatalf("chart page: %d %s", code, body)
		}
		if page.Version != "1.0.0" || len(page.Versions) != 2 || !strings.Contains(page.Readme, "# shop") ||
			!strings.Contains(page.Values, "replicaCount: 2") || !strings.Contains(page.Schema, `"replicaCount"`) || len(page.Dependencies) != 1 {
			t.Fatalf("chart page: %+v", page)
		}
		if code, _ := w.call("GET", "/api/v1/catalog/charts/local/nothere", "", nil, nil); code != 404 {
			t.Fatalf("an unknown chart: %d", code)
		}
	})

	t.Run("ETag refresh", func(t *testing.T) {
		before := repoSrv.NotModified.Load()
		w.call("POST", "/api/v1/catalog/repositories/local/refresh", "", nil, nil)
		w.waitRefreshed("local")
		if repoSrv.NotModified.Load() != before+1 {
			t.Fatalf("an unchanged index was downloaded again (304s %d → %d)", before, repoSrv.NotModified.Load())
		}
		packageShop(t, dir, "1.2.0")
		if err := repoSrv.Reindex(); err != nil {
			t.Fatal(err)
		}
		w.call("POST", "/api/v1/catalog/repositories/local/refresh", "", nil, nil)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if st := w.waitRefreshed("local"); st.Versions == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the new version never showed")
			}
		}
	})

	t.Run("the secret is sealed at rest", func(t *testing.T) {
		r, err := w.h.Store().GetRepository(t.Context(), "local")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.SealedSecret) == 0 || bytes.Contains(r.SealedSecret, []byte("hunter2")) {
			t.Fatalf("stored secret %q", r.SealedSecret)
		}
		db, _ := os.ReadFile(filepath.Join(w.dir, "eco.db"))
		wal, _ := os.ReadFile(filepath.Join(w.dir, "eco.db-wal"))
		if bytes.Contains(db, []byte("hunter2")) || bytes.Contains(wal, []byte("hunter2")) {
			t.Fatal("the database file holds the password in clear")
		}
	})

	t.Run("a viewer looks but does not change", func(t *testing.T) {
		var tok hub.TokenJSON
		w.call("POST", "/api/v1/tokens", "", map[string]any{"name": "vic", "role": "member"}, &tok)
		if code, _ := w.call("GET", "/api/v1/catalog/charts?q=shop", tok.Token, nil, nil); code != 200 {
			t.Fatalf("viewer search: %d", code)
		}
		in := map[string]any{"name": "mine", "url": srv.URL}
		if code, _ := w.call("POST", "/api/v1/catalog/repositories", tok.Token, in, nil); code != http.StatusForbidden {
			t.Fatalf("viewer add: %d, want 403", code)
		}
		if code, _ := w.call("DELETE", "/api/v1/catalog/repositories/local", tok.Token, nil, nil); code != http.StatusForbidden {
			t.Fatalf("viewer delete: %d, want 403", code)
		}
		if code, _ := w.call("GET", "/api/v1/catalog/charts", "", nil, nil); code != 200 {
			t.Fatal("admin search")
		}
		if code, _ := w.call("GET", "/api/v1/catalog/charts", "nope", nil, nil); code != http.StatusUnauthorized {
			t.Fatalf("no token: %d, want 401", code)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, in := range []map[string]any{
			{"name": "x", "url": "ftp://example"},
			{"name": "x", "url": "oci:///charts"},
			{"name": "x", "url": srv.URL, "password": "p"},
			{"name": "x", "url": srv.URL, "caPEM": "not pem"},
			{"name": "x", "url": srv.URL, "username": "u", "password": "p", "token": "t"},
			{"name": "local", "url": srv.URL},
		} {
			code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil)
			if code != 400 && code != 409 {
				t.Errorf("%v: %d %s, want 400 or 409", in, code, body)
			}
		}
	})

	t.Run("after a restart", func(t *testing.T) {
		w.restart()
		if hits := w.cat.Search("shop", 0); len(hits) != 1 || hits[0].Versions != 3 {
			t.Fatalf("search right after the restart (before any refresh): %+v", hits)
		}
		ch, err := w.cat.Chart(t.Context(), apps.ChartRef{Repo: "local", Name: "shop", Version: "1.1.0"})
		if err != nil || ch.Metadata.Version != "1.1.0" {
			t.Fatalf("download with the unsealed password: %v", err)
		}
	})
}
