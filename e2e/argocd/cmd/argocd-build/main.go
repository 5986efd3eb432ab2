// Command argocd-build builds Argo CD's own binary (argo-cd v3.2.11's
// github.com/argoproj/argo-cd/v3/cmd, every component in one) from this
// module and caches it by version, printing progress: make argocd runs it.
// It prints the binary's path.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/eco-project/eco/e2e/argocd"
)

func main() {
	dir := flag.String("dir", "", "where to cache the binary (default ~/.cache/eco/argocd/VERSION)")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-build:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if dir == "" {
		d, err := argocd.DefaultBinDir()
		if err != nil {
			return err
		}
		dir = d
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	bin, err := argocd.Build(ctx, wd, dir, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(bin)
	return nil
}
