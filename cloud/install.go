package cloud

import (
	"context"
	"errors"
	"fmt"

	"github.com/eco-project/eco/store"
)

// One-click install (docs/cloud.md): where the account has the rights and
// the API server is reachable from the hub, the hub gets cluster
// credentials the way the provider's own tooling does and applies the
// install YAML itself.

// ErrPrivateEndpoint: the cluster's API server has no public endpoint, so
// the hub cannot reach it; the install YAML is applied from inside.
var ErrPrivateEndpoint = errors.New("the cluster's API server has no public endpoint: apply the install YAML from inside its network")

// ErrNoOneClick: the provider has no one-click install (yet).
var ErrNoOneClick = errors.New("one-click install is not available for this cloud: apply the install YAML")

// ClusterAccess is how the hub reaches a cluster's API server: a
// kubeconfig (AKS's credential API), or a server, its CA and a bearer
// token (EKS's presigned STS token, GKE's OAuth token).
type ClusterAccess struct {
	Kubeconfig  []byte
	Server      string
	CAData      []byte
	BearerToken string
}

// Installer is a Provider that can give the hub access to a cluster.
type Installer interface {
	// Access returns credentials for cluster ref in scope, or
	// ErrPrivateEndpoint.
	Access(ctx context.Context, a Account, scope, ref string) (ClusterAccess, error)
}

// Access returns credentials for the imported cluster with cloud
// reference ref, from the account it was imported from.
func (s *Service) Access(ctx context.Context, ref string) (ClusterAccess, store.Provider, error) {
	l, err := s.cfg.Store.CloudLinkByRef(ctx, ref)
	if err != nil {
		return ClusterAccess{}, "", fmt.Errorf("the cluster was not imported from a cloud account: %w", err)
	}
	a, err := s.open(ctx, l.AccountID)
	if err != nil {
		return ClusterAccess{}, "", err
	}
	pr, err := s.provider(a.Provider)
	if err != nil {
		return ClusterAccess{}, a.Provider, err
	}
	in, ok := pr.(Installer)
	if !ok {
		return ClusterAccess{}, a.Provider, ErrNoOneClick
	}
	acc, err := in.Access(ctx, a, l.Scope, ref)
	s.metrics.call(a.Provider, "access", err)
	if err != nil {
		return ClusterAccess{}, a.Provider, fmt.Errorf("getting cluster credentials from %s: %w", a.Provider, err)
	}
	s.log.Info("cluster credentials obtained from the cloud", "account", a.ID, "ref", ref)
	return acc, a.Provider, nil
}
