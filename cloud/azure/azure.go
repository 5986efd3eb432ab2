// Package azure is eco's AKS provider on the Azure SDK for Go
// (azidentity for the service principal, armcontainerservice): one
// ManagedClusters list per subscription carries every cluster's
// provisioning state, power state and agent pools, mapped to the
// [cloud.Health] model.
package azure

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azcloud "github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v6"

	"github.com/eco-project/eco/cloud"
)

// Config configures the provider. The zero value talks to Azure's public
// cloud.
type Config struct {
	// Cloud is the Azure cloud (its Entra ID authority and Resource
	// Manager endpoint). The zero value means azcloud.AzurePublic.
	Cloud azcloud.Configuration
	// Transport makes the HTTP calls (tokens and Resource Manager). Nil
	// means azcore's default.
	Transport policy.Transporter
	// Retry is azcore's retry policy. The zero value means azcore's
	// defaults; MaxRetries -1 means no retries.
	Retry policy.RetryOptions
}

// Provider is the AKS provider.
type Provider struct {
	cfg Config

	mu sync.Mutex // guards creds
	// creds are the service principals' credentials by a hash of what
	// makes them, so each keeps its token cache across polls.
	creds map[[32]byte]azcore.TokenCredential
}

// New returns the AKS provider.
func New(cfg Config) *Provider {
	if cfg.Cloud.ActiveDirectoryAuthorityHost == "" {
		cfg.Cloud = azcloud.AzurePublic
	}
	return &Provider{cfg: cfg, creds: map[[32]byte]azcore.TokenCredential{}}
}

var _ cloud.Provider = (*Provider)(nil)

func (p *Provider) clientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Cloud: p.cfg.Cloud, Transport: p.cfg.Transport, Retry: p.cfg.Retry}
}

// Credential is the account's service principal, with a secret or a
// certificate.
func (p *Provider) Credential(a cloud.Account) (azcore.TokenCredential, error) {
	c := a.Credentials
	k := sha256.Sum256([]byte(c.TenantID + "\x00" + c.ClientID + "\x00" + c.ClientSecret + "\x00" + c.ClientCertificate))
	p.mu.Lock()
	defer p.mu.Unlock()
	if cred, ok := p.creds[k]; ok {
		return cred, nil
	}
	cred, err := p.newCredential(c)
	if err != nil {
		return nil, err
	}
	p.creds[k] = cred
	return cred, nil
}

func (p *Provider) newCredential(c cloud.Credentials) (azcore.TokenCredential, error) {
	if c.ClientCertificate != "" {
		certs, key, err := azidentity.ParseCertificates([]byte(c.ClientCertificate), nil)
		if err != nil {
			return nil, fmt.Errorf("%w: reading the client certificate: %w", cloud.ErrCredentialsRejected, err)
		}
		return azidentity.NewClientCertificateCredential(c.TenantID, c.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: p.clientOptions(), DisableInstanceDiscovery: true})
	}
	return azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: p.clientOptions(), DisableInstanceDiscovery: true})
}

func (p *Provider) list(ctx context.Context, a cloud.Account, subscription string) ([]*armcontainerservice.ManagedCluster, error) {
	cred, err := p.Credential(a)
	if err != nil {
		return nil, classify(err)
	}
	client, err := armcontainerservice.NewManagedClustersClient(subscription, cred, &arm.ClientOptions{ClientOptions: p.clientOptions()})
	if err != nil {
		return nil, fmt.Errorf("AKS client: %w", err)
	}
	var out []*armcontainerservice.ManagedCluster
	pager := client.NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the AKS clusters of subscription %q: %w", subscription, classify(err))
		}
		out = append(out, page.Value...)
	}
	return out, nil
}

// Validate lists the clusters of the account's subscription.
func (p *Provider) Validate(ctx context.Context, a cloud.Account) error {
	if len(a.Scopes) != 1 {
		return errors.New("an AKS account has one subscription")
	}
	_, err := p.list(ctx, a, a.Scopes[0])
	return err
}

// Discover lists the subscription's clusters.
func (p *Provider) Discover(ctx context.Context, a cloud.Account, subscription string) ([]cloud.Cluster, error) {
	mcs, err := p.list(ctx, a, subscription)
	if err != nil {
		return nil, err
	}
	var out []cloud.Cluster
	for _, mc := range mcs {
		c := cloud.Cluster{Name: deref(mc.Name), Scope: subscription, Region: deref(mc.Location), Ref: deref(mc.ID), Health: MapCluster(mc)}
		if pr := mc.Properties; pr != nil {
			c.Version = deref(pr.CurrentKubernetesVersion)
			if c.Version == "" {
				c.Version = deref(pr.KubernetesVersion)
			}
			if pr.APIServerAccessProfile != nil && pr.APIServerAccessProfile.EnablePrivateCluster != nil && *pr.APIServerAccessProfile.EnablePrivateCluster {
				c.Private = true
			}
			if pr.Fqdn != nil {
				c.Endpoint = "https://" + *pr.Fqdn + ":443"
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// Health makes one list call for the subscription. Resource IDs are
// compared without regard to case, as Azure does.
func (p *Provider) Health(ctx context.Context, a cloud.Account, subscription string, refs []string) (map[string]cloud.Health, error) {
	mcs, err := p.list(ctx, a, subscription)
	if err != nil {
		return nil, err
	}
	byID := map[string]*armcontainerservice.ManagedCluster{}
	for _, mc := range mcs {
		byID[strings.ToLower(deref(mc.ID))] = mc
	}
	out := map[string]cloud.Health{}
	for _, ref := range refs {
		if mc, ok := byID[strings.ToLower(ref)]; ok {
			out[ref] = MapCluster(mc)
		}
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// MapCluster maps an AKS managed cluster's provisioning state, power
// state and agent pools to the health model; the reason is in AKS's words.
func MapCluster(mc *armcontainerservice.ManagedCluster) cloud.Health {
	pr := mc.Properties
	if pr == nil {
		return cloud.Health{State: cloud.Unknown, Reason: "no properties"}
	}
	ps := deref(pr.ProvisioningState)
	if h, ok := mapProvisioning(ps); ok {
		return h
	}
	if pr.PowerState != nil && pr.PowerState.Code != nil && *pr.PowerState.Code == armcontainerservice.CodeStopped {
		return cloud.Health{State: cloud.Stopped, Reason: "power state Stopped"}
	}
	var problems []string
	changing := false
	for _, ap := range pr.AgentPoolProfiles {
		aps := deref(ap.ProvisioningState)
		switch h, ok := mapProvisioning(aps); {
		case !ok: // Succeeded
		case h.State.Transitional():
			changing = true
		default:
			problems = append(problems, "agent pool "+deref(ap.Name)+" provisioning state "+aps)
		}
	}
	switch {
	case len(problems) > 0:
		return cloud.Health{State: cloud.Degraded, Reason: cloud.JoinReasons(problems...)}
	case changing:
		return cloud.Health{State: cloud.Updating, Reason: "agent pools changing"}
	}
	return cloud.Health{State: cloud.Healthy}
}

// mapProvisioning maps every provisioning state but Succeeded (ok false).
func mapProvisioning(ps string) (cloud.Health, bool) {
	reason := "provisioning state " + ps
	switch ps {
	case "Succeeded":
		return cloud.Health{}, false
	case "Creating":
		return cloud.Health{State: cloud.Provisioning, Reason: reason}, true
	case "Updating", "Upgrading", "Scaling", "Starting", "Stopping", "Migrating", "Reconciling", "RotatingClusterCertificates":
		return cloud.Health{State: cloud.Updating, Reason: reason}, true
	case "Deleting":
		return cloud.Health{State: cloud.Deleting, Reason: reason}, true
	case "Failed":
		return cloud.Health{State: cloud.Failed, Reason: reason}, true
	case "Canceled":
		return cloud.Health{State: cloud.Degraded, Reason: reason + " (the last operation was canceled)"}, true
	}
	return cloud.Health{State: cloud.Unknown, Reason: reason}, true
}

// classify wraps err with cloud.ErrCredentialsRejected or
// cloud.ErrThrottled when Azure said so.
func classify(err error) error {
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		return fmt.Errorf("%w: %w", cloud.ErrCredentialsRejected, err)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s", cloud.ErrCredentialsRejected, re.ErrorCode)
		case http.StatusTooManyRequests:
			return fmt.Errorf("%w: %w", cloud.ErrThrottled, err)
		}
	}
	return err
}

var _ cloud.Installer = (*Provider)(nil)

// Access gets the cluster's admin kubeconfig from AKS's credential API
// (listClusterAdminCredential), as `az aks get-credentials --admin` does.
// Private clusters are refused with cloud.ErrPrivateEndpoint.
func (p *Provider) Access(ctx context.Context, a cloud.Account, subscription, ref string) (cloud.ClusterAccess, error) {
	id, err := arm.ParseResourceID(ref)
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("AKS resource ID %q: %w", ref, err)
	}
	cred, err := p.Credential(a)
	if err != nil {
		return cloud.ClusterAccess{}, classify(err)
	}
	client, err := armcontainerservice.NewManagedClustersClient(subscription, cred, &arm.ClientOptions{ClientOptions: p.clientOptions()})
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("AKS client: %w", err)
	}
	mc, err := client.Get(ctx, id.ResourceGroupName, id.Name, nil)
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("reading AKS cluster %s: %w", id.Name, classify(err))
	}
	if pr := mc.Properties; pr != nil && pr.APIServerAccessProfile != nil && pr.APIServerAccessProfile.EnablePrivateCluster != nil && *pr.APIServerAccessProfile.EnablePrivateCluster {
		return cloud.ClusterAccess{}, cloud.ErrPrivateEndpoint
	}
	creds, err := client.ListClusterAdminCredentials(ctx, id.ResourceGroupName, id.Name, nil)
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("AKS credential API: %w", classify(err))
	}
	for _, kc := range creds.Kubeconfigs {
		if kc != nil && len(kc.Value) > 0 {
			return cloud.ClusterAccess{Kubeconfig: kc.Value}, nil
		}
	}
	return cloud.ClusterAccess{}, errors.New("AKS returned no kubeconfig")
}
