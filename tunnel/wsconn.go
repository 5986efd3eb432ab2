package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

const (
	// DefaultMaxMessageSize is the default limit of one received WebSocket
	// message. A larger message closes the connection with status 1009
	// (message too big); reads are streamed, so the limit bounds work, not
	// an allocation.
	DefaultMaxMessageSize = 1 << 20
	// writeChunk is the largest WebSocket message this package sends.
	writeChunk = 256 << 10
	// yamuxHeaderLen is the size of a yamux frame header (yamux spec.md).
	yamuxHeaderLen = 12
)

// byteCounters receives the bytes read from and written to a connection.
type byteCounters struct {
	in, out atomic.Uint64
}

// wsConn adapts a WebSocket to the byte stream yamux runs on.
//
// It is websocket.NetConn (every Write is one binary message) with two
// changes. Writes are coalesced: yamux's send loop writes a data frame as two
// calls, the 12-byte header and then the body, so a data header is held back
// and sent in the same WebSocket message as its body; that halves the message
// count and keeps the header and payload in one TLS record. Large writes are
// cut into messages of at most writeChunk bytes. Close is immediate (no
// WebSocket close handshake, which waits up to 10 s for a dead peer); callers
// that need the peer to see a last message linger for it themselves.
type wsConn struct {
	net.Conn // websocket.NetConn
	ws       *websocket.Conn
	counters []*byteCounters

	// wmu guards hdr, pending and buf. yamux writes from one goroutine; the
	// lock makes the adapter safe regardless.
	wmu     sync.Mutex
	hdr     [yamuxHeaderLen]byte
	pending bool
	buf     []byte

	// readErr holds the first read error other than io.EOF, so the session
	// can report why the connection ended (e.g. message too big).
	readErr atomic.Pointer[error]
}

func newWSConn(ws *websocket.Conn, readLimit int64, counters ...*byteCounters) *wsConn {
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	ws.SetReadLimit(readLimit) // NetConn disables the limit; restore it.
	return &wsConn{Conn: nc, ws: ws, counters: counters}
}

func (c *wsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for _, k := range c.counters {
		k.in.Add(uint64(n))
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		err = io.EOF // unwrapped, as yamux expects of a clean end
	default:
		c.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// isDataHeader reports whether p is exactly one yamux data frame header
// announcing a body.
func isDataHeader(p []byte) bool {
	return len(p) == yamuxHeaderLen && p[0] == 0 && p[1] == 0 &&
		binary.BigEndian.Uint32(p[8:12]) > 0
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.pending && isDataHeader(p) {
		copy(c.hdr[:], p)
		c.pending = true
		return len(p), nil
	}
	n := len(p)
	if c.pending {
		c.pending = false
		k := min(len(p), writeChunk-yamuxHeaderLen)
		c.buf = append(append(c.buf[:0], c.hdr[:]...), p[:k]...)
		if err := c.writeMsg(c.buf); err != nil {
			return 0, err
		}
		if cap(c.buf) > 64<<10 {
			c.buf = nil // keep idle sessions small
		}
		p = p[k:]
	}
	for len(p) > 0 {
		k := min(len(p), writeChunk)
		if err := c.writeMsg(p[:k]); err != nil {
			return n - len(p), err
		}
		p = p[k:]
	}
	return n, nil
}

func (c *wsConn) writeMsg(p []byte) error {
	if _, err := c.Conn.Write(p); err != nil {
		return err
	}
	for _, k := range c.counters {
		k.out.Add(uint64(len(p)))
	}
	return nil
}

// Close closes the connection at once, without a WebSocket close handshake.
func (c *wsConn) Close() error {
	err := c.ws.CloseNow()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// err returns the first read error seen, or nil.
func (c *wsConn) err() error {
	if p := c.readErr.Load(); p != nil {
		return *p
	}
	return nil
}
