package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/install"
)

// The Forwarder's tests run it against a real TLS API server stand-in on
// loopback. A TCP connection to the Forwarder's listener stands in for a
// tunnel stream (the agent's own tests, and e2e/, go through the real
// tunnel and a real kube-apiserver).

// fakeAPI is the API server stand-in: an httptest TLS server (HTTP/1.1)
// that records what reaches it. Its paths:
//
//	/echo          answers with what it saw (seen) and the request body
//	/big?n=N       N bytes of pattern(N)
//	/watch         a line at a time, each flushed, the next only once the
//	               test took the last one from lines
//	/upgrade       101, then "hello\n" and an echo of every line, then
//	               "bye\n" and close after the client's EOF
//	/no-upgrade    403 to an upgrade request
//	/close         answers and closes its connection
type fakeAPI struct {
	srv *httptest.Server

	mu    sync.Mutex
	paths []string
	conns int // connections accepted

	lines    chan string   // /watch: the test takes a line, then the next is sent
	watchEnd chan struct{} // closed when a /watch handler returned
}

// seen is what /echo reports.
type seen struct {
	Method, Path, Host, Authorization, UserAgent, ImpersonateUser, Remote string
	TransferEncoding                                                      []string
	ContentLength                                                         int64
	Body                                                                  string
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	a := &fakeAPI{lines: make(chan string), watchEnd: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.paths = append(a.paths, r.URL.Path)
		a.mu.Unlock()
		switch strings.TrimPrefix(r.URL.Path, "/prefix") {
		case "/echo", install.IdentityKeysPath, install.IdentityDiscoveryPath:
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(seen{Method: r.Method, Path: r.URL.Path, Host: r.Host,
				Authorization: r.Header.Get("Authorization"), UserAgent: r.UserAgent(),
				ImpersonateUser: r.Header.Get("Impersonate-User"), Remote: r.RemoteAddr,
				TransferEncoding: r.TransferEncoding, ContentLength: r.ContentLength, Body: string(b)})
		case "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(pattern(n))
		case "/watch":
			defer func() { a.watchEnd <- struct{}{} }()
			rc := http.NewResponseController(w)
			for i := 0; ; i++ {
				fmt.Fprintf(w, "event %d\n", i)
				if rc.Flush() != nil {
					return
				}
				select {
				case a.lines <- fmt.Sprintf("event %d\n", i):
				case <-r.Context().Done():
					return
				}
			}
		case "/upgrade":
			if !isUpgrade(r.Header) || r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "not an upgrade", http.StatusBadRequest)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			// The first bytes leave with the head, so the Forwarder
			// finds them buffered after reading it.
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Seen-Authorization: %s\r\n\r\nhello\n",
				r.Header.Get("Authorization"))
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					io.WriteString(c, "bye\n")
					return
				}
				io.WriteString(c, line)
			}
		case "/no-upgrade":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind":"Status","code":403}`)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		default:
			http.NotFound(w, r)
		}
	})
	a.srv = httptest.NewUnstartedServer(mux)
	a.srv.EnableHTTP2 = false
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	a.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			a.mu.Lock()
			a.conns++
			a.mu.Unlock()
		}
	}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAPI) restConfig() *rest.Config {
	return &rest.Config{
		Host:            a.srv.URL,
		BearerToken:     "agent-token",
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})},
	}
}

func (a *fakeAPI) seenPaths() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

func (a *fakeAPI) connCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conns
}

// pattern is n deterministic bytes that do not repeat every power of two.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// testForwarder serves a Forwarder for cfg on a loopback listener until t
// ends and returns its address and what its onError hook received.
type testForwarder struct {
	addr string

	mu   sync.Mutex
	errs []error
}

func startForwarder(t *testing.T, cfg *rest.Config) *testForwarder {
	t.Helper()
	f, err := NewForwarder(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	tf := &testForwarder{}
	f.onError = func(err error) {
		tf.mu.Lock()
		tf.errs = append(tf.errs, err)
		tf.mu.Unlock()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tf.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return 10 s after its context ended")
		}
	})
	return tf
}

func (tf *testForwarder) errors() []error {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	return append([]error(nil), tf.errs...)
}

// hubClient is the hub's side: an HTTP/1.1 client whose connections are
// the Forwarder's streams, adding Impersonate-User: alice unless the
// request names someone (or "-": no one).
func (tf *testForwarder) hubClient(t *testing.T, tweak func(*http.Transport)) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", tf.addr)
		},
		DisableCompression: true,
	}
	if tweak != nil {
		tweak(tr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: impersonating{tr}, Timeout: 30 * time.Second}
}

type impersonating struct{ rt http.RoundTripper }

func (i impersonating) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	switch u := r.Header.Get("Impersonate-User"); u {
	case "":
		r.Header.Set("Impersonate-User", "alice")
	case "-":
		r.Header.Del("Impersonate-User")
	}
	return i.rt.RoundTrip(r)
}

// dialStream opens a raw stream to the Forwarder.
func (tf *testForwarder) dialStream(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", tf.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// noLeaks fails t if goroutines it started outlive it. Registered first, it
// runs after every other cleanup.
func noLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/eco-project/eco/localcluster.(*process).start.func1")}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func decodeSeen(t *testing.T, body []byte) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("decoding /echo's answer %q: %v", body, err)
	}
	return s
}

func TestForwardRequests(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	hub := tf.hubClient(t, nil)
	apiHost := strings.TrimPrefix(api.srv.URL, "https://")

	// hidden hides a body's length, so the hub sends it chunked.
	type hidden struct{ io.Reader }
	for _, tc := range []struct {
		name    string
		method  string
		path    string
		body    io.Reader
		header  http.Header
		code    int
		check   func(t *testing.T, s seen)
		refused error // the request must not reach the API server
	}{
		{name: "GET", method: "GET", path: "/echo?watch=false", code: 200, check: func(t *testing.T, s seen) {
			if s.Method != "GET" || s.Path != "/echo" || s.ImpersonateUser != "alice" || s.Host != apiHost {
				t.Errorf("the API server saw %+v, want GET /echo as alice for Host %s", s, apiHost)
			}
		}},
		{name: "client credentials replaced", method: "GET", path: "/echo",
			header: http.Header{"Authorization": {"Bearer hub-user-token"}}, code: 200, check: func(t *testing.T, s seen) {
				if s.Authorization != "Bearer agent-token" {
					t.Errorf("Authorization = %q, want the agent's", s.Authorization)
				}
			}},
		{name: "agent user agent when none", method: "GET", path: "/echo",
			header: http.Header{"User-Agent": {""}}, code: 200, check: func(t *testing.T, s seen) {
				if s.UserAgent != "eco-agent" {
					t.Errorf("User-Agent = %q, want eco-agent", s.UserAgent)
				}
			}},
		{name: "POST with Content-Length", method: "POST", path: "/echo", body: strings.NewReader("a body of known length"),
			code: 200, check: func(t *testing.T, s seen) {
				if s.Body != "a body of known length" || s.ContentLength != 22 {
					t.Errorf("the API server saw body %q (length %d)", s.Body, s.ContentLength)
				}
			}},
		{name: "POST chunked", method: "POST", path: "/echo", body: hidden{strings.NewReader(strings.Repeat("chunk ", 50000))},
			code: 200, check: func(t *testing.T, s seen) {
				if s.Body != strings.Repeat("chunk ", 50000) || len(s.TransferEncoding) != 1 || s.TransferEncoding[0] != "chunked" {
					t.Errorf("the API server saw %d body bytes, Transfer-Encoding %q, want 300000 chunked", len(s.Body), s.TransferEncoding)
				}
			}},
		{name: "no impersonation", method: "GET", path: "/echo", header: http.Header{"Impersonate-User": {"-"}},
			code: 403, refused: ErrNoImpersonation},
		{name: "system user", method: "GET", path: "/echo", header: http.Header{"Impersonate-User": {"system:kube-scheduler"}},
			code: 403, refused: ErrReservedUser},
		{name: "no impersonation, with a body", method: "POST", path: "/echo", body: strings.NewReader(strings.Repeat("body ", 10000)),
			header: http.Header{"Impersonate-User": {"-"}}, code: 403, refused: ErrNoImpersonation},
		// The one request the agent sends as itself: its API server's
		// service-account issuer keys, for the hub's identity proof.
		{name: "issuer keys as the agent", method: "GET", path: install.IdentityKeysPath, header: http.Header{"Impersonate-User": {"-"}},
			code: 200, check: func(t *testing.T, s seen) {
				if s.Path != install.IdentityKeysPath || s.ImpersonateUser != "" || s.Authorization != "Bearer agent-token" {
					t.Errorf("the API server saw %+v, want the keys fetched as the agent", s)
				}
			}},
		{name: "issuer discovery as the agent", method: "GET", path: install.IdentityDiscoveryPath, header: http.Header{"Impersonate-User": {"-"}},
			code: 200, check: func(t *testing.T, s seen) {
				if s.ImpersonateUser != "" || s.Authorization != "Bearer agent-token" {
					t.Errorf("the API server saw %+v", s)
				}
			}},
		{name: "issuer keys path with a query, as the agent", method: "GET", path: install.IdentityKeysPath + "?x=1",
			header: http.Header{"Impersonate-User": {"-"}}, code: 403, refused: ErrNoImpersonation},
		{name: "issuer keys path with a body, as the agent", method: "POST", path: install.IdentityKeysPath, body: strings.NewReader("x"),
			header: http.Header{"Impersonate-User": {"-"}}, code: 403, refused: ErrNoImpersonation},
		{name: "issuer keys path escaped, as the agent", method: "GET", path: "/openid%2Fv1/jwks",
			header: http.Header{"Impersonate-User": {"-"}}, code: 403, refused: ErrNoImpersonation},
		{name: "issuer keys path impersonating a group only", method: "GET", path: install.IdentityKeysPath,
			header: http.Header{"Impersonate-User": {"-"}, "Impersonate-Group": {"system:masters"}}, code: 403, refused: ErrNoImpersonation},
		{name: "a path below the keys, as the agent", method: "GET", path: install.IdentityKeysPath + "/../../api/v1/secrets",
			header: http.Header{"Impersonate-User": {"-"}}, code: 403, refused: ErrNoImpersonation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(api.seenPaths())
			req, err := http.NewRequest(tc.method, "http://cluster"+tc.path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := hub.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d %q (%v), want %d", tc.method, tc.path, resp.StatusCode, body, err, tc.code)
			}
			if tc.refused != nil {
				var st struct{ Kind, Reason, Message string }
				if json.Unmarshal(body, &st) != nil || st.Kind != "Status" || st.Reason != "Forbidden" ||
					!strings.Contains(st.Message, tc.refused.Error()) || !resp.Close {
					t.Errorf("refusal %q (Connection: close %v), want a Forbidden Status saying %q, closing", body, resp.Close, tc.refused)
				}
				if after := api.seenPaths(); len(after) != before {
					t.Errorf("a refused request reached the API server: %q", after[before:])
				}
				if errs := tf.errors(); len(errs) == 0 || !errors.Is(errs[len(errs)-1], tc.refused) {
					t.Errorf("onError got %v, want %v last", errs, tc.refused)
				}
				return
			}
			tc.check(t, decodeSeen(t, body))
		})
	}
}

func TestForwardKeepAlive(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	hub := tf.hubClient(t, func(tr *http.Transport) { tr.MaxConnsPerHost = 1 })
	var remotes []string
	for i := range 5 {
		resp, err := hub.Post("http://cluster/echo", "text/plain", strings.NewReader("request "+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := decodeSeen(t, body)
		if s.Body != "request "+strconv.Itoa(i) {
			t.Errorf("request %d: the API server saw %q", i, s.Body)
		}
		remotes = append(remotes, s.Remote)
	}
	// One stream, one API server connection, five requests.
	for _, r := range remotes[1:] {
		if r != remotes[0] {
			t.Errorf("requests on one stream reached the API server from %q, want one connection", remotes)
			break
		}
	}
	if n := api.connCount(); n != 1 {
		t.Errorf("the API server accepted %d connections, want 1", n)
	}
}

func TestForwardLargeResponse(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	hub := tf.hubClient(t, nil)
	const n = 64<<20 + 12345
	resp, err := hub.Get("http://cluster/big?n=" + strconv.Itoa(n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil || got != n {
		t.Fatalf("read %d bytes (%v), want %d", got, err, n)
	}
	if want := sha256.Sum256(pattern(n)); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Error("the response differs from what the API server sent")
	}
}

// TestForwardStreamsLines: a watch's lines arrive one by one, before the
// response ends: the API server writes a line only after the client read
// the one before.
func TestForwardStreamsLines(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	hub := tf.hubClient(t, nil)
	resp, err := hub.Get("http://cluster/watch")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 20 {
		sent := <-api.lines
		line, err := br.ReadString('\n')
		if err != nil || line != sent {
			t.Fatalf("line %d: %q (%v), want %q", i, line, err, sent)
		}
	}
	// The hub hanging up ends the request on the API server.
	resp.Body.Close()
	select {
	case <-api.watchEnd:
	case <-time.After(10 * time.Second):
		t.Error("the watch still runs on the API server 10 s after the hub closed the stream")
	}
}

// TestForwardExpectContinue: the API server's 100 Continue reaches the
// hub, which only then sends the body.
func TestForwardExpectContinue(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	hub := tf.hubClient(t, func(tr *http.Transport) { tr.ExpectContinueTimeout = 20 * time.Second })
	body := strings.Repeat("0123456789abcdef", 1<<16)
	req, _ := http.NewRequest("PUT", "http://cluster/echo", strings.NewReader(body))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := hub.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if s := decodeSeen(t, got); s.Body != body {
		t.Errorf("the API server saw %d body bytes, want %d", len(s.Body), len(body))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the hub waited for a 100 Continue that did not come", d)
	}
}

// readHead reads a response head from br.
func readHead(t *testing.T, br *bufio.Reader, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestForwardUpgrade(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	for _, reused := range []bool{false, true} {
		t.Run(fmt.Sprintf("reused stream %v", reused), func(t *testing.T) {
			c := tf.dialStream(t)
			br := bufio.NewReader(c)
			if reused { // a request first, so the stream has an API server connection
				io.WriteString(c, "GET /echo HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\n\r\n")
				resp := readHead(t, br, "GET")
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			// The first line follows the request at once, so the
			// Forwarder finds it buffered behind the head.
			io.WriteString(c, "POST /upgrade HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\nAuthorization: Bearer hub\r\n"+
				"Connection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 0\r\n\r\nping\n")
			resp := readHead(t, br, "POST")
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Seen-Authorization") != "Bearer agent-token" {
				t.Fatalf("upgrade answered %s %v, want 101 with the agent's credentials seen", resp.Status, resp.Header)
			}
			for _, want := range []string{"hello\n", "ping\n"} {
				if line, err := br.ReadString('\n'); line != want {
					t.Fatalf("read %q (%v), want %q", line, err, want)
				}
			}
			big := strings.Repeat("x", 200<<10) + "\n"
			io.WriteString(c, big)
			if line, err := br.ReadString('\n'); line != big {
				t.Fatalf("echo of %d bytes: %d bytes (%v)", len(big), len(line), err)
			}
			// Half-close: the API server sees EOF, still answers, then
			// ends, and so does the stream.
			c.CloseWrite()
			rest, err := io.ReadAll(br)
			if string(rest) != "bye\n" || err != nil {
				t.Errorf("after half-closing: %q (%v), want \"bye\\n\" then EOF", rest, err)
			}
		})
	}
	if n := api.connCount(); n != 3 {
		t.Errorf("the API server accepted %d connections, want 3 (an upgrade gets a connection of its own)", n)
	}
}

// TestForwardUpgradeRefused: an upgrade the API server answers with
// anything but 101 is passed on with Connection: close, and the stream
// ends after it.
func TestForwardUpgradeRefused(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	c := tf.dialStream(t)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /no-upgrade HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	resp := readHead(t, br, "GET")
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !resp.Close || string(body) != `{"kind":"Status","code":403}` || err != nil {
		t.Errorf("got %s, Connection: close %v, body %q (%v); want the API server's 403 with Connection: close", resp.Status, resp.Close, body, err)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the answer the stream gave %d bytes, %v; want EOF", n, err)
	}
}

// TestForwardAPIServerUnreachable: 502 with a Kubernetes Status, and the
// onError hook (the agent then checks its API server at once).
func TestForwardAPIServerUnreachable(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	untrusted := api.restConfig()
	untrusted.CAData = nil
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
		want string
	}{
		{"nothing listens", &rest.Config{Host: "https://" + closedAddr, BearerToken: "t"}, "connection refused"},
		{"untrusted certificate", untrusted, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tf := startForwarder(t, tc.cfg)
			for _, upgrade := range []bool{false, true} {
				req, _ := http.NewRequest("GET", "http://cluster/echo", nil)
				if upgrade {
					req.Header.Set("Connection", "Upgrade")
					req.Header.Set("Upgrade", "echo")
				}
				resp, err := tf.hubClient(t, nil).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var st struct{ Kind, Reason, Message string }
				if resp.StatusCode != http.StatusBadGateway || json.Unmarshal(body, &st) != nil || st.Reason != "ServiceUnavailable" ||
					!strings.HasPrefix(st.Message, "eco-agent cannot reach the API server: ") || !strings.Contains(st.Message, tc.want) {
					t.Errorf("upgrade %v: %d %q, want 502 Status: eco-agent cannot reach the API server: …%s…", upgrade, resp.StatusCode, body, tc.want)
				}
			}
			if errs := tf.errors(); len(errs) != 2 || errors.Is(errs[0], ErrNoImpersonation) {
				t.Errorf("onError got %v, want the two dial errors", errs)
			}
		})
	}
}

// TestForwardAPIServerCloses: when the API server closes its connection,
// the stream ends, so the hub never sends a request that would go nowhere.
func TestForwardAPIServerCloses(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tf := startForwarder(t, api.restConfig())
	c := tf.dialStream(t)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /close HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\n\r\n")
	resp := readHead(t, br, "GET")
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "closing" || !resp.Close {
		t.Errorf("got %q, Connection: close %v", body, resp.Close)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the API server closed, the stream gave %d bytes, %v; want EOF", n, err)
	}
}

// TestForwardServeEndsWithContext: cancelling Serve's context ends the
// streams in flight (a watch), and Serve returns.
func TestForwardServeEndsWithContext(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	f, err := NewForwarder(api.restConfig(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	tf := &testForwarder{addr: ln.Addr().String()}
	c := tf.dialStream(t)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\n\r\n")
	readHead(t, br, "GET")
	<-api.lines
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10 s after its context ended")
	}
	if _, err := io.ReadAll(br); err != nil {
		t.Errorf("the stream ended with %v, want EOF", err)
	}
	select {
	case <-api.watchEnd:
	case <-time.After(10 * time.Second):
		t.Error("the watch still runs on the API server")
	}
}

// TestForwardTokenFileAndPath: a rotated token file is used from the next
// request on, and an API server URL's path prefixes every request's.
func TestForwardTokenFileAndPath(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := api.restConfig()
	cfg.Host += "/prefix/"
	cfg.BearerToken, cfg.BearerTokenFile = "", tokenFile
	tf := startForwarder(t, cfg)
	hub := tf.hubClient(t, nil)
	for _, tok := range []string{"first", "second"} {
		if tok == "second" {
			// A new file, as the kubelet swaps them.
			next := tokenFile + ".new"
			if err := os.WriteFile(next, []byte(tok), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(next, tokenFile); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := hub.Get("http://cluster/echo")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if s := decodeSeen(t, body); s.Authorization != "Bearer "+tok || s.Path != "/prefix/echo" {
			t.Errorf("the API server saw %s with %q, want /prefix/echo with Bearer %s", s.Path, s.Authorization, tok)
		}
	}
}

func TestReadResponseHead(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		err  string
	}{
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nrest", 101, ""},
		{"HTTP/1.1 200 OK\n\n", 200, ""},
		{"HTTP/1.1 404\r\n\r\n", 404, ""},
		{"HTTP/1.1 101 Switching", 0, "unexpected EOF"},
		{"garbage\r\n\r\n", 0, "malformed"},
		{"HTTP/1.1 1010 x\r\n\r\n", 0, "malformed"},
		{"HTTP/1.1 101 x\r\nX: " + strings.Repeat("y", maxResponseHead) + "\r\n\r\n", 0, "longer than"},
	} {
		head, code, err := readResponseHead(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.40q: error %v, want one mentioning %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || code != tc.code || !strings.HasPrefix(tc.in, string(head)) || !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			t.Errorf("%.40q: %q %d %v, want the head and %d", tc.in, head, code, err, tc.code)
		}
	}
}

// TestForwardRefusesOverMaxStreams: past maxStreams open streams, a new
// stream is answered 429 with Retry-After and closed, holding no API
// server connection; once a stream ends, new ones are served again.
func TestForwardRefusesOverMaxStreams(t *testing.T) {
	noLeaks(t)
	api := newFakeAPI(t)
	f, err := NewForwarder(api.restConfig(), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	f.maxStreams = 2
	f.onRefused = func() { refused.Add(1) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	tf := &testForwarder{addr: ln.Addr().String()}

	watch := func() (net.Conn, *http.Response) {
		c := tf.dialStream(t)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\n\r\n")
		return c, readHead(t, br, "GET")
	}
	first, resp := watch()
	if resp.StatusCode != 200 {
		t.Fatalf("first watch: %d", resp.StatusCode)
	}
	<-api.lines
	if _, resp := watch(); resp.StatusCode != 200 {
		t.Fatalf("second watch: %d", resp.StatusCode)
	}
	<-api.lines
	c, resp := watch()
	body, _ := io.ReadAll(resp.Body)
	var st struct{ Kind, Reason, Message string }
	if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != http.StatusTooManyRequests ||
		resp.Header.Get("Retry-After") != "1" || st.Kind != "Status" || st.Reason != "TooManyRequests" {
		t.Fatalf("a stream over the cap: %d Retry-After=%q %s; want 429, Retry-After: 1 and a Status",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the refused stream stays open: %d, %v", n, err)
	}
	if refused.Load() != 1 {
		t.Fatalf("refusals counted: %d, want 1", refused.Load())
	}
	first.Close()
	<-api.watchEnd
	for deadline := time.Now().Add(5 * time.Second); ; {
		c := tf.dialStream(t)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /watch HTTP/1.1\r\nHost: cluster\r\nImpersonate-User: alice\r\n\r\n")
		resp := readHead(t, br, "GET")
		if resp.StatusCode == 200 {
			<-api.lines
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("5 s after a stream ended, a new one is still refused: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
