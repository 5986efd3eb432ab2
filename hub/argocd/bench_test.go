package argocd_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// BenchmarkRegister1000 registers 1,000 clusters that have connected once
// into one Argo CD namespace of a real local cluster, from the hub's
// start (the registrar's first resync): the target is ≤ 10 s. It reports
// the wall time for all of them, and the registrar's heap per registered
// cluster.
func BenchmarkRegister1000(b *testing.B) {
	if cluster == nil {
		b.Skip("ECO_SKIP_CLUSTER is set")
	}
	const n = 1000
	for range b.N {
		ctx := context.Background()
		dir := b.TempDir()
		h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(dir, "hub")})
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			hash := make([]byte, 32)
			rand.Read(hash)
			c, err := h.Store().CreateCluster(ctx, store.NewCluster{Name: fmt.Sprintf("c%04d", i), Provider: store.ProviderGeneric, AgentCredentialHash: hash})
			if err != nil {
				b.Fatal(err)
			}
			if err := h.Store().PinFingerprint(ctx, c.ID, fmt.Sprintf("fp-%d", i)); err != nil {
				b.Fatal(err)
			}
		}
		cs, err := cluster.Clientset()
		if err != nil {
			b.Fatal(err)
		}
		ns := fmt.Sprintf("argocd-bench-%d", time.Now().UnixNano())
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		reg, err := argocd.New(argocd.Config{
			Hub: h.Hub, CAPEM: h.CAPEM, Resync: time.Hour, Workers: 8,
			Instances: []argocd.Instance{{Kubeconfig: cluster.AdminKubeconfig, Namespace: ns}},
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.ResetTimer()
		start := time.Now()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- reg.Run(rctx) }()
		for {
			list, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: argocd.LabelManagedBy + "=" + argocd.ManagedBy})
			if err != nil {
				b.Fatal(err)
			}
			if len(list.Items) == n {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("%d of %d registered after 5 min", len(list.Items), n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		took := time.Since(start)
		b.StopTimer()
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(took.Seconds(), "s/1000-clusters")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/n, "heap-B/cluster")
		cancel()
		<-done
		h.Close()
		cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
}
