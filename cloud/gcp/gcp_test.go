package gcp_test

import (
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/container/apiv1/containerpb"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/gcp"
	"github.com/eco-project/eco/cloud/gcp/gcpfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMapCluster(t *testing.T) {
	cond := []*containerpb.StatusCondition{{Message: "Node pool auto-repair failing", CanonicalCode: code.Code_RESOURCE_EXHAUSTED}}
	run := containerpb.Cluster_RUNNING
	tests := []struct {
		name string
		c    *containerpb.Cluster
		want cloud.Health
	}{
		{"provisioning", &containerpb.Cluster{Status: containerpb.Cluster_PROVISIONING}, cloud.Health{State: cloud.Provisioning, Reason: "PROVISIONING"}},
		//lint:ignore SA1019 the deprecated fields GKE still fills, which the mapping reads
		{"reconciling", &containerpb.Cluster{Status: containerpb.Cluster_RECONCILING, StatusMessage: "upgrading master"}, cloud.Health{State: cloud.Updating, Reason: "RECONCILING; upgrading master"}},
		{"stopping", &containerpb.Cluster{Status: containerpb.Cluster_STOPPING}, cloud.Health{State: cloud.Deleting, Reason: "STOPPING"}},
		//lint:ignore SA1019 the deprecated fields GKE still fills, which the mapping reads
		{"error", &containerpb.Cluster{Status: containerpb.Cluster_ERROR, StatusMessage: "quota"}, cloud.Health{State: cloud.Failed, Reason: "ERROR; quota"}},
		{"degraded", &containerpb.Cluster{Status: containerpb.Cluster_DEGRADED, Conditions: cond}, cloud.Health{State: cloud.Degraded, Reason: "DEGRADED; RESOURCE_EXHAUSTED: Node pool auto-repair failing"}},
		{"running", &containerpb.Cluster{Status: run, NodePools: []*containerpb.NodePool{{Name: "default", Status: containerpb.NodePool_RUNNING}}}, cloud.Health{State: cloud.Healthy}},
		{"running with a condition", &containerpb.Cluster{Status: run, Conditions: cond}, cloud.Health{State: cloud.Degraded, Reason: "RESOURCE_EXHAUSTED: Node pool auto-repair failing"}},
		{"node pool with errors", &containerpb.Cluster{Status: run, NodePools: []*containerpb.NodePool{{Name: "np", Status: containerpb.NodePool_RUNNING_WITH_ERROR, StatusMessage: "2 nodes failed"}}},
			cloud.Health{State: cloud.Degraded, Reason: "node pool np RUNNING_WITH_ERROR; 2 nodes failed"}},
		{"node pool reconciling", &containerpb.Cluster{Status: run, NodePools: []*containerpb.NodePool{{Name: "np", Status: containerpb.NodePool_RECONCILING}}},
			cloud.Health{State: cloud.Updating, Reason: "node pools changing"}},
		{"unspecified", &containerpb.Cluster{}, cloud.Health{State: cloud.Unknown, Reason: "GKE status STATUS_UNSPECIFIED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcp.MapCluster(tt.c); got != tt.want {
				t.Errorf("MapCluster = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func newFake(t *testing.T) (*gcpfake.Server, *gcp.Provider, cloud.Account) {
	f, err := gcpfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	key, err := f.NewKey("eco@proj-1.iam.gserviceaccount.com", "proj-1")
	if err != nil {
		t.Fatal(err)
	}
	p := gcp.New(gcp.Config{Endpoint: f.Endpoint, TokenURI: f.TokenURI, ClientOptions: f.ClientOptions()})
	return f, p, cloud.Account{ID: "a-1", Provider: "gke", Scopes: []string{"proj-1"}, Credentials: cloud.Credentials{ServiceAccountKey: string(key)}}
}

func TestDiscoverAndHealth(t *testing.T) {
	f, p, a := newFake(t)
	f.SetClusters("proj-1",
		&containerpb.Cluster{Name: "prod", Location: "europe-west1", Status: containerpb.Cluster_RUNNING, CurrentMasterVersion: "1.31.2-gke.1", Endpoint: "34.1.2.3"},
		&containerpb.Cluster{Name: "prod", Location: "us-central1", Status: containerpb.Cluster_RUNNING, CurrentMasterVersion: "1.30.5-gke.2",
			//lint:ignore SA1019 the deprecated fields GKE still fills, which the mapping reads
			PrivateClusterConfig: &containerpb.PrivateClusterConfig{EnablePrivateEndpoint: true}},
		&containerpb.Cluster{Name: "new", Location: "us-central1-a", Status: containerpb.Cluster_PROVISIONING},
	)
	if err := p.Validate(t.Context(), a); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	cs, err := p.Discover(t.Context(), a, "proj-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Fatalf("discovered %d clusters, want 3", len(cs))
	}
	want := cloud.Cluster{Name: "prod", Scope: "proj-1", Region: "europe-west1", Ref: gcpfake.SelfLink("proj-1", "europe-west1", "prod"),
		Version: "1.31.2-gke.1", Endpoint: "https://34.1.2.3", Health: cloud.Health{State: cloud.Healthy}}
	if cs[0] != want {
		t.Errorf("got %+v\nwant %+v", cs[0], want)
	}
	if !cs[1].Private || cs[1].Ref == cs[0].Ref {
		t.Errorf("us-central1 prod = %+v", cs[1])
	}
	if ok, _ := cs[2].Importable(); ok {
		t.Errorf("a PROVISIONING cluster is importable")
	}
	before := f.Calls("proj-1")
	gone := gcpfake.SelfLink("proj-1", "europe-west1", "gone")
	unreachable := gcpfake.SelfLink("proj-1", "asia-east1-b", "far")
	f.SetMissingZones("proj-1", "asia-east1-b")
	hs, err := p.Health(t.Context(), a, "proj-1", []string{cs[0].Ref, cs[2].Ref, gone, unreachable})
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Calls("proj-1") - before; n != 1 {
		t.Errorf("Health made %d calls, want 1", n)
	}
	if _, ok := hs[gone]; ok || hs[cs[0].Ref].State != cloud.Healthy || hs[cs[2].Ref].State != cloud.Provisioning || hs[unreachable].State != cloud.Unknown {
		t.Errorf("Health = %v", hs)
	}
}

func TestErrors(t *testing.T) {
	f, p, a := newFake(t)
	f.SetClusters("proj-1")
	f.Throttle(1)
	if _, err := p.Health(t.Context(), a, "proj-1", nil); !errors.Is(err, cloud.ErrThrottled) {
		t.Errorf("throttled: %v", err)
	}
	other := a
	other.Scopes = []string{"not-mine"}
	if err := p.Validate(t.Context(), other); !errors.Is(err, cloud.ErrCredentialsRejected) {
		t.Errorf("a project the account cannot see: %v", err)
	}
	bad := a
	bad.Credentials.ServiceAccountKey = `{"type":"service_account","client_email":"x@y","private_key":"k","token_uri":"https://evil.example/token"}`
	if err := p.Validate(t.Context(), bad); !errors.Is(err, cloud.ErrCredentialsRejected) {
		t.Errorf("a key with another token_uri: %v", err)
	}
	f.RevokeKey("eco@proj-1.iam.gserviceaccount.com")
	if err := p.Validate(t.Context(), a); !errors.Is(err, cloud.ErrCredentialsRejected) {
		t.Errorf("a revoked key: %v", err)
	}
}

func TestAccess(t *testing.T) {
	f, _, a := newFake(t)
	p := gcp.New(gcp.Config{Endpoint: f.Endpoint, TokenURI: f.TokenURI, ClientOptions: f.ClientOptions(), HTTPClient: f.HTTPClient()})
	f.SetClusters("proj-1",
		&containerpb.Cluster{Name: "shop", Location: "europe-west1", Status: containerpb.Cluster_RUNNING, Endpoint: "34.1.2.3",
			MasterAuth: &containerpb.MasterAuth{ClusterCaCertificate: "Y2EtZGF0YQ=="}},
		&containerpb.Cluster{Name: "vault", Location: "europe-west1", Status: containerpb.Cluster_RUNNING,
			//lint:ignore SA1019 the deprecated fields GKE still fills, which the mapping reads
			PrivateClusterConfig: &containerpb.PrivateClusterConfig{EnablePrivateEndpoint: true}})
	acc, err := p.Access(t.Context(), a, "proj-1", gcpfake.SelfLink("proj-1", "europe-west1", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	if acc.Server != "https://34.1.2.3" || string(acc.CAData) != "ca-data" {
		t.Errorf("Access = %+v", acc)
	}
	// The token came from the (fake) token URI, for the service account.
	if who, err := f.Authenticate(acc.BearerToken); err != nil || who != "eco@proj-1.iam.gserviceaccount.com" || !strings.HasPrefix(acc.BearerToken, "ya29.") {
		t.Errorf("token %q authenticates as %q, %v", acc.BearerToken, who, err)
	}
	if _, err := p.Access(t.Context(), a, "proj-1", gcpfake.SelfLink("proj-1", "europe-west1", "vault")); !errors.Is(err, cloud.ErrPrivateEndpoint) {
		t.Errorf("a private cluster: %v", err)
	}
}
