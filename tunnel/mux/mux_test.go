package mux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a client (opener) and server (acceptor) session over a real
// loopback TCP connection.
func pair(t testing.TB, ccfg, scfg Config) (*Session, *Session) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	c, s := Client(cc, ccfg), Server(sc, scfg)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func accept(t testing.TB, s *Session) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return st
}

// echo serves every accepted stream by copying it back, then half-closing.
func echo(t testing.TB, s *Session) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := s.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				io.Copy(st, st)
				st.CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { s.Close(); wg.Wait() })
}

func TestEchoManyStreams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		streams int
		size    int
		window  uint32
	}{
		{"one small", 1, 100, 0},
		{"one large, default window", 1, 16 << 20, 0},
		{"one large, minimum window", 1, 8 << 20, InitialWindow},
		{"64 concurrent", 64, 256 << 10, 0},
		{"empty", 3, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, Config{Window: tc.window}, Config{Window: tc.window})
			echo(t, s)
			var wg sync.WaitGroup
			errs := make(chan error, tc.streams)
			for range tc.streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- roundTrip(c, tc.size)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			// Both ends closed every stream: none is left behind.
			waitFor(t, func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
		})
	}
}

// roundTrip sends size random bytes on a new stream and checks the echo.
func roundTrip(c *Session, size int) error {
	st, err := c.Open()
	if err != nil {
		return err
	}
	defer st.Close()
	data := make([]byte, size)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(data)
		if err == nil {
			err = st.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return errors.New("echo differs")
	}
	return nil
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A stream whose reader stalls stops only itself: its sender blocks once
// the window is used up, and another stream on the session keeps going.
func TestStalledStreamStopsOnlyItself(t *testing.T) {
	const window = InitialWindow
	c, s := pair(t, Config{Window: window}, Config{Window: window})
	stalled, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	stalledPeer := accept(t, s)
	_ = stalledPeer // never read

	stalled.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := stalled.Write(make([]byte, 4*window))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != window {
		t.Fatalf("stalled write: %d bytes, %v; want %d bytes and a deadline error", n, err, window)
	}

	fast, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	fastPeer := accept(t, s)
	go func() {
		fast.Write(make([]byte, 32<<20))
		fast.CloseWrite()
	}()
	got, err := io.Copy(io.Discard, fastPeer)
	if err != nil || got != 32<<20 {
		t.Fatalf("fast stream: %d bytes, %v", got, err)
	}

	// Reading the stalled stream frees its window: the rest goes through.
	stalled.SetWriteDeadline(time.Time{})
	go func() {
		stalled.Write(make([]byte, window))
		stalled.CloseWrite()
	}()
	got, err = io.Copy(io.Discard, stalledPeer)
	if err != nil || got != 2*window {
		t.Fatalf("stalled stream after reading: %d bytes, %v; want %d", got, err, 2*window)
	}
}

func TestHalfClose(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	peer := accept(t, s)
	st.Write([]byte("request"))
	st.CloseWrite()
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "request" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	// The other direction is still open after the peer saw EOF.
	peer.Write([]byte("response"))
	peer.Close()
	got, err = io.ReadAll(st)
	if err != nil || string(got) != "response" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write after CloseWrite: %v", err)
	}
	st.Close()
	waitFor(t, func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
}

func TestCloseWithUnreadDataResets(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	peer := accept(t, s)
	st.Write([]byte("unread"))
	waitFor(t, func() bool { peer.mu.Lock(); defer peer.mu.Unlock(); return peer.buffered > 0 })
	peer.Write([]byte("answer"))
	peer.Close()
	// The opener learns at once that nobody reads: its stream is reset,
	// after what the peer sent before.
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(st)
	if string(got) != "answer" || !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read after peer closed with unread data: %q, %v; want the answer, then ErrStreamReset", got, err)
	}
	if _, err := st.Write([]byte("more")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write after reset: %v, want ErrStreamReset", err)
	}
	waitFor(t, func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
}

func TestDataAfterCloseResets(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	peer := accept(t, s)
	peer.Close() // nothing unread yet: FIN
	if _, err := st.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after peer FIN: %v, want EOF", err)
	}
	// The peer has closed, so more data gets the stream reset.
	st.Write([]byte("too late"))
	waitFor(t, func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 })
	if _, err := st.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write after reset: %v, want ErrStreamReset", err)
	}
}

func TestBacklogFullRefuses(t *testing.T) {
	c, s := pair(t, Config{}, Config{AcceptBacklog: 2})
	var streams []*Stream
	for range 3 {
		st, err := c.Open()
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	streams[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := streams[2].Read(make([]byte, 1)); !errors.Is(err, ErrRefused) {
		t.Fatalf("third stream: %v, want ErrRefused", err)
	}
	for range 2 {
		accept(t, s)
	}
}

func TestDeadlines(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	accept(t, s)
	st.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := st.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("read returned after %v, before its deadline", d)
	}
	// Moving the deadline wakes a blocked reader.
	st.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := st.Read(make([]byte, 1)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	st.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a reader was not woken by a new deadline")
	}
}

func TestSessionCloseFailsEverything(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	accept(t, s)
	blocked := make(chan error, 2)
	go func() { _, err := st.Read(make([]byte, 1)); blocked <- err }()
	go func() { _, err := s.Accept(context.Background()); blocked <- err }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	for range 2 {
		select {
		case err := <-blocked:
			if !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("got %v, want ErrSessionClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a blocked call outlived the session")
		}
	}
	<-c.Done()
	if _, err := c.Open(); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("open on a dead session: %v", err)
	}
}

// Data received before the session ended can still be read.
func TestDataSurvivesSessionEnd(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	peer := accept(t, s)
	peer.Write([]byte("last words"))
	waitFor(t, func() bool { st.mu.Lock(); defer st.mu.Unlock(); return st.buffered == 10 })
	s.Close()
	<-c.Done()
	got := make([]byte, 10)
	if n, err := io.ReadFull(st, got); err != nil || string(got[:n]) != "last words" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
}

func TestProtocolErrors(t *testing.T) {
	hdr := func(typ, flags byte, id, val uint32) []byte {
		return appendHeader(nil, header{typ: typ, flags: flags, id: id, val: val})
	}
	for _, tc := range []struct {
		name   string
		client bool // the session under test is the opener
		input  []byte
	}{
		{"reserved bytes", false, []byte{0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0}},
		{"stream ID 0", false, hdr(typeData, flagSYN, 0, 0)},
		{"unknown type", false, hdr(9, 0, 2, 0)},
		{"unknown flag", false, hdr(typeData, 0x80, 2, 0)},
		{"flags on a window frame", false, hdr(typeWindow, flagSYN, 2, 10)},
		{"frame over MaxFrame", false, hdr(typeData, flagSYN, 2, MaxFrame+1)},
		{"zero window increment", false, append(hdr(typeData, flagSYN, 2, 0), hdr(typeWindow, 0, 2, 0)...)},
		{"data for a stream never opened", false, hdr(typeData, 0, 7, 0)},
		{"streams opened out of order", false, append(hdr(typeData, flagSYN, 3, 0), hdr(typeData, flagSYN, 2, 0)...)},
		{"data after FIN", false, append(append(hdr(typeData, flagSYN|flagFIN, 2, 0), hdr(typeData, 0, 2, 1)...), 'x')},
		{"window exceeded", false, append(hdr(typeData, flagSYN, 2, 0), bytes.Repeat(append(hdr(typeData, 0, 2, MaxFrame), make([]byte, MaxFrame)...), DefaultWindow/MaxFrame+1)...)},
		{"SYN for the control stream", false, hdr(typeData, flagSYN, 1, 0)},
		{"acceptor opens a stream", true, hdr(typeData, flagSYN, 2, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			var sess *Session
			if tc.client {
				sess = Client(a, Config{})
			} else {
				sess = Server(a, Config{})
			}
			defer sess.Close()
			go io.Copy(io.Discard, b)
			go b.Write(tc.input)
			select {
			case <-sess.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("session survived a protocol error")
			}
			if err := sess.Err(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("session ended with %v, want ErrProtocol", err)
			}
			t.Log(sess.Err())
		})
	}
}

// FuzzServerSession feeds arbitrary bytes to an accepting session: it must
// never panic, and must end with an error or keep running.
func FuzzServerSession(f *testing.F) {
	f.Add(appendHeader(nil, header{typ: typeData, flags: flagSYN, id: 2, val: 3}))
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 'h', 'i', 2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0})
	f.Add(appendHeader(nil, header{typ: typeData, id: 1, val: 0}))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		s := Server(a, Config{})
		go io.Copy(io.Discard, b)
		go func() {
			for {
				st, err := s.Accept(context.Background())
				if err != nil {
					return
				}
				go io.Copy(io.Discard, st)
			}
		}()
		b.Write(in)
		b.Close()
		<-s.Done()
		s.Close()
	})
}

// Stream 1 exists on both sides from the start, with no frame announcing
// it; it keeps the initial window and credits it back, so more than a
// window's worth of messages flows through it over time. The first stream
// the opener opens is 2.
func TestControlStream(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	cc, sc := c.Control(), s.Control()
	if cc.ID() != 1 || sc.ID() != 1 {
		t.Fatalf("control stream IDs %d, %d, want 1", cc.ID(), sc.ID())
	}
	const total = 3 * InitialWindow
	go func() {
		msg := bytes.Repeat([]byte("ping"), 256)
		for sent := 0; sent < total; sent += len(msg) {
			if _, err := sc.Write(msg); err != nil {
				return
			}
		}
	}()
	cc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.CopyN(io.Discard, cc, total); err != nil {
		t.Fatalf("read %d of %d bytes on the control stream: %v", n, total, err)
	}
	st, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	if st.ID() != 2 {
		t.Fatalf("first opened stream has ID %d, want 2", st.ID())
	}
	if got := accept(t, s).ID(); got != 2 {
		t.Fatalf("accepted stream %d, want 2", got)
	}
}

// A stream served through SetReadNotify needs no goroutine waiting in Read:
// the notification says when a non-blocking read will find something.
func TestReadNotify(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, _ := c.Open()
	peer := accept(t, s)
	woken := make(chan struct{}, 16)
	st.SetReadNotify(func() { woken <- struct{}{} })
	st.SetReadDeadline(time.Unix(1, 0)) // non-blocking
	var got []byte
	readAvailable := func() error {
		for {
			var b [3]byte
			n, err := st.Read(b[:])
			got = append(got, b[:n]...)
			if n == 0 {
				return err
			}
		}
	}
	if err := readAvailable(); !os.IsTimeout(err) {
		t.Fatalf("read with nothing there: %v, want a timeout", err)
	}
	sent := ""
	for _, msg := range []string{"ping", "pong!"} {
		peer.Write([]byte(msg))
		sent += msg
		select {
		case <-woken:
		case <-time.After(5 * time.Second):
			t.Fatal("no notification for data")
		}
		// Everything sent so far is readable without blocking.
		waitFor(t, func() bool { readAvailable(); return len(got) >= len(sent) })
	}
	peer.CloseWrite()
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification for FIN")
	}
	waitFor(t, func() bool { return readAvailable() == io.EOF })
	if string(got) != "pingpong!" {
		t.Fatalf("read %q", got)
	}
	s.Close()
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification for the session's end")
	}
}

// gatedConn is a connection whose reads can be paused: while paused, Read
// waits, so the peer's writes block (net.Pipe buffers nothing) and the
// peer's session fills its pending bytes.
type gatedConn struct {
	net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	open chan struct{} // closed while reads may proceed
}

func newGatedConn(c net.Conn) *gatedConn {
	open := make(chan struct{})
	close(open)
	return &gatedConn{Conn: c, closed: make(chan struct{}), open: open}
}

func (g *gatedConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-g.closed:
		return 0, net.ErrClosed
	}
	return g.Conn.Read(p)
}

func (g *gatedConn) Close() error {
	g.closeOnce.Do(func() { close(g.closed) })
	return g.Conn.Close()
}

func (g *gatedConn) pause() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedConn) resume() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

// A Write that has window but finds the session's pending bytes full (the
// connection is not draining) still honours its write deadline, a deadline
// moved while it waits, and Close of its stream or session; after a
// timeout the stream and the session go on working.
func TestWriteDeadlineWhilePendingFull(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration // before writing; 0 for none
		// whileWaiting acts once the writer waits on pending bytes;
		// returned reports whether Write has returned.
		whileWaiting func(t *testing.T, st *Stream, c *Session, returned func() bool)
		want         error
	}{
		{"deadline passes", 200 * time.Millisecond, nil, os.ErrDeadlineExceeded},
		{"deadline set while waiting", 0, func(t *testing.T, st *Stream, _ *Session, _ func() bool) {
			st.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		}, os.ErrDeadlineExceeded},
		{"deadline moved later, then earlier", 100 * time.Millisecond, func(t *testing.T, st *Stream, _ *Session, returned func() bool) {
			st.SetWriteDeadline(time.Now().Add(time.Hour))
			time.Sleep(300 * time.Millisecond) // past the first deadline
			if returned() {
				t.Error("write returned at a deadline that had been moved later")
			}
			st.SetDeadline(time.Now())
		}, os.ErrDeadlineExceeded},
		{"stream closed", 0, func(t *testing.T, st *Stream, _ *Session, _ func() bool) {
			go st.Close() // waits for the writer to return
		}, net.ErrClosed},
		{"session closed", 0, func(t *testing.T, _ *Stream, c *Session, _ func() bool) {
			go c.Close()
		}, ErrSessionClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			gate := newGatedConn(b)
			c, s := Client(a, Config{}), Server(gate, Config{})
			t.Cleanup(func() { c.Close(); s.Close() })
			st, err := c.Open()
			if err != nil {
				t.Fatal(err)
			}
			peer := accept(t, s)
			// The window grows as the peer reads: after a few MiB read it
			// is 4 MiB, all but what the peer has not credited back yet
			// granted to st.
			const warmup = 4 << 20
			go st.Write(make([]byte, warmup))
			if _, err := io.ReadFull(peer, make([]byte, warmup)); err != nil {
				t.Fatal(err)
			}
			var sw uint32 // st's send window once the credits arrived
			waitFor(t, func() bool {
				peer.mu.Lock()
				owed := peer.unacked
				grown := peer.window == DefaultWindow
				peer.mu.Unlock()
				st.mu.Lock()
				defer st.mu.Unlock()
				sw = st.sendWindow
				return grown && sw+owed == DefaultWindow
			})

			gate.pause()
			data := make([]byte, sw)
			rand.Read(data)
			if tc.deadline > 0 {
				st.SetWriteDeadline(time.Now().Add(tc.deadline))
			}
			type result struct {
				n   int
				err error
			}
			done := make(chan result, 1)
			var returned atomic.Bool
			go func() {
				n, err := st.Write(data)
				returned.Store(true)
				done <- result{n, err}
			}()
			if tc.whileWaiting != nil {
				// The connection takes no more than a frame header, and
				// maxPending holds two batches: the third waits for
				// pending bytes to leave.
				waitFor(t, func() bool {
					st.mu.Lock()
					defer st.mu.Unlock()
					return st.sendWindow <= sw-3*maxSendBatch
				})
				tc.whileWaiting(t, st, c, returned.Load)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a write waiting for the session's pending bytes ignored its deadline or Close")
			}
			if !errors.Is(r.err, tc.want) {
				t.Fatalf("write: %d bytes, %v; want %v", r.n, r.err, tc.want)
			}
			if tc.want == os.ErrDeadlineExceeded {
				var ne net.Error
				if !errors.As(r.err, &ne) || !ne.Timeout() {
					t.Fatalf("write error %v is not a net.Error timeout", r.err)
				}
			}
			if r.n == 0 || r.n >= len(data) {
				t.Fatalf("write returned %d bytes; want some of %d queued before it waited", r.n, len(data))
			}
			gate.resume()

			if tc.want == ErrSessionClosed {
				if _, err := c.Open(); !errors.Is(err, ErrSessionClosed) {
					t.Fatalf("open after the session closed: %v", err)
				}
				return
			}
			if tc.want == os.ErrDeadlineExceeded {
				// Nothing was lost or sent twice: with the deadline lifted
				// the rest goes through, using the window the failed
				// batch did not.
				st.SetWriteDeadline(time.Time{})
				got := make(chan []byte, 1)
				go func() { b, _ := io.ReadAll(peer); got <- b }()
				if _, err := st.Write(data[r.n:]); err != nil {
					t.Fatalf("write after the timeout: %v", err)
				}
				st.CloseWrite()
				if !bytes.Equal(<-got, data) {
					t.Fatal("the peer read other data than was written")
				}
			}
			// Other streams work on the session.
			st2, err := c.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			peer2 := accept(t, s)
			st2.Write([]byte("still here"))
			st2.CloseWrite()
			peer2.SetReadDeadline(time.Now().Add(5 * time.Second))
			if got, err := io.ReadAll(peer2); err != nil || string(got) != "still here" {
				t.Fatalf("another stream read %q, %v", got, err)
			}
		})
	}
}

// The control stream never waits for the session's pending bytes: when a
// bulk transfer has filled them and the connection does not drain, a
// control message (a heartbeat) is still queued at once, while a data
// stream's write waits and times out at its deadline.
func TestControlWritesSkipPendingWait(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	accept(t, s)
	// As if a flush of a full queue were under way on a stalled
	// connection.
	c.wmu.Lock()
	c.pending = append(getWriteBuf(), make([]byte, maxPending)...)
	c.flushing = true
	c.wmu.Unlock()

	ctrl := c.Control()
	ctrl.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := ctrl.Write([]byte("ping")); err != nil {
		t.Fatalf("control write behind a full pending queue: %v", err)
	}
	st.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := st.Write([]byte("data")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("data write behind a full pending queue: %v, want a timeout", err)
	}
	c.wmu.Lock()
	if !bytes.HasSuffix(c.pending, []byte("ping")) {
		t.Error("the control message is not queued")
	}
	c.wmu.Unlock()
}

// TestLive: a stream is live, fit to carry another exchange from a pool of
// idle streams, only while neither side ended it and nothing is unread.
func TestLive(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, st, peer *Stream)
		want bool
	}{
		{"fresh", func(*testing.T, *Stream, *Stream) {}, true},
		{"after an exchange", func(t *testing.T, st, peer *Stream) {
			st.Write([]byte("ping"))
			io.ReadFull(peer, make([]byte, 4))
			peer.Write([]byte("pong"))
			io.ReadFull(st, make([]byte, 4))
		}, true},
		{"unread data", func(t *testing.T, st, peer *Stream) {
			peer.Write([]byte("pong"))
			waitFor(t, func() bool { return st.Buffered() == 4 })
		}, false},
		{"peer closed", func(t *testing.T, st, peer *Stream) {
			peer.Close()
			waitFor(t, func() bool { st.mu.Lock(); defer st.mu.Unlock(); return st.finRecv })
		}, false},
		{"peer reset", func(t *testing.T, st, peer *Stream) {
			peer.reset(codeClosed, ErrStreamReset)
			waitFor(t, func() bool { st.mu.Lock(); defer st.mu.Unlock(); return st.err != nil })
		}, false},
		{"closed", func(t *testing.T, st, _ *Stream) { st.Close() }, false},
		{"half-closed", func(t *testing.T, st, _ *Stream) { st.CloseWrite() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, Config{}, Config{})
			st, err := c.Open()
			if err != nil {
				t.Fatal(err)
			}
			st.Write([]byte("x"))
			peer := accept(t, s)
			io.ReadFull(peer, make([]byte, 1))
			tc.do(t, st, peer)
			if got := st.Live(); got != tc.want {
				t.Errorf("Live() = %v, want %v", got, tc.want)
			}
		})
	}
}

// A stream's receive window starts at InitialWindow and grows only as its
// reader reads: a stream nobody reads costs the receiver InitialWindow,
// one that is read reaches the configured window.
func TestWindowGrowsOnlyAsRead(t *testing.T) {
	c, s := pair(t, Config{}, Config{})
	st, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	peer := accept(t, s)
	peer.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := peer.Write(make([]byte, DefaultWindow))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != InitialWindow {
		t.Fatalf("write to an unread stream: %d bytes, %v; want %d and a deadline error", n, err, InitialWindow)
	}
	if b := st.Buffered(); b != InitialWindow {
		t.Fatalf("unread stream buffers %d bytes, want %d", b, InitialWindow)
	}
	peer.SetWriteDeadline(time.Time{})
	go func() {
		peer.Write(make([]byte, 16<<20))
		peer.CloseWrite()
	}()
	if _, err := io.Copy(io.Discard, st); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	w := st.window
	st.mu.Unlock()
	if w != DefaultWindow {
		t.Fatalf("window after reading 16 MiB = %d, want %d", w, DefaultWindow)
	}
}

// Windows grow only within the session's budget, and a stream that ends
// gives its share back.
func TestWindowBudget(t *testing.T) {
	const budget = 2 * (DefaultWindow - InitialWindow)
	c, s := pair(t, Config{WindowBudget: budget}, Config{})
	window := func(st *Stream) uint32 { st.mu.Lock(); defer st.mu.Unlock(); return st.window }
	// pull opens a stream and reads 8 MiB from its peer, leaving it open.
	pull := func() (*Stream, *Stream) {
		st, err := c.Open()
		if err != nil {
			t.Fatal(err)
		}
		peer := accept(t, s)
		go peer.Write(make([]byte, 8<<20))
		if _, err := io.ReadFull(st, make([]byte, 8<<20)); err != nil {
			t.Fatal(err)
		}
		return st, peer
	}
	a, pa := pull()
	b, _ := pull()
	third, _ := pull()
	if window(a) != DefaultWindow || window(b) != DefaultWindow || window(third) != InitialWindow {
		t.Fatalf("windows %d, %d, %d; want the first two grown to %d within the budget, the third at %d",
			window(a), window(b), window(third), DefaultWindow, InitialWindow)
	}
	a.Close()
	pa.Close()
	waitFor(t, func() bool { return c.grown.Load() == budget-(DefaultWindow-InitialWindow) })
	fourth, _ := pull()
	if window(fourth) != DefaultWindow {
		t.Fatalf("after a grown stream ended, a new one grew to %d, want %d", window(fourth), DefaultWindow)
	}
}

// A stream that shrinks its window (going idle in a pool) gives its growth
// back to the budget at once, never lets the peer hold more credit than the
// full window, and grows again when read.
func TestShrinkWindow(t *testing.T) {
	const budget = DefaultWindow - InitialWindow // one full window
	c, s := pair(t, Config{WindowBudget: budget}, Config{})
	window := func(st *Stream) (uint32, uint32) { st.mu.Lock(); defer st.mu.Unlock(); return st.window, st.debt }
	st, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	peer := accept(t, s)
	pull := func(n int) {
		go peer.Write(make([]byte, n))
		if _, err := io.ReadFull(st, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	pull(8 << 20)
	if w, _ := window(st); w != DefaultWindow || c.grown.Load() != budget {
		t.Fatalf("after 8 MiB: window %d, session growth %d; want %d, %d", w, c.grown.Load(), DefaultWindow, budget)
	}
	st.ShrinkWindow()
	if w, d := window(st); w != InitialWindow || d != budget || c.grown.Load() != 0 {
		t.Fatalf("shrunk: window %d debt %d growth %d; want %d, %d, 0", w, d, c.grown.Load(), InitialWindow, budget)
	}
	// Another stream may grow now.
	other, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	otherPeer := accept(t, s)
	go otherPeer.Write(make([]byte, 8<<20))
	if _, err := io.ReadFull(other, make([]byte, 8<<20)); err != nil {
		t.Fatal(err)
	}
	if w, _ := window(other); w != DefaultWindow {
		t.Fatalf("another stream after the shrink grew to %d, want %d", w, DefaultWindow)
	}
	// The shrunk stream still carries data; the peer's credit never
	// exceeds the full window (the receiver would fail the session).
	pull(8 << 20)
	st.mu.Lock()
	credit := st.recvAvail + uint32(st.buffered) + st.unacked
	st.mu.Unlock()
	if credit > DefaultWindow {
		t.Fatalf("the peer holds %d bytes of credit, more than the window %d", credit, DefaultWindow)
	}
}
