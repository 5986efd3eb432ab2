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
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/eco-project/eco/tunnel/mux"
)

// echoHandler answers with the method, path, an agent header and a hash of
// the request body.
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Agent", name)
		fmt.Fprintf(w, "%s %s %d %x", r.Method, r.URL.Path, n, h.Sum(nil))
	})
}

func TestHTTPRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
		body int
	}{
		{"ws/small", false, 10},
		{"ws/4MiB", false, 4 << 20},
		{"wss/small", true, 10},
		{"wss/4MiB", true, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: tc.tls})
			cs := h.dial("c1", nil)
			serve(t, cs, echoHandler("agent-1"))
			client := &http.Client{Transport: h.transport("c1"), Timeout: 10 * time.Second}

			body := bytes.Repeat([]byte("x"), tc.body)
			resp, err := client.Post("http://c1/api/v1/pods", "text/plain", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf("POST /api/v1/pods %d %x", tc.body, sha256.Sum256(body))
			if string(got) != want || resp.Header.Get("X-Agent") != "agent-1" {
				t.Fatalf("got %q (agent %q), want %q", got, resp.Header.Get("X-Agent"), want)
			}
			st := h.srv.Stats()
			if st.Sessions != 1 || st.StreamsOpened < 1 || st.BytesIn == 0 || st.BytesOut < uint64(tc.body) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestDialAddrRoutesByHost(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, id := range []string{"alpha", "beta"} {
		serve(t, h.dial(id, nil), echoHandler(id))
	}
	tr := &http.Transport{DialContext: h.srv.DialAddr}
	defer tr.CloseIdleConnections()
	for _, id := range []string{"alpha", "beta", "alpha"} {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + id + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Agent"); got != id {
			t.Fatalf("request for %s reached %s", id, got)
		}
	}
	if _, err := h.srv.DialContext(context.Background(), "gamma"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("dial unknown cluster: %v, want ErrNoSession", err)
	}
}

func TestConcurrentStreams(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	var inFlight, maxInFlight atomic.Int64
	echo := echoHandler("a")
	serve(t, h.dial("c1", nil), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		echo.ServeHTTP(w, r)
	}))
	client := &http.Client{Transport: h.transport("c1"), Timeout: 20 * time.Second}
	const workers, each = 64, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf("worker %d request %d %s", w, i, strings.Repeat("y", w*100))
				resp, err := client.Post(fmt.Sprintf("http://c1/%d/%d", w, i), "text/plain", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("POST /%d/%d %d %x", w, i, len(body), sha256.Sum256([]byte(body)))
				if string(got) != want {
					errs <- fmt.Errorf("got %q want %q", got, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Serialized streams would give 1; a loaded CI machine under -race
	// has been seen to reach only about half of the workers.
	if n := maxInFlight.Load(); n < workers/4 {
		t.Errorf("at most %d requests were in flight at once, want >= %d", n, workers/4)
	}
}

func TestStreamingResponseArrivesPromptly(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	next := make(chan struct{})
	serve(t, h.dial("c1", nil), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 20 {
			fmt.Fprintf(w, "line %d %d\n", i, time.Now().UnixNano())
			w.(http.Flusher).Flush()
			select { // the next line only after the test read this one
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	client := &http.Client{Transport: h.transport("c1")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://c1/watch", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var delays []time.Duration
	for i := range 20 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("line %d: %v (a line was held back until more data came)", i, err)
		}
		var n int
		var sent int64
		fmt.Sscanf(line, "line %d %d", &n, &sent)
		delays = append(delays, time.Since(time.Unix(0, sent)))
		if i < 19 {
			next <- struct{}{}
		}
	}
	slices.Sort(delays)
	t.Logf("line delay: median %v, max %v", delays[len(delays)/2], delays[len(delays)-1])
	if delays[len(delays)/2] > 50*time.Millisecond {
		t.Fatalf("median line delay %v", delays[len(delays)/2])
	}
}

func TestStalledStreamDoesNotStallOthers(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	lineService(t, h.dial("c1", nil), "a")
	ctx := context.Background()

	// Stream A: the agent writes forever; the hub never reads.
	stalled, err := h.srv.DialContext(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	io.WriteString(stalled, "source 0\n")
	time.Sleep(100 * time.Millisecond) // let A fill its window

	// Stream B on the same session must keep flowing.
	const total = 16 << 20 // 4 windows
	c, err := h.srv.DialContext(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "source %d\n", total)
	start := time.Now()
	n, err := io.Copy(io.Discard, c)
	elapsed := time.Since(start)
	if err != nil || n != total {
		t.Fatalf("read %d of %d bytes: %v", n, total, err)
	}
	mibs := float64(n) / (1 << 20) / elapsed.Seconds()
	t.Logf("stream B: %d MiB in %v = %.0f MiB/s while stream A is stalled", n>>20, elapsed, mibs)
	if mibs < 1 { // a stall would be 0; ~170 MiB/s without -race
		t.Fatalf("stream B throughput %.1f MiB/s while A is stalled", mibs)
	}
	// A is still alive: it delivers once read.
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(stalled, make([]byte, 1<<20)); err != nil {
		t.Fatalf("stalled stream broken: %v", err)
	}
}

func TestAuthenticationFailure(t *testing.T) {
	for _, tc := range []struct {
		name, cluster, token string
		status               int
	}{
		{"bad token", "c1", "wrong", http.StatusUnauthorized},
		{"no token", "c1", "", http.StatusUnauthorized},
		{"forbidden", "forbidden-1", tokenFor("forbidden-1"), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true})
			cfg := h.clientConfig(tc.cluster)
			cfg.Token = tc.token
			_, err := Dial(context.Background(), cfg)
			var re *RejectError
			if !errors.As(err, &re) || re.StatusCode != tc.status {
				t.Fatalf("Dial: %v, want *RejectError with HTTP %d", err, tc.status)
			}
			if !strings.Contains(re.Reason, "credential") && !strings.Contains(re.Reason, "disabled") {
				t.Fatalf("reason %q is not the hub's message", re.Reason)
			}
			t.Logf("agent sees: %v", err)
			if st := h.srv.Stats(); st.AuthFailures != 1 || st.Sessions != 0 || st.HandshakeErrors != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestAdmitRejection(t *testing.T) {
	admitted := make(chan Hello, 1)
	h := newHarness(t, harnessOpts{server: func(c *ServerConfig) {
		c.Admit = func(ctx context.Context, clusterID string, hello Hello) error {
			if hello.Fingerprint != "fp-good" {
				return fmt.Errorf("cluster fingerprint %q does not match the pinned one", hello.Fingerprint)
			}
			admitted <- hello
			return nil
		}
	}})
	_, err := Dial(context.Background(), h.clientConfig("c1"))
	var re *RejectError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || !strings.Contains(re.Reason, "does not match the pinned one") {
		t.Fatalf("Dial: %v, want *RejectError with Admit's reason", err)
	}
	if !IsRejected(err) {
		t.Fatal("IsRejected is false")
	}
	if st := h.srv.Stats(); st.Rejected != 1 || st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The right fingerprint is admitted, with the Hello intact.
	h.dial("c1", func(c *ClientConfig) { c.Hello.Fingerprint = "fp-good" })
	if got := <-admitted; got.ProtocolVersion != ProtocolVersion || got.KubernetesVersion != "v1.34.4" {
		t.Fatalf("Admit saw %+v", got)
	}
	ev := h.waitEvent(EventConnected, "c1", 5*time.Second)
	if ev.Hello.Fingerprint != "fp-good" {
		t.Fatalf("connected event %+v", ev)
	}
}

// TestProbation admits agents on probation: Prove reaches the agent over
// the new session before it becomes its cluster's, and a refusal ends the
// session with a goodbye while the live session keeps serving.
func TestProbation(t *testing.T) {
	var prove func(ctx context.Context, clusterID string, hello Hello, dial func(context.Context) (net.Conn, error)) error
	h := newHarness(t, harnessOpts{server: func(c *ServerConfig) {
		c.Admit = func(ctx context.Context, clusterID string, hello Hello) error {
			if hello.IdentityToken == "a.probation.c" {
				return ErrProbation
			}
			return nil
		}
		c.Prove = func(ctx context.Context, clusterID string, hello Hello, dial func(context.Context) (net.Conn, error)) error {
			return prove(ctx, clusterID, hello, dial)
		}
	}})
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	get := func(clusterID string) (string, error) {
		tr := h.transport(clusterID)
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + clusterID + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	// askAgent is what the hub's Prove does: one request to the agent
	// over the session on probation.
	askAgent := func(ctx context.Context, dial func(context.Context) (net.Conn, error)) (string, error) {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	live := h.dial("c1", nil)
	serve(t, live, handler("live"))
	h.waitEvent(EventConnected, "c1", 5*time.Second)

	// Refused on probation: the agent was reached, then said goodbye to;
	// the live session still serves.
	var heard string
	var sawToken string
	prove = func(ctx context.Context, clusterID string, hello Hello, dial func(context.Context) (net.Conn, error)) error {
		sawToken = hello.IdentityToken
		if _, err := h.srv.DialContext(ctx, clusterID); err != nil {
			return fmt.Errorf("the live session is not reachable during probation: %w", err)
		}
		var err error
		heard, err = askAgent(ctx, dial)
		if err != nil {
			return err
		}
		return &RejectError{Reason: "agent identity not proven"}
	}
	cand := h.dial("c1", func(c *ClientConfig) { c.Hello.IdentityToken = "a.probation.c" })
	serve(t, cand, handler("candidate"))
	waitDone(t, cand, 5*time.Second)
	if !errors.Is(cand.Err(), ErrDisconnected) || !strings.Contains(cand.Err().Error(), "agent identity not proven") {
		t.Fatalf("refused candidate ended with %v", cand.Err())
	}
	if heard != "candidate" || sawToken != "a.probation.c" {
		t.Fatalf("Prove heard %q and saw token %q", heard, sawToken)
	}
	if got, err := get("c1"); got != "live" || err != nil {
		t.Fatalf("after a refused probation the cluster answers %q, %v", got, err)
	}

	// Accepted on probation: the candidate replaces the live session.
	prove = func(ctx context.Context, clusterID string, hello Hello, dial func(context.Context) (net.Conn, error)) error {
		_, err := askAgent(ctx, dial)
		return err
	}
	cand2 := h.dial("c1", func(c *ClientConfig) { c.Hello.IdentityToken = "a.probation.c" })
	serve(t, cand2, handler("proven"))
	waitDone(t, live, 5*time.Second)
	if got, err := get("c1"); got != "proven" || err != nil {
		t.Fatalf("after a proven probation the cluster answers %q, %v", got, err)
	}
	// The token never reaches events or SessionInfo.
	sessions := h.srv.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions after a proven probation, want the candidate's", len(sessions))
	}
	if sessions[0].Hello.IdentityToken != "" {
		t.Fatal("SessionInfo carries the identity token")
	}
	// The candidate's Connected is emitted after its 101 went out, so it
	// may not be in yet: every event is checked up to it, then what else
	// is in, so that the check cannot pass by looking too early.
	checkEvent := func(ev Event) {
		if ev.Hello.IdentityToken != "" {
			t.Fatal("an event carries the identity token")
		}
	}
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-h.events:
			checkEvent(ev)
			seen = ev.Kind == EventConnected && ev.SessionID == sessions[0].SessionID
		case <-timeout:
			t.Fatal("no connected event for the proven candidate within 10s")
		}
	}
	for {
		select {
		case ev := <-h.events:
			checkEvent(ev)
			continue
		default:
		}
		break
	}
}

func TestUnsupportedProtocolVersion(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	cfg := h.clientConfig("c1")
	for _, v := range []string{"3.0", "1.0"} {
		cfg.Hello.ProtocolVersion = v
		_, err := Dial(context.Background(), cfg)
		var re *RejectError
		if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || !strings.Contains(re.Reason, "unsupported protocol version") {
			t.Fatalf("Dial with %s: %v, want rejection for the version", v, err)
		}
		t.Logf("%s: %v", v, err)
	}
	// A version that is not MAJOR.MINOR never leaves the agent.
	cfg.Hello.ProtocolVersion = "x"
	if _, err := Dial(context.Background(), cfg); !errors.Is(err, ErrUnsupportedVersion) || IsRejected(err) {
		t.Fatalf("Dial with x: %v, want ErrUnsupportedVersion", err)
	}
	if st := h.srv.Stats(); st.Rejected != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// The hub registers a session before its 101 leaves, so the moment Dial
// returns the hub can dial the agent: no window in which the agent thinks
// it is connected and the hub does not.
func TestReachableWhenDialReturns(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for i := range 50 {
		id := fmt.Sprintf("c%d", i)
		cs := h.dial(id, nil)
		c, err := h.srv.DialContext(context.Background(), id)
		if err != nil {
			t.Fatalf("dial %d: the hub cannot reach an agent whose Dial returned: %v", i, err)
		}
		c.Close()
		cs.Close()
	}
}

func TestReplacedSession(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	old := h.dial("c1", nil)
	lineService(t, old, "old")
	first := h.waitEvent(EventConnected, "c1", 5*time.Second)
	lineService(t, h.dial("c1", nil), "new")

	waitDone(t, old, 5*time.Second)
	if err := old.Err(); !errors.Is(err, ErrDisconnected) || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("old session ended with %v", err)
	}
	for {
		ev := h.waitEvent(EventDisconnected, "c1", 5*time.Second)
		if ev.SessionID == first.SessionID {
			if !errors.Is(ev.Err, ErrReplaced) {
				t.Fatalf("old session disconnected with %v", ev.Err)
			}
			break
		}
	}
	c, err := h.srv.DialContext(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello\n")
	if b, _ := io.ReadAll(c); string(b) != "new" {
		t.Fatalf("dial reached %q, want the new session", b)
	}
	if n := len(h.srv.Sessions()); n != 1 {
		t.Fatalf("%d sessions", n)
	}
}

func TestDisconnectClosesAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	cs := h.dial("c1", nil)
	lineService(t, cs, "a")
	c, err := h.srv.DialContext(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "source 0\n")

	if !h.srv.Connected("c1") || h.srv.Connected("c2") {
		t.Fatalf("Connected(c1) = %v, Connected(c2) = %v; want true, false", h.srv.Connected("c1"), h.srv.Connected("c2"))
	}
	start := time.Now()
	if !h.srv.Disconnect("c1", "cluster deleted") {
		t.Fatal("Disconnect found no session")
	}
	if h.srv.Connected("c1") {
		t.Fatal("Connected(c1) after Disconnect")
	}
	if _, err := h.srv.DialContext(context.Background(), "c1"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("dial after Disconnect: %v", err)
	}
	waitDone(t, cs, 2*time.Second)
	t.Logf("agent saw the end after %v: %v", time.Since(start), cs.Err())
	if err := cs.Err(); !errors.Is(err, ErrDisconnected) || !strings.Contains(err.Error(), "cluster deleted") {
		t.Fatalf("agent error %v", err)
	}
	// The open stream is cut too.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
		t.Fatal("stream survived Disconnect")
	}
	ev := h.waitEvent(EventDisconnected, "c1", 2*time.Second)
	if !errors.Is(ev.Err, ErrDisconnected) {
		t.Fatalf("event %v", ev.Err)
	}
	if h.srv.Disconnect("c1", "again") {
		t.Fatal("second Disconnect found a session")
	}
}

func TestHeartbeatRTT(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true, server: func(c *ServerConfig) {
		c.HeartbeatInterval = 20 * time.Millisecond
	}})
	h.dial("c1", nil)
	ev := h.waitEvent(EventHeartbeat, "c1", 5*time.Second)
	if ev.RTT <= 0 || ev.RTT > time.Second {
		t.Fatalf("RTT %v", ev.RTT)
	}
	h.waitEvent(EventHeartbeat, "c1", 5*time.Second) // and it repeats
	infos := h.srv.Sessions()
	if len(infos) != 1 || infos[0].LastHeartbeat.IsZero() || infos[0].RTT <= 0 || infos[0].Hello.Fingerprint != "fp-c1" {
		t.Fatalf("sessions %+v", infos)
	}
	t.Logf("heartbeat RTT %v", ev.RTT)
}

func TestStatusAndGoodbye(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	cs := h.dial("c1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cs.ReportStatus(ctx, Status{State: StateFailing, Reason: "API server unreachable: connection refused"}); err != nil {
		t.Fatal(err)
	}
	ev := h.waitEvent(EventStatus, "c1", 5*time.Second)
	if ev.Status.State != StateFailing || !strings.Contains(ev.Status.Reason, "unreachable") {
		t.Fatalf("status event %+v", ev)
	}
	if got := h.srv.Sessions()[0].Status; got != ev.Status {
		t.Fatalf("session status %+v", got)
	}
	if err := cs.ReportStatus(ctx, Status{}); err == nil {
		t.Fatal("empty status accepted")
	}

	if err := cs.Goodbye(ctx, "namespace eco-agent is being deleted"); err != nil {
		t.Fatalf("Goodbye: %v", err)
	}
	ev = h.waitEvent(EventGoodbye, "c1", 5*time.Second)
	if !strings.Contains(ev.Reason, "being deleted") {
		t.Fatalf("goodbye event %+v", ev)
	}
	ev = h.waitEvent(EventDisconnected, "c1", 5*time.Second)
	if !errors.Is(ev.Err, ErrGoodbye) {
		t.Fatalf("disconnected with %v, want ErrGoodbye", ev.Err)
	}
	if !errors.Is(cs.Err(), ErrGoodbye) {
		t.Fatalf("agent error %v", cs.Err())
	}
}

func TestDeadPeerDetected(t *testing.T) {
	h := newHarness(t, harnessOpts{server: func(c *ServerConfig) {
		c.HeartbeatInterval = 50 * time.Millisecond
		c.HeartbeatTimeout = 250 * time.Millisecond
	}})
	p := newFreezeProxy(t, h.hs.Listener.Addr().String())
	cs := h.dial("c1", func(c *ClientConfig) {
		c.URL = "ws://" + p.ln.Addr().String() + "/tunnel"
	})
	h.waitEvent(EventHeartbeat, "c1", 5*time.Second)
	p.freeze()
	start := time.Now()
	ev := h.waitEvent(EventDisconnected, "c1", 5*time.Second)
	if !errors.Is(ev.Err, ErrHeartbeatTimeout) {
		t.Fatalf("hub: %v, want ErrHeartbeatTimeout", ev.Err)
	}
	t.Logf("hub detected the dead agent after %v", time.Since(start))
	waitDone(t, cs, 5*time.Second)
	if !errors.Is(cs.Err(), ErrHeartbeatTimeout) {
		t.Fatalf("agent: %v, want ErrHeartbeatTimeout", cs.Err())
	}
	if h.srv.Stats().HeartbeatTimeout != 1 {
		t.Fatalf("stats %+v", h.srv.Stats())
	}
}

// checkAlive proves a session still carries traffic.
func checkAlive(t *testing.T, h *harness, clusterID, name string) {
	t.Helper()
	c, err := h.srv.DialContext(context.Background(), clusterID)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello\n")
	if b, err := io.ReadAll(c); string(b) != name {
		t.Fatalf("session %s: got %q, %v", clusterID, b, err)
	}
}

func TestOversizedInputClosesOnlyThatSession(t *testing.T) {
	for _, tc := range []struct {
		name  string
		abuse func(t *testing.T, a *rawAgent)
		want  error
	}{
		{"control frame over limit", func(t *testing.T, a *rawAgent) {
			// Announces 4 GiB; the hub must not try to allocate it.
			writeRawFrame(a.ctrl, 0xFFFFFFFF) // the hub may close before the write reports
		}, ErrFrameTooLarge},
		{"control frame just over limit", func(t *testing.T, a *rawAgent) {
			writeRawFrame(a.ctrl, DefaultMaxControlMessage+1)
			a.ctrl.Write(make([]byte, DefaultMaxControlMessage+1))
		}, ErrFrameTooLarge},
		{"websocket message over limit", func(t *testing.T, a *rawAgent) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// Well-formed empty data frames on the control stream, each
			// harmless, in one message past the limit: only the WebSocket
			// limit can stop it.
			frame := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
			msg := bytes.Repeat(frame, DefaultMaxMessageSize/len(frame)+1)
			a.ws.Write(ctx, websocket.MessageBinary, msg)
		}, ErrConnectionLost},
		{"text message", func(t *testing.T, a *rawAgent) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.ws.Write(ctx, websocket.MessageText, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
		}, ErrConnectionLost},
		{"garbage after upgrade", func(t *testing.T, a *rawAgent) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.ws.Write(ctx, websocket.MessageBinary, []byte("GET / HTTP/1.1\r\n\r\nthis is not a mux frame"))
		}, ErrConnectionLost},
		{"invalid JSON", func(t *testing.T, a *rawAgent) {
			writeRawFrame(a.ctrl, 5)
			a.ctrl.Write([]byte("{nope"))
		}, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			lineService(t, h.dial("good", nil), "good")
			checkAlive(t, h, "good", "good")

			a := dialRaw(t, h, "bad")
			a.answerPings(t)
			h.waitEvent(EventConnected, "bad", 5*time.Second)
			tc.abuse(t, a)
			ev := h.waitEvent(EventDisconnected, "bad", 5*time.Second)
			if !errors.Is(ev.Err, tc.want) {
				t.Fatalf("bad session ended with %v, want %v", ev.Err, tc.want)
			}
			t.Logf("hub: %v", ev.Err)
			checkAlive(t, h, "good", "good")
		})
	}
}

// The handshake is the upgrade request: a hello the hub cannot accept is
// refused with an HTTP status and a reason before any upgrade, and the
// agent learns it from Dial.
func TestBadHandshakes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	lineService(t, h.dial("good", nil), "good")

	for _, tc := range []struct {
		name   string
		header func(http.Header)
		status int
		reason string
	}{
		{"no protocol version", func(h http.Header) { h.Del(HeaderAgentProtocol) }, http.StatusForbidden, "states no X-Eco-Tunnel-Protocol"},
		{"protocol 1.x (yamux)", func(h http.Header) { h.Set(HeaderAgentProtocol, "1.0") }, http.StatusForbidden, "re-apply"},
		{"fingerprint too long", func(h http.Header) { h.Set(HeaderFingerprint, strings.Repeat("f", maxFieldLen+1)) }, http.StatusBadRequest, "fingerprint"},
		{"capabilities repeated", func(h http.Header) { h.Add(HeaderCapabilities, "a"); h.Add(HeaderCapabilities, "b") }, http.StatusBadRequest, "repeated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			hdr.Set("Authorization", "Bearer "+tokenFor("bad"))
			hdr.Set(HeaderClusterID, "bad")
			hdr.Set(HeaderAgentProtocol, ProtocolVersion)
			tc.header(hdr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, resp, err := websocket.Dial(ctx, h.url, &websocket.DialOptions{HTTPHeader: hdr})
			if err == nil || resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("dial: %v, response %+v; want HTTP %d", err, resp, tc.status)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), tc.reason) {
				t.Fatalf("reason %q does not say %q", body, tc.reason)
			}
		})
	}
	t.Run("agent with a hello headers cannot carry", func(t *testing.T) {
		cfg := h.clientConfig("bad")
		cfg.Hello.AgentVersion = "v1\nX-Injected: yes"
		if _, err := Dial(context.Background(), cfg); !errors.Is(err, ErrBadHello) {
			t.Fatalf("Dial: %v, want ErrBadHello", err)
		}
	})
	t.Run("agent opens a stream", func(t *testing.T) {
		a := dialRaw(t, h, "opener")
		a.answerPings(t)
		if _, err := a.mux.Open(); !errors.Is(err, mux.ErrNotOpener) {
			t.Fatalf("the agent's mux opened a stream: %v", err)
		}
		// Written by hand, a SYN from the agent is a protocol error:
		// the hub ends the session.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.ws.Write(ctx, websocket.MessageBinary, []byte{0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0})
		ev := h.waitEvent(EventDisconnected, "opener", 5*time.Second)
		if !errors.Is(ev.Err, mux.ErrProtocol) {
			t.Fatalf("session of an agent that opened a stream ended with %v, want a protocol error", ev.Err)
		}
	})
	checkAlive(t, h, "good", "good")
	if st := h.srv.Stats(); st.Sessions != 1 || st.SessionsTotal != 2 || st.Rejected != 2 || st.HandshakeErrors != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// An agent that reaches a WebSocket server which is not an eco hub (no
// answer in the 101 response) fails with a protocol error instead of
// waiting for heartbeats that never come.
func TestDialNotAHub(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.Read(r.Context())
	}))
	defer hs.Close()
	_, err := Dial(context.Background(), ClientConfig{URL: "ws" + strings.TrimPrefix(hs.URL, "http"), ClusterID: "c1",
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil }})
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("Dial: %v, want ErrProtocol", err)
	}
	t.Log(err)
}

func TestGarbageHTTPRejected(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	lineService(t, h.dial("good", nil), "good")
	addr := h.hs.Listener.Addr().String()
	auth := "Authorization: Bearer " + tokenFor("c1") + "\r\n" + HeaderClusterID + ": c1\r\n" +
		HeaderAgentProtocol + ": " + ProtocolVersion + "\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"binary garbage", "\x00\x01\x02\xff\xfe garbage\r\n\r\n", 400},
		{"plain GET without credential", "GET /tunnel HTTP/1.1\r\nHost: x\r\n\r\n", 401},
		{"plain GET with credential", "GET /tunnel HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 426},
		{"upgrade without key", "GET /tunnel HTTP/1.1\r\nHost: x\r\n" + auth +
			"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
		{"upgrade with POST", "POST /tunnel HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + auth +
			"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	checkAlive(t, h, "good", "good")
	if st := h.srv.Stats(); st.Sessions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDialRespectsContext(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, harnessOpts{server: func(c *ServerConfig) {
		c.Admit = func(ctx context.Context, _ string, _ Hello) error {
			select { // an Admit that hangs on a slow store
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
	}})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Dial(ctx, h.clientConfig("c1"))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Dial returned %v after %v", err, time.Since(start))
	}
	if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Dial: %v", err)
	}
}

func TestSessionOutlivesDialContext(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	cfg := h.clientConfig("c1")
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	cancel()
	lineService(t, cs, "a")
	time.Sleep(50 * time.Millisecond)
	checkAlive(t, h, "c1", "a")
}

func TestServerCloseWaitsForGoroutines(t *testing.T) {
	h := newHarness(t, harnessOpts{tls: true})
	var sessions []*ClientSession
	for i := range 5 {
		cs := h.dial(fmt.Sprintf("c%d", i), nil)
		lineService(t, cs, "a")
		sessions = append(sessions, cs)
	}
	// Busy streams during Close.
	for i := range 5 {
		c, err := h.srv.DialContext(context.Background(), fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "source 0\n")
	}
	start := time.Now()
	h.srv.Close()
	t.Logf("Close took %v", time.Since(start))
	if time.Since(start) > 3*time.Second {
		t.Fatalf("Close took %v", time.Since(start))
	}
	for _, cs := range sessions {
		waitDone(t, cs, 2*time.Second)
		if !errors.Is(cs.Err(), ErrDisconnected) {
			t.Fatalf("agent saw %v", cs.Err())
		}
	}
	if _, err := h.srv.DialContext(context.Background(), "c0"); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("dial after Close: %v", err)
	}
	// After Close no goroutine of the server (ServeHTTP, yamux, timers) is
	// left; the agents' own goroutines end with their sessions.
	for _, cs := range sessions {
		cs.Close()
	}
	h.hs.Close()
	if err := goleakVerify(); err != nil {
		t.Fatal(err)
	}
}
