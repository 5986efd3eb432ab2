package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hubclient"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// connect imports a real local cluster as name, installs its agent as
// the install YAML would (localeco.Install) and runs it in-process until
// the returned stop; it waits for the cluster to be Connected.
func (r *rig) connect(name string, cluster *localcluster.Cluster) (id string, stop func()) {
	r.t.Helper()
	ctx := r.t.Context()
	c, err := r.hub.Import(ctx, name)
	if err != nil {
		r.t.Fatal(err)
	}
	setup, err := localeco.Install(ctx, r.hub, cluster, c.ID, filepath.Join(r.dir, "agent-"+name))
	if err != nil {
		r.t.Fatal(err)
	}
	cfg := setup.AgentConfig()
	cfg.CheckInterval = time.Second
	cfg.BackoffMax = time.Second
	agentCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(agentCtx, cfg) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	r.t.Cleanup(stop)
	if _, err := r.hub.WaitState(ctx, c.ID, store.StateConnected, 30*time.Second); err != nil {
		r.t.Fatal(err)
	}
	return c.ID, stop
}

// release reads a release with ecoctl apps get -o json.
func (r *rig) release(config, cluster, rel string) hubclient.ReleaseDetails {
	r.t.Helper()
	var d hubclient.ReleaseDetails
	if err := json.Unmarshal([]byte(r.ok(config, "apps", "get", cluster, rel, "-o", "json")), &d); err != nil {
		r.t.Fatal(err)
	}
	return d
}

var succeeded = regexp.MustCompile(`(?m)^operation (op-[a-z0-9]+) succeeded: (.*)$`)

// TestAppsOnCluster drives Helm releases with ecoctl against a real local
// cluster connected through its agent, charts from a served repository
// in the App Catalog: install, list, get, upgrade (a preview first),
// history, rollback, uninstall, each waited for with Helm's log on stderr;
// --no-wait and operations get --watch; a failed operation exits with
// Helm's error; a viewer refused; a second operation on a release busy
// with one is 409; a cluster ECO is not connected to says so.
func TestAppsOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	cluster := clustertest.Start(t, localcluster.Config{Name: "apps-ecoctl"})
	r, _ := newFeaturesRig(t, nil)
	url, ca := r.serveCharts("", "")
	r.ok("admin.yaml", "catalog", "repos", "add", "demo", url, "--ca-file="+ca, "--wait")
	id, stopAgent := r.connect("prod", cluster)

	// Install: values from two files (the last wins) and --set.
	base := r.write("base.yaml", "replicaCount: 1\ngreeting: from base\ncache:\n  size: 32\n")
	over := r.write("over.yaml", "greeting: from over\n")
	stdout, stderr, err := r.runSplit("admin.yaml", "", "apps", "install", "prod", "demo/shop", "--name=web", "-n", "shop", "--version=1.0.0",
		"-f", base, "-f", over, "--set", "replicaCount=3,image.tag=2.4.2")
	if err != nil {
		t.Fatalf("apps install: %v\n%s%s", err, stdout, stderr)
	}
	m := succeeded.FindStringSubmatch(stdout)
	if m == nil || !strings.Contains(m[2], "installed shop-1.0.0 revision 1") {
		t.Errorf("apps install printed:\n%s", stdout)
	}
	// Helm's log, streamed to stderr.
	if !strings.Contains(stderr, "install of release shop/web in cluster "+id) || !strings.Contains(stderr, "done: installed shop-1.0.0") {
		t.Errorf("apps install's stderr:\n%s", stderr)
	}

	if out := r.ok("admin.yaml", "__complete", "apps", "history", "prod", "shop/"); !strings.Contains(out, "shop/web\tshop-1.0.0") {
		t.Errorf("completing a release: %q", out)
	}
	if out := r.ok("admin.yaml", "apps", "list", "prod", "-n", "shop"); !grepRow(out, "web", "shop", "1", "deployed", "shop-1.0.0", "2.4.1") {
		t.Errorf("apps list -n shop:\n%s", out)
	}
	if out := r.ok("admin.yaml", "apps", "list", "prod"); strings.Contains(out, "web") {
		t.Errorf("apps list (namespace default) lists shop/web:\n%s", out)
	}
	if out := r.ok("admin.yaml", "apps", "list", "prod", "-A"); !grepRow(out, "web", "shop") {
		t.Errorf("apps list -A:\n%s", out)
	}
	d := r.release("admin.yaml", "prod", "shop/web")
	if d.Revision != 1 || d.Status != "deployed" || d.Chart != "shop-1.0.0" || d.Values["replicaCount"] != float64(3) || d.Values["greeting"] != "from over" {
		t.Errorf("apps get -o json: %+v", d)
	}
	if img, _ := d.Values["image"].(map[string]any); img["tag"] != "2.4.2" {
		t.Errorf("--set image.tag: values %v", d.Values)
	}
	if out := r.ok("admin.yaml", "apps", "get", "prod", "web", "-n", "shop", "--values", "--manifest"); !strings.Contains(out, "VALUES:\ncache:\n  size: 32") ||
		!strings.Contains(out, "kind: Deployment") || !strings.Contains(out, "replicas: 3") || !grepRow(out, "web", "shop", "1", "deployed") {
		t.Errorf("apps get --values --manifest:\n%s", out)
	}

	// An upgrade previewed, then done, keeping the values.
	if out := r.ok("admin.yaml", "apps", "upgrade", "prod", "shop/web", "demo/shop", "--reuse-values", "--set", "replicaCount=5", "--dry-run"); !strings.Contains(out, "--- revision 1") ||
		!strings.Contains(out, "+  replicas: 5") {
		t.Errorf("apps upgrade --dry-run:\n%s", out)
	}
	if d := r.release("admin.yaml", "prod", "shop/web"); d.Revision != 1 {
		t.Fatalf("a dry run changed the release: %+v", d.Release)
	}
	out := r.ok("admin.yaml", "apps", "upgrade", "prod", "shop/web", "demo/shop", "--reuse-values", "--set", "greeting=upgraded")
	if m := succeeded.FindStringSubmatch(out); m == nil || !strings.Contains(m[2], "upgraded to shop-1.1.0 revision 2") {
		t.Errorf("apps upgrade printed:\n%s", out)
	}
	if d := r.release("admin.yaml", "prod", "shop/web"); d.Revision != 2 || d.Chart != "shop-1.1.0" || d.Values["replicaCount"] != float64(3) || d.Values["greeting"] != "upgraded" {
		t.Errorf("after the upgrade: %+v %v", d.Release, d.Values)
	}
	hist := r.ok("admin.yaml", "apps", "history", "prod", "shop/web")
	if !grepRow(hist, "1", "superseded", "shop-1.0.0") || !grepRow(hist, "2", "deployed", "shop-1.1.0") {
		t.Errorf("apps history:\n%s", hist)
	}

	// Rollback to revision 1: revision 3, shop-1.0.0 again.
	out = r.ok("admin.yaml", "apps", "rollback", "prod", "shop/web", "1")
	if m := succeeded.FindStringSubmatch(out); m == nil || !strings.Contains(m[2], "rolled back to revision 1 as revision 3") {
		t.Errorf("apps rollback printed:\n%s", out)
	}
	var h []hubclient.Release
	if err := json.Unmarshal([]byte(r.ok("admin.yaml", "apps", "history", "prod", "shop/web", "-o", "json")), &h); err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[2].Status != "deployed" || h[2].Chart != "shop-1.0.0" {
		t.Errorf("history after the rollback: %+v", h)
	}

	// --no-wait prints the operation's ID; operations get --watch follows
	// it to its end.
	opID := strings.TrimSpace(r.ok("admin.yaml", "apps", "install", "prod", "demo/shop", "--name=quick", "-n", "shop", "--set", "cache.enabled=false", "--no-wait"))
	if !strings.HasPrefix(opID, "op-") || strings.Contains(opID, "\n") {
		t.Fatalf("--no-wait printed %q, want the operation's ID", opID)
	}
	stdout, stderr, err = r.runSplit("admin.yaml", "", "operations", "get", opID, "--watch")
	if err != nil || !strings.Contains(stdout, "operation "+opID+" succeeded: installed shop-1.1.0") || !strings.Contains(stderr, "install of release shop/quick") {
		t.Errorf("operations get --watch: %v\n%s%s", err, stdout, stderr)
	}
	if out := r.ok("admin.yaml", "operations", "get", opID); !grepRow(out, opID, "install", "shop/quick", "succeeded", "1", "admin") {
		t.Errorf("operations get:\n%s", out)
	}
	if out := r.ok("admin.yaml", "operations", "list", "prod", "--release=web"); strings.Count(out, "succeeded") != 3 || strings.Contains(out, "quick") {
		t.Errorf("operations list --release=web:\n%s", out)
	}

	// A failed operation: Helm's error, non-zero.
	r.fails("admin.yaml", "rollback of shop/quick failed", "apps", "rollback", "prod", "shop/quick", "7")
	r.fails("admin.yaml", "release has no 7 version", "apps", "rollback", "prod", "shop/quick", "7")

	// A viewer sees the releases and may change none.
	r.member("vic", "view", id)
	if out := r.ok("vic.yaml", "apps", "list", "prod", "-A"); !grepRow(out, "web", "shop") {
		t.Errorf("a viewer's apps list:\n%s", out)
	}
	for _, args := range [][]string{
		{"install", "prod", "demo/shop", "--name=mine", "-n", "shop"},
		{"upgrade", "prod", "shop/web", "demo/shop"},
		{"rollback", "prod", "shop/web"},
		{"uninstall", "prod", "shop/web"},
	} {
		out, err := r.run("vic.yaml", "", append([]string{"apps"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "not allowed (403)") || !strings.Contains(err.Error(), `hub user "vic" may only view cluster`) ||
			!strings.Contains(err.Error(), "needs the edit or admin role in cluster prod") {
			t.Errorf("a viewer's apps %s: %v\n%s", args[0], err, out)
		}
	}

	// A release busy with an operation (a hook that never completes)
	// refuses a second one: 409, naming the running operation.
	slowID := strings.TrimSpace(r.ok("admin.yaml", "apps", "install", "prod", "demo/shop", "--name=slow", "-n", "shop", "--set", "slowHook=true,cache.enabled=false", "--no-wait"))
	for _, args := range [][]string{
		{"uninstall", "prod", "shop/slow"},
		{"upgrade", "prod", "shop/slow", "demo/shop"},
	} {
		_, err := r.run("admin.yaml", "", append([]string{"apps"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "an operation is already running on release shop/slow in cluster prod; follow it with ecoctl operations get "+slowID+" --watch") ||
			!strings.Contains(err.Error(), "conflict (409)") {
			t.Errorf("apps %s while an operation runs: %v", args[0], err)
		}
	}
	// Following it streams its log as it goes; Ctrl-C ends the wait, not
	// the operation.
	watchOut := &lockedBuffer{}
	watchCtx, stopWatch := context.WithCancel(t.Context())
	watchDone := make(chan error, 1)
	go func() {
		root := newRoot(strings.NewReader(""), watchOut, watchOut, func(string) string { return "" })
		root.SetArgs([]string{"--config=" + filepath.Join(r.dir, "admin.yaml"), "operations", "get", slowID, "--watch", "--interval=100ms"})
		watchDone <- root.ExecuteContext(watchCtx)
	}()
	waitFor30(t, watchOut, "slow-hook")
	stopWatch()
	if err := <-watchDone; err == nil || !strings.Contains(err.Error(), "stopped waiting; operation "+slowID+" goes on in the hub") {
		t.Errorf("operations get --watch, cancelled: %v", err)
	}
	if out := r.ok("admin.yaml", "operations", "get", slowID); !grepRow(out, slowID, "install", "shop/slow", "running") {
		t.Errorf("the slow operation:\n%s", out)
	}

	// The wait outlives the hub being unreachable (a restart, the network
	// gone: here a proxy in front of the hub stops and starts again),
	// saying so; the operation goes on in the hub meanwhile.
	p := startProxy(t, strings.TrimPrefix(r.hub.URL, "https://"))
	r.ok("proxied.yaml", "login", "https://"+p.addr, "--ca-file="+r.caFile, "--token-file="+filepath.Join(r.dir, "admin.token"))
	watchOut = &lockedBuffer{}
	watchCtx, stopWatch = context.WithCancel(t.Context())
	watchDone = make(chan error, 1)
	go func() {
		root := newRoot(strings.NewReader(""), watchOut, watchOut, func(string) string { return "" })
		root.SetArgs([]string{"--config=" + filepath.Join(r.dir, "proxied.yaml"), "operations", "get", slowID, "--watch", "--interval=100ms", "--timeout=2s"})
		watchDone <- root.ExecuteContext(watchCtx)
	}()
	waitFor30(t, watchOut, "slow-hook")
	p.stop()
	waitFor30(t, watchOut, "still waiting for operation "+slowID)
	p.start()
	waitFor30(t, watchOut, "the hub answers again")
	stopWatch()
	if err := <-watchDone; err == nil || !strings.Contains(err.Error(), "stopped waiting") || !strings.Contains(watchOut.String(), "hub unreachable") {
		t.Errorf("operations get --watch through an outage: %v\n%s", err, watchOut)
	}

	// Uninstall.
	out = r.ok("admin.yaml", "apps", "uninstall", "prod", "shop/web")
	if m := succeeded.FindStringSubmatch(out); m == nil || m[2] != "uninstalled" {
		t.Errorf("apps uninstall printed:\n%s", out)
	}
	if out := r.ok("admin.yaml", "apps", "list", "prod", "-n", "shop"); strings.Contains(out, "web ") || !strings.Contains(out, "quick") {
		t.Errorf("apps list after the uninstall:\n%s", out)
	}
	r.fails("admin.yaml", "not found (404)", "apps", "get", "prod", "shop/web")

	// The agent gone: ECO is not connected, and ecoctl says so.
	stopAgent()
	if _, err := r.hub.WaitState(t.Context(), id, store.StateDisconnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	r.fails("admin.yaml", "ECO is not connected to cluster prod", "apps", "list", "prod")
	r.fails("admin.yaml", "ECO is not connected to cluster prod", "apps", "install", "prod", "demo/shop", "--name=late", "-n", "shop")
}

// waitFor30 waits for s in b, for at most 30 s.
func waitFor30(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after 30s in:\n%s", s, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proxy forwards TCP connections from addr to a target until stopped; it
// can start again on the same address: the hub unreachable, then back.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, addr: "127.0.0.1:0", target: target}
	p.start()
	t.Cleanup(p.stop)
	return p
}

// start listens on p.addr (the port may linger a moment after stop).
func (p *proxy) start() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatal(err)
		}
	}
	p.mu.Lock()
	p.ln, p.addr, p.conns = ln, ln.Addr().String(), map[net.Conn]bool{}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // stopped meanwhile
				p.mu.Unlock()
				c.Close()
				u.Close()
				return
			}
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
}

// stop closes the listener and every connection, and waits for them.
func (p *proxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
