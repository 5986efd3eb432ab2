package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
	"github.com/eco-project/eco/tunnel"
)

// benchFingerprint stands in for the kube-system UID the real agent sends.
const benchFingerprint = "00000000-0000-0000-0000-0000000bench"

// runEcoHub runs the real hub (hub.New on a SQLite store): the client entry
// is /clusters/ID/k8s on a plaintext listener, agents dial the tunnel on a
// second listener, ws or wss. Every proxied request pays what the product
// pays: API token lookup, cluster lookup, impersonation, metrics.
func runEcoHub(ctx context.Context, f childFlags) error {
	if os.Getenv("ECOBENCH_PROFILE_DIR") != "" {
		runtime.MemProfileRate = 4096 // profiles fine enough to split a watch's KiB
	}
	dir := f.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ecobench-hub-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "hub.db"), store.Config{})
	if err != nil {
		return err
	}
	defer st.Close()

	tln, scheme, err := agentListener(f)
	if err != nil {
		return err
	}
	var caPEM []byte
	if f.tls {
		if caPEM, err = os.ReadFile(f.ca); err != nil {
			return err
		}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	external := strings.Replace(scheme, "ws", "http", 1) + "://" + tln.Addr().String()
	h, err := hub.New(hub.Config{
		Store:                 st,
		ExternalURL:           external,
		CAPEM:                 caPEM,
		SecretKey:             secret,
		AllowInsecureAgentURL: !f.tls,
		// The caps still count every request, so their cost is in the
		// figures, but refuse none: one user opens 1,000 watches here.
		Limits: hub.Limits{StreamsPerUser: -1, StreamsPerCluster: -1, WatchesPerUser: -1, WatchesPerCluster: -1},
	})
	if err != nil {
		return err
	}
	defer h.Close()
	userToken, err := h.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	c, err := h.ImportCluster(ctx, hub.ImportRequest{Name: "bench", Provider: store.Provider("generic")})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	yml, err := h.InstallYAML(c.ID)
	if err != nil {
		return err
	}
	agentToken, err := tokenFromInstallYAML(yml)
	if err != nil {
		return err
	}
	identityToken, err := pinBenchIdentity(ctx, st, c.ID, external)
	if err != nil {
		return err
	}

	eln, err := listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("/bench/stats", statsHandler(func() int { return len(h.Tunnels().Sessions()) }))
	var wg sync.WaitGroup
	defer wg.Wait()
	entry := &http.Server{Handler: mux, ErrorLog: quietLog(), Protocols: new(http.Protocols)}
	entry.Protocols.SetHTTP1(true)
	entry.Protocols.SetUnencryptedHTTP2(true)
	entry.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 2000}
	serve(ctx, &wg, entry, eln)
	serve(ctx, &wg, &http.Server{Handler: h, ErrorLog: quietLog()}, tln)
	base := "http://" + eln.Addr().String()
	ready(readyInfo{
		Entry:         base + hub.ProxyPrefix + c.ID + hub.ProxySuffix,
		UserToken:     userToken,
		Tunnel:        scheme + "://" + tln.Addr().String() + hub.TunnelPath,
		Cluster:       c.ID,
		Token:         agentToken,
		Stats:         base + "/bench/stats",
		IdentityToken: identityToken,
		ReadyAt:       time.Now().UnixNano(),
	})
	<-ctx.Done()
	return nil
}

// pinBenchIdentity stands in for a cluster's service-account issuer: it
// pins a fresh key for cluster id in st, as a first connect would, and
// returns an identity token for the agent signed with it, valid for a day.
func pinBenchIdentity(ctx context.Context, st store.Store, id, hubURL string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	const iss = "https://bench.invalid"
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		return "", err
	}
	if err := st.PinIdentity(ctx, id, iss, jwks, false); err != nil {
		return "", err
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "bench"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := map[string]any{
		"iss": iss, "aud": []string{hubURL}, "sub": "system:serviceaccount:" + install.DefaultNamespace + ":" + install.AgentName,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(23 * time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": install.DefaultNamespace, "serviceaccount": map[string]any{"name": install.AgentName}},
	}
	return jwt.Signed(sg).Claims(claims).Serialize()
}

// tokenFromInstallYAML finds the agent credential in the install YAML's
// Secret.
func tokenFromInstallYAML(y []byte) (string, error) {
	for _, doc := range strings.Split(string(y), "\n---") {
		var obj struct {
			Kind       string            `json:"kind"`
			Data       map[string]string `json:"data"`
			StringData map[string]string `json:"stringData"`
		}
		if yaml.Unmarshal([]byte(doc), &obj) != nil || obj.Kind != "Secret" {
			continue
		}
		if t := obj.StringData["token"]; t != "" {
			return t, nil
		}
		if t := obj.Data["token"]; t != "" {
			b, err := base64.StdEncoding.DecodeString(t)
			return string(b), err
		}
	}
	return "", errors.New("no agent token in the install YAML")
}

// runEcoAgent runs the agent side: tunnel.Dial with the agent's reconnect
// loop, serving the session with the real agent.Forwarder (impersonation
// check, the agent's own credentials, pass-through to the "API server",
// here the backend).
func runEcoAgent(ctx context.Context, f childFlags) error {
	fw, err := agent.NewForwarder(&rest.Config{Host: f.backend, BearerToken: "bench-sa"}, nil)
	if err != nil {
		return err
	}
	tlsCfg, err := clientTLS(f)
	if err != nil {
		return err
	}
	cfg := tunnel.ClientConfig{
		URL: f.tunnelURL, ClusterID: f.cluster, Token: f.token, TLSConfig: tlsCfg,
		Hello: tunnel.Hello{AgentVersion: "bench", KubernetesVersion: "v0.0.0", Fingerprint: benchFingerprint,
			IdentityToken: f.identity},
		Proxy: noProxy,
	}
	first := true
	return agentLoop(ctx, cfg, fw.Serve, func(*tunnel.ClientSession) {
		if first {
			first = false
			ready(readyInfo{ReadyAt: time.Now().UnixNano()})
		}
	})
}

func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// agentLoop is agent/connect.go's loop without Kubernetes: dial, serve the
// session until it ends, back off, repeat. serve must return once its
// context ends.
func agentLoop(ctx context.Context, cfg tunnel.ClientConfig, serve func(context.Context, net.Listener) error, up func(*tunnel.ClientSession)) error {
	var b tunnel.Backoff
	for {
		s, err := tunnel.Dial(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if b.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		b.Reset()
		up(s)
		sctx, stop := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() { defer close(served); serve(sctx, s) }()
		select {
		case <-ctx.Done():
		case <-s.Done():
		}
		s.Close()
		stop()
		<-served
		if ctx.Err() != nil {
			return nil
		}
		if b.Wait(ctx) != nil {
			return nil
		}
	}
}

// serveHTTP serves h with net/http on a session until ctx ends or the
// session does.
func serveHTTP(h http.Handler) func(context.Context, net.Listener) error {
	return func(ctx context.Context, ln net.Listener) error {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute, ErrorLog: quietLog()}
		stop := context.AfterFunc(ctx, func() { srv.Close() })
		defer stop()
		err := srv.Serve(ln)
		srv.Close()
		return err
	}
}

// runTunnelHub is the bare tunnel.Server (no store, no proxy) for the idle
// memory and reconnect figures.
func runTunnelHub(ctx context.Context, f childFlags) error {
	srv, err := benchTunnelServer()
	if err != nil {
		return err
	}
	defer srv.Close()
	tln, scheme, err := agentListener(f)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(tunnel.DefaultPath, srv)
	mux.Handle("/bench/stats", statsHandler(func() int { return srv.Stats().Sessions }))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	sln, err := listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	serve(ctx, &wg, &http.Server{Handler: mux, ErrorLog: quietLog()}, tln)
	serve(ctx, &wg, &http.Server{Handler: mux, ErrorLog: quietLog()}, sln)
	ready(readyInfo{
		Tunnel:  scheme + "://" + tln.Addr().String() + tunnel.DefaultPath,
		Stats:   "http://" + sln.Addr().String() + "/bench/stats",
		ReadyAt: time.Now().UnixNano(),
	})
	<-ctx.Done()
	return nil
}

// runTunnelAgents runs f.n agents against a tunnel-hub, f.conc dialing at
// once for the first connect. It prints "UP i UNIXNANO" whenever agent i
// (re)connects and "ALLUP NANOS" once all are up the first time.
func runTunnelAgents(ctx context.Context, f childFlags) error {
	tlsCfg, err := clientTLS(f)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, max(f.conc, 1))
	var firstWG sync.WaitGroup
	start := time.Now()
	ready(readyInfo{ReadyAt: start.UnixNano()}) // started; ALLUP follows
	for i := range f.n {
		cfg := tunnel.ClientConfig{
			URL: f.tunnelURL, ClusterID: fmt.Sprintf("c%d", i), Token: benchAgentToken, TLSConfig: tlsCfg,
			Proxy: noProxy,
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		firstWG.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			agentLoop(ctx, cfg, serveHTTP(http.NotFoundHandler()), func(*tunnel.ClientSession) {
				say("UP %d %d", i, time.Now().UnixNano())
				if first {
					first = false
					<-sem
					firstWG.Done()
				}
			})
			if first {
				<-sem
				firstWG.Done()
			}
		}()
	}
	firstWG.Wait()
	say("ALLUP %d", time.Since(start).Nanoseconds())
	<-ctx.Done()
	return nil
}

// runEcoBareHub is a diagnostic target: the eco tunnel and a hub-like
// proxy (the hub's tunnel.Transport as hub/proxy.go sets it up, impersonation headers, a
// constant user token) without the hub's per-request store lookups, API
// token and cluster, and metrics. The difference to "eco" is what the
// hub's own per-request work costs.
func runEcoBareHub(ctx context.Context, f childFlags) error {
	srv, err := benchTunnelServer()
	if err != nil {
		return err
	}
	defer srv.Close()
	tr, err := tunnel.NewTransport(tunnel.TransportConfig{Dial: srv.DialAddr, MaxIdlePerHost: 256, IdleTimeout: 60 * time.Second})
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = &url.URL{Scheme: "http", Host: f.cluster,
				Path: strings.TrimPrefix(pr.In.URL.Path, "/k8s"), RawQuery: pr.In.URL.RawQuery}
			pr.Out.Host = f.cluster
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("Impersonate-User", "admin")
			pr.Out.Header.Add("Impersonate-Group", "eco:admins")
		},
		Transport: tunnel.RetryRefused(tr),
		// Flushing as hub/proxy.go does, and its copy buffers (hubProxy).
		FlushInterval: 0,
		ErrorLog:      quietLog(),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "eco-bare: "+err.Error(), http.StatusBadGateway)
		},
	}
	return front{
		Proxy:      hubProxy(rp),
		TunnelPath: tunnel.DefaultPath,
		Tunnel:     srv,
		Sessions:   func() int { return srv.Stats().Sessions },
		Ready:      readyInfo{Cluster: f.cluster, Token: benchAgentToken},
	}.serve(ctx, f)
}
