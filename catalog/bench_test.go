package catalog_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/catalog/registrytest"
)

// BenchmarkSearch: a search across a repository of 10,000 chart versions
// (1,000 charts × 10 versions), the catalog's in-memory index.
func BenchmarkSearch(b *testing.B) {
	ix := repo.NewIndexFile()
	for i := range 1000 {
		for v := range 10 {
			md := &chart.Metadata{APIVersion: "v2", Name: fmt.Sprintf("chart-%04d", i), Version: fmt.Sprintf("1.%d.0", v),
				Description: fmt.Sprintf("Chart number %d for benchmarking, web database cache queue", i), Keywords: []string{"bench", fmt.Sprintf("k%d", i%50)}}
			ix.MustAdd(md, fmt.Sprintf("chart-%04d-1.%d.0.tgz", i, v), "", "sha256:0")
		}
	}
	data, err := yaml.Marshal(ix)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	defer srv.Close()
	w := startHubB(b)
	if code, body := w.callB(b, "POST", "/api/v1/catalog/repositories", map[string]any{"name": "big", "url": srv.URL}); code != 200 {
		b.Fatalf("add: %d %s", code, body)
	}
	st, err := w.cat.RefreshAndWait(b.Context(), "big")
	if err != nil || st.Versions != 10000 {
		b.Fatalf("refresh: %+v %v", st, err)
	}
	for _, q := range []string{"chart-0500", "web cache", "k7", ""} {
		b.Run(fmt.Sprintf("q=%q", q), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if hits := w.cat.Search(q, 100); len(hits) == 0 {
					b.Fatal("no hits")
				}
			}
		})
	}
}

// BenchmarkOCIDiscovery: one refresh of an OCI registry added without
// chart names — its catalog read in pages of 100, then every repository
// under the path checked (tags, newest manifest, chart config; 4 at a
// time) — over the real in-process registry (basic auth, TLS): 100 charts
// of 3 versions each and 100 images beside them.
func BenchmarkOCIDiscovery(b *testing.B) {
	reg := registrytest.Start(b, registrytest.Config{User: "pusher", Password: "s3cret-token"})
	const charts = 100
	for i := range charts {
		pushCharts(b, reg, "charts", fmt.Sprintf("c%03d", i), "1.0.0", "1.1.0", "2.0.0")
		reg.PushImage(b, fmt.Sprintf("charts/img%03d", i), "1.0.0")
	}
	w := startHubB(b)
	in := map[string]any{"name": "oci", "url": "oci://" + reg.Host + "/charts", "username": "pusher", "password": "s3cret-token", "caPEM": reg.CAPEM}
	if code, body := w.callB(b, "POST", "/api/v1/catalog/repositories", in); code != 200 {
		b.Fatalf("add: %d %s", code, body)
	}
	for b.Loop() {
		st, err := w.cat.RefreshAndWait(b.Context(), "oci")
		if err != nil || st.RefreshError != "" || st.Charts != charts || st.Versions != 3*charts {
			b.Fatalf("refresh: %+v %v", st, err)
		}
	}
}
