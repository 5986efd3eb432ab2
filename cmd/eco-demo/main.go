// Command eco-demo runs eco's local demo in the foreground: a real local
// Kubernetes cluster (see package localcluster) with eco installed into
// it, until Ctrl-C stops every process it started.
//
// State lives under $ECO_DEMO_DIR (default .eco-demo in the working
// directory), which is wiped at start. There it writes cluster.kubeconfig,
// an admin kubeconfig for the local cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/eco-project/eco/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "eco-demo:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eco-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: eco-demo [flags]\n\nRuns the local demo until Ctrl-C. State goes to $ECO_DEMO_DIR (default .eco-demo).\n\n")
		fs.PrintDefaults()
	}
	defaultDir := os.Getenv("ECO_DEMO_DIR")
	if defaultDir == "" {
		defaultDir = ".eco-demo"
	}
	dir := fs.String("dir", defaultDir, "state directory (wiped at start; overrides $ECO_DEMO_DIR)")
	module := fs.String("kube-module", "tools/kube", "tools/kube module, to build the cluster binaries when they are not cached")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(absDir); err != nil {
		return fmt.Errorf("wiping %s: %w", absDir, err)
	}
	if err := os.MkdirAll(absDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", absDir, err)
	}

	bins, err := localcluster.FindBinaries("")
	if errors.Is(err, localcluster.ErrMissingBinaries) {
		fmt.Fprintln(stdout, "building the local cluster's binaries (once; cached afterwards)")
		bins, err = localcluster.Build(ctx, localcluster.BuildConfig{ModuleDir: *module, Progress: stdout})
	}
	if err != nil {
		return err
	}

	start := time.Now()
	fmt.Fprintln(stdout, "starting a local Kubernetes cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
	cluster, err := localcluster.Start(ctx, localcluster.Config{
		BinDir: bins.Dir,
		Dir:    filepath.Join(absDir, "cluster"),
		Full:   true,
		Name:   "eco-demo",
		Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("starting local cluster: %w", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "stopping the local cluster")
		if err := cluster.Stop(); err != nil {
			logger.Error("stopping local cluster", "err", err)
		}
	}()
	kubeconfig := filepath.Join(absDir, "cluster.kubeconfig")
	if err := copyFile(cluster.AdminKubeconfig, kubeconfig); err != nil {
		return err
	}

	fmt.Fprintf(stdout, `
eco demo is up (%s)
  local cluster:  %s (Kubernetes %s, node %s)
  kubeconfig:     %s
  try:            KUBECONFIG=%s %s get nodes

Ctrl-C stops everything.
`, time.Since(start).Round(100*time.Millisecond), cluster.URL, localcluster.KubernetesVersion, cluster.NodeName,
		kubeconfig, kubeconfig, bins.Path(localcluster.Kubectl))
	<-ctx.Done()
	return nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("reading %s: %w", from, err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", to, err)
	}
	return nil
}
