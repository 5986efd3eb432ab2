// Command ecobench runs eco's side-by-side benchmark on loopback and prints
// markdown tables of medians; see package bench.
//
//	ecobench [-quick] [-rounds N] [-targets a,b] [-out results.json] [-real]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/eco-project/eco/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		if err := bench.RunChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "ecobench child:", err)
			os.Exit(1)
		}
		return
	}
	var o bench.Options
	var targets, idle string
	var real bool
	flag.BoolVar(&o.Quick, "quick", false, "short smoke run (under 2 minutes)")
	flag.IntVar(&o.Rounds, "rounds", 0, "interleaved rounds (default 3, 1 with -quick)")
	flag.StringVar(&targets, "targets", "", "comma-separated targets (default all: "+strings.Join(bench.AllTargets, ",")+")")
	flag.StringVar(&idle, "idle", "", "comma-separated idle tunnel counts (default 1,1000,10000; 1,1000 with -quick)")
	var figures string
	flag.StringVar(&figures, "figures", "", "comma-separated load figures (default all: small1,small64,bulk,parallel,watch,watchmem,hol)")
	flag.BoolVar(&o.SkipIdle, "skip-idle", false, "skip the idle-tunnel figures")
	flag.BoolVar(&o.SkipReconnect, "skip-reconnect", false, "skip the hub-restart figures")
	flag.BoolVar(&real, "real", false, "also run the real-path table against a local Kubernetes (localcluster)")
	flag.StringVar(&o.Out, "out", "bench/results.json", "JSON results file (empty: none)")
	flag.Parse()
	if targets != "" {
		o.Targets = strings.Split(targets, ",")
	}
	if figures != "" {
		o.Figures = strings.Split(figures, ",")
	}
	if idle != "" {
		for _, s := range strings.Split(idle, ",") {
			var n int
			fmt.Sscan(s, &n)
			o.IdleCounts = append(o.IdleCounts, n)
		}
	}
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if err == nil && real {
		res.Real, err = bench.RunReal(ctx, bench.RealOptions{Quick: o.Quick, Log: os.Stderr})
		if err == nil && o.Out != "" {
			err = res.Write(o.Out)
		}
	}
	if res != nil {
		res.WriteMarkdown(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ecobench:", err)
		os.Exit(1)
	}
}
