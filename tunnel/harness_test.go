package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eco-project/eco/pki"
	"github.com/eco-project/eco/tunnel/mux"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger routes logs to t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// tokenFor is the test credential of a cluster.
func tokenFor(clusterID string) string { return "secret-" + clusterID }

// testAuth accepts "Bearer secret-ID" for the cluster ID in the header;
// cluster IDs starting with "forbidden" get ErrForbidden.
func testAuth(r *http.Request) (string, error) {
	id := r.Header.Get(HeaderClusterID)
	if strings.HasPrefix(id, "forbidden") {
		return "", fmt.Errorf("cluster %q is disabled: %w", id, ErrForbidden)
	}
	if r.Header.Get("Authorization") != "Bearer "+tokenFor(id) {
		return "", errors.New("invalid agent credential")
	}
	return id, nil
}

// harness is a hub Server behind a real loopback HTTP(S) server.
type harness struct {
	t      testing.TB
	srv    *Server
	hs     *httptest.Server
	url    string
	tls    *tls.Config // client config trusting hs
	events chan Event
}

type harnessOpts struct {
	tls bool
	// ecdsa serves TLS with an ECDSA P-256 certificate from pki, like the
	// real hub (httptest's own is RSA); it implies tls.
	ecdsa  bool
	server func(*ServerConfig)
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, events: make(chan Event, 4096)}
	cfg := ServerConfig{
		Authenticate: testAuth,
		Events: func(ev Event) {
			select {
			case h.events <- ev:
			default:
			}
		},
		Logger: testLogger(t),
	}
	if o.server != nil {
		o.server(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	mux := http.NewServeMux()
	mux.Handle("/tunnel", srv)
	switch {
	case o.ecdsa:
		caCert, cert := testCert(t, "test hub CA", "eco-hub")
		h.hs = httptest.NewUnstartedServer(mux)
		h.hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		h.hs.StartTLS()
		h.url = "wss" + strings.TrimPrefix(h.hs.URL, "https") + "/tunnel"
		roots := x509.NewCertPool()
		roots.AddCert(caCert)
		h.tls = &tls.Config{RootCAs: roots}
	case o.tls:
		h.hs = httptest.NewTLSServer(mux)
		h.url = "wss" + strings.TrimPrefix(h.hs.URL, "https") + "/tunnel"
		h.tls = h.hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	default:
		h.hs = httptest.NewServer(mux)
		h.url = "ws" + strings.TrimPrefix(h.hs.URL, "http") + "/tunnel"
	}
	t.Cleanup(h.hs.Close)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *harness) clientConfig(clusterID string) ClientConfig {
	return ClientConfig{
		URL:       h.url,
		ClusterID: clusterID,
		Token:     tokenFor(clusterID),
		TLSConfig: h.tls,
		Hello: Hello{
			AgentVersion:      "v0.0.0-test",
			KubernetesVersion: "v1.34.4",
			Fingerprint:       "fp-" + clusterID,
		},
		Proxy:  func(*http.Request) (*url.URL, error) { return nil, nil },
		Logger: testLogger(h.t),
	}
}

// dial connects an agent and closes it at cleanup.
func (h *harness) dial(clusterID string, mod func(*ClientConfig)) *ClientSession {
	h.t.Helper()
	cfg := h.clientConfig(clusterID)
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := Dial(ctx, cfg)
	if err != nil {
		h.t.Fatalf("Dial(%s): %v", clusterID, err)
	}
	h.t.Cleanup(func() { cs.Close() })
	return cs
}

// serve runs an http.Server with handler on the agent session until cleanup.
func serve(t testing.TB, cs *ClientSession, handler http.Handler) {
	t.Helper()
	serveWith(t, cs, &http.Server{Handler: handler})
}

// serveWith runs hsrv on the agent session until cleanup.
func serveWith(t testing.TB, cs *ClientSession, hsrv *http.Server) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		hsrv.Serve(cs)
	}()
	t.Cleanup(func() {
		hsrv.Close()
		cs.Close()
		<-done
	})
}

// transport returns an http.Transport that dials clusterID through the hub.
func (h *harness) transport(clusterID string) *http.Transport {
	tr := &http.Transport{DialContext: h.srv.Dialer(clusterID), MaxIdleConnsPerHost: 100}
	h.t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// waitEvents waits for an event of kind from each of clusterIDs, in any
// order: two agents dialled one after the other may connect in either
// order, and waitEvent drops every event it is not waiting for.
func (h *harness) waitEvents(kind EventKind, d time.Duration, clusterIDs ...string) {
	h.t.Helper()
	want := make(map[string]bool, len(clusterIDs))
	for _, id := range clusterIDs {
		want[id] = true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(want) > 0 {
		select {
		case ev := <-h.events:
			if ev.Kind == kind {
				delete(want, ev.ClusterID)
			}
		case <-timer.C:
			h.t.Fatalf("no %v event within %v for %v", kind, d, slices.Sorted(maps.Keys(want)))
			return
		}
	}
}

// waitEvent returns the next event of kind from clusterID, failing after
// d. It drops every other event it reads: to wait for events of several
// sessions whose order nothing fixes, use waitEvents.
func (h *harness) waitEvent(kind EventKind, clusterID string, d time.Duration) Event {
	h.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-h.events:
			if ev.Kind == kind && ev.ClusterID == clusterID {
				return ev
			}
		case <-timer.C:
			h.t.Fatalf("no %v event for %s within %v", kind, clusterID, d)
			return Event{}
		}
	}
}

// waitDone waits for cs to end.
func waitDone(t testing.TB, cs *ClientSession, d time.Duration) {
	t.Helper()
	select {
	case <-cs.Done():
	case <-time.After(d):
		t.Fatalf("session did not end within %v", d)
	}
}

// lineService is a tiny protocol for raw stream tests, served by agents:
// the hub writes one command line per stream:
//
//	source N   the agent writes N bytes (N=0: forever) and closes
//	echo       the agent echoes until EOF
//	hello      the agent writes its name and closes
func lineService(t testing.TB, cs *ClientSession, name string) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := cs.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				f := strings.Fields(line)
				switch f[0] {
				case "source":
					n, _ := strconv.ParseInt(f[1], 10, 64)
					buf := make([]byte, 32<<10)
					for sent := int64(0); n == 0 || sent < n; {
						k := int64(len(buf))
						if n != 0 {
							k = min(k, n-sent)
						}
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
						sent += k
					}
				case "echo":
					io.Copy(c, br)
				case "hello":
					io.WriteString(c, name)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cs.Close()
		wg.Wait()
	})
}

// rawAgent speaks the protocol by hand so tests can break it: a plain
// WebSocket dial with the handshake headers, and a bare multiplexer.
type rawAgent struct {
	ws   *websocket.Conn
	mux  *mux.Session
	ctrl *mux.Stream
}

func dialRaw(t testing.TB, h *harness, clusterID string) *rawAgent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+tokenFor(clusterID))
	hdr.Set(HeaderClusterID, clusterID)
	hdr.Set(HeaderAgentProtocol, ProtocolVersion)
	ws, resp, err := websocket.Dial(ctx, h.url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acceptFromHeaders(resp.Header); err != nil {
		t.Fatal(err)
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	ms := mux.Server(nc, mux.Config{})
	t.Cleanup(func() { ms.Close(); ws.CloseNow() })
	return &rawAgent{ws: ws, mux: ms, ctrl: ms.Control()}
}

// answerPings keeps a raw agent alive until its session ends.
func (a *rawAgent) answerPings(t testing.TB) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			body, err := readFrame(a.ctrl, DefaultMaxControlMessage)
			if err != nil {
				return
			}
			if m, err := decodeMessage(body); err == nil && m.Type == msgPing {
				b, _ := appendFrame(nil, &message{Type: msgPong, Seq: m.Seq})
				a.ctrl.Write(b)
			}
		}
	}()
	t.Cleanup(func() { a.mux.Close(); wg.Wait() })
}

// freezeProxy forwards TCP to target until frozen; then it stops moving
// bytes in both directions without closing anything, like a dead path.
type freezeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{}
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFreezeProxy(t testing.TB, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target, frozen: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezeProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			// Hold the bytes; wait for the test to end.
			io.Copy(io.Discard, src)
			return
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *freezeProxy) freeze() { close(p.frozen) }

// writeRawFrame writes a 4-byte length prefix announcing n and no body.
func writeRawFrame(w io.Writer, n uint32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	_, err := w.Write(b[:])
	return err
}

// goleakVerify reports goroutines still running other than the test's own.
func goleakVerify() error {
	return goleak.Find()
}

// testCert issues a certificate for 127.0.0.1 named commonName from a new
// CA called caName, and returns the CA's certificate and the leaf.
func testCert(t testing.TB, caName, commonName string) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA(caName, now)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.LeafRequest{CommonName: commonName, Hosts: []string{"127.0.0.1"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return ca.Cert, cert
}
