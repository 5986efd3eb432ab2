package tunnel

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

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
			h := newHarness(t, harnessOpts{ecdsa: true})
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
