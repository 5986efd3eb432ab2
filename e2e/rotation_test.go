package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// rotationGrace is the hub's --credential-grace in the rotation tests:
// long enough for the checks within it, short enough to wait out.
const rotationGrace = 15 * time.Second

// credentialOf returns the agent credential in cluster id's install YAML
// as the hub serves it now.
func (w *world) credentialOf(t *testing.T, id string) string {
	t.Helper()
	var y []byte
	if err := w.hub.Do(t.Context(), "GET", "/api/v1/clusters/"+id+"/install.yaml", "", nil, &y); err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(y), "\n---\n") {
		if !strings.Contains(doc, "kind: Secret") {
			continue
		}
		var s struct{ Data map[string][]byte }
		if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatal(err)
		}
		return string(s.Data[install.KeyToken])
	}
	t.Fatal("the install YAML has no Secret")
	return ""
}

// rotate rotates cluster id's credential through the API.
func (w *world) rotate(t *testing.T, id string) hub.RotationJSON {
	t.Helper()
	var r hub.RotationJSON
	if err := w.hub.Do(t.Context(), "POST", "/api/v1/clusters/"+id+"/rotate-credential", "", nil, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (w *world) clusterJSON(t *testing.T, id string) hub.ClusterJSON {
	t.Helper()
	var c hub.ClusterJSON
	if err := w.hub.Do(t.Context(), "GET", "/api/v1/clusters/"+id, "", nil, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// secretToken is the credential in the agent's install Secret in the
// cluster.
func secretToken(t *testing.T) string {
	t.Helper()
	s, err := admin(t).CoreV1().Secrets(install.DefaultNamespace).Get(t.Context(), install.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Data[install.KeyToken])
}

// dialWith connects a plain program to the hub as cluster id with
// credential and identity token; it returns nil if the hub admitted it
// (and closes the session at once).
func (w *world) dialWith(t *testing.T, id, credential, identity string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.hub.CAPEM)
	s, err := tunnel.Dial(t.Context(), tunnel.ClientConfig{
		URL:       "wss" + strings.TrimPrefix(w.hub.URL, "https") + hub.TunnelPath,
		ClusterID: id,
		Token:     credential,
		TLSConfig: &tls.Config{RootCAs: roots},
		Hello:     tunnel.Hello{AgentVersion: "plain", IdentityToken: identity},
		Proxy:     func(*http.Request) (*url.URL, error) { return nil, nil },
	})
	if err == nil {
		s.Close()
	}
	return err
}

// followed runs kubectl (through the hub) with args and returns its
// output lines as they come.
func followed(t *testing.T, kubeconfig string, args ...string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, cluster.Bin.Path(localcluster.Kubectl), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	done := make(chan struct{})
	go func() { // owned: ends when kubectl ends (cancel at cleanup)
		defer close(done)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cmd.Wait() })
	return lines
}

// expectLine waits for the next line of a followed kubectl and checks it.
func expectLine(t *testing.T, what string, lines <-chan string, want func(string) bool) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("%s: kubectl ended: the stream was lost", what)
		}
		if !want(l) {
			t.Fatalf("%s: got line %q", what, l)
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no line within 30s", what)
	}
	return ""
}

// TestRotationDuringWatchAndLogs rotates the credential of the real
// agent in a real cluster while real kubectl watches a ConfigMap and
// follows a pod's log through the hub: the agent stores the new
// credential in its Secret and acknowledges it, and neither stream loses
// a line. The old credential works within the grace period and is refused
// after it; an agent left on the old credential (offline during the
// rotation) is refused with the reason in the cluster's status, and
// re-applying the current YAML brings it back.
func TestRotationDuringWatchAndLogs(t *testing.T) {
	w := newWorldWith(t, func(c *localeco.HubConfig) { c.CredentialGrace = rotationGrace })
	ctx := t.Context()
	cred0 := w.credentialOf(t, w.id)
	if got := secretToken(t); got != cred0 {
		t.Fatal("the installed Secret does not hold the YAML's credential")
	}

	mustKubectl(t, w.kc, "create", "namespace", "rotation")
	t.Cleanup(func() {
		cluster.Kubectl(context.Background(), "delete", "namespace", "rotation", "--ignore-not-found", "--wait=false").Run()
	})
	mustKubectl(t, w.kc, "-n", "rotation", "create", "configmap", "counter", "--from-literal=n=0")
	mustKubectl(t, w.kc, "-n", "rotation", "create", "deployment", "web", "--image=nginx")
	mustKubectl(t, w.kc, "-n", "rotation", "rollout", "status", "deployment/web", "--timeout=60s")
	pod := strings.TrimSpace(mustKubectl(t, w.kc, "-n", "rotation", "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"))

	watch := followed(t, w.kc, "-n", "rotation", "get", "configmap", "counter", "--watch", "--output-watch-events", "-o", "jsonpath={.type} {.object.data.n}{\"\\n\"}")
	expectLine(t, "watch start", watch, func(l string) bool { return l == "ADDED 0" })
	logs := followed(t, w.kc, "-n", "rotation", "logs", "-f", "--tail=0", pod)
	step := 0
	// tick changes the ConfigMap and appends a log line, and checks both
	// streams show exactly that next.
	tick := func(what string) {
		t.Helper()
		step++
		mustKubectl(t, w.kc, "-n", "rotation", "patch", "configmap", "counter", "-p", fmt.Sprintf(`{"data":{"n":"%d"}}`, step))
		expectLine(t, what+": watch", watch, func(l string) bool { return l == fmt.Sprintf("MODIFIED %d", step) })
		line := fmt.Sprintf("rotation log line %d at %d", step, time.Now().UnixNano())
		if err := cluster.AppendPodLog(line); err != nil {
			t.Fatal(err)
		}
		for {
			l := expectLine(t, what+": logs -f", logs, func(l string) bool { return l == line || strings.HasPrefix(l, "rotation log start") })
			if l == line {
				break
			}
		}
	}
	// logs -f has no first line to wait for: keep appending start lines
	// until one shows, then every line must follow in order. Any of them
	// will do: one that shows after the next was appended proves the
	// stream is on just as well, and waiting for the newest alone would
	// chase it for as long as each line takes longer than a wait to
	// come through. Those still on their way are skipped by tick.
	appended := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for started := false; !started; {
		if time.Now().After(deadline) {
			t.Fatal("logs -f through the hub never started")
		}
		first := fmt.Sprintf("rotation log start %d", time.Now().UnixNano())
		appended[first] = true
		cluster.AppendPodLog(first)
		select {
		case l, ok := <-logs:
			if !ok {
				t.Fatal("logs -f through the hub ended before it started")
			}
			started = appended[l]
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("logs -f through the hub started after %d start lines", len(appended))
	for len(logs) > 0 {
		<-logs
	}
	tick("before the rotation")

	start := time.Now()
	r := w.rotate(t, w.id)
	if r.Generation != 1 || r.Delivery != hub.DeliverySent {
		t.Fatalf("rotation = %+v, want generation 1 sent to the agent", r)
	}
	waitUntil(t, "the rotation to complete", func() bool { return !w.clusterJSON(t, w.id).Credential.RotationPending })
	t.Logf("rotation: API call to the agent's acknowledgement (Secret written) in %v", time.Since(start).Round(time.Millisecond))
	tick("right after the rotation")
	cred1 := w.credentialOf(t, w.id)
	if cred1 == cred0 {
		t.Fatal("the install YAML still carries the old credential")
	}
	if got := secretToken(t); got != cred1 {
		t.Fatal("the agent's Secret does not hold the new credential")
	}
	if again := w.credentialOf(t, w.id); again != cred1 {
		t.Fatal("the install YAML differs between fetches")
	}
	tick("after the agent stored the credential")
	if st, _ := w.hub.Status(ctx, w.id); st.State != string(store.StateConnected) {
		t.Fatalf("the cluster is %s (%s) after the rotation", st.State, st.Reason)
	}

	// The agent, restarted as the pod would be (its config dir re-read
	// from the Secret it rewrote), connects with the new credential.
	w.stopAgent()
	w.hub.WaitState(ctx, w.id, store.StateDisconnected, 10*time.Second)
	restarted, err := localeco.Install(ctx, w.hub, cluster, w.id, filepath.Join(t.TempDir(), "restarted"))
	if err != nil {
		t.Fatal(err)
	}
	if restarted.Config.Token != cred1 {
		t.Fatal("the re-applied YAML and the Secret do not hold the new credential")
	}
	oldCfg := w.setup.AgentConfig()
	w.startAgent(restarted.AgentConfig())
	if _, err := w.hub.WaitState(ctx, w.id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// An agent left on the old credential after the grace period (it was
	// offline during the rotation) is refused; admins see why.
	time.Sleep(time.Until(r.PreviousValidUntil) + time.Second)
	w.stopAgent()
	w.hub.WaitState(ctx, w.id, store.StateDisconnected, 10*time.Second)
	w.startAgent(oldCfg)
	st, err := w.hub.WaitState(ctx, w.id, store.StateFailing, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Reason, "credential rotated") || !strings.Contains(st.Reason, "re-apply the install YAML") {
		t.Fatalf("status reason %q does not say to re-apply the install YAML", st.Reason)
	}
	if strings.Contains(st.Reason, cred0) || strings.Contains(st.Reason, cred1) {
		t.Fatal("the status shows a credential")
	}
	// Re-applying the current YAML always works.
	w.stopAgent()
	again, err := localeco.Install(ctx, w.hub, cluster, w.id, filepath.Join(t.TempDir(), "reapplied"))
	if err != nil {
		t.Fatal(err)
	}
	w.startAgent(again.AgentConfig())
	if _, err := w.hub.WaitState(ctx, w.id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := mustKubectl(t, w.kc, "get", "namespace", "rotation", "-o", "name"); strings.TrimSpace(out) != "namespace/rotation" {
		t.Fatalf("kubectl after re-applying: %q", out)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
