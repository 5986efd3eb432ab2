package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// idleSystems are the tunnels measured idle and across hub restarts: the
// bare eco tunnel server (ws, wss) and remotedialer's server.
var idleSystems = []string{Eco, EcoTLS, Remotedialer}

func hubRole(system string) (hub, agents string) {
	if system == Remotedialer || system == RemotedialTLS {
		return roleRDHub, roleRDAgents
	}
	return roleTunnelHub, roleTunnelAgents
}

// idleResult is one idle-tunnels measurement.
type idleResult struct {
	System    string  `json:"system"`
	Tunnels   int     `json:"tunnels"`
	BringUpMS float64 `json:"bringUpMs"`
	// HubCPUPer is the hub process's CPU per tunnel brought up, in µs:
	// what a hub pays when its agents (re)connect, without the agents'
	// share, which this bench runs in one process beside it. 0 (shown
	// "–") below 100 tunnels, where the 10 ms clock tick of
	// /proc/PID/stat is coarser than the figure.
	HubCPUPer   float64 `json:"hubCpuUsPerTunnel"`
	RSSPer      float64 `json:"rssKiBPerTunnel"`
	HeapPer     float64 `json:"heapStackKiBPerTunnel"`
	GoroutinesP float64 `json:"goroutinesPerTunnel"`
}

// idleTunnels brings n agents up against a fresh hub process and reports
// the hub's memory and goroutines per tunnel once they idle.
func idleTunnels(ctx context.Context, e env, system string, n int) (idleResult, error) {
	r := idleResult{System: system, Tunnels: n}
	hubR, agentsR := hubRole(system)
	var tlsArgs []string
	if system == EcoTLS || system == RemotedialTLS {
		tlsArgs = e.tlsArgs
	}
	hub, err := startChild(ctx, hubR, append([]string{"-backend", e.backend}, tlsArgs...)...)
	if err != nil {
		return r, err
	}
	defer hub.stop()
	base, err := fetchStats(ctx, hub.info.Stats, true)
	if err != nil {
		return r, err
	}
	baseRSS := procRSS(hub.pid())
	cpu0 := procCPU(hub.pid())
	ag, err := startChild(ctx, agentsR, append([]string{"-tunnel", hub.info.Tunnel, "-n", strconv.Itoa(n), "-c", "64"}, tlsArgs...)...)
	if err != nil {
		return r, err
	}
	defer ag.stop()
	v, err := ag.waitLine(ctx, "ALLUP ", 120*time.Second)
	if err != nil {
		return r, err
	}
	ns, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	r.BringUpMS = float64(ns) / 1e6
	// Wait until the hub counts them all, then let them idle.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := fetchStats(ctx, hub.info.Stats, false)
		if err == nil && st.Sessions >= n {
			if n >= 100 {
				r.HubCPUPer = float64((procCPU(hub.pid()) - cpu0).Microseconds()) / float64(n)
			}
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s: hub counts %d of %d sessions", system, st.Sessions, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	st, err := fetchStats(ctx, hub.info.Stats, true)
	if err != nil {
		return r, err
	}
	rss := procRSS(hub.pid())
	r.RSSPer = (float64(rss) - float64(baseRSS)) / 1024 / float64(n)
	r.HeapPer = (float64(st.HeapInuse+st.StackInuse) - float64(base.HeapInuse+base.StackInuse)) / 1024 / float64(n)
	r.GoroutinesP = float64(st.Goroutines-base.Goroutines) / float64(n)
	return r, nil
}

// reconnectResult is one hub-restart measurement.
type reconnectResult struct {
	System string `json:"system"`
	Agents int    `json:"agents"`
	// FromRestartMS[i] is when agent i was back, after the new hub
	// process was ready; FromKillMS after the old one was killed.
	FromRestartMS []float64 `json:"fromRestartMs"`
	FromKillMS    []float64 `json:"fromKillMs"`
	HubDownMS     float64   `json:"hubDownMs"` // kill → new hub ready
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// reconnect connects n agents, kills the hub (SIGKILL) restarts times,
// starting a new hub on the same address at once, and records when each
// agent is back.
func reconnect(ctx context.Context, e env, system string, n, restarts int) ([]reconnectResult, error) {
	hubR, agentsR := hubRole(system)
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	hubArgs := []string{"-backend", e.backend, "-addr", addr}
	hub, err := startChild(ctx, hubR, hubArgs...)
	if err != nil {
		return nil, err
	}
	defer func() { hub.stop() }()
	ag, err := startChild(ctx, agentsR, "-tunnel", hub.info.Tunnel, "-n", strconv.Itoa(n), "-c", "64")
	if err != nil {
		return nil, err
	}
	defer ag.stop()
	if _, err := ag.waitLine(ctx, "ALLUP ", 60*time.Second); err != nil {
		return nil, err
	}
	var out []reconnectResult
	for range restarts {
		time.Sleep(200 * time.Millisecond)
		// Drain UP lines of earlier connects.
		for len(ag.lines) > 0 {
			<-ag.lines
		}
		killed := time.Now()
		hub.kill()
		hub, err = startChild(ctx, hubR, hubArgs...)
		if err != nil {
			return out, err
		}
		readyAt := time.Unix(0, hub.info.ReadyAt)
		res := reconnectResult{System: system, Agents: n, HubDownMS: ms(readyAt.Sub(killed))}
		back := map[int]bool{}
		deadline := time.Now().Add(20 * time.Second)
		for len(back) < n {
			v, err := ag.waitLine(ctx, "UP ", time.Until(deadline))
			if err != nil {
				return out, fmt.Errorf("%s: %d of %d agents back: %w", system, len(back), n, err)
			}
			var i int
			var ts int64
			fmt.Sscanf(v, "%d %d", &i, &ts)
			at := time.Unix(0, ts)
			if at.Before(killed) || back[i] {
				continue
			}
			back[i] = true
			res.FromRestartMS = append(res.FromRestartMS, ms(at.Sub(readyAt)))
			res.FromKillMS = append(res.FromKillMS, ms(at.Sub(killed)))
		}
		out = append(out, res)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
