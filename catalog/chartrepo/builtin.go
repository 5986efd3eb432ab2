package chartrepo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

//go:generate go run ./cmd/eco-addon-charts -out builtin

// AddonRepository is the name of the chart repository built into
// eco-hub that holds the managed add-ons' charts (AddonCharts), and the
// default of eco-hub's --addon-repository.
const AddonRepository = "eco-addons"

// EmbeddedAddonCharts are the add-on charts embedded in this package's
// source (charts/), packaged when the hub starts.
var EmbeddedAddonCharts = []string{"eco-monitoring", "eco-logging"}

// GeneratedAddonCharts are the add-on charts git does not hold: `go
// generate ./catalog/chartrepo` packages them into builtin/ (WriteGenerated)
// before eco-hub is compiled.
var GeneratedAddonCharts = []string{MetricsServerChart}

// MetricsServerChart is the name of the real metrics-server chart.
const MetricsServerChart = "metrics-server"

// MissingGenerated explains a generated chart a binary lacks.
const MissingGenerated = "this eco-hub was built without it: it is generated at build time (go generate ./catalog/chartrepo, which make build and make images run) from the Go module " + MetricsServerModule

// archiveTime is every file's time in the archives this package writes
// for the built-in repository, so the same chart gives the same bytes.
var archiveTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

//go:embed builtin
var generated embed.FS

// Generated returns the chart archives `go generate` wrote into
// builtin/ when this binary was compiled: *.tgz at its root (none in a
// binary built without it).
func Generated() fs.FS {
	sub, err := fs.Sub(generated, "builtin")
	if err != nil {
		panic(err) // "builtin" is a valid path
	}
	return sub
}

// AddonCharts returns the managed add-ons' chart repository as the hub
// serves it built in: index.yaml and the archives it names, in memory.
// The charts in EmbeddedAddonCharts are packaged from this package's
// source; the archives (*.tgz) at gen's root are added as they are (gen is
// Generated() in eco-hub). missing names each chart of
// GeneratedAddonCharts gen lacks, with why. The same inputs give the same
// bytes.
func AddonCharts(gen fs.FS) (charts fs.FS, missing map[string]string, err error) {
	files := memFS{}
	ix := repo.NewIndexFile()
	add := func(name string, data []byte) error {
		ch, err := loader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("chartrepo: %s: %w", name, err)
		}
		if want := ch.Metadata.Name + "-" + ch.Metadata.Version + ".tgz"; name != want {
			return fmt.Errorf("chartrepo: %s holds chart %s %s (want the file named %s)", name, ch.Metadata.Name, ch.Metadata.Version, want)
		}
		if _, dup := files[name]; dup {
			return fmt.Errorf("chartrepo: %s twice", name)
		}
		sum := sha256.Sum256(data)
		if err := ix.MustAdd(ch.Metadata, name, "", hex.EncodeToString(sum[:])); err != nil {
			return fmt.Errorf("chartrepo: %s: %w", name, err)
		}
		files[name] = data
		return nil
	}
	for _, name := range EmbeddedAddonCharts {
		ch, err := Demo(name)
		if err != nil {
			return nil, nil, err
		}
		data, err := Archive(ch)
		if err != nil {
			return nil, nil, err
		}
		if err := add(ch.Metadata.Name+"-"+ch.Metadata.Version+".tgz", data); err != nil {
			return nil, nil, err
		}
	}
	archives, err := fs.Glob(gen, "*.tgz")
	if err != nil {
		return nil, nil, fmt.Errorf("chartrepo: generated charts: %w", err)
	}
	for _, name := range archives {
		data, err := fs.ReadFile(gen, name)
		if err != nil {
			return nil, nil, fmt.Errorf("chartrepo: generated charts: %w", err)
		}
		if err := add(name, data); err != nil {
			return nil, nil, err
		}
	}
	missing = map[string]string{}
	for _, name := range GeneratedAddonCharts {
		if len(ix.Entries[name]) == 0 {
			missing[name] = MissingGenerated
		}
	}
	data, err := stableIndex(ix)
	if err != nil {
		return nil, nil, err
	}
	files["index.yaml"] = data
	return files, missing, nil
}

// Archive packages ch as helm package does, into memory, after fixing
// every file time of ch (archiveTime): the same chart gives the same
// bytes.
func Archive(ch *chart.Chart) ([]byte, error) {
	setTimes(ch)
	dir, err := os.MkdirTemp("", "eco-chart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file, err := chartutil.Save(ch, dir)
	if err != nil {
		return nil, fmt.Errorf("chartrepo: packaging %s: %w", ch.Name(), err)
	}
	return os.ReadFile(file)
}

// setTimes sets every file time of ch and its dependencies to
// archiveTime.
func setTimes(ch *chart.Chart) {
	ch.ModTime, ch.SchemaModTime = archiveTime, archiveTime
	if ch.Lock != nil {
		ch.Lock.Generated = archiveTime
	}
	for _, f := range ch.Raw {
		f.ModTime = archiveTime
	}
	for _, f := range ch.Templates {
		f.ModTime = archiveTime
	}
	for _, f := range ch.Files {
		f.ModTime = archiveTime
	}
	for _, d := range ch.Dependencies() {
		setTimes(d)
	}
}

// WriteGenerated writes into dir the archives of GeneratedAddonCharts
// (the real metrics-server chart from MetricsServerModule, by `go mod
// download`) and removes older archives of those charts; a file whose
// bytes did not change is left alone. It returns the files written or
// kept. cmd/eco-addon-charts (go generate) runs it.
func WriteGenerated(ctx context.Context, dir string) ([]string, error) {
	ch, err := MetricsServer(ctx)
	if err != nil {
		return nil, err
	}
	data, err := Archive(ch)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	name := ch.Metadata.Name + "-" + ch.Metadata.Version + ".tgz"
	old, _ := filepath.Glob(filepath.Join(dir, ch.Metadata.Name+"-*.tgz"))
	for _, f := range old {
		if filepath.Base(f) != name {
			if err := os.Remove(f); err != nil {
				return nil, err
			}
		}
	}
	out := filepath.Join(dir, name)
	if cur, err := os.ReadFile(out); err == nil && bytes.Equal(cur, data) {
		return []string{out}, nil
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return nil, err
	}
	return []string{out}, os.Rename(tmp, out)
}

// memFS is a read-only in-memory file system of files at its root (a
// chart repository's index.yaml and archives).
type memFS map[string][]byte

var (
	_ fs.ReadFileFS = memFS{}
	_ fs.ReadDirFS  = memFS{}
)

func (m memFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		entries, _ := m.ReadDir(".")
		return &memDir{entries: entries}, nil
	}
	data, ok := m[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{Reader: bytes.NewReader(data), info: memInfo{name: name, size: int64(len(data))}}, nil
}

func (m memFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	data, ok := m[name]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.Clone(data), nil
}

func (m memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		if !fs.ValidPath(name) {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
		}
		if _, ok := m[name]; ok {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
		}
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	out := make([]fs.DirEntry, 0, len(m))
	for n, data := range m {
		out = append(out, fs.FileInfoToDirEntry(memInfo{name: n, size: int64(len(data))}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// memFile is an open file of a memFS: it seeks, as http.FS needs.
type memFile struct {
	*bytes.Reader
	info memInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

// memDir is a memFS's root, open.
type memDir struct {
	entries []fs.DirEntry
	off     int
}

func (d *memDir) Stat() (fs.FileInfo, error) { return memInfo{name: ".", dir: true}, nil }
func (d *memDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: errors.New("is a directory")}
}
func (d *memDir) Close() error { return nil }

func (d *memDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.off += len(rest)
	return rest, nil
}

// memInfo describes a memFS file (or its root).
type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return path.Base(i.name) }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i memInfo) ModTime() time.Time { return archiveTime }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
