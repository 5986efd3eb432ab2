package hub

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// metrics are the hub's Prometheus metrics, on the Hub's own registry.
type metrics struct {
	proxyDuration     *prometheus.HistogramVec
	proxyInFlight     prometheus.Gauge
	agentAuthFailures *prometheus.CounterVec
	transitions       *prometheus.CounterVec
	apiRequests       *prometheus.CounterVec
	proxyRefused      *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		proxyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eco_hub_proxy_request_duration_seconds",
			Help:    "Kubernetes API requests proxied through tunnels, by cluster, verb and HTTP code; long-running requests (watch, exec, logs -f) included. Only imported clusters' IDs are labels (others are \"unknown\"), and verbs come from a fixed set (\"other\" for any other method).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"cluster", "verb", "code"}),
		proxyInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eco_hub_proxy_requests_in_flight",
			Help: "Kubernetes API requests being proxied now.",
		}),
		agentAuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_agent_refusals_total",
			Help: "Agents refused, by reason (missing, unknown, wrong-cluster, rotated, identity).",
		}, []string{"reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_status_transitions_total",
			Help: "Operator status transitions recorded, by new state.",
		}, []string{"state"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_api_requests_total",
			Help: "Hub API requests, by route and HTTP code.",
		}, []string{"route", "code"}),
		proxyRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_proxy_refused_total",
			Help: "Proxied requests refused with 429 over a cap, by cap (user-streams, cluster-streams, user-watches, cluster-watches).",
		}, []string{"cap"}),
	}
	for _, c := range []prometheus.Collector{
		m.proxyDuration, m.proxyInFlight, m.agentAuthFailures, m.transitions, m.apiRequests, m.proxyRefused,
		// Besides the usual memstats, the heap the last collection found
		// live (go_gc_heap_live_bytes): what the hub holds per cluster
		// and per watch, without the garbage made since.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}

// registerTunnelStats exports the tunnel server's counters and those of
// the proxy's transport.
func (m *metrics) registerTunnelStats(reg *prometheus.Registry, s *tunnel.Server, tr *tunnel.Transport) {
	counter := func(name, help string, f func(tunnel.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(s.Stats())) })
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eco_hub_tunnels", Help: "Live agent tunnels."},
			func() float64 { return float64(s.Stats().Sessions) }),
		counter("eco_hub_tunnel_sessions_total", "Agent sessions admitted.", func(st tunnel.Stats) uint64 { return st.SessionsTotal }),
		counter("eco_hub_tunnel_streams_opened_total", "Streams opened to agents.", func(st tunnel.Stats) uint64 { return st.StreamsOpened }),
		counter("eco_hub_tunnel_dial_errors_total", "Failed stream opens, no tunnel included.", func(st tunnel.Stats) uint64 { return st.DialErrors }),
		counter("eco_hub_tunnel_heartbeat_timeouts_total", "Tunnels closed as dead.", func(st tunnel.Stats) uint64 { return st.HeartbeatTimeout }),
		counter("eco_hub_tunnel_received_bytes_total", "Bytes received from agents.", func(st tunnel.Stats) uint64 { return st.BytesIn }),
		counter("eco_hub_tunnel_sent_bytes_total", "Bytes sent to agents.", func(st tunnel.Stats) uint64 { return st.BytesOut }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eco_hub_proxy_idle_streams", Help: "Tunnel streams idle in the proxy's pool, kept for reuse."},
			func() float64 { return float64(tr.Stats().Idle) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "eco_hub_proxy_streams_reused_total", Help: "Proxied requests sent on a pooled tunnel stream."},
			func() float64 { return float64(tr.Stats().Reused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "eco_hub_proxy_stale_retries_total", Help: "Proxied requests sent again because their pooled stream had been closed by the agent."},
			func() float64 { return float64(tr.Stats().Retried) }),
	)
}

// clustersByState is a collector that counts clusters per operator state
// at scrape time.
type clustersByState struct {
	store store.Store
	desc  *prometheus.Desc
}

func newClustersByState(s store.Store) *clustersByState {
	return &clustersByState{store: s, desc: prometheus.NewDesc("eco_hub_clusters", "Imported clusters by operator state.", []string{"state"}, nil)}
}

func (c *clustersByState) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *clustersByState) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, st := range store.States() {
		page, err := c.store.ListClusters(ctx, store.ListOptions{State: st, Limit: 1})
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(page.Total), string(st))
	}
}
