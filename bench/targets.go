package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Target names.
const (
	Direct   = "direct"
	Revproxy = "revproxy"
	Eco      = "eco"
	EcoTLS   = "eco-tls"
	// EcoBare is eco's tunnel and agent behind a minimal hub-like proxy
	// (no store lookups, no metrics): a diagnostic of the hub's share.
	EcoBare       = "eco-bare"
	Remotedialer  = "remotedialer"
	RemotedialTLS = "remotedialer-tls"
)

// AllTargets in table order.
var AllTargets = []string{Direct, Revproxy, Eco, EcoTLS, EcoBare, Remotedialer, RemotedialTLS}

// env is what every target is built from.
type env struct {
	backend string // http://127.0.0.1:PORT
	tlsArgs []string
	dir     string
}

// target is one running path from the client to the backend.
type target struct {
	name   string
	base   string      // prefix for backend paths
	header http.Header // sent with every request
	hub    *child      // nil for direct
	procs  []*child    // the tunnel's own processes (CPU figures)
	// self: CPU figures are this process's own (direct: the client and
	// the backend, one loopback TCP hop with both its ends), the floor
	// the proxies' figures are read against.
	self   bool
	client *http.Client
	tr     *http.Transport
}

func newClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{}).DialContext,
		MaxIdleConnsPerHost: 256,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     64 << 10,
	}
	if os.Getenv("ECOBENCH_H2C") != "" {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: tr}, tr
}

func startTarget(ctx context.Context, name string, e env) (*target, error) {
	t := &target{name: name, header: http.Header{}}
	t.client, t.tr = newClient()
	var tlsArgs []string
	if name == EcoTLS || name == RemotedialTLS {
		tlsArgs = e.tlsArgs
	}
	var err error
	switch name {
	case Direct:
		t.base = e.backend
		t.self = true
		t.header.Set("Authorization", "Bearer bench-sa")
		return t, nil
	case Revproxy:
		t.hub, err = startChild(ctx, roleRevproxy, "-backend", e.backend)
		if err != nil {
			return nil, err
		}
		t.base = t.hub.info.Entry
		t.header.Set("Authorization", "Bearer bench-sa")
		t.procs = []*child{t.hub}
		return t, nil
	case Eco, EcoTLS, EcoBare:
		role := roleEcoHub
		if name == EcoBare {
			role = roleEcoBareHub
		}
		t.hub, err = startChild(ctx, role, append([]string{"-backend", e.backend}, tlsArgs...)...)
		if err != nil {
			return nil, err
		}
		ag, err := startChild(ctx, roleEcoAgent, append([]string{"-backend", e.backend,
			"-tunnel", t.hub.info.Tunnel, "-cluster", t.hub.info.Cluster, "-token", t.hub.info.Token,
			"-identity-token", t.hub.info.IdentityToken}, tlsArgs...)...)
		if err != nil {
			t.hub.stop()
			return nil, err
		}
		t.procs = []*child{t.hub, ag}
	case Remotedialer, RemotedialTLS:
		t.hub, err = startChild(ctx, roleRDHub, append([]string{"-backend", e.backend}, tlsArgs...)...)
		if err != nil {
			return nil, err
		}
		ag, err := startChild(ctx, roleRDAgent, append([]string{"-tunnel", t.hub.info.Tunnel}, tlsArgs...)...)
		if err != nil {
			t.hub.stop()
			return nil, err
		}
		t.procs = []*child{t.hub, ag}
	default:
		return nil, fmt.Errorf("unknown target %q", name)
	}
	t.base = t.hub.info.Entry
	t.header.Set("Authorization", "Bearer "+t.hub.info.UserToken)
	// The agent reports READY when its session is up; the hub may take a
	// moment more to count it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err := t.hubStats(ctx, false)
		if err == nil && st.Sessions > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.close()
			return nil, fmt.Errorf("%s: agent not connected", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return t, nil
}

func (t *target) close() {
	t.tr.CloseIdleConnections()
	stopAll(t.procs...)
}

// hasCPU says whether the target has CPU figures: the tunnel's own
// processes, or this process for direct.
func (t *target) hasCPU() bool { return len(t.procs) > 0 || t.self }

// cpu is the CPU time used so far by the target's own processes (this
// process's for direct).
func (t *target) cpu() time.Duration {
	if t.self {
		return selfCPU()
	}
	var d time.Duration
	for _, c := range t.procs {
		d += procCPU(c.pid())
	}
	return d
}

func (t *target) hubStats(ctx context.Context, gc bool) (childStats, error) {
	if t.hub == nil {
		return childStats{}, errNoStats
	}
	return fetchStats(ctx, t.hub.info.Stats, gc)
}

func fetchStats(ctx context.Context, u string, gc bool) (childStats, error) {
	var st childStats
	if gc {
		u += "?gc=1"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func (t *target) request(ctx context.Context, path string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.base+path, nil)
	for k, v := range t.header {
		req.Header[k] = v
	}
	return req
}
