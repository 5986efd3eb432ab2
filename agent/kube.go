package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// kubeTransport is how the agent reaches its API server: the address, the
// TLS settings and the agent's credentials. The agent's own few calls
// (apiClient) go through an http.Transport that may speak HTTP/2; the
// Forwarder dials connections of its own (dial) and writes each request
// itself with the Authorization header authorization returns. Neither uses
// an HTTP proxy: in-cluster traffic goes direct, whatever HTTPS_PROXY says.
//
// The agent does not use client-go's typed clients: they link every
// Kubernetes API group into the binary (about 14 MB) for the handful of
// calls the agent makes, which apiClient makes with encoding/json.
type kubeTransport struct {
	host      *url.URL
	addr      string      // host:port that dial connects to
	tls       *tls.Config // dial's TLS (ALPN http/1.1 only); nil for an http:// API server
	userAgent string
	// auth is cfg's authentication wrappers around authCapture.
	auth http.RoundTripper
	// bearer, if not nil, is the Authorization header when a bearer token
	// (static or from a file) is the only credential: it is computed
	// without running the wrappers on a request of its own.
	bearer func() (string, error)
	h2     *http.Transport   // the agent's own calls
	conns  *ownConns         // h2's connections, closed when Run ends
	rt2    http.RoundTripper // h2 with authentication
}

// Timeouts of a connection to the API server.
const (
	apiDialTimeout      = 10 * time.Second
	apiHandshakeTimeout = 10 * time.Second
)

// apiDialer connects to the API server. Its keep-alive probes end a
// connection that died silently (a partition, a vanished node) and
// carries only a quiet watch within about a minute, as HTTP/2 pings would.
func apiDialer() *net.Dialer {
	return &net.Dialer{
		Timeout:         apiDialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3},
	}
}

// newKubeTransport returns how to reach the API server cfg describes.
// cfg's own proxy, dialer, transport and impersonation settings are
// ignored: the agent never proxies its API traffic, and every impersonation
// comes from the hub. A BearerTokenFile is re-read whenever the file
// changes (see fileToken).
func newKubeTransport(cfg *rest.Config, userAgent string) (*kubeTransport, error) {
	if cfg == nil || cfg.Host == "" {
		return nil, errors.New("no API server configured")
	}
	raw := cfg.Host
	if !strings.Contains(raw, "://") { // "10.0.0.1:443", as rest.Config allows
		raw = "https://" + raw
	}
	host, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing API server URL %q: %w", cfg.Host, err)
	}
	port := host.Port()
	switch {
	case host.Scheme != "https" && host.Scheme != "http":
		return nil, fmt.Errorf("API server URL %q: scheme must be https or http", cfg.Host)
	case host.Hostname() == "":
		return nil, fmt.Errorf("API server URL %q has no host", cfg.Host)
	case port == "" && host.Scheme == "https":
		port = "443"
	case port == "":
		port = "80"
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Proxy, cfg.Dial, cfg.Transport = nil, nil, nil
	cfg.Impersonate = rest.ImpersonationConfig{}
	if cfg.UserAgent == "" {
		cfg.UserAgent = userAgent
	}
	var tok *fileToken
	if cfg.BearerTokenFile != "" {
		tok = &fileToken{path: cfg.BearerTokenFile}
		if _, err := tok.get(); err != nil {
			return nil, err
		}
		cfg.BearerToken, cfg.BearerTokenFile = "", ""
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API server TLS config: %w", err)
	}
	k := &kubeTransport{host: host, addr: net.JoinHostPort(host.Hostname(), port), userAgent: cfg.UserAgent}
	k.conns = &ownConns{dial: apiDialer().DialContext, conns: map[*ownConn]struct{}{}}
	k.h2 = baseTransport(tlsCfg)
	k.h2.DialContext = k.conns.DialContext
	if k.rt2, err = wrapTransport(cfg, tok, k.h2); err != nil {
		return nil, err
	}
	if k.auth, err = wrapTransport(cfg, tok, authCapture{}); err != nil {
		return nil, err
	}
	if cfg.ExecProvider == nil && cfg.AuthProvider == nil && cfg.Username == "" && cfg.Password == "" && cfg.WrapTransport == nil {
		switch {
		case tok != nil:
			k.bearer = tok.header
		case cfg.BearerToken != "":
			h := "Bearer " + cfg.BearerToken
			k.bearer = func() (string, error) { return h, nil }
		default:
			k.bearer = func() (string, error) { return "", nil }
		}
	}
	if host.Scheme == "https" {
		if tlsCfg == nil {
			tlsCfg = &tls.Config{}
		}
		k.tls = tlsCfg.Clone()
		k.tls.NextProtos = []string{"http/1.1"}
		if k.tls.ServerName == "" {
			k.tls.ServerName = host.Hostname()
		}
		// Each stream from the hub gets a connection of its own:
		// resumed sessions make all but the first handshake cheap.
		k.tls.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	}
	return k, nil
}

// baseTransport is the transport of the agent's own calls. It dials the
// API server directly (no HTTP proxy) and may negotiate HTTP/2.
func baseTransport(tlsCfg *tls.Config) *http.Transport {
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           apiDialer().DialContext,
		TLSClientConfig:       tlsCfg.Clone(),
		TLSHandshakeTimeout:   apiHandshakeTimeout,
		MaxIdleConnsPerHost:   4, // HTTP/2 needs one
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
		// Notice a dead connection (a partition, a vanished API server)
		// that carries only the namespace watch, as client-go does.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
}

func wrapTransport(cfg *rest.Config, tok *fileToken, base http.RoundTripper) (http.RoundTripper, error) {
	var rt http.RoundTripper = base
	if tok != nil {
		rt = &tokenRoundTripper{token: tok, next: base}
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, rt)
	if err != nil {
		return nil, fmt.Errorf("API server auth wrappers: %w", err)
	}
	return rt, nil
}

// close closes every connection of the agent's own calls, and refuses
// new ones: Run calls it last, once nothing of the agent makes calls.
func (k *kubeTransport) close() {
	k.h2.CloseIdleConnections()
	k.conns.closeAll()
}

// errTransportClosed is what a dial gets once Run has ended.
var errTransportClosed = errors.New("agent: stopped: no new connections to the API server")

// ownConns dials the connections of the agent's own calls and keeps them,
// so that closing them all ends every goroutine net/http runs for them.
// CloseIdleConnections alone does not: when a call is cancelled while its
// connection is being dialled, net/http finishes the dial in the background
// and pools the connection, which can happen after Run closed the idle
// ones (a stop during the first calls), and an HTTP/2 connection's read
// loop would then outlive Run.
type ownConns struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu     sync.Mutex
	closed bool
	conns  map[*ownConn]struct{} // open connections; nil once closed
}

// DialContext dials through o.dial and keeps the connection, or refuses
// once o is closed.
func (o *ownConns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := o.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	oc := &ownConn{Conn: c, set: o}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		_ = c.Close()
		return nil, errTransportClosed
	}
	o.conns[oc] = struct{}{}
	return oc, nil
}

// closeAll closes every kept connection; dials that end later are closed
// and refused.
func (o *ownConns) closeAll() {
	o.mu.Lock()
	conns := o.conns
	o.closed, o.conns = true, nil
	o.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// ownConn is a kept connection; closing it forgets it.
type ownConn struct {
	net.Conn
	set *ownConns
}

func (c *ownConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// dial opens a connection to the API server for the Forwarder: TCP, then
// TLS with ALPN http/1.1 only (the Forwarder writes HTTP/1.1), unless the
// API server's URL is http://. Its TCP keep-alive probes notice a dead
// peer within about a minute.
func (k *kubeTransport) dial(ctx context.Context) (net.Conn, error) {
	c, err := apiDialer().DialContext(ctx, "tcp", k.addr)
	if err != nil {
		return nil, err
	}
	if k.tls == nil {
		return c, nil
	}
	hctx, cancel := context.WithTimeout(ctx, apiHandshakeTimeout)
	defer cancel()
	tc := tls.Client(c, k.tls)
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", k.addr, err)
	}
	return tc, nil
}

// authorization returns the Authorization header the agent's credentials
// put on a request, or "" if they put none (a client certificate, part of
// the TLS settings, authenticates instead). It runs the wrappers client-go
// would run (bearer token, token file, basic auth, exec and auth-provider
// plugins) on a blank request, so a rotated token file is used from the
// next request on. A bearer token alone (the usual ServiceAccount case)
// takes a shortcut with the same result: on every forwarded request the
// wrappers' copies and formatting cost the agent more than the file's stat.
func (k *kubeTransport) authorization() (string, error) {
	if k.bearer != nil {
		return k.bearer()
	}
	req := &http.Request{Method: http.MethodGet, URL: k.host, Host: k.host.Host,
		Header: http.Header{"User-Agent": {k.userAgent}}}
	resp, err := k.auth.RoundTrip(req)
	if err != nil {
		return "", err
	}
	return resp.Header.Get("Authorization"), nil
}

// authCapture ends the chain of authentication wrappers: instead of
// sending the request, it answers with the Authorization header they set.
type authCapture struct{}

func (authCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Authorization": r.Header.Values("Authorization")},
		Body:   http.NoBody, Request: r,
	}, nil
}

// fileToken is a bearer token kept in a file, such as the ServiceAccount
// token the kubelet rotates. It stats the file on every use and re-reads it
// when it changed, so a new token is used from the next request on (client-go
// re-reads its token file only once a minute, and a request made with a
// revoked token fails).
type fileToken struct {
	path string

	mu    sync.Mutex // guards the fields below
	token string
	info  os.FileInfo // of the file token was read from
}

// header returns the Authorization header of the current token.
func (f *fileToken) header() (string, error) {
	tok, err := f.get()
	if err != nil {
		return "", err
	}
	return "Bearer " + tok, nil
}

func (f *fileToken) get() (string, error) {
	fi, statErr := os.Stat(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if statErr != nil {
		if f.token != "" { // the kubelet swaps files atomically; keep the last one
			return f.token, nil
		}
		return "", fmt.Errorf("reading API server token: %w", statErr)
	}
	if f.token != "" && f.info != nil && os.SameFile(fi, f.info) &&
		fi.ModTime().Equal(f.info.ModTime()) && fi.Size() == f.info.Size() {
		return f.token, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		if f.token != "" {
			return f.token, nil
		}
		return "", fmt.Errorf("reading API server token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		if f.token != "" {
			return f.token, nil
		}
		return "", fmt.Errorf("reading API server token: %s is empty", f.path)
	}
	f.token, f.info = tok, fi
	return tok, nil
}

// tokenRoundTripper authenticates each request with the current token.
type tokenRoundTripper struct {
	token *fileToken
	next  http.RoundTripper
}

func (t *tokenRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.token.get()
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return t.next.RoundTrip(r)
}

// apiClient makes the agent's own calls to its API server.
type apiClient struct {
	host   *url.URL
	client *http.Client
}

func newAPIClient(k *kubeTransport) *apiClient {
	return &apiClient{host: k.host, client: &http.Client{Transport: k.rt2}}
}

// url returns the URL of path (which starts with "/") with query q.
func (c *apiClient) url(path string, q url.Values) string {
	u := *c.host
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return u.String()
}

// request sends a request with a JSON body (if body is not nil) and
// returns the response if its status is 2xx. Any other status becomes an
// *apierrors.StatusError, so apierrors.IsNotFound and friends work.
func (c *apiClient) request(ctx context.Context, method, path string, q url.Values, contentType string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return nil, statusError(resp.StatusCode, method, path, b)
}

// statusError turns an error response into an *apierrors.StatusError.
func statusError(code int, method, path string, body []byte) error {
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		if st.Code == 0 {
			st.Code = int32(code)
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return apierrors.NewGenericServerResponse(code, method, schema.GroupResource{}, "", msg, 0, false)
}

// do sends a request and decodes the JSON answer into out, unless out is
// nil.
func (c *apiClient) do(ctx context.Context, method, path string, q url.Values, contentType string, body, out any) error {
	resp, err := c.request(ctx, method, path, q, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, path, err)
	}
	return nil
}

func (c *apiClient) get(ctx context.Context, path string, q url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, q, "", nil, out)
}

// resourcePath returns the API path of the cluster-scoped object name of
// resource gvr.
func resourcePath(gvr schema.GroupVersionResource, name string) string {
	if gvr.Group == "" {
		return "/api/" + gvr.Version + "/" + gvr.Resource + "/" + url.PathEscape(name)
	}
	return "/apis/" + gvr.Group + "/" + gvr.Version + "/" + gvr.Resource + "/" + url.PathEscape(name)
}

// watchEvent is one event of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}
