// Package gcp is eco's GKE provider on Google's own Go client
// (cloud.google.com/go/container): one ListClusters call per project, for
// every location ("-"), carries each cluster's status, conditions and node
// pools, mapped to the [cloud.Health] model.
package gcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	container "cloud.google.com/go/container/apiv1"
	"cloud.google.com/go/container/apiv1/containerpb"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eco-project/eco/cloud"
)

// GoogleTokenURI is the token endpoint of Google service-account keys.
const GoogleTokenURI = "https://oauth2.googleapis.com/token"

// Config configures the provider. The zero value talks to Google.
type Config struct {
	// Endpoint replaces container.googleapis.com:443 (a fake in tests).
	Endpoint string
	// TokenURI is the only token_uri a service-account key may name, so a
	// key cannot send the hub's signed assertions elsewhere. Empty means
	// GoogleTokenURI.
	TokenURI string
	// ClientOptions are added to every client (e.g. the TLS roots of a
	// fake).
	ClientOptions []option.ClientOption
	// HTTPClient fetches OAuth tokens for one-click install. Nil means
	// http.DefaultClient.
	HTTPClient *http.Client
}

// Provider is the GKE provider.
type Provider struct{ cfg Config }

// New returns the GKE provider.
func New(cfg Config) *Provider {
	if cfg.TokenURI == "" {
		cfg.TokenURI = GoogleTokenURI
	}
	return &Provider{cfg: cfg}
}

var _ cloud.Provider = (*Provider)(nil)

// key is what the provider reads of a service-account JSON key.
type key struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// CheckKey reports what is wrong with a service-account JSON key.
func (p *Provider) CheckKey(b []byte) error {
	var k key
	if err := json.Unmarshal(b, &k); err != nil {
		return fmt.Errorf("the service-account key is not JSON: %w", err)
	}
	switch {
	case k.Type != "service_account":
		return fmt.Errorf("the key's type is %q, not service_account", k.Type)
	case k.ClientEmail == "" || k.PrivateKey == "":
		return errors.New("the key has no client_email or private_key")
	case k.TokenURI != "" && k.TokenURI != p.cfg.TokenURI:
		return fmt.Errorf("the key's token_uri %q is not %s", k.TokenURI, p.cfg.TokenURI)
	}
	return nil
}

func (p *Provider) client(ctx context.Context, a cloud.Account) (*container.ClusterManagerClient, error) {
	b := []byte(a.Credentials.ServiceAccountKey)
	if err := p.CheckKey(b); err != nil {
		return nil, fmt.Errorf("%w: %w", cloud.ErrCredentialsRejected, err)
	}
	opts := []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, b)}
	if p.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(p.cfg.Endpoint))
	}
	opts = append(opts, p.cfg.ClientOptions...)
	c, err := container.NewClusterManagerClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("GKE client: %w", err)
	}
	return c, nil
}

func (p *Provider) list(ctx context.Context, a cloud.Account, project string) (*containerpb.ListClustersResponse, error) {
	c, err := p.client(ctx, a)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	resp, err := c.ListClusters(ctx, &containerpb.ListClustersRequest{Parent: "projects/" + project + "/locations/-"})
	if err != nil {
		return nil, fmt.Errorf("listing GKE clusters of project %q: %w", project, classify(err))
	}
	return resp, nil
}

// Validate lists the clusters of the account's project.
func (p *Provider) Validate(ctx context.Context, a cloud.Account) error {
	if len(a.Scopes) != 1 {
		return errors.New("a GKE account has one project")
	}
	_, err := p.list(ctx, a, a.Scopes[0])
	return err
}

// Discover lists the project's clusters in every location.
func (p *Provider) Discover(ctx context.Context, a cloud.Account, project string) ([]cloud.Cluster, error) {
	resp, err := p.list(ctx, a, project)
	if err != nil {
		return nil, err
	}
	var out []cloud.Cluster
	for _, c := range resp.GetClusters() {
		out = append(out, cloud.Cluster{
			Name: c.GetName(), Scope: project, Region: c.GetLocation(), Ref: c.GetSelfLink(),
			Version: c.GetCurrentMasterVersion(), Endpoint: endpoint(c), Private: private(c), Health: MapCluster(c),
		})
	}
	return out, nil
}

func endpoint(c *containerpb.Cluster) string {
	if c.GetEndpoint() == "" {
		return ""
	}
	return "https://" + c.GetEndpoint()
}

// private reports whether the cluster's API server has no public endpoint.
func private(c *containerpb.Cluster) bool {
	if ip := c.GetControlPlaneEndpointsConfig().GetIpEndpointsConfig(); ip != nil && ip.GetEnabled() && !ip.GetEnablePublicEndpoint() {
		return true
	}
	//lint:ignore SA1019 clusters created before control-plane endpoints config still say it only here
	return c.GetPrivateClusterConfig().GetEnablePrivateEndpoint()
}

// Health makes one ListClusters call for the project. Clusters in zones
// GKE reports unreachable (missing_zones) read Unknown, not NotFound.
func (p *Provider) Health(ctx context.Context, a cloud.Account, project string, refs []string) (map[string]cloud.Health, error) {
	resp, err := p.list(ctx, a, project)
	if err != nil {
		return nil, err
	}
	byRef := map[string]*containerpb.Cluster{}
	for _, c := range resp.GetClusters() {
		byRef[c.GetSelfLink()] = c
	}
	out := map[string]cloud.Health{}
	for _, ref := range refs {
		if c, ok := byRef[ref]; ok {
			out[ref] = MapCluster(c)
			continue
		}
		for _, z := range resp.GetMissingZones() {
			if locationOf(ref) == z {
				out[ref] = cloud.Health{State: cloud.Unknown, Reason: "GKE cannot reach zone " + z}
			}
		}
	}
	return out, nil
}

// locationOf is the location of a self link
// …/projects/P/locations/L/clusters/N (or …/zones/L/…).
func locationOf(selfLink string) string {
	for _, seg := range []string{"/locations/", "/zones/"} {
		if _, rest, ok := strings.Cut(selfLink, seg); ok {
			loc, _, _ := strings.Cut(rest, "/")
			return loc
		}
	}
	return ""
}

// MapCluster maps a GKE cluster's status, conditions and node pools to
// the health model, with GKE's status message and conditions as the
// reason.
func MapCluster(c *containerpb.Cluster) cloud.Health {
	why := cloud.JoinReasons(statusMessage(c), conditions(c.GetConditions()))
	switch c.GetStatus() {
	case containerpb.Cluster_PROVISIONING:
		return cloud.Health{State: cloud.Provisioning, Reason: cloud.JoinReasons("PROVISIONING", statusMessage(c))}
	case containerpb.Cluster_RECONCILING:
		return cloud.Health{State: cloud.Updating, Reason: cloud.JoinReasons("RECONCILING", statusMessage(c))}
	case containerpb.Cluster_STOPPING:
		return cloud.Health{State: cloud.Deleting, Reason: cloud.JoinReasons("STOPPING", statusMessage(c))}
	case containerpb.Cluster_ERROR:
		return cloud.Health{State: cloud.Failed, Reason: cloud.JoinReasons("ERROR", why)}
	case containerpb.Cluster_DEGRADED:
		return cloud.Health{State: cloud.Degraded, Reason: cloud.JoinReasons("DEGRADED", why)}
	case containerpb.Cluster_RUNNING:
	default:
		return cloud.Health{State: cloud.Unknown, Reason: "GKE status " + c.GetStatus().String()}
	}
	var problems []string
	if s := conditions(c.GetConditions()); s != "" {
		problems = append(problems, s)
	}
	changing := false
	for _, np := range c.GetNodePools() {
		switch np.GetStatus() {
		case containerpb.NodePool_RUNNING:
			if s := conditions(np.GetConditions()); s != "" {
				problems = append(problems, "node pool "+np.GetName()+": "+s)
			}
		case containerpb.NodePool_PROVISIONING, containerpb.NodePool_RECONCILING, containerpb.NodePool_STOPPING:
			changing = true
		default: // RUNNING_WITH_ERROR, ERROR, unspecified
			problems = append(problems, cloud.JoinReasons("node pool "+np.GetName()+" "+np.GetStatus().String(), poolStatusMessage(np), conditions(np.GetConditions())))
		}
	}
	switch {
	case len(problems) > 0:
		return cloud.Health{State: cloud.Degraded, Reason: cloud.JoinReasons(problems...)}
	case changing:
		return cloud.Health{State: cloud.Updating, Reason: "node pools changing"}
	}
	return cloud.Health{State: cloud.Healthy}
}

// statusMessage is GKE's status_message for a cluster. The API marks it
// deprecated in favour of conditions, but GKE still puts its own words
// there for a cluster being provisioned or in error, often with no
// condition beside them.
func statusMessage(c *containerpb.Cluster) string {
	//lint:ignore SA1019 see above: still GKE's words for PROVISIONING and ERROR
	return c.GetStatusMessage()
}

// poolStatusMessage is statusMessage for a node pool.
func poolStatusMessage(np *containerpb.NodePool) string {
	//lint:ignore SA1019 see statusMessage
	return np.GetStatusMessage()
}

func conditions(cs []*containerpb.StatusCondition) string {
	var rs []string
	for _, c := range cs {
		code := c.GetCanonicalCode().String()
		if c.GetCanonicalCode() == 0 {
			//lint:ignore SA1019 older conditions carry only the legacy code
			code = c.GetCode().String()
		}
		rs = append(rs, code+": "+c.GetMessage())
	}
	return cloud.JoinReasons(rs...)
}

// classify wraps err with cloud.ErrCredentialsRejected or
// cloud.ErrThrottled when Google said so.
func classify(err error) error {
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unauthenticated, codes.PermissionDenied:
			return fmt.Errorf("%w: %s", cloud.ErrCredentialsRejected, s.Message())
		case codes.ResourceExhausted:
			return fmt.Errorf("%w: %w", cloud.ErrThrottled, err)
		}
	}
	return err
}

var _ cloud.Installer = (*Provider)(nil)

// Access returns the cluster's endpoint and CA and an OAuth access token
// of the account's service account (as gcloud's auth plugin gives
// kubectl); the service account needs RBAC rights in the cluster
// (roles/container.admin). Private clusters are refused with
// cloud.ErrPrivateEndpoint.
func (p *Provider) Access(ctx context.Context, a cloud.Account, project, ref string) (cloud.ClusterAccess, error) {
	resp, err := p.list(ctx, a, project)
	if err != nil {
		return cloud.ClusterAccess{}, err
	}
	var c *containerpb.Cluster
	for _, x := range resp.GetClusters() {
		if x.GetSelfLink() == ref {
			c = x
		}
	}
	if c == nil {
		return cloud.ClusterAccess{}, fmt.Errorf("GKE cluster %s not found", ref)
	}
	if private(c) {
		return cloud.ClusterAccess{}, cloud.ErrPrivateEndpoint
	}
	ca, err := base64.StdEncoding.DecodeString(c.GetMasterAuth().GetClusterCaCertificate())
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("GKE cluster %s: its CA: %w", c.GetName(), err)
	}
	if p.cfg.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, p.cfg.HTTPClient)
	}
	creds, err := google.CredentialsFromJSONWithType(ctx, []byte(a.Credentials.ServiceAccountKey), google.ServiceAccount, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("%w: %w", cloud.ErrCredentialsRejected, err)
	}
	tok, err := creds.TokenSource.Token()
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("%w: getting an OAuth token: %w", cloud.ErrCredentialsRejected, err)
	}
	return cloud.ClusterAccess{Server: endpoint(c), CAData: ca, BearerToken: tok.AccessToken}, nil
}
