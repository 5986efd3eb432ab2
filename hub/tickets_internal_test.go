package hub

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testIdentity is a hub serving certificate (ECDSA P-256, from pki) for
// 127.0.0.1 and a client config trusting it.
func testIdentity(t testing.TB) (tls.Certificate, *tls.Config) {
	t.Helper()
	ident, err := LoadOrCreateTLS(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ident.CAPEM)
	return ident.Certificate, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

// tlsServer is one run of a hub's TLS listener on loopback: it completes
// the handshake of each connection, writes one byte and closes it.
type tlsServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startTLSServer(t testing.TB, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1})
					io.Copy(io.Discard, c) // until the client closes
				}
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener and waits for its connections to end.
func (s *tlsServer) stop() {
	s.ln.Close()
	s.wg.Wait()
}

// dialTLS connects to s with cfg, reads the server's byte (which makes the
// client take the session ticket sent before it) and reports whether the
// session was resumed.
func dialTLS(t testing.TB, s *tlsServer, cfg *tls.Config) bool {
	t.Helper()
	c, err := tls.Dial("tcp", s.ln.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("reading from the server: %v", err)
	}
	return c.ConnectionState().DidResume
}

// TestTicketKeysResume: a client's second connection resumes the session
// of its first when the ticket key that sealed it is still accepted: across
// a restart (a new config) with the same secret key, and up to the period
// after the ticket's; not with another secret key, not two periods later,
// and for TLS 1.2 not across a restart.
func TestTicketKeysResume(t *testing.T) {
	const period = time.Hour
	secret := []byte(strings.Repeat("k", 32))
	other := []byte(strings.Repeat("o", 32))
	for _, tc := range []struct {
		name    string
		tls12   bool
		restart []byte        // the restarted hub's secret key; nil: no restart
		advance time.Duration // the clock moves this much between the connections
		want    bool
	}{
		{"restart/same secret", false, secret, 0, true},
		{"restart/other secret", false, other, 0, false},
		{"restart/same secret/next period", false, secret, period, true},
		{"restart/same secret/two periods on", false, secret, 2 * period, false},
		{"no restart", false, nil, 0, true},
		{"no restart/next period", false, nil, period, true},
		{"no restart/two periods on", false, nil, 2 * period, false},
		{"TLS 1.2/no restart", true, nil, 0, true},
		{"TLS 1.2/restart/same secret", true, secret, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, client := testIdentity(t)
			client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			if tc.tls12 {
				client.MaxVersion = tls.VersionTLS12
			}
			// Midway through a period, so that advancing by less than one
			// stays in it.
			clock := &fakeClock{t: time.Date(2026, 5, 4, 3, 30, 0, 0, time.UTC)}
			base := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			srv := startTLSServer(t, newTicketKeys(secret, clock.Now, period).config(base))
			if dialTLS(t, srv, client) {
				t.Fatal("first connection resumed a session")
			}
			clock.Advance(tc.advance)
			if tc.restart != nil {
				srv.stop()
				srv = startTLSServer(t, newTicketKeys(tc.restart, clock.Now, period).config(base))
			}
			if got := dialTLS(t, srv, client); got != tc.want {
				t.Errorf("second connection: DidResume = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTicketKeysDerivation: keys depend on the secret and the period, and
// only the current and previous period's keys are installed.
func TestTicketKeysDerivation(t *testing.T) {
	clock := &fakeClock{t: time.Unix(10*3600+1800, 0)}
	a := newTicketKeys([]byte(strings.Repeat("a", 32)), clock.Now, time.Hour)
	b := newTicketKeys([]byte(strings.Repeat("b", 32)), clock.Now, time.Hour)
	if a.key(10) == b.key(10) {
		t.Error("two secrets derive the same key")
	}
	if a.key(10) == a.key(11) {
		t.Error("two periods derive the same key")
	}
	if a.key(10) != newTicketKeys(a.secret, clock.Now, time.Hour).key(10) {
		t.Error("the same secret and period derive different keys")
	}
	if a.key(10) == newTicketKeys(a.secret, clock.Now, 2*time.Hour).key(10) {
		t.Error("period 10 of two period lengths derive the same key")
	}
	a.rotate()
	if a.bucket != 10 {
		t.Errorf("bucket = %d at 10:30 with 1 h periods, want 10", a.bucket)
	}
}

// BenchmarkHubTLSHandshake measures the CPU of one TLS handshake with the
// hub's ECDSA P-256 certificate and ticket keys, both ends in this process
// on loopback: full, and resumed from the ticket of an earlier connection.
func BenchmarkHubTLSHandshake(b *testing.B) {
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			cert, client := testIdentity(b)
			if resume {
				client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			base := &tls.Config{Certificates: []tls.Certificate{cert}}
			srv := startTLSServer(b, newTicketKeys([]byte(strings.Repeat("k", 32)), time.Now, ticketKeyPeriod).config(base))
			dialTLS(b, srv, client) // fills the cache
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if got := dialTLS(b, srv, client); got != resume {
					b.Fatalf("DidResume = %v, want %v", got, resume)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the CPU time this process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
