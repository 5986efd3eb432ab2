// Package argocd makes every cluster eco manages an Argo CD destination
// with nothing to configure: when a cluster first connects, the hub writes
// an Argo CD cluster Secret (argocd.argoproj.io/secret-type: cluster) into
// each configured Argo CD instance, whose server is the hub's proxy URL for
// the cluster and whose bearer token is a hub API token of the service
// identity service:argocd, scoped to that one cluster, with the hub's CA.
// Argo CD then acts in the cluster through the hub and its tunnel, as
// Kubernetes user eco:service:argocd, and the audit log names it.
//
// A [Registrar] keeps the Secrets true: it reconciles on the hub's
// lifecycle events, on changes to the Secrets themselves (one edited or
// deleted by hand comes back) and on a periodic resync; it rotates the
// token before it expires, and deletes the Secret and revokes the token
// when the cluster is deleted from the hub or removed. It writes with
// server-side apply under its own field manager, so fields users add to a
// Secret (shard, project) survive, and it never deletes and recreates a
// Secret it can update. It uses plain client-go: no Argo CD code.
package argocd

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/store"
)

// Defaults of [Config] and [Instance].
const (
	DefaultNamespace    = "argocd"
	DefaultInstanceName = "argocd"
	DefaultTokenTTL     = 24 * time.Hour
	DefaultResync       = 5 * time.Minute
	// ServiceName is the hub service identity Argo CD acts as: hub user
	// service:argocd, Kubernetes user <prefix>service:argocd.
	ServiceName = "argocd"
	// DefaultQPS bounds the requests per second to an instance reached by
	// kubeconfig or in-cluster (twice as many in a burst); through a
	// tunnel the hub's own client settings and caps apply.
	DefaultQPS = 200
)

// Instance is one Argo CD installation to register clusters into. Exactly
// one of Kubeconfig, InCluster and Cluster says how the hub reaches the
// Kubernetes API that Argo CD runs in.
type Instance struct {
	// Name names the instance in status, metrics and logs. Empty means
	// DefaultInstanceName; names are unique.
	Name string `json:"name,omitempty"`
	// Kubeconfig is the path of a kubeconfig for Argo CD's cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context is the kubeconfig context; empty means its current one.
	Context string `json:"context,omitempty"`
	// InCluster reaches the cluster the hub itself runs in, through its
	// pod's ServiceAccount.
	InCluster bool `json:"inCluster,omitempty"`
	// Cluster is the ID or name of a cluster eco manages in which Argo CD
	// runs (a "management" cluster): the hub writes there through that
	// cluster's tunnel, as the service identity service:argocd-registrar.
	Cluster string `json:"cluster,omitempty"`
	// Namespace is Argo CD's namespace. Empty means DefaultNamespace.
	Namespace string `json:"namespace,omitempty"`
	// Selector picks the clusters registered here. The zero value picks
	// every cluster.
	Selector Selector `json:"selector,omitempty"`
	// Project, if set, is the AppProject the Secrets name ("project");
	// empty leaves the field to users.
	Project string `json:"project,omitempty"`
	// URL is Argo CD's UI, for links; empty means no links.
	URL string `json:"url,omitempty"`
}

// Selector picks clusters by their hub record. Every non-empty field must
// match; the zero value matches every cluster.
type Selector struct {
	// Providers are the cluster providers to pick (eks, aks, gke, generic).
	Providers []store.Provider `json:"providers,omitempty"`
	// Regions are the regions to pick, compared exactly.
	Regions []string `json:"regions,omitempty"`
	// Names are the cluster names to pick.
	Names []string `json:"names,omitempty"`
	// Labels are user labels a cluster must all carry with these values
	// (like a Kubernetes matchLabels; see `ecoctl clusters label`).
	Labels map[string]string `json:"labels,omitempty"`
}

// Matches reports whether s picks cluster c.
func (s Selector) Matches(c store.Cluster) bool {
	if len(s.Providers) > 0 && !slices.Contains(s.Providers, c.Provider) {
		return false
	}
	if len(s.Regions) > 0 && !slices.Contains(s.Regions, c.Region) {
		return false
	}
	if len(s.Names) > 0 && !slices.Contains(s.Names, c.Name) {
		return false
	}
	for k, v := range s.Labels {
		if got, ok := c.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// File is the configuration file eco-hub reads with --argocd-config.
type File struct {
	// Instances are the Argo CD installations.
	Instances []Instance `json:"instances"`
	// Grant is the role Argo CD's identity gets in each registered
	// cluster. Empty means admin.
	Grant store.ClusterRole `json:"grant,omitempty"`
	// TokenTTL is the lifetime of each registration's token, as a Go
	// duration ("24h"). Empty means DefaultTokenTTL.
	TokenTTL string `json:"tokenTTL,omitempty"`
	// Resync is how often every registration is checked, as a Go
	// duration. Empty means DefaultResync.
	Resync string `json:"resync,omitempty"`
}

// LoadFile reads a configuration file (YAML or JSON) and validates it.
func LoadFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("reading Argo CD configuration: %w", err)
	}
	return ParseFile(data)
}

// ParseFile parses a configuration file's content (YAML or JSON),
// refusing unknown fields, and validates it.
func ParseFile(data []byte) (File, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return File{}, fmt.Errorf("parsing Argo CD configuration: %w", err)
	}
	if _, _, err := f.Durations(); err != nil {
		return File{}, err
	}
	if f.Grant != "" && !f.Grant.Valid() {
		return File{}, fmt.Errorf("argocd configuration: grant %q: want admin, edit or view", f.Grant)
	}
	if _, err := ValidateInstances(f.Instances); err != nil {
		return File{}, err
	}
	return f, nil
}

// Durations returns the file's token TTL and resync period, with their
// defaults.
func (f File) Durations() (ttl, resync time.Duration, err error) {
	ttl, resync = DefaultTokenTTL, DefaultResync
	if f.TokenTTL != "" {
		if ttl, err = time.ParseDuration(f.TokenTTL); err != nil || ttl < time.Minute {
			return 0, 0, fmt.Errorf("argocd configuration: tokenTTL %q: want a Go duration of at least 1m", f.TokenTTL)
		}
	}
	if f.Resync != "" {
		if resync, err = time.ParseDuration(f.Resync); err != nil || resync < time.Second {
			return 0, 0, fmt.Errorf("argocd configuration: resync %q: want a Go duration of at least 1s", f.Resync)
		}
	}
	return ttl, resync, nil
}

// ValidateInstances fills in the defaults of every instance and reports the
// first problem: how it is reached must be said exactly once, names must
// be unique, and no two instances may be the same namespace reached the
// same way (Argo CD reads every cluster Secret of its namespace, so they
// would be one Argo CD, each deleting the Secrets the other's selector
// picks).
func ValidateInstances(in []Instance) ([]Instance, error) {
	out := slices.Clone(in)
	seen := map[string]bool{}
	where := map[string]string{} // where an instance writes → its name
	for i := range out {
		inst := &out[i]
		if inst.Name == "" {
			inst.Name = DefaultInstanceName
		}
		if inst.Namespace == "" {
			inst.Namespace = DefaultNamespace
		}
		if seen[inst.Name] {
			return nil, fmt.Errorf("argocd instance %q: the name is used twice", inst.Name)
		}
		seen[inst.Name] = true
		n := 0
		for _, set := range []bool{inst.Kubeconfig != "", inst.InCluster, inst.Cluster != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("argocd instance %q: set exactly one of kubeconfig, inCluster and cluster", inst.Name)
		}
		if err := store.ValidateClusterName(inst.Namespace); err != nil {
			return nil, fmt.Errorf("argocd instance %q: namespace: %w", inst.Name, err)
		}
		at := "cluster " + inst.Cluster
		switch {
		case inst.Kubeconfig != "":
			at = "kubeconfig " + inst.Kubeconfig + " context " + inst.Context
		case inst.InCluster:
			at = "the hub's own cluster"
		}
		at += ", namespace " + inst.Namespace
		if other, ok := where[at]; ok {
			return nil, fmt.Errorf("argocd instances %q and %q are both %s: one Argo CD is one instance (give it one selector)", other, inst.Name, at)
		}
		where[at] = inst.Name
		for _, p := range inst.Selector.Providers {
			if !p.Valid() {
				return nil, fmt.Errorf("argocd instance %q: selector: provider %q: want one of %v", inst.Name, p, store.Providers())
			}
		}
	}
	return out, nil
}

// errNoInstances is returned by New without instances.
var errNoInstances = errors.New("argocd: no instances configured")
