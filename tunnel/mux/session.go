// Package mux multiplexes streams over one connection for eco's tunnel.
//
// It is built for the tunnel's shape: one side (the hub, [Client]) opens
// every stream and the other (the agent, [Server]) accepts them; streams
// are full-duplex byte streams with per-stream credit flow control, so a
// stream whose reader stalls stops only itself. The wire format is in
// ../spec.md, section "Multiplexer".
//
// A [Session] costs one goroutine, its reader, which holds no buffer while
// the connection is idle. There is no send loop: a writer appends its frame
// to the session's pending bytes and, if nobody is writing to the
// connection, writes everything pending itself (small frames) or starts a
// goroutine that does so until nothing is pending (bulk data, so the writer
// can go on producing). Frames of many streams that queue during one write
// leave together in the next. Opening a stream needs no round trip.
package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrProtocol means the peer broke the wire format; the session ends.
	ErrProtocol = errors.New("mux: protocol error")
	// ErrSessionClosed is returned by operations on a closed session and
	// its streams.
	ErrSessionClosed = errors.New("mux: session closed")
	// ErrStreamReset means the stream was reset by the peer or by its own
	// Close while data was still arriving.
	ErrStreamReset = errors.New("mux: stream reset")
	// ErrRefused means the peer refused the stream (its accept backlog was
	// full).
	ErrRefused = errors.New("mux: stream refused")
	// ErrNotOpener is returned by Open on the accepting side.
	ErrNotOpener = errors.New("mux: only the client side opens streams")
)

// Config tunes a session; the zero value means the defaults on each field.
type Config struct {
	// Window is the largest receive window of a stream in bytes: how much
	// a peer may send on a stream before its reader catches up. A stream
	// starts at InitialWindow and grows to Window as its reader reads, so
	// an unread stream holds at most InitialWindow. If zero, 4 MiB; values
	// below InitialWindow are raised to it.
	Window uint32
	// WindowBudget bounds how far the session's streams together may grow
	// their windows beyond InitialWindow: a stream whose reader reads
	// grows only while the budget lasts, and gives its share back when it
	// ends. The memory a session's unread data can take is thus at most
	// WindowBudget plus InitialWindow per stream. If zero,
	// DefaultWindowBudget.
	WindowBudget int64
	// AcceptBacklog bounds streams opened by the peer and not yet accepted
	// (Server side); more are refused. If zero, 256.
	AcceptBacklog int
	// CloseTimeout is how long a stream closed by its application waits for
	// the peer's end before it is reset and forgotten. If zero, 2 minutes.
	CloseTimeout time.Duration
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// DefaultWindow is the default per-stream receive window.
const DefaultWindow = 4 << 20

// DefaultWindowBudget is the default Config.WindowBudget: eight streams
// at the full default window.
const DefaultWindowBudget = 8 * (DefaultWindow - InitialWindow)

// maxPending bounds the bytes writers queue for the connection before data
// writers wait; frames the reader sends (resets) are never held back, so the
// reader never blocks on a write, and neither is the control stream (its
// messages are small, bounded by its window, and carry the heartbeats that
// must not queue behind a bulk transfer's turn).
const maxPending = 512 << 10

// Session is one multiplexed connection.
type Session struct {
	conn   io.ReadWriteCloser
	client bool
	cfg    Config
	log    *slog.Logger

	// grown is the sum of the live streams' windows beyond
	// InitialWindow, within cfg.WindowBudget.
	grown atomic.Int64

	// openMu serializes Open, so SYNs leave in stream ID order.
	openMu sync.Mutex

	// mu guards the fields below.
	mu       sync.Mutex
	streams  map[uint32]*Stream
	nextID   uint32  // client: the next stream ID to open
	lastSeen uint32  // server: the highest stream ID the peer opened
	control  *Stream // stream 1, open from the start
	backlog  []*Stream
	acceptCh chan struct{} // signalled (cap 1) when backlog grows or the session ends
	err      error         // why the session ended; nil while live

	// wmu guards the write state below.
	wmu sync.Mutex
	// drained, made by the first data writer that waits for pending space
	// (nil while none does), is closed when pending bytes leave or
	// writing fails. A channel rather than a sync.Cond, so a waiter also
	// honours its stream's write deadline and Close.
	drained  chan struct{}
	pending  []byte
	spare    []byte
	flushing bool
	werr     error
	// flushers counts goroutines writing pending bytes for others.
	flushers sync.WaitGroup

	done       chan struct{} // closed when the reader has ended
	closeOnce  sync.Once
	readerDone chan struct{}
}

// Client starts the opening side of a session on conn (the hub).
func Client(conn io.ReadWriteCloser, cfg Config) *Session { return newSession(conn, cfg, true) }

// Server starts the accepting side of a session on conn (the agent).
func Server(conn io.ReadWriteCloser, cfg Config) *Session { return newSession(conn, cfg, false) }

func newSession(conn io.ReadWriteCloser, cfg Config, client bool) *Session {
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	cfg.Window = max(cfg.Window, InitialWindow)
	if cfg.WindowBudget <= 0 {
		cfg.WindowBudget = DefaultWindowBudget
	}
	if cfg.AcceptBacklog <= 0 {
		cfg.AcceptBacklog = 256
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{
		conn:       conn,
		client:     client,
		cfg:        cfg,
		log:        log,
		streams:    make(map[uint32]*Stream),
		nextID:     2,
		lastSeen:   1,
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	// Stream 1 is open from the start on both sides, with the initial
	// window in both directions: no SYN or window frame announces it.
	s.control = newStream(s, 1, InitialWindow)
	s.streams[1] = s.control
	if !client {
		s.acceptCh = make(chan struct{}, 1)
	}
	go s.readLoop() // owned: Close waits for readerDone
	return s
}

// Control returns stream 1, which both sides have from the start without
// a SYN (the tunnel's control channel). Its receive window stays at
// InitialWindow.
func (s *Session) Control() *Stream { return s.control }

// Open opens a stream to the peer. It does not wait for the peer: the
// stream is usable at once. Only the Client side opens streams; the first
// one it opens is stream 2.
func (s *Session) Open() (*Stream, error) {
	if !s.client {
		return nil, ErrNotOpener
	}
	s.openMu.Lock()
	defer s.openMu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return nil, err
	}
	id := s.nextID
	if id >= 1<<31 {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: stream IDs exhausted", ErrSessionClosed)
	}
	s.nextID++
	st := newStream(s, id, s.cfg.Window)
	s.streams[id] = st
	s.mu.Unlock()

	var b [HeaderLen]byte
	f := appendHeader(b[:0], header{typ: typeData, flags: flagSYN, id: id})
	if err := s.write(f); err != nil {
		s.forget(st)
		return nil, err
	}
	return st, nil
}

// Accept waits for the next stream the peer opens, until ctx ends or the
// session closes. Only the Server side accepts.
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	if s.client {
		return nil, errors.New("mux: the client side accepts no streams")
	}
	for {
		s.mu.Lock()
		if len(s.backlog) > 0 {
			st := s.backlog[0]
			s.backlog[0] = nil
			s.backlog = s.backlog[1:]
			if len(s.backlog) == 0 {
				s.backlog = nil
			}
			s.mu.Unlock()
			return st, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-s.acceptCh:
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// NumStreams returns the number of open streams, not counting the
// control stream.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.streams)
	if s.streams[1] != nil {
		n--
	}
	return n
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it is live.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session: the connection is closed, every stream fails
// with ErrSessionClosed, and Close waits for the reader to stop.
func (s *Session) Close() error {
	s.fail(ErrSessionClosed)
	<-s.readerDone
	s.flushers.Wait()
	return nil
}

// fail ends the session with err (the first cause wins) and closes the
// connection, which stops the reader.
func (s *Session) fail(err error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.err = err
		streams := s.streams
		s.streams = map[uint32]*Stream{}
		backlog := s.backlog
		s.backlog = nil
		s.mu.Unlock()
		s.wmu.Lock()
		if s.werr == nil {
			s.werr = err
		}
		s.wakeLocked()
		s.wmu.Unlock()
		_ = s.conn.Close()
		for _, st := range streams {
			st.fail(err, true)
		}
		for _, st := range backlog {
			st.fail(err, true)
		}
		close(s.done)
	})
}

// forget removes st from the session.
func (s *Session) forget(st *Stream) {
	s.mu.Lock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
		s.grown.Add(-st.grown.Swap(0))
	}
	s.mu.Unlock()
}

// reserveGrowth takes n bytes of the window budget, if there are.
func (s *Session) reserveGrowth(n int64) bool {
	for {
		cur := s.grown.Load()
		if cur+n > s.cfg.WindowBudget {
			return false
		}
		if s.grown.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// write queues frame (a header, or several) and writes everything pending
// unless another writer is doing so. Errors of writes made on other
// writers' behalf surface as the session's failure.
func (s *Session) write(frame []byte) error {
	return s.writeData(frame, nil, nil)
}

// writeData is write followed by payload cut into data frames of stream
// st, each preceded by its header. Data writers (st set, other than the
// control stream) first wait while maxPending bytes are queued, until st's
// write deadline or Close (see Stream.waitPending).
func (s *Session) writeData(frame []byte, st *Stream, payload []byte) error {
	size := len(frame) + len(payload) + (len(payload)/maxSendFrame+1)*HeaderLen
	wait := st != nil && st != s.control
	s.wmu.Lock()
	for wait && s.werr == nil && len(s.pending) > 0 && len(s.pending)+size > maxPending {
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		drained := s.drained
		s.wmu.Unlock()
		if err := st.waitPending(drained); err != nil {
			return err
		}
		s.wmu.Lock()
	}
	if s.werr != nil {
		err := s.werr
		s.wmu.Unlock()
		return err
	}
	if s.pending == nil {
		s.pending = getWriteBuf()
	}
	s.pending = append(s.pending, frame...)
	for p := payload; len(p) > 0; {
		n := min(len(p), maxSendFrame)
		s.pending = appendHeader(s.pending, header{typ: typeData, id: st.id, val: uint32(n)})
		s.pending = append(s.pending, p[:n]...)
		p = p[n:]
	}
	if s.flushing {
		s.wmu.Unlock()
		return nil
	}
	s.flushing = true
	if async := len(payload) >= asyncWrite; async {
		// A bulk writer goes on filling pending while a goroutine
		// writes, so its next frames leave in one large write.
		s.flushers.Add(1)
		s.wmu.Unlock()
		go s.flushAsync() // owned: Close waits on flushers
		return nil
	}
	ours, failed := s.flushLocked()
	err := s.werr
	s.wmu.Unlock()
	if failed != nil {
		s.fail(failed)
	}
	if ours {
		return nil
	}
	return err
}

// asyncWrite is the payload size from which a writer hands the connection
// write to a goroutine instead of making it itself: small frames (requests,
// window updates) leave without a hand-off, bulk data is pipelined.
const asyncWrite = 16 << 10

func (s *Session) flushAsync() {
	defer s.flushers.Done()
	s.wmu.Lock()
	_, failed := s.flushLocked()
	s.wmu.Unlock()
	if failed != nil {
		s.fail(failed)
	}
}

// flushLocked writes pending bytes until there are none; s.wmu is held and
// s.flushing set by the caller, and it clears s.flushing. It reports
// whether the first write (which holds the caller's own frame) succeeded,
// and the error it failed the session with, if any.
func (s *Session) flushLocked() (ours bool, failed error) {
	first := true
	for len(s.pending) > 0 && s.werr == nil {
		buf := s.pending
		s.pending = s.spare[:0]
		if s.pending == nil {
			s.pending = getWriteBuf()
		}
		s.wmu.Unlock()
		_, err := s.conn.Write(buf)
		s.wmu.Lock()
		s.spare = buf[:0]
		if err != nil && s.werr == nil {
			s.werr = fmt.Errorf("%w: writing: %w", ErrSessionClosed, err)
			failed = s.werr
		}
		if first {
			first, ours = false, err == nil
		}
		s.wakeLocked()
	}
	s.flushing = false
	// An idle session keeps no write buffers.
	if len(s.pending) == 0 {
		putWriteBuf(s.pending)
		putWriteBuf(s.spare)
		s.pending, s.spare = nil, nil
	}
	return ours, failed
}

// wakeLocked wakes the data writers waiting for pending space; s.wmu is
// held.
func (s *Session) wakeLocked() {
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// writeAsync queues a frame from the reader goroutine, which must never
// block on the connection: if nobody is writing, a goroutine flushes it.
func (s *Session) writeAsync(frame []byte) {
	s.wmu.Lock()
	if s.werr != nil {
		s.wmu.Unlock()
		return
	}
	if s.pending == nil {
		s.pending = getWriteBuf()
	}
	s.pending = append(s.pending, frame...)
	if s.flushing {
		s.wmu.Unlock()
		return
	}
	s.flushing = true
	s.flushers.Add(1)
	s.wmu.Unlock()
	go s.flushAsync() // owned: Close waits on flushers
}

// readLoop reads frames until the connection fails, then ends the session.
func (s *Session) readLoop() {
	defer close(s.readerDone)
	var hb [HeaderLen]byte
	for {
		if _, err := io.ReadFull(s.conn, hb[:]); err != nil {
			s.fail(readErr(err))
			return
		}
		h, err := parseHeader(hb[:])
		if err != nil {
			s.fail(err)
			return
		}
		if err := s.handle(h); err != nil {
			s.fail(err)
			return
		}
	}
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: connection closed by peer", ErrSessionClosed)
	}
	return fmt.Errorf("%w: reading: %w", ErrSessionClosed, err)
}

// handle processes one frame whose header has been read.
func (s *Session) handle(h header) error {
	var payload *[]byte
	if h.typ == typeData && h.val > 0 {
		payload = getBuf(int(h.val))
		if _, err := io.ReadFull(s.conn, *payload); err != nil {
			putBuf(payload)
			return readErr(err)
		}
	}
	st, err := s.lookup(h)
	if err != nil || st == nil {
		if payload != nil {
			putBuf(payload)
		}
		return err
	}
	switch h.typ {
	case typeData:
		return st.received(payload, h.flags&flagFIN != 0)
	case typeWindow:
		st.credit(h.val)
	case typeReset:
		st.fail(resetErr(h.val), true)
		s.forget(st)
	}
	return nil
}

func resetErr(code uint32) error {
	switch code {
	case codeRefused:
		return ErrRefused
	case codeProtocol:
		return fmt.Errorf("%w by peer: protocol error", ErrStreamReset)
	}
	return ErrStreamReset
}

// lookup finds the stream h is for, creating it for a SYN on the Server
// side. A nil stream and nil error means the frame is for a stream that
// already ended and is dropped.
func (s *Session) lookup(h header) (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, nil
	}
	if h.typ == typeData && h.flags&flagSYN != 0 {
		if s.client {
			return nil, fmt.Errorf("%w: the accepting side opened stream %d", ErrProtocol, h.id)
		}
		if h.id <= s.lastSeen {
			return nil, fmt.Errorf("%w: stream %d opened out of order (last %d)", ErrProtocol, h.id, s.lastSeen)
		}
		s.lastSeen = h.id
		st := newStream(s, h.id, s.cfg.Window)
		if len(s.backlog) >= s.cfg.AcceptBacklog {
			s.writeAsync(appendHeader(nil, header{typ: typeReset, id: h.id, val: codeRefused}))
			return nil, nil
		}
		s.streams[h.id] = st
		s.backlog = append(s.backlog, st)
		select {
		case s.acceptCh <- struct{}{}:
		default:
		}
		return st, nil
	}
	st := s.streams[h.id]
	if st != nil {
		return st, nil
	}
	// Frames for a stream this side never had break the protocol; frames
	// for one that ended (reset or closed here) may still be in flight.
	known := h.id < s.nextID
	if !s.client {
		known = h.id <= s.lastSeen
	}
	if !known {
		return nil, fmt.Errorf("%w: frame for unknown stream (%s)", ErrProtocol, h)
	}
	return nil, nil
}
