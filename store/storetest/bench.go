package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

// BenchClusters is the fleet size the benchmarks run against.
const BenchClusters = 10_000

// Benchmark measures the hot paths of a backend on a store holding
// BenchClusters clusters: listing a page for the UI, recording heartbeats,
// and the per-request credential and token lookups.
func Benchmark(b *testing.B, open OpenFunc) {
	clock := NewClock()
	s := open(b, store.Config{Now: clock.Now})
	start := time.Now()
	Populate(b, s, clock, BenchClusters)
	b.Logf("populated %d clusters in %v", BenchClusters, time.Since(start))
	ctx := b.Context()

	list := func(opts store.ListOptions) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				page, err := s.ListClusters(ctx, opts)
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Clusters) == 0 {
					b.Fatal("empty page")
				}
			}
		}
	}
	b.Run("ListClusters/name/first-page", list(store.ListOptions{Limit: 50}))
	b.Run("ListClusters/name/last-page", list(store.ListOptions{Limit: 50, Offset: BenchClusters - 50}))
	b.Run("ListClusters/created/middle-page", list(store.ListOptions{SortBy: store.SortByCreated, Limit: 50, Offset: BenchClusters / 2}))
	b.Run("ListClusters/state/first-page", list(store.ListOptions{SortBy: store.SortByState, Limit: 50}))
	b.Run("ListClusters/search/10-matches", list(store.ListOptions{Search: "cluster-0123", Limit: 50}))
	b.Run("ListClusters/search/100-matches", list(store.ListOptions{Search: "cluster-012", Limit: 50}))
	b.Run("ListClusters/search/all-match", list(store.ListOptions{Search: "cluster", Limit: 50}))
	b.Run("ListClusters/search/2-characters", list(store.ListOptions{Search: "-0", Limit: 50}))

	page, err := s.ListClusters(ctx, store.ListOptions{Limit: store.MaxPageSize})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, len(page.Clusters))
	for i, c := range page.Clusters {
		ids[i] = c.ID
		if _, err := s.UpdateStatus(ctx, c.ID, store.StatusUpdate{State: store.StateConnected}); err != nil {
			b.Fatal(err)
		}
	}
	heartbeat := store.StatusUpdate{State: store.StateConnected, Heartbeat: true, RTT: 12 * time.Millisecond}
	b.Run("UpdateStatus/heartbeat", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.UpdateStatus(ctx, ids[i%len(ids)], heartbeat); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	})
	b.Run("UpdateStatus/heartbeat-parallel", func(b *testing.B) {
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.UpdateStatus(ctx, ids[next.Add(1)%int64(len(ids))], heartbeat); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	})
	b.Run("ClusterByCredentialHash", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.ClusterByCredentialHash(ctx, Hash(fmt.Sprintf("cluster-%05d", i%BenchClusters))); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	tok, err := s.CreateToken(ctx, store.NewToken{Name: "admin", Role: store.RoleAdmin, Hash: Hash("bench token")})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("TokenByHash+TouchToken", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.TokenByHash(ctx, Hash("bench token")); err != nil {
				b.Fatal(err)
			}
			if err := s.TouchToken(ctx, tok.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}
