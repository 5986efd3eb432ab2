package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eco-project/eco/pki"
)

// newECDSAHarness is newHarness with TLS and, like the real hub, an ECDSA
// P-256 serving certificate from pki (httptest's own is RSA).
func newECDSAHarness(t testing.TB, server func(*ServerConfig)) *harness {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("test hub CA", now)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.LeafRequest{CommonName: "eco-hub", Hosts: []string{"127.0.0.1"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, events: make(chan Event, 4096)}
	cfg := ServerConfig{
		Authenticate: testAuth,
		Events: func(ev Event) {
			select {
			case h.events <- ev:
			default:
			}
		},
		Logger: testLogger(t),
	}
	if server != nil {
		server(&cfg)
	}
	if h.srv, err = NewServer(cfg); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/tunnel", h.srv)
	h.hs = httptest.NewUnstartedServer(mux)
	h.hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	h.hs.StartTLS()
	h.url = "wss" + strings.TrimPrefix(h.hs.URL, "https") + "/tunnel"
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	h.tls = &tls.Config{RootCAs: roots}
	t.Cleanup(h.hs.Close)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// TestDialResumesTLSSession: a second Dial with a session cache resumes
// the TLS session of the first, directly and through a CONNECT proxy;
// without a cache it is a full handshake again.
func TestDialResumesTLSSession(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proxy bool
		cache string // "": none, "field": ClientConfig.SessionCache, "tls": TLSConfig.ClientSessionCache
		want  bool
	}{
		{"direct/no cache", false, "", false},
		{"direct/SessionCache", false, "field", true},
		{"direct/TLSConfig cache", false, "tls", true},
		{"proxy/no cache", true, "", false},
		{"proxy/SessionCache", true, "field", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newECDSAHarness(t, nil)
			cache := tls.NewLRUClientSessionCache(1)
			var proxy func(*http.Request) (*url.URL, error)
			var connects *atomic.Int64
			if tc.proxy {
				var proxyURL *url.URL
				proxyURL, connects = connectProxy(t)
				proxy = http.ProxyURL(proxyURL)
			}
			mod := func(c *ClientConfig) {
				switch tc.cache {
				case "field":
					c.SessionCache = cache
				case "tls":
					c.TLSConfig = c.TLSConfig.Clone()
					c.TLSConfig.ClientSessionCache = cache
				}
				if proxy != nil {
					c.Proxy = proxy
				}
			}
			for i, want := range []bool{false, tc.want} {
				cs := h.dial("c1", mod)
				lineService(t, cs, "a")
				checkAlive(t, h, "c1", "a")
				st := cs.TLS()
				if st == nil {
					t.Fatal("TLS() = nil on a wss:// session")
				}
				if st.DidResume != want {
					t.Errorf("dial %d: DidResume = %v, want %v", i+1, st.DidResume, want)
				}
				cs.Close()
				waitDone(t, cs, 5*time.Second)
			}
			if connects != nil && connects.Load() != 2 {
				t.Errorf("%d CONNECTs through the proxy, want 2", connects.Load())
			}
		})
	}
}

// TestDialTLSStateNilForWS: a ws:// session has no TLS state.
func TestDialTLSStateNilForWS(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if st := h.dial("c1", nil).TLS(); st != nil {
		t.Fatalf("TLS() = %+v on a ws:// session, want nil", st)
	}
}
