package hub_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// clusterIssuer is the service-account issuer of the test clusters, as
// kube-apiserver's --service-account-issuer names it.
const clusterIssuer = "https://kubernetes.default.svc.cluster.local"

// issuer is a cluster's service-account issuer: it signs tokens with its
// newest key and publishes all of its keys.
type issuer struct {
	iss  string
	mu   sync.Mutex
	keys []*rsa.PrivateKey // newest first
	kids []string
}

func newIssuer(t testing.TB, iss string) *issuer {
	is := &issuer{iss: iss}
	is.rotate(t)
	return is
}

// rotate adds a new signing key; the old ones stay published.
func (is *issuer) rotate(t testing.TB) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append([]*rsa.PrivateKey{k}, is.keys...)
	is.kids = append([]string{fmt.Sprintf("kid-%d-%d", len(is.kids), time.Now().UnixNano())}, is.kids...)
}

func (is *issuer) jwks() []byte {
	is.mu.Lock()
	defer is.mu.Unlock()
	set := jose.JSONWebKeySet{}
	for i, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: is.kids[i], Algorithm: "RS256", Use: "sig"})
	}
	b, _ := json.Marshal(set)
	return b
}

// tokenClaims are what a Kubernetes ServiceAccount token carries.
type tokenClaims struct {
	jwt.Claims
	Kube map[string]any `json:"kubernetes.io,omitempty"`
}

// token mints the agent's identity token for audience aud, after mod.
func (is *issuer) token(t testing.TB, aud string, mod func(*tokenClaims)) string {
	t.Helper()
	now := time.Now()
	c := tokenClaims{
		Claims: jwt.Claims{
			Issuer: is.iss, Subject: "system:serviceaccount:" + install.DefaultNamespace + ":" + install.AgentName,
			Audience: jwt.Audience{aud}, IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)),
		},
		Kube: map[string]any{
			"namespace":      install.DefaultNamespace,
			"serviceaccount": map[string]any{"name": install.AgentName, "uid": "sa-uid"},
			"pod":            map[string]any{"name": "eco-agent-0", "uid": "pod-uid"},
		},
	}
	if mod != nil {
		mod(&c)
	}
	is.mu.Lock()
	key, kid := is.keys[0], is.kids[0]
	is.mu.Unlock()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sg).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge signs claims that name keys' newest kid with a key of its own.
func (is *issuer) forge(t testing.TB, aud string) string {
	forger := newIssuer(t, is.iss)
	is.mu.Lock()
	forger.kids[0] = is.kids[0]
	is.mu.Unlock()
	return forger.token(t, aud, nil)
}

// apiServer is what a fake agent serves: its cluster's keys at
// /openid/v1/jwks (none if keys is nil) and next for the rest.
func apiServer(keys *issuer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == install.IdentityKeysPath {
			if keys == nil || r.Header.Get("Impersonate-User") != "" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(keys.jwks())
			return
		}
		if next == nil {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// identity reads the admin-only identity of cluster id.
func (e *env) identity(id string) hub.IdentityJSON {
	e.t.Helper()
	var out hub.IdentityJSON
	if code := e.do("GET", "/api/v1/clusters/"+id+"/identity", e.admin, "", &out); code != 200 {
		e.t.Fatalf("GET identity: %d", code)
	}
	return out
}

// viewable is everything a viewer or an agent could read about cluster
// id: the cluster, its status and its history, as viewer sees them.
func (e *env) viewable(id, viewer string) string {
	e.t.Helper()
	var sb strings.Builder
	for _, p := range []string{"/api/v1/clusters/" + id, "/api/v1/clusters/" + id + "/status", "/api/v1/clusters/" + id + "/history", "/api/v1/clusters"} {
		var raw json.RawMessage
		if code := e.do("GET", p, viewer, "", &raw); code != 200 {
			e.t.Fatalf("viewer GET %s: %d", p, code)
		}
		sb.Write(raw)
	}
	return sb.String()
}

func (e *env) viewer() string {
	e.t.Helper()
	secret, _, err := e.hub.NewAPIToken(e.t.Context(), "viewer", store.RoleMember)
	if err != nil {
		e.t.Fatal(err)
	}
	// A member with view on every cluster: it sees them, and must not see
	// what is pinned.
	if code := e.do("POST", "/api/v1/grants", e.admin, `{"kind":"user","subject":"viewer","role":"view"}`, nil); code != 201 && code != 409 {
		e.t.Fatalf("granting the viewer view: %d", code)
	}
	return secret
}

func (e *env) metric(name string) string {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin) // metrics are for admins
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestIdentityAttacks names, in each row, an attack by someone holding a
// cluster's install YAML (its agent credential) while the cluster's own
// agent is connected, and the refusal it must get: always the same
// generic 403, the live session untouched, nothing pinned revealed.
func TestIdentityAttacks(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("target")
	cred := e.credential(c.ID)
	// The rightful agent connects first and pins its cluster's keys.
	live, err := e.agent(c.ID, cred, "uid-target", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"kind":"Namespace","metadata":{"name":"rightful"}}`)
	}))
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	pinned := e.identity(c.ID)
	if pinned.State != "Pinned" || pinned.PinnedIssuer != clusterIssuer || len(pinned.KeyIDs) != 1 || pinned.Fingerprint != "uid-target" {
		t.Fatalf("after the first connect: %+v", pinned)
	}
	other := newIssuer(t, clusterIssuer) // another cluster, same issuer name
	aud := e.srv.URL
	mod := func(f func(*tokenClaims)) string { return e.issuer.token(t, aud, f) }
	tests := []struct {
		attack string
		token  string
		keys   *issuer // what the attacker's API server serves
		want   string  // the reason the metric counts
	}{
		{"the YAML replayed from a plain program without a token", "", nil, "missing"},
		{"a token that is not a JWT", "bm90.YS5qd3Q.eA", nil, "malformed"},
		{"alg none", unsignedToken(t, aud), nil, "malformed"},
		{"the YAML replayed in a second cluster, with that cluster's token and keys", other.token(t, aud, nil), other, "unknown-key"},
		{"a forged signature under the cluster's own key ID", e.issuer.forge(t, aud), other, "signature"},
		{"the cluster's token for another audience (the API server's)", e.issuer.token(t, clusterIssuer, nil), e.issuer, "audience"},
		{"the cluster's token of another ServiceAccount", mod(func(c *tokenClaims) {
			c.Subject = "system:serviceaccount:" + install.DefaultNamespace + ":default"
			c.Kube["serviceaccount"] = map[string]any{"name": "default"}
		}), e.issuer, "subject"},
		{"the cluster's token of eco-agent in another namespace", mod(func(c *tokenClaims) {
			c.Subject = "system:serviceaccount:evil:" + install.AgentName
			c.Kube["namespace"] = "evil"
		}), e.issuer, "subject"},
		{"the cluster's token naming another issuer", mod(func(c *tokenClaims) { c.Issuer = "https://evil.example" }), e.issuer, "issuer"},
		{"an expired token of the cluster", mod(func(c *tokenClaims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			c.NotBefore = c.IssuedAt
			c.Expiry = jwt.NewNumericDate(time.Now().Add(-50 * time.Minute))
		}), e.issuer, "expired"},
		{"a year-long token of the cluster", mod(func(c *tokenClaims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(365 * 24 * time.Hour)) }), e.issuer, "lifetime"},
	}
	viewer := e.viewer()
	for _, tt := range tests {
		t.Run(tt.attack, func(t *testing.T) {
			before := e.metric(`eco_hub_agent_identity_refusals_total{reason="` + tt.want + `"}`)
			_, err := e.agentWith(agentOpts{id: c.ID, credential: cred, fingerprint: "uid-target", token: tt.token, keys: tt.keys})
			var rej *tunnel.RejectError
			if !errors.As(err, &rej) || rej.StatusCode != http.StatusForbidden || !strings.HasPrefix(rej.Reason, "agent identity not proven") {
				t.Fatalf("Dial: %v, want the generic 403", err)
			}
			for _, secret := range append(pinned.KeyIDs, clusterIssuer, "uid-target", tt.token) {
				if secret != "" && strings.Contains(rej.Reason, secret) {
					t.Fatalf("the refusal %q reveals %q", rej.Reason, secret)
				}
			}
			if after := e.metric(`eco_hub_agent_identity_refusals_total{reason="` + tt.want + `"}`); after == before {
				t.Fatalf("refusal not counted under reason %q: %q", tt.want, after)
			}
			// The rightful agent keeps the tunnel and keeps serving.
			select {
			case <-live.Done():
				t.Fatal("the rightful agent was disconnected")
			default:
			}
			var ns struct{ Metadata struct{ Name string } }
			if code := e.do("GET", "/clusters/"+c.ID+"/k8s/api/v1/namespaces/x", e.admin, "", &ns); code != 200 || ns.Metadata.Name != "rightful" {
				t.Fatalf("proxy after the attack: %d %+v", code, ns)
			}
			if f := e.identity(c.ID).LastFailure; f == nil || f.Reason != tt.want || !f.WhileConnected || f.Detail == "" {
				t.Fatalf("admins see the failure %+v, want reason %q while connected", f, tt.want)
			}
		})
	}
	// Viewers read neither pinned values nor the failures. (The note of
	// the takeovers goes through the cluster's status queue: awaited.)
	e.waitHistory(c.ID, "refused an agent whose identity is not proven while the cluster's agent is connected")
	seen := e.viewable(c.ID, viewer)
	for _, secret := range append(pinned.KeyIDs, clusterIssuer, "uid-target") {
		if strings.Contains(seen, secret) {
			t.Errorf("a viewer reads %q", secret)
		}
	}
	if code := e.do("GET", "/api/v1/clusters/"+c.ID+"/identity", viewer, "", nil); code != http.StatusForbidden {
		t.Errorf("viewer GET identity: %d, want 403", code)
	}
	if !strings.Contains(seen, "refused an agent whose identity is not proven while the cluster's agent is connected") {
		t.Errorf("the history does not note the attempted takeovers: %s", seen)
	}
	if m := e.metric("eco_hub_agent_takeover_refusals_total"); m != fmt.Sprintf("eco_hub_agent_takeover_refusals_total %d", len(tests)) {
		t.Errorf("takeover metric %q, want %d", m, len(tests))
	}
	e.waitState(c.ID, store.StateConnected)

	// Without the rightful agent, the status says the identity is not
	// proven, and nothing more.
	live.Close()
	e.waitState(c.ID, store.StateDisconnected)
	if _, err := e.agentWith(agentOpts{id: c.ID, credential: cred, token: other.token(t, aud, nil), keys: other}); !tunnel.IsRejected(err) {
		t.Fatalf("impostor without a live session: %v", err)
	}
	st := e.waitState(c.ID, store.StateFailing)
	if !strings.HasPrefix(st.Reason, "agent identity not proven") || strings.Contains(st.Reason, clusterIssuer) {
		t.Fatalf("status reason %q", st.Reason)
	}
	// The rightful agent, restarted, is back.
	if _, err := e.agent(c.ID, cred, "uid-target", nil); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
}

func unsignedToken(t *testing.T, aud string) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(base64Std(b)), "=")
	}
	return enc(map[string]string{"alg": "none"}) + "." + enc(map[string]any{"iss": clusterIssuer, "aud": aud,
		"sub": "system:serviceaccount:eco-system:eco-agent", "exp": time.Now().Add(time.Hour).Unix()}) + ".c2ln"
}

// TestIdentityRestartReplacesAtOnce: a proven agent replaces the live
// session at once (a restarted agent pod whose old connection lingers).
func TestIdentityRestartReplacesAtOnce(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("restart")
	cred := e.credential(c.ID)
	old, err := e.agent(c.ID, cred, "uid", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	var worst time.Duration
	for i := range 5 {
		start := time.Now()
		next, err := e.agent(c.ID, cred, "uid", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !e.hub.Tunnels().Connected(c.ID) {
			t.Fatal("not connected after Dial returned")
		}
		took := time.Since(start)
		worst = max(worst, took)
		select {
		case <-old.Done():
		case <-time.After(2 * time.Second):
			t.Fatalf("restart %d: the old session was not replaced", i)
		}
		old = next
	}
	t.Logf("a proven agent replaced the live session in at most %s (Dial to registered)", worst)
	if worst > 300*time.Millisecond {
		t.Fatalf("replacing took %s, want <= 300ms", worst)
	}
	e.waitState(c.ID, store.StateConnected)
}

// TestIdentityApproval: with approval required, the first connect's keys
// wait for an administrator; an impostor who connects first (pre-pin
// squatting) pins nothing usable: every agent is refused until an
// administrator looks, resets the squatter's pin and approves the right
// one.
func TestIdentityApproval(t *testing.T) {
	e := newEnv(t)
	var c hub.ClusterJSON
	if code := e.do("POST", "/api/v1/clusters", e.admin, `{"name":"held","requireApproval":true}`, &c); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if c.IdentityState != "Unpinned" {
		t.Fatalf("identity state %q", c.IdentityState)
	}
	cred := e.credential(c.ID)
	squatter := newIssuer(t, clusterIssuer)
	sess, err := e.agentWith(agentOpts{id: c.ID, credential: cred, token: squatter.token(t, e.srv.URL, nil), keys: squatter})
	waitRefusedOnProbation(t, "squatter", sess, err)
	st := e.waitState(c.ID, store.StateFailing)
	if !strings.Contains(st.Reason, "awaiting an administrator's approval") {
		t.Fatalf("status %q", st.Reason)
	}
	if e.hub.Tunnels().Connected(c.ID) {
		t.Fatal("a squatter awaiting approval is connected")
	}
	id := e.identity(c.ID)
	if id.State != "AwaitingApproval" || len(id.KeyIDs) != 1 || id.KeyIDs[0] != squatter.kids[0] {
		t.Fatalf("identity %+v", id)
	}
	// The squatter comes back: still refused. So is the real agent.
	if _, err := e.agentWith(agentOpts{id: c.ID, credential: cred, token: squatter.token(t, e.srv.URL, nil), keys: squatter}); !tunnel.IsRejected(err) {
		t.Fatalf("squatter again: %v", err)
	}
	if _, err := e.agent(c.ID, cred, "uid", nil); !tunnel.IsRejected(err) {
		t.Fatalf("real agent while a pin awaits approval: %v", err)
	}
	// A viewer may not approve.
	if code := e.do("POST", "/api/v1/clusters/"+c.ID+"/identity/approve", e.viewer(), "", nil); code != http.StatusForbidden {
		t.Fatalf("viewer approve: %d", code)
	}
	// The admin sees keys that are not the cluster's, and resets.
	if code := e.do("POST", "/api/v1/clusters/"+c.ID+"/identity/reset", e.admin, "", &id); code != 200 || id.State != "Unpinned" {
		t.Fatalf("reset: %d %+v", code, id)
	}
	if code := e.do("POST", "/api/v1/clusters/"+c.ID+"/identity/approve", e.admin, "", nil); code != http.StatusConflict {
		t.Fatalf("approve with nothing pinned: %d", code)
	}
	sess, err = e.agent(c.ID, cred, "uid", nil)
	waitRefusedOnProbation(t, "the real agent", sess, err)
	if id = e.identity(c.ID); id.State != "AwaitingApproval" || len(id.KeyIDs) != 1 || id.KeyIDs[0] != e.issuer.kids[0] {
		t.Fatalf("after the real agent: %+v", id)
	}
	if code := e.do("POST", "/api/v1/clusters/"+c.ID+"/identity/approve", e.admin, "", &id); code != 200 || id.State != "Pinned" {
		t.Fatalf("approve: %d %+v", code, id)
	}
	if _, err := e.agent(c.ID, cred, "uid", nil); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	// Now pinned, the squatter is refused for good.
	if _, err := e.agentWith(agentOpts{id: c.ID, credential: cred, token: squatter.token(t, e.srv.URL, nil), keys: squatter}); !tunnel.IsRejected(err) {
		t.Fatalf("squatter after approval: %v", err)
	}
}

// waitRefusedOnProbation waits until the hub has refused an agent it
// admitted on probation (nothing pinned yet): Dial returns once the
// upgrade is done, and only then does the hub fetch the cluster's keys
// through the new session, pin them (here, awaiting approval) and say
// goodbye. Once the goodbye is in, so is the pin: awaited, not slept for
// (a fixed 100 ms lost the race whenever fetching the keys took longer).
// A Dial refused outright leaves nothing to wait for.
func waitRefusedOnProbation(t *testing.T, who string, sess *tunnel.ClientSession, err error) {
	t.Helper()
	if err != nil {
		if !tunnel.IsRejected(err) {
			t.Fatalf("%s: Dial: %v, want a refusal", who, err)
		}
		return
	}
	select {
	case <-sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: admitted on probation and still connected after 10 s, want a refusal", who)
	}
	if err := sess.Err(); !errors.Is(err, tunnel.ErrDisconnected) || !strings.Contains(err.Error(), "agent identity not proven") {
		t.Fatalf("%s: the session ended with %v, want the hub's refusal", who, err)
	}
}

// TestIdentityKeyRotation: the cluster rotates its keys; an agent with a
// token signed by the new key is admitted because the proven live agent
// serves the new keys, and the pin follows. The periodic refresh follows
// too.
func TestIdentityKeyRotation(t *testing.T) {
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.IdentityRefresh = 100 * time.Millisecond }})
	c := e.createCluster("rotating")
	cred := e.credential(c.ID)
	if _, err := e.agent(c.ID, cred, "uid", nil); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	first := e.identity(c.ID)
	e.issuer.rotate(t)
	deadline := time.Now().Add(5 * time.Second)
	for len(e.identity(c.ID).KeyIDs) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the pin did not follow the rotation: %+v", e.identity(c.ID))
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := e.identity(c.ID)
	if after.KeysUpdatedAt == nil || !after.KeysUpdatedAt.After(*first.KeysUpdatedAt) || !after.PinnedAt.Equal(*first.PinnedAt) {
		t.Fatalf("timestamps after rotation: %+v", after)
	}
	// The restarted agent with a new-key token is admitted.
	if _, err := e.agent(c.ID, cred, "uid", nil); err != nil {
		t.Fatal(err)
	}
	// Keys served by an unproven session are never taken: a squatter's
	// keys do not enter the pin.
	sq := newIssuer(t, clusterIssuer)
	e.agentWith(agentOpts{id: c.ID, credential: cred, token: sq.token(t, e.srv.URL, nil), keys: sq})
	for _, k := range e.identity(c.ID).KeyIDs {
		if k == sq.kids[0] {
			t.Fatal("an unproven agent's keys were pinned")
		}
	}
}

// TestIdentityRotationOnAdmit: with the periodic refresh far away, an
// agent presenting a new key is admitted when the proven live agent serves
// it.
func TestIdentityRotationOnAdmit(t *testing.T) {
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.IdentityRefresh = time.Hour }})
	c := e.createCluster("rot2")
	cred := e.credential(c.ID)
	if _, err := e.agent(c.ID, cred, "uid", nil); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	e.issuer.rotate(t)
	if _, err := e.agent(c.ID, cred, "uid", nil); err != nil {
		t.Fatalf("agent with the rotated key: %v", err)
	}
	if ids := e.identity(c.ID).KeyIDs; len(ids) != 2 {
		t.Fatalf("pinned kids %v", ids)
	}
}

// oidcIssuer is a public OIDC issuer (as EKS, AKS and GKE publish).
func oidcIssuer(t *testing.T) (*httptest.Server, *issuer) {
	var is *issuer
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": is.iss, "jwks_uri": is.iss + "/keys"})
		case "/keys":
			w.Write(is.jwks())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	is = newIssuer(t, srv.URL)
	return srv, is
}

// TestIdentityIssuer: with an OIDC issuer configured, tokens are checked
// against the issuer's published keys, nothing is pinned, and a squatter
// serving keys of its own gets nowhere.
func TestIdentityIssuer(t *testing.T) {
	var srv *httptest.Server
	var pub *issuer
	srv, pub = oidcIssuer(t)
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.IssuerClient = srv.Client() }})
	var c hub.ClusterJSON
	if code := e.do("POST", "/api/v1/clusters", e.admin, `{"name":"eks","provider":"eks","oidcIssuer":"`+srv.URL+`"}`, &c); code != 201 {
		t.Fatalf("create: %d", code)
	}
	cred := e.credential(c.ID)
	// Pre-pin squatting: a token from another cluster with its own keys.
	sq := newIssuer(t, srv.URL)
	if _, err := e.agentWith(agentOpts{id: c.ID, credential: cred, token: sq.token(t, e.srv.URL, nil), keys: sq}); !tunnel.IsRejected(err) {
		t.Fatalf("squatter with an issuer configured: %v", err)
	}
	if id := e.identity(c.ID); id.State != "Issuer" || len(id.KeyIDs) != 0 || id.LastFailure == nil || id.LastFailure.Reason != "unknown-key" {
		t.Fatalf("identity %+v", id)
	}
	// The cluster's own agent, token signed by the published key.
	if _, err := e.agentWith(agentOpts{id: c.ID, credential: cred, token: pub.token(t, e.srv.URL, nil)}); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	// Bad issuer configurations are refused.
	for _, bad := range []string{`"http://plain.example"`, `"https://x.example/?q=1"`, `"not a url"`} {
		if code := e.do("PATCH", "/api/v1/clusters/"+c.ID+"/identity", e.admin, `{"oidcIssuer":`+bad+`}`, nil); code != 400 {
			t.Errorf("PATCH oidcIssuer %s: %d, want 400", bad, code)
		}
	}
	var id hub.IdentityJSON
	if code := e.do("PATCH", "/api/v1/clusters/"+c.ID+"/identity", e.admin, `{"oidcIssuer":"","requireApproval":true}`, &id); code != 200 || id.State != "Unpinned" || !id.RequireApproval {
		t.Fatalf("PATCH back to pinning: %d %+v", code, id)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
