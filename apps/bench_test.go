package apps_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/eco-project/eco/apps"
)

// BenchmarkInstall is the hub's cost of one install through the tunnel
// onto the real local cluster (the demo chart: 8 objects, a CRD, two
// hooks, a dependency), then its uninstall: wall time per install and the
// hub process's allocations (hub, tunnel, agent and Helm share it here).
func BenchmarkInstall(b *testing.B) {
	w := newWorldB(b)
	chart := packageChartB(b, "shop")
	base := "/api/v1/clusters/" + w.id + "/releases"
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var installTime time.Duration
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("bench-%d", i)
		i++
		var op apps.OperationJSON
		start := time.Now()
		if code, body := w.call("POST", base, "", map[string]any{"namespace": "bench", "name": name, "chart": map[string]any{"archive": chart}, "values": "cache: {enabled: false}\n"}, &op); code != 200 {
			b.Fatalf("install: %d %s", code, body)
		}
		if done := w.waitOperation(op.ID, time.Minute); done.State != "succeeded" {
			b.Fatalf("install: %s %s", done.State, done.Message)
		}
		installTime += time.Since(start)
		b.StopTimer()
		w.call("DELETE", base+"/bench/"+name, "", nil, &op)
		w.waitOperation(op.ID, time.Minute)
		b.StartTimer()
	}
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(installTime.Milliseconds())/float64(i), "ms/install")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(i)/1e6, "MB-alloc/install+uninstall")
}
