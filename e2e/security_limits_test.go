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
