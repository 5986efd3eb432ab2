//go:build linux

package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hangups tells the pumps of quiet watches that their clients spoke or
// left, with one epoll instance for all of them instead of a goroutine
// each blocked reading its client connection (a 4 KiB stack per watch,
// a quarter of issue 16's budget). The instance is waited on through the
// runtime's own poller, so it holds no thread either.
//
// A connection is registered one-shot for input and hang-up. Its first
// event hands it to the callback, which starts a reader goroutine that
// tells a client that left (EOF, reset) from one that sent bytes (a TLS
// alert, a pipelined request): most watches never see one, and end with
// their stream.
type hangups struct {
	// fd is the instance's descriptor, ep the same as a file in the
	// runtime's poller (its Fd method is not used: it would make the
	// descriptor blocking).
	fd  int
	ep  *os.File
	raw syscall.RawConn
	// mu guards next and m, the callback of each registration, keyed by
	// a number that is never reused (file descriptors are), carried in
	// the event's data; m is nil once closed. Changes to the instance's
	// set are made holding mu, so none reaches a closed descriptor.
	mu   sync.Mutex
	next uint64
	m    map[uint64]func()
	done chan struct{}
}

// newHangups starts the epoll instance and its one goroutine; close
// stops it.
func newHangups() (*hangups, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll: non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "hangups")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	h := &hangups{fd: fd, ep: f, raw: raw, m: map[uint64]func(){}, done: make(chan struct{})}
	go h.run()
	return h, nil
}

// errNoDescriptor is a connection with no file descriptor of its own to
// watch (net.Pipe, a wrapper): its pump reads it instead.
var errNoDescriptor = errors.New("hangups: connection has no file descriptor")

// watch calls fn once, from the instance's goroutine (so fn must not
// block), when conn has input or hangs up. The returned stop, to be called before conn closes,
// withdraws the registration; fn is then no longer called.
func (h *hangups) watch(conn net.Conn, fn func()) (stop func(), err error) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errNoDescriptor
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("hangups: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		return nil, errors.New("hangups: closed")
	}
	h.next++
	key := h.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(key)), int32(uint32(key>>32))
	var ctlErr error
	if err := rc.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(h.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || ctlErr != nil {
		return nil, fmt.Errorf("hangups: epoll_ctl: %w", errors.Join(err, ctlErr))
	}
	h.m[key] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, armed := h.m[key]; !armed {
			return // fired, or closed
		}
		delete(h.m, key)
		// Withdrawn while the descriptor is open (a closed one leaves
		// the instance by itself).
		_ = rc.Control(func(fd uintptr) {
			_ = unix.EpollCtl(h.fd, unix.EPOLL_CTL_DEL, int(fd), nil)
		})
	}, nil
}

// run waits on the instance and calls the callbacks of what fired.
func (h *hangups) run() {
	defer close(h.done)
	var evs [128]unix.EpollEvent
	var keys []uint64
	for {
		keys = keys[:0]
		err := h.raw.Read(func(fd uintptr) bool {
			// The runtime wakes this on an edge of the instance's
			// readiness: take all that is ready, then wait for the next.
			for {
				n, err := unix.EpollWait(int(fd), evs[:], 0)
				if err == unix.EINTR {
					continue
				}
				for _, ev := range evs[:max(n, 0)] {
					keys = append(keys, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
				}
				if n < len(evs) {
					return len(keys) > 0
				}
			}
		})
		if err != nil {
			return // closed
		}
		for _, k := range keys {
			h.mu.Lock()
			fn, ok := h.m[k]
			delete(h.m, k)
			h.mu.Unlock()
			if ok {
				fn()
			}
		}
	}
}

// close stops the goroutine and waits for it; registrations left are
// dropped without their callbacks.
func (h *hangups) close() {
	h.mu.Lock()
	h.m = nil
	h.ep.Close()
	h.mu.Unlock()
	<-h.done
}
