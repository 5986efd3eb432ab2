package argocd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v3/util/db"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/cache"
	"github.com/go-logr/logr"
)

// hubStats are the hub process's figures from its /metrics.
type hubStats struct {
	heap, stack, goroutines, inFlight float64
	lastGC                            time.Time
}

// scrapeAfterGC waits until the hub's Go runtime has collected garbage
// after since (it forces a collection at least every 2 minutes) and
// returns the figures then: the heap without the garbage of the LISTs.
func (d *demo) scrapeAfterGC(ctx context.Context, since time.Time) (hubStats, error) {
	deadline := time.Now().Add(150 * time.Second)
	for {
		s, err := d.scrape(ctx)
		if err != nil || s.lastGC.After(since) {
			return s, err
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("no garbage collection in the hub since %s", since)
		}
		time.Sleep(time.Second)
	}
}

// scrape reads the hub's /metrics (as the admin) after asking nothing of
// it for a moment, so the figures are at rest.
func (d *demo) scrape(ctx context.Context) (hubStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.hubURL+"/metrics", nil)
	if err != nil {
		return hubStats{}, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(d.caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
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
		case "go_memstats_heap_inuse_bytes":
			s.heap = v
		case "go_memstats_stack_inuse_bytes":
			s.stack = v
		case "go_goroutines":
			s.goroutines = v
		case "go_memstats_last_gc_time_seconds":
			s.lastGC = time.Unix(0, int64(v*1e9))
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
// the hub's heap+stack and goroutines per open watch and per cached
// cluster, and the time to first sync. ECO_ARGOCD_LOAD_CACHES caches run
// at once (default 2: they all reach the one demo cluster, where Argo
// CD's identity may hold eco-hub --max-watches-per-user watches, 150 by
// default).
func BenchmarkClusterCacheThroughHub(b *testing.B) {
	if shared == nil {
		b.Skip("no local cluster binaries (make kube)")
	}
	d := shared
	n := 2
	if v, err := strconv.Atoi(os.Getenv("ECO_ARGOCD_LOAD_CACHES")); err == nil && v > 0 {
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
	for range b.N {
		before, err := d.scrapeAfterGC(ctx, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		var caches []cache.ClusterCache
		var firstSync time.Duration
		start := time.Now()
		for range n {
			c := cache.NewClusterCache(rc, cache.SetLogr(logr.Discard()))
			t0 := time.Now()
			if err := c.EnsureSynced(); err != nil {
				b.Fatalf("syncing Argo CD's cluster cache through the hub: %v", err)
			}
			firstSync += time.Since(t0)
			caches = append(caches, c)
		}
		all := time.Since(start)
		after, err := d.scrapeAfterGC(ctx, time.Now()) // every watch open, the hub at rest
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range caches {
			c.Invalidate()
		}
		watches := after.inFlight - before.inFlight
		if watches <= 0 {
			b.Fatalf("no watch open through the hub (in flight %v → %v)", before.inFlight, after.inFlight)
		}
		mem := (after.heap + after.stack) - (before.heap + before.stack)
		b.ReportMetric(watches/float64(n), "watches/cluster")
		b.ReportMetric(mem/watches, "hub-B/watch")
		b.ReportMetric((after.goroutines-before.goroutines)/watches, "hub-goroutines/watch")
		b.ReportMetric(mem/float64(n), "hub-B/cluster")
		b.ReportMetric(firstSync.Seconds()/float64(n), "s/first-sync")
		b.Logf("%d caches, %v watches, %s for all; hub heap+stack %.1f → %.1f MiB, goroutines %v → %v",
			n, watches, all.Round(time.Millisecond), (before.heap+before.stack)/(1<<20), (after.heap+after.stack)/(1<<20),
			before.goroutines, after.goroutines)
	}
}
