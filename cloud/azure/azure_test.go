package azure_test

import (
	"errors"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v6"
	"go.uber.org/goleak"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/azure"
	"github.com/eco-project/eco/cloud/azure/azurefake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

func mc(id, name, loc, ps string, power armcontainerservice.Code, pools ...*armcontainerservice.ManagedClusterAgentPoolProfile) *armcontainerservice.ManagedCluster {
	return &armcontainerservice.ManagedCluster{ID: to.Ptr(id), Name: to.Ptr(name), Location: to.Ptr(loc), Properties: &armcontainerservice.ManagedClusterProperties{
		ProvisioningState: to.Ptr(ps), PowerState: &armcontainerservice.PowerState{Code: to.Ptr(power)},
		KubernetesVersion: to.Ptr("1.30"), CurrentKubernetesVersion: to.Ptr("1.30.4"), Fqdn: to.Ptr(name + ".hcp." + loc + ".azmk8s.io"),
		AgentPoolProfiles: pools,
	}}
}

func pool(name, ps string) *armcontainerservice.ManagedClusterAgentPoolProfile {
	return &armcontainerservice.ManagedClusterAgentPoolProfile{Name: to.Ptr(name), ProvisioningState: to.Ptr(ps)}
}

func TestMapCluster(t *testing.T) {
	run, stop := armcontainerservice.CodeRunning, armcontainerservice.CodeStopped
	tests := []struct {
		name string
		mc   *armcontainerservice.ManagedCluster
		want cloud.Health
	}{
		{"succeeded", mc("i", "n", "l", "Succeeded", run, pool("p", "Succeeded")), cloud.Health{State: cloud.Healthy}},
		{"creating", mc("i", "n", "l", "Creating", run), cloud.Health{State: cloud.Provisioning, Reason: "provisioning state Creating"}},
		{"upgrading", mc("i", "n", "l", "Upgrading", run), cloud.Health{State: cloud.Updating, Reason: "provisioning state Upgrading"}},
		{"scaling", mc("i", "n", "l", "Scaling", run), cloud.Health{State: cloud.Updating, Reason: "provisioning state Scaling"}},
		{"deleting", mc("i", "n", "l", "Deleting", run), cloud.Health{State: cloud.Deleting, Reason: "provisioning state Deleting"}},
		{"failed", mc("i", "n", "l", "Failed", run), cloud.Health{State: cloud.Failed, Reason: "provisioning state Failed"}},
		{"canceled", mc("i", "n", "l", "Canceled", run), cloud.Health{State: cloud.Degraded, Reason: "provisioning state Canceled (the last operation was canceled)"}},
		{"stopped", mc("i", "n", "l", "Succeeded", stop), cloud.Health{State: cloud.Stopped, Reason: "power state Stopped"}},
		{"failed agent pool", mc("i", "n", "l", "Succeeded", run, pool("p", "Failed")), cloud.Health{State: cloud.Degraded, Reason: "agent pool p provisioning state Failed"}},
		{"agent pool scaling", mc("i", "n", "l", "Succeeded", run, pool("p", "Scaling")), cloud.Health{State: cloud.Updating, Reason: "agent pools changing"}},
		{"a new state", mc("i", "n", "l", "Hibernating", run), cloud.Health{State: cloud.Unknown, Reason: "provisioning state Hibernating"}},
		{"no properties", &armcontainerservice.ManagedCluster{}, cloud.Health{State: cloud.Unknown, Reason: "no properties"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := azure.MapCluster(tt.mc); got != tt.want {
				t.Errorf("MapCluster = %+v, want %+v", got, tt.want)
			}
		})
	}
}

const sub = "00000000-0000-0000-0000-000000000001"

func newRig(t *testing.T) (*azurefake.Server, *azure.Provider, cloud.Account) {
	f := azurefake.New()
	t.Cleanup(f.Close)
	f.AddSecret("tenant-1", "client-1", "s3cret", sub)
	p := azure.New(azure.Config{Cloud: f.Cloud(), Transport: f.Client(), Retry: policy.RetryOptions{MaxRetries: -1}})
	return f, p, cloud.Account{ID: "a-1", Provider: "aks", Scopes: []string{sub},
		Credentials: cloud.Credentials{TenantID: "tenant-1", ClientID: "client-1", ClientSecret: "s3cret"}}
}

func TestValidate(t *testing.T) {
	f, p, a := newRig(t)
	certPEM, err := f.AddCertificate("tenant-1", "client-cert", sub)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		creds    cloud.Credentials
		scope    string
		rejected bool
	}{
		{"secret", a.Credentials, sub, false},
		{"certificate", cloud.Credentials{TenantID: "tenant-1", ClientID: "client-cert", ClientCertificate: string(certPEM)}, sub, false},
		{"wrong secret", cloud.Credentials{TenantID: "tenant-1", ClientID: "client-1", ClientSecret: "guess"}, sub, true},
		{"unknown tenant", cloud.Credentials{TenantID: "tenant-2", ClientID: "client-1", ClientSecret: "s3cret"}, sub, true},
		{"a subscription it may not read", a.Credentials, "00000000-0000-0000-0000-000000000002", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acct := a
			acct.Credentials, acct.Scopes = tt.creds, []string{tt.scope}
			err := p.Validate(t.Context(), acct)
			if tt.rejected != errors.Is(err, cloud.ErrCredentialsRejected) || (!tt.rejected && err != nil) {
				t.Fatalf("Validate = %v, want rejected=%v", err, tt.rejected)
			}
		})
	}
}

func TestDiscoverAndHealth(t *testing.T) {
	f, p, a := newRig(t)
	we := azurefake.ResourceID(sub, "rg-eu", "prod")
	us := azurefake.ResourceID(sub, "rg-us", "prod")
	priv := mc(us, "prod", "eastus", "Succeeded", armcontainerservice.CodeRunning)
	priv.Properties.APIServerAccessProfile = &armcontainerservice.ManagedClusterAPIServerAccessProfile{EnablePrivateCluster: to.Ptr(true)}
	f.SetClusters(sub, mc(we, "prod", "westeurope", "Succeeded", armcontainerservice.CodeRunning), priv,
		mc(azurefake.ResourceID(sub, "rg-eu", "new"), "new", "westeurope", "Creating", armcontainerservice.CodeRunning))
	cs, err := p.Discover(t.Context(), a, sub)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Fatalf("discovered %d, want 3", len(cs))
	}
	want := cloud.Cluster{Name: "prod", Scope: sub, Region: "westeurope", Ref: we, Version: "1.30.4",
		Endpoint: "https://prod.hcp.westeurope.azmk8s.io:443", Health: cloud.Health{State: cloud.Healthy}}
	if cs[0] != want {
		t.Errorf("got %+v\nwant %+v", cs[0], want)
	}
	if !cs[1].Private {
		t.Errorf("a private cluster is not private: %+v", cs[1])
	}
	if ok, _ := cs[2].Importable(); ok {
		t.Errorf("a Creating cluster is importable")
	}
	before := f.Calls(sub)
	gone := azurefake.ResourceID(sub, "rg-eu", "gone")
	hs, err := p.Health(t.Context(), a, sub, []string{we, us, gone})
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(sub) - before; n != 1 {
		t.Errorf("Health made %d list calls, want 1", n)
	}
	// The service principal's token is reused across calls.
	tokens := f.TokenRequests()
	if _, err := p.Health(t.Context(), a, sub, []string{we}); err != nil || f.TokenRequests() != tokens {
		t.Errorf("another poll: %v; %d token requests, want none", err, f.TokenRequests()-tokens)
	}
	if _, ok := hs[gone]; ok || len(hs) != 2 {
		t.Errorf("Health = %v", hs)
	}
	f.Throttle(1)
	if _, err := p.Health(t.Context(), a, sub, []string{we}); !errors.Is(err, cloud.ErrThrottled) {
		t.Errorf("throttled: %v", err)
	}
	f.ExpireSecret("tenant-1", "client-1")
	if _, err := p.Health(t.Context(), a, sub, []string{we}); !errors.Is(err, cloud.ErrCredentialsRejected) {
		t.Errorf("expired secret: %v", err)
	}
	f.Revoke("tenant-1", "client-1")
	if _, err := p.Health(t.Context(), a, sub, []string{we}); !errors.Is(err, cloud.ErrCredentialsRejected) {
		t.Errorf("revoked: %v", err)
	}
}
