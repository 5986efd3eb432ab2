package aws_test

import (
	"errors"
	"strings"
	"testing"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks/types"
	"go.uber.org/goleak"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMapCluster(t *testing.T) {
	issue := &types.ClusterHealth{Issues: []types.ClusterIssue{{Code: "Ec2SubnetNotFound", Message: sdkaws.String("subnet-1 is gone")}}}
	tests := []struct {
		name   string
		c      types.Cluster
		groups []types.Nodegroup
		want   cloud.Health
	}{
		{"creating", types.Cluster{Status: "CREATING"}, nil, cloud.Health{State: cloud.Provisioning, Reason: "CREATING"}},
		{"pending", types.Cluster{Status: "PENDING"}, nil, cloud.Health{State: cloud.Provisioning, Reason: "PENDING"}},
		{"updating", types.Cluster{Status: "UPDATING"}, nil, cloud.Health{State: cloud.Updating, Reason: "UPDATING"}},
		{"deleting", types.Cluster{Status: "DELETING"}, nil, cloud.Health{State: cloud.Deleting, Reason: "DELETING"}},
		{"failed", types.Cluster{Status: "FAILED", Health: issue}, nil, cloud.Health{State: cloud.Failed, Reason: "FAILED; Ec2SubnetNotFound: subnet-1 is gone"}},
		{"active", types.Cluster{Status: "ACTIVE"}, []types.Nodegroup{{NodegroupName: sdkaws.String("ng"), Status: "ACTIVE"}}, cloud.Health{State: cloud.Healthy}},
		{"active with an issue", types.Cluster{Status: "ACTIVE", Health: issue}, nil, cloud.Health{State: cloud.Degraded, Reason: "Ec2SubnetNotFound: subnet-1 is gone"}},
		{"degraded node group", types.Cluster{Status: "ACTIVE"}, []types.Nodegroup{{NodegroupName: sdkaws.String("ng"), Status: "DEGRADED",
			Health: &types.NodegroupHealth{Issues: []types.Issue{{Code: "AsgInstanceLaunchFailures", Message: sdkaws.String("no capacity")}}}}},
			cloud.Health{State: cloud.Degraded, Reason: "node group ng DEGRADED; AsgInstanceLaunchFailures: no capacity"}},
		{"node group create failed", types.Cluster{Status: "ACTIVE"}, []types.Nodegroup{{NodegroupName: sdkaws.String("ng"), Status: "CREATE_FAILED"}},
			cloud.Health{State: cloud.Degraded, Reason: "node group ng CREATE_FAILED"}},
		{"node group updating", types.Cluster{Status: "ACTIVE"}, []types.Nodegroup{{NodegroupName: sdkaws.String("ng"), Status: "UPDATING"}},
			cloud.Health{State: cloud.Updating, Reason: "node groups changing"}},
		{"a status EKS adds later", types.Cluster{Status: "HIBERNATING"}, nil, cloud.Health{State: cloud.Unknown, Reason: "EKS status HIBERNATING"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aws.MapCluster(&tt.c, tt.groups); got != tt.want {
				t.Errorf("MapCluster = %+v, want %+v", got, tt.want)
			}
		})
	}
}

type rig struct {
	fake *awsfake.Server
	p    *aws.Provider
	acct cloud.Account
}

func newRig(t *testing.T) *rig {
	f := awsfake.New()
	t.Cleanup(f.Close)
	f.AddKey("AKIDECO", "s3cret")
	p, a := newProvider(f)
	return &rig{fake: f, p: p, acct: a}
}

func newProvider(f *awsfake.Server) (*aws.Provider, cloud.Account) {
	p := aws.New(aws.Config{EKSEndpoint: f.URL, STSEndpoint: f.URL, MaxAttempts: 1, HTTPClient: f.Client()})
	return p, cloud.Account{ID: "a-1", Provider: "eks", Scopes: []string{"eu-west-1", "us-east-1"},
		Credentials: cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret"}}
}

func TestValidate(t *testing.T) {
	r := newRig(t)
	r.fake.AddRole("arn:aws:iam::123456789012:role/eco", "ext-42")
	tests := []struct {
		name     string
		creds    cloud.Credentials
		rejected bool
	}{
		{"access keys", cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret"}, false},
		{"unknown key", cloud.Credentials{AccessKeyID: "AKIDNOPE", SecretAccessKey: "s3cret"}, true},
		{"wrong secret", cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "guess"}, true},
		{"role with its external ID", cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret", RoleARN: "arn:aws:iam::123456789012:role/eco", ExternalID: "ext-42"}, false},
		{"role with another external ID", cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret", RoleARN: "arn:aws:iam::123456789012:role/eco", ExternalID: "nope"}, true},
		{"a role that does not trust us", cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret", RoleARN: "arn:aws:iam::123456789012:role/other"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := r.acct
			a.Credentials = tt.creds
			err := r.p.Validate(t.Context(), a)
			if tt.rejected != errors.Is(err, cloud.ErrCredentialsRejected) || (!tt.rejected && err != nil) {
				t.Fatalf("Validate = %v, want rejected=%v", err, tt.rejected)
			}
		})
	}
	if n := r.fake.Calls("AssumeRole", "sts"); n != 3 {
		t.Errorf("AssumeRole called %d times, want 3", n)
	}
	// The role's session is reused by later calls.
	a := r.acct
	a.Credentials = tests[3].creds
	r.fake.SetClusters("eu-west-1")
	for range 3 {
		if _, err := r.p.Health(t.Context(), a, "eu-west-1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.fake.Calls("AssumeRole", "sts"); n != 3 {
		t.Errorf("after 3 polls AssumeRole was called %d times in all, want still 3", n)
	}
}

func TestDiscoverAndHealthAcrossRegions(t *testing.T) {
	r := newRig(t)
	r.fake.SetClusters("eu-west-1",
		awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.31", Endpoint: "https://eu.example", Groups: []awsfake.Nodegroup{{Name: "ng1", Status: "ACTIVE"}}},
		awsfake.Cluster{Name: "new", Status: "CREATING", Version: "1.32"},
	)
	r.fake.SetClusters("us-east-1",
		awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.30", Private: true, Groups: []awsfake.Nodegroup{{Name: "ng1", Status: "DEGRADED", Issues: []awsfake.Issue{{Code: "AsgInstanceLaunchFailures", Message: "no capacity"}}}}},
	)
	eu, err := r.p.Discover(t.Context(), r.acct, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	us, err := r.p.Discover(t.Context(), r.acct, "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(eu) != 2 || len(us) != 1 {
		t.Fatalf("discovered %d in eu-west-1, %d in us-east-1; want 2 and 1", len(eu), len(us))
	}
	want := cloud.Cluster{Name: "prod", Scope: "eu-west-1", Region: "eu-west-1", Ref: r.fake.ARN("eu-west-1", "prod"), Version: "1.31",
		Endpoint: "https://eu.example", Health: cloud.Health{State: cloud.Healthy}}
	if eu[0] != want {
		t.Errorf("eu-west-1 prod = %+v\nwant %+v", eu[0], want)
	}
	if ok, why := eu[1].Importable(); ok || eu[1].Health.State != cloud.Provisioning {
		t.Errorf("a CREATING cluster: health %v, importable %v (%s)", eu[1].Health, ok, why)
	}
	if !us[0].Private || us[0].Ref == eu[0].Ref || us[0].Health.State != cloud.Degraded {
		t.Errorf("us-east-1 prod = %+v", us[0])
	}

	// Health: one ListClusters per region; a cluster deleted in the
	// cloud is missing from the answer.
	refs := []string{eu[0].Ref, r.fake.ARN("eu-west-1", "gone")}
	before := r.fake.Calls("ListClusters", "eu-west-1")
	hs, err := r.p.Health(t.Context(), r.acct, "eu-west-1", refs)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.fake.Calls("ListClusters", "eu-west-1") - before; n != 1 {
		t.Errorf("Health made %d ListClusters calls, want 1", n)
	}
	if len(hs) != 1 || hs[eu[0].Ref].State != cloud.Healthy {
		t.Errorf("Health = %v", hs)
	}
}

func TestErrors(t *testing.T) {
	r := newRig(t)
	r.fake.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE"})
	r.fake.Throttle(1)
	if _, err := r.p.Health(t.Context(), r.acct, "eu-west-1", []string{r.fake.ARN("eu-west-1", "prod")}); !errors.Is(err, cloud.ErrThrottled) {
		t.Errorf("throttled: got %v, want ErrThrottled", err)
	}
	if _, err := r.p.Health(t.Context(), r.acct, "eu-west-1", []string{r.fake.ARN("eu-west-1", "prod")}); err != nil {
		t.Errorf("after the throttle: %v", err)
	}
	// An assumed role's session that expired.
	r.fake.AddRole("arn:aws:iam::123456789012:role/eco", "")
	role := r.acct
	role.Credentials.RoleARN = "arn:aws:iam::123456789012:role/eco"
	if _, err := r.p.Discover(t.Context(), role, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	r.fake.ExpireSessions()
	if _, err := r.p.Discover(t.Context(), role, "eu-west-1"); !errors.Is(err, cloud.ErrCredentialsRejected) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired session: got %v, want ErrCredentialsRejected (expired)", err)
	}
	r.fake.RemoveKey("AKIDECO")
	if _, err := r.p.Discover(t.Context(), r.acct, "eu-west-1"); !errors.Is(err, cloud.ErrCredentialsRejected) {
		t.Errorf("revoked key: got %v, want ErrCredentialsRejected", err)
	}
}
