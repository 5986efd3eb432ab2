package chartrepo_test

import (
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/engine"

	"github.com/eco-project/eco/catalog/chartrepo"
)

// TestDemoChartsRender: every embedded chart and the real metrics-server
// chart load, validate their default values and render with Helm's
// engine.
func TestDemoChartsRender(t *testing.T) {
	for _, name := range []string{"shop", "eco-monitoring", "eco-logging", "metrics-server"} {
		t.Run(name, func(t *testing.T) {
			ch, err := chartrepo.Demo(name)
			if name == "metrics-server" {
				ch, err = chartrepo.MetricsServer(t.Context())
			}
			if err != nil {
				t.Fatal(err)
			}
			vals, err := chartutil.ToRenderValues(ch, map[string]any{}, common.ReleaseOptions{Name: "r", Namespace: "ns", IsInstall: true}, common.DefaultCapabilities)
			if err != nil {
				t.Fatal(err)
			}
			out, err := engine.Render(ch, vals)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) == 0 {
				t.Fatal("rendered nothing")
			}
			workloads := 0
			for _, text := range out {
				if strings.Contains(text, "kind: Deployment") || strings.Contains(text, "kind: DaemonSet") {
					workloads++
				}
			}
			if workloads == 0 {
				t.Fatal("no workload rendered")
			}
		})
	}
}
