package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAgainstCluster drives a whole install with ecoctl against a real
// local cluster: install --apply (refused until the context is
// confirmed), the agent connecting as status --watch shows, then
// get-credentials and real kubectl through the hub.
func TestAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	cluster := clustertest.Start(t, localcluster.Config{Name: "ops-west"})
	r := newRig(t)
	ctx := t.Context()
	r.ok("admin.yaml", "login", r.hub.URL, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	r.ok("admin.yaml", "clusters", "import", "prod")
	kubectl := cluster.Kubectl(ctx).Path

	// The current context, ops-west, does not look like prod.
	r.fails("admin.yaml", "does not look like cluster prod", "install", "prod", "--apply", "--kubeconfig="+cluster.AdminKubeconfig, "--kubectl="+kubectl)
	out := r.ok("admin.yaml", "install", "prod", "--apply", "--kubeconfig="+cluster.AdminKubeconfig, "--kubectl="+kubectl, "--context=ops-west")
	if !strings.Contains(out, "deployment.apps/eco-agent created") {
		t.Fatalf("install --apply printed:\n%s", out)
	}

	// status --watch from NotInstalled to Connected.
	watchOut := &lockedBuffer{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		root := newRoot(strings.NewReader(""), watchOut, watchOut, func(string) string { return "" })
		root.SetArgs([]string{"--config=" + filepath.Join(r.dir, "admin.yaml"), "status", "prod", "--watch", "--interval=100ms"})
		watchDone <- root.ExecuteContext(watchCtx)
	}()
	waitFor(t, watchOut, "NotInstalled")

	// The agent, given what its pod would have (the applied Secret, real
	// ServiceAccount tokens).
	id := strings.Fields(strings.Split(r.ok("admin.yaml", "clusters", "get", "prod"), "\n")[1])[1]
	setup, err := localeco.Install(ctx, r.hub, cluster, id, filepath.Join(r.dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := setup.AgentConfig()
	cfg.CheckInterval = time.Second
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Run(agentCtx, cfg) }()
	defer func() {
		stopAgent()
		<-agentDone
	}()
	waitFor(t, watchOut, "Connected")
	stopWatch()
	if err := <-watchDone; err != nil {
		t.Errorf("status --watch: %v", err)
	}
	if w := watchOut.String(); strings.Count(w, "STATE") != 1 || strings.Index(w, "NotInstalled") > strings.Index(w, "Connected") {
		t.Errorf("status --watch printed:\n%s", w)
	}

	// Connected, the hub knows the cluster's fingerprint: --apply checks it
	// and needs no confirmation.
	if out := r.ok("admin.yaml", "install", "prod", "--apply", "--kubeconfig="+cluster.AdminKubeconfig, "--kubectl="+kubectl); !strings.Contains(out, "unchanged") {
		t.Errorf("second install --apply printed:\n%s", out)
	}

	// Another cluster behind a context whose name looks right: the
	// fingerprint tells them apart, and --apply refuses.
	impostor := clustertest.Start(t, localcluster.Config{Name: "prod-impostor"})
	r.fails("admin.yaml", "context prod-impostor is not cluster prod", "install", "prod", "--apply", "--kubeconfig="+impostor.AdminKubeconfig, "--kubectl="+kubectl)
	r.fails("admin.yaml", "context prod-impostor is not cluster prod", "install", "prod", "--apply", "--kubeconfig="+impostor.AdminKubeconfig, "--kubectl="+kubectl, "--context=prod-impostor")

	// get-credentials, then real kubectl through the hub and the tunnel.
	kc := filepath.Join(r.dir, "through-hub.kubeconfig")
	r.ok("admin.yaml", "get-credentials", "prod", "--kubeconfig="+kc)
	get := exec.CommandContext(ctx, kubectl, "--kubeconfig="+kc, "get", "namespace", "kube-system", "-o", "name")
	got, err := get.CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "namespace/kube-system" {
		t.Errorf("kubectl through the hub: %v\n%s", err, got)
	}
}

func waitFor(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after 60s in:\n%s", s, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
