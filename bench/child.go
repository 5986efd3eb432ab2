package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Roles a child process can play.
const (
	roleRevproxy     = "revproxy"
	roleEcoHub       = "eco-hub"
	roleEcoBareHub   = "eco-bare-hub"
	roleEcoAgent     = "eco-agent"
	roleRDHub        = "rd-hub"
	roleRDAgent      = "rd-agent"
	roleTunnelHub    = "tunnel-hub"
	roleTunnelAgents = "tunnel-agents"
	roleRDAgents     = "rd-agents"
)

// childFlags are the flags every role understands.
type childFlags struct {
	backend   string // backend base URL
	tls       bool   // serve / dial the tunnel over TLS
	cert, key string // PEM files for TLS serving
	ca        string // PEM file with the CA agents trust
	tunnelURL string
	addr      string // tunnel listen address (fixed for restarts)
	cluster   string
	token     string
	identity  string // the agent's identity token
	n, conc   int
	dir       string
}

// RunChild runs one child role until stdin closes or SIGTERM arrives.
func RunChild(args []string) error {
	if len(args) == 0 {
		return errors.New("child: role required")
	}
	role := args[0]
	var f childFlags
	fs := flag.NewFlagSet("child "+role, flag.ContinueOnError)
	fs.StringVar(&f.backend, "backend", "", "backend base URL")
	fs.BoolVar(&f.tls, "tls", false, "TLS tunnel")
	fs.StringVar(&f.cert, "cert", "", "TLS certificate PEM file")
	fs.StringVar(&f.key, "key", "", "TLS key PEM file")
	fs.StringVar(&f.ca, "ca", "", "CA PEM file")
	fs.StringVar(&f.tunnelURL, "tunnel", "", "tunnel URL")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:0", "tunnel listen address")
	fs.StringVar(&f.cluster, "cluster", "c1", "cluster ID")
	fs.StringVar(&f.token, "token", "", "agent credential")
	fs.StringVar(&f.identity, "identity-token", "", "agent identity token")
	fs.IntVar(&f.n, "n", 1, "number of agents")
	fs.IntVar(&f.conc, "c", 64, "agents dialing at once")
	fs.StringVar(&f.dir, "dir", "", "working directory")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The parent holds our stdin; when it goes away, so do we.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()

	if dir := os.Getenv("ECOBENCH_CPUPROFILE_DIR"); dir != "" {
		pf, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.prof", role, os.Getpid())))
		if err == nil && pprof.StartCPUProfile(pf) == nil {
			defer func() { pprof.StopCPUProfile(); pf.Close() }()
		}
		// And what the process allocated, for `go tool pprof -sample_index=alloc_space`.
		defer func() {
			if af, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.allocs", role, os.Getpid()))); err == nil {
				pprof.Lookup("allocs").WriteTo(af, 0)
				af.Close()
			}
		}()
	}
	// An execution trace, for `go tool trace -pprof=net|sync|sched`: where
	// goroutines wait, and how long they wait to run once woken.
	if dir := os.Getenv("ECOBENCH_TRACE_DIR"); dir != "" {
		tf, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.trace", role, os.Getpid())))
		if err == nil && trace.Start(tf) == nil {
			defer func() { trace.Stop(); tf.Close() }()
		}
	}
	switch role {
	case roleRevproxy:
		return runRevproxy(ctx, f)
	case roleEcoHub:
		return runEcoHub(ctx, f)
	case roleEcoBareHub:
		return runEcoBareHub(ctx, f)
	case roleEcoAgent:
		return runEcoAgent(ctx, f)
	case roleRDHub:
		return runRDHub(ctx, f)
	case roleRDAgent:
		return runRDAgents(ctx, f, true)
	case roleRDAgents:
		return runRDAgents(ctx, f, false)
	case roleTunnelHub:
		return runTunnelHub(ctx, f)
	case roleTunnelAgents:
		return runTunnelAgents(ctx, f)
	}
	return fmt.Errorf("child: unknown role %q", role)
}

func raiseFileLimit() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

// out serialises the child's stdout protocol: one line per event.
var outMu sync.Mutex

func say(format string, args ...any) {
	outMu.Lock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
	outMu.Unlock()
}

func ready(v any) {
	b, _ := json.Marshal(v)
	say("READY %s", b)
}

// readyInfo is what a child tells the parent once it serves.
type readyInfo struct {
	Entry     string `json:"entry,omitempty"`     // base URL clients request
	UserToken string `json:"userToken,omitempty"` // bearer token for Entry
	Tunnel    string `json:"tunnel,omitempty"`    // agents dial this
	Cluster   string `json:"cluster,omitempty"`
	Token     string `json:"token,omitempty"` // agent credential
	// IdentityToken is the agent's identity token, signed by a key the
	// hub pinned for the bench cluster.
	IdentityToken string `json:"identityToken,omitempty"`
	Stats         string `json:"stats,omitempty"` // GET for childStats
	ReadyAt       int64  `json:"readyAt"`         // unix ns
}

// childStats is served at /bench/stats by hub-side children.
type childStats struct {
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heapInuse"`
	StackInuse uint64 `json:"stackInuse"`
	GoSys      uint64 `json:"goSys"`
	RSS        uint64 `json:"rss"`
	Sessions   int    `json:"sessions"`
}

func statsHandler(sessions func() int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") != "" {
			runtime.GC()
			runtime.GC()
			writeProfiles()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := childStats{
			Goroutines: runtime.NumGoroutine(),
			HeapInuse:  ms.HeapInuse,
			StackInuse: ms.StackInuse,
			GoSys:      ms.Sys,
			RSS:        selfRSS(),
		}
		if sessions != nil {
			s.Sessions = sessions()
		}
		json.NewEncoder(w).Encode(s)
	}
}

// writeProfiles writes this process's heap profile and a goroutine dump
// into $ECOBENCH_PROFILE_DIR, if set, named by time: what a figure's
// memory is made of (go tool pprof -sample_index=inuse_space).
func writeProfiles() {
	dir := os.Getenv("ECOBENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	n := time.Now().UnixNano()
	for _, p := range []struct {
		name  string
		debug int
	}{{"heap", 0}, {"goroutine", 1}} {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d-%d.prof", p.name, os.Getpid(), n)))
		if err != nil {
			return
		}
		pprof.Lookup(p.name).WriteTo(f, p.debug)
		f.Close()
	}
}

// selfRSS reads VmRSS of this process in bytes.
func selfRSS() uint64 { return procRSS(os.Getpid()) }

// serve runs srv on ln until ctx ends.
func serve(ctx context.Context, wg *sync.WaitGroup, srv *http.Server, ln net.Listener) {
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	go func() { defer wg.Done(); <-ctx.Done(); srv.Close() }()
}

func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(context.Background(), "tcp", addr)
}

func tlsListener(ln net.Listener, f childFlags) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}), nil
}

func clientTLS(f childFlags) (*tls.Config, error) {
	if f.ca == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("no CA in " + f.ca)
	}
	return &tls.Config{RootCAs: pool}, nil
}

// proxyTransport is net/http's Transport as the hub's proxy had it before
// tunnel.Transport (4 KiB buffers, no compression), for revproxy's plain
// TCP hop.
func proxyTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return proxyTransportBuf(dial, 4<<10)
}

// proxyTransportBuf is proxyTransport with buf-byte bufio buffers.
func proxyTransportBuf(dial func(ctx context.Context, network, addr string) (net.Conn, error), buf int) *http.Transport {
	return &http.Transport{
		DialContext:           dial,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       buf,
		ReadBufferSize:        buf,
		DisableCompression:    true,
	}
}

// hubCopyBuffers are the response copy buffers of the hub's proxy
// (hub/proxy.go): pooled, 256 KiB for responses that end, so a download
// reaches the client in writes of up to 256 KiB rather than
// ReverseProxy's 32 KiB, and 16 KiB for watches, which hold theirs for
// as long as they last. revproxy and eco-bare use them too (hubProxy), so
// the floor stays a floor; remotedialer keeps Rancher's wiring.
type hubCopyBuffers struct {
	size int
	pool sync.Pool
}

func (b *hubCopyBuffers) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, b.size)
}

func (b *hubCopyBuffers) Put(buf []byte) {
	if cap(buf) == b.size {
		buf = buf[:b.size]
		b.pool.Put(&buf)
	}
}

// hubProxy serves rp with the hub's copy buffers: a watch (watch=true)
// through the small ones, everything else through the big ones.
func hubProxy(rp *httputil.ReverseProxy) http.Handler {
	rp.BufferPool = &hubCopyBuffers{size: 256 << 10}
	watch := *rp
	watch.BufferPool = &hubCopyBuffers{size: 16 << 10}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			watch.ServeHTTP(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// runRevproxy is one plain httputil.ReverseProxy hop: the floor for any
// proxy.
func runRevproxy(ctx context.Context, f childFlags) error {
	target, err := url.Parse(f.backend)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: proxyTransport((&net.Dialer{}).DialContext),
		// Flushing as hub/proxy.go does (FlushInterval 0: streaming
		// responses are flushed on every write anyway), so this stays
		// the floor.
		FlushInterval: 0,
	}
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", hubProxy(rp))
	mux.Handle("/bench/stats", statsHandler(nil))
	var wg sync.WaitGroup
	serve(ctx, &wg, &http.Server{Handler: mux, ErrorLog: quietLog()}, ln)
	base := "http://" + ln.Addr().String()
	ready(readyInfo{Entry: base, Stats: base + "/bench/stats", ReadyAt: time.Now().UnixNano()})
	wg.Wait()
	return nil
}

// quietLog drops net/http's server error log (broken pipes at the end of
// a measurement are expected).
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

func trimBearer(h string) string { return strings.TrimPrefix(h, "Bearer ") }
