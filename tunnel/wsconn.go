package tunnel

import (
	"context"
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
)

// byteCounters receives the bytes read from and written to a connection.
type byteCounters struct {
	in, out atomic.Uint64
}

// wsConn adapts a WebSocket to the byte stream the multiplexer runs on.
//
// It is websocket.NetConn (binary messages) with three changes. Each Write
// is sent as one WebSocket message (split at writeChunk): the multiplexer
// already gathers every frame queued during a write into the next one, so
// frames of many streams leave together. Reads go through an
// adaptiveReader. Close is immediate (no WebSocket close handshake, which
// waits up to 10 s for a dead peer); writes already returned have reached
// the connection.
type wsConn struct {
	net.Conn // websocket.NetConn
	ws       *websocket.Conn
	counters []*byteCounters

	// wmu serializes writes; werr is the first write error, or
	// net.ErrClosed after Close.
	wmu  sync.Mutex
	werr error

	// rd reads through read; only the multiplexer's reader uses it.
	rd adaptiveReader

	// readErr holds the first read error other than io.EOF, so the session
	// can report why the connection ended (e.g. message too big).
	readErr atomic.Pointer[error]
}

func newWSConn(ws *websocket.Conn, readLimit int64, counters ...*byteCounters) *wsConn {
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	ws.SetReadLimit(readLimit) // NetConn disables the limit; restore it.
	c := &wsConn{Conn: nc, ws: ws, counters: counters}
	c.rd.r = readerFunc(c.read)
	return c
}

// Read reads the byte stream through an adaptiveReader: the multiplexer
// reads 12-byte headers and the WebSocket library's reader fills 4 KiB at
// a time when asked for less, so a burst of small frames would cost a read
// per 4 KiB.
func (c *wsConn) Read(p []byte) (int, error) { return c.rd.Read(p) }

func (c *wsConn) read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for _, k := range c.counters {
		k.in.Add(uint64(n))
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		err = io.EOF // unwrapped: a clean end
	default:
		c.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// Write sends p as one WebSocket message (more if p exceeds writeChunk).
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if err := c.writeMsgs(p); err != nil {
		c.werr = err
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) writeMsgs(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), writeChunk)
		// Counted before the write: the peer may act on these bytes (and
		// someone read the counters) before Write returns.
		for _, kc := range c.counters {
			kc.out.Add(uint64(k))
		}
		if _, err := c.Conn.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// Close closes the connection without a WebSocket close handshake; a
// write in progress fails.
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

// readerFunc is a function as an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
