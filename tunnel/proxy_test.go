package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connectProxy is a minimal CONNECT proxy on loopback, reached over plain
// TCP (an http:// proxy URL).
func connectProxy(t *testing.T) (*url.URL, *atomic.Int64) {
	p := newConnectProxy(t, nil)
	return p.url, &p.connects
}

// testProxy is a minimal CONNECT proxy on loopback. With a TLS config it is
// an https:// proxy: the client speaks TLS to it, then CONNECT.
type testProxy struct {
	url      *url.URL
	connects atomic.Int64

	mu      sync.Mutex // guards targets
	targets []string   // the CONNECT targets, in order
}

// connectTargets returns the addresses the proxy was asked to CONNECT to.
func (p *testProxy) connectTargets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.targets)
}

func newConnectProxy(t *testing.T, tlsCfg *tls.Config) *testProxy {
	p := &testProxy{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.connects.Add(1)
		p.mu.Lock()
		p.targets = append(p.targets, r.Host)
		p.mu.Unlock()
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		// Hijack first and answer by hand: bytes the client sent after
		// its CONNECT may already sit in the server's read buffer, so the
		// upstream copy reads from that buffer, not the bare conn.
		down, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			up.Close()
			down.Close()
			return
		}
		mu.Lock()
		conns = append(conns, up, down)
		mu.Unlock()
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(up, brw.Reader); up.Close() }()
		go func() { defer wg.Done(); io.Copy(down, up); down.Close() }()
	})}
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		p.url.Scheme = "https"
		// Failed handshakes are what some tests are about; the client
		// reports them. The server's log may be written after the test.
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// recordingCache is a ClientSessionCache that remembers the keys it was
// given tickets for.
type recordingCache struct {
	tls.ClientSessionCache

	mu   sync.Mutex // guards puts
	puts []string
}

func (c *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	c.puts = append(c.puts, key)
	c.mu.Unlock()
	c.ClientSessionCache.Put(key, cs)
}

func (c *recordingCache) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.puts)
}

func TestDialThroughProxy(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	proxyURL, connects := connectProxy(t)
	cs := h.dial("c1", func(c *ClientConfig) {
		c.Proxy = http.ProxyURL(proxyURL)
	})
	lineService(t, cs, "via-proxy")
	checkAlive(t, h, "c1", "via-proxy")
	if connects.Load() < 1 {
		t.Fatalf("%d CONNECTs through the proxy, want at least 1", connects.Load())
	}
	// Dial's default honours the environment (HTTPS_PROXY, NO_PROXY).
	// Go's ProxyFromEnvironment never proxies loopback hosts, so the
	// default is checked for its wiring, not its effect.
	cfg := h.clientConfig("c2")
	cfg.Proxy = nil
	cs2, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs2.Close()
}

// TestDialThroughHTTPSProxy: with an https:// proxy the agent's TLS to the
// proxy verifies the proxy's own name against the agent's roots (not the
// hub's ServerName) and keeps no ticket in the agent's session cache; the
// hub's TLS runs inside the CONNECT tunnel, still verifies the hub and
// still resumes.
func TestDialThroughHTTPSProxy(t *testing.T) {
	// httptest's certificate is valid for example.com and 127.0.0.1, the
	// proxy's only for 127.0.0.1: a proxy handshake made with the hub's
	// ServerName fails. Without a ServerName, the hub's name is 127.0.0.1
	// too, which only the cache keeping the proxy's tickets apart from
	// the hub's lets resume.
	const hubName = "example.com"
	trustedCA, trustedCert := testCert(t, "trusted proxy CA", "proxy")
	_, untrustedCert := testCert(t, "untrusted proxy CA", "proxy")
	for _, tc := range []struct {
		name       string
		proxyCert  tls.Certificate
		serverName string // the hub's, in the agent's TLSConfig
		wantName   string // the hub's name: its tickets' key in the cache
		// wantErr is the verification error Dial must fail with, nil for
		// success.
		wantErr any
		// wantConnect: the proxy must have been asked to CONNECT.
		wantConnect bool
	}{
		{"trusted proxy", trustedCert, hubName, hubName, nil, true},
		{"trusted proxy/no ServerName", trustedCert, "", "127.0.0.1", nil, true},
		{"untrusted proxy", untrustedCert, hubName, "", new(x509.UnknownAuthorityError), false},
		{"wrong hub name", trustedCert, "other.example.net", "", new(x509.HostnameError), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true})
			hubAddr := h.hs.Listener.Addr().String()
			p := newConnectProxy(t, &tls.Config{Certificates: []tls.Certificate{tc.proxyCert}})
			roots := h.tls.RootCAs.Clone()
			roots.AddCert(trustedCA)
			cache := &recordingCache{ClientSessionCache: tls.NewLRUClientSessionCache(1)}
			cfg := h.clientConfig("c1")
			cfg.TLSConfig = &tls.Config{RootCAs: roots, ServerName: tc.serverName}
			cfg.SessionCache = cache
			cfg.Proxy = http.ProxyURL(p.url)

			if tc.wantErr != nil {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				start := time.Now()
				err := dialFails(t, ctx, cfg, tc.wantErr)
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("Dial took %v to fail", d)
				}
				if !tc.wantConnect && !strings.Contains(err.Error(), "proxy "+p.url.Host) {
					t.Errorf("Dial error %q does not name the proxy", err)
				}
				if got := p.connectTargets(); tc.wantConnect != (len(got) > 0) {
					t.Errorf("CONNECTs to %q, want some: %v", got, tc.wantConnect)
				}
				return
			}

			for i, wantResume := range []bool{false, true} {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				cs, err := Dial(ctx, cfg)
				cancel()
				if err != nil {
					t.Fatalf("dial %d: %v", i+1, err)
				}
				lineService(t, cs, "via-https-proxy")
				checkAlive(t, h, "c1", "via-https-proxy")
				st := cs.TLS()
				if st == nil {
					t.Fatal("TLS() = nil on a wss:// session")
				}
				// No SNI is sent for an IP address.
				if tc.serverName != "" && st.ServerName != tc.serverName {
					t.Errorf("dial %d: SNI %q, want the hub's %q", i+1, st.ServerName, tc.serverName)
				}
				if !st.DidResume && !st.PeerCertificates[0].Equal(h.hs.Certificate()) {
					t.Errorf("dial %d: TLS peer %q is not the hub", i+1, st.PeerCertificates[0].Subject)
				}
				if st.DidResume != wantResume {
					t.Errorf("dial %d: DidResume = %v, want %v", i+1, st.DidResume, wantResume)
				}
				cs.Close()
				waitDone(t, cs, 5*time.Second)
			}
			if got, want := p.connectTargets(), []string{hubAddr, hubAddr}; !slices.Equal(got, want) {
				t.Errorf("CONNECTs to %q, want %q", got, want)
			}
			for _, k := range cache.keys() {
				if k != tc.wantName {
					t.Errorf("session cache got a ticket for %q, want only the hub's (%q)", k, tc.wantName)
				}
			}
		})
	}
}

// TestDialThroughHTTPSProxyRootCAs: ProxyRootCAs verifies an https://
// proxy whose certificate comes from a CA the hub's TLSConfig does not
// trust (the agent trusts only the hub's private CA), in place of
// TLSConfig's roots; it never verifies the hub.
func TestDialThroughHTTPSProxyRootCAs(t *testing.T) {
	proxyCA, proxyCertificate := testCert(t, "corporate proxy CA", "proxy")
	otherCA, _ := testCert(t, "unrelated CA", "proxy")
	pool := func(certs ...*x509.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range certs {
			p.AddCert(c)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		// hubRoots and proxyRoots build TLSConfig.RootCAs and
		// ProxyRootCAs from the hub's CA (which signed the hub's
		// certificate) and the other CAs; proxyRoots may return nil.
		hubRoots, proxyRoots func(hubCA *x509.CertPool) *x509.CertPool
		// wantErr is the verification error Dial must fail with, nil
		// for success.
		wantErr any
		// wantConnect: the proxy must have been asked to CONNECT (the
		// proxy's TLS succeeded).
		wantConnect bool
	}{
		{
			name:        "proxy CA in ProxyRootCAs",
			hubRoots:    func(hubCA *x509.CertPool) *x509.CertPool { return hubCA },
			proxyRoots:  func(*x509.CertPool) *x509.CertPool { return pool(proxyCA) },
			wantConnect: true,
		},
		{
			name:     "no ProxyRootCAs",
			hubRoots: func(hubCA *x509.CertPool) *x509.CertPool { return hubCA },
			// The hub's roots verify the proxy, as before.
			proxyRoots: func(*x509.CertPool) *x509.CertPool { return nil },
			wantErr:    new(x509.UnknownAuthorityError),
		},
		{
			name: "ProxyRootCAs replaces the hub's roots",
			hubRoots: func(hubCA *x509.CertPool) *x509.CertPool {
				p := hubCA.Clone()
				p.AddCert(proxyCA)
				return p
			},
			proxyRoots: func(*x509.CertPool) *x509.CertPool { return pool(otherCA) },
			wantErr:    new(x509.UnknownAuthorityError),
		},
		{
			name:     "hub CA only in ProxyRootCAs",
			hubRoots: func(*x509.CertPool) *x509.CertPool { return pool(otherCA) },
			proxyRoots: func(hubCA *x509.CertPool) *x509.CertPool {
				p := hubCA.Clone()
				p.AddCert(proxyCA)
				return p
			},
			wantErr:     new(x509.UnknownAuthorityError),
			wantConnect: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The hub's certificate comes from a CA of its own, like the
			// real hub's; h.tls trusts only that CA.
			h := newHarness(t, harnessOpts{ecdsa: true})
			hubAddr := h.hs.Listener.Addr().String()
			p := newConnectProxy(t, &tls.Config{Certificates: []tls.Certificate{proxyCertificate}})
			cfg := h.clientConfig("c1")
			cfg.TLSConfig = &tls.Config{RootCAs: tc.hubRoots(h.tls.RootCAs.Clone())}
			cfg.ProxyRootCAs = tc.proxyRoots(h.tls.RootCAs.Clone())
			cfg.Proxy = http.ProxyURL(p.url)

			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if tc.wantErr != nil {
				err := dialFails(t, ctx, cfg, tc.wantErr)
				// The proxy's TLS failing is reported as the proxy's.
				if proxyFailed := strings.Contains(err.Error(), "proxy "+p.url.Host); proxyFailed == tc.wantConnect {
					t.Errorf("Dial error %q names the proxy: %v, want %v", err, proxyFailed, !tc.wantConnect)
				}
				if got := p.connectTargets(); tc.wantConnect != (len(got) > 0) {
					t.Errorf("CONNECTs to %q, want some: %v", got, tc.wantConnect)
				}
				return
			}
			cs, err := Dial(ctx, cfg)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer cs.Close()
			lineService(t, cs, "via-corporate-proxy")
			checkAlive(t, h, "c1", "via-corporate-proxy")
			if st := cs.TLS(); st == nil || !st.PeerCertificates[0].Equal(h.hs.Certificate()) {
				t.Errorf("the session's TLS peer is not the hub: %+v", st)
			}
			if got, want := p.connectTargets(), []string{hubAddr}; !slices.Equal(got, want) {
				t.Errorf("CONNECTs to %q, want %q", got, want)
			}
		})
	}
}

// dialFails dials cfg, which must fail with an error that errors.As
// finds in want (a pointer to the error type), and returns the error.
func dialFails(t *testing.T, ctx context.Context, cfg ClientConfig, want any) error {
	t.Helper()
	cs, err := Dial(ctx, cfg)
	if err == nil {
		cs.Close()
		t.Fatal("Dial succeeded")
	}
	t.Logf("Dial: %v", err)
	if !errors.As(err, want) {
		t.Errorf("Dial error %v, want a %T", err, want)
	}
	return err
}
