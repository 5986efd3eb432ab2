package ui_test

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

// BenchmarkClustersPage renders the Imported Clusters page, and answers
// its status polling, over a store of 10,000 clusters.
func BenchmarkClustersPage(b *testing.B) {
	const n = 10000
	h := newTestHub(b, hubOptions{})
	st := h.hub.Store()
	start := time.Now()
	providers := store.Providers()
	for i := range n {
		hash := sha256.Sum256(fmt.Appendf(nil, "bench-%d", i))
		c, err := st.CreateCluster(b.Context(), store.NewCluster{
			Name: fmt.Sprintf("cluster-%05d", i), Provider: providers[i%len(providers)],
			Region: []string{"eu-west-1", "us-east-1", "westeurope", "us-central1"}[i%4], AgentCredentialHash: hash[:],
		})
		if err != nil {
			b.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := st.UpdateStatus(b.Context(), c.ID, store.StatusUpdate{State: store.StateConnected, Heartbeat: true, RTT: time.Millisecond, AgentVersion: "v1", KubernetesVersion: "v1.34.4"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("seeded %d clusters in %v", n, time.Since(start))
	handler := h.srv.Config.Handler
	auth := "Bearer " + h.admin
	for _, bc := range []struct{ name, path, want string }{
		{"first-page", "/", "1–50 of 10000"},
		{"page-100-of-400", "/?size=25&page=100", "2476–2500 of 10000"},
		{"last-page-by-state-desc", "/?sort=state&desc=1&page=200", "9951–10000 of 10000"},
		{"search", "/?q=cluster-0999", "1–10 of 10"},
		{"filter-connected", "/?state=Connected&size=100", "1–100 of 3334"},
		{"status-poll", "/ui/clusters/status?page=50", `"total":10000`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", bc.path, nil)
			req.Header.Set("Authorization", auth)
			check := func() {
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), bc.want) {
					b.Fatalf("GET %s = %d, want 200 with %q", bc.path, rec.Code, bc.want)
				}
			}
			check()
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
			}
		})
	}
}
