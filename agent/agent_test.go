package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/tunnel"
)

// TestConnectForwardAndImpersonate: the agent connects with the right
// Hello, owns its cluster-scoped objects, and forwards GETs and watches
// as the users the hub impersonates, refusing requests that impersonate
// no one.
func TestConnectForwardAndImpersonate(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	ra := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), nil)

	ev, next := hub.waitEvent(0, 20*time.Second, "Connected", isConnected(testClusterID))
	want := tunnel.Hello{ProtocolVersion: tunnel.ProtocolVersion, AgentVersion: testVersion,
		KubernetesVersion: localcluster.KubernetesVersion, Fingerprint: e.fingerprint}
	if ev.Hello.AgentVersion != want.AgentVersion || ev.Hello.KubernetesVersion != want.KubernetesVersion ||
		ev.Hello.Fingerprint != want.Fingerprint || ev.Hello.ProtocolVersion != want.ProtocolVersion {
		t.Errorf("Hello = %+v, want %+v", ev.Hello, want)
	}
	hub.waitEvent(next, 10*time.Second, "Status Ready", isState(testClusterID, tunnel.StateReady))
	if code, body := ra.get(t, install.ReadyzPath); code != http.StatusOK || !strings.Contains(body, "connected to the hub") {
		t.Errorf("/readyz = %d %q, want 200 connected", code, body)
	}
	if code, _ := ra.get(t, install.HealthzPath); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := adminClient(t, e.c)

	// The namespace owns the cluster-scoped objects, for the garbage
	// collector.
	eventually(t, 10*time.Second, func() error {
		for _, o := range install.ClusterScopedObjects() {
			var refs []metav1.OwnerReference
			switch o.Resource.Resource {
			case "clusterroles":
				cr, err := admin.RbacV1().ClusterRoles().Get(ctx, o.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				refs = cr.OwnerReferences
			case "clusterrolebindings":
				crb, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, o.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				refs = crb.OwnerReferences
			default:
				return fmt.Errorf("unexpected resource %v", o.Resource)
			}
			want := install.NamespaceOwnerReference(testNamespace, types.UID(e.nsUID))
			if !slices.Contains(refs, want) {
				return fmt.Errorf("%s %s: ownerReferences %+v lack %+v", o.Resource.Resource, o.Name, refs, want)
			}
		}
		return nil
	})

	// Through the tunnel, the API server sees the impersonated user.
	alice := hub.kubeClient(t, testClusterID, "alice", install.AdminsGroup)
	ssr, err := alice.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview through the tunnel: %v", err)
	}
	if u := ssr.Status.UserInfo; u.Username != "alice" || !slices.Contains(u.Groups, install.AdminsGroup) {
		t.Errorf("through the tunnel the API server sees %+v, want alice in %s", u, install.AdminsGroup)
	}
	if _, err := alice.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("GET kube-system as an eco admin: %v", err)
	}

	// A watch streams through the tunnel.
	cmName := "watched-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	w, err := alice.CoreV1().ConfigMaps(testNamespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", cmName).String(),
	})
	if err != nil {
		t.Fatalf("watch through the tunnel: %v", err)
	}
	defer w.Stop()
	if _, err := admin.CoreV1().ConfigMaps(testNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cmName}, Data: map[string]string{"k": "1"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().ConfigMaps(testNamespace).Delete(context.Background(), cmName, metav1.DeleteOptions{})
	})
	expectWatch(t, w, watch.Added, cmName)
	if _, err := admin.CoreV1().ConfigMaps(testNamespace).Update(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cmName}, Data: map[string]string{"k": "2"},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectWatch(t, w, watch.Modified, cmName)

	// A viewer reads but may not delete: the cluster's RBAC judges bob.
	bob := hub.kubeClient(t, testClusterID, "bob", install.ViewersGroup)
	if _, err := bob.CoreV1().ConfigMaps(testNamespace).Get(ctx, cmName, metav1.GetOptions{}); err != nil {
		t.Errorf("GET as an eco viewer: %v", err)
	}
	err = bob.CoreV1().ConfigMaps(testNamespace).Delete(ctx, cmName, metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `User "bob"`) {
		t.Errorf("DELETE as an eco viewer: %v, want Forbidden for bob", err)
	}

	// Without impersonation, or impersonating a system user, the agent
	// refuses: it never acts as itself, nor as a component.
	raw := &http.Client{Transport: hub.transport(t), Timeout: 10 * time.Second}
	for _, tc := range []struct {
		name, user, want string
	}{
		{"no Impersonate-User", "", "Impersonate-User"},
		{"system user", "system:kube-controller-manager", "system:"},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+testClusterID+"/api/v1/namespaces/kube-system", nil)
		if tc.user != "" {
			req.Header.Set("Impersonate-User", tc.user)
		}
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var st metav1.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || err != nil || st.Reason != metav1.StatusReasonForbidden ||
			!strings.Contains(st.Message, tc.want) {
			t.Errorf("%s: %d %+v (decode error %v), want 403 Status mentioning %q", tc.name, resp.StatusCode, st, err, tc.want)
		}
	}

	metrics := scrape(t, ra)
	for name, want := range map[string]func(float64) bool{
		`eco_agent_tunnel_connected`:                                func(v float64) bool { return v == 1 },
		`eco_agent_tunnel_sessions_total`:                           func(v float64) bool { return v == 1 },
		`eco_agent_streams_total`:                                   func(v float64) bool { return v >= 1 },
		`eco_agent_requests_total`:                                  func(v float64) bool { return v >= 5 },
		`eco_agent_forward_errors_total{reason="no_impersonation"}`: func(v float64) bool { return v == 1 },
		`eco_agent_forward_errors_total{reason="reserved_user"}`:    func(v float64) bool { return v == 1 },
		`eco_agent_self_check_ready`:                                func(v float64) bool { return v == 1 },
		`eco_agent_build_info{version="` + testVersion + `"}`:       func(v float64) bool { return v == 1 },
	} {
		v, ok := metrics[name]
		if !ok || !want(v) {
			t.Errorf("metric %s = %v (present %v)", name, v, ok)
		}
	}
}

func expectWatch(t *testing.T, w watch.Interface, typ watch.EventType, name string) {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatalf("watch closed, want %s %s", typ, name)
		}
		cm, _ := ev.Object.(*corev1.ConfigMap)
		if ev.Type != typ || cm == nil || cm.Name != name {
			t.Fatalf("watch event %s %T, want %s of ConfigMap %s", ev.Type, ev.Object, typ, name)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s event for %s through the tunnel", typ, name)
	}
}

// scrape reads the agent's /metrics into name{labels} → value.
func scrape(t *testing.T, ra *runningAgent) map[string]float64 {
	t.Helper()
	code, body := ra.get(t, agent.MetricsPath)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestKubectlExecThroughTunnel: real kubectl, through a minimal hub proxy
// that impersonates like the hub, reads and execs into a pod (a protocol
// upgrade, with stdin) over the tunnel.
func TestKubectlExecThroughTunnel(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), nil)
	hub.waitEvent(0, 20*time.Second, "Connected", isConnected(testClusterID))

	kubeconfig := hub.proxyKubeconfig(t, testClusterID, "alice", install.AdminsGroup)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := e.c.Kubectl(ctx, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := kubectl("", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "alice" {
		t.Fatalf("kubectl auth whoami through the tunnel: %q, %v", out, err)
	}
	// The install's Deployment has a pod, made Running by kwok, whose
	// exec runs on this host.
	var pod string
	eventually(t, 30*time.Second, func() error {
		out, err := kubectl("", "get", "pods", "-n", testNamespace, "-l", install.LabelName+"="+install.AgentName,
			"--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}")
		if err != nil || out == "" {
			return fmt.Errorf("no Running agent pod: %q %v", out, err)
		}
		pod = out
		return nil
	})
	out, err := kubectl("", "exec", "-n", testNamespace, pod, "--", "echo", "hello through the tunnel")
	if err != nil || strings.TrimSpace(out) != "hello through the tunnel" {
		t.Errorf("kubectl exec: %q, %v", out, err)
	}
	// head, not cat: kwok does not pass on the end of stdin.
	out, err = kubectl("ping from stdin\n", "exec", "-i", "-n", testNamespace, pod, "--", "head", "-n", "1")
	if err != nil || strings.TrimSpace(out) != "ping from stdin" {
		t.Errorf("kubectl exec -i: %q, %v", out, err)
	}
}

// TestTokenRotation: after the token file changes and the old token is
// revoked, the very next request works (client-go alone would keep the
// revoked token for up to a minute).
func TestTokenRotation(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := adminClient(t, e.c)
	// Tokens bound to Secrets: deleting the Secret revokes the token.
	bound := func(name string) *authenticationv1.BoundObjectReference {
		s, err := admin.CoreV1().Secrets(testNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = admin.CoreV1().Secrets(testNamespace).Delete(context.Background(), s.Name, metav1.DeleteOptions{})
		})
		return &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: s.Name, UID: s.UID}
	}
	ref1 := bound("token-one")
	dir := t.TempDir()
	tokenFile := agentToken(t, e, dir, ref1)
	old, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}

	hub := newTestHub(t)
	startAgent(t, e, hub, testClusterID, tokenFile, nil)
	hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))
	alice := hub.kubeClient(t, testClusterID, "alice", install.AdminsGroup)
	if _, err := alice.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	// Rotate: a new token in the file, the old one revoked.
	writeFileAtomic(t, tokenFile, requestToken(t, e, bound("token-two")))
	if err := admin.CoreV1().Secrets(testNamespace).Delete(ctx, ref1.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	oldClient := clientFor(t, &rest.Config{Host: e.c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: e.c.CAPEM}, BearerToken: string(old)})
	eventually(t, 20*time.Second, func() error {
		_, err := oldClient.CoreV1().Namespaces().Get(ctx, testNamespace, metav1.GetOptions{})
		if !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("old token still accepted: %v", err)
		}
		return nil
	})

	// First try, no retries.
	if _, err := alice.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Fatalf("first request after rotation: %v", err)
	}
	w, err := alice.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", "kube-system").String(),
	})
	if err != nil {
		t.Fatalf("watch after rotation: %v", err)
	}
	w.Stop()
}

// TestSelfCheckReportsMissingPermission: when the agent's ClusterRole
// loses the impersonation rule, the agent reports Failing with a reason
// an operator can act on, and Ready once the rule is back.
func TestSelfCheckReportsMissingPermission(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), func(c *agent.Config) {
		c.CheckInterval = 500 * time.Millisecond
	})
	_, next := hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := adminClient(t, e.c)
	crs := admin.RbacV1().ClusterRoles()
	cr, err := crs.Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := slices.Clone(cr.Rules)
	restore := func() {
		cur, err := crs.Get(context.Background(), install.AgentName, metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		cur.Rules = orig
		if _, err := crs.Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
			t.Errorf("restoring ClusterRole %s: %v", install.AgentName, err)
		}
	}
	t.Cleanup(restore)
	cr.Rules = slices.DeleteFunc(slices.Clone(orig), func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "users") && slices.Contains(r.Verbs, "impersonate")
	})
	if len(cr.Rules) == len(orig) {
		t.Fatalf("ClusterRole %s has no rule to impersonate users: %+v", install.AgentName, orig)
	}
	if _, err := crs.Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev, next := hub.waitEvent(next, 10*time.Second, "Failing", isState(testClusterID, tunnel.StateFailing))
	if want := "the agent's ServiceAccount may not impersonate users: check ClusterRole eco-agent"; ev.Status.Reason != want {
		t.Errorf("Failing reason = %q, want %q", ev.Status.Reason, want)
	}
	restore()
	hub.waitEvent(next, 10*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))
}

// TestAPIServerDown: with its API server stopped, a connected agent
// reports Failing within seconds, with the reason; an agent that starts
// then still connects (without a fingerprint) to say so. When the API
// server is back, both report Ready, and the second reconnects with the
// fingerprint.
func TestAPIServerDown(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	// Graceful API server shutdown keeps existing connections (and the
	// agent's namespace watch) open for seconds while refusing new ones,
	// so the periodic check is what notices.
	const interval = 2 * time.Second
	fast := func(c *agent.Config) { c.CheckInterval = interval }
	a := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), fast)
	_, next := hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))
	lateToken := agentToken(t, e, t.TempDir(), nil)

	stopped := time.Now()
	stopDone := make(chan error, 1)
	go func() { stopDone <- e.c.StopAPIServer() }() // takes the API server's grace period
	restarted := false
	t.Cleanup(func() { // leave the shared cluster serving
		if !restarted {
			<-stopDone
			if err := e.c.StartAPIServer(context.Background()); err != nil {
				t.Errorf("restarting the API server: %v", err)
			}
		}
	})
	ev, next := hub.waitEvent(next, 20*time.Second, "Failing", isState(testClusterID, tunnel.StateFailing))
	detect := time.Since(stopped)
	t.Logf("Failing reported %v after the API server was told to stop (check interval %v): %q",
		detect.Round(time.Millisecond), interval, ev.Status.Reason)
	if want := "cannot reach the API server at " + e.c.URL + ": "; !strings.HasPrefix(ev.Status.Reason, want) {
		t.Errorf("reason %q does not start with %q", ev.Status.Reason, want)
	}
	if detect > interval+3*time.Second {
		t.Errorf("Failing took %v, want at most the check interval and a little", detect)
	}
	if code, body := a.get(t, install.ReadyzPath); code != http.StatusOK || !strings.Contains(body, "Failing") {
		t.Errorf("/readyz = %d %q: want 200 (the tunnel is up) mentioning Failing", code, body)
	}
	if err := <-stopDone; err != nil {
		t.Fatal(err)
	}

	// An agent starting now connects anyway, with no fingerprint.
	const late = "late-cluster"
	startAgent(t, e, hub, late, lateToken, fast)
	lev, lnext := hub.waitEvent(0, 20*time.Second, "Connected "+late, isConnected(late))
	if lev.Hello.Fingerprint != "" || lev.Hello.KubernetesVersion != "" {
		t.Errorf("Hello with the API server down = %+v, want no fingerprint or version", lev.Hello)
	}
	hub.waitEvent(lnext, 10*time.Second, "Failing "+late, isState(late, tunnel.StateFailing))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := time.Now()
	restarted = true
	if err := e.c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("the API server was ready again after %v", time.Since(started).Round(time.Millisecond))
	hub.waitEvent(next, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))
	t.Logf("Ready reported %v after the API server was started", time.Since(started).Round(time.Millisecond))
	lev, lnext = hub.waitEvent(lnext, 20*time.Second, "Connected "+late+" with fingerprint", func(ev tunnel.Event) bool {
		return isConnected(late)(ev) && ev.Hello.Fingerprint != ""
	})
	if lev.Hello.Fingerprint != e.fingerprint || lev.Hello.KubernetesVersion != localcluster.KubernetesVersion {
		t.Errorf("Hello after the API server came back = %+v, want fingerprint %s", lev.Hello, e.fingerprint)
	}
	hub.waitEvent(lnext, 10*time.Second, "Ready "+late, isState(late, tunnel.StateReady))
}

// TestHubRestart: the hub goes away and comes back on the same address;
// the agent reconnects soon after.
func TestHubRestart(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	a := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), nil)
	_, next := hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))

	hub.stop()
	eventually(t, 5*time.Second, func() error {
		if code, body := a.get(t, install.ReadyzPath); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz = %d %q with the hub down, want 503", code, body)
		}
		return nil
	})
	time.Sleep(time.Second) // down for a while: the backoff grows
	hub.restart()
	restarted := time.Now()
	_, next = hub.waitEvent(next, 10*time.Second, "Connected", isConnected(testClusterID))
	t.Logf("reconnected %v after the hub came back", time.Since(restarted).Round(time.Millisecond))
	hub.waitEvent(next, 10*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))
	if code, _ := a.get(t, install.ReadyzPath); code != http.StatusOK {
		t.Errorf("/readyz = %d after reconnecting", code)
	}
	if m := scrape(t, a); m["eco_agent_tunnel_reconnects_total"] != 1 || m["eco_agent_tunnel_sessions_total"] != 2 {
		t.Errorf("reconnects %v, sessions %v; want 1 and 2", m["eco_agent_tunnel_reconnects_total"], m["eco_agent_tunnel_sessions_total"])
	}
}

// TestIdentityTokenReadAtEveryConnect: the agent presents the identity
// token file's content, read afresh at every connect, as the kubelet
// rotates the projected token.
func TestIdentityTokenReadAtEveryConnect(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	file := filepath.Join(t.TempDir(), "identity-token")
	writeFileAtomic(t, file, "eyJhbGciOiJSUzI1NiJ9.eyJmaXJzdCI6MX0.c2ln\n")
	startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), func(c *agent.Config) { c.IdentityTokenFile = file })
	_, next := hub.waitEvent(0, 20*time.Second, "Connected", isConnected(testClusterID))
	if got := hub.lastToken(); got != "eyJhbGciOiJSUzI1NiJ9.eyJmaXJzdCI6MX0.c2ln" {
		t.Fatalf("first connect presented %q", got)
	}
	writeFileAtomic(t, file, "eyJhbGciOiJSUzI1NiJ9.eyJzZWNvbmQiOjJ9.c2ln")
	hub.stop()
	hub.restart()
	hub.waitEvent(next, 20*time.Second, "Connected", isConnected(testClusterID))
	if got := hub.lastToken(); got != "eyJhbGciOiJSUzI1NiJ9.eyJzZWNvbmQiOjJ9.c2ln" {
		t.Fatalf("reconnect presented %q, want the rotated token", got)
	}
	for _, ev := range hub.eventsSince(0) {
		if ev.Hello.IdentityToken != "" {
			t.Fatal("an event carries the identity token")
		}
	}
}

// TestHubRejects: an agent the hub rejects keeps retrying, slowly, and
// says why on /readyz; it connects once the hub accepts it.
func TestHubRejects(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	const reason = "this install YAML belongs to cluster prod (kube-system UID 1234) and was applied to a different cluster"
	hub.setReject(reason)
	a := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), func(c *agent.Config) {
		c.BackoffMax = 600 * time.Millisecond
	})
	// The hub counts a handshake before the agent reads its rejection:
	// the agent's own count is awaited too.
	eventually(t, 10*time.Second, func() error {
		if n := hub.admitCount(); n < 3 {
			return fmt.Errorf("%d handshakes, want the agent to keep retrying", n)
		}
		if n := scrape(t, a)[`eco_agent_tunnel_dial_errors_total{reason="rejected"}`]; n < 3 {
			return fmt.Errorf("rejected dials = %v, want >= 3", n)
		}
		return nil
	})
	code, body := a.get(t, install.ReadyzPath)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "the hub rejected the agent: "+reason) {
		t.Errorf("/readyz = %d %q, want 503 with the hub's reason", code, body)
	}

	// A wrong credential is a rejection too (401 before the upgrade).
	bad := startAgent(t, e, hub, "other-cluster", agentToken(t, e, t.TempDir(), nil), func(c *agent.Config) {
		c.Token = "ecoa_wrong"
		c.BackoffMax = 600 * time.Millisecond
	})
	eventually(t, 10*time.Second, func() error {
		code, body := bad.get(t, install.ReadyzPath)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "agent credential unknown or revoked") {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})

	hub.setReject("")
	hub.waitEvent(0, 5*time.Second, "Connected", isConnected(testClusterID))
	eventually(t, 5*time.Second, func() error {
		if code, body := a.get(t, install.ReadyzPath); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q once accepted", code, body)
		}
		return nil
	})
}

// TestStopWithoutRemoval: cancelling Run while the namespace stays (a
// rollout) closes the tunnel without a goodbye and deletes nothing.
func TestStopWithoutRemoval(t *testing.T) {
	needCluster(t)
	e := setup(t, mainCluster)
	hub := newTestHub(t)
	a := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), nil)
	_, next := hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))

	start := time.Now()
	if err := a.stop(10 * time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("Run returned %v after cancel", time.Since(start).Round(time.Millisecond))
	ev, _ := hub.waitEvent(next, 5*time.Second, "Disconnected", func(ev tunnel.Event) bool {
		return ev.Kind == tunnel.EventDisconnected && ev.ClusterID == testClusterID
	})
	if errors.Is(ev.Err, tunnel.ErrGoodbye) {
		t.Errorf("Disconnected with %v, want no goodbye", ev.Err)
	}
	for _, ev := range hub.eventsSince(0) {
		if ev.Kind == tunnel.EventGoodbye {
			t.Errorf("goodbye on a plain stop: %+v", ev)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := adminClient(t, e.c)
	for _, name := range []string{install.AgentName, install.AdminsGroup, install.EditorsGroup, install.ViewersGroup} {
		if _, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("ClusterRoleBinding %s after a plain stop: %v", name, err)
		}
	}
}

// TestGarbageCollectionWithoutAgent: the ownerReferences the agent sets
// make the garbage collector delete every cluster-scoped object of the
// install once the namespace is gone, even when no agent runs then.
func TestGarbageCollectionWithoutAgent(t *testing.T) {
	needCluster(t)
	e := setup(t, removalCluster)
	hub := newTestHub(t)
	a := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), nil)
	hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := adminClient(t, e.c)
	exists := func(o install.ClusterObject) (bool, []metav1.OwnerReference, error) {
		var refs []metav1.OwnerReference
		var err error
		if o.Resource.Resource == "clusterroles" {
			var cr *rbacv1.ClusterRole
			if cr, err = admin.RbacV1().ClusterRoles().Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				refs = cr.OwnerReferences
			}
		} else {
			var crb *rbacv1.ClusterRoleBinding
			if crb, err = admin.RbacV1().ClusterRoleBindings().Get(ctx, o.Name, metav1.GetOptions{}); err == nil {
				refs = crb.OwnerReferences
			}
		}
		if apierrors.IsNotFound(err) {
			return false, nil, nil
		}
		return err == nil, refs, err
	}
	eventually(t, 10*time.Second, func() error {
		for _, o := range install.ClusterScopedObjects() {
			if ok, refs, err := exists(o); !ok || len(refs) == 0 {
				return fmt.Errorf("%s %s not owned yet: %v", o.Resource.Resource, o.Name, err)
			}
		}
		return nil
	})
	if err := a.stop(10 * time.Second); err != nil { // a plain stop: nothing deleted
		t.Fatal(err)
	}

	deleted := time.Now()
	if out, err := e.c.Kubectl(ctx, "delete", "namespace", testNamespace, "--wait=false").CombinedOutput(); err != nil {
		t.Fatalf("kubectl delete namespace: %v\n%s", err, out)
	}
	forgetEnv(removalCluster)
	eventually(t, 90*time.Second, func() error {
		for _, o := range install.ClusterScopedObjects() {
			if ok, _, err := exists(o); ok || err != nil {
				return fmt.Errorf("%s %s still there (%v)", o.Resource.Resource, o.Name, err)
			}
		}
		return nil
	})
	t.Logf("garbage collector deleted the cluster-scoped objects %v after the namespace deletion", time.Since(deleted).Round(time.Millisecond))
	eventually(t, 60*time.Second, func() error {
		if _, err := admin.CoreV1().Namespaces().Get(ctx, testNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s not gone yet: %v", testNamespace, err)
		}
		return nil
	})
}

// TestRemoval: deleting the namespace makes the agent say goodbye, delete
// its ClusterRoleBindings and return nil; the garbage collector deletes the
// ClusterRole it may no longer delete.
func TestRemoval(t *testing.T) {
	needCluster(t)
	e := setup(t, removalCluster)
	hub := newTestHub(t)
	a := startAgent(t, e, hub, testClusterID, agentToken(t, e, t.TempDir(), nil), nil)
	_, next := hub.waitEvent(0, 20*time.Second, "Ready", isState(testClusterID, tunnel.StateReady))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := adminClient(t, e.c)
	// Wait for the ownerReferences, then hold the namespace in
	// Terminating with a finalizer, so that what is gone before the test
	// lets go was deleted by the agent, not by the garbage collector.
	eventually(t, 10*time.Second, func() error {
		cr, err := admin.RbacV1().ClusterRoles().Get(ctx, install.AgentName, metav1.GetOptions{})
		if err != nil || len(cr.OwnerReferences) == 0 {
			return fmt.Errorf("ClusterRole %s not owned yet: %v", install.AgentName, err)
		}
		return nil
	})
	const hold = "eco.dev/test-hold"
	patch := func(finalizers []string) {
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": finalizers}})
		if _, err := admin.CoreV1().Namespaces().Patch(ctx, testNamespace, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			t.Fatalf("patching namespace finalizers: %v", err)
		}
	}
	patch([]string{hold})
	released := false
	t.Cleanup(func() {
		if !released {
			patch(nil)
		}
	})

	deleted := time.Now()
	if out, err := e.c.Kubectl(ctx, "delete", "namespace", testNamespace, "--wait=false").CombinedOutput(); err != nil {
		t.Fatalf("kubectl delete namespace: %v\n%s", err, out)
	}
	ev, next := hub.waitEvent(next, 10*time.Second, "Goodbye", func(ev tunnel.Event) bool { return ev.Kind == tunnel.EventGoodbye })
	t.Logf("goodbye %v after the namespace deletion", time.Since(deleted).Round(time.Millisecond))
	if want := "namespace " + testNamespace + " is being deleted"; ev.Reason != want {
		t.Errorf("goodbye reason %q, want %q", ev.Reason, want)
	}
	if err := a.wait(25 * time.Second); err != nil {
		t.Fatalf("Run after removal: %v", err)
	}
	t.Logf("Run returned %v after the namespace deletion", time.Since(deleted).Round(time.Millisecond))
	dev, _ := hub.waitEvent(next, 5*time.Second, "Disconnected", func(ev tunnel.Event) bool { return ev.Kind == tunnel.EventDisconnected })
	if !errors.Is(dev.Err, tunnel.ErrGoodbye) {
		t.Errorf("Disconnected with %v, want ErrGoodbye", dev.Err)
	}

	// The agent deleted the bindings while the namespace still exists.
	ns, err := admin.CoreV1().Namespaces().Get(ctx, testNamespace, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp == nil {
		t.Fatalf("namespace should still be terminating (held): %v %+v", err, ns)
	}
	for _, name := range []string{install.AdminsGroup, install.EditorsGroup, install.ViewersGroup, install.AgentName} {
		if _, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ClusterRoleBinding %s after removal: %v, want NotFound", name, err)
		}
	}
	// Its own ClusterRole it may or may not still delete (the RBAC
	// authorizer learns of the deleted binding a moment later); if not,
	// the garbage collector does once the namespace is gone.
	_, err = admin.RbacV1().ClusterRoles().Get(ctx, install.AgentName, metav1.GetOptions{})
	t.Logf("ClusterRole %s right after removal: %v", install.AgentName, err)
	released = true
	patch(nil)
	eventually(t, 90*time.Second, func() error {
		if _, err := admin.RbacV1().ClusterRoles().Get(ctx, install.AgentName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("ClusterRole %s: %v, want NotFound once the namespace is gone", install.AgentName, err)
		}
		return nil
	})
	t.Logf("ClusterRole gone %v after the namespace deletion", time.Since(deleted).Round(time.Millisecond))
	for _, ev := range hub.eventsSince(next) {
		if ev.Kind == tunnel.EventConnected {
			t.Errorf("the agent connected again after its goodbye: %+v", ev)
		}
	}
}
