// Command eco-addon-charts writes the add-on chart archives git does not
// hold into the directory eco-hub embeds (catalog/chartrepo/builtin):
// today the real metrics-server chart, packaged from the Go module
// chartrepo.MetricsServerModule (downloaded with `go mod download`, so it
// needs a Go toolchain and the module proxy or cache). `go generate
// ./catalog/chartrepo` runs it, and make build, make images and make demo
// run that before compiling. The output is deterministic.
//
//	go run ./catalog/chartrepo/cmd/eco-addon-charts -out catalog/chartrepo/builtin
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/eco-project/eco/catalog/chartrepo"
)

func main() {
	out := flag.String("out", "builtin", "`directory` to write the archives to (catalog/chartrepo/builtin, relative to where go generate runs)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	files, err := chartrepo.WriteGenerated(ctx, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "eco-addon-charts:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println("eco-addon-charts: up to date:", f)
	}
}
