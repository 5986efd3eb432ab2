package argocd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v3/util/db"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/cache"
	"github.com/go-logr/logr"
)

// hubStats are the hub process's figures from its /metrics: heap is the
// heap its last collection found live (go_gc_heap_live_bytes, not
// HeapInuse, which also counts the garbage made since), gcs how many
// collections it has run.
type hubStats struct {
	heap, stack, goroutines, inFlight, gcs float64
}

// scrapeAfterGCs returns the hub's figures once it has run two garbage
// collections after this call: the first leaves what the LISTs pooled
// (their 256 KiB copy buffers) in sync.Pool's victim cache, the second
// drops it. The scrapes themselves allocate, which brings the next
// collection sooner; the runtime forces one at least every 2 minutes.
func (d *demo) scrapeAfterGCs(ctx context.Context) (hubStats, error) {
	first, err := d.scrape(ctx)
	if err != nil {
		return first, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		s, err := d.scrape(ctx)
		if err != nil || s.gcs >= first.gcs+2 {
			return s, err
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("the hub ran %v garbage collections in 5 minutes, want 2", s.gcs-first.gcs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape reads the hub's /metrics (as the admin) over the demo's one
// metrics connection: a connection per scrape would leave, in the hub,
// an idle keep-alive connection (its TLS state, buffers and goroutine)
// per scrape in the figures.
func (d *demo) scrape(ctx context.Context) (hubStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.hubURL+"/metrics", nil)
	if err != nil {
		return hubStats{}, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	d.metricsOnce.Do(func() {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(d.caPEM)
		d.metricsClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
	})
	resp, err := d.metricsClient.Do(req)
	if err != nil {
		return hubStats{}, err
	}
	defer resp.Body.Close()
	var s hubStats
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
			_, rest, _ = strings.Cut(line, "} ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest + " 0")[0], 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_gc_heap_live_bytes":
			s.heap = v
		case "go_gc_duration_seconds_count":
			s.gcs = v
		case "go_memstats_stack_inuse_bytes":
			s.stack = v
		case "go_goroutines":
			s.goroutines = v
		case "eco_hub_proxy_requests_in_flight":
			s.inFlight += v
		}
	}
	return s, sc.Err()
}

// BenchmarkClusterCacheThroughHub runs Argo CD's own cluster cache
// (gitops-engine's, as the application controller does: one LIST then one
// WATCH per resource type) against the demo cluster through the hub, with
// the configuration Argo CD's db builds from the hub's Secret, and reports
// the hub's live heap+stack and goroutines per open watch and per cached
// cluster, and the time to first sync. ECO_ARGOCD_LOAD_CACHES caches run
// (default 8; they all reach the one demo cluster, whose hub lets Argo
// CD's identity hold 1,000 watches here): the first half warms the hub
// (its pools, the tunnel's streams), the figures are what the second half
// added, each level read after two garbage collections. With
// ECO_ARGOCD_HTTP1=1 the caches speak HTTP/1.1.
func BenchmarkClusterCacheThroughHub(b *testing.B) {
	if shared == nil {
		b.Skip("no local cluster binaries (make kube)")
	}
	d := shared
	n := 8
	if v, err := strconv.Atoi(os.Getenv("ECO_ARGOCD_LOAD_CACHES")); err == nil && v > 1 {
		n = v
	}
	ctx := context.Background()
	cs, _ := d.clientset(b)
	argoDB := db.NewDB("argocd", settings.NewSettingsManager(ctx, cs, "argocd"), cs)
	server := d.hubURL + "/clusters/" + d.clusterID + "/k8s"
	var cl, err = argoDB.GetCluster(ctx, server)
	for deadline := time.Now().Add(30 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		cl, err = argoDB.GetCluster(ctx, server)
	}
	if err != nil {
		b.Fatal(err)
	}
	rc, err := cl.RawRestConfig()
	if err != nil {
		b.Fatal(err)
	}
	if os.Getenv("ECO_ARGOCD_HTTP1") != "" {
		// As Argo CD's controller with DISABLE_HTTP2=true (client-go
		// then offers only HTTP/1.1): a connection per watch, which
		// the hub hands to a pump.
		rc.NextProtos = []string{"http/1.1"}
	}
	for range b.N {
		var caches []cache.ClusterCache
		var firstSync time.Duration
		open := func(k int) {
			for range k {
				c := cache.NewClusterCache(rc, cache.SetLogr(logr.Discard()))
				t0 := time.Now()
				if err := c.EnsureSynced(); err != nil {
					b.Fatalf("syncing Argo CD's cluster cache through the hub: %v", err)
				}
				firstSync += time.Since(t0)
				caches = append(caches, c)
			}
		}
		warm := n / 2
		open(warm)
		before, err := d.scrapeAfterGCs(ctx)
		if err != nil {
			b.Fatal(err)
		}
		saveProfile(b, "before")
		start := time.Now()
		open(n - warm)
		all := time.Since(start)
		after, err := d.scrapeAfterGCs(ctx) // every watch open, the hub at rest
		if err != nil {
			b.Fatal(err)
		}
		saveProfile(b, "after")
		for _, c := range caches {
			c.Invalidate()
		}
		watches := after.inFlight - before.inFlight
		if watches <= 0 {
			b.Fatalf("no watch open through the hub (in flight %v → %v)", before.inFlight, after.inFlight)
		}
		measured := float64(n - warm)
		mem := (after.heap + after.stack) - (before.heap + before.stack)
		b.ReportMetric(watches/measured, "watches/cluster")
		b.ReportMetric(mem/watches, "hub-B/watch")
		b.ReportMetric((after.heap-before.heap)/watches, "hub-heap-B/watch")
		b.ReportMetric((after.goroutines-before.goroutines)/watches, "hub-goroutines/watch")
		b.ReportMetric(mem/measured, "hub-B/cluster")
		b.ReportMetric(firstSync.Seconds()/float64(n), "s/first-sync")
		b.Logf("%d caches warm, %d more: %v watches in %s; hub live heap %.1f → %.1f MiB, stacks %.1f → %.1f MiB, goroutines %v → %v",
			warm, n-warm, watches, all.Round(time.Millisecond), before.heap/(1<<20), after.heap/(1<<20),
			before.stack/(1<<20), after.stack/(1<<20), before.goroutines, after.goroutines)
	}
}

// saveProfile saves the demo hub's heap and goroutine profiles as
// NAME-heap.prof and NAME-goroutine.prof in a temporary directory when
// ECO_ARGOCD_PROFILE_ADDR is set (the demo then serves them there); see
// what the watches added with go tool pprof -base before-heap.prof
// after-heap.prof.
func saveProfile(b *testing.B, name string) {
	addr := os.Getenv("ECO_ARGOCD_PROFILE_ADDR")
	if addr == "" {
		return
	}
	dir := filepath.Join(os.TempDir(), "eco-argocd-profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"heap", "goroutine"} {
		resp, err := http.Get("http://" + addr + "/" + kind + "?gc=1")
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, name+"-"+kind+".prof")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("profile: %s", path)
	}
}
