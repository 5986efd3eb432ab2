package hub_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// raw sends a request and returns its code and body.
func (e *env) raw(method, path, token, body string, header http.Header) (int, string) {
	e.t.Helper()
	resp, data := e.send(method, path, token, body, header)
	return resp.StatusCode, string(data)
}

// token creates a token through the API.
func (e *env) token(body string) hub.TokenJSON {
	e.t.Helper()
	var tok hub.TokenJSON
	if code, out := e.raw("POST", "/api/v1/tokens", e.admin, body, nil); code != 201 {
		e.t.Fatalf("create token %s: %d %s", body, code, out)
	} else if err := json.Unmarshal([]byte(out), &tok); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// grant creates a grant through the API.
func (e *env) grant(body string) hub.GrantJSON {
	e.t.Helper()
	var g hub.GrantJSON
	if code, out := e.raw("POST", "/api/v1/grants", e.admin, body, nil); code != 201 {
		e.t.Fatalf("create grant %s: %d %s", body, code, out)
	} else if err := json.Unmarshal([]byte(out), &g); err != nil {
		e.t.Fatal(err)
	}
	return g
}

func (e *env) listed(token string) []string {
	e.t.Helper()
	var list struct{ Items []hub.ClusterJSON }
	if code := e.do("GET", "/api/v1/clusters", token, "", &list); code != 200 {
		e.t.Fatalf("list clusters: %d", code)
	}
	var names []string
	for _, c := range list.Items {
		names = append(names, c.Name)
	}
	return names
}

// echoAgent connects cluster c with an agent end that echoes what it is
// sent and answers every access review with allow(review).
func (e *env) echoAgent(c hub.ClusterJSON, allow func(ra authorizationv1.ResourceAttributes, user string) bool) *echoLog {
	e.t.Helper()
	log := &echoLog{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		if r.URL.Path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" && r.Method == "POST" {
			var rev authorizationv1.SelfSubjectAccessReview
			json.NewDecoder(r.Body).Decode(&rev)
			rev.Status.Allowed = allow != nil && rev.Spec.ResourceAttributes != nil && allow(*rev.Spec.ResourceAttributes, r.Header.Get("Impersonate-User"))
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(rev)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "header": r.Header})
	})
	if _, err := e.agent(c.ID, e.credential(c.ID), "fp-"+c.ID, h); err != nil {
		e.t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	return log
}

type echoLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (l *echoLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r.Clone(r.Context()))
}

func (l *echoLog) last() *http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reqs) == 0 {
		return nil
	}
	return l.reqs[len(l.reqs)-1]
}

// TestClusterAccess checks grants in the API and the proxy: a member sees
// and reaches only what it was granted, with the group of its role, and a
// cluster it was not granted reads exactly as one that does not exist.
func TestClusterAccess(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.createCluster("alpha"), e.createCluster("beta"), e.createCluster("gamma")
	logA := e.echoAgent(a, nil)
	e.echoAgent(b, nil)
	alice := e.token(`{"name":"alice","role":"member"}`)
	bob := e.token(`{"name":"bob","role":"member","groups":["devs"]}`)
	nobody := e.token(`{"name":"nobody","role":"member"}`)
	e.grant(`{"kind":"user","subject":"alice","cluster":"` + a.ID + `","role":"edit"}`)
	e.grant(`{"kind":"group","subject":"devs","cluster":"` + b.ID + `","role":"view"}`)
	bobAll := e.grant(`{"kind":"user","subject":"bob","role":"view"}`)
	e.grant(`{"kind":"user","subject":"bob","cluster":"` + b.ID + `","role":"admin"}`)

	if got := strings.Join(e.listed(alice.Token), ","); got != "alpha" {
		t.Errorf("alice lists %q, want alpha", got)
	}
	if got := strings.Join(e.listed(bob.Token), ","); got != "alpha,beta,gamma" {
		t.Errorf("bob lists %q, want all three", got)
	}
	if got := e.listed(nobody.Token); len(got) != 0 {
		t.Errorf("a member without grants lists %q", got)
	}
	if got := strings.Join(e.listed(e.admin), ","); got != "alpha,beta,gamma" {
		t.Errorf("admin lists %q", got)
	}

	// Not granted and not there read the same, in the API and the proxy.
	for _, path := range []string{"", "/status", "/history", "/kubeconfig"} {
		code, body := e.raw("GET", "/api/v1/clusters/"+b.ID+path, alice.Token, "", nil)
		codeMissing, bodyMissing := e.raw("GET", "/api/v1/clusters/c-aaaaaaaaaa"+path, alice.Token, "", nil)
		if code != 404 || codeMissing != 404 || strings.ReplaceAll(body, b.ID, "ID") != strings.ReplaceAll(bodyMissing, "c-aaaaaaaaaa", "ID") {
			t.Errorf("GET cluster%s not granted: %d %s; missing: %d %s; want the same 404", path, code, body, codeMissing, bodyMissing)
		}
	}
	code, body := e.raw("GET", "/clusters/"+b.ID+"/k8s/api/v1/namespaces", alice.Token, "", nil)
	codeMissing, bodyMissing := e.raw("GET", "/clusters/c-aaaaaaaaaa/k8s/api/v1/namespaces", e.admin, "", nil)
	if code != 404 || codeMissing != 404 || strings.ReplaceAll(body, b.ID, "ID") != strings.ReplaceAll(bodyMissing, "c-aaaaaaaaaa", "ID") {
		t.Errorf("proxy to a cluster not granted: %d %s; missing: %d %s; want the same 404", code, body, codeMissing, bodyMissing)
	}

	// The group of the greatest grant, the user with the prefix.
	for _, tc := range []struct {
		token, cluster, user, group string
	}{
		{alice.Token, a.ID, "alice", hub.GroupEditors},
		{bob.Token, a.ID, "bob", hub.GroupViewers},
		{bob.Token, b.ID, "bob", hub.GroupAdmins},
		{e.admin, a.ID, "admin", hub.GroupAdmins},
	} {
		code, body := e.raw("GET", "/clusters/"+tc.cluster+"/k8s/api/v1/pods", tc.token, "", nil)
		var got struct{ Header http.Header }
		json.Unmarshal([]byte(body), &got)
		if code != 200 || got.Header.Get("Impersonate-User") != tc.user || strings.Join(got.Header.Values("Impersonate-Group"), ",") != tc.group {
			t.Errorf("%s on %s: %d, impersonating %q in %v; want %s in %s", tc.user, tc.cluster, code, got.Header.Get("Impersonate-User"), got.Header.Values("Impersonate-Group"), tc.user, tc.group)
		}
	}
	_ = logA

	// Deleting a grant applies at once on this hub.
	if code := e.do("DELETE", "/api/v1/grants/"+bobAll.ID, e.admin, "", nil); code != 204 {
		t.Fatalf("delete grant: %d", code)
	}
	if got := strings.Join(e.listed(bob.Token), ","); got != "beta" {
		t.Errorf("after the all-clusters grant went bob lists %q, want beta", got)
	}
	if code, _ := e.raw("GET", "/clusters/"+a.ID+"/k8s/api/v1/pods", bob.Token, "", nil); code != 404 {
		t.Errorf("bob reaches alpha after losing the grant: %d", code)
	}
	var grants struct{ Items []hub.GrantJSON }
	e.do("GET", "/api/v1/grants?cluster="+b.ID, e.admin, "", &grants)
	if len(grants.Items) != 2 {
		t.Errorf("grants on beta: %+v, want 2", grants.Items)
	}
	_ = c
}

// TestTokenExpiryAndScope checks expired, cluster-scoped and read-only
// tokens in the API and the proxy.
func TestTokenExpiryAndScope(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Now()
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.Now = clock }})
	a, b := e.createCluster("alpha"), e.createCluster("beta")
	e.echoAgent(a, nil)
	e.echoAgent(b, nil)

	def := e.token(`{"name":"dee","role":"admin"}`)
	if def.ExpiresAt == nil || def.ExpiresAt.Sub(clock()) < hub.DefaultTokenTTL-time.Minute || def.ExpiresAt.Sub(clock()) > hub.DefaultTokenTTL {
		t.Errorf("default expiry %v, want %s from now", def.ExpiresAt, hub.DefaultTokenTTL)
	}
	forever := e.token(`{"name":"ever","role":"admin","neverExpires":true}`)
	if forever.ExpiresAt != nil {
		t.Errorf("neverExpires token expires at %v", forever.ExpiresAt)
	}
	short := e.token(`{"name":"brief","role":"admin","expiresIn":"1h"}`)
	scoped := e.token(`{"name":"scoped","role":"admin","expiresIn":"1h","clusters":["` + a.ID + `"]}`)
	ro := e.token(`{"name":"reader","role":"admin","expiresIn":"1h","readOnly":true}`)

	if got := strings.Join(e.listed(scoped.Token), ","); got != "alpha" {
		t.Errorf("scoped token lists %q, want alpha", got)
	}
	tests := []struct {
		name         string
		method, path string
		token, body  string
		header       http.Header
		want         int
		wantBody     string
	}{
		{"scoped token on its cluster", "GET", "/clusters/" + a.ID + "/k8s/api", scoped.Token, "", nil, 200, ""},
		{"scoped token on another cluster, proxy", "GET", "/clusters/" + b.ID + "/k8s/api", scoped.Token, "", nil, 404, "not imported"},
		{"scoped token on another cluster, API", "GET", "/api/v1/clusters/" + b.ID, scoped.Token, "", nil, 404, "not found"},
		{"scoped admin token may not manage the hub", "POST", "/api/v1/tokens", scoped.Token, `{"name":"x","role":"admin"}`, nil, 403, "scoped"},
		{"scoped admin token may not grant", "POST", "/api/v1/grants", scoped.Token, `{"kind":"user","subject":"x","role":"admin"}`, nil, 403, "scoped"},
		{"scoped admin token may not delete another cluster", "DELETE", "/api/v1/clusters/" + b.ID, scoped.Token, "", nil, 404, ""},
		{"read-only token reads", "GET", "/clusters/" + a.ID + "/k8s/api/v1/pods", ro.Token, "", nil, 200, ""},
		{"read-only token may not create", "POST", "/clusters/" + a.ID + "/k8s/api/v1/namespaces", ro.Token, `{}`, nil, 403, "read-only"},
		{"read-only token may not delete", "DELETE", "/clusters/" + a.ID + "/k8s/api/v1/namespaces/x", ro.Token, "", nil, 403, "read-only"},
		{"read-only token may not exec", "GET", "/clusters/" + a.ID + "/k8s/api/v1/namespaces/x/pods/p/exec", ro.Token, "", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, 403, "read-only"},
		{"read-only token may review itself", "POST", "/clusters/" + a.ID + "/k8s/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", ro.Token, `{}`, nil, 201, ""},
		{"read-only token may not write the API", "POST", "/api/v1/clusters", ro.Token, `{"name":"x"}`, nil, 403, "read-only"},
		{"read-only token may not revoke", "DELETE", "/api/v1/tokens/" + short.ID, ro.Token, "", nil, 403, "read-only"},
	}
	for _, tt := range tests {
		code, body := e.raw(tt.method, tt.path, tt.token, tt.body, tt.header)
		if code != tt.want || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %s %s = %d %s, want %d with %q", tt.name, tt.method, tt.path, code, body, tt.want, tt.wantBody)
		}
	}
	// The proxy's read-only refusal is a Kubernetes Status.
	_, body := e.raw("POST", "/clusters/"+a.ID+"/k8s/api/v1/namespaces", ro.Token, `{}`, nil)
	var st struct{ Kind, Reason string }
	if json.Unmarshal([]byte(body), &st); st.Kind != "Status" || st.Reason != "Forbidden" {
		t.Errorf("read-only refusal %s, want a Status with reason Forbidden", body)
	}

	// An hour on, the short tokens are refused everywhere, cache or not;
	// the others work.
	for _, tok := range []string{short.Token, scoped.Token} {
		if code := e.do("GET", "/api/v1/whoami", tok, "", nil); code != 200 {
			t.Fatalf("before expiry: %d", code)
		}
	}
	advance(time.Hour)
	for _, tc := range []struct{ name, token, path string }{
		{"expired token, API", short.Token, "/api/v1/clusters"},
		{"expired token, proxy", short.Token, "/clusters/" + a.ID + "/k8s/api"},
		{"expired scoped token, proxy", scoped.Token, "/clusters/" + a.ID + "/k8s/api"},
	} {
		if code, body := e.raw("GET", tc.path, tc.token, "", nil); code != 401 {
			t.Errorf("%s: %d %s, want 401", tc.name, code, body)
		}
	}
	for _, tok := range []string{def.Token, forever.Token} {
		if code := e.do("GET", "/api/v1/clusters", tok, "", nil); code != 200 {
			t.Errorf("an unexpired token got %d", code)
		}
	}

	// A week after expiry, minting a kubeconfig's token deletes them.
	advance(hub.ExpiredTokenRetention + time.Minute)
	if code := e.do("GET", "/api/v1/clusters/"+a.ID+"/kubeconfig", e.admin, "", nil); code != 200 {
		t.Fatalf("kubeconfig: %d", code)
	}
	var tokens struct{ Items []hub.TokenJSON }
	e.do("GET", "/api/v1/tokens", e.admin, "", &tokens)
	ids := map[string]bool{}
	for _, tok := range tokens.Items {
		ids[tok.ID] = true
	}
	if ids[short.ID] || ids[scoped.ID] || ids[ro.ID] || !ids[def.ID] || !ids[forever.ID] {
		t.Errorf("tokens after pruning: %+v; want the 1-hour ones gone, the others kept", tokens.Items)
	}
}

// TestKubeconfigMintsAScopedToken checks that the kubeconfig endpoint no
// longer hands out the caller's token but a new one for that cluster alone
// that expires, never later than the caller's.
func TestKubeconfigMintsAScopedToken(t *testing.T) {
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.KubeconfigTTL = 2 * time.Hour }})
	a, b := e.createCluster("alpha"), e.createCluster("beta")
	e.echoAgent(a, nil)
	e.echoAgent(b, nil)
	kubeconfigToken := func(caller, query string) (string, hub.TokenJSON) {
		t.Helper()
		code, body := e.raw("GET", "/api/v1/clusters/"+a.ID+"/kubeconfig"+query, caller, "", nil)
		if code != 200 {
			t.Fatalf("kubeconfig: %d %s", code, body)
		}
		cfg, err := clientcmd.Load([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		var secret string
		for _, ai := range cfg.AuthInfos {
			secret = ai.Token
		}
		if secret == "" || secret == caller {
			t.Fatalf("kubeconfig token %q: want a new token, not the caller's", secret)
		}
		var tokens struct{ Items []hub.TokenJSON }
		e.do("GET", "/api/v1/tokens", e.admin, "", &tokens)
		return secret, tokens.Items[len(tokens.Items)-1]
	}
	secret, tok := kubeconfigToken(e.admin, "")
	if tok.Name != "admin" || len(tok.Clusters) != 1 || tok.Clusters[0] != a.ID || tok.ExpiresAt == nil ||
		time.Until(*tok.ExpiresAt) > 2*time.Hour || time.Until(*tok.ExpiresAt) < 2*time.Hour-time.Minute {
		t.Errorf("minted token %+v, want admin's, scoped to %s, expiring in 2h", tok, a.ID)
	}
	if code, _ := e.raw("GET", "/clusters/"+a.ID+"/k8s/api", secret, "", nil); code != 200 {
		t.Errorf("minted token on its cluster: %d", code)
	}
	if code, _ := e.raw("GET", "/clusters/"+b.ID+"/k8s/api", secret, "", nil); code != 404 {
		t.Errorf("minted token on another cluster: %d, want 404", code)
	}
	if code, _ := e.raw("POST", "/api/v1/tokens", secret, `{"name":"x","role":"admin"}`, nil); code != 403 {
		t.Errorf("minted token minting a hub token: %d, want 403", code)
	}

	// A caller whose own token expires sooner passes its expiry on; a
	// read-only caller passes that on; ?ttl= shortens.
	brief := e.token(`{"name":"brief","role":"admin","expiresIn":"10m","readOnly":true}`)
	_, tok = kubeconfigToken(brief.Token, "")
	if tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(*brief.ExpiresAt) || !tok.ReadOnly {
		t.Errorf("minted from a 10-minute read-only token: %+v, want its expiry %v and read-only", tok, brief.ExpiresAt)
	}
	_, tok = kubeconfigToken(e.admin, "?ttl=5m&readOnly=true")
	if tok.ExpiresAt == nil || time.Until(*tok.ExpiresAt) > 5*time.Minute || !tok.ReadOnly {
		t.Errorf("minted with ttl=5m readOnly: %+v", tok)
	}
	// A member's minted token is the member's: it follows the grants.
	e.token(`{"name":"mia","role":"member"}`)
	mia := e.token(`{"name":"mia","role":"member"}`)
	g := e.grant(`{"kind":"user","subject":"mia","cluster":"` + a.ID + `","role":"view"}`)
	secret, _ = kubeconfigToken(mia.Token, "")
	e.do("DELETE", "/api/v1/grants/"+g.ID, e.admin, "", nil)
	if code, _ := e.raw("GET", "/clusters/"+a.ID+"/k8s/api", secret, "", nil); code != 404 {
		t.Errorf("a minted token outlived its user's grant: %d", code)
	}
}

// TestProxyImpersonation checks kubectl --as through the hub against an
// agent end that answers access reviews: nothing is impersonated without
// the cluster's yes, for each user, group, UID and extra; headers in any
// case count, trailers never do.
func TestProxyImpersonation(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) { c.UserPrefix = "eco:"; c.Registry = reg }})
	a := e.createCluster("alpha")
	// The "cluster" lets eco:admin impersonate bob and group devs only.
	log := e.echoAgent(a, func(ra authorizationv1.ResourceAttributes, user string) bool {
		return user == "eco:admin" && ra.Verb == "impersonate" &&
			(ra.Resource == "users" && ra.Name == "bob" || ra.Resource == "groups" && ra.Name == "devs")
	})
	get := func(h http.Header) (int, string, http.Header) {
		code, body := e.raw("GET", "/clusters/"+a.ID+"/k8s/api/v1/pods", e.admin, "", h)
		var got struct{ Header http.Header }
		json.Unmarshal([]byte(body), &got)
		return code, body, got.Header
	}
	code, _, h := get(nil)
	if code != 200 || h.Get("Impersonate-User") != "eco:admin" {
		t.Fatalf("without --as: %d as %q, want eco:admin", code, h.Get("Impersonate-User"))
	}
	code, _, h = get(http.Header{"impersonate-user": {"bob"}, "IMPERSONATE-GROUP": {"devs"}})
	if code != 200 || h.Get("Impersonate-User") != "bob" || strings.Join(h.Values("Impersonate-Group"), ",") != "devs" || h.Get("Impersonate-Extra-Eco.dev%2frequest-Id") == "" {
		t.Errorf("--as=bob --as-group=devs: %d, header %v", code, h)
	}
	if r := log.last(); r.Header.Get("Impersonate-User") != "bob" {
		t.Errorf("last request at the agent was as %q", r.Header.Get("Impersonate-User"))
	}
	for _, tc := range []struct {
		name     string
		header   http.Header
		want     int
		wantBody string
	}{
		{"another user", http.Header{"Impersonate-User": {"carol"}}, 403, `users \"carol\" is forbidden: User \"eco:admin\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope`},
		{"allowed user, forbidden group", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Group": {"devs", "system:masters"}}, 403, `groups \"system:masters\" is forbidden`},
		{"allowed user, forbidden extra", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Extra-Scopes": {"all"}}, 403, `cannot impersonate resource \"userextras/scopes\" in API group \"authentication.k8s.io\"`},
		{"allowed user, forbidden uid", http.Header{"Impersonate-User": {"bob"}, "Impersonate-Uid": {"0"}}, 403, `uids.authentication.k8s.io \"0\" is forbidden`},
		{"service account", http.Header{"Impersonate-User": {"system:serviceaccount:kube-system:default"}}, 403, `in the namespace \"kube-system\"`},
		{"group without a user", http.Header{"Impersonate-Group": {"devs"}}, 400, "without impersonating a user"},
		{"two users", http.Header{"Impersonate-User": {"bob", "carol"}}, 400, "only one"},
		{"unknown impersonation header", http.Header{"Impersonate-Everyone": {"yes"}}, 400, "not an impersonation header"},
	} {
		code, body, _ := get(tc.header)
		if code != tc.want || !strings.Contains(body, tc.wantBody) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, code, body, tc.want, tc.wantBody)
		}
	}
	// A refusal is a Kubernetes Status as the API server writes it.
	_, body, _ := get(http.Header{"Impersonate-User": {"carol"}})
	var st struct {
		Kind, APIVersion, Status, Reason string
		Code                             int
		Details                          struct{ Name, Kind string }
	}
	json.Unmarshal([]byte(body), &st)
	if st.Kind != "Status" || st.APIVersion != "v1" || st.Status != "Failure" || st.Reason != "Forbidden" || st.Code != 403 || st.Details.Name != "carol" || st.Details.Kind != "users" {
		t.Errorf("refusal %s", body)
	}
	// Counted by outcome.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "eco_hub_proxy_access_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"impersonated": 1, "impersonation-denied": 6, "bad-impersonation": 3, "not-granted": 0, "read-only": 0, "impersonation-error": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("eco_hub_proxy_access_total{outcome=%q} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
