package e2e

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/localcluster"
)

// TestSecurityLimitsReal is the part of issue 15's limits suite that needs
// a real kube-apiserver, real kubectl and client-go: each row names an
// attack and the refusal it must get. The rest of the suite, which a
// tunnel to an in-process agent end serves as well, is hub's
// TestSecurityLimits (hub/security_limits_test.go).
func TestSecurityLimitsReal(t *testing.T) {
	w := newWorld(t)
	for _, row := range []struct {
		attack  string
		refusal string
		run     func(t *testing.T, w *world)
	}{
		{
			attack:  "X-Request-Id and Audit-Id injection: the client picks the audit ID the cluster records",
			refusal: "kube-apiserver records the hub's UUID as the audit ID (its Audit-Id answer equals the hub's X-Request-Id); the client's value appears nowhere",
			run:     auditIDInjection,
		},
		{
			attack:  "real kubectl at an invalid cluster ID (%ff, path traversal)",
			refusal: "kubectl reports NotFound; the hub still serves the real cluster",
			run:     kubectlPathTricks,
		},
		{
			attack:  "watch flood with client-go past the per-user cap (150)",
			refusal: "client-go's watch 151 fails with TooManyRequests after retrying on Retry-After; the 150 keep working",
			run:     clientGoWatchFlood,
		},
		{
			attack:  "stream flood past the agent's own cap (MaxStreams 4, the hub's caps not reached)",
			refusal: "the real agent answers the fifth stream 429 with Retry-After instead of opening another API server connection; a freed slot serves again",
			run:     agentStreamCap,
		},
	} {
		t.Run(row.attack, func(t *testing.T) {
			t.Logf("attack: %s; refusal: %s", row.attack, row.refusal)
			row.run(t, w)
		})
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func auditIDInjection(t *testing.T, w *world) {
	url := w.hub.URL + hub.ProxyPrefix + w.id + hub.ProxySuffix + "/api/v1/namespaces/default"
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+w.hub.AdminToken)
	req.Header.Set("X-Request-Id", "attacker-chosen-request-id")
	req.Header.Set("Audit-Id", "attacker-chosen-audit-id")
	resp, err := w.hub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET namespace default: %d", resp.StatusCode)
	}
	hubID, auditID := resp.Header.Get("X-Request-Id"), resp.Header.Get("Audit-Id")
	if !uuidRE.MatchString(hubID) || auditID != hubID {
		t.Fatalf("X-Request-Id %q, the API server's Audit-Id %q: want the hub's UUID in both", hubID, auditID)
	}
}

func kubectlPathTricks(t *testing.T, w *world) {
	for _, server := range []string{
		w.hub.URL + "/clusters/%ff/k8s",
		w.hub.URL + "/clusters/..%2f..%2fapi%2fv1/k8s",
		w.hub.URL + "/clusters/" + strings.ToUpper(w.id) + "/k8s",
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		out, err := exec.CommandContext(ctx, cluster.Bin.Path(localcluster.Kubectl), "--kubeconfig", w.kc,
			"--server", server, "get", "--raw", "/api").CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "NotFound") && !strings.Contains(string(out), "not found") {
			t.Errorf("kubectl --server %s: %v %s; want NotFound", server, err, out)
		}
	}
	if out := mustKubectl(t, w.kc, "get", "--raw", "/api"); !strings.Contains(out, "APIVersions") {
		t.Fatalf("the real cluster after the tricks: %s", out)
	}
}

func clientGoWatchFlood(t *testing.T, w *world) {
	cs := clientset(t, w.kc, func(c *rest.Config) { c.QPS, c.Burst = 500, 500 })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var open []watch.Interface
	defer func() {
		for _, wi := range open {
			wi.Stop()
		}
	}()
	for i := range hub.DefaultWatchesPerUser {
		wi, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=flood"})
		if err != nil {
			t.Fatalf("watch %d within the cap: %v", i, err)
		}
		open = append(open, wi)
	}
	start := time.Now()
	_, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=flood"})
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("watch %d: %v, want TooManyRequests", hub.DefaultWatchesPerUser+1, err)
	}
	t.Logf("watch %d refused after %v of client-go retries: %v", hub.DefaultWatchesPerUser+1, time.Since(start).Round(time.Millisecond), err)
	// The open ones still work: a short request is no watch.
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("a GET beside the watches: %v", err)
	}
}

func agentStreamCap(t *testing.T, w *world) {
	ctx := t.Context()
	restart := func(maxStreams int) {
		ctx := context.Background() // also in Cleanup, after t.Context ended
		if err := w.stopAgent(); err != nil {
			t.Fatal(err)
		}
		cfg := w.setup.AgentConfig()
		cfg.MaxStreams = maxStreams
		w.startAgent(cfg)
		// The hub may still see the old session for a moment: wait until
		// a request through the new one works.
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := w.hub.Client().Do(mustReq(t, ctx, w, "/api"))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the agent with MaxStreams %d did not serve within 30 s: %v", maxStreams, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	restart(4)
	t.Cleanup(func() { restart(0) })
	// The request that found the agent up left its stream idle in the
	// hub's pool: it counts at the agent. Watches take the rest.
	watch := func() *http.Response {
		resp, err := w.hub.Client().Do(mustReq(t, ctx, w, "/api/v1/namespaces/default/configmaps?watch=true&fieldSelector=metadata.name%3Dcap"))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for {
		resp := watch()
		if resp.StatusCode == 200 {
			open = append(open, resp)
			if len(open) > 4 {
				t.Fatalf("%d watches open past the agent's cap of 4", len(open))
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
			!strings.Contains(string(body), `"reason":"TooManyRequests"`) || !strings.Contains(string(body), "eco-agent") {
			t.Fatalf("over the agent's cap: %d Retry-After=%q %s; want the agent's 429", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		t.Logf("with %d watches open, the agent refused the next: %s", len(open), strings.TrimSpace(string(body)))
		break
	}
	open[0].Body.Close()
	open = open[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := watch()
		if resp.StatusCode == 200 {
			open = append(open, resp)
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a freed slot at the agent was not given back: %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustReq(t *testing.T, ctx context.Context, w *world, path string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, "GET", w.hub.URL+hub.ProxyPrefix+w.id+hub.ProxySuffix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.hub.AdminToken)
	return req
}
