// Package clustertest gives Go tests a real local Kubernetes cluster from
// package localcluster: one per test, or one shared by a test package.
package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/eco-project/eco/localcluster"
)

// Start starts a cluster for one test and stops it when the test and its
// subtests end. A cluster that cannot start fails the test with the
// component's own log lines.
func Start(tb testing.TB, cfg localcluster.Config) *localcluster.Cluster {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c, err := localcluster.Start(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("starting local cluster: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("stopping local cluster: %v", err)
		}
	})
	return c
}

// Main runs a test package with one cluster shared by all its tests: call
// it from TestMain. It stores the cluster in *c before running the tests
// and stops it afterwards, whatever the tests did.
func Main(m *testing.M, cfg localcluster.Config, c **localcluster.Cluster) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	cluster, err := localcluster.Start(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting local cluster: %v\n", err)
		os.Exit(1)
	}
	*c = cluster
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping local cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// tbWriter sends log lines to the test's log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}
