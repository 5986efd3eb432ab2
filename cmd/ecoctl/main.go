// Command ecoctl is eco's command-line client: it talks to an eco hub's
// API (docs/install.md, docs/ecoctl.md).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	// Ctrl-C ends a watch or a wait for an operation cleanly, saying so.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdin, os.Stdout, os.Stderr, os.Getenv).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ecoctl:", err)
		os.Exit(1)
	}
}
