package argocd

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registrar's Prometheus metrics.
type metrics struct {
	reconciles *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	registered *prometheus.GaugeVec
	rotations  *prometheus.CounterVec
	instanceUp *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_argocd_reconciles_total",
			Help: "Argo CD registration reconciles, by instance and result (ok, error).",
		}, []string{"instance", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eco_argocd_reconcile_duration_seconds",
			Help:    "Time to reconcile one cluster's Argo CD registration.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"instance"}),
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eco_argocd_registered_clusters",
			Help: "Clusters whose Argo CD cluster Secret is in place, by instance.",
		}, []string{"instance"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_argocd_token_rotations_total",
			Help: "Argo CD tokens replaced before they expired, by instance.",
		}, []string{"instance"}),
		instanceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eco_argocd_instance_up",
			Help: "1 if the last resync reached the Argo CD instance's Kubernetes API, else 0.",
		}, []string{"instance"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.duration, m.registered, m.rotations, m.instanceUp} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
