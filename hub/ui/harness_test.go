package ui_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
)

// testHub is a real hub with the UI mounted, on a loopback TLS server
// with a real SQLite store.
type testHub struct {
	t      testing.TB
	hub    *hub.Hub
	srv    *httptest.Server
	url    string
	caPEM  []byte
	admin  string // admin API token
	roots  *x509.CertPool
	client *http.Client // no cookies, no redirects
}

type hubOptions struct {
	poll      time.Duration
	heartbeat time.Duration
	logLevel  slog.Level
	// cloud configures the hub's cloud providers and poll intervals.
	cloud func(*hub.Config)
}

func newTestHub(t testing.TB, o hubOptions) *testHub {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir()+"/eco.db", store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewUnstartedServer(nil)
	ident, err := hub.LoadOrCreateTLS(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ident.Certificate}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if o.logLevel == 0 {
		o.logLevel = slog.LevelWarn
	}
	logger := testLogger(t, o.logLevel)
	cfg := hub.Config{
		Store:             st,
		ExternalURL:       srv.URL,
		CAPEM:             ident.CAPEM,
		SecretKey:         []byte(strings.Repeat("k", 32)),
		Version:           "v0.0.0-uitest",
		HeartbeatInterval: o.heartbeat,
		Logger:            logger,
	}
	if o.cloud != nil {
		o.cloud(&cfg)
	}
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	u, err := ui.New(ui.Config{Hub: h, Logger: logger.With("component", "ui"), PollInterval: o.poll})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ui.Patterns() {
		h.Mount(p, u)
	}
	srv.Config.Handler = h
	admin, err := h.Bootstrap(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ident.CAPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	return &testHub{
		t: t, hub: h, srv: srv, url: srv.URL, caPEM: ident.CAPEM, admin: admin, roots: roots,
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// token creates a hub API token for name with role.
func (h *testHub) token(name string, role store.Role) string {
	h.t.Helper()
	secret, _, err := h.hub.NewAPIToken(h.t.Context(), name, role)
	if err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// viewer returns the secret of a new member token for name with a grant of
// view on every cluster: what a viewer was before per-cluster access.
func (h *testHub) viewer(name string) string {
	h.t.Helper()
	secret := h.token(name, store.RoleMember)
	if _, err := h.hub.CreateGrant(h.t.Context(), store.NewGrant{Kind: store.SubjectUser, Subject: name, Role: store.ClusterView}); err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// browser is a cookie-keeping HTTP client that does not follow redirects.
func (h *testHub) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *h.client
	c.Jar = jar
	return &c
}

// do sends a request and returns the status, Location and body.
func do(t testing.TB, c *http.Client, method, url string, form url.Values, header http.Header) (int, string, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfIn returns the CSRF token of the first form in page.
func csrfIn(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%s", page)
	}
	return m[1]
}

// signIn signs c in with token through the sign-in form and returns the
// CSRF token of the session.
func (h *testHub) signIn(c *http.Client, token string) string {
	h.t.Helper()
	code, _, page := do(h.t, c, "GET", h.url+"/ui/login", nil, nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET /ui/login = %d", code)
	}
	code, loc, _ := do(h.t, c, "POST", h.url+"/ui/login", url.Values{"csrf": {csrfIn(h.t, page)}, "token": {token}, "next": {"/"}}, nil)
	if code != http.StatusSeeOther || loc != "/" {
		h.t.Fatalf("POST /ui/login = %d, Location %q; want 303 to /", code, loc)
	}
	code, _, page = do(h.t, c, "GET", h.url+"/", nil, nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET / after sign-in = %d", code)
	}
	return csrfIn(h.t, page)
}

// testLogger sends logs to t until it ends.
func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
