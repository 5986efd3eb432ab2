// Package aws is eco's EKS provider on aws-sdk-go-v2: it validates an
// account with STS GetCallerIdentity, lists each region's clusters with
// ListClusters and DescribeCluster, and maps EKS cluster status, health
// issues and node-group status to the [cloud.Health] model.
package aws

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/eco-project/eco/cloud"
)

// Config configures the provider. The zero value talks to AWS.
type Config struct {
	// EKSEndpoint and STSEndpoint replace AWS's endpoints (a fake in
	// tests, or a VPC endpoint). Empty means AWS's, per region.
	EKSEndpoint string
	STSEndpoint string
	// HTTPClient makes the calls. Nil means the SDK's default.
	HTTPClient *http.Client
	// MaxAttempts is how many times the SDK tries a call (it retries
	// throttling with its own backoff before the poller backs off).
	// Zero means the SDK's default, 3.
	MaxAttempts int
}

// Provider is the EKS provider.
type Provider struct {
	cfg Config

	mu sync.Mutex // guards creds
	// creds are the accounts' credential caches by a hash of what makes
	// them, so an assumed role's session is reused until it expires.
	creds map[[32]byte]*aws.CredentialsCache
}

// New returns the EKS provider.
func New(cfg Config) *Provider {
	return &Provider{cfg: cfg, creds: map[[32]byte]*aws.CredentialsCache{}}
}

var _ cloud.Provider = (*Provider)(nil)

// awsConfig builds an SDK configuration from the account's credentials
// alone: never from the hub's environment or files.
func (p *Provider) awsConfig(a cloud.Account, region string) aws.Config {
	c := a.Credentials
	cfg := aws.Config{
		Region:           region,
		Credentials:      aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")),
		RetryMaxAttempts: p.cfg.MaxAttempts,
	}
	if p.cfg.HTTPClient != nil {
		cfg.HTTPClient = p.cfg.HTTPClient
	}
	if c.RoleARN != "" {
		k := sha256.Sum256([]byte(c.AccessKeyID + "\x00" + c.SecretAccessKey + "\x00" + c.RoleARN + "\x00" + c.ExternalID))
		p.mu.Lock()
		defer p.mu.Unlock()
		cache, ok := p.creds[k]
		if !ok {
			stsc := p.sts(cfg)
			cache = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsc, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = "eco-hub"
				if c.ExternalID != "" {
					o.ExternalID = aws.String(c.ExternalID)
				}
			}))
			p.creds[k] = cache
		}
		cfg.Credentials = cache
	}
	return cfg
}

func (p *Provider) sts(cfg aws.Config) *sts.Client {
	return sts.NewFromConfig(cfg, func(o *sts.Options) {
		if p.cfg.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(p.cfg.STSEndpoint)
		}
	})
}

func (p *Provider) eks(a cloud.Account, region string) *eks.Client {
	return eks.NewFromConfig(p.awsConfig(a, region), func(o *eks.Options) {
		if p.cfg.EKSEndpoint != "" {
			o.BaseEndpoint = aws.String(p.cfg.EKSEndpoint)
		}
	})
}

// Validate calls STS GetCallerIdentity as the account (after assuming its
// role, if it has one).
func (p *Provider) Validate(ctx context.Context, a cloud.Account) error {
	if len(a.Scopes) == 0 {
		return errors.New("no region")
	}
	if _, err := p.sts(p.awsConfig(a, a.Scopes[0])).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		return classify(err)
	}
	return nil
}

// Discover lists the region's clusters and describes each.
func (p *Provider) Discover(ctx context.Context, a cloud.Account, region string) ([]cloud.Cluster, error) {
	client := p.eks(a, region)
	names, err := listClusters(ctx, client)
	if err != nil {
		return nil, err
	}
	cs, err := describeAll(ctx, client, region, names)
	if err != nil {
		return nil, err
	}
	var out []cloud.Cluster
	for _, c := range cs {
		if c.Ref != "" {
			out = append(out, c)
		}
	}
	return out, nil
}

// describeParallel bounds the DescribeCluster calls in flight per region.
const describeParallel = 8

// describeAll describes names, describeParallel at a time; a cluster gone
// meanwhile is a zero Cluster.
func describeAll(ctx context.Context, client *eks.Client, region string, names []string) ([]cloud.Cluster, error) {
	out := make([]cloud.Cluster, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(describeParallel)
	for i, name := range names {
		g.Go(func() error {
			c, err := describe(gctx, client, region, name)
			if errors.Is(err, errGone) {
				return nil
			}
			out[i] = c
			return err
		})
	}
	return out, g.Wait()
}

// Health lists the region's clusters (EKS's list has names only) and
// describes those of refs that are still there.
func (p *Provider) Health(ctx context.Context, a cloud.Account, region string, refs []string) (map[string]cloud.Health, error) {
	client := p.eks(a, region)
	names, err := listClusters(ctx, client)
	if err != nil {
		return nil, err
	}
	var present []string
	for _, ref := range refs {
		if name := nameFromARN(ref); slices.Contains(names, name) {
			present = append(present, name)
		}
	}
	cs, err := describeAll(ctx, client, region, present)
	if err != nil {
		return nil, err
	}
	out := map[string]cloud.Health{}
	for _, c := range cs {
		if c.Ref != "" && slices.Contains(refs, c.Ref) {
			out[c.Ref] = c.Health
		}
	}
	return out, nil
}

// nameFromARN is the cluster name of arn:aws:eks:REGION:ACCOUNT:cluster/NAME.
func nameFromARN(arn string) string {
	_, name, _ := strings.Cut(arn, ":cluster/")
	return name
}

func listClusters(ctx context.Context, client *eks.Client) ([]string, error) {
	var names []string
	pg := eks.NewListClustersPaginator(client, &eks.ListClustersInput{})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing EKS clusters: %w", classify(err))
		}
		names = append(names, page.Clusters...)
	}
	return names, nil
}

var errGone = errors.New("cluster gone")

func describe(ctx context.Context, client *eks.Client, region, name string) (cloud.Cluster, error) {
	out, err := client.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return cloud.Cluster{}, errGone
	}
	if err != nil {
		return cloud.Cluster{}, fmt.Errorf("describing EKS cluster %q: %w", name, classify(err))
	}
	c := out.Cluster
	cl := cloud.Cluster{
		Name: name, Scope: region, Region: region, Ref: aws.ToString(c.Arn),
		Version: aws.ToString(c.Version), Endpoint: aws.ToString(c.Endpoint),
	}
	if v := c.ResourcesVpcConfig; v != nil {
		cl.Private = !v.EndpointPublicAccess
	}
	var groups []types.Nodegroup
	if c.Status == types.ClusterStatusActive {
		groups, err = nodegroups(ctx, client, name)
		if err != nil {
			return cloud.Cluster{}, err
		}
	}
	cl.Health = MapCluster(c, groups)
	return cl, nil
}

func nodegroups(ctx context.Context, client *eks.Client, cluster string) ([]types.Nodegroup, error) {
	var out []types.Nodegroup
	pg := eks.NewListNodegroupsPaginator(client, &eks.ListNodegroupsInput{ClusterName: aws.String(cluster)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the node groups of EKS cluster %q: %w", cluster, classify(err))
		}
		for _, ng := range page.Nodegroups {
			d, err := client.DescribeNodegroup(ctx, &eks.DescribeNodegroupInput{ClusterName: aws.String(cluster), NodegroupName: aws.String(ng)})
			var nf *types.ResourceNotFoundException
			if errors.As(err, &nf) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("describing node group %q of EKS cluster %q: %w", ng, cluster, classify(err))
			}
			out = append(out, *d.Nodegroup)
		}
	}
	return out, nil
}

// MapCluster maps an EKS cluster, and its node groups when it is ACTIVE,
// to the health model; the reason is EKS's own status, issue codes and
// messages.
func MapCluster(c *types.Cluster, groups []types.Nodegroup) cloud.Health {
	status := string(c.Status)
	switch c.Status {
	case types.ClusterStatusCreating, types.ClusterStatusPending:
		return cloud.Health{State: cloud.Provisioning, Reason: status}
	case types.ClusterStatusUpdating:
		return cloud.Health{State: cloud.Updating, Reason: status}
	case types.ClusterStatusDeleting:
		return cloud.Health{State: cloud.Deleting, Reason: status}
	case types.ClusterStatusFailed:
		return cloud.Health{State: cloud.Failed, Reason: cloud.JoinReasons(status, clusterIssues(c))}
	case types.ClusterStatusActive:
	default:
		return cloud.Health{State: cloud.Unknown, Reason: "EKS status " + status}
	}
	var problems []string
	if s := clusterIssues(c); s != "" {
		problems = append(problems, s)
	}
	updating := false
	for _, g := range groups {
		name := aws.ToString(g.NodegroupName)
		switch g.Status {
		case types.NodegroupStatusActive:
			if s := nodegroupIssues(g); s != "" {
				problems = append(problems, "node group "+name+": "+s)
			}
		case types.NodegroupStatusCreating, types.NodegroupStatusUpdating, types.NodegroupStatusDeleting:
			updating = true
		default: // CREATE_FAILED, DELETE_FAILED, DEGRADED, or new
			problems = append(problems, cloud.JoinReasons("node group "+name+" "+string(g.Status), nodegroupIssues(g)))
		}
	}
	switch {
	case len(problems) > 0:
		return cloud.Health{State: cloud.Degraded, Reason: cloud.JoinReasons(problems...)}
	case updating:
		return cloud.Health{State: cloud.Updating, Reason: "node groups changing"}
	}
	return cloud.Health{State: cloud.Healthy}
}

func clusterIssues(c *types.Cluster) string {
	if c.Health == nil {
		return ""
	}
	var rs []string
	for _, i := range c.Health.Issues {
		rs = append(rs, string(i.Code)+": "+aws.ToString(i.Message))
	}
	return cloud.JoinReasons(rs...)
}

func nodegroupIssues(g types.Nodegroup) string {
	if g.Health == nil {
		return ""
	}
	var rs []string
	for _, i := range g.Health.Issues {
		rs = append(rs, string(i.Code)+": "+aws.ToString(i.Message))
	}
	return cloud.JoinReasons(rs...)
}

// Error codes AWS answers for credentials it refuses, and for throttling.
var (
	rejectedCodes = []string{
		"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
		"AccessDenied", "AccessDeniedException", "SignatureDoesNotMatch", "InvalidSignatureException",
		"UnauthorizedOperation", "AuthFailure", "InvalidAccessKeyId", "NotAuthorizedException",
	}
	throttledCodes = []string{
		"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
		"RequestThrottled", "SlowDown", "ProvisionedThroughputExceededException",
	}
)

// classify wraps err with cloud.ErrCredentialsRejected or
// cloud.ErrThrottled when AWS said so.
func classify(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch code := ae.ErrorCode(); {
		case slices.Contains(rejectedCodes, code):
			return fmt.Errorf("%w: %s", cloud.ErrCredentialsRejected, ae.ErrorMessage())
		case slices.Contains(throttledCodes, code):
			return fmt.Errorf("%w: %w", cloud.ErrThrottled, err)
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusTooManyRequests:
			return fmt.Errorf("%w: %w", cloud.ErrThrottled, err)
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: %w", cloud.ErrCredentialsRejected, err)
		}
	}
	return err
}
