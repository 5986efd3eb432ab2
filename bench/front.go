package bench

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/eco-project/eco/tunnel"
)

// Credentials every bench target uses.
const (
	benchAgentToken = "bench-agent"      // agents' credential
	benchUserToken  = "bench-user-token" // clients' bearer token at a front
)

// agentListener listens on f.addr for agents, with TLS when f.tls, and
// returns the WebSocket scheme they dial it with.
func agentListener(f childFlags) (net.Listener, string, error) {
	ln, err := listen(f.addr)
	if err != nil {
		return nil, "", err
	}
	if !f.tls {
		return ln, "ws", nil
	}
	if ln, err = tlsListener(ln, f); err != nil {
		return nil, "", err
	}
	return ln, "wss", nil
}

// benchTunnelServer is a bare tunnel.Server (no store) that admits any
// cluster ID presented with the bench agent credential.
func benchTunnelServer() (*tunnel.Server, error) {
	return tunnel.NewServer(tunnel.ServerConfig{
		Authenticate: func(r *http.Request) (string, error) {
			if trimBearer(r.Header.Get("Authorization")) != benchAgentToken {
				return "", errors.New("bad credential")
			}
			return r.Header.Get(tunnel.HeaderClusterID), nil
		},
	})
}

// front is a minimal hub front for the targets that are not the real hub:
// clients with the bench user token reach Proxy at /k8s/, agents reach
// Tunnel at TunnelPath, and /bench/stats reports Sessions.
type front struct {
	Proxy      http.Handler
	TunnelPath string
	Tunnel     http.Handler
	Sessions   func() int
	// Ready carries the target's own fields (Cluster, Token); serve fills
	// in the addresses.
	Ready readyInfo
}

// serve runs the front until ctx ends, printing READY once it listens.
func (fr front) serve(ctx context.Context, f childFlags) error {
	tln, scheme, err := agentListener(f)
	if err != nil {
		return err
	}
	eln, err := listen("127.0.0.1:0")
	if err != nil {
		tln.Close()
		return err
	}
	entry := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(trimBearer(r.Header.Get("Authorization"))), []byte(benchUserToken)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fr.Proxy.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("/k8s/", entry)
	mux.Handle("/bench/stats", statsHandler(fr.Sessions))
	tmux := http.NewServeMux()
	tmux.Handle(fr.TunnelPath, fr.Tunnel)
	var wg sync.WaitGroup
	defer wg.Wait()
	serve(ctx, &wg, &http.Server{Handler: mux, ErrorLog: quietLog()}, eln)
	serve(ctx, &wg, &http.Server{Handler: tmux, ErrorLog: quietLog()}, tln)
	base := "http://" + eln.Addr().String()
	info := fr.Ready
	info.Entry = base + "/k8s"
	info.UserToken = benchUserToken
	info.Tunnel = scheme + "://" + tln.Addr().String() + fr.TunnelPath
	info.Stats = base + "/bench/stats"
	info.ReadyAt = time.Now().UnixNano()
	ready(info)
	<-ctx.Done()
	return nil
}
