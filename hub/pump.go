package hub

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A watch that a hub serving Argo CD holds per resource type per cluster
// is quiet most of its life. Served by net/http, each one keeps a
// handler goroutine whose stack grew through the whole handler chain
// (16 KiB), a background reader, the connection's read and write buffers
// and ReverseProxy's copy buffer. Once the head of a streaming response
// to an HTTP/1.1 client is written, the proxy hands the client's
// connection and the tunnel body to a hijackedPump instead: one shallow
// goroutine, no buffer while quiet (it waits on the tunnel stream with
// WaitReadable and borrows one to copy what arrived), the chunked
// framing written by hand, and the client's connection watched by the
// proxy's one epoll instance (hangups), which starts a goroutine to read
// it only when the client speaks or leaves. HTTP/2 clients keep the handler
// (pumpStream); they share connections, so only its stack stays per
// watch. Measured in docs/benchmarks.md (hub memory per open watch).

// chunkHeadRoom is what a pump keeps free before the data in its buffer
// for the chunk size line: up to 8 hex digits of a 16 KiB buffer and CRLF.
const chunkHeadRoom = 10

// handOff hijacks the client connection of a streaming response whose
// head ReverseProxy wrote, and leaves the rest of the exchange to a
// hijackedPump: it calls done when the stream ends. It returns false,
// having changed nothing but flushed the head, when the connection
// cannot be hijacked (HTTP/2); the handler then copies the body itself.
func (p *kubeProxy) handOff(ctx context.Context, w http.ResponseWriter, body waitReadCloser, stopLink func() bool, cancel context.CancelFunc, done func(), cluster, reqID string) bool {
	rc := http.NewResponseController(w)
	// Writes the head, chunked, which the pump continues.
	if err := rc.Flush(); err != nil {
		return false
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		return false
	}
	// What the client sent after its request (it pipelined one) cannot
	// be served on a hijacked connection: the response says
	// Connection: close, so the client does not expect it to be.
	_ = brw
	pp := &hijackedPump{p: p, ctx: ctx, conn: conn, body: body, cancel: cancel, done: done, cluster: cluster, reqID: reqID}
	if !stopLink() { // the client left meanwhile: cancel ran
		pp.finish()
		return true
	}
	_ = conn.SetDeadline(time.Time{})
	if !p.pumps.add(pp) {
		pp.finish()
		return true
	}
	// The client says nothing during a stream: the hub's one epoll
	// instance tells when it speaks or leaves, and only then does a
	// goroutine read it. Where there is none, one reads it all along.
	err = errNoDescriptor
	if p.hangups != nil {
		pp.unwatch, err = p.hangups.watch(conn, func() { p.pumps.startReader(pp) })
	}
	if err != nil {
		p.pumps.startReader(pp)
	}
	go pp.run()
	return true
}

// hijackedPump copies a streaming response body from a tunnel stream to a
// hijacked HTTP/1.1 client connection in chunked framing, until the body
// ends, the client leaves or the hub closes.
type hijackedPump struct {
	p       *kubeProxy
	ctx     context.Context // the request's to the agent; cancel ends it
	conn    net.Conn
	body    waitReadCloser
	cancel  context.CancelFunc
	done    func()
	cluster string
	reqID   string
	// unwatch withdraws conn from the hub's hangups, if it is there.
	unwatch func()
	// once guards finish, accounted the call of done.
	once, accounted sync.Once
}

// run is the pump's copy loop; it owns conn and body and ends both.
func (pp *hijackedPump) run() {
	defer pp.p.pumps.wg.Done()
	defer pp.finish()
	bufs := pp.p.streamBufs
	for {
		// Wait with no buffer; the body's context is cancelled when the
		// client leaves or the hub closes.
		if err := pp.body.WaitReadable(pp.ctx); err != nil {
			return
		}
		buf := bufs.Get()
		n, err := pp.body.Read(buf[chunkHeadRoom : len(buf)-2])
		var werr error
		if n > 0 {
			werr = pp.writeChunk(buf, n)
		}
		bufs.Put(buf)
		switch {
		case werr != nil:
			return
		case err == io.EOF:
			// The last chunk: the response is complete, and the
			// connection closes as its head said. The accounting ends
			// first, so a client that opens its next watch as soon as it
			// reads the end finds its cap given back.
			pp.account()
			_, _ = io.WriteString(pp.conn, "0\r\n\r\n")
			return
		case err != nil:
			// Cut short: the connection closes without the last chunk,
			// so the client sees the response fail, not end.
			if !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
				pp.p.h.logger.Warn("proxy: streaming response cut short", "cluster", pp.cluster, "request_id", pp.reqID, "err", err)
			}
			return
		}
	}
}

// writeChunk frames the n bytes at buf[chunkHeadRoom:] as one chunk and
// writes it in one call.
func (pp *hijackedPump) writeChunk(buf []byte, n int) error {
	var size [chunkHeadRoom]byte
	head := strconv.AppendInt(size[:0], int64(n), 16)
	head = append(head, '\r', '\n')
	start := chunkHeadRoom - len(head)
	copy(buf[start:], head)
	end := chunkHeadRoom + n
	buf[end], buf[end+1] = '\r', '\n'
	_, err := pp.conn.Write(buf[start : end+2])
	return err
}

// watchClient reads the client connection, which says nothing more
// during a stream, to notice it close; then it stops the pump. Bytes it
// sends (a TLS alert, a pipelined request) are read and dropped.
func (pp *hijackedPump) watchClient() {
	defer pp.p.pumps.wg.Done()
	var b [1]byte
	for {
		if _, err := pp.conn.Read(b[:]); err != nil {
			pp.cancel()
			return
		}
	}
}

// finish ends the exchange once: the request to the agent, the body, the
// client connection, and the proxy's accounting.
func (pp *hijackedPump) finish() {
	pp.once.Do(func() {
		pp.cancel()
		pp.body.Close()
		pp.p.pumps.remove(pp)
		if pp.unwatch != nil {
			pp.unwatch() // before the descriptor closes and is reused
		}
		pp.conn.Close()
		pp.account()
	})
}

// account reports the exchange's end to the proxy (metrics, caps), once.
func (pp *hijackedPump) account() { pp.accounted.Do(pp.done) }

// stop is the hub closing: the pump ends as if the client left.
func (pp *hijackedPump) stop() {
	pp.cancel()
	pp.conn.Close()
}

// pumpSet tracks the running pumps, so the hub's Close stops them and
// waits for their goroutines.
type pumpSet struct {
	mu     sync.Mutex
	closed bool
	m      map[*hijackedPump]struct{}
	// wg counts the pumps' goroutines: each one's copy loop, and its
	// client reader once one is started.
	wg sync.WaitGroup
}

func (s *pumpSet) add(pp *hijackedPump) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = map[*hijackedPump]struct{}{}
	}
	s.m[pp] = struct{}{}
	s.wg.Add(1)
	return true
}

// startReader starts pp's client reader (watchClient), unless pp or the
// set has ended.
func (s *pumpSet) startReader(pp *hijackedPump) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[pp]; !ok || s.closed {
		return
	}
	s.wg.Add(1)
	go pp.watchClient()
}

func (s *pumpSet) remove(pp *hijackedPump) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, pp)
}

// closeAll stops every pump and waits until they have ended.
func (s *pumpSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for pp := range s.m {
		pp.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
