// Command eco-localcluster builds and runs the real local Kubernetes
// cluster that eco's tests and demo use.
//
//	eco-localcluster build [--module tools/kube] [--bin-dir DIR]
//	eco-localcluster run   [--dir DIR] [--light] [--kubeconfig PATH]
//
// build compiles kube-apiserver, kube-controller-manager, kube-scheduler,
// kubectl, etcd and kwok from Go modules into a cache directory keyed by
// their versions, printing progress; cached binaries are skipped. run
// starts a cluster, writes an admin kubeconfig and waits for Ctrl-C.
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
	"syscall"

	"github.com/eco-project/eco/localcluster"
)

const usage = `usage: eco-localcluster build|run [flags]

  build   build the cluster binaries into the version-keyed cache
  run     start a local cluster and wait for Ctrl-C

Run "eco-localcluster COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "eco-localcluster:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "build":
		return build(ctx, args[1:], stdout, stderr)
	case "run":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func build(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", "tools/kube", "directory of the tools/kube Go module")
	binDir := fs.String("bin-dir", "", "binary cache directory (default: the user cache dir's eco/kube/<versions>)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := localcluster.Build(ctx, localcluster.BuildConfig{ModuleDir: *module, Dir: *binDir, Progress: stdout})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "binaries ready in %s\n", b.Dir)
	return nil
}

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "state directory, kept after exit (default: a temporary directory, removed)")
	binDir := fs.String("bin-dir", "", "binary cache directory (default: the user cache dir's eco/kube/<versions>)")
	light := fs.Bool("light", false, "run etcd and kube-apiserver only")
	kubeconfig := fs.String("kubeconfig", "", "also copy the admin kubeconfig to this path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	c, err := localcluster.Start(ctx, localcluster.Config{Dir: *dir, BinDir: *binDir, Full: !*light, Logger: logger})
	if err != nil {
		return err
	}
	defer c.Stop()
	path := c.AdminKubeconfig
	if *kubeconfig != "" {
		data, err := os.ReadFile(c.AdminKubeconfig)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*kubeconfig, data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", *kubeconfig, err)
		}
		path = *kubeconfig
	}
	fmt.Fprintf(stdout, "cluster %s is up at %s\n  export KUBECONFIG=%s\n  kubectl: %s\nCtrl-C stops it.\n",
		c.Name, c.URL, path, c.Bin.Path(localcluster.Kubectl))
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return c.Stop()
}
