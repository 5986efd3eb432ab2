package tunnel

import (
	"context"
	"errors"
	"fmt"
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
// It reads and writes binary messages as websocket.NetConn does, with four
// changes, and is the multiplexer's io.ReadWriteCloser, not a net.Conn.
// Each Write is sent as one WebSocket message (split at writeChunk): the
// multiplexer already gathers every frame queued during a write into the
// next one, so frames of many streams leave together. Reads go through an
// adaptiveReader. Close is immediate (no WebSocket close handshake, which
// waits up to 10 s for a dead peer); writes already returned have reached
// the connection. And it has no deadlines (the multiplexer's streams have
// them, and heartbeats notice a dead peer), so it reads and writes with a
// context that never ends: NetConn's cancellable ones made the library
// register and drop a context callback for every message read and
// written.
type wsConn struct {
	ws       *websocket.Conn
	counters []*byteCounters

	// wmu serializes writes; werr is the first write error, or
	// net.ErrClosed after Close.
	wmu  sync.Mutex
	werr error

	// rd reads through read; only the multiplexer's reader uses it, and
	// it alone uses msg, the message being read, and eof, set once the
	// peer closed the WebSocket normally.
	rd  adaptiveReader
	msg io.Reader
	eof bool
	// direct skips rd: the connection under the WebSocket already reads
	// through an adaptiveReader (the hub's hijacked connection,
	// bufferedConn), and a second buffer here copied every byte of a
	// download once more (14 % of the hub's CPU in the bulk profile).
	direct bool

	// readErr holds the first read error other than io.EOF, so the session
	// can report why the connection ended (e.g. message too big).
	readErr atomic.Pointer[error]
}

// newWSConn adapts ws. direct says the connection under ws reads through
// an adaptiveReader of its own, so reads need no second buffer here.
func newWSConn(ws *websocket.Conn, readLimit int64, direct bool, counters ...*byteCounters) *wsConn {
	ws.SetReadLimit(readLimit)
	c := &wsConn{ws: ws, counters: counters, direct: direct}
	c.rd.r = readerFunc(c.read)
	return c
}

// Read reads the byte stream through an adaptiveReader, unless direct:
// the multiplexer reads 12-byte headers and the WebSocket library's reader
// fills 4 KiB at a time when asked for less, so over a plain connection a
// burst of small frames would cost a read per 4 KiB.
func (c *wsConn) Read(p []byte) (int, error) {
	if c.direct {
		return c.read(p)
	}
	return c.rd.Read(p)
}

func (c *wsConn) read(p []byte) (int, error) {
	n, err := c.readMsgs(p)
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

// readMsgs reads the binary messages' bytes as one stream.
func (c *wsConn) readMsgs(p []byte) (int, error) {
	for {
		if c.eof {
			return 0, io.EOF
		}
		if c.msg == nil {
			typ, r, err := c.ws.Reader(context.Background())
			if err != nil {
				switch websocket.CloseStatus(err) {
				case websocket.StatusNormalClosure, websocket.StatusGoingAway:
					c.eof = true
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.MessageBinary {
				return 0, fmt.Errorf("tunnel: received a WebSocket message of type %v; the tunnel carries binary messages only", typ)
			}
			c.msg = r
		}
		n, err := c.msg.Read(p)
		if err == io.EOF {
			c.msg, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
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
		if err := c.ws.Write(context.Background(), websocket.MessageBinary, p[:k]); err != nil {
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
