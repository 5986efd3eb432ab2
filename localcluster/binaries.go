package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Names of the cached binaries.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kubectl               = "kubectl"
	Kwok                  = "kwok"
)

// allBinaries lists what Build produces, in build order: the small ones
// first so a fresh machine shows progress early.
var allBinaries = []string{Etcd, Kwok, KubeAPIServer, KubeControllerManager, KubeScheduler, Kubectl}

// kwokStages are the Stage files from kwok's module that make a fake node
// Ready (and keep its lease fresh) and move pods through their lifecycle.
var kwokStages = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// stagesDir is the directory under the binary cache holding kwokStages.
const stagesDir = "kwok-stages"

// BuildHint is what to run when binaries are missing.
const BuildHint = "run `make kube` in the eco repository (builds Kubernetes " + KubernetesVersion +
	", etcd " + EtcdVersion + " and kwok " + KwokVersion + " from Go modules: ~10 min cold, seconds when cached)"

// ErrMissingBinaries is returned by FindBinaries when the cache is
// incomplete.
var ErrMissingBinaries = errors.New("local cluster binaries missing")

// DefaultBinDir is the cache directory for this package's versions:
// $XDG_CACHE_HOME/eco/kube/<versions> (or ~/.cache/...).
func DefaultBinDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory: %w", err)
	}
	return filepath.Join(base, "eco", "kube", versionKey), nil
}

// Binaries locates the programs a local cluster runs.
type Binaries struct {
	// Dir holds one executable per name above and the kwok stage files.
	Dir string
}

// Path returns the path of the named binary.
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// FindBinaries checks that dir holds every binary. When one is missing the
// error wraps ErrMissingBinaries and says how to build them.
func FindBinaries(dir string) (Binaries, error) {
	if dir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return Binaries{}, err
		}
		dir = d
	}
	var missing []string
	for _, name := range allBinaries {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	for _, s := range kwokStages {
		if _, err := os.Stat(filepath.Join(dir, stagesDir, filepath.Base(s))); err != nil {
			missing = append(missing, "kwok stage "+filepath.Base(s))
		}
	}
	if len(missing) > 0 {
		return Binaries{}, fmt.Errorf("%w in %s (%s): %s", ErrMissingBinaries, dir, strings.Join(missing, ", "), BuildHint)
	}
	return Binaries{Dir: dir}, nil
}

// BuildConfig configures Build.
type BuildConfig struct {
	// ModuleDir is the tools/kube module of the eco repository. Required.
	ModuleDir string
	// Dir is where binaries go. Empty means DefaultBinDir().
	Dir string
	// Progress receives one line per step and a heartbeat line every
	// 20 s while a long build runs. Nil discards it.
	Progress io.Writer
	// Go is the go command. Empty means "go" from PATH.
	Go string
}

// Build builds every missing binary into the cache. Concurrent callers
// (parallel test packages, make targets) serialise on a lock file, and a
// binary is renamed into place only once complete, so a cache never holds
// half a binary.
func Build(ctx context.Context, cfg BuildConfig) (Binaries, error) {
	if cfg.ModuleDir == "" {
		return Binaries{}, errors.New("building local cluster binaries: ModuleDir is required")
	}
	if cfg.Dir == "" {
		d, err := DefaultBinDir()
		if err != nil {
			return Binaries{}, err
		}
		cfg.Dir = d
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if _, err := exec.LookPath(cfg.Go); err != nil {
		return Binaries{}, fmt.Errorf("building local cluster binaries: the Go toolchain is needed (install Go 1.26 from go.dev/dl): %w", err)
	}
	moduleDir, err := filepath.Abs(cfg.ModuleDir)
	if err != nil {
		return Binaries{}, fmt.Errorf("resolving %s: %w", cfg.ModuleDir, err)
	}
	if _, err := os.Stat(filepath.Join(moduleDir, "go.mod")); err != nil {
		return Binaries{}, fmt.Errorf("building local cluster binaries: %s is not the tools/kube module: %w", moduleDir, err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, stagesDir), 0o755); err != nil {
		return Binaries{}, fmt.Errorf("creating binary cache: %w", err)
	}
	unlock, err := lockDir(ctx, cfg.Dir, cfg.Progress)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()

	b := &builder{cfg: cfg, moduleDir: moduleDir}
	for i, name := range allBinaries {
		if fi, err := os.Stat(filepath.Join(cfg.Dir, name)); err == nil && fi.Mode()&0o111 != 0 {
			fmt.Fprintf(cfg.Progress, "[%d/%d] %s: cached\n", i+1, len(allBinaries), name)
			continue
		}
		start := time.Now()
		fmt.Fprintf(cfg.Progress, "[%d/%d] %s: building (%s)\n", i+1, len(allBinaries), name, coldHint(name))
		if err := b.build(ctx, name); err != nil {
			return Binaries{}, fmt.Errorf("building %s: %w", name, err)
		}
		fmt.Fprintf(cfg.Progress, "[%d/%d] %s: built in %s\n", i+1, len(allBinaries), name, time.Since(start).Round(time.Second))
	}
	if err := b.copyStages(ctx); err != nil {
		return Binaries{}, err
	}
	return FindBinaries(cfg.Dir)
}

func coldHint(name string) string {
	switch name {
	case KubeAPIServer:
		return "~3 min cold"
	case Kwok:
		return "~2 min cold"
	case Etcd:
		return "~30 s cold"
	default:
		return "~1 min cold"
	}
}

type builder struct {
	cfg       BuildConfig
	moduleDir string
}

func (b *builder) build(ctx context.Context, name string) error {
	tmp, err := os.MkdirTemp(b.cfg.Dir, ".build-"+name+"-")
	if err != nil {
		return fmt.Errorf("creating build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, name)
	var args []string
	env := os.Environ()
	switch name {
	case Etcd:
		args = []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out, "./etcd"}
	case Kwok:
		args = []string{"install", "-trimpath", "-ldflags=-s -w", "sigs.k8s.io/kwok/cmd/kwok@" + KwokVersion}
		env = append(env, "GOBIN="+tmp, "GOFLAGS=-mod=mod")
	default:
		minor := strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), ".")[1]
		ldflags := strings.Join([]string{"-s", "-w",
			"-X", "k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
			"-X", "k8s.io/component-base/version.gitMajor=1",
			"-X", "k8s.io/component-base/version.gitMinor=" + minor,
			"-X", "k8s.io/component-base/version.gitTreeState=clean",
			"-X", "k8s.io/client-go/pkg/version.gitVersion=" + KubernetesVersion,
			"-X", "k8s.io/client-go/pkg/version.gitMajor=1",
			"-X", "k8s.io/client-go/pkg/version.gitMinor=" + minor,
		}, " ")
		args = []string{"build", "-trimpath", "-ldflags=" + ldflags, "-o", out, "k8s.io/kubernetes/cmd/" + name}
	}
	cmd := exec.CommandContext(ctx, b.cfg.Go, args...)
	cmd.Dir = b.moduleDir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	done := make(chan struct{})
	defer close(done)
	go b.heartbeat(name, done)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", b.cfg.Go, strings.Join(args, " "), err, tail(stderr.String(), 30))
	}
	return os.Rename(out, filepath.Join(b.cfg.Dir, name))
}

// heartbeat prints a line every 20 s until done is closed, so a cold build
// never looks hung.
func (b *builder) heartbeat(name string, done <-chan struct{}) {
	start := time.Now()
	t := time.NewTicker(20 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fmt.Fprintf(b.cfg.Progress, "      %s: still building (%s)\n", name, time.Since(start).Round(time.Second))
		}
	}
}

// copyStages copies kwok's stage files from its module into the cache.
func (b *builder) copyStages(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, b.cfg.Go, "mod", "download", "-json", "sigs.k8s.io/kwok@"+KwokVersion)
	cmd.Dir = b.moduleDir
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("downloading kwok module for its stages: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("reading kwok module location: %v (%s)", err, out)
	}
	for _, s := range kwokStages {
		data, err := os.ReadFile(filepath.Join(mod.Dir, s))
		if err != nil {
			return fmt.Errorf("reading kwok stage: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.cfg.Dir, stagesDir, filepath.Base(s)), data, 0o644); err != nil {
			return fmt.Errorf("writing kwok stage: %w", err)
		}
	}
	return nil
}

// lockDir takes an exclusive flock on dir/.lock, waiting for ctx.
func lockDir(ctx context.Context, dir string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening cache lock: %w", err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking binary cache: %w", err)
		}
		if !said {
			fmt.Fprintf(progress, "waiting for another build of %s to finish\n", dir)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for binary cache lock: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
