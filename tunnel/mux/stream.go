package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is one multiplexed connection: a net.Conn with half-close
// (CloseWrite). Reads, writes and Close may be called from different
// goroutines.
type Stream struct {
	s  *Session
	id uint32

	// wmu serializes writers, so one Write's frames are never interleaved
	// with another's and FIN follows the last data frame.
	wmu sync.Mutex

	// mu guards the fields below.
	mu         sync.Mutex
	chunks     []*[]byte    // received and unread, oldest first
	off        int          // read offset into chunks[0]
	buffered   int          // unread bytes in chunks
	window     uint32       // the receive window this side grants now
	maxWindow  uint32       // what window may grow to as the reader reads
	grown      atomic.Int64 // window beyond InitialWindow, taken from the session's budget
	debt       uint32       // credit the peer holds beyond window, withheld from the next credits
	recvAvail  uint32       // bytes the peer may still send (window granted minus received)
	unacked    uint32       // bytes read but not yet credited back to the peer
	sendWindow uint32       // bytes this side may still send
	finRecv    bool         // the peer sent FIN
	finSent    bool         // this side sent FIN
	closed     bool         // Close was called
	err        error        // reset or session failure; reads and writes fail with it
	rdl, wdl   time.Time    // deadlines
	closeTimer *time.Timer

	rnotify, wnotify chan struct{} // signalled (cap 1) when reading / writing may proceed

	// onReadable, if set, is called (without locks held) whenever data,
	// FIN or an error arrives for the reader.
	onReadable func()
}

// SetReadNotify makes f be called each time the stream becomes readable:
// data or FIN arrived, or it was reset or its session ended. f runs on the
// session's reader goroutine (or whoever ended the stream) and must not
// block; it typically starts a goroutine that reads what is available
// with a read deadline in the past. This lets a mostly idle stream be
// served without a goroutine waiting in Read.
func (st *Stream) SetReadNotify(f func()) {
	st.mu.Lock()
	st.onReadable = f
	st.mu.Unlock()
}

// newStream returns stream id, which grants the peer InitialWindow bytes
// and grows that up to maxWindow as its reader reads (see creditBack).
func newStream(s *Session, id, maxWindow uint32) *Stream {
	return &Stream{
		s:          s,
		id:         id,
		window:     InitialWindow,
		maxWindow:  max(maxWindow, InitialWindow),
		recvAvail:  InitialWindow,
		sendWindow: InitialWindow,
		rnotify:    make(chan struct{}, 1),
		wnotify:    make(chan struct{}, 1),
	}
}

// Buffered returns the number of received bytes not yet read: a Read now
// would return at once. A proxy copying from the stream can skip flushing
// its output while more is already here.
func (st *Stream) Buffered() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.buffered
}

// Live reports whether the stream can carry another exchange: it was not
// reset, closed or half-closed by either side, and nothing unread waits on
// it. A pool of idle streams uses it to skip one the peer closed while it
// sat idle.
func (st *Stream) Live() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err == nil && !st.closed && !st.finRecv && !st.finSent && st.buffered == 0
}

// ID returns the stream's ID: 1 for the control stream, 2 for the first
// stream a session opens.
func (st *Stream) ID() uint32 { return st.id }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// wait blocks until c is signalled, also (if not nil) is closed, the
// deadline passes (false) or the session ends. It is called without st.mu
// held.
func (st *Stream) wait(c chan struct{}, also <-chan struct{}, deadline time.Time) bool {
	if deadline.IsZero() {
		select {
		case <-c:
		case <-also:
		case <-st.s.done:
			st.sessionEnded()
		}
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
	case <-also:
	case <-st.s.done:
		st.sessionEnded()
	case <-t.C:
	}
	return true
}

// sessionEnded fails a stream the session no longer tracks (one that was
// forgotten) with the session's error, so its waiters stop waiting.
func (st *Stream) sessionEnded() {
	err := st.s.Err()
	if err == nil {
		err = ErrSessionClosed
	}
	st.abort(err)
}

// Read reads received data. After the peer's FIN and all data it returns
// io.EOF.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	st.mu.Lock()
	for {
		if st.buffered > 0 {
			n := st.copyOut(p)
			inc := st.creditBack(n)
			st.mu.Unlock()
			if inc > 0 {
				var b [HeaderLen]byte
				_ = st.s.write(appendHeader(b[:0], header{typ: typeWindow, id: st.id, val: inc}))
			}
			return n, nil
		}
		switch {
		case st.err != nil:
			err := st.err
			st.mu.Unlock()
			return 0, err
		case st.finRecv:
			st.mu.Unlock()
			return 0, io.EOF
		case st.closed:
			st.mu.Unlock()
			return 0, net.ErrClosed
		}
		dl := st.rdl
		if !dl.IsZero() && !time.Now().Before(dl) {
			st.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		st.mu.Unlock()
		if !st.wait(st.rnotify, nil, dl) {
			return 0, os.ErrDeadlineExceeded
		}
		st.mu.Lock()
	}
}

// WaitReadable blocks until a Read would return without waiting for the
// peer: data is buffered, the peer sent FIN, or the stream failed or was
// closed; or until ctx ends (its error). A caller that copies many
// long-lived, mostly quiet streams waits here holding no buffer and
// borrows one only to Read what arrived.
func (st *Stream) WaitReadable(ctx context.Context) error {
	for {
		st.mu.Lock()
		ready := st.buffered > 0 || st.err != nil || st.finRecv || st.closed
		st.mu.Unlock()
		if ready {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		st.wait(st.rnotify, ctx.Done(), time.Time{})
	}
}

// Readable reports whether a Read would return without waiting for the
// peer: data is buffered, the peer sent FIN, or the stream failed or was
// closed. With SetReadNotify it lets a caller wait for a stream on a
// channel of its own.
func (st *Stream) Readable() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.buffered > 0 || st.err != nil || st.finRecv || st.closed
}

// copyOut moves up to len(p) buffered bytes into p; st.mu is held.
func (st *Stream) copyOut(p []byte) int {
	n := 0
	for n < len(p) && len(st.chunks) > 0 {
		c := st.chunks[0]
		k := copy(p[n:], (*c)[st.off:])
		n += k
		st.off += k
		if st.off == len(*c) {
			putBuf(c)
			st.chunks[0] = nil
			st.chunks = st.chunks[1:]
			st.off = 0
		}
	}
	if len(st.chunks) == 0 {
		st.chunks = nil
	}
	st.buffered -= n
	return n
}

// creditBack records n bytes read and returns the window increment to send
// now (0 for none): once a quarter of the window has been read, so the
// peer never waits on a reader that keeps up. Each such credit also
// doubles the window, up to maxWindow: a stream starts with InitialWindow
// and reaches the full window once its reader has read about a quarter
// of it, so a stream nobody reads (a client that stopped reading a watch
// or a download) holds InitialWindow of memory at the receiver, not the
// full window. Growth comes out of the session's WindowBudget: past it a
// stream keeps the window it has. st.mu is held.
func (st *Stream) creditBack(n int) uint32 {
	st.unacked += uint32(n)
	if st.finRecv || st.unacked < st.window/4 {
		return 0
	}
	inc := st.unacked
	st.unacked = 0
	if st.debt > 0 { // the window shrank: withhold credit until the peer's matches it
		paid := min(inc, st.debt)
		inc -= paid
		st.debt -= paid
	}
	if st.window+st.debt < st.maxWindow && st.err == nil && !st.closed {
		g := min(st.window, st.maxWindow-st.window-st.debt)
		if st.s.reserveGrowth(int64(g)) {
			st.grown.Add(int64(g))
			st.window += g
			inc += g
		}
	}
	st.recvAvail += inc
	return inc
}

// ShrinkWindow gives the window this stream grew beyond InitialWindow back
// to the session's budget, for a stream about to sit idle (in a pool of
// streams kept for reuse), so that idle streams do not keep others from
// growing. Credit the peer already holds is withheld from what the reader
// reads next, until the peer's credit is InitialWindow; from then on the
// window grows again as it is read.
func (st *Stream) ShrinkWindow() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.window <= InitialWindow {
		return
	}
	d := st.window - InitialWindow
	st.window = InitialWindow
	st.debt += d
	st.s.grown.Add(-st.grown.Swap(0))
}

// Write sends p, waiting for window as needed.
func (st *Stream) Write(p []byte) (int, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		st.mu.Lock()
		for {
			if err := st.writeErr(); err != nil {
				st.mu.Unlock()
				return total, err
			}
			if st.sendWindow > 0 {
				break
			}
			dl := st.wdl
			if !dl.IsZero() && !time.Now().Before(dl) {
				st.mu.Unlock()
				return total, os.ErrDeadlineExceeded
			}
			st.mu.Unlock()
			if !st.wait(st.wnotify, nil, dl) {
				return total, os.ErrDeadlineExceeded
			}
			st.mu.Lock()
		}
		n := min(len(p), int(st.sendWindow), maxSendBatch)
		st.sendWindow -= uint32(n)
		st.mu.Unlock()
		if err := st.s.writeData(nil, st, p[:n]); err != nil {
			// Not sent (or the session failed): a later Write, after
			// a timeout, may use the window again.
			st.mu.Lock()
			st.sendWindow += uint32(n)
			st.mu.Unlock()
			return total, err
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

// waitPending waits, for Write (st.wmu held), until the session's pending
// bytes may have left (drained is closed), the write deadline passes, the
// deadline moves (st.wnotify), or the stream or session ends: the same
// bounds as a wait for window.
func (st *Stream) waitPending(drained <-chan struct{}) error {
	st.mu.Lock()
	err := st.writeErr()
	dl := st.wdl
	st.mu.Unlock()
	if err != nil {
		return err
	}
	if !dl.IsZero() && !time.Now().Before(dl) {
		return os.ErrDeadlineExceeded
	}
	if !st.wait(st.wnotify, drained, dl) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// writeErr says why writing is no longer possible; st.mu is held.
func (st *Stream) writeErr() error {
	switch {
	case st.err != nil:
		return st.err
	case st.closed:
		return net.ErrClosed
	case st.finSent:
		return fmt.Errorf("mux: write after CloseWrite: %w", io.ErrClosedPipe)
	}
	return nil
}

// CloseWrite half-closes the stream: the peer reads io.EOF after the data
// already written; this side may still read.
func (st *Stream) CloseWrite() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.err != nil || st.finSent {
		err := st.err
		st.mu.Unlock()
		return err
	}
	return st.sendFIN()
}

// sendFIN sends FIN; st.mu is held on entry and released.
func (st *Stream) sendFIN() error {
	st.finSent = true
	done := st.finRecv
	st.mu.Unlock()
	if done {
		st.s.forget(st)
	}
	var b [HeaderLen]byte
	return st.s.write(appendHeader(b[:0], header{typ: typeData, flags: flagFIN, id: st.id}))
}

// Close closes the stream. Unread data is discarded; if there was any, or
// data arrives later, the stream is reset so the peer stops sending.
// Otherwise the peer gets FIN and the stream is forgotten once the peer's
// FIN arrives (or after Config.CloseTimeout).
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	unread := st.buffered > 0
	st.discard()
	signal(st.rnotify)
	signal(st.wnotify)
	if st.err != nil {
		st.mu.Unlock()
		return nil
	}
	if unread {
		st.mu.Unlock()
		st.reset(codeClosed, ErrStreamReset)
		return nil
	}
	st.mu.Unlock()

	// Wait for a writer to notice closed, so FIN follows its last frame.
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return nil
	}
	if !st.finRecv {
		st.closeTimer = time.AfterFunc(st.s.cfg.CloseTimeout, func() {
			st.reset(codeClosed, fmt.Errorf("%w: peer did not close within %v", ErrStreamReset, st.s.cfg.CloseTimeout))
		})
	}
	if st.finSent {
		done := st.finRecv
		st.mu.Unlock()
		if done {
			st.s.forget(st)
		}
		return nil
	}
	if err := st.sendFIN(); err != nil && !errors.Is(err, ErrSessionClosed) {
		return err
	}
	return nil
}

// reset aborts the stream locally with err and tells the peer.
func (st *Stream) reset(code uint32, err error) {
	if !st.abort(err) {
		return
	}
	st.s.forget(st)
	var b [HeaderLen]byte
	_ = st.s.write(appendHeader(b[:0], header{typ: typeReset, id: st.id, val: code}))
}

// abort fails the stream with err, dropping unread data. It reports
// whether the stream was still live.
func (st *Stream) abort(err error) bool { return st.fail(err, false) }

// fail fails the stream with err. With keep, data that arrived before can
// still be read first (the session ended, or the peer reset the stream
// after sending it: a response followed by a reset is still a response).
func (st *Stream) fail(err error, keep bool) bool {
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return false
	}
	st.err = err
	if !keep {
		st.discard()
	}
	if st.closeTimer != nil {
		st.closeTimer.Stop()
	}
	signal(st.rnotify)
	signal(st.wnotify)
	notify := st.onReadable
	st.mu.Unlock()
	if notify != nil {
		notify()
	}
	return true
}

// discard drops unread data; st.mu is held.
func (st *Stream) discard() {
	for _, c := range st.chunks {
		putBuf(c)
	}
	st.chunks, st.off, st.buffered = nil, 0, 0
}

// received is called by the reader with a data frame's payload (nil if
// empty) and FIN flag. An error breaks the session.
func (st *Stream) received(payload *[]byte, fin bool) error {
	n := 0
	if payload != nil {
		n = len(*payload)
	}
	st.mu.Lock()
	switch {
	case st.err != nil:
		st.mu.Unlock()
		if payload != nil {
			putBuf(payload)
		}
		return nil
	case st.finRecv && (n > 0 || fin):
		st.mu.Unlock()
		if payload != nil {
			putBuf(payload)
		}
		return fmt.Errorf("%w: data after FIN on stream %d", ErrProtocol, st.id)
	case uint32(n) > st.recvAvail:
		avail := st.recvAvail
		st.mu.Unlock()
		putBuf(payload)
		return fmt.Errorf("%w: stream %d sent %d bytes with a window of %d", ErrProtocol, st.id, n, avail)
	}
	st.recvAvail -= uint32(n)
	if st.closed && n > 0 {
		// Nobody will read it: tell the peer to stop.
		st.mu.Unlock()
		putBuf(payload)
		if st.abort(ErrStreamReset) {
			st.s.forget(st)
			st.s.writeAsync(appendHeader(nil, header{typ: typeReset, id: st.id, val: codeClosed}))
		}
		return nil
	}
	if n > 0 {
		st.chunks = append(st.chunks, payload)
		st.buffered += n
	}
	done := false
	if fin {
		st.finRecv = true
		done = st.finSent
		if done && st.closeTimer != nil {
			st.closeTimer.Stop()
		}
	}
	signal(st.rnotify)
	notify := st.onReadable
	st.mu.Unlock()
	if done {
		st.s.forget(st)
	}
	if notify != nil {
		notify()
	}
	return nil
}

// credit adds a window increment from the peer.
func (st *Stream) credit(inc uint32) {
	st.mu.Lock()
	if uint64(st.sendWindow)+uint64(inc) <= 1<<31 {
		st.sendWindow += inc
	}
	signal(st.wnotify)
	st.mu.Unlock()
}

// SetDeadline sets the read and write deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	_ = st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read; a zero time means none.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl = t
	st.mu.Unlock()
	signal(st.rnotify)
	return nil
}

// SetWriteDeadline sets the deadline for Write waiting on flow control or
// on the session's pending bytes (a connection that does not drain); a
// zero time means none.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.wdl = t
	st.mu.Unlock()
	signal(st.wnotify)
	return nil
}

// LocalAddr and RemoteAddr name the stream; there are no network
// addresses inside a tunnel.
func (st *Stream) LocalAddr() net.Addr  { return streamAddr(st.id) }
func (st *Stream) RemoteAddr() net.Addr { return streamAddr(st.id) }

type streamAddr uint32

func (a streamAddr) Network() string { return "eco-mux" }
func (a streamAddr) String() string  { return fmt.Sprintf("stream/%d", uint32(a)) }

var _ net.Conn = (*Stream)(nil)
