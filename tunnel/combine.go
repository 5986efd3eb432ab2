package tunnel

import (
	"context"
	"crypto/tls"
	"net"
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
// DialTLSContext and remembers the connection it made. tls carries the
// ClientConfig's session cache (see dialWebSocket), so the handshake
// resumes a session when the cache holds a ticket for the host.
type combiningDialer struct {
	dialer *net.Dialer
	tls    *tls.Config

	mu   sync.Mutex
	conn *combiningConn
}

func (d *combiningDialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := d.tls.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	// Full-size records from the start: the connection carries bulk
	// data, and combiningConn already keeps the syscalls few.
	cfg.DynamicRecordSizingDisabled = true
	cc := &combiningConn{Conn: raw}
	tc := tls.Client(cc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	d.mu.Lock()
	d.conn = cc
	d.mu.Unlock()
	return tc, nil
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
