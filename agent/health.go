package agent

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/tunnel"
)

// metrics are the agent's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg            *prometheus.Registry
	connected      prometheus.Gauge
	sessions       prometheus.Counter
	reconnects     prometheus.Counter
	dialErrors     *prometheus.CounterVec
	streams        prometheus.Counter
	requests       prometheus.Counter
	forwardErrors  *prometheus.CounterVec
	streamsRefused prometheus.Counter
	ready          prometheus.Gauge
	checks         *prometheus.CounterVec
	// credentialRotations counts credentials the hub rotated, by whether
	// the agent could store them (ok, error).
	credentialRotations *prometheus.CounterVec
}

func newMetrics(version string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eco_agent_tunnel_connected",
			Help: "1 while the tunnel to the hub is up, 0 otherwise.",
		}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_agent_tunnel_sessions_total",
			Help: "Tunnel sessions established with the hub.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_agent_tunnel_reconnects_total",
			Help: "Times the tunnel was lost and the agent started reconnecting.",
		}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_agent_tunnel_dial_errors_total",
			Help: "Failed attempts to connect to the hub, by reason: rejected (by the hub) or error (network, TLS, protocol).",
		}, []string{"reason"}),
		streams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_agent_streams_total",
			Help: "Tunnel streams the hub opened to the agent.",
		}),
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_agent_requests_total",
			Help: "Requests received through the tunnel for the API server.",
		}),
		streamsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_agent_streams_refused_total",
			Help: "Tunnel streams answered 429 because MaxStreams streams were open.",
		}),
		forwardErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_agent_forward_errors_total",
			Help: "Requests not forwarded, by reason: api_server (unreachable), no_impersonation or reserved_user (refused).",
		}, []string{"reason"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eco_agent_self_check_ready",
			Help: "1 when the last self-check passed (Ready), 0 when it failed (Failing).",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_agent_self_checks_total",
			Help: "Self-checks run, by resulting state.",
		}, []string{"state"}),
		credentialRotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_agent_credential_rotations_total",
			Help: "Credentials the hub rotated and sent over the tunnel, by result: ok (stored in the install Secret) or error.",
		}, []string{"result"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "eco_agent_build_info",
		Help: "Always 1; labelled with the agent's version.",
	}, []string{"version"})
	info.WithLabelValues(version).Set(1)
	// Zero-valued series exist from the start, so that rate() works.
	for _, r := range []string{"rejected", "error"} {
		m.dialErrors.WithLabelValues(r)
	}
	for _, r := range []string{"api_server", "no_impersonation", "reserved_user"} {
		m.forwardErrors.WithLabelValues(r)
	}
	for _, s := range []tunnel.State{tunnel.StateReady, tunnel.StateFailing} {
		m.checks.WithLabelValues(string(s))
	}
	m.reg.MustRegister(m.connected, m.sessions, m.reconnects, m.dialErrors, m.streams, m.streamsRefused,
		m.requests, m.forwardErrors, m.ready, m.checks, m.credentialRotations, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler returns the health server's handler: install.HealthzPath (the
// process is alive), install.ReadyzPath (200 only while the tunnel to the
// hub is up; the body says why not) and MetricsPath (Prometheus).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+install.HealthzPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+install.ReadyzPath, a.serveReadyz)
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

func (a *Agent) serveReadyz(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	s, why, st := a.session, a.notConnected, a.status
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not connected to the hub: %s\n", why)
	} else {
		fmt.Fprintf(w, "ok: connected to the hub (session %d)\n", s.SessionID())
	}
	switch {
	case st.State == "":
		fmt.Fprintln(w, "self-check: not run yet")
	case st.Reason != "":
		fmt.Fprintf(w, "self-check: %s: %s\n", st.State, st.Reason)
	default:
		fmt.Fprintf(w, "self-check: %s\n", st.State)
	}
}
