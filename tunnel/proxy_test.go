package tunnel

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// connectProxy is a minimal HTTPS (CONNECT) proxy on loopback.
func connectProxy(t *testing.T) (*url.URL, *atomic.Int64) {
	var connects atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		connects.Add(1)
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, &connects
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
