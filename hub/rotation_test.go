package hub_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// rotationAgent is a fake agent that announces the credential-rotation
// capability and keeps what the hub sends.
type rotationAgent struct {
	kept chan tunnel.Credential
	sess *tunnel.ClientSession
}

func (e *env) rotationAgent(id, credential string, handler http.Handler) (*rotationAgent, error) {
	e.t.Helper()
	a := &rotationAgent{kept: make(chan tunnel.Credential, 4)}
	var err error
	a.sess, err = e.agentWith(agentOpts{id: id, credential: credential, fingerprint: "fp", handler: handler,
		token: e.issuer.token(e.t, e.srv.URL, nil), keys: e.issuer,
		capabilities: []string{tunnel.CapabilityCredential},
		onCredential: func(_ context.Context, c tunnel.Credential) error { a.kept <- c; return nil },
	})
	return a, err
}

func (e *env) rotate(id, token string) (hub.RotationJSON, int) {
	e.t.Helper()
	var r hub.RotationJSON
	code := e.do("POST", "/api/v1/clusters/"+id+"/rotate-credential", token, "", &r)
	return r, code
}

func (e *env) cluster(id string) hub.ClusterJSON {
	e.t.Helper()
	var c hub.ClusterJSON
	if code := e.do("GET", "/api/v1/clusters/"+id, e.admin, "", &c); code != 200 {
		e.t.Fatalf("GET cluster: %d", code)
	}
	return c
}

// ticker is an API server handler whose watch sends a numbered line every
// 10 ms until the client goes away.
var ticker = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(w, "{\"n\":%d}\n", i); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
})

// TestRotateCredentialLive rotates the credential of a cluster whose agent
// is connected and streaming: the agent gets the new credential over the
// tunnel and acknowledges it, the stream goes on without a gap, the
// install YAML carries the new credential (the same on every fetch), the
// old one works until the grace period ends and is refused after it with
// a reason that says to re-apply the YAML.
func TestRotateCredentialLive(t *testing.T) {
	const grace = time.Minute
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.CredentialGrace = grace }})
	c := e.createCluster("rot")
	if c.Credential.Generation != 0 || c.Credential.RotationPending || c.Credential.SecretKey != "current" {
		t.Fatalf("new cluster's credential = %+v", c.Credential)
	}
	cred0 := e.credential(c.ID)
	a, err := e.rotationAgent(c.ID, cred0, ticker)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)

	// A watch through the hub, running across the rotation.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/clusters/"+c.ID+"/k8s/api/v1/pods?watch=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := 0
	readLines := func(n int) {
		t.Helper()
		for range n {
			if !lines.Scan() {
				t.Fatalf("the watch ended after line %d: %v", next, lines.Err())
			}
			if want := fmt.Sprintf(`{"n":%d}`, next); lines.Text() != want {
				t.Fatalf("watch line %q, want %q: the stream lost something", lines.Text(), want)
			}
			next++
		}
	}
	readLines(5)

	r, code := e.rotate(c.ID, e.admin)
	if code != 200 || r.Generation != 1 || r.Delivery != hub.DeliverySent {
		t.Fatalf("rotate = %d %+v", code, r)
	}
	if d := time.Until(r.PreviousValidUntil); d < grace-10*time.Second || d > grace+time.Second {
		t.Fatalf("previous generation valid until %v, want about %v from now", r.PreviousValidUntil, grace)
	}
	var kept tunnel.Credential
	select {
	case kept = <-a.kept:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent was not sent the new credential")
	}
	cred1 := e.credential(c.ID)
	if kept.Generation != 1 || kept.Token != cred1 || cred1 == cred0 {
		t.Fatalf("agent kept generation %d (same as the YAML's: %v; same as the old: %v)", kept.Generation, kept.Token == cred1, cred1 == cred0)
	}
	if again := e.credential(c.ID); again != cred1 {
		t.Fatal("the install YAML differs between fetches after the rotation")
	}
	waitFor(t, "the rotation to complete", func() bool { return !e.cluster(c.ID).Credential.RotationPending })
	readLines(20) // the watch goes on, in order
	if a.sess.Err() != nil {
		t.Fatalf("the agent's session ended: %v", a.sess.Err())
	}
	cancel()

	// Within the grace period the old credential still connects; after
	// it, it is refused with the reason, and the new one connects.
	if _, err := e.rotationAgent(c.ID, cred0, nil); err != nil {
		t.Fatalf("old credential within the grace period: %v", err)
	}
	e.waitState(c.ID, store.StateConnected)
	e.hub.Tunnels().Disconnect(c.ID, "test")
	e.waitState(c.ID, store.StateDisconnected)
	e.skew.Store(int64(grace + time.Second))
	_, err = e.rotationAgent(c.ID, cred0, nil)
	var rej *tunnel.RejectError
	if !errors.As(err, &rej) || rej.StatusCode != http.StatusForbidden || !strings.Contains(rej.Reason, "re-apply the install YAML") {
		t.Fatalf("old credential after the grace period: %v, want 403 saying to re-apply the install YAML", err)
	}
	st := e.waitState(c.ID, store.StateFailing)
	if !strings.Contains(st.Reason, "credential rotated") || !strings.Contains(st.Reason, "re-apply the install YAML") || strings.Contains(st.Reason, cred0) {
		t.Fatalf("status reason %q does not say the credential was rotated (or shows it)", st.Reason)
	}
	if _, err := e.rotationAgent(c.ID, cred1, nil); err != nil {
		t.Fatalf("new credential: %v", err)
	}
	e.waitState(c.ID, store.StateConnected)
}

// TestRotateCredentialDelivery: an agent without the capability, or no
// agent, keeps working with its old credential until the grace period
// ends, and the answer says to re-apply the YAML; only admins rotate.
func TestRotateCredentialDelivery(t *testing.T) {
	e := newEnv(t)
	old := e.createCluster("old-agent")
	if _, err := e.agent(old.ID, e.credential(old.ID), "fp", nil); err != nil {
		t.Fatal(err)
	}
	e.waitState(old.ID, store.StateConnected)
	offline := e.createCluster("offline")

	var member hub.TokenJSON
	if code := e.do("POST", "/api/v1/tokens", e.admin, `{"name":"max","role":"member"}`, &member); code != 201 {
		t.Fatalf("member token: %d", code)
	}
	if code := e.do("POST", "/api/v1/grants", e.admin, `{"kind":"user","subject":"max","role":"admin"}`, nil); code != 201 {
		t.Fatalf("grant: %d", code)
	}
	for _, tt := range []struct {
		name, id, token string
		code            int
		delivery        string
	}{
		{"agent without the capability", old.ID, e.admin, 200, hub.DeliveryAgentOutdated},
		{"no agent connected", offline.ID, e.admin, 200, hub.DeliveryNotConnected},
		{"unknown cluster", "c-aaaaaaaaaa", e.admin, 404, ""},
		{"a member, even a cluster admin, may not rotate", offline.ID, member.Token, 403, ""},
		{"no token", offline.ID, "", 401, ""},
	} {
		r, code := e.rotate(tt.id, tt.token)
		if code != tt.code || r.Delivery != tt.delivery {
			t.Errorf("%s: %d %+v, want %d %q", tt.name, code, r, tt.code, tt.delivery)
		}
		if tt.delivery != "" && tt.delivery != hub.DeliverySent && !strings.Contains(r.Message, "re-apply the install YAML") {
			t.Errorf("%s: message %q does not say to re-apply the install YAML", tt.name, r.Message)
		}
	}
	if got := e.cluster(offline.ID).Credential; got.Generation != 1 || !got.RotationPending || got.PreviousValidUntil == nil {
		t.Fatalf("offline cluster's credential after rotation: %+v", got)
	}
	// The history is written by the cluster's status queue, a moment later.
	var hist struct{ Items []hub.TransitionJSON }
	noted := false
	for deadline := time.Now().Add(5 * time.Second); !noted && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		e.do("GET", "/api/v1/clusters/"+offline.ID+"/history", e.admin, "", &hist)
		for _, tr := range hist.Items {
			noted = noted || strings.Contains(tr.Reason, "rotated to generation 1") && strings.Contains(tr.Reason, "re-apply the install YAML")
		}
	}
	if !noted {
		t.Fatalf("history does not note the rotation: %+v", hist.Items)
	}
	if e.hub.Tunnels().Connected(old.ID) != true {
		t.Fatal("the old agent's session ended")
	}
}

// TestSecretKeyRotation: a hub given a new secret key and the previous
// one still renders the YAML of clusters whose credential the previous
// key derived; rotating moves them to the new key; a hub without the
// previous key then needs nothing else.
func TestSecretKeyRotation(t *testing.T) {
	var st store.Store
	keyA := []byte(strings.Repeat("a", 32))
	keyB := []byte(strings.Repeat("b", 32))
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { st, c.SecretKey = c.Store, keyA }})
	c := e.createCluster("keys")
	credA := e.credential(c.ID)

	newHub := func(previous ...[]byte) *hub.Hub {
		h, err := hub.New(hub.Config{Store: st, ExternalURL: e.srv.URL, SecretKey: keyB, PreviousSecretKeys: previous,
			Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	transition, after := newHub(keyA), newHub()
	if _, err := after.InstallYAML(c.ID); err == nil || !strings.Contains(err.Error(), "no longer has") {
		t.Fatalf("YAML without the key that derived the credential: %v", err)
	}
	y, err := transition.InstallYAML(c.ID)
	if err != nil || !strings.Contains(string(y), b64(credA)) {
		t.Fatalf("YAML during the transition: %v (has the previous credential: %v)", err, strings.Contains(string(y), b64(credA)))
	}
	if _, err := transition.RotateCredential(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	y, err = after.InstallYAML(c.ID)
	if err != nil || strings.Contains(string(y), b64(credA)) {
		t.Fatalf("YAML from the new key after rotation: %v", err)
	}
	if _, err := hub.New(hub.Config{Store: st, ExternalURL: e.srv.URL, SecretKey: keyB, PreviousSecretKeys: [][]byte{[]byte("short")}}); err == nil {
		t.Fatal("a short previous key was accepted")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// b64 is how a Secret's data shows s in YAML.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestRotateCredentialAgentCannotStore: an agent that cannot write its
// Secret answers with the error; the rotation stays pending, the history
// says to re-apply the YAML, and the session goes on. The next rotation it
// can store completes.
func TestRotateCredentialAgentCannotStore(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("stuck")
	fail := make(chan error, 1)
	fail <- errors.New(`secrets "eco-agent" is forbidden: User "system:serviceaccount:eco-system:eco-agent" cannot patch resource "secrets"`)
	kept := make(chan tunnel.Credential, 4)
	if _, err := e.agentWith(agentOpts{id: c.ID, credential: e.credential(c.ID), fingerprint: "fp",
		token: e.issuer.token(t, e.srv.URL, nil), keys: e.issuer, capabilities: []string{tunnel.CapabilityCredential},
		onCredential: func(_ context.Context, cred tunnel.Credential) error {
			select {
			case err := <-fail:
				return err
			default:
			}
			kept <- cred
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	if r, code := e.rotate(c.ID, e.admin); code != 200 || r.Delivery != hub.DeliverySent {
		t.Fatalf("rotate = %d %+v", code, r)
	}
	waitFor(t, "the failed acknowledgement in the history", func() bool {
		var hist struct{ Items []hub.TransitionJSON }
		e.do("GET", "/api/v1/clusters/"+c.ID+"/history", e.admin, "", &hist)
		for _, tr := range hist.Items {
			if strings.Contains(tr.Reason, "could not store credential generation 1") && strings.Contains(tr.Reason, "re-apply the install YAML") {
				return true
			}
		}
		return false
	})
	if got := e.cluster(c.ID).Credential; !got.RotationPending || got.Generation != 1 {
		t.Fatalf("after the failed acknowledgement: %+v, want generation 1 pending", got)
	}
	if !e.hub.Tunnels().Connected(c.ID) {
		t.Fatal("the session ended")
	}
	if r, _ := e.rotate(c.ID, e.admin); r.Generation != 2 {
		t.Fatalf("second rotation: %+v", r)
	}
	if got := recvCred(t, kept); got.Generation != 2 || got.Token != e.credential(c.ID) {
		t.Fatalf("the agent kept generation %d", got.Generation)
	}
	waitFor(t, "the second rotation to complete", func() bool { return !e.cluster(c.ID).Credential.RotationPending })
}

func recvCred(t *testing.T, ch <-chan tunnel.Credential) tunnel.Credential {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the agent was not sent a credential")
	}
	return tunnel.Credential{}
}

// TestGraceEndsStaleSession: an agent too old to take the new credential
// keeps its session until the grace period ends; then the session is
// ended and its reconnect with the old credential refused with the
// reason, while an agent that took the new credential keeps its session.
func TestGraceEndsStaleSession(t *testing.T) {
	const grace = 500 * time.Millisecond
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.CredentialGrace = grace }})
	old, current := e.createCluster("old-agent"), e.createCluster("current-agent")
	oldCred := e.credential(old.ID)
	oldSess, err := e.agent(old.ID, oldCred, "fp", nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.rotationAgent(current.ID, e.credential(current.ID), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(old.ID, store.StateConnected)
	e.waitState(current.ID, store.StateConnected)
	ro, _ := e.rotate(old.ID, e.admin)
	if ro.Delivery != hub.DeliveryAgentOutdated {
		t.Fatalf("rotation of the old agent: %+v", ro)
	}
	if r, _ := e.rotate(current.ID, e.admin); r.Delivery != hub.DeliverySent {
		t.Fatalf("rotation of the current agent: %+v", r)
	}
	// The session ends when the grace period does, not before: judged by
	// when it ended, not by a look at some moment within the grace period
	// (the second rotation's request alone may outlast it on a loaded
	// machine).
	select {
	case <-oldSess.Done():
		if ended := time.Now(); ended.Before(ro.PreviousValidUntil) {
			t.Fatalf("the old agent's session ended %v before its grace period did: %v", ro.PreviousValidUntil.Sub(ended), oldSess.Err())
		}
	case <-time.After(grace + 10*time.Second):
		t.Fatal("the old agent's session outlived the grace period")
	}
	if err := oldSess.Err(); !errors.Is(err, tunnel.ErrDisconnected) || !strings.Contains(err.Error(), "re-apply the install YAML") {
		t.Fatalf("the old agent's session ended with %v, want the hub's reason", err)
	}
	if a.sess.Err() != nil {
		t.Fatalf("the current agent's session ended: %v", a.sess.Err())
	}
	e.waitState(old.ID, store.StateDisconnected)
	_, err = e.agent(old.ID, oldCred, "fp", nil)
	var rej *tunnel.RejectError
	if !errors.As(err, &rej) || !strings.Contains(rej.Reason, "re-apply the install YAML") {
		t.Fatalf("the old agent's reconnect: %v", err)
	}
}
