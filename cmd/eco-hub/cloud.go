package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/azure"
	"github.com/eco-project/eco/cloud/gcp"
	"github.com/eco-project/eco/store"
)

// cloudOptions are the flags of cloud import and health (docs/cloud.md).
type cloudOptions struct {
	enabled      string
	interval     time.Duration
	fastInterval time.Duration
	eksEndpoint  string
	stsEndpoint  string
	gkeEndpoint  string
}

func (o *cloudOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.enabled, "cloud-providers", "eks,aks,gke", `clouds whose accounts the hub takes, comma-separated (eks, aks, gke; "" for none)`)
	fs.DurationVar(&o.interval, "cloud-poll-interval", cloud.DefaultInterval, "how often the cloud health of imported clusters is polled (jittered ±20%)")
	fs.DurationVar(&o.fastInterval, "cloud-fast-poll-interval", cloud.DefaultFastInterval, "how often while a cluster is provisioning, updating or deleting")
	fs.StringVar(&o.eksEndpoint, "eks-endpoint", "", "EKS API endpoint URL, e.g. a VPC endpoint (default: AWS's for each region)")
	fs.StringVar(&o.stsEndpoint, "sts-endpoint", "", "STS endpoint URL (default: AWS's for each region)")
	fs.StringVar(&o.gkeEndpoint, "gke-endpoint", "", "GKE API endpoint host:port (default: container.googleapis.com:443)")
}

func (o *cloudOptions) providers() (map[store.Provider]cloud.Provider, error) {
	ps := map[store.Provider]cloud.Provider{}
	for _, name := range strings.Split(o.enabled, ",") {
		switch p := store.Provider(strings.TrimSpace(name)); p {
		case "":
		case store.ProviderEKS:
			ps[p] = aws.New(aws.Config{EKSEndpoint: o.eksEndpoint, STSEndpoint: o.stsEndpoint})
		case store.ProviderAKS:
			ps[p] = azure.New(azure.Config{})
		case store.ProviderGKE:
			ps[p] = gcp.New(gcp.Config{Endpoint: o.gkeEndpoint})
		default:
			return nil, fmt.Errorf("--cloud-providers: unknown provider %q (want eks, aks or gke)", name)
		}
	}
	return ps, nil
}
