package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// frameBufSize is the size of a frameWriter's pooled buffer: writes are
// passed on at frame ends or when this much is pending.
const frameBufSize = writeChunk + 16

var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, frameBufSize)
	return &b
}}

// frameWriter sits under the WebSocket library and passes each complete
// WebSocket frame to the connection in one Write.
//
// coder/websocket writes through a 4 KiB bufio.Writer, and masks client
// frames in that buffer, so a 32 KiB message from the agent costs eight
// syscalls (and eight TLS records). frameWriter parses the frame headers
// going by (RFC 6455 section 5.2), collects the bytes and writes when a frame
// is complete, so the bytes on the wire are unchanged but arrive in one
// write. Its buffer comes from a pool and goes back after each flush, so an
// idle connection holds none.
type frameWriter struct {
	w io.Writer

	// Only the WebSocket library's writer goroutine (under its write lock)
	// calls Write, so there is no lock here.
	buf       *[]byte  // pending bytes; nil when empty
	hdr       [14]byte // partial frame header
	hn        int      // bytes in hdr
	left      uint64   // payload bytes still to come in the current frame
	inPayload bool
	err       error
	// flusher, if not nil, is flushed after each write to w.
	flusher interface{ Flush() error }
}

// wsHeaderLen returns the full header length announced by the first
// bytes of h (at least 2 bytes are needed to know).
func wsHeaderLen(h []byte) int {
	if len(h) < 2 {
		return 2
	}
	n := 2
	switch h[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if h[1]&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

func wsPayloadLen(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return binary.BigEndian.Uint64(h[2:10])
	default:
		return uint64(l)
	}
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := len(p)
	for len(p) > 0 {
		if f.inPayload {
			k := min(uint64(len(p)), f.left)
			f.add(p[:k])
			p = p[k:]
			f.left -= k
			f.inPayload = f.left > 0
		} else {
			f.hdr[f.hn] = p[0]
			f.hn++
			p = p[1:]
			if f.hn == wsHeaderLen(f.hdr[:f.hn]) {
				f.left = wsPayloadLen(f.hdr[:f.hn])
				f.add(f.hdr[:f.hn])
				f.hn = 0
				f.inPayload = f.left > 0
			}
		}
		if f.buf != nil && len(*f.buf) >= frameBufSize {
			if err := f.flush(); err != nil {
				return 0, err
			}
		}
	}
	if !f.inPayload && f.hn == 0 { // at a frame boundary
		if err := f.flush(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (f *frameWriter) add(p []byte) {
	if f.buf == nil {
		f.buf = framePool.Get().(*[]byte)
	}
	*f.buf = append(*f.buf, p...)
}

func (f *frameWriter) flush() error {
	if f.buf == nil {
		return nil
	}
	_, err := f.w.Write(*f.buf)
	if err == nil && f.flusher != nil {
		err = f.flusher.Flush()
	}
	*f.buf = (*f.buf)[:0]
	if cap(*f.buf) == frameBufSize {
		framePool.Put(f.buf)
	}
	f.buf = nil
	if err != nil {
		f.err = err
	}
	return err
}

// frameWriterTransport gives the upgraded connection of a WebSocket dial a
// frameWriter.
// If the connection was dialed by combining, its combiningConn is enabled
// and flushed after each frame.
type frameWriterTransport struct {
	http.RoundTripper
	combining *combiningDialer
}

func (t frameWriterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(req)
	cc := t.combining.take()
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		fw := frameWriter{w: rwc}
		if cc != nil {
			cc.enable()
			fw.flusher = cc
		}
		resp.Body = &upgradedBody{ReadWriteCloser: rwc, fw: fw}
	}
	return resp, nil
}

type upgradedBody struct {
	io.ReadWriteCloser
	fw frameWriter
}

func (b *upgradedBody) Write(p []byte) (int, error) { return b.fw.Write(p) }

// upgradeResponse is the ResponseWriter a WebSocket accept runs on. It
// holds the 101 response back until release, so the hub can register the
// session before the agent learns it was accepted, and gives the hijacked
// connection a frameWriter and an adaptiveReader.
type upgradeResponse struct {
	http.ResponseWriter
	hj   http.Hijacker // nil if the ResponseWriter cannot hijack
	code int           // the 101 held back, or 0
	conn *bufferedConn // the hijacked connection
}

// WriteHeader holds a 101 back for Hijack; other codes pass through.
func (w *upgradeResponse) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols && w.hj != nil {
		w.code = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *upgradeResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hj == nil {
		return nil, nil, http.ErrNotSupported
	}
	c, brw, err := w.hj.Hijack()
	if err != nil {
		return c, brw, err
	}
	bc := &bufferedConn{Conn: c}
	if w.code != 0 {
		// net/http wrote nothing, as WriteHeader never reached it: the
		// response head goes out on release or with the first write.
		var head bytes.Buffer
		head.WriteString("HTTP/1.1 " + strconv.Itoa(w.code) + " " + http.StatusText(w.code) + "\r\n")
		w.Header().Write(&head)
		head.WriteString("\r\n")
		bc.head = head.Bytes()
	} else {
		bc.headSent.Store(true)
	}
	w.conn = bc
	// Later writes go through a frameWriter. The bufio.Writer only
	// gathers frame headers and small frames; large payloads pass
	// straight through it, so 512 bytes suffice.
	//
	// net/http's 4 KiB reader is replaced by a minimal one, and the
	// connection itself reads through an adaptiveReader, which buffers
	// only while data streams in: an idle session then holds no read
	// buffer here. The connection is wrapped, not just the reader,
	// because coder/websocket re-points the bufio.Reader at the
	// connection after the upgrade; unbuffered, every WebSocket frame
	// header and payload was a read syscall of its own (2.3 reads per
	// watch line at the hub). Bytes the agent sent right after the
	// upgrade request, if any, are read first.
	var r io.Reader = c
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(early)), c)
	}
	bc.rd.r = r
	br := bufio.NewReaderSize(bc, 16)
	return bc, bufio.NewReadWriter(br, bufio.NewWriterSize(&frameWriter{w: bc}, 512)), nil
}

// release sends the response head held back, if it was not sent yet
// (with the first bytes written, say a stream opened at once).
func (w *upgradeResponse) release() error {
	if w.conn == nil {
		return errors.New("tunnel: the upgrade did not hijack the connection")
	}
	if w.conn.headSent.Load() {
		return nil
	}
	_, err := w.conn.Write(nil)
	return err
}

// bufferedConn is a hijacked connection whose reads go through an
// adaptiveReader (only one goroutine reads it, the WebSocket reader) and
// whose first write is preceded by the response head held back.
type bufferedConn struct {
	net.Conn
	rd adaptiveReader

	headSent atomic.Bool
	mu       sync.Mutex // guards head until headSent
	head     []byte
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.rd.Read(p) }

func (b *bufferedConn) Write(p []byte) (int, error) {
	if b.headSent.Load() {
		return b.Conn.Write(p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.headSent.Load() {
		if len(p) == 0 {
			return 0, nil // a release that lost the race to a write
		}
		return b.Conn.Write(p)
	}
	bufs := net.Buffers{b.head, p}
	n, err := bufs.WriteTo(b.Conn) // one writev for head and data
	if err != nil {
		return max(0, int(n)-len(b.head)), err
	}
	b.head = nil
	b.headSent.Store(true)
	return len(p), nil
}
