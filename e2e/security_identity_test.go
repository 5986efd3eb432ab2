package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/pki"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// requestToken asks c's API server for a token of ServiceAccount ns/sa
// with audiences (none: the API server's own) and a 10-minute expiry.
func requestToken(t *testing.T, c *localcluster.Cluster, ns, sa string, audiences ...string) string {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	secs := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, Audiences: audiences}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// ensureServiceAccount creates namespace ns and ServiceAccount ns/sa in c.
func ensureServiceAccount(t *testing.T, c *localcluster.Cluster, ns, sa string) {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// legacyToken creates a long-lived Secret-based token for ns/sa in c (the
// kind Kubernetes minted before TokenRequest) and returns it.
func legacyToken(t *testing.T, c *localcluster.Cluster, ns, sa string) string {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "eco-legacy-token", Namespace: ns, Annotations: map[string]string{corev1.ServiceAccountNameKey: sa}},
		Type:       corev1.SecretTypeServiceAccountToken,
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := cs.CoreV1().Secrets(ns).Get(ctx, s.Name, metav1.GetOptions{})
		if err == nil && len(got.Data[corev1.ServiceAccountTokenKey]) > 0 {
			return string(got.Data[corev1.ServiceAccountTokenKey])
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token controller did not fill Secret %s/%s: %v", ns, s.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// forgeToken re-signs the claims of a real token with a key of its own
// under the real token's key ID.
func forgeToken(t *testing.T, real string) string {
	t.Helper()
	parts := strings.Split(real, ".")
	var header struct {
		Kid string `json:"kid"`
	}
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	json.Unmarshal(h, &header)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", header.Kid))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// plainAgent dials the hub as a plain program holding cluster id's install
// YAML credential, presenting token.
func (w *world) plainAgent(t *testing.T, token string) error {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.hub.CAPEM)
	s, err := tunnel.Dial(t.Context(), tunnel.ClientConfig{
		URL:       "wss" + strings.TrimPrefix(w.hub.URL, "https") + hub.TunnelPath,
		ClusterID: w.id,
		Token:     w.setup.Config.Token,
		TLSConfig: &tls.Config{RootCAs: roots},
		Hello:     tunnel.Hello{AgentVersion: "plain", Fingerprint: "00000000-0000-0000-0000-000000000000", IdentityToken: token},
		Proxy:     func(*http.Request) (*url.URL, error) { return nil, nil },
	})
	if err == nil {
		s.Close()
		return errors.New("admitted")
	}
	return err
}

// TestSecurityIdentity holds the identity rows of the security suite: each
// names an attack by someone holding cluster A's install YAML (its agent
// credential), made against a real hub while A's real agent is connected,
// and the refusal it must get. The attacker uses real tokens from real
// clusters: A itself (other ServiceAccounts, other audiences), and a
// second cluster B.
func TestSecurityIdentity(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	other := clustertest.Start(t, localcluster.Config{Name: "other"})
	aud := w.setup.Config.HubURL
	ensureServiceAccount(t, cluster, "eco-evil", install.AgentName)
	ensureServiceAccount(t, other, install.DefaultNamespace, install.AgentName)
	t.Cleanup(func() {
		cluster.Kubectl(context.Background(), "delete", "namespace", "eco-evil", "--ignore-not-found", "--wait=false").Run()
	})
	ownToken := requestToken(t, cluster, install.DefaultNamespace, install.AgentName, aud)

	var before hub.IdentityJSON
	if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/identity", "", nil, &before); err != nil {
		t.Fatal(err)
	}
	if before.State != "Pinned" || len(before.KeyIDs) == 0 || before.PinnedIssuer == "" || before.Fingerprint == "" {
		t.Fatalf("the real agent's first connect pinned %+v", before)
	}
	pinned := append([]string{before.PinnedIssuer, before.Fingerprint}, before.KeyIDs...)

	tests := []struct {
		attack string
		token  string
		reason string // the failure admins see
	}{
		{"the YAML used from a plain program without a ServiceAccount token", "", "missing"},
		{"the YAML used from a plain program with a made-up token", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl", "signature"},
		{"the YAML used from a plain program with something that is not a JWT", "bm90.YS5qd3Q", "malformed"},
		{"the YAML replayed in a second real cluster: its eco-agent token for the hub", requestToken(t, other, install.DefaultNamespace, install.AgentName, aud), "unknown-key"},
		{"a token of A's eco-agent for another audience (the API server's)", requestToken(t, cluster, install.DefaultNamespace, install.AgentName), "audience"},
		{"a token of another ServiceAccount of A's agent namespace, for the hub", requestToken(t, cluster, install.DefaultNamespace, "default", aud), "subject"},
		{"a token of an eco-agent ServiceAccount in another namespace of A, for the hub", requestToken(t, cluster, "eco-evil", install.AgentName, aud), "subject"},
		{"A's own agent token with a forged signature under A's key ID", forgeToken(t, ownToken), "signature"},
		{"a long-lived legacy Secret token of A's eco-agent", legacyToken(t, cluster, install.DefaultNamespace, install.AgentName), "issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.attack, func(t *testing.T) {
			err := w.plainAgent(t, tt.token)
			var rej *tunnel.RejectError
			if !errors.As(err, &rej) || rej.StatusCode != http.StatusForbidden || !strings.HasPrefix(rej.Reason, "agent identity not proven") {
				t.Fatalf("Dial: %v, want the generic 403 refusal", err)
			}
			for _, v := range pinned {
				if strings.Contains(rej.Reason, v) {
					t.Fatalf("the refusal %q reveals the pinned %q", rej.Reason, v)
				}
			}
			var id hub.IdentityJSON
			if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/identity", "", nil, &id); err != nil {
				t.Fatal(err)
			}
			if id.LastFailure == nil || id.LastFailure.Reason != tt.reason || !id.LastFailure.WhileConnected {
				t.Fatalf("admins see %+v, want reason %q while connected", id.LastFailure, tt.reason)
			}
			// The live session keeps serving real kubectl.
			if out := mustKubectl(t, w.kc, "get", "namespace", "kube-system", "-o", "name"); strings.TrimSpace(out) != "namespace/kube-system" {
				t.Fatalf("kubectl through the hub after the attack: %q", out)
			}
		})
	}
	if st, _ := w.hub.Status(ctx, w.id); st.State != string(store.StateConnected) {
		t.Fatalf("the cluster is %s (%s) after the attacks", st.State, st.Reason)
	}
	// Nothing pinned reaches a viewer: the cluster, its status and
	// history as a viewer reads them.
	var tok struct{ Token string }
	if err := w.hub.Do(ctx, "POST", "/api/v1/tokens", "", map[string]string{"name": "viewer", "role": "member"}, &tok); err != nil {
		t.Fatal(err)
	}
	if err := w.hub.Do(ctx, "POST", "/api/v1/grants", "", map[string]string{"kind": "user", "subject": "viewer", "role": "view"}, nil); err != nil {
		t.Fatal(err)
	}
	// The note of the refused takeovers goes through the cluster's status
	// queue, apart from the refusals: awaited before reading.
	waitUntil(t, "the history's note of the refused takeovers", func() bool {
		var hist struct{ Items []hub.TransitionJSON }
		if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/history", "", nil, &hist); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(fmt.Sprint(hist.Items), "refused an agent whose identity is not proven")
	})
	var seen strings.Builder
	for _, p := range []string{"/api/v1/clusters/" + w.id, "/api/v1/clusters/" + w.id + "/history", "/api/v1/clusters"} {
		var raw json.RawMessage
		if err := w.hub.Do(ctx, "GET", p, tok.Token, nil, &raw); err != nil {
			t.Fatal(err)
		}
		seen.Write(raw)
	}
	for _, v := range pinned {
		if strings.Contains(seen.String(), v) {
			t.Errorf("a viewer reads the pinned %q", v)
		}
	}
	if !strings.Contains(seen.String(), "refused an agent whose identity is not proven") {
		t.Errorf("the history does not show the refused takeover: %s", seen.String())
	}
	var apiErr *localeco.APIError
	if err := w.hub.Do(ctx, "GET", "/api/v1/clusters/"+w.id+"/identity", tok.Token, nil, nil); !errors.As(err, &apiErr) || apiErr.Code != http.StatusForbidden {
		t.Errorf("a viewer reads the identity: %v", err)
	}
	mreq, _ := http.NewRequestWithContext(ctx, "GET", w.hub.URL+"/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+w.hub.AdminToken) // metrics are for admins
	resp, err := w.hub.Client().Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "eco_hub_agent_takeover_refusals_total 9") {
		t.Errorf("the takeover metric does not count the 9 attempts")
	}
}

// TestSecurityProvenRestart: a real agent restarted while its old session
// lingers, or after it ended, is Connected again at once.
func TestSecurityProvenRestart(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	// Restart with the old session gone (the pod was replaced).
	if err := w.stopAgent(); err != nil {
		t.Fatal(err)
	}
	w.hub.WaitState(ctx, w.id, store.StateDisconnected, 10*time.Second)
	start := time.Now()
	w.startAgent(w.setup.AgentConfig())
	for !w.hub.Tunnels().Connected(w.id) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the restarted agent did not connect")
		}
		time.Sleep(time.Millisecond)
	}
	tunnelUp := time.Since(start)
	if _, err := w.hub.WaitState(ctx, w.id, store.StateConnected, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	connected := time.Since(start)
	t.Logf("restarted agent: tunnel registered %s after start, status Connected after %s", tunnelUp.Round(time.Millisecond), connected.Round(time.Millisecond))
	if tunnelUp > 300*time.Millisecond {
		t.Errorf("a restarted agent took %s to be connected, want <= 300ms", tunnelUp)
	}
	// A second proven agent while the first one's session lives (a new
	// pod up before the old one is gone): it replaces it at once.
	before := w.hub.Tunnels().Sessions()
	second := w.setup.AgentConfig()
	second.HealthAddr = "127.0.0.1:0"
	cfg := second
	cfg.Logger = logger(t).With("side", "second")
	cfg.CheckInterval = time.Second
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- agent.Run(actx, cfg) }()
	defer func() { cancel(); <-done }()
	for {
		s := w.hub.Tunnels().Sessions()
		if len(s) == 1 && len(before) == 1 && s[0].SessionID != before[0].SessionID {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the second proven agent did not replace the first")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("a second proven agent replaced the live session %s after start", time.Since(start).Round(time.Millisecond))
}

// TestSecurityPrePinSquatting: with approval required, an attacker who
// applies the YAML to their own cluster before the real one connects pins
// nothing usable: the pin waits for an administrator, who sees the
// squatter's keys, resets, and approves the real cluster's.
func TestSecurityPrePinSquatting(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var c hub.ClusterJSON
	if err := h.Do(ctx, "POST", "/api/v1/clusters", "", map[string]any{"name": "held", "requireApproval": true}, &c); err != nil {
		t.Fatal(err)
	}
	squat := clustertest.Start(t, localcluster.Config{Name: "squat"})
	// The squatter runs the real agent in their own cluster.
	sq, err := localeco.Install(ctx, h, squat, c.ID, filepath.Join(dir, "squatter"))
	if err != nil {
		t.Fatal(err)
	}
	stopSquatter := runAgent(t, sq, "squatter")
	st, err := h.WaitState(ctx, c.ID, store.StateFailing, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Reason, "awaiting an administrator's approval") {
		t.Fatalf("status %q", st.Reason)
	}
	var id hub.IdentityJSON
	h.Do(ctx, "GET", "/api/v1/clusters/"+c.ID+"/identity", "", nil, &id)
	if id.State != "AwaitingApproval" || h.Tunnels().Connected(c.ID) {
		t.Fatalf("after the squatter: %+v, connected %v", id, h.Tunnels().Connected(c.ID))
	}
	squatterKids := slices.Clone(id.KeyIDs)
	// The real cluster's agent is refused too while the pin waits.
	real, err := localeco.Install(ctx, h, cluster, c.ID, filepath.Join(dir, "real"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cluster.Kubectl(context.Background(), "delete", "namespace", install.DefaultNamespace, "--ignore-not-found", "--wait=true", "--timeout=60s").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrolebinding", "eco:admins", "eco:viewers", "eco-agent", "--ignore-not-found").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrole", "eco-agent", "--ignore-not-found").Run()
	})
	stopSquatter()
	stopReal := runAgent(t, real, "real")
	defer stopReal()
	time.Sleep(2 * time.Second)
	if h.Tunnels().Connected(c.ID) {
		t.Fatal("an agent is connected while the pin awaits approval")
	}
	// The admin resets the squatter's pin; the real agent pins next.
	if err := h.Do(ctx, "POST", "/api/v1/clusters/"+c.ID+"/identity/reset", "", nil, &id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.Do(ctx, "GET", "/api/v1/clusters/"+c.ID+"/identity", "", nil, &id)
		if id.State == "AwaitingApproval" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the real agent did not pin: %+v", id)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Join(id.KeyIDs, ",") == strings.Join(squatterKids, ",") {
		t.Fatalf("the real cluster pinned the squatter's keys %v", id.KeyIDs)
	}
	if err := h.Do(ctx, "POST", "/api/v1/clusters/"+c.ID+"/identity/approve", "", nil, &id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WaitState(ctx, c.ID, store.StateConnected, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// runAgent runs the agent of setup in-process until the returned stop is
// called (or the test ends).
func runAgent(t *testing.T, setup *localeco.AgentSetup, side string) (stop func()) {
	cfg := setup.AgentConfig()
	cfg.Logger = logger(t).With("side", side)
	cfg.CheckInterval = time.Second
	cfg.BackoffMax = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestSecurityKeyRotation: a real cluster rotates its service-account
// signing key (the new key signs, the old one still verifies, as
// Kubernetes documents it). A restarted agent presents a token signed by
// the new key: the hub takes the new keys through the cluster's proven,
// live agent, follows the rotation and admits it.
func TestSecurityKeyRotation(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	rc := clustertest.Start(t, localcluster.Config{Name: "rotate"})
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := h.Import(ctx, "rotating")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := localeco.Install(ctx, h, rc, c.ID, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, setup, "first")
	if _, err := h.WaitState(ctx, c.ID, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var id hub.IdentityJSON
	if err := h.Do(ctx, "GET", "/api/v1/clusters/"+c.ID+"/identity", "", nil, &id); err != nil || len(id.KeyIDs) != 1 {
		t.Fatalf("pinned before the rotation: %+v, %v", id, err)
	}
	first := h.Tunnels().Sessions()[0].SessionID

	// The rotation: a new signing key; the key file lists old and new.
	pkiDir := filepath.Join(rc.Dir, "pki")
	oldPub, err := os.ReadFile(filepath.Join(pkiDir, "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	newKey, newPub, err := pki.NewRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(pkiDir, map[string][]byte{"sa.key": newKey, "sa.pub": append(append([]byte{}, oldPub...), newPub...)}); err != nil {
		t.Fatal(err)
	}
	if err := rc.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The restarted agent's token is signed by the new key.
	if err := setup.RefreshToken(ctx); err != nil {
		t.Fatal(err)
	}
	runAgent(t, setup, "second")
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := h.Tunnels().Sessions()
		if len(s) == 1 && s[0].SessionID != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent with a new-key token was not admitted: sessions %+v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := h.Do(ctx, "GET", "/api/v1/clusters/"+c.ID+"/identity", "", nil, &id); err != nil || len(id.KeyIDs) != 2 || id.KeysUpdatedAt == nil || !id.KeysUpdatedAt.After(*id.PinnedAt) {
		t.Fatalf("pinned after the rotation: %+v, %v", id, err)
	}
	t.Cleanup(func() {
		rc.Kubectl(context.Background(), "delete", "namespace", install.DefaultNamespace, "--ignore-not-found", "--wait=false").Run()
	})
}
