package argocd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Version is the Argo CD release this module pins (go.mod) and builds.
const Version = "v3.2.11"

// DefaultBinDir returns where Build caches Argo CD's binary:
// $XDG_CACHE_HOME/eco/argocd/<Version> (~/.cache/eco/argocd/v3.2.11).
func DefaultBinDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory: %w", err)
	}
	return filepath.Join(base, "eco", "argocd", Version), nil
}

// BinaryName is the file Build writes in its directory: Argo CD's one
// binary, whose role ARGOCD_BINARY_NAME chooses.
const BinaryName = "argocd"

// Build builds Argo CD's binary from this module (moduleDir, the directory
// of this go.mod) into dir, unless it is there already, and returns its
// path. It reports progress to progress every 20 s (nil: none). A cold
// build takes minutes; the Go build cache makes a rebuild quick.
func Build(ctx context.Context, moduleDir, dir string, progress io.Writer) (string, error) {
	bin := filepath.Join(dir, BinaryName)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if progress == nil {
		progress = io.Discard
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "github.com/argoproj/argo-cd/v3/cmd")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = progress, &stderr
	start := time.Now()
	fmt.Fprintf(progress, "building Argo CD %s into %s (cold: several minutes)\n", Version, dir)
	done := make(chan struct{})
	ticked := make(chan struct{})
	go func() { // owned: ends when the build does
		defer close(ticked)
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "  argocd: still building (%s)\n", time.Since(start).Round(time.Second))
			}
		}
	}()
	err := cmd.Run()
	close(done)
	<-ticked
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building Argo CD: %w\n%s", err, stderr.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("installing the Argo CD binary: %w", err)
	}
	fmt.Fprintf(progress, "  argocd: built in %s\n", time.Since(start).Round(time.Second))
	return bin, nil
}

// limitedBuffer keeps the last 64 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 64<<10 {
		l.b = l.b[len(l.b)-64<<10:]
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// errNoBinary is returned when the binary is needed but not cached.
var errNoBinary = errors.New("the Argo CD binary is not built: run make argocd")
