package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
	"github.com/sirupsen/logrus"
)

// runRDHub is rancher/remotedialer's server wired the way Rancher wires it:
// the tunnel endpoint is remotedialer.Server (an http.Handler), and the
// cluster proxy is an httputil.ReverseProxy whose transport dials through
// Server.Dialer(clusterKey). As in Rancher, the hub side does the HTTP work:
// it authenticates the user, sets the cluster credential and impersonation
// headers; the agent only pipes bytes to the address it is asked to dial.
func runRDHub(ctx context.Context, f childFlags) error {
	logrus.SetLevel(logrus.WarnLevel)
	backend, err := url.Parse(f.backend)
	if err != nil {
		return err
	}
	srv := remotedialer.New(func(r *http.Request) (string, bool, error) {
		if trimBearer(r.Header.Get("Authorization")) != benchAgentToken {
			return "", false, nil
		}
		return r.Header.Get("X-Tunnel-ID"), true, nil
	}, remotedialer.DefaultErrorWriter)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backend)
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/k8s")
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Set("Authorization", "Bearer bench-sa")
			pr.Out.Header.Set("Impersonate-User", "admin")
			pr.Out.Header.Add("Impersonate-Group", "eco:admins")
		},
		// 64 KiB transport buffers, as the hub had until it went back to
		// net/http's 4 KiB: remotedialer does better with them (with
		// 4 KiB, 20–25 % more CPU per small GET, slower downloads), and
		// the baseline should be its best.
		Transport: proxyTransportBuf(srv.Dialer(f.cluster), 64<<10),
		// Rancher proxies through apimachinery's UpgradeAwareHandler
		// (FlushInterval 200 ms): a response of known length leaves in
		// one write at its end, as with 0 here; streaming ones are
		// flushed on every write either way.
		FlushInterval: 0,
		ErrorLog:      quietLog(),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "remotedialer: "+err.Error(), http.StatusBadGateway)
		},
	}
	return front{
		Proxy:      rp,
		TunnelPath: "/connect",
		Tunnel:     srv,
		Sessions:   func() int { return len(srv.ListClients()) },
	}.serve(ctx, f)
}

// runRDAgents runs f.n remotedialer clients the way Rancher's agent does: a
// loop around remotedialer.ClientConnect (which itself sleeps 5 s after a
// failure) with an authorizer that allows the dials. One agent (single)
// prints READY when connected; many print UP/ALLUP like tunnel-agents.
func runRDAgents(ctx context.Context, f childFlags, single bool) error {
	logrus.SetLevel(logrus.ErrorLevel)
	tlsCfg, err := clientTLS(f)
	if err != nil {
		return err
	}
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: tlsCfg}
	allow := func(proto, address string) bool { return true }
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, max(f.conc, 1))
	var firstWG sync.WaitGroup
	start := time.Now()
	if !single {
		ready(readyInfo{ReadyAt: start.UnixNano()}) // started; ALLUP follows
	}
	for i := range f.n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		firstWG.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hdr := http.Header{}
			hdr.Set("Authorization", "Bearer "+benchAgentToken)
			key := f.cluster
			if !single {
				key = "c" + itoa(i)
			}
			hdr.Set("X-Tunnel-ID", key)
			var once sync.Once
			firstDone := func() { once.Do(func() { <-sem; firstWG.Done() }) }
			defer firstDone()
			onConnect := func(context.Context, *remotedialer.Session) error {
				if single {
					once.Do(func() { <-sem; firstWG.Done(); ready(readyInfo{ReadyAt: time.Now().UnixNano()}) })
				} else {
					say("UP %d %d", i, time.Now().UnixNano())
					firstDone()
				}
				return nil
			}
			for ctx.Err() == nil {
				err := remotedialer.ClientConnect(ctx, f.tunnelURL, hdr, dialer, allow, onConnect)
				if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
					continue
				}
			}
		}()
	}
	firstWG.Wait()
	if !single {
		say("ALLUP %d", time.Since(start).Nanoseconds())
	}
	<-ctx.Done()
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
