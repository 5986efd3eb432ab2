package catalog_test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/catalog/registrytest"
	"github.com/eco-project/eco/store"
)

// pushCharts packages the demo chart as chart name at each version and
// pushes it to the registry as path/name:version, as helm push does.
func pushCharts(t testing.TB, reg *registrytest.Registry, path, name string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		ch, err := chartrepo.Demo("shop")
		if err != nil {
			t.Fatal(err)
		}
		ch.Metadata.Name = name
		out, err := chartrepo.Package(ch, v, nil, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		reg.PushChart(t, strings.TrimPrefix(path+"/"+name, "/"), v, data)
	}
}

// waitRepo polls repository name until cond holds of its status (20 s at
// most) and returns that status.
func (w *hubWith) waitRepo(t testing.TB, name, what string, cond func(catalog.RepositoryStatus) bool) catalog.RepositoryStatus {
	t.Helper()
	var st catalog.RepositoryStatus
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = catalog.RepositoryStatus{}
		if code, body := w.call("GET", "/api/v1/catalog/repositories/"+name, "", nil, &st); code != 200 {
			t.Fatalf("repository %s: %d %s", name, code, body)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("repository %s: %s never held: %+v", name, what, st)
		}
	}
}

// refreshUntil asks for a refresh of repository name and waits for one
// that ends with cond holding, asking again after each that does not.
func (w *hubWith) refreshUntil(t testing.TB, name, what string, cond func(catalog.RepositoryStatus) bool) catalog.RepositoryStatus {
	t.Helper()
	var st catalog.RepositoryStatus
	for deadline := time.Now().Add(20 * time.Second); ; {
		if code, body := w.call("POST", "/api/v1/catalog/repositories/"+name+"/refresh", "", nil, nil); code != 200 {
			t.Fatalf("refresh %s: %d %s", name, code, body)
		}
		if st = w.waitRefreshed(name); cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("repository %s: %s never held after a refresh: %+v", name, what, st)
		}
	}
}

// TestOCIRepository: charts pushed with Helm's registry client to a real
// registry (distribution, basic auth, TLS from its own CA) and listed by
// name are listed, searched and downloaded by the catalog; a listed name
// that is not a chart, or a wrong password, is the refresh's error.
func TestOCIRepository(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{User: "pusher", Password: "s3cret-token"})
	pushCharts(t, reg, "charts", "shop", "1.0.0", "1.1.0")
	reg.PushImage(t, "charts/webapp", "1.0.0")
	w := startHub(t)
	in := map[string]any{"name": "oci", "url": "oci://" + reg.Host + "/charts", "username": "pusher", "password": "s3cret-token", "caPEM": reg.CAPEM, "charts": []string{"shop"}}
	if code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil); code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}
	st := w.waitRefreshed("oci")
	if st.RefreshError != "" || st.Charts != 1 || st.Versions != 2 || st.Notice != "" {
		t.Fatalf("status %+v", st)
	}
	if hits := w.cat.Search("shop", 0); len(hits) != 1 || hits[0].Version != "1.1.0" || hits[0].Repo != "oci" || hits[0].AppVersion != "2.4.1" {
		t.Fatalf("search %+v", hits)
	}
	var page catalog.Page
	if code, body := w.call("GET", "/api/v1/catalog/charts/oci/shop?version=1.0.0", "", nil, &page); code != 200 || page.Version != "1.0.0" || !strings.Contains(page.Readme, "# shop") {
		t.Fatalf("chart page: %d %s %+v", code, body, page)
	}
	for _, tc := range []struct {
		name     string
		in       map[string]any
		want     string
		wantNone bool
	}{
		{"a listed image that is not a chart", map[string]any{"charts": []string{"shop", "webapp"}}, "webapp is not a Helm chart", false},
		{"a wrong password", map[string]any{"password": "nope"}, "401", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := clone(in)
			bad["name"] = "oci-bad"
			for k, v := range tc.in {
				bad[k] = v
			}
			if code, body := w.call("POST", "/api/v1/catalog/repositories", "", bad, nil); code != 200 {
				t.Fatalf("add: %d %s (listed charts are not checked on add)", code, body)
			}
			if st := w.waitRefreshed("oci-bad"); !strings.Contains(st.RefreshError, tc.want) || st.Versions != 0 {
				t.Fatalf("status %+v, want a refresh error with %q", st, tc.want)
			}
			w.call("DELETE", "/api/v1/catalog/repositories/oci-bad", "", nil, nil)
		})
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestOCIDiscovery: an OCI registry added without chart names has its
// charts discovered through its catalog API, followed page by page: the
// charts directly under the path — not an image beside them (with a
// version tag or without), not a chart elsewhere or deeper. The progress
// shows while it runs. The charts are searched, shown and downloaded; a
// refresh finds new charts and versions; a restart keeps them. A registry
// behind a bearer token is discovered with it.
func TestOCIDiscovery(t *testing.T) {
	var mu sync.Mutex
	var cursors []string // the pages asked for after the first
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	reg := registrytest.Start(t, registrytest.Config{User: "pusher", Password: "s3cret-token", Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/v2/_catalog":
				if last := r.URL.Query().Get("last"); last != "" && r.Header.Get("Authorization") != "" {
					mu.Lock()
					cursors = append(cursors, last)
					mu.Unlock()
				}
			case "/v2/charts/zoo/tags/list": // held until the test has seen the progress
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}})
	pushCharts(t, reg, "charts", "shop", "1.0.0", "1.1.0")
	pushCharts(t, reg, "charts", "zoo", "0.3.0")
	reg.PushImage(t, "charts/webapp", "1.0.0")        // an image with a version tag
	reg.PushImage(t, "charts/tools", "latest")        // an image without one
	pushCharts(t, reg, "other", "db", "1.0.0")        // a chart outside the path
	pushCharts(t, reg, "charts/team", "api", "1.0.0") // a chart deeper than a chart's name
	// The catalog, in pages of 2: [charts/shop charts/team/api]
	// [charts/tools charts/webapp] [charts/zoo other/db].
	w := startHubTuned(t, 0, 2)
	in := map[string]any{"name": "oci", "url": "oci://" + reg.Host + "/charts", "username": "pusher", "password": "s3cret-token", "caPEM": reg.CAPEM}
	if code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil); code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}

	t.Run("progress shows while it runs", func(t *testing.T) {
		st := w.waitRepo(t, "oci", "progress past the listing", func(st catalog.RepositoryStatus) bool {
			return st.Refreshing && strings.Contains(st.Progress, "of 4 repositories read")
		})
		t.Logf("progress: %s", st.Progress)
		open()
	})

	t.Run("the charts under the path, found on every page", func(t *testing.T) {
		st := w.waitRefreshed("oci")
		if st.RefreshError != "" || st.Charts != 2 || st.Versions != 3 || st.Notice != "" {
			t.Fatalf("status %+v, want shop (2 versions) and zoo (1)", st)
		}
		mu.Lock()
		got := strings.Join(cursors, " ")
		mu.Unlock()
		if got != "charts/team/api charts/webapp" {
			t.Fatalf("pages asked for after the first: %q, want those after charts/team/api and charts/webapp", got)
		}
		var names []string
		for _, h := range w.cat.Search("", 0) {
			names = append(names, h.Repo+"/"+h.Name+"@"+h.Version)
		}
		if got := strings.Join(names, " "); got != "oci/shop@1.1.0 oci/zoo@0.3.0" {
			t.Fatalf("charts %s, want oci/shop@1.1.0 oci/zoo@0.3.0", got)
		}
		var page catalog.Page
		if code, body := w.call("GET", "/api/v1/catalog/charts/oci/shop?version=1.0.0", "", nil, &page); code != 200 || page.Version != "1.0.0" ||
			!strings.Contains(page.Readme, "# shop") || len(page.Versions) != 2 || !strings.Contains(page.Values, "replicaCount") {
			t.Fatalf("chart page: %d %s %+v", code, body, page)
		}
		ch, err := w.cat.Chart(t.Context(), apps.ChartRef{Repo: "oci", Name: "zoo"})
		if err != nil || ch.Metadata.Name != "zoo" || ch.Metadata.Version != "0.3.0" || len(ch.Templates) == 0 {
			t.Fatalf("download: %v", err)
		}
	})

	t.Run("a refresh finds new charts and versions", func(t *testing.T) {
		pushCharts(t, reg, "charts", "shop", "1.2.0")
		pushCharts(t, reg, "charts", "new", "0.1.0")
		st := w.refreshUntil(t, "oci", "three charts, five versions", func(st catalog.RepositoryStatus) bool { return st.Charts == 3 && st.Versions == 5 })
		if st.RefreshError != "" {
			t.Fatalf("status %+v", st)
		}
		if hits := w.cat.Search("shop", 0); len(hits) == 0 || hits[0].Name != "shop" || hits[0].Version != "1.2.0" {
			t.Fatalf("search after the refresh %+v", hits)
		}
	})

	t.Run("a restart keeps them", func(t *testing.T) {
		w.restart()
		if st, err := w.cat.Repository("oci"); err != nil || st.Charts != 3 || st.Versions != 5 {
			t.Fatalf("status right after the restart (before any refresh): %+v %v", st, err)
		}
		if ch, err := w.cat.Chart(t.Context(), apps.ChartRef{Repo: "oci", Name: "new", Version: "0.1.0"}); err != nil || ch.Metadata.Name != "new" {
			t.Fatalf("download with the unsealed password: %v", err)
		}
	})

	t.Run("behind a bearer token", func(t *testing.T) {
		treg := registrytest.Start(t, registrytest.Config{Token: "tok-4711"})
		pushCharts(t, treg, "", "shop", "2.0.0")
		in := map[string]any{"name": "tokened", "url": "oci://" + treg.Host, "token": "tok-4711", "caPEM": treg.CAPEM}
		if code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil); code != 200 {
			t.Fatalf("add: %d %s", code, body)
		}
		if st := w.waitRefreshed("tokened"); st.RefreshError != "" || st.Charts != 1 || st.Versions != 1 || !st.HasSecret {
			t.Fatalf("status %+v", st)
		}
		if ch, err := w.cat.Chart(t.Context(), apps.ChartRef{Repo: "tokened", Name: "shop"}); err != nil || ch.Metadata.Version != "2.0.0" {
			t.Fatalf("download: %v", err)
		}
	})
}

// TestOCIDiscoveryRefused: a registry that does not list its
// repositories (GHCR answers 404, Docker Hub 401 to credentials it
// otherwise takes, others UNSUPPORTED), credentials it refuses, none
// where it needs some, or a registry out of reach: adding it without
// chart names is refused with the reason and records nothing. Listing the
// charts instead works.
func TestOCIDiscoveryRefused(t *testing.T) {
	refuseCatalog := func(status int, code string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/_catalog" {
					next.ServeHTTP(w, r)
					return
				}
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Basic realm="eco-registrytest"`)
				}
				if code == "" {
					http.NotFound(w, r)
					return
				}
				registrytest.Error(w, status, code, "the catalog is not served here")
			})
		}
	}
	basic := registrytest.Config{User: "pusher", Password: "s3cret-token"}
	withWrap := func(cfg registrytest.Config, wrap func(http.Handler) http.Handler) registrytest.Config {
		cfg.Wrap = wrap
		return cfg
	}
	w := startHub(t)
	for _, tc := range []struct {
		name       string
		reg        registrytest.Config
		host       string // instead of the registry's
		user, pass string
		token      string
		code       int
		want       string
	}{
		{"no catalog API (404, as GHCR)", withWrap(basic, refuseCatalog(http.StatusNotFound, "")), "", "pusher", "s3cret-token", "", 400,
			"this registry does not list its repositories (its catalog API answered 404 Not Found): list its charts"},
		{"the catalog refused to good credentials (401, as Docker Hub)", withWrap(basic, refuseCatalog(http.StatusUnauthorized, "UNAUTHORIZED")), "", "pusher", "s3cret-token", "", 400,
			"this registry does not list its repositories (its catalog API answered 401 Unauthorized): list its charts"},
		{"UNSUPPORTED", withWrap(basic, refuseCatalog(http.StatusBadRequest, "UNSUPPORTED")), "", "pusher", "s3cret-token", "", 400,
			"this registry does not list its repositories (its catalog API answered 400 Bad Request): list its charts"},
		{"a wrong password", basic, "", "pusher", "wrong", "", 400, "the registry refused the credentials"},
		{"no credentials", basic, "", "", "", "", 400, "the registry needs credentials"},
		{"a wrong bearer token", registrytest.Config{Token: "tok-4711"}, "", "", "", "nope", 400, "the registry refused the credentials"},
		{"a registry out of reach", basic, "127.0.0.1:1", "pusher", "s3cret-token", "", 502, "listing the registry's repositories"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := registrytest.Start(t, tc.reg)
			host := reg.Host
			if tc.host != "" {
				host = tc.host
			}
			in := map[string]any{"name": "refused", "url": "oci://" + host + "/charts", "username": tc.user, "password": tc.pass, "token": tc.token, "caPEM": reg.CAPEM}
			code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("add: %d %s, want %d saying %q", code, body, tc.code, tc.want)
			}
			if code, _ := w.call("GET", "/api/v1/catalog/repositories/refused", "", nil, nil); code != http.StatusNotFound {
				t.Fatalf("the refused repository is listed: %d", code)
			}
			if _, err := w.h.Store().GetRepository(t.Context(), "refused"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the refused repository is stored: %v", err)
			}
		})
	}

	t.Run("listing the charts instead works", func(t *testing.T) {
		reg := registrytest.Start(t, withWrap(basic, refuseCatalog(http.StatusNotFound, "")))
		pushCharts(t, reg, "charts", "shop", "1.0.0")
		in := map[string]any{"name": "listed", "url": "oci://" + reg.Host + "/charts", "username": "pusher", "password": "s3cret-token", "caPEM": reg.CAPEM, "charts": []string{"shop"}}
		if code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil); code != 200 {
			t.Fatalf("add: %d %s", code, body)
		}
		if st := w.waitRefreshed("listed"); st.RefreshError != "" || st.Versions != 1 {
			t.Fatalf("status %+v", st)
		}
	})
}

// TestOCIDiscoveryNotices: what a discovery has to say without failing is
// the repository's notice, kept across a restart — capped at
// MaxDiscovered repositories (here 3); a repository these credentials may not
// read, left out. A repository that fails otherwise fails the refresh and
// the last index stays.
func TestOCIDiscoveryNotices(t *testing.T) {
	var flaky atomic.Bool
	reg := registrytest.Start(t, registrytest.Config{User: "pusher", Password: "s3cret-token", Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/v2/mixed/locked/tags/list":
				registrytest.Error(w, http.StatusForbidden, "DENIED", "not for you")
			case strings.HasPrefix(r.URL.Path, "/v2/mixed/flaky/") && flaky.Load():
				http.Error(w, "the backend is down", http.StatusInternalServerError)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}})
	pushCharts(t, reg, "many", "a", "1.0.0")
	pushCharts(t, reg, "many", "b", "1.0.0")
	pushCharts(t, reg, "many", "c", "1.0.0")
	pushCharts(t, reg, "many", "d", "1.0.0")
	pushCharts(t, reg, "mixed", "shop", "1.0.0")
	pushCharts(t, reg, "mixed", "flaky", "1.0.0")
	reg.PushImage(t, "mixed/locked", "1.0.0")
	w := startHubTuned(t, 3, 0)
	add := func(name, path string) {
		t.Helper()
		in := map[string]any{"name": name, "url": "oci://" + reg.Host + "/" + path, "username": "pusher", "password": "s3cret-token", "caPEM": reg.CAPEM}
		if code, body := w.call("POST", "/api/v1/catalog/repositories", "", in, nil); code != 200 {
			t.Fatalf("add %s: %d %s", name, code, body)
		}
	}
	add("many", "many")
	add("mixed", "mixed")

	t.Run("capped", func(t *testing.T) {
		st := w.waitRefreshed("many")
		if st.RefreshError != "" || st.Charts != 3 || st.Notice != "more than 3 repositories are under oci://"+reg.Host+"/many: only the first 3 were checked for charts; list the charts to choose them" {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a repository that may not be read is left out", func(t *testing.T) {
		st := w.waitRefreshed("mixed")
		if st.RefreshError != "" || st.Charts != 2 || !strings.HasPrefix(st.Notice, "left out, not readable with these credentials: locked (") ||
			!strings.Contains(st.Notice, "403") || strings.Contains(st.Notice, "more than") {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a failing repository fails the refresh; the index stays", func(t *testing.T) {
		flaky.Store(true)
		st := w.refreshUntil(t, "mixed", "a refresh error", func(st catalog.RepositoryStatus) bool { return st.RefreshError != "" })
		if !strings.Contains(st.RefreshError, "chart flaky") || !strings.Contains(st.RefreshError, "500") || st.Charts != 2 {
			t.Fatalf("status %+v, want the error naming flaky and the last index", st)
		}
		if hits := w.cat.Search("flaky", 0); len(hits) != 1 {
			t.Fatalf("search after the failed refresh: %+v", hits)
		}
		flaky.Store(false)
		w.refreshUntil(t, "mixed", "a refresh without error", func(st catalog.RepositoryStatus) bool { return st.RefreshError == "" && st.Charts == 2 })
	})
	t.Run("the notice is kept across a restart", func(t *testing.T) {
		w.restart()
		if st, err := w.cat.Repository("many"); err != nil || !strings.Contains(st.Notice, "only the first 3 were checked") {
			t.Fatalf("status right after the restart: %+v %v", st, err)
		}
	})
}
