//go:build linux

package hub

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"testing"
	"time"
)

// TestHangups: one epoll instance tells when a quiet connection's peer
// speaks or leaves, once, over plain TCP and TLS; a withdrawn
// registration stays silent; a connection without a descriptor is
// refused, so its pump reads it instead; a closed instance refuses new
// registrations (goleak, in TestMain, checks its goroutine ended).
func TestHangups(t *testing.T) {
	h, err := newHangups()
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()

	for _, tc := range []struct {
		name string
		tls  bool
		// peer does what the client does; the hub's side must be told
		// (unless withdraw: then it must not be).
		peer     func(net.Conn)
		withdraw bool
	}{
		{"tcp: the peer leaves", false, func(c net.Conn) { c.Close() }, false},
		{"tcp: the peer half-closes", false, func(c net.Conn) { c.(*net.TCPConn).CloseWrite() }, false},
		{"tcp: the peer sends bytes", false, func(c net.Conn) { c.Write([]byte("GET / HTTP/1.1\r\n")) }, false},
		{"tls: the peer leaves", true, func(c net.Conn) { c.Close() }, false},
		{"tcp: withdrawn, then the peer leaves", false, func(c net.Conn) { c.Close() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub, peer := connPair(t, tc.tls)
			fired := make(chan struct{}, 2)
			stop, err := h.watch(hub, func() { fired <- struct{}{} })
			if err != nil {
				t.Fatal(err)
			}
			if tc.withdraw {
				stop()
			}
			select {
			case <-fired:
				t.Fatal("told before the peer did anything")
			case <-time.After(50 * time.Millisecond):
			}
			tc.peer(peer)
			// Told as soon as the epoll goroutine runs, which a loaded
			// machine may delay: a generous bound. Not told: 300 ms of
			// silence is what we look for.
			wait := 10 * time.Second
			if tc.withdraw {
				wait = 300 * time.Millisecond
			}
			select {
			case <-fired:
				if tc.withdraw {
					t.Fatal("a withdrawn registration was told")
				}
			case <-time.After(wait):
				if !tc.withdraw {
					t.Fatalf("not told within %v", wait)
				}
			}
			// One-shot: nothing more, and stop after the event is harmless.
			stop()
			select {
			case <-fired:
				t.Fatal("told twice")
			case <-time.After(50 * time.Millisecond):
			}
		})
	}

	t.Run("no descriptor", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if _, err := h.watch(a, func() {}); err == nil {
			t.Fatal("net.Pipe registered")
		}
	})

	t.Run("closed", func(t *testing.T) {
		h2, err := newHangups()
		if err != nil {
			t.Fatal(err)
		}
		c, _ := connPair(t, false)
		stop, err := h2.watch(c, func() { t.Error("told after close") })
		if err != nil {
			t.Fatal(err)
		}
		h2.close()
		stop() // after close: nothing to withdraw, no panic
		if _, err := h2.watch(c, func() {}); err == nil {
			t.Fatal("registered on a closed instance")
		}
	})
}

// connPair returns two ends of a loopback TCP connection, the hub's
// first, wrapped in TLS (handshake done) when tlsOn.
func connPair(t *testing.T, tlsOn bool) (hubSide, peer net.Conn) {
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
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	hubSide = <-accepted
	if hubSide == nil {
		t.Fatal("accept failed")
	}
	if tlsOn {
		srv := httptest.NewUnstartedServer(nil)
		srv.StartTLS()
		cert := srv.TLS.Certificates[0]
		srv.Close()
		st := tls.Server(hubSide, &tls.Config{Certificates: []tls.Certificate{cert}})
		pc := tls.Client(peer, &tls.Config{InsecureSkipVerify: true})
		errc := make(chan error, 1)
		go func() { errc <- st.HandshakeContext(context.Background()) }()
		if err := pc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		hubSide, peer = st, pc
	}
	t.Cleanup(func() { hubSide.Close(); peer.Close() })
	return hubSide, peer
}
