// Package chartrepo holds eco's charts and a small HTTP chart repository.
//
// The add-on charts (AddonCharts) are what eco-hub's built-in App Catalog
// repository "eco-addons" serves: eco-monitoring and eco-logging embedded
// here, packaged when the hub starts, and the real metrics-server chart,
// which git does not hold: `go generate` packages it from its Go module
// into builtin/ before the hub is compiled (cmd/eco-addon-charts).
//
// The HTTP repository (Server) serves packaged charts and the index.yaml
// Helm's repo package builds for them, with an ETag, optional basic auth
// and TLS given by the caller: the demo chart (embedded: "shop", with a
// Deployment, Service, ConfigMap, a CRD, hooks, a dependency and a values
// schema) for `make demo` and the tests of the App Catalog and the Helm
// service.
package chartrepo

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"
)

//go:embed all:charts
var charts embed.FS

// Demo returns demo chart name ("shop") from the charts embedded in this
// package, unpackaged.
func Demo(name string) (*chart.Chart, error) {
	root := path.Join("charts", name)
	var files []*archive.BufferedFile
	err := fs.WalkDir(charts, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := charts.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: strings.TrimPrefix(p, root+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("demo chart %q: %w", name, err)
	}
	return loader.LoadFiles(files)
}

// Package writes ch as a chart archive (helm package) into dir after
// setting its version and, when values is not nil, its default values;
// it returns the archive's path.
func Package(ch *chart.Chart, version string, values map[string]any, dir string) (string, error) {
	if version != "" {
		ch.Metadata.Version = version
	}
	if values != nil {
		ch.Values = values
		data, err := yaml.Marshal(values)
		if err != nil {
			return "", err
		}
		for _, f := range ch.Raw {
			if f.Name == chartutil.ValuesfileName {
				f.Data = data
			}
		}
	}
	return chartutil.Save(ch, dir)
}

// Config configures a Server.
type Config struct {
	// Dir holds the packaged charts (*.tgz). Required.
	Dir string
	// Username and Password, when set, are required by basic auth.
	Username, Password string
}

// Server serves Dir as a chart repository. Its index is built by Reindex.
type Server struct {
	cfg Config

	mu    sync.RWMutex
	index []byte // guarded by mu
	etag  string // guarded by mu

	// IndexRequests counts GETs of index.yaml; NotModified those answered
	// 304.
	IndexRequests, NotModified atomic.Int64
}

// New returns a Server with its index built.
func New(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("chartrepo: Config.Dir is required")
	}
	s := &Server{cfg: cfg}
	return s, s.Reindex()
}

// Reindex rebuilds index.yaml from the archives in Dir; the ETag changes
// when the index does.
func (s *Server) Reindex() error {
	ix, err := repo.IndexDirectory(s.cfg.Dir, "")
	if err != nil {
		return fmt.Errorf("chartrepo: indexing %s: %w", s.cfg.Dir, err)
	}
	data, err := stableIndex(ix)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	s.index, s.etag = data, `"`+hex.EncodeToString(sum[:8])+`"`
	s.mu.Unlock()
	return nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Username != "" {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.cfg.Username)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if name == "index.yaml" {
		s.IndexRequests.Add(1)
		s.mu.RLock()
		data, etag := s.index, s.etag
		s.mu.RUnlock()
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.NotModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(data)
		return
	}
	if !strings.HasSuffix(name, ".tgz") || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	f := filepath.Join(s.cfg.Dir, name)
	if _, err := os.Stat(f); err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	http.ServeFile(w, r, f)
}

// MetricsServerModule is the Go module whose zip carries the real
// metrics-server chart (under charts/metrics-server).
const MetricsServerModule = "sigs.k8s.io/metrics-server@v0.8.0"

// MetricsServer loads the real metrics-server chart from the module zip of
// MetricsServerModule, downloaded by `go mod download` (the Go module
// proxy or the module cache): for the demo and tests, which have a Go
// toolchain.
func MetricsServer(ctx context.Context) (*chart.Chart, error) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", MetricsServerModule).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", MetricsServerModule, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download %s: %s %v", MetricsServerModule, mod.Error, err)
	}
	return loader.LoadDir(filepath.Join(mod.Dir, "charts", "metrics-server"))
}

// WriteShopRepository packages into dir the demo chart "shop" at
// versions 1.0.0 and 1.1.0: the repository `make demo` serves beside the
// hub's built-in add-on charts.
func WriteShopRepository(dir string) error {
	for _, version := range []string{"1.0.0", "1.1.0"} {
		ch, err := Demo("shop")
		if err != nil {
			return err
		}
		if _, err := Package(ch, version, nil, dir); err != nil {
			return err
		}
	}
	return nil
}

// WriteDemoRepository packages into dir the demo chart "shop" (versions
// 1.0.0 and 1.1.0), the add-on charts eco-monitoring and eco-logging and,
// if withMetricsServer, the real metrics-server chart: what tests that
// change the add-on charts serve.
func WriteDemoRepository(ctx context.Context, dir string, withMetricsServer bool) error {
	if err := WriteShopRepository(dir); err != nil {
		return err
	}
	for _, c := range []struct{ name, version string }{{"eco-monitoring", ""}, {"eco-logging", ""}} {
		ch, err := Demo(c.name)
		if err != nil {
			return err
		}
		if _, err := Package(ch, c.version, nil, dir); err != nil {
			return err
		}
	}
	if withMetricsServer {
		ch, err := MetricsServer(ctx)
		if err != nil {
			return err
		}
		if _, err := Package(ch, "", nil, dir); err != nil {
			return err
		}
	}
	return nil
}

// stableIndex encodes ix with no times in it and its entries sorted, so
// the same charts always give the same index.yaml (and ETag).
func stableIndex(ix *repo.IndexFile) ([]byte, error) {
	ix.Generated = time.Time{}
	for _, vs := range ix.Entries {
		for _, v := range vs {
			v.Created = time.Time{}
		}
	}
	ix.SortEntries()
	return yaml.Marshal(ix)
}
