package hub_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
	"github.com/eco-project/eco/tunnel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a hub on a loopback TLS server with a real SQLite store, and a
// cluster's service-account issuer that mints the agents' identity tokens.
type env struct {
	t      *testing.T
	hub    *hub.Hub
	srv    *httptest.Server
	admin  string
	client *http.Client
	roots  *x509.CertPool
	// issuer signs identity tokens; its keys are what the fake agents'
	// API servers serve at /openid/v1/jwks.
	issuer *issuer
	// now is the hub's clock: time.Now plus skew.
	skew atomic.Int64
}

// envOpts adjust newEnv's hub.
type envOpts struct {
	hub func(*hub.Config)
	// http2 serves and speaks HTTP/2 to the hub (else HTTP/1.1).
	http2 bool
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOpts{}) }

// newEnvWith is newEnv with the hub's Config changed by o.hub before the
// hub starts.
func newEnvWith(t *testing.T, o envOpts) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/eco.db", store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewUnstartedServer(nil)
	srv.EnableHTTP2 = o.http2
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ident, err := hub.LoadOrCreateTLS(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS.Certificates = []tls.Certificate{ident.Certificate}
	e := &env{t: t, srv: srv, issuer: newIssuer(t, clusterIssuer)}
	cfg := hub.Config{
		Store:             st,
		ExternalURL:       srv.URL,
		CAPEM:             ident.CAPEM,
		SecretKey:         []byte(strings.Repeat("k", 32)),
		HeartbeatInterval: 200 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now:               func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) },
	}
	if o.hub != nil {
		o.hub(&cfg)
	}
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	srv.Config.Handler = h
	admin, err := h.Bootstrap(t.Context())
	if err != nil || admin == "" {
		t.Fatalf("Bootstrap() = %q, %v", admin, err)
	}
	if again, err := h.Bootstrap(t.Context()); err != nil || again != "" {
		t.Fatalf("second Bootstrap() = %q, %v; want no new token", again, err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ident.CAPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: o.http2}
	t.Cleanup(tr.CloseIdleConnections)
	e.hub, e.admin, e.client, e.roots = h, admin, &http.Client{Transport: tr}, roots
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// do sends a request with token (none if empty) and decodes a JSON answer
// into out when out is not nil.
func (e *env) do(method, path, token, body string, out any) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func (e *env) createCluster(name string) hub.ClusterJSON {
	e.t.Helper()
	var c hub.ClusterJSON
	if code := e.do("POST", "/api/v1/clusters", e.admin, `{"name":"`+name+`","provider":"eks","region":"eu-west-1"}`, &c); code != 201 {
		e.t.Fatalf("create cluster %s: %d", name, code)
	}
	return c
}

// credential returns the agent credential in c's install YAML.
func (e *env) credential(id string) string {
	e.t.Helper()
	y, err := e.hub.InstallYAML(id)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, doc := range strings.Split(string(y), "\n---\n") {
		if !strings.Contains(doc, "kind: Secret") {
			continue
		}
		var s struct{ Data map[string][]byte }
		if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
			e.t.Fatal(err)
		}
		return string(s.Data[install.KeyToken])
	}
	e.t.Fatal("install YAML has no Secret")
	return ""
}

// agent dials the hub as cluster id with credential and an identity token
// from e's issuer, serving on the tunnel the issuer's keys at
// /openid/v1/jwks and handler for the rest.
func (e *env) agent(id, credential, fingerprint string, handler http.Handler) (*tunnel.ClientSession, error) {
	e.t.Helper()
	return e.agentWith(agentOpts{id: id, credential: credential, fingerprint: fingerprint, handler: handler,
		token: e.issuer.token(e.t, e.srv.URL, nil), keys: e.issuer})
}

// agentOpts describe a fake agent: what it presents and what its API
// server serves.
type agentOpts struct {
	id, credential, fingerprint string
	token                       string  // the identity token
	keys                        *issuer // whose keys its API server serves; nil: none
	handler                     http.Handler
	mux                         tunnel.MuxConfig
	listener                    func(net.Listener) net.Listener
	capabilities                []string                                       // in the Hello
	onCredential                func(context.Context, tunnel.Credential) error // keeps a rotated credential
}

func (e *env) agentWith(o agentOpts) (*tunnel.ClientSession, error) {
	e.t.Helper()
	sess, err := tunnel.Dial(e.t.Context(), tunnel.ClientConfig{
		URL:       "wss" + strings.TrimPrefix(e.srv.URL, "https") + hub.TunnelPath,
		ClusterID: o.id,
		Token:     o.credential,
		TLSConfig: &tls.Config{RootCAs: e.roots},
		Hello: tunnel.Hello{AgentVersion: "test", KubernetesVersion: "v1.34.4", Fingerprint: o.fingerprint, IdentityToken: o.token,
			Capabilities: o.capabilities},
		Mux:          o.mux,
		OnCredential: o.onCredential,
	})
	if err != nil {
		return nil, err
	}
	var ln net.Listener = sess
	if o.listener != nil {
		ln = o.listener(sess)
	}
	srv := &http.Server{Handler: apiServer(o.keys, o.handler)}
	go srv.Serve(ln)
	e.t.Cleanup(func() { srv.Close() })
	e.t.Cleanup(func() { sess.Close() })
	return sess, nil
}

// waitState polls the API until cluster id is in state.
func (e *env) waitState(id string, want store.State) hub.StatusJSON {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st hub.StatusJSON
		e.do("GET", "/api/v1/clusters/"+id+"/status", e.admin, "", &st)
		if st.State == string(want) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("cluster %s is %s (%s), want %s", id, st.State, st.Reason, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHistory polls cluster id's status history until a transition's
// reason holds want: the hub writes notes, and the transitions its status
// queue applies, after whatever the caller saw happen.
func (e *env) waitHistory(id, want string) {
	e.t.Helper()
	var hist struct{ Items []hub.TransitionJSON }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code := e.do("GET", "/api/v1/clusters/"+id+"/history", e.admin, "", &hist); code != http.StatusOK {
			e.t.Fatalf("history of %s: %d", id, code)
		}
		for _, tr := range hist.Items {
			if strings.Contains(tr.Reason, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("history of %s has no %q after 10s: %+v", id, want, hist.Items)
		}
	}
}

func TestAPIAuthAndValidation(t *testing.T) {
	e := newEnv(t)
	var viewer hub.TokenJSON
	if code := e.do("POST", "/api/v1/tokens", e.admin, `{"name":"vera","role":"member"}`, &viewer); code != 201 || viewer.Token == "" {
		t.Fatalf("create member token: %d %+v", code, viewer)
	}
	if code := e.do("POST", "/api/v1/grants", e.admin, `{"kind":"user","subject":"vera","role":"view"}`, nil); code != 201 {
		t.Fatalf("grant vera view on all clusters: %d", code)
	}
	c := e.createCluster("prod")
	tests := []struct {
		name         string
		method, path string
		token, body  string
		want         int
	}{
		{"no token", "GET", "/api/v1/clusters", "", "", 401},
		{"garbage token", "GET", "/api/v1/clusters", "ecot_nope", "", 401},
		{"agent credential is no API token", "GET", "/api/v1/clusters", e.credential(c.ID), "", 401},
		{"viewer lists", "GET", "/api/v1/clusters", viewer.Token, "", 200},
		{"viewer may not import", "POST", "/api/v1/clusters", viewer.Token, `{"name":"x"}`, 403},
		{"viewer may not read install YAML", "GET", "/api/v1/clusters/" + c.ID + "/install.yaml", viewer.Token, "", 403},
		{"viewer may not delete", "DELETE", "/api/v1/clusters/" + c.ID, viewer.Token, "", 403},
		{"viewer may not rename", "PATCH", "/api/v1/clusters/" + c.ID, viewer.Token, `{"name":"mine"}`, 403},
		{"viewer may not label", "PATCH", "/api/v1/clusters/" + c.ID, viewer.Token, `{"labels":{"env":"dev"}}`, 403},
		{"rename to nothing", "PATCH", "/api/v1/clusters/" + c.ID, e.admin, `{"name":""}`, 400},
		{"rename to a bad name", "PATCH", "/api/v1/clusters/" + c.ID, e.admin, `{"name":"Not A Label"}`, 400},
		{"a reserved label", "PATCH", "/api/v1/clusters/" + c.ID, e.admin, `{"labels":{"eco.dev/cluster-id":"c-x"}}`, 400},
		{"a label that is not one", "PATCH", "/api/v1/clusters/" + c.ID, e.admin, `{"labels":{"env":"a b"}}`, 400},
		{"rename an unknown cluster", "PATCH", "/api/v1/clusters/c-aaaaaaaaaa", e.admin, `{"name":"x"}`, 404},
		{"viewer may not mint tokens", "POST", "/api/v1/tokens", viewer.Token, `{"name":"x","role":"admin"}`, 403},
		{"viewer may not grant", "POST", "/api/v1/grants", viewer.Token, `{"kind":"user","subject":"vera","role":"admin"}`, 403},
		{"the viewer role is gone", "POST", "/api/v1/tokens", e.admin, `{"name":"x","role":"viewer"}`, 400},
		{"expiry and never together", "POST", "/api/v1/tokens", e.admin, `{"name":"x","role":"admin","expiresIn":"1h","neverExpires":true}`, 400},
		{"expiry beyond a year", "POST", "/api/v1/tokens", e.admin, `{"name":"x","role":"admin","expiresIn":"9000h"}`, 400},
		{"negative expiry", "POST", "/api/v1/tokens", e.admin, `{"name":"x","role":"admin","expiresIn":"-1h"}`, 400},
		{"grant of an unknown role", "POST", "/api/v1/grants", e.admin, `{"kind":"user","subject":"x","role":"cluster-admin"}`, 400},
		{"grant on an unknown cluster", "POST", "/api/v1/grants", e.admin, `{"kind":"user","subject":"x","cluster":"c-aaaaaaaaaa","role":"view"}`, 404},
		{"kubeconfig with a bad ttl", "GET", "/api/v1/clusters/" + c.ID + "/kubeconfig?ttl=forever", e.admin, "", 400},
		{"malformed JSON", "POST", "/api/v1/clusters", e.admin, `{"name":`, 400},
		{"unknown field", "POST", "/api/v1/clusters", e.admin, `{"name":"a","color":"red"}`, 400},
		{"bad provider", "POST", "/api/v1/clusters", e.admin, `{"name":"a","provider":"ibm"}`, 400},
		{"bad name", "POST", "/api/v1/clusters", e.admin, `{"name":"Not A Label"}`, 400},
		{"duplicate name", "POST", "/api/v1/clusters", e.admin, `{"name":"prod"}`, 409},
		{"oversized body", "POST", "/api/v1/clusters", e.admin, `{"name":"` + strings.Repeat("a", 100<<10) + `"}`, 400},
		{"unknown cluster", "GET", "/api/v1/clusters/c-aaaaaaaaaa", e.admin, "", 404},
		{"bad limit", "GET", "/api/v1/clusters?limit=-1", e.admin, "", 400},
		{"health needs no token", "GET", "/healthz", "", "", 200},
		{"readiness needs no token", "GET", "/readyz", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.do(tt.method, tt.path, tt.token, tt.body, nil); got != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, got, tt.want)
			}
		})
	}

	t.Run("revoked token", func(t *testing.T) {
		if code := e.do("DELETE", "/api/v1/tokens/"+viewer.ID, e.admin, "", nil); code != 204 {
			t.Fatalf("revoke: %d", code)
		}
		if code := e.do("GET", "/api/v1/clusters", viewer.Token, "", nil); code != 401 {
			t.Fatalf("revoked token got %d, want 401", code)
		}
	})
}

func TestClusterLifecycleAPI(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("alpha")
	if c.Status.State != string(store.StateNotInstalled) || c.Provider != "eks" || c.Region != "eu-west-1" {
		t.Fatalf("new cluster = %+v", c)
	}
	other := e.createCluster("beta")

	var list struct {
		Items []hub.ClusterJSON
		Total int
	}
	e.do("GET", "/api/v1/clusters?sort=name", e.admin, "", &list)
	if list.Total != 2 || list.Items[0].Name != "alpha" || list.Items[1].Name != "beta" {
		t.Fatalf("list = %+v", list)
	}
	e.do("GET", "/api/v1/clusters?search=bet", e.admin, "", &list)
	if list.Total != 1 || list.Items[0].ID != other.ID {
		t.Fatalf("search = %+v", list)
	}

	yamlA, err := e.hub.InstallYAML(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	yamlA2, _ := e.hub.InstallYAML(c.ID)
	if string(yamlA) != string(yamlA2) {
		t.Error("install YAML differs between fetches: applying it twice would not be harmless")
	}
	if e.credential(c.ID) == e.credential(other.ID) {
		t.Error("two clusters share an agent credential")
	}

	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/clusters/"+c.ID+"/kubeconfig", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	kc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{e.srv.URL + "/clusters/" + c.ID + "/k8s", "token: ecot_", "certificate-authority-data"} {
		if !strings.Contains(string(kc), want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, kc)
		}
	}
	if strings.Contains(string(kc), e.admin) {
		t.Error("the kubeconfig embeds the caller's own token")
	}

	if code := e.do("DELETE", "/api/v1/clusters/"+c.ID, e.admin, "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code := e.do("GET", "/api/v1/clusters/"+c.ID, e.admin, "", nil); code != 404 {
		t.Fatalf("get deleted: %d", code)
	}
}

func TestAgentCredentials(t *testing.T) {
	e := newEnv(t)
	a := e.createCluster("a")
	b := e.createCluster("b")
	credA := e.credential(a.ID)

	tests := []struct {
		name      string
		clusterID string
		cred      string
		wantCode  int
	}{
		{"no credential", a.ID, "", http.StatusUnauthorized},
		{"wrong credential", a.ID, install.TokenPrefix + strings.Repeat("A", 43), http.StatusUnauthorized},
		{"cluster A's credential claiming cluster B", b.ID, credA, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.agent(tt.clusterID, tt.cred, "fp", nil)
			var rej *tunnel.RejectError
			if !errors.As(err, &rej) || rej.StatusCode != tt.wantCode {
				t.Fatalf("Dial error = %v, want rejection with %d", err, tt.wantCode)
			}
		})
	}

	t.Run("deleting a cluster closes its tunnel and revokes its credential", func(t *testing.T) {
		sess, err := e.agent(a.ID, credA, "fp-a", nil)
		if err != nil {
			t.Fatal(err)
		}
		e.waitState(a.ID, store.StateConnected)
		if code := e.do("DELETE", "/api/v1/clusters/"+a.ID, e.admin, "", nil); code != 204 {
			t.Fatalf("delete: %d", code)
		}
		select {
		case <-sess.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("tunnel still open after the cluster was deleted")
		}
		_, err = e.agent(a.ID, credA, "fp-a", nil)
		if !tunnel.IsRejected(err) {
			t.Fatalf("deleted cluster's credential: Dial error = %v, want rejection", err)
		}
	})
}

func TestStatusTransitions(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("life")
	sess, err := e.agent(c.ID, e.credential(c.ID), "fp", nil)
	if err != nil {
		t.Fatal(err)
	}
	st := e.waitState(c.ID, store.StateConnected)
	if st.AgentVersion != "test" || st.KubernetesVersion != "v1.34.4" {
		t.Fatalf("versions = %q/%q", st.AgentVersion, st.KubernetesVersion)
	}
	// Heartbeats every 200 ms record an RTT.
	deadline := time.Now().Add(5 * time.Second)
	for st.LastHeartbeat == nil || st.RTTMillis == nil || *st.RTTMillis == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat recorded: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
		e.do("GET", "/api/v1/clusters/"+c.ID+"/status", e.admin, "", &st)
	}

	ctx := t.Context()
	if err := sess.ReportStatus(ctx, tunnel.Status{State: tunnel.StateFailing, Reason: "cannot reach the API server"}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitState(c.ID, store.StateFailing); st.Reason != "cannot reach the API server" {
		t.Fatalf("reason = %q", st.Reason)
	}
	if err := sess.ReportStatus(ctx, tunnel.Status{State: tunnel.StateReady}); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	sess.Close()
	e.waitState(c.ID, store.StateDisconnected)

	sess, err = e.agent(c.ID, e.credential(c.ID), "fp", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	if err := sess.Goodbye(ctx, "namespace eco-system is being deleted"); err != nil {
		t.Fatal(err)
	}
	st = e.waitState(c.ID, store.StateRemoved)
	time.Sleep(300 * time.Millisecond) // the disconnect that follows must not override Removed
	e.waitState(c.ID, store.StateRemoved)

	var hist struct{ Items []hub.TransitionJSON }
	e.do("GET", "/api/v1/clusters/"+c.ID+"/history", e.admin, "", &hist)
	var got []string
	for i := len(hist.Items) - 1; i >= 0; i-- {
		got = append(got, hist.Items[i].To)
	}
	want := "Connected Failing Connected Disconnected Connected Removed"
	if strings.Join(got, " ") != want {
		t.Fatalf("history = %v, want %s", got, want)
	}
}

// TestProxyReplacesIdentity puts an echo server behind the agent end of a
// real tunnel and checks what the hub sends down it.
func TestProxyReplacesIdentity(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("echo")
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery, "header": r.Header})
	})
	if _, err := e.agent(c.ID, e.credential(c.ID), "fp", echo); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)

	req, _ := http.NewRequest("GET", e.srv.URL+"/clusters/"+c.ID+"/k8s/api/v1/namespaces?limit=5", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Cookie", "session=x")
	req.Header.Set("Impersonate_User", "system:admin") // not impersonation to Kubernetes, dropped all the same
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Path, Query string
		Header      http.Header
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Path != "/api/v1/namespaces" || got.Query != "limit=5" {
		t.Errorf("agent got %s?%s", got.Path, got.Query)
	}
	if u := got.Header.Values("Impersonate-User"); len(u) != 1 || u[0] != "admin" {
		t.Errorf("Impersonate-User = %v, want [admin]", u)
	}
	if g := got.Header.Values("Impersonate-Group"); len(g) != 1 || g[0] != hub.GroupAdmins {
		t.Errorf("Impersonate-Group = %v, want [%s]", g, hub.GroupAdmins)
	}
	for k := range got.Header {
		if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Cookie") || strings.EqualFold(k, "Impersonate_User") {
			t.Errorf("client header %s reached the agent", k)
		}
	}
	if rid := got.Header.Get("Impersonate-Extra-Eco.dev%2frequest-Id"); rid == "" || rid != resp.Header.Get("X-Request-Id") {
		t.Errorf("request ID extra = %q, response X-Request-Id = %q", rid, resp.Header.Get("X-Request-Id"))
	}
}

// A streamed response (a watch: no Content-Length) reaches the client line
// by line while the cluster is still writing it; the proxy does not wait to
// fill a buffer.
func TestProxyStreamsWatches(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("watch")
	next := make(chan struct{})
	watch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := range 3 {
			fmt.Fprintf(w, "{\"type\":\"ADDED\",\"n\":%d}\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next: // the client read this line
			case <-r.Context().Done():
				return
			}
		}
	})
	if _, err := e.agent(c.ID, e.credential(c.ID), "fp", watch); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/clusters/"+c.ID+"/k8s/api/v1/pods?watch=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if want := fmt.Sprintf("{\"type\":\"ADDED\",\"n\":%d}\n", i); err != nil || line != want {
			t.Fatalf("line %d: %q, %v; want %q", i, line, err, want)
		}
		select { // only now does the cluster write the next line
		case next <- struct{}{}:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// A burst of requests larger than the agent's accept backlog gets through:
// the agent refuses the streams it has no room for, unread, and the hub
// sends those requests again.
func TestProxyBurstBeyondAcceptBacklog(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("burst")
	_, err := e.agentWith(agentOpts{
		id: c.ID, credential: e.credential(c.ID), fingerprint: "fp",
		token: e.issuer.token(t, e.srv.URL, nil), keys: e.issuer,
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, `{"kind":"Pod"}`)
		}),
		mux:      tunnel.MuxConfig{AcceptBacklog: 2},
		listener: func(l net.Listener) net.Listener { return slowListener{l} }, // an agent that accepts a stream every 2 ms
	})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)

	const burst = 24
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+"/clusters/"+c.ID+"/k8s/api/v1/namespaces/a/pods/p", nil)
			req.Header.Set("Authorization", "Bearer "+e.admin)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("request %d: %d %s", i, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
}

// slowListener accepts a connection every 2 ms at most.
type slowListener struct{ net.Listener }

func (l slowListener) Accept() (net.Conn, error) {
	time.Sleep(2 * time.Millisecond)
	return l.Listener.Accept()
}

func TestProxyWhenNotConnected(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("lonely")
	req, _ := http.NewRequest("GET", e.srv.URL+"/clusters/"+c.ID+"/k8s/api", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Kind, Message string
		Code          int
	}
	json.NewDecoder(resp.Body).Decode(&st)
	if resp.StatusCode != 503 || st.Kind != "Status" || !strings.Contains(st.Message, "NotInstalled") {
		t.Fatalf("proxy to a cluster without agent = %d %+v", resp.StatusCode, st)
	}
	if code := e.do("GET", "/clusters/"+c.ID+"/k8s/api", "", "", nil); code != 401 {
		t.Fatalf("proxy without token = %d, want 401", code)
	}
	if code := e.do("GET", "/clusters/c-aaaaaaaaaa/k8s/api", e.admin, "", nil); code != 404 {
		t.Fatalf("proxy to an unknown cluster = %d, want 404", code)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.createCluster("m")
	if code := e.do("GET", "/metrics", "", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token = %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"eco_hub_tunnels 0", `eco_hub_clusters{state="NotInstalled"} 1`, "eco_hub_api_requests_total", "eco_hub_proxy_idle_streams 0", "eco_hub_proxy_streams_reused_total 0", "go_gc_heap_live_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestUpdateCluster: an admin renames a cluster and sets its labels; its
// ID, proxy and credential stay; a name taken is 409 and changes
// nothing; labels are replaced (and cleared with {}), absent fields
// stay; the change is audited.
func TestUpdateCluster(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("prod")
	e.createCluster("staging")
	patch := func(body string) (int, hub.ClusterJSON) {
		t.Helper()
		var got hub.ClusterJSON
		return e.do("PATCH", "/api/v1/clusters/"+c.ID, e.admin, body, &got), got
	}
	code, got := patch(`{"name":"prod-eu","labels":{"env":"prod","team.example.com/owner":"web"}}`)
	if code != 200 {
		t.Fatalf("PATCH = %d", code)
	}
	if got.ID != c.ID || got.Name != "prod-eu" || got.Labels["env"] != "prod" || got.Labels["team.example.com/owner"] != "web" || got.Links["kubernetes"] != c.Links["kubernetes"] {
		t.Fatalf("after PATCH: %+v", got)
	}
	if code, _ := patch(`{"name":"staging"}`); code != 409 {
		t.Errorf("renaming onto another cluster's name = %d, want 409", code)
	}
	// Labels alone: the name stays; then {} clears them.
	if code, got := patch(`{"labels":{"env":"dev"}}`); code != 200 || got.Name != "prod-eu" || len(got.Labels) != 1 || got.Labels["env"] != "dev" {
		t.Errorf("labels alone = %d %+v", code, got)
	}
	if code, got := patch(`{"name":"prod-eu"}`); code != 200 || got.Labels["env"] != "dev" {
		t.Errorf("the same name again, labels absent = %d %+v", code, got)
	}
	if code, got := patch(`{"labels":{}}`); code != 200 || got.Labels != nil {
		t.Errorf("clearing the labels = %d %+v", code, got)
	}
	var read hub.ClusterJSON
	if code := e.do("GET", "/api/v1/clusters/"+c.ID, e.admin, "", &read); code != 200 || read.Name != "prod-eu" || read.Labels != nil {
		t.Errorf("GET after = %d %+v", code, read)
	}
	var audit struct {
		Items []struct {
			Verb string `json:"verb"`
		} `json:"items"`
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code := e.do("GET", "/api/v1/audit?cluster="+c.ID, e.admin, "", &audit); code != 200 {
			t.Fatalf("audit = %d", code)
		}
		n := 0
		for _, ev := range audit.Items {
			if ev.Verb == "update-cluster" {
				n++
			}
		}
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit has %d update-cluster events, want 5 (4 done, 1 refused): %+v", n, audit.Items)
		}
	}
}

// TestFailingClusterExplained: while the hub holds a cluster Failing, what
// its agent answers itself when it cannot serve a request (502, 503)
// reaches the client as a Kubernetes Status naming eco's state and reason,
// with the agent's own words; while Connected, an API server's own 503 and
// every other answer pass unchanged.
func TestFailingClusterExplained(t *testing.T) {
	e := newEnv(t)
	c := e.createCluster("sick")
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/pods":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"eco-agent cannot reach the API server: dial tcp 10.0.0.1:443: connect: connection refused","reason":"ServiceUnavailable","code":502}`)
		case "/apis/metrics.k8s.io/v1beta1/nodes":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"kind":"Status","status":"Failure","message":"the server is currently unable to handle the request","code":503}`)
		default:
			io.WriteString(w, `{"kind":"NamespaceList","items":[]}`)
		}
	})
	sess, err := e.agent(c.ID, e.credential(c.ID), "fp", api)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.srv.URL+hub.ProxyPrefix+c.ID+hub.ProxySuffix+path, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
		}
		body, _ := io.ReadAll(resp.Body)
		json.Unmarshal(body, &st)
		return resp.StatusCode, st.Message
	}
	// Connected: the answers are the cluster's.
	if code, msg := get("/apis/metrics.k8s.io/v1beta1/nodes"); code != 503 || msg != "the server is currently unable to handle the request" {
		t.Errorf("an API server's own 503 while Connected: %d %q", code, msg)
	}
	if code, msg := get("/api/v1/pods"); code != 502 || strings.Contains(msg, "Failing") {
		t.Errorf("a 502 while Connected: %d %q", code, msg)
	}

	if err := sess.ReportStatus(t.Context(), tunnel.Status{State: tunnel.StateFailing, Reason: "cannot reach the API server at https://10.0.0.1:443"}); err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateFailing)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/v1/pods", 502},
		{"/apis/metrics.k8s.io/v1beta1/nodes", 503},
		{"/api/v1/pods?watch=true", 502}, // the streaming proxy too
	} {
		code, msg := get(tc.path)
		if code != tc.code || !strings.Contains(msg, "sick ("+c.ID+") is not reachable: ECO is Failing: cannot reach the API server at https://10.0.0.1:443") {
			t.Errorf("%s while Failing: %d %q", tc.path, code, msg)
		}
	}
	if _, msg := get("/api/v1/pods"); !strings.Contains(msg, "(eco-agent cannot reach the API server: dial tcp 10.0.0.1:443") {
		t.Errorf("the agent's own words are lost: %q", msg)
	}
	if code, _ := get("/api/v1/namespaces"); code != 200 {
		t.Errorf("a request the agent served while Failing: %d", code)
	}
}
