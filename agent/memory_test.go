package agent_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/eco-project/eco/agent"
)

// TestForwarderMemoryPerWatch measures what an open watch costs the agent:
// the Go heap and stacks of a Forwarder serving n quiet watches on a real
// API server, less the same before they opened (each watch's client end,
// a TCP connection and a 4 KiB reader in this process, included). The
// agent's default MaxStreams times this must fit its 256Mi memory limit
// with room for the rest (decision 0010).
func TestForwarderMemoryPerWatch(t *testing.T) {
	needCluster(t)
	f, err := agent.NewForwarder(mainCluster.RESTConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	open := func(n int) {
		for range n {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, "GET /api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=false HTTP/1.1\r\n"+
				"Host: cluster\r\nImpersonate-User: alice\r\nImpersonate-Group: system:masters\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("watch: %d", resp.StatusCode)
			}
			c.SetDeadline(time.Time{})
		}
	}
	// The first watches pay for pools and the API server transport; the
	// slope between 100 and 500 open watches is the cost of one.
	const first, more = 100, 400
	open(first)
	time.Sleep(500 * time.Millisecond)
	before := heap()
	open(more)
	time.Sleep(500 * time.Millisecond)
	after := heap()
	per := (int64(after) - int64(before)) / more
	t.Logf("agent heap+stack per open watch: %.1f KiB (slope over %d watches); %d × that = %d MiB",
		float64(per)/1024, more, agent.DefaultMaxStreams, int64(agent.DefaultMaxStreams)*per>>20)
	if limit := int64(128 << 10); per > limit {
		t.Errorf("an open watch costs the agent %d KiB, want ≤ %d KiB so that DefaultMaxStreams fits its 256Mi", per>>10, limit>>10)
	}
}
