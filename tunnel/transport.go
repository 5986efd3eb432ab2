package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// TransportConfig configures a [Transport]. The zero value of each field
// but Dial means the default given on it.
type TransportConfig struct {
	// Dial opens a new stream to the host of addr ("CLUSTER-ID:80"), such
	// as [Server.DialAddr]. Required.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle streams kept per host for reuse. If
	// zero, 256.
	MaxIdlePerHost int
	// IdleTimeout is how long an idle stream is kept. It should be below
	// the idle timeout of what the agent connects the stream to
	// (kube-apiserver closes idle HTTP/1.1 connections after 90 s), so a
	// reused stream is rarely one the far end is closing. If zero, 60 s.
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response head (with any 1xx heads
	// before it): an agent cannot make the hub buffer an endless header.
	// If zero, 1 MiB.
	MaxResponseHeaderBytes int64
}

// errHeadTooLarge fails a response whose head exceeds
// MaxResponseHeaderBytes.
var errHeadTooLarge = errors.New("tunnel: response header too large")

// Transport is an HTTP/1.1 [http.RoundTripper] for requests carried on
// tunnel streams, for the hub's proxy in place of [http.Transport].
//
// It does per request what http.Transport does with three goroutines per
// connection (the caller's, a read loop and a write loop) and four
// hand-offs between them: the caller writes the request on the stream,
// reads the response head, and reads the body itself, so a small GET costs
// no goroutine switch in the hub besides the stream's own wake-up, and an
// open watch holds no goroutine of the transport. A request with a body is
// written by one goroutine of its own while the response is read, as a
// server may answer before it has read the body.
//
// Streams whose exchange ended cleanly go back to a per-host pool, most
// recently used first; a request without a body that fails on a reused
// stream before any byte of a response arrived (the far end closed it
// while idle) is sent once more on a new stream. A 101 Switching Protocols
// response's Body is the stream itself (an [io.ReadWriteCloser], as
// [net/http/httputil.ReverseProxy] needs for exec, attach and
// port-forward). Responses are passed through as they are: no
// decompression, no proxy, no HTTP/2. Interim 1xx responses other than 101
// are given to [httptrace.ClientTrace.Got1xxResponse] and skipped; a body
// is sent without waiting for 100 Continue.
type Transport struct {
	cfg TransportConfig

	reused, retried atomic.Uint64
	// readers and writers pool the 4 KiB buffers of exchanges under way;
	// streamReaders the small read buffers of long-lived streams
	// (WithLongLived).
	readers, writers, streamReaders sync.Pool

	mu    sync.Mutex
	idle  map[string][]*tconn // most recently used last
	prune *time.Timer         // closes expired idle streams; nil if none is due
}

// TransportStats are a Transport's counters, for metrics.
type TransportStats struct {
	// Idle is the number of idle streams in the pool now.
	Idle int
	// Reused counts requests sent on a pooled stream.
	Reused uint64
	// Retried counts requests sent again because the pooled stream they
	// took had been closed by the far end.
	Retried uint64
}

// Stats returns the transport's counters.
func (t *Transport) Stats() TransportStats {
	idle := 0
	t.mu.Lock()
	for _, list := range t.idle {
		idle += len(list)
	}
	t.mu.Unlock()
	return TransportStats{Idle: idle, Reused: t.reused.Load(), Retried: t.retried.Load()}
}

// NewTransport returns a Transport; cfg.Dial is required.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.Dial == nil {
		return nil, errors.New("tunnel: TransportConfig.Dial is required")
	}
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = 256
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = 1 << 20
	}
	return &Transport{cfg: cfg, idle: make(map[string][]*tconn)}, nil
}

// tconn is one stream carrying HTTP/1.1 exchanges, one at a time.
type tconn struct {
	t    *Transport
	key  string
	conn net.Conn
	// br reads responses; it is returned to readers when the stream goes
	// idle, so an idle stream holds no buffer.
	br *bufio.Reader
	// got reports whether the current exchange received any byte.
	got bool
	// inHead is set while a response head is read; headLeft is how many
	// more bytes it may take.
	inHead   bool
	headLeft int64
	idleAt   time.Time
	// pending counts the halves of the current exchange still running
	// (writing the request, reading the response); reuse and wrote say
	// how each ended. The second to end pools or closes the stream.
	pending atomic.Int32
	reuse   bool
	wrote   bool
}

// Read reads from the stream, noting that something arrived, and no more
// than headLeft bytes while a response head is read.
func (c *tconn) Read(p []byte) (int, error) {
	if c.inHead {
		if c.headLeft <= 0 {
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > c.headLeft {
			p = p[:c.headLeft]
		}
	}
	n, err := c.conn.Read(p)
	if n > 0 {
		c.got = true
		c.headLeft -= int64(n)
	}
	return n, err
}

// ioBuf is the size of the buffers a request is written and a response
// head read through; larger bodies pass them by.
const ioBuf = 4 << 10

// streamBuf is the read buffer of a long-lived stream's response: it holds
// the head's lines and the chunk size lines of the body; the body's data
// larger than it is read past it, straight into the caller's buffer.
const streamBuf = 512

// longLivedKey marks a request context for WithLongLived.
type longLivedKey struct{}

// WithLongLived returns ctx marked so that a request sent with it is read
// through a small buffer: a watch or a followed log, which a hub holds by
// the thousand, mostly quiet, for minutes. Any request works either way.
func WithLongLived(ctx context.Context) context.Context {
	return context.WithValue(ctx, longLivedKey{}, true)
}

func (t *Transport) getReader(ctx context.Context, r io.Reader) *bufio.Reader {
	pool, size := &t.readers, ioBuf
	if ctx.Value(longLivedKey{}) != nil {
		pool, size = &t.streamReaders, streamBuf
	}
	if br, ok := pool.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, size)
}

func (t *Transport) putReader(br *bufio.Reader) {
	br.Reset(nil)
	if br.Size() == streamBuf {
		t.streamReaders.Put(br)
		return
	}
	t.readers.Put(br)
}

// writeRequest writes req on the stream through a pooled buffer.
func (c *tconn) writeRequest(req *http.Request) error {
	bw, ok := c.t.writers.Get().(*bufio.Writer)
	if ok {
		bw.Reset(c.conn)
	} else {
		bw = bufio.NewWriterSize(c.conn, ioBuf)
	}
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	c.t.writers.Put(bw)
	return err
}

// RoundTrip sends req on a tunnel stream and returns the response. The
// caller must close the response body; a body closed before its end
// closes the stream.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		closeBody(req, hasBody)
		return nil, fmt.Errorf("tunnel: unsupported request URL %v: want http://CLUSTER-ID/PATH", req.URL)
	}
	ctx := req.Context()
	key := req.URL.Host
	if req.URL.Port() == "" {
		key += ":80"
	}
	trace := httptrace.ContextClientTrace(ctx)
	for attempt := 0; ; attempt++ {
		c, reused, err := t.get(ctx, key)
		if err != nil {
			closeBody(req, hasBody)
			return nil, err
		}
		if reused {
			t.reused.Add(1)
		}
		if trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{Conn: c.conn, Reused: reused})
		}
		resp, err := c.roundTrip(ctx, req, hasBody, trace)
		if err == nil {
			return resp, nil
		}
		// A stream that sat idle may have been closed by the far end
		// just as it was taken: nothing of the request was seen, so
		// sending it again is safe if there is no body to replay.
		if reused && !hasBody && !c.got && attempt == 0 && ctx.Err() == nil {
			t.retried.Add(1)
			continue
		}
		return nil, err
	}
}

// recordingBody records the error, other than io.EOF, its reads failed
// with.
type recordingBody struct {
	io.ReadCloser
	err error
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func closeBody(req *http.Request, hasBody bool) {
	if hasBody {
		_ = req.Body.Close()
	}
}

// roundTrip runs one exchange on c. On error the stream is closed.
func (c *tconn) roundTrip(ctx context.Context, req *http.Request, hasBody bool, trace *httptrace.ClientTrace) (*http.Response, error) {
	c.got = false
	// Cancelling the request closes the stream, which ends a blocked
	// read or write; the exchange then reports the context's error.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = c.conn.Close()
		if c.br != nil {
			c.t.putReader(c.br)
			c.br = nil
		}
		c.reuse = false
		c.release()
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("tunnel: %w", cerr)
		}
		return nil, err
	}

	if !hasBody {
		c.pending.Store(1)
		c.wrote = true
		if err := c.writeRequest(req); err != nil {
			c.wrote = false
			return fail(fmt.Errorf("tunnel: writing request: %w", err))
		}
	} else {
		// The writer ends with the body, or when a failed or finished
		// exchange closes the stream under it.
		c.pending.Store(2)
		go func() {
			// A body that fails to read (its client stopped sending, or
			// the hub cut it off at its deadline) ends the exchange: the
			// peer must not take what came before for the whole body,
			// and the response it will never send must not be waited
			// for. A failed write to the stream is left to the reader,
			// which may still get an answer the peer sent early.
			rb := &recordingBody{ReadCloser: req.Body}
			out := new(http.Request)
			*out = *req
			out.Body = rb
			c.wrote = c.writeRequest(out) == nil
			if rb.err != nil {
				_ = c.conn.Close()
			}
			c.release()
		}()
	}

	c.br = c.t.getReader(ctx, c)
	var resp *http.Response
	c.inHead, c.headLeft = true, c.t.cfg.MaxResponseHeaderBytes
	for {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.headLeft <= 0 {
				// The cut may fall anywhere, even mid-line; say why.
				err = errHeadTooLarge
			}
			return fail(fmt.Errorf("tunnel: reading response: %w", err))
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			c.inHead = false
			break
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The stream now belongs to the upgraded protocol; the response
		// head's reader may hold its first bytes.
		resp.Body = &upgraded{c: c, stop: stop}
		return resp, nil
	}
	reuse := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		c.done(stop, reuse)
		return resp, nil
	}
	resp.Body = &body{c: c, rc: resp.Body, ctx: ctx, stop: stop, reuse: reuse}
	return resp, nil
}

// done ends the reading half of an exchange whose response was read to
// its end: the stream can carry another exchange if reuse, the context did
// not end, and nothing follows the response.
func (c *tconn) done(stop func() bool, reuse bool) {
	if !stop() {
		reuse = false // the context ended and closed the stream
	}
	if c.br.Buffered() > 0 {
		reuse = false // bytes beyond the response: the stream is out of step
	}
	c.t.putReader(c.br)
	c.br = nil
	if !reuse {
		_ = c.conn.Close() // also stops a writer still sending a body
	}
	c.reuse = reuse
	c.release()
}

// release ends one half of an exchange (reading the response, writing
// the request); the second to end pools the stream if both went well, or
// closes it.
func (c *tconn) release() {
	if c.pending.Add(-1) > 0 {
		return
	}
	if c.reuse && c.wrote {
		c.t.put(c)
		return
	}
	_ = c.conn.Close()
}

// body is a response body; at its end the stream is reused.
type body struct {
	c     *tconn
	rc    io.ReadCloser
	ctx   context.Context
	stop  func() bool
	reuse bool

	// state moves from bodyReading to bodyFinished (read to its end) or
	// bodyClosed (closed before), once.
	state atomic.Int32
	// mu serializes Read with the end of the exchange; ended says the
	// exchange was ended (the stream pooled or closed).
	mu    sync.Mutex
	ended bool
}

const (
	bodyReading = iota
	bodyFinished
	bodyClosed
)

// errBodyClosed is returned by Read after Close.
var errBodyClosed = errors.New("tunnel: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		if b.state.Load() == bodyFinished {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == nil && b.state.Load() == bodyReading {
		return n, nil
	}
	b.ended = true
	reuse := false
	switch {
	case err == io.EOF && b.state.CompareAndSwap(bodyReading, bodyFinished):
		reuse = b.reuse
	case b.state.Load() == bodyClosed: // by Close, meanwhile
		err = errBodyClosed
	case b.ctx.Err() != nil:
		// Unwrapped, as net/http's transport returns it:
		// httputil.ReverseProxy compares with context.Canceled to tell
		// a client that went away from a failure worth logging.
		err = b.ctx.Err()
	}
	b.c.done(b.stop, reuse)
	return n, err
}

// Readable reports whether a Read would return without waiting for the
// agent: bytes buffered, the end, or an error.
func (b *body) Readable() bool {
	ready, conn := b.readyOrConn()
	if ready {
		return true
	}
	st, ok := conn.(*Stream)
	return !ok || st.Readable()
}

// readyOrConn reports whether a Read would return without reading the
// connection (the exchange ended, or bytes are buffered); if not, it
// returns the connection a Read would wait on.
func (b *body) readyOrConn() (bool, net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return true, nil
	}
	if br := b.c.br; br != nil && br.Buffered() > 0 {
		return true, nil
	}
	return false, b.c.conn
}

// NotifyReadable makes f be called each time the body may have become
// readable (see Readable), until stop is called; f must not block. With
// it a proxy can wait for thousands of quiet watches each on a channel of
// its own, at the top of a small stack, rather than in WaitReadable. It
// returns ok false if the body cannot tell (it does not come from a
// tunnel stream): WaitReadable is then the way to wait.
func (b *body) NotifyReadable(f func()) (stop func(), ok bool) {
	b.mu.Lock()
	st, ok := b.c.conn.(*Stream)
	b.mu.Unlock()
	if !ok {
		return func() {}, false
	}
	st.SetReadNotify(f)
	return func() { st.SetReadNotify(nil) }, true
}

// WaitReadable blocks until a Read has something to return without
// waiting for the agent (bytes buffered, the end, or an error), or ctx
// ends. It holds no buffer while it waits, so a proxy copying thousands
// of quiet watches needs a copy buffer only while one has data.
func (b *body) WaitReadable(ctx context.Context) error {
	ready, conn := b.readyOrConn()
	if ready {
		return nil
	}
	w, ok := conn.(interface {
		WaitReadable(context.Context) error
	})
	if !ok {
		return nil
	}
	return w.WaitReadable(ctx)
}

// Close closes the body; one not read to its end closes its stream (the
// rest of a response cannot be skipped without reading it, and a watch's
// never ends). A Read blocked in another goroutine returns an error.
func (b *body) Close() error {
	if !b.state.CompareAndSwap(bodyReading, bodyClosed) {
		return nil // read to its end, or closed already
	}
	// The exchange has not ended, so the stream is still this body's.
	_ = b.c.conn.Close()
	if b.mu.TryLock() {
		if !b.ended {
			b.ended = true
			b.c.done(b.stop, false)
		}
		b.mu.Unlock()
	}
	// Else a Read is running: it fails on the closed stream and ends
	// the exchange.
	return nil
}

// upgraded is the stream after 101 Switching Protocols.
type upgraded struct {
	c    *tconn
	stop func() bool
	once sync.Once
}

func (u *upgraded) Read(p []byte) (int, error) {
	if br := u.c.br; br != nil && br.Buffered() > 0 {
		return br.Read(p)
	}
	return u.c.conn.Read(p)
}

func (u *upgraded) Write(p []byte) (int, error) { return u.c.conn.Write(p) }

func (u *upgraded) Close() error {
	u.once.Do(func() {
		u.stop()
		_ = u.c.conn.Close()
	})
	return nil
}

// get returns an idle stream to key, or dials one.
func (t *Transport) get(ctx context.Context, key string) (*tconn, bool, error) {
	now := time.Now()
	var stale []*tconn
	t.mu.Lock()
	list := t.idle[key]
	var found *tconn
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(c.idleAt) < t.cfg.IdleTimeout && live(c.conn) {
			found = c
			break
		}
		stale = append(stale, c)
	}
	if len(list) == 0 {
		delete(t.idle, key)
	} else {
		t.idle[key] = list
	}
	t.mu.Unlock()
	for _, c := range stale {
		_ = c.conn.Close()
	}
	if found != nil {
		return found, true, nil
	}
	conn, err := t.cfg.Dial(ctx, "tcp", key)
	if err != nil {
		return nil, false, err
	}
	return &tconn{t: t, key: key, conn: conn}, false, nil
}

// live reports whether an idle stream can still carry a request: it was
// not reset or closed by the far end while idle.
func live(conn net.Conn) bool {
	if l, ok := conn.(interface{ Live() bool }); ok {
		return l.Live()
	}
	return true
}

// put returns an idle stream to the pool.
func (t *Transport) put(c *tconn) {
	c.idleAt = time.Now()
	// An idle stream gives its grown receive window back to the
	// session's budget, so pooled streams do not keep busy ones from
	// growing theirs.
	if st, ok := c.conn.(interface{ ShrinkWindow() }); ok {
		st.ShrinkWindow()
	}
	t.mu.Lock()
	list := t.idle[c.key]
	if len(list) >= t.cfg.MaxIdlePerHost {
		t.mu.Unlock()
		_ = c.conn.Close()
		return
	}
	t.idle[c.key] = append(list, c)
	if t.prune == nil {
		t.prune = time.AfterFunc(t.cfg.IdleTimeout, t.pruneIdle)
	}
	t.mu.Unlock()
}

// pruneIdle closes streams idle for IdleTimeout and those the far end
// closed (or whose tunnel ended) meanwhile, and schedules itself again
// while any stream is idle.
func (t *Transport) pruneIdle() {
	now := time.Now()
	var stale []*tconn
	t.mu.Lock()
	for key, list := range t.idle {
		keep := list[:0]
		for _, c := range list {
			if now.Sub(c.idleAt) >= t.cfg.IdleTimeout || !live(c.conn) {
				stale = append(stale, c)
			} else {
				keep = append(keep, c)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, key)
		} else {
			t.idle[key] = keep
		}
	}
	t.prune = nil
	if len(t.idle) > 0 {
		t.prune = time.AfterFunc(t.cfg.IdleTimeout/2, t.pruneIdle)
	}
	t.mu.Unlock()
	for _, c := range stale {
		_ = c.conn.Close()
	}
}

// CloseIdleConnections closes every idle stream.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*tconn)
	if t.prune != nil {
		t.prune.Stop()
		t.prune = nil
	}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			_ = c.conn.Close()
		}
	}
}
