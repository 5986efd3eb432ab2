package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// transportRig is a hub with one agent serving handler, and a Transport
// that reaches the agent through the hub's streams.
type transportRig struct {
	h      *harness
	tr     *Transport
	conns  atomic.Int64 // connections the agent's server saw
	closed atomic.Int64 // of which closed
	url    string
}

func newTransportRig(t *testing.T, handler http.Handler, mod func(*TransportConfig, *http.Server)) *transportRig {
	t.Helper()
	rig := &transportRig{h: newHarness(t, harnessOpts{}), url: "http://c-transport"}
	cs := rig.h.dial("c-transport", nil)
	cfg := TransportConfig{Dial: rig.h.srv.DialAddr}
	hsrv := &http.Server{Handler: handler, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			rig.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			rig.closed.Add(1)
		}
	}}
	if mod != nil {
		mod(&cfg, hsrv)
	}
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rig.tr = tr
	serveWith(t, cs, hsrv)
	t.Cleanup(tr.CloseIdleConnections) // runs before serveWith's cleanup
	return rig
}

// do sends a request and returns the response with its body read, and
// whether the stream was a reused one.
func (rig *transportRig) do(t *testing.T, method, path string, body io.Reader, hdr http.Header) (*http.Response, []byte, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var reused bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, method, rig.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := rig.tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	resp.Body.Close()
	return resp, b, reused
}

// quiet waits until every stream the agent's server has open is idle in
// the pool: no exchange is still ending.
func (rig *transportRig) quiet(t *testing.T) {
	t.Helper()
	waitFor(t, func() bool { return rig.conns.Load()-rig.closed.Load() == int64(rig.tr.idleCount()) }, "every open stream to be idle")
}

// exchangeHandler serves the shapes of response the proxy carries.
func exchangeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"Status","status":"Success"}`)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(bigBody)))
		w.Write(bigBody)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := range 5 {
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/trailer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("body"))
		w.Header().Set("X-Sum", "42")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x %s", n, sum.Sum(nil), r.Header.Get("X-Test"))
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, "bye")
	})
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		fmt.Fprint(w, "final")
	})
	return mux
}

var bigBody = bytes.Repeat([]byte("0123456789abcdef"), 6<<16) // 6 MiB, beyond one stream window

func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// TestTransportExchanges: every shape of HTTP/1.1 exchange the hub
// proxies arrives whole through the tunnel, and a stream is reused only
// after an exchange that left it clean.
func TestTransportExchanges(t *testing.T) {
	rig := newTransportRig(t, exchangeHandler(), nil)
	upload := bytes.Repeat([]byte("u"), 5<<20)
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		body       []byte
		unknownLen bool // send the body chunked
		hdr        http.Header
		wantCode   int
		wantBody   string
		wantHeader [2]string
		wantReuse  bool // the next request may reuse the stream
	}{
		{name: "small GET", method: "GET", path: "/small", wantCode: 200, wantBody: `{"kind":"Status","status":"Success"}`, wantHeader: [2]string{"Content-Type", "application/json"}, wantReuse: true},
		{name: "6 MiB download", method: "GET", path: "/big", wantCode: 200, wantBody: "sha:" + sha(bigBody), wantReuse: true},
		{name: "chunked", method: "GET", path: "/chunked", wantCode: 200, wantBody: "line 0\nline 1\nline 2\nline 3\nline 4\n", wantReuse: true},
		{name: "trailer", method: "GET", path: "/trailer", wantCode: 200, wantBody: "body", wantReuse: true},
		{name: "HEAD", method: "HEAD", path: "/big", wantCode: 200, wantBody: "", wantHeader: [2]string{"Content-Length", fmt.Sprint(len(bigBody))}, wantReuse: true},
		{name: "204", method: "DELETE", path: "/empty", wantCode: 204, wantReuse: true},
		{name: "404", method: "GET", path: "/nothing", wantCode: 404, wantBody: "404 page not found\n", wantReuse: true},
		{name: "POST 5 MiB", method: "POST", path: "/echo", body: upload, hdr: http.Header{"X-Test": {"a"}}, wantCode: 200, wantBody: fmt.Sprintf("%d %s a", len(upload), sha(upload)), wantReuse: true},
		{name: "POST chunked", method: "POST", path: "/echo", body: []byte("abc"), unknownLen: true, wantCode: 200, wantBody: fmt.Sprintf("3 %s ", sha([]byte("abc"))), wantReuse: true},
		{name: "Expect: 100-continue", method: "PUT", path: "/echo", body: []byte("x"), hdr: http.Header{"Expect": {"100-continue"}}, wantCode: 200, wantBody: fmt.Sprintf("1 %s ", sha([]byte("x"))), wantReuse: true},
		{name: "Connection: close", method: "GET", path: "/close", wantCode: 200, wantBody: "bye", wantReuse: false},
		{name: "103 Early Hints", method: "GET", path: "/early-hints", wantCode: 200, wantBody: "final", wantReuse: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = bytes.NewReader(tc.body)
				if tc.unknownLen {
					body = io.MultiReader(body) // hides the length
				}
			}
			resp, got, _ := rig.do(t, tc.method, tc.path, body, tc.hdr)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			gotBody := string(got)
			if strings.HasPrefix(tc.wantBody, "sha:") {
				gotBody = "sha:" + sha(got)
			}
			if gotBody != tc.wantBody {
				t.Errorf("body %.80q, want %.80q", gotBody, tc.wantBody)
			}
			if k := tc.wantHeader[0]; k != "" && resp.Header.Get(k) != tc.wantHeader[1] {
				t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), tc.wantHeader[1])
			}
			if tc.path == "/trailer" && resp.Trailer.Get("X-Sum") != "42" {
				t.Errorf("trailer X-Sum = %q, want 42", resp.Trailer.Get("X-Sum"))
			}
			// A body's writer may end after the response was read;
			// the stream is pooled (or closed) when both have.
			rig.quiet(t)
			_, _, reused := rig.do(t, "GET", "/small", nil, nil)
			if reused != tc.wantReuse {
				t.Errorf("next request reused a stream: %v, want %v", reused, tc.wantReuse)
			}
		})
	}
}

// TestTransportGot1xx: interim responses reach the trace, and an error
// from it fails the request.
func TestTransportGot1xx(t *testing.T) {
	rig := newTransportRig(t, exchangeHandler(), nil)
	for _, tc := range []struct {
		name    string
		hookErr error
	}{
		{"passed on", nil},
		{"hook fails", errors.New("client cannot take 1xx")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					got = append(got, fmt.Sprint(code, " ", h.Get("Link")))
					return tc.hookErr
				},
			})
			req, _ := http.NewRequestWithContext(ctx, "GET", rig.url+"/early-hints", nil)
			resp, err := rig.tr.RoundTrip(req)
			if tc.hookErr != nil {
				if !errors.Is(err, tc.hookErr) {
					t.Fatalf("err = %v, want %v", err, tc.hookErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if want := "103 </style.css>; rel=preload"; len(got) != 1 || got[0] != want {
				t.Errorf("1xx seen %q, want [%q]", got, want)
			}
		})
	}
}

// TestTransportReusesStreams: sequential requests share one stream;
// concurrent ones open about as many as they need (the bound leaves room
// for the scheduler: it was a flake at "at most 17" under load), and no
// more than MaxIdlePerHost stay idle.
func TestTransportReusesStreams(t *testing.T) {
	rig := newTransportRig(t, exchangeHandler(), func(c *TransportConfig, _ *http.Server) { c.MaxIdlePerHost = 3 })
	for i := range 20 {
		if _, _, reused := rig.do(t, "GET", "/small", nil, nil); reused != (i > 0) {
			t.Fatalf("request %d: reused %v", i, reused)
		}
	}
	if n := rig.conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d streams, want 1", n)
	}
	if s := rig.tr.Stats(); s.Reused != 19 || s.Idle != 1 {
		t.Fatalf("Stats() = %+v, want 19 reused, 1 idle", s)
	}

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				resp, err := rig.tr.RoundTrip(mustRequest(t, "GET", rig.url+"/chunked"))
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !strings.HasSuffix(string(b), "line 4\n") {
					t.Errorf("body %q, %v", b, err)
				}
			}
		})
	}
	wg.Wait()
	// Each client's next request finds a stream in the pool unless three
	// others were idle when its last one ended (then that one closed):
	// 16 streams and a few more when the scheduler lines them up so,
	// never one per request.
	if n := rig.conns.Load(); n > 80 {
		t.Errorf("16 concurrent clients opened %d streams for 160 requests, want most reused (at most 80)", n)
	} else {
		t.Logf("16 concurrent clients opened %d streams for 160 requests", n)
	}
	waitFor(t, func() bool { return rig.conns.Load()-rig.closed.Load() == 3 }, "3 idle streams (MaxIdlePerHost) to stay open, the rest closed")
	if idle := rig.tr.idleCount(); idle != 3 {
		t.Errorf("%d idle streams in the pool, want 3", idle)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idleCount is the number of streams in the pool.
func (t *Transport) idleCount() int { return t.Stats().Idle }

// idleLive is the number of streams in the pool not known to be closed:
// those whose far end's close has not reached this end yet.
func (t *Transport) idleLive() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, list := range t.idle {
		for _, c := range list {
			if live(c.conn) {
				n++
			}
		}
	}
	return n
}

// TestTransportIdleStreams: idle streams are closed after IdleTimeout and
// by CloseIdleConnections; a stream the agent's server closed while idle
// is not reused.
func TestTransportIdleStreams(t *testing.T) {
	t.Run("IdleTimeout", func(t *testing.T) {
		rig := newTransportRig(t, exchangeHandler(), func(c *TransportConfig, _ *http.Server) { c.IdleTimeout = 50 * time.Millisecond })
		rig.do(t, "GET", "/small", nil, nil)
		waitFor(t, func() bool { return rig.closed.Load() == 1 && rig.tr.idleCount() == 0 }, "the idle stream to be closed")
		if _, _, reused := rig.do(t, "GET", "/small", nil, nil); reused {
			t.Error("a request after the idle timeout reused a stream")
		}
	})
	t.Run("closed by the far end, pruned before it expires", func(t *testing.T) {
		const idle = time.Second
		rig := newTransportRig(t, exchangeHandler(), func(c *TransportConfig, s *http.Server) {
			c.IdleTimeout = idle
			s.IdleTimeout = 20 * time.Millisecond
		})
		rig.do(t, "GET", "/small", nil, nil) // pools stream A; the first prune is due in 1 s
		time.Sleep(300 * time.Millisecond)   // the agent's server closed A
		rig.do(t, "GET", "/small", nil, nil) // A is skipped; stream B is pooled
		pooled := time.Now()
		waitFor(t, func() bool { return rig.tr.idleCount() == 0 }, "the closed stream to leave the pool")
		if d := time.Since(pooled); d >= idle {
			t.Errorf("a stream the far end closed stayed pooled for %v, until it expired", d)
		}
	})
	t.Run("CloseIdleConnections", func(t *testing.T) {
		rig := newTransportRig(t, exchangeHandler(), nil)
		rig.do(t, "GET", "/small", nil, nil)
		rig.tr.CloseIdleConnections()
		waitFor(t, func() bool { return rig.closed.Load() == 1 }, "the idle stream to be closed")
	})
	t.Run("closed by the far end", func(t *testing.T) {
		rig := newTransportRig(t, exchangeHandler(), func(_ *TransportConfig, s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
		rig.do(t, "GET", "/small", nil, nil)
		waitFor(t, func() bool { return rig.closed.Load() == 1 }, "the agent's server to close the idle connection")
		// Its FIN crosses the tunnel after that: awaited, not slept for.
		waitFor(t, func() bool { return rig.tr.idleLive() == 0 }, "the close to reach the hub's end")
		resp, body, reused := rig.do(t, "POST", "/echo", strings.NewReader("abc"), nil)
		if reused || resp.StatusCode != 200 || !strings.HasPrefix(string(body), "3 ") {
			t.Errorf("POST after the far end closed the idle stream: reused %v, %d %q", reused, resp.StatusCode, body)
		}
	})
}

// hiddenLive hides mux.Stream's Live, so the pool cannot tell a stream the
// far end closed: the race between taking a stream and its close.
type hiddenLive struct{ net.Conn }

// TestTransportRetriesStaleStream: a body-less request that finds its
// reused stream closed is sent again on a new one; a request with a body
// is not, as its body cannot be replayed.
func TestTransportRetriesStaleStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		body    io.Reader
		wantErr bool
	}{
		{"GET is retried", "GET", nil, false},
		{"POST is not", "POST", strings.NewReader("abc"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newTransportRig(t, exchangeHandler(), func(c *TransportConfig, s *http.Server) {
				s.IdleTimeout = 20 * time.Millisecond
				dial := c.Dial
				c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					conn, err := dial(ctx, network, addr)
					return hiddenLive{conn}, err
				}
			})
			rig.do(t, "GET", "/small", nil, nil)
			waitFor(t, func() bool { return rig.closed.Load() == 1 }, "the agent's server to close the idle connection")
			time.Sleep(20 * time.Millisecond)
			req, _ := http.NewRequest(tc.method, rig.url+"/echo", tc.body)
			resp, err := rig.tr.RoundTrip(req)
			if tc.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("POST on a stale stream succeeded; it should fail, not be replayed")
				}
				return
			}
			if err != nil {
				t.Fatalf("GET on a stale stream: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n := rig.conns.Load(); n != 2 {
				t.Errorf("agent saw %d connections, want 2", n)
			}
			if s := rig.tr.Stats(); s.Retried != 1 {
				t.Errorf("Stats().Retried = %d, want 1", s.Retried)
			}
		})
	}
}

// TestTransportEndsStreams: a watch ends when its client cancels or closes
// the body, before or after the response head; the agent's handler sees
// its request end, and the stream is not reused.
func TestTransportEndsStreams(t *testing.T) {
	for _, tc := range []struct {
		name       string
		beforeHead bool // the handler never answers
		end        string
	}{
		{"cancel while waiting for the head", true, "cancel"},
		{"cancel while reading the body", false, "cancel"},
		{"close the body while reading", false, "close"},
		{"close the body", false, "close-idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gone := make(chan struct{})
			rig := newTransportRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/watch" {
					if !tc.beforeHead {
						fmt.Fprintln(w, `{"type":"ADDED"}`)
						w.(http.Flusher).Flush()
					}
					<-r.Context().Done()
					close(gone)
					return
				}
				fmt.Fprint(w, "ok")
			}), nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", rig.url+"/watch", nil)
			var (
				resp *http.Response
				err  error
			)
			if tc.beforeHead {
				time.AfterFunc(50*time.Millisecond, cancel)
				resp, err = rig.tr.RoundTrip(req)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("RoundTrip = %v, want context.Canceled", err)
				}
			} else {
				resp, err = rig.tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				if err != nil || line != "{\"type\":\"ADDED\"}\n" {
					t.Fatalf("first event %q, %v", line, err)
				}
				switch tc.end {
				case "cancel":
					time.AfterFunc(50*time.Millisecond, cancel)
					_, err = io.ReadAll(resp.Body)
					// Exactly context.Canceled: ReverseProxy compares
					// with ==, and logs anything else as a failure.
					if err != context.Canceled {
						t.Errorf("reading after cancel: %v, want context.Canceled", err)
					}
				case "close":
					time.AfterFunc(50*time.Millisecond, func() { resp.Body.Close() })
					if _, err = io.ReadAll(resp.Body); err == nil {
						t.Error("a read blocked while the body was closed returned no error")
					}
				case "close-idle":
					resp.Body.Close()
					if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, errBodyClosed) {
						t.Errorf("read after Close: %v, want errBodyClosed", err)
					}
				}
				resp.Body.Close()
			}
			select {
			case <-gone:
			case <-time.After(5 * time.Second):
				t.Fatal("the agent's handler did not see its request end")
			}
			if _, _, reused := rig.do(t, "GET", "/small", nil, nil); reused {
				t.Error("the ended stream was reused")
			}
		})
	}
}

// TestTransportUpgrade: after 101 Switching Protocols the body is the
// stream, both ways, including bytes that came with the response head.
func TestTransportUpgrade(t *testing.T) {
	rig := newTransportRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		// The first message rides with the 101's head.
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	}), nil)
	req := mustRequest(t, "GET", rig.url+"/exec")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := rig.tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, not an io.ReadWriteCloser", resp.Body)
	}
	br := bufio.NewReader(rwc)
	if line, err := br.ReadString('\n'); line != "hello\n" {
		t.Fatalf("first upgraded bytes %q, %v", line, err)
	}
	for _, msg := range []string{"ls\n", "exit\n"} {
		if _, err := io.WriteString(rwc, msg); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); line != strings.ToUpper(msg) {
			t.Fatalf("echo of %q: %q, %v", msg, line, err)
		}
	}
	rwc.Close()
	waitFor(t, func() bool { return rig.closed.Load() == 1 }, "the agent to see the upgraded stream end")
}

// TestTransportErrors: requests the transport cannot send fail with a
// clear error and have their bodies closed.
func TestTransportErrors(t *testing.T) {
	if _, err := NewTransport(TransportConfig{}); err == nil {
		t.Error("NewTransport without Dial succeeded")
	}
	h := newHarness(t, harnessOpts{})
	tr, err := NewTransport(TransportConfig{Dial: h.srv.DialAddr})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		url  string
		want error
	}{
		{"https", "https://c-1/api", nil},
		{"no agent", "http://c-none/api", ErrNoSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &closeRecorder{Reader: strings.NewReader("x")}
			req, _ := http.NewRequest("POST", tc.url, body)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("RoundTrip succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !body.closed {
				t.Error("request body not closed")
			}
		})
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestTransportMalformedResponse: an agent that answers something other
// than HTTP/1.1 fails that request with a clear error, and its stream is
// not reused.
func TestTransportMalformedResponse(t *testing.T) {
	for _, tc := range []struct {
		name, reply, want string
	}{
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", "malformed HTTP response"},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "unexpected EOF"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid byte in chunk length"},
		{"endless header", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", "response header too large"},
		{"endless 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 40<<10), "response header too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newTransportRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/small" {
					fmt.Fprint(w, "ok")
					return
				}
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				brw.WriteString(tc.reply)
				brw.Flush()
				conn.Close()
			}), nil)
			resp, err := rig.tr.RoundTrip(mustRequest(t, "GET", rig.url+"/bad"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if _, _, reused := rig.do(t, "GET", "/small", nil, nil); reused {
				t.Error("the stream of a malformed response was reused")
			}
		})
	}
}

// failingBody yields some bytes, then fails as a body cut off at its
// deadline does.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "{\"kind\":"), nil
	}
	return 0, os.ErrDeadlineExceeded
}

// A request body that fails to read ends the exchange: RoundTrip returns an
// error instead of waiting for an answer the agent, still waiting for the
// rest of the body, would never send; and the agent sees the body end
// short, not complete.
func TestTransportBodyReadErrorEndsExchange(t *testing.T) {
	gotErr := make(chan error, 1)
	rig := newTransportRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		gotErr <- err
	}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", rig.url+"/api/v1/namespaces", &failingBody{})
	req.ContentLength = 100
	resp, err := rig.tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("RoundTrip with a failing body = %d, want an error", resp.StatusCode)
	}
	if ctx.Err() != nil {
		t.Fatalf("RoundTrip waited until its context ended: %v", err)
	}
	select {
	case err := <-gotErr:
		if err == nil {
			t.Error("the agent end read the cut body as complete")
		}
	case <-time.After(5 * time.Second):
		t.Error("the agent end still waits for the body")
	}
}
