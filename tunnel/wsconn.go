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
	wmu      sync.Mutex
	wcond    sync.Cond
	hdr      [yamuxHeaderLen]byte
	hdrHeld  bool
	pending  *[]byte // bytes to send; nil when empty
	writing  bool    // the writer goroutine runs
	werr     error   // first write error; later writes fail with it
	writerWG sync.WaitGroup

	// Read state, used by the one reading goroutine: rbuf is the pooled
	// buffer while data streams in, rdata its unread part, rfull whether
	// the last read filled the buffer it was given.
	rbuf  *[]byte
	rdata []byte
	rfull bool

	// readErr holds the first read error other than io.EOF, so the session
	// can report why the connection ended (e.g. message too big).
	readErr atomic.Pointer[error]
}

func newWSConn(ws *websocket.Conn, readLimit int64, counters ...*byteCounters) *wsConn {
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	ws.SetReadLimit(readLimit) // NetConn disables the limit; restore it.
	c := &wsConn{Conn: nc, ws: ws, counters: counters}
	c.wcond.L = &c.wmu
	return c
}

// readBufSize is the size of a wsConn's read buffer, used while data
// streams in.
const readBufSize = 64 << 10

var readBufPool = sync.Pool{New: func() any {
	b := make([]byte, readBufSize)
	return &b
}}

// Read reads the byte stream. yamux reads through a 4 KiB bufio.Reader, and
// the WebSocket library's own reader fills 4 KiB at a time from the
// connection when asked for less, so a burst of small frames cost a read
// syscall (or TLS record copy) per 4 KiB. While data streams in (the last
// read filled its buffer) reads go through a pooled 64 KiB buffer instead;
// once a read comes back short, the buffer is returned and the next read
// waits in the caller's buffer, so an idle connection holds none.
func (c *wsConn) Read(p []byte) (int, error) {
	// Only yamux's receive loop reads, so the read fields need no lock.
	if c.rbuf != nil {
		n := copy(p, c.rdata)
		c.rdata = c.rdata[n:]
		if len(c.rdata) == 0 {
			if !c.rfull {
				readBufPool.Put(c.rbuf)
				c.rbuf, c.rdata = nil, nil
			}
		}
		if n > 0 {
			return n, nil
		}
	}
	if len(p) >= readBufSize/2 || !c.rfull {
		if c.rbuf != nil { // drained: do not hold it while waiting
			readBufPool.Put(c.rbuf)
			c.rbuf, c.rdata = nil, nil
		}
		n, err := c.read(p)
		c.rfull = err == nil && n == len(p)
		return n, err
	}
	if c.rbuf == nil {
		c.rbuf = readBufPool.Get().(*[]byte)
	}
	n, err := c.read(*c.rbuf)
	c.rfull = err == nil && n == len(*c.rbuf)
	c.rdata = (*c.rbuf)[:n]
	k := copy(p, c.rdata)
	c.rdata = c.rdata[k:]
	if len(c.rdata) == 0 && !c.rfull {
		readBufPool.Put(c.rbuf)
		c.rbuf, c.rdata = nil, nil
	}
	return k, err
}

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
		c.writerWG.Add(1)
		go c.writeLoop()
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
	defer c.writerWG.Done()
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

// Close closes the connection at once, without a WebSocket close handshake.
func (c *wsConn) Close() error {
	err := c.ws.CloseNow()
	c.writerWG.Wait()
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
