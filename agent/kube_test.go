package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"
	"k8s.io/client-go/rest"
)

// TestTransportCloseEndsItsConnections: when Run ends, no connection of
// the agent's own calls may outlive it. CloseIdleConnections alone leaves
// an HTTP/2 connection (and its read loop) that still counts a stream as
// active, which a call cancelled by the stop can leave behind for a
// moment; closing the transport closes every connection it dialled, and
// refuses new ones.
func TestTransportCloseEndsItsConnections(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a stream that stays active
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	k, err := newKubeTransport(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	get := func() (*http.Response, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		return k.h2.RoundTrip(req)
	}
	resp, err := get()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Fatalf("proto %s, want HTTP/2.0", resp.Proto)
	}

	k.close()
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		read <- err
	}()
	select {
	case err := <-read:
		if err == nil {
			t.Error("the active stream ended cleanly; want it cut with its connection")
		}
	case <-time.After(10 * time.Second):
		resp.Body.Close()
		<-read
		t.Error("the HTTP/2 connection outlived close")
	}
	if resp, err := get(); err == nil {
		resp.Body.Close()
		t.Error("a call after close got through; want the dial refused")
	}
	// The deferred goleak check fails the test if a goroutine of a
	// connection (the HTTP/2 read loop) is still there.
}
