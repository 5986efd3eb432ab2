// Package cloud imports Kubernetes clusters from EKS, AKS and GKE and
// follows their health as each cloud reports it.
//
// It holds the one health model every provider maps to ([Health]), the
// cloud accounts (credentials sealed at rest by [Sealer], never returned,
// never logged), discovery and import of an account's clusters, and the
// [Service]'s poller that asks each provider for the health of the
// imported clusters with one list call per region, subscription or project
// where the provider's list carries the status. The providers themselves,
// each on its cloud's own SDK, are the subpackages cloud/aws, cloud/azure
// and cloud/gcp; this package imports no SDK.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/eco-project/eco/store"
)

// Errors a Provider wraps so the poller can tell them apart.
var (
	// ErrCredentialsRejected: the provider refused the account's
	// credentials (invalid, expired, or without the permission asked).
	ErrCredentialsRejected = errors.New(ReasonCredentialsRejected)
	// ErrThrottled: the provider asks to slow down.
	ErrThrottled = errors.New("throttled by the cloud provider")
)

// Credentials are a cloud account's secrets. Only the fields of the
// account's provider are set. They are never returned by the hub's API,
// and format as "[redacted]" so they cannot be logged by mistake.
type Credentials struct {
	// AWS: access keys, and optionally a role to assume with them.
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
	RoleARN         string `json:"roleArn,omitempty"`
	ExternalID      string `json:"externalId,omitempty"`
	// Azure: a service principal with a secret or a certificate (PEM of
	// the certificate and its unencrypted key).
	TenantID          string `json:"tenantId,omitempty"`
	ClientID          string `json:"clientId,omitempty"`
	ClientSecret      string `json:"clientSecret,omitempty"`
	ClientCertificate string `json:"clientCertificate,omitempty"`
	// GCP: a service-account JSON key.
	ServiceAccountKey string `json:"serviceAccountKey,omitempty"`
}

// String never shows the secrets.
func (Credentials) String() string { return "[redacted]" }

// GoString never shows the secrets.
func (Credentials) GoString() string { return "[redacted]" }

// LogValue never shows the secrets.
func (Credentials) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Format never shows the secrets, whatever the verb.
func (Credentials) Format(f fmt.State, _ rune) { fmt.Fprint(f, "[redacted]") }

// Account is a cloud account with its credentials opened.
type Account struct {
	ID       string
	Name     string
	Provider store.Provider
	// Scopes are EKS regions, or the one Azure subscription ID, or the
	// one GCP project ID.
	Scopes      []string
	Credentials Credentials
}

// Cluster is a cluster as its cloud lists it.
type Cluster struct {
	// Name is the cluster's name in its cloud.
	Name string `json:"name"`
	// Scope is where it was listed: its region (EKS), subscription (AKS)
	// or project (GKE).
	Scope string `json:"scope"`
	// Region is its region or zone.
	Region string `json:"region"`
	// Ref identifies it at the provider: an ARN, an Azure resource ID, a
	// GKE self link.
	Ref      string `json:"ref"`
	Version  string `json:"version"`
	Endpoint string `json:"endpoint,omitempty"`
	// Private is true when the API server has no public endpoint: the hub
	// cannot install ECO itself, the install YAML is applied from inside.
	Private bool   `json:"private"`
	Health  Health `json:"-"`
}

// Importable reports whether the cluster can be imported now, and why not:
// clusters still being created, or being deleted, are listed but not
// importable.
func (c Cluster) Importable() (bool, string) {
	switch c.Health.State {
	case Provisioning:
		return false, "still being created"
	case Deleting:
		return false, "being deleted"
	}
	return true, ""
}

// Provider is one cloud, on its own SDK.
type Provider interface {
	// Validate makes one real, read-only API call with the account's
	// credentials, so bad ones are refused when the account is saved.
	Validate(ctx context.Context, a Account) error
	// Discover lists every cluster the account sees in scope.
	Discover(ctx context.Context, a Account, scope string) ([]Cluster, error)
	// Health returns the health of the clusters with cloud references
	// refs in scope, with as few calls as the provider's API allows. A ref
	// missing from the answer was not found in the cloud.
	Health(ctx context.Context, a Account, scope string, refs []string) (map[string]Health, error)
}
