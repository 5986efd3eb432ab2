package aws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/eco-project/eco/cloud"
)

// One-click install on EKS: the hub's principal gets an access entry with
// AmazonEKSClusterAdminPolicy, and a bearer token that is a presigned STS
// GetCallerIdentity URL for the cluster, as `aws eks get-token` makes it.

// AdminPolicyARN is the EKS access policy the hub's principal gets.
const AdminPolicyARN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

// TokenPrefix starts an EKS bearer token.
const TokenPrefix = "k8s-aws-v1."

// ClusterIDHeader is the signed header naming the cluster in a token.
const ClusterIDHeader = "x-k8s-aws-id"

var _ cloud.Installer = (*Provider)(nil)

// Access gives the account's principal cluster-admin through an EKS access
// entry (idempotent) and returns the API server, its CA and a token.
func (p *Provider) Access(ctx context.Context, a cloud.Account, region, ref string) (cloud.ClusterAccess, error) {
	name := nameFromARN(ref)
	cfg := p.awsConfig(a, region)
	client := eks.NewFromConfig(cfg, func(o *eks.Options) {
		if p.cfg.EKSEndpoint != "" {
			o.BaseEndpoint = aws.String(p.cfg.EKSEndpoint)
		}
	})
	out, err := client.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
	if err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("describing EKS cluster %q: %w", name, classify(err))
	}
	c := out.Cluster
	if v := c.ResourcesVpcConfig; v != nil && !v.EndpointPublicAccess {
		return cloud.ClusterAccess{}, cloud.ErrPrivateEndpoint
	}
	var ca []byte
	if c.CertificateAuthority != nil && c.CertificateAuthority.Data != nil {
		if ca, err = base64.StdEncoding.DecodeString(*c.CertificateAuthority.Data); err != nil {
			return cloud.ClusterAccess{}, fmt.Errorf("EKS cluster %q: its CA: %w", name, err)
		}
	}
	stsc := p.sts(cfg)
	id, err := stsc.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return cloud.ClusterAccess{}, classify(err)
	}
	principal := PrincipalARN(aws.ToString(id.Arn))
	_, err = client.CreateAccessEntry(ctx, &eks.CreateAccessEntryInput{ClusterName: aws.String(name), PrincipalArn: aws.String(principal)})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return cloud.ClusterAccess{}, fmt.Errorf("creating an EKS access entry for %s: %w", principal, classify(err))
	}
	if _, err := client.AssociateAccessPolicy(ctx, &eks.AssociateAccessPolicyInput{
		ClusterName: aws.String(name), PrincipalArn: aws.String(principal), PolicyArn: aws.String(AdminPolicyARN),
		AccessScope: &types.AccessScope{Type: types.AccessScopeTypeCluster},
	}); err != nil {
		return cloud.ClusterAccess{}, fmt.Errorf("associating %s with %s: %w", AdminPolicyARN, principal, classify(err))
	}
	token, err := Token(ctx, stsc, name)
	if err != nil {
		return cloud.ClusterAccess{}, err
	}
	return cloud.ClusterAccess{Server: aws.ToString(c.Endpoint), CAData: ca, BearerToken: token}, nil
}

// Token returns an EKS bearer token for cluster: a presigned STS
// GetCallerIdentity URL, valid 15 minutes, whose signature covers the
// cluster's name.
func Token(ctx context.Context, client *sts.Client, cluster string) (string, error) {
	req, err := sts.NewPresignClient(client).PresignGetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}, func(o *sts.PresignOptions) {
		o.ClientOptions = append(o.ClientOptions, func(so *sts.Options) {
			so.APIOptions = append(so.APIOptions, smithyhttp.SetHeaderValue(ClusterIDHeader, cluster), smithyhttp.SetHeaderValue("X-Amz-Expires", "60"))
		})
	})
	if err != nil {
		return "", fmt.Errorf("presigning an EKS token: %w", classify(err))
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(req.URL)), nil
}

// PrincipalARN is the IAM principal of a caller identity: an assumed
// role's session ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION)
// becomes the role's (arn:aws:iam::ACCOUNT:role/ROLE).
func PrincipalARN(arn string) string {
	rest, ok := strings.CutPrefix(arn, "arn:aws:sts::")
	if !ok {
		return arn
	}
	account, path, ok := strings.Cut(rest, ":assumed-role/")
	if !ok {
		return arn
	}
	role, _, _ := strings.Cut(path, "/")
	return "arn:aws:iam::" + account + ":role/" + role
}
