package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/store"
)

// argocdOptions are the flags of Argo CD registration (docs/argocd.md):
// either a configuration file, or one instance described by flags.
type argocdOptions struct {
	config     string
	kubeconfig string
	inCluster  bool
	cluster    string
	namespace  string
	project    string
	url        string
	grant      string
	tokenTTL   time.Duration
	resync     time.Duration
}

func (o *argocdOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "argocd-config", "", "register every connected cluster into the Argo CD instances of this YAML file (docs/argocd.md); not with the other --argocd-* flags but --argocd-grant")
	fs.StringVar(&o.kubeconfig, "argocd-kubeconfig", "", "register every connected cluster into the Argo CD whose Kubernetes API this kubeconfig reaches")
	fs.BoolVar(&o.inCluster, "argocd-in-cluster", false, "register every connected cluster into the Argo CD of the cluster the hub runs in (its ServiceAccount)")
	fs.StringVar(&o.cluster, "argocd-cluster", "", "register every connected cluster into the Argo CD that runs in this managed cluster (ID or name), reached through its tunnel")
	fs.StringVar(&o.namespace, "argocd-namespace", argocd.DefaultNamespace, "Argo CD's namespace, with --argocd-kubeconfig, --argocd-in-cluster or --argocd-cluster")
	fs.StringVar(&o.project, "argocd-project", "", "AppProject to put in each cluster Secret (default: none, the field is left to users)")
	fs.StringVar(&o.url, "argocd-url", "", "Argo CD's UI URL, for links from the hub's UI")
	fs.StringVar(&o.grant, "argocd-grant", string(store.ClusterAdmin), "role Argo CD's identity (service:argocd) gets in each registered cluster: admin, edit or view")
	fs.DurationVar(&o.tokenTTL, "argocd-token-ttl", argocd.DefaultTokenTTL, "lifetime of each registration's hub token; it is replaced when a third is left")
	fs.DurationVar(&o.resync, "argocd-resync", argocd.DefaultResync, "how often every registration is checked, besides lifecycle events and Secret changes")
}

// start runs the registrar if an instance is configured (else it returns
// nil) and mounts its API; the returned function stops it.
func (o *argocdOptions) start(h *hub.Hub, registry prometheus.Registerer, caPEM []byte, logger *slog.Logger) (*argocd.Registrar, func(), error) {
	cfg := argocd.Config{Hub: h, CAPEM: caPEM, Grant: store.ClusterRole(o.grant), TokenTTL: o.tokenTTL, Resync: o.resync, Logger: logger, Registerer: registry}
	single := o.kubeconfig != "" || o.inCluster || o.cluster != ""
	switch {
	case o.config != "" && single:
		return nil, nil, fmt.Errorf("--argocd-config: not with --argocd-kubeconfig, --argocd-in-cluster or --argocd-cluster")
	case o.config != "":
		f, err := argocd.LoadFile(o.config)
		if err != nil {
			return nil, nil, fmt.Errorf("--argocd-config: %w", err)
		}
		cfg.Instances = f.Instances
		if f.Grant != "" {
			cfg.Grant = f.Grant
		}
		if f.TokenTTL != "" || f.Resync != "" {
			if cfg.TokenTTL, cfg.Resync, err = f.Durations(); err != nil {
				return nil, nil, err
			}
		}
	case single:
		cfg.Instances = []argocd.Instance{{
			Kubeconfig: o.kubeconfig, InCluster: o.inCluster, Cluster: o.cluster,
			Namespace: o.namespace, Project: o.project, URL: o.url,
		}}
	default:
		return nil, func() {}, nil
	}
	if o.tokenTTL < time.Minute {
		return nil, nil, fmt.Errorf("--argocd-token-ttl must be at least 1m, got %v", o.tokenTTL)
	}
	reg, err := argocd.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	h.Mount(argocd.APIPath, reg.Handler(h))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned: the returned function stops and waits
		defer close(done)
		if err := reg.Run(ctx); err != nil {
			logger.Error("Argo CD registration stopped", "err", err)
		}
	}()
	logger.Info("registering clusters into Argo CD", "instances", len(cfg.Instances), "grant", cfg.Grant)
	return reg, func() { cancel(); <-done }, nil
}
