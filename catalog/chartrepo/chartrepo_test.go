package chartrepo_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/addons"
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

// TestGeneratedMetricsServer: the generator's output (what go generate
// writes into builtin/) is the real metrics-server chart at the version
// the metrics-server add-on pins, byte for byte the same on every run,
// and replaces an archive of another version.
func TestGeneratedMetricsServer(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "metrics-server-3.11.0.tgz")
	os.WriteFile(stale, []byte("an older version"), 0o644)
	files, err := chartrepo.WriteGenerated(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	pinned := ""
	for _, a := range addons.Defaults(chartrepo.AddonRepository) {
		if a.Chart.Name == chartrepo.MetricsServerChart {
			pinned = a.Chart.Version
		}
	}
	want := filepath.Join(dir, "metrics-server-"+pinned+".tgz")
	if pinned != "3.12.2" || len(files) != 1 || files[0] != want {
		t.Fatalf("wrote %v, want %s (the add-on pins %q)", files, want, pinned)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("the archive of another version is still there: %v", err)
	}
	ch, err := loader.LoadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Name != "metrics-server" || ch.Metadata.Version != pinned || len(ch.Templates) == 0 {
		t.Fatalf("loaded %s %s with %d templates", ch.Metadata.Name, ch.Metadata.Version, len(ch.Templates))
	}
	first, _ := os.ReadFile(want)
	fixedTimes(t, first)
	os.Remove(want)
	if _, err := chartrepo.WriteGenerated(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(want); !bytes.Equal(first, again) {
		t.Fatal("the generator's output differs from one run to the next")
	}
}

// TestAddonCharts: the built-in repository is a valid file system with an
// index naming every archive by its digest, the same bytes every time;
// without the generated charts it names what is missing; a generated
// archive under a wrong name is refused.
func TestAddonCharts(t *testing.T) {
	charts, missing, err := chartrepo.AddonCharts(fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(charts, "index.yaml", "eco-monitoring-0.1.0.tgz", "eco-logging-0.1.0.tgz"); err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || !strings.Contains(missing["metrics-server"], "go generate") {
		t.Fatalf("missing %v", missing)
	}
	data, _ := fs.ReadFile(charts, "index.yaml")
	ix := &repo.IndexFile{}
	if err := yaml.Unmarshal(data, ix); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eco-monitoring", "eco-logging"} {
		cv, err := ix.Get(name, "0.1.0")
		if err != nil {
			t.Fatal(err)
		}
		archive, err := fs.ReadFile(charts, cv.URLs[0])
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(archive); cv.Digest != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: digest %s in the index, not the archive's", name, cv.Digest)
		}
		fixedTimes(t, archive)
	}
	again, _, err := chartrepo.AddonCharts(fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.yaml", "eco-monitoring-0.1.0.tgz", "eco-logging-0.1.0.tgz"} {
		a, _ := fs.ReadFile(charts, f)
		b, _ := fs.ReadFile(again, f)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs from one start to the next", f)
		}
	}

	logging, _ := fs.ReadFile(charts, "eco-logging-0.1.0.tgz")
	if _, _, err := chartrepo.AddonCharts(fstest.MapFS{"metrics-server-3.12.2.tgz": {Data: logging}}); err == nil || !strings.Contains(err.Error(), "want the file named eco-logging-0.1.0.tgz") {
		t.Fatalf("a misnamed archive: %v", err)
	}
}

// fixedTimes checks that every file of a chart archive has the same
// fixed time, not the time it was packaged (which would change the bytes
// from one second to the next).
func fixedTimes(t *testing.T, archive []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	n := 0
	for ; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("%s's time is %s", h.Name, h.ModTime)
		}
	}
	if n == 0 {
		t.Fatal("an empty archive")
	}
}
