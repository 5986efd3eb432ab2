// Command ecoctl is eco's command-line client: it talks to an eco hub's
// API (docs/install.md, docs/ecoctl.md).
package main

import (
	"fmt"
	"os"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	if err := newRoot(os.Stdin, os.Stdout, os.Stderr, os.Getenv).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ecoctl:", err)
		os.Exit(1)
	}
}
