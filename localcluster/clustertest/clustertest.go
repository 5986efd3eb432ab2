// Package clustertest gives Go tests a real local Kubernetes cluster from
// package localcluster: one per test, or one shared by a test package.
package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

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

// PortForwardRoundTrip serves a line on the cluster's port-forward target,
// runs real kubectl port-forward to pod with kubeconfig, and reads the
// line through the forwarded port.
func PortForwardRoundTrip(t *testing.T, c *localcluster.Cluster, kubeconfig, ns, pod string) {
	t.Helper()
	ln, err := net.Listen("tcp", c.PortForwardAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(conn, "hello from pod %s\n", pod)
			conn.Close()
		}
	}()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	localPort := local.Addr().(*net.TCPAddr).Port
	local.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin.Path(localcluster.Kubectl), "-n", ns, "port-forward", "pod/"+pod, fmt.Sprintf("%d:8080", localPort))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	if !bufio.NewScanner(stdout).Scan() { // "Forwarding from ..."
		t.Fatal("kubectl port-forward printed nothing")
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", localPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "hello from pod "+pod+"\n" {
		t.Fatalf("read %q, %v through port-forward", line, err)
	}
}
