package hub_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// lineWatch is a fake API server's watch: a line on every tick of lines,
// until lines is closed (the watch ends) or the hub goes away. Each
// request's end is reported on ended.
type lineWatch struct {
	lines chan string
	ended chan struct{}
}

func (lw *lineWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() { lw.ended <- struct{}{} }()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		select {
		case line, ok := <-lw.lines:
			if !ok {
				return
			}
			fmt.Fprintln(w, line)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// TestStreamingResponses: a watch through the proxy delivers every line
// as it comes and ends cleanly when the API server ends it, whether the
// client speaks HTTP/1.1 (its connection is handed to a pump once the
// head is written, and the response says Connection: close) or HTTP/2
// (the handler copies it). A client that leaves ends the request in the
// cluster and gives its watch back to the user's cap; a hub that closes
// ends the watch as failed, not complete.
func TestStreamingResponses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		http2      bool
		wantProto  int
		wantClosed bool // the response says Connection: close
	}{
		{"http/1.1", false, 1, true},
		{"http/2", true, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, envOpts{http2: tc.http2, hub: func(c *hub.Config) { c.Limits.WatchesPerUser = 1 }})
			c := e.createCluster("watched")
			lw := &lineWatch{lines: make(chan string), ended: make(chan struct{}, 4)}
			if _, err := e.agent(c.ID, e.credential(c.ID), "fp", lw); err != nil {
				t.Fatal(err)
			}
			e.waitState(c.ID, store.StateConnected)
			watch := func(ctx context.Context) (*http.Response, *bufio.Reader) {
				t.Helper()
				req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+hub.ProxyPrefix+c.ID+hub.ProxySuffix+"/api/v1/pods?watch=true", nil)
				req.Header.Set("Authorization", "Bearer "+e.admin)
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || resp.ProtoMajor != tc.wantProto {
					t.Fatalf("watch: %s over HTTP/%d, want 200 over HTTP/%d", resp.Status, resp.ProtoMajor, tc.wantProto)
				}
				return resp, bufio.NewReader(resp.Body)
			}

			// Lines arrive one by one, then the end is clean.
			resp, br := watch(t.Context())
			if resp.Close != tc.wantClosed {
				t.Errorf("Connection: close = %v, want %v", resp.Close, tc.wantClosed)
			}
			if tc.http2 {
				// The HTTP/2 handler waits for the watch at the top of
				// its stack, where its stack can shrink to 4 KiB, not
				// under the proxy's frames (decision 0022).
				waitFor(t, "the watch's handler waiting in streamTail.pump", func() bool {
					buf := make([]byte, 1<<20)
					dump := string(buf[:runtime.Stack(buf, true)])
					return strings.Contains(dump, "(*streamTail).pump") && !strings.Contains(dump, "(*kubeProxy).pumpStream")
				})
			}
			for i := range 3 {
				want := fmt.Sprintf(`{"type":"ADDED","n":%d,"pad":%q}`, i, strings.Repeat("x", i*20000))
				lw.lines <- want
				got, err := br.ReadString('\n')
				if err != nil || strings.TrimSpace(got) != want {
					t.Fatalf("line %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want)+1)
				}
			}
			close(lw.lines)
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("end of the watch: %q, %v; want a clean end", rest, err)
			}
			resp.Body.Close()
			<-lw.ended

			// A client that leaves: the cluster's request ends, and the
			// user's one watch is free again.
			lw.lines = make(chan string)
			ctx, cancel := context.WithCancel(t.Context())
			resp, _ = watch(ctx)
			cancel()
			resp.Body.Close()
			select {
			case <-lw.ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the request in the cluster did not end after the client left")
			}
			// openWatch opens a watch on cluster id, waiting (up to 5 s)
			// while the user's one watch is still taken.
			openWatch := func(id string) *http.Response {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					req, _ := http.NewRequest("GET", e.srv.URL+hub.ProxyPrefix+id+hub.ProxySuffix+"/api/v1/pods?watch=true", nil)
					req.Header.Set("Authorization", "Bearer "+e.admin)
					r, err := e.client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					if r.StatusCode == 200 {
						return r
					}
					r.Body.Close()
					if time.Now().After(deadline) {
						t.Fatalf("a watch on %s: %s, want 200 (the user's one watch given back)", id, r.Status)
					}
				}
			}
			inFlight := func(want string) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					got := e.metric("eco_hub_proxy_requests_in_flight")
					if got == "eco_hub_proxy_requests_in_flight "+want {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("requests in flight: %q, want %s", got, want)
					}
				}
			}
			inFlight("0")

			// A tunnel that ends mid-watch (another cluster's): the watch
			// fails rather than ends, and the proxy's books balance.
			c2 := e.createCluster("cut")
			sess, err := e.agent(c2.ID, e.credential(c2.ID), "fp2", &lineWatch{lines: make(chan string), ended: make(chan struct{}, 4)})
			if err != nil {
				t.Fatal(err)
			}
			e.waitState(c2.ID, store.StateConnected)
			cut := openWatch(c2.ID)
			inFlight("1")
			sess.Close()
			if _, err := io.ReadAll(cut.Body); err == nil {
				t.Fatal("a watch cut by its tunnel's end read as complete")
			}
			cut.Body.Close()
			inFlight("0")

			// The hub closes: the open watch fails rather than ends.
			again := openWatch(c.ID)
			e.hub.Close()
			if _, err := io.ReadAll(again.Body); err == nil {
				t.Fatal("a watch cut by the hub's Close read as complete")
			}
			again.Body.Close()
		})
	}
}
