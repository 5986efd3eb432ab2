package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

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

// maxPendingWrite bounds the bytes a wsConn holds for its writer before
// Write blocks: the session's own backlog, on top of yamux's windows.
const maxPendingWrite = 512 << 10

// writeBufPool holds wsConn write buffers, so an idle connection holds none.
var writeBufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 64<<10)
	return &b
}}

// wsConn adapts a WebSocket to the byte stream yamux runs on.
//
// It is websocket.NetConn (binary messages) with three changes.
//
// Writes are batched behind the caller: Write appends to a buffer and
// returns; a writer goroutine, started when the buffer becomes non-empty and
// gone when it is empty again, sends everything pending as one WebSocket
// message (at most writeChunk bytes). yamux has a single send loop that
// waits for each frame's Write, so without this every frame, however small,
// cost a message, a syscall and (over TLS) a record, one after the other;
// now frames of many streams that queue while a write is in flight leave
// together. Write blocks only while maxPendingWrite bytes are pending, and
// reports a failed earlier write.
//
// A yamux data header is never sent in a message without its body: yamux
// writes them as two calls, and the header is held back until the body
// comes, which keeps header and payload in one TLS record.
//
// Close is immediate (no WebSocket close handshake, which waits up to 10 s
// for a dead peer) and waits for the writer goroutine; callers that need the
// peer to see a last message linger for it themselves.
type wsConn struct {
	net.Conn // websocket.NetConn
	ws       *websocket.Conn
	counters []*byteCounters

	// wmu guards the fields below; wcond (on wmu) signals that pending
	// bytes were written or writing failed.
	wmu     sync.Mutex
	wcond   sync.Cond
	hdr     [yamuxHeaderLen]byte
	hdrHeld bool
	pending *[]byte // bytes to send; nil when empty
	writing bool    // the writer goroutine runs; it clears this last
	werr    error   // first write error, or net.ErrClosed after Close

	// rd reads through read; only yamux's receive loop uses it.
	rd adaptiveReader

	// readErr holds the first read error other than io.EOF, so the session
	// can report why the connection ended (e.g. message too big).
	readErr atomic.Pointer[error]
}

func newWSConn(ws *websocket.Conn, readLimit int64, counters ...*byteCounters) *wsConn {
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	ws.SetReadLimit(readLimit) // NetConn disables the limit; restore it.
	c := &wsConn{Conn: nc, ws: ws, counters: counters}
	c.wcond.L = &c.wmu
	c.rd.r = readerFunc(c.read)
	return c
}

// Read reads the byte stream through an adaptiveReader: yamux reads
// through a 4 KiB bufio.Reader and the WebSocket library's reader fills
// 4 KiB at a time when asked for less, so a burst of small frames would cost
// a read per 4 KiB.
func (c *wsConn) Read(p []byte) (int, error) { return c.rd.Read(p) }

func (c *wsConn) read(p []byte) (int, error) {
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
	if c.werr != nil {
		return 0, c.werr
	}
	if !c.hdrHeld && isDataHeader(p) {
		copy(c.hdr[:], p)
		c.hdrHeld = true
		return len(p), nil
	}
	if c.pending == nil {
		c.pending = writeBufPool.Get().(*[]byte)
	}
	if c.hdrHeld {
		c.hdrHeld = false
		*c.pending = append(*c.pending, c.hdr[:]...)
	}
	*c.pending = append(*c.pending, p...)
	if !c.writing {
		c.writing = true
		go c.writeLoop() // owned: Close waits until writing is false

	}
	for c.pending != nil && len(*c.pending) > maxPendingWrite && c.werr == nil {
		c.wcond.Wait()
	}
	if c.werr != nil {
		return 0, c.werr
	}
	return len(p), nil
}

// writeLoop sends pending bytes until there are none, then exits.
func (c *wsConn) writeLoop() {
	c.wmu.Lock()
	for c.pending != nil && c.werr == nil {
		buf := c.pending
		c.pending = nil
		c.wmu.Unlock()
		err := c.writeMsgs(*buf)
		*buf = (*buf)[:0]
		if cap(*buf) <= 2*maxPendingWrite {
			writeBufPool.Put(buf)
		}
		c.wmu.Lock()
		if err != nil && c.werr == nil {
			c.werr = err
		}
		c.wcond.Broadcast()
	}
	if c.werr != nil && c.pending != nil {
		c.pending = nil // never to be sent
	}
	c.writing = false
	c.wcond.Broadcast()
	c.wmu.Unlock()
}

func (c *wsConn) writeMsgs(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), writeChunk)
		if _, err := c.Conn.Write(p[:k]); err != nil {
			return err
		}
		for _, kc := range c.counters {
			kc.out.Add(uint64(k))
		}
		p = p[k:]
	}
	return nil
}

// closeFlushTimeout bounds how long Close lets the writer goroutine send
// what yamux already handed over (a final goodbye or reject, say).
const closeFlushTimeout = 250 * time.Millisecond

// Close closes the connection without a WebSocket close handshake. Bytes
// already written get up to closeFlushTimeout to leave; then the
// connection is closed and Close waits for the writer goroutine to end.
func (c *wsConn) Close() error {
	c.wmu.Lock()
	if c.writing && c.werr == nil {
		t := time.AfterFunc(closeFlushTimeout, func() {
			c.wmu.Lock()
			if c.werr == nil {
				c.werr = net.ErrClosed
			}
			c.wcond.Broadcast()
			c.wmu.Unlock()
		})
		for c.writing && c.werr == nil {
			c.wcond.Wait()
		}
		t.Stop()
	}
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.wmu.Unlock()
	err := c.ws.CloseNow()
	// A writer still running fails now; wait for it.
	c.wmu.Lock()
	for c.writing {
		c.wcond.Wait()
	}
	c.wmu.Unlock()
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
