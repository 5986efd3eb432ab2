package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eco-project/eco/tunnel/mux"
)

// Benchmarks behind docs/decisions/0002-tunnel-multiplexer.md. Hub and agent
// run in this one process on loopback, so CPU figures cover both ends.
//
//	go test ./tunnel/ -run '^$' -bench Tunnel -benchtime 2s

var benchWindows = []struct {
	name   string
	window uint32
}{
	{"window=256KiB(yamux-default)", mux.InitialWindow},
	{"window=4MiB(eco-default)", DefaultStreamWindow},
	{"window=16MiB", 16 << 20},
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchHarness(b *testing.B, tls bool, window uint32) *harness {
	h := newHarness(b, harnessOpts{tls: tls, server: func(c *ServerConfig) {
		c.Mux.StreamWindow = window
		c.Logger = nil
	}})
	return h
}

func benchDial(b *testing.B, h *harness, id string, window uint32) *ClientSession {
	return h.dial(id, func(c *ClientConfig) { c.Mux.StreamWindow = window; c.Logger = nil })
}

// BenchmarkTunnelBulk moves one stream of bulk data agent → hub (the
// direction of API responses).
func BenchmarkTunnelBulk(b *testing.B) {
	for _, tls := range []bool{false, true} {
		for _, w := range benchWindows {
			name := "ws/" + w.name
			if tls {
				name = "wss/" + w.name
			}
			b.Run(name, func(b *testing.B) {
				h := benchHarness(b, tls, w.window)
				lineService(b, benchDial(b, h, "c1", w.window), "a")
				c, err := h.srv.DialContext(context.Background(), "c1")
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				io.WriteString(c, "source 0\n")
				buf := make([]byte, 1<<20)
				io.ReadFull(c, buf) // warm up
				b.SetBytes(int64(len(buf)))
				b.ResetTimer()
				cpu0 := cpuTime()
				for range b.N {
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Fatal(err)
					}
				}
				cpu := cpuTime() - cpu0
				b.StopTimer()
				gib := float64(b.N) * float64(len(buf)) / (1 << 30)
				b.ReportMetric(cpu.Seconds()/gib, "cpu-s/GiB")
			})
		}
	}
}

func percentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	if len(d) == 0 {
		return
	}
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkTunnelRequest measures small HTTP request latency through the
// tunnel at concurrency 1 and 64.
func BenchmarkTunnelRequest(b *testing.B) {
	for _, conc := range []int{1, 64} {
		for _, w := range []uint32{mux.InitialWindow, DefaultStreamWindow} {
			b.Run(fmt.Sprintf("c=%d/window=%dKiB", conc, w>>10), func(b *testing.B) {
				h := benchHarness(b, true, w)
				serve(b, benchDial(b, h, "c1", w), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, `{"kind":"Status","status":"Success"}`)
				}))
				tr := h.transport("c1")
				tr.MaxIdleConnsPerHost = conc
				client := &http.Client{Transport: tr}
				get := func() error {
					resp, err := client.Get("http://c1/version")
					if err != nil {
						return err
					}
					io.Copy(io.Discard, resp.Body)
					return resp.Body.Close()
				}
				for range conc { // warm the connection pool
					get()
				}
				lat := make([]time.Duration, b.N)
				var wg sync.WaitGroup
				next := make(chan int, b.N)
				for i := range b.N {
					next <- i
				}
				close(next)
				b.ResetTimer()
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range next {
							t0 := time.Now()
							if err := get(); err != nil {
								b.Error(err)
								return
							}
							lat[i] = time.Since(t0)
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				percentiles(b, lat)
			})
		}
	}
}

// BenchmarkTunnelWatchLines measures how long a flushed watch line takes
// from the agent's handler to the hub's reader.
func BenchmarkTunnelWatchLines(b *testing.B) {
	h := benchHarness(b, true, 0)
	serve(b, benchDial(b, h, "c1", 0), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for range n {
			fmt.Fprintf(w, `{"type":"MODIFIED","object":{"kind":"Pod","sent":%d}}`+"\n", time.Now().UnixNano())
			w.(http.Flusher).Flush()
			time.Sleep(200 * time.Microsecond)
		}
	}))
	client := &http.Client{Transport: h.transport("c1")}
	b.ResetTimer()
	resp, err := client.Get(fmt.Sprintf("http://c1/api/v1/pods?watch=1&n=%d", b.N))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	lat := make([]time.Duration, 0, b.N)
	for range b.N {
		line, err := br.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		var sent int64
		fmt.Sscanf(line, `{"type":"MODIFIED","object":{"kind":"Pod","sent":%d}}`, &sent)
		lat = append(lat, time.Since(time.Unix(0, sent)))
	}
	b.StopTimer()
	percentiles(b, lat)
}

// BenchmarkTunnelIdleSessionMemory measures the hub's memory per idle
// session. The agents run in a child process (this test binary running
// TestHelperAgents) so only the hub's memory is counted here.
func BenchmarkTunnelIdleSessionMemory(b *testing.B) {
	const n = 200
	for _, tls := range []bool{false, true} {
		name := "ws"
		if tls {
			name = "wss"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				if os.Getenv("ECO_TUNNEL_HEAPPROFILE") != "" {
					runtime.MemProfileRate = 1
				}
				h := benchHarness(b, tls, 0)
				before := memInUse()
				var ms0 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAgents$", "-test.count=1")
				cmd.Env = append(os.Environ(),
					"ECO_TUNNEL_HELPER_URL="+h.url, "ECO_TUNNEL_HELPER_N="+strconv.Itoa(n))
				if tls {
					cmd.Env = append(cmd.Env, "ECO_TUNNEL_HELPER_INSECURE=1")
				}
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
					b.Fatalf("helper: %q %v", line, err)
				}
				time.Sleep(200 * time.Millisecond) // let handshakes settle
				if got := h.srv.Stats().Sessions; got != n {
					b.Fatalf("%d sessions, want %d", got, n)
				}
				after := memInUse()
				if path := os.Getenv("ECO_TUNNEL_HEAPPROFILE"); path != "" {
					f, _ := os.Create(path)
					pprof.WriteHeapProfile(f)
					f.Close()
				}
				var ms1 runtime.MemStats
				runtime.ReadMemStats(&ms1)
				b.ReportMetric(float64(after-before)/n, "hub-B/session")
				b.ReportMetric(float64(ms1.StackInuse-ms0.StackInuse)/n, "stack-B/session")
				b.ReportMetric(float64(runtime.NumGoroutine())/n, "goroutines/session")
				stdin.Close()
				cmd.Wait()
				h.srv.Close()
			}
		})
	}
}

// memInUse is heap in use plus goroutine stacks, after GC.
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// TestHelperAgents is not a test: BenchmarkTunnelIdleSessionMemory runs it
// in a child process to hold idle agent sessions.
func TestHelperAgents(t *testing.T) {
	url := os.Getenv("ECO_TUNNEL_HELPER_URL")
	if url == "" {
		t.Skip("helper process for BenchmarkTunnelIdleSessionMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("ECO_TUNNEL_HELPER_N"))
	var sessions []*ClientSession
	for i := range n {
		id := fmt.Sprintf("idle-%d", i)
		cfg := ClientConfig{URL: url, ClusterID: id, Token: tokenFor(id)}
		if os.Getenv("ECO_TUNNEL_HELPER_INSECURE") != "" {
			cfg.TLSConfig = insecureTLS()
		}
		cs, err := Dial(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, cs)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, cs := range sessions {
		cs.Close()
	}
}

// insecureTLS trusts any certificate; only for the loopback helper process,
// which cannot see the parent's test CA.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// BenchmarkTunnelConnect measures bringing one session up and down (HTTP
// upgrade, multiplexer, handshake, admission) with 16 agents dialling at
// once; CPU covers both ends. wss uses httptest's RSA-2048 certificate
// (what a hub given --tls-cert may have), wss-ecdsa the self-signed hub's
// kind, ECDSA P-256 from pki; each with a full TLS handshake per session
// (/full) or the session resumed from a shared ClientConfig.SessionCache
// (/resumed), as an agent's reconnect does.
func BenchmarkTunnelConnect(b *testing.B) {
	for _, tc := range []struct {
		name   string
		harn   func(b *testing.B) *harness
		resume bool
	}{
		{"ws", func(b *testing.B) *harness { return benchHarness(b, false, 0) }, false},
		{"wss/full", func(b *testing.B) *harness { return benchHarness(b, true, 0) }, false},
		{"wss/resumed", func(b *testing.B) *harness { return benchHarness(b, true, 0) }, true},
		{"wss-ecdsa/full", benchECDSAHarness, false},
		{"wss-ecdsa/resumed", benchECDSAHarness, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := tc.harn(b)
			var cache tls.ClientSessionCache
			if tc.resume {
				cache = tls.NewLRUClientSessionCache(1)
			}
			dial := func(id string, resume bool) bool {
				cfg := h.clientConfig(id)
				cfg.Logger = nil
				cfg.SessionCache = cache
				s, err := Dial(context.Background(), cfg)
				if err != nil {
					b.Error(err)
					return false
				}
				if st := s.TLS(); st != nil && st.DidResume != resume {
					b.Errorf("DidResume = %v, want %v", st.DidResume, resume)
				}
				s.Close()
				return true
			}
			if !dial("c0", false) { // fills the cache
				return
			}
			b.SetParallelism(8) // 16 dialers on 2 CPUs
			var n atomic.Int64
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !dial("c"+strconv.FormatInt(n.Add(1), 10), tc.resume) {
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

func benchECDSAHarness(b *testing.B) *harness {
	return newHarness(b, harnessOpts{ecdsa: true, server: func(c *ServerConfig) { c.Logger = nil }})
}
