package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
)

// maxCombined bounds the bytes a combiningConn gathers before it writes
// without waiting for Flush.
const maxCombined = 512 << 10

// combiningConn sits under the agent's TLS connection. crypto/tls writes
// every record (at most 16 KiB) to its connection at once, so one 256 KiB
// WebSocket message cost sixteen syscalls. Once enabled (after the
// handshake and the HTTP upgrade, both of which need their writes to leave
// at once) it gathers writes until Flush, which the frameWriter calls after
// each complete WebSocket frame: one syscall per message again. Its buffer
// comes from a pool and goes back on Flush, so an idle connection holds
// none.
type combiningConn struct {
	net.Conn

	mu  sync.Mutex // guards on, buf and err; tls may write from its reader too
	on  bool
	buf *[]byte
	err error
}

var combinePool = sync.Pool{New: func() any {
	b := make([]byte, 0, frameBufSize+4096)
	return &b
}}

func (c *combiningConn) enable() {
	c.mu.Lock()
	c.on = true
	c.mu.Unlock()
}

func (c *combiningConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return c.Conn.Write(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.buf == nil {
		c.buf = combinePool.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= maxCombined {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what was gathered.
func (c *combiningConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *combiningConn) flushLocked() error {
	if c.buf == nil || c.err != nil {
		return c.err
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	if cap(*c.buf) <= 2*maxCombined {
		combinePool.Put(c.buf)
	}
	c.buf = nil
	c.err = err
	return err
}

// combiningDialer dials TLS over a combiningConn for http.Transport's
// DialTLSContext and remembers the connection it made.
//
// The Transport calls DialTLSContext for the first hop when that hop speaks
// TLS: the hub for a direct wss:// URL, the proxy for an https:// proxy
// URL (it then sends CONNECT over that connection and does the hub's TLS
// itself, inside the tunnel, with TLSClientConfig; an http:// proxy is
// dialed with DialContext). So dialTLS must know which of the two it is
// dialing: recordProxy, wrapped around the Transport's proxy function,
// records whether the request being dialed goes through a proxy. That is
// the Transport's own rule (the first hop is the proxy if there is one),
// and it needs no comparison of addresses, which the Transport
// canonicalizes (default port, IDNA) before dialing.
//
// tls is the hub's configuration. It carries the ClientConfig's session
// cache (see dialWebSocket), so the handshake with the hub resumes a
// session when the cache holds a ticket for it. proxyRoots is the
// ClientConfig's ProxyRootCAs, for an https:// proxy only.
type combiningDialer struct {
	dialer     *net.Dialer
	tls        *tls.Config
	proxyRoots *x509.CertPool

	mu      sync.Mutex     // guards proxied and conn
	proxied bool           // the request being dialed goes through a proxy
	conn    *combiningConn // the connection dialed, until take
}

// recordProxy returns proxy, noting for dialTLS whether it chose a proxy.
// The Transport calls it for each request before it dials;
// dialWebSocket's Transport carries one request at a time.
func (d *combiningDialer) recordProxy(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(r *http.Request) (*url.URL, error) {
		u, err := proxy(r)
		d.mu.Lock()
		d.proxied = u != nil
		d.mu.Unlock()
		return u, err
	}
}

func (d *combiningDialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	proxied := d.proxied
	d.mu.Unlock()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	var cfg *tls.Config
	if proxied {
		cfg = proxyTLSConfig(d.tls, d.proxyRoots, host)
	} else {
		cfg = d.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
	}
	// Full-size records from the start: the connection carries bulk
	// data, and combiningConn already keeps the syscalls few.
	cfg.DynamicRecordSizingDisabled = true

	raw, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// Through an https:// proxy the combiningConn goes under the proxy's
	// TLS too: it is still the bottom of the stack (the hub's TLS, then
	// the proxy's, then it), and each write of a frame passes through
	// both TLS layers synchronously, neither of which holds bytes back,
	// so Flush after the frame sends all of it. There it saves more than
	// directly: every 16 KiB record of the hub's becomes two of the
	// proxy's, so two writes each without it. It is enabled only after
	// the 101, when the proxy's handshake, CONNECT and the hub's
	// handshake are all done.
	cc := &combiningConn{Conn: raw}
	tc := tls.Client(cc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		if proxied {
			return nil, fmt.Errorf("TLS with proxy %s: %w", addr, err)
		}
		return nil, err
	}
	d.mu.Lock()
	d.conn = cc
	d.mu.Unlock()
	return tc, nil
}

// proxyTLSConfig returns the configuration for the TLS to an https://
// proxy at host, derived from the hub's as net/http derives it from
// TLSClientConfig when it dials a proxy itself (same roots, client
// certificates and verification settings), except for what belongs to
// the hub alone: ServerName is always the proxy's host (net/http would
// keep a ServerName set for the hub and check the proxy's certificate
// against the hub's name), the proxy's tickets stay out of the hub's
// session cache (under the hub's ServerName they would take the hub's
// place; a cache for the proxy would outlive no Dial, so there is none),
// and the hub's ECH configuration is not offered to the proxy. If roots
// is not nil (ClientConfig.ProxyRootCAs), it replaces the hub's RootCAs:
// the hub's private CA rarely signs a corporate proxy's certificate.
func proxyTLSConfig(hub *tls.Config, roots *x509.CertPool, host string) *tls.Config {
	cfg := hub.Clone()
	if roots != nil {
		cfg.RootCAs = roots
	}
	cfg.ServerName = host
	cfg.ClientSessionCache = nil
	cfg.EncryptedClientHelloConfigList = nil
	// CONNECT is HTTP/1.1.
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// take returns the connection dialed, if any, and forgets it.
func (d *combiningDialer) take() *combiningConn {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.conn
	d.conn = nil
	return c
}
