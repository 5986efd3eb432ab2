package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v6"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
	"github.com/eco-project/eco/cloud/azure"
	"github.com/eco-project/eco/cloud/azure/azurefake"
	"github.com/eco-project/eco/cloud/gcp"
	"github.com/eco-project/eco/cloud/gcp/gcpfake"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// TestOneClickInstallAKS: an AKS cluster imported from a cloud account is
// installed by the hub itself — the (fake) AKS credential API hands out
// the local cluster's URL and admin credentials, the hub applies the
// install YAML with them, and the agent it describes connects. A private
// cluster is refused with the reason, and keeps the copy-the-YAML flow.
func TestOneClickInstallAKS(t *testing.T) {
	ctx := t.Context()
	const sub = "00000000-0000-0000-0000-0000000000e2"
	f := azurefake.New()
	t.Cleanup(f.Close)
	f.AddSecret("tenant-e2e", "eco-hub", "s3cret", sub)
	public := azurefake.ResourceID(sub, "rg-e2e", "local")
	private := azurefake.ResourceID(sub, "rg-e2e", "vault")
	managed := func(id, name string, priv bool) *armcontainerservice.ManagedCluster {
		return &armcontainerservice.ManagedCluster{ID: to.Ptr(id), Name: to.Ptr(name), Location: to.Ptr("westeurope"),
			Properties: &armcontainerservice.ManagedClusterProperties{ProvisioningState: to.Ptr("Succeeded"),
				PowerState: &armcontainerservice.PowerState{Code: to.Ptr(armcontainerservice.CodeRunning)}, CurrentKubernetesVersion: to.Ptr("1.34.4"),
				Fqdn: to.Ptr(name + ".hcp.westeurope.azmk8s.io"), APIServerAccessProfile: &armcontainerservice.ManagedClusterAPIServerAccessProfile{EnablePrivateCluster: to.Ptr(priv)}}}
	}
	f.SetClusters(sub, managed(public, "local", false), managed(private, "vault", true))
	kc, err := os.ReadFile(cluster.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	f.SetKubeconfig(public, kc)

	dir := t.TempDir()
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(t),
		Configure: func(c *hub.Config) {
			c.CloudProviders = map[store.Provider]cloud.Provider{
				store.ProviderAKS: azure.New(azure.Config{Cloud: f.Cloud(), Transport: f.Client(), Retry: policy.RetryOptions{MaxRetries: -1}}),
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	var acct cloud.AccountInfo
	if err := h.Do(ctx, http.MethodPost, "/api/v1/cloud/accounts", "", map[string]any{"name": "e2e-azure", "provider": "aks", "scopes": []string{sub},
		"credentials": map[string]string{"tenantId": "tenant-e2e", "clientId": "eco-hub", "clientSecret": "s3cret"}}, &acct); err != nil {
		t.Fatal(err)
	}
	var imp struct{ Results []cloud.ImportResult }
	if err := h.Do(ctx, http.MethodPost, "/api/v1/cloud/accounts/"+acct.ID+"/import", "", map[string]any{"clusters": []map[string]string{
		{"scope": sub, "ref": public}, {"scope": sub, "ref": private}}}, &imp); err != nil {
		t.Fatal(err)
	}
	id, vault := imp.Results[0].ClusterID, imp.Results[1].ClusterID
	if id == "" || vault == "" {
		t.Fatalf("import: %+v", imp.Results)
	}

	err = h.Do(ctx, http.MethodPost, "/api/v1/clusters/"+vault+"/cloud-install", "", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "no public endpoint") {
		t.Errorf("one-click install of a private cluster: %v, want 409 with the reason", err)
	}

	t.Cleanup(func() {
		cluster.Kubectl(context.Background(), "delete", "namespace", install.DefaultNamespace, "--ignore-not-found", "--wait=true", "--timeout=60s").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrolebinding", "eco:admins", "eco:editors", "eco:viewers", "eco-agent", "--ignore-not-found").Run()
		cluster.Kubectl(context.Background(), "delete", "clusterrole", "eco-agent", "--ignore-not-found").Run()
	})
	var res hub.CloudInstall
	if err := h.Do(ctx, http.MethodPost, "/api/v1/clusters/"+id+"/cloud-install", "", nil, &res); err != nil {
		t.Fatalf("one-click install: %v", err)
	}
	if !strings.Contains(fmt.Sprint(res.Applied), "Secret/"+install.DefaultNamespace+"/"+install.AgentName) {
		t.Errorf("applied %v; want the agent's Secret among them", res.Applied)
	}
	// The agent the applied YAML describes (run in this process, as the
	// local cluster runs no real pods) connects.
	setup, err := localeco.Installed(ctx, cluster, id, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, hub: h, id: id, setup: setup}
	w.startAgent(setup.AgentConfig())
	t.Cleanup(func() { w.stopAgent() })
	if _, err := h.WaitState(ctx, id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var hist struct{ Items []hub.TransitionJSON }
	if err := h.Do(ctx, http.MethodGet, "/api/v1/clusters/"+id+"/history", "", nil, &hist); err != nil || !strings.Contains(fmt.Sprint(hist.Items), "applied by the hub with credentials from AKS") {
		t.Errorf("history: %+v, %v", hist.Items, err)
	}
}

// TestOneClickInstallEKS: an EKS cluster is installed by the hub itself —
// an access entry with AmazonEKSClusterAdminPolicy for the account's
// principal and a presigned STS token — against a real local API server
// that authenticates the token through the (fake) EKS webhook, as EKS's
// own authenticator does; the agent connects.
func TestOneClickInstallEKS(t *testing.T) {
	ctx := t.Context()
	f := awsfake.New()
	t.Cleanup(f.Close)
	f.AddKey("AKIDE2E", "s3cret")
	webhook := httptest.NewServer(f.TokenReviewHandler("shop"))
	t.Cleanup(webhook.Close)
	dir := t.TempDir()
	wcfg := filepath.Join(dir, "webhook.kubeconfig")
	if err := os.WriteFile(wcfg, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: eks, cluster: {server: %q}}]
users: [{name: kube-apiserver, user: {}}]
contexts: [{name: webhook, context: {cluster: eks, user: kube-apiserver}}]
current-context: webhook
`, webhook.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	eksCluster := clustertest.Start(t, localcluster.Config{Name: "eks", APIServerArgs: []string{
		"--authentication-token-webhook-config-file=" + wcfg, "--authentication-token-webhook-version=v1"}})
	f.SetClusters("eu-west-1", awsfake.Cluster{Name: "shop", Status: "ACTIVE", Version: "1.34", Endpoint: eksCluster.URL,
		CAData: base64.StdEncoding.EncodeToString(eksCluster.CAPEM)})

	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(t),
		Configure: func(c *hub.Config) {
			c.CloudProviders = map[store.Provider]cloud.Provider{store.ProviderEKS: aws.New(aws.Config{EKSEndpoint: f.URL, STSEndpoint: f.URL, MaxAttempts: 1})}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var acct cloud.AccountInfo
	if err := h.Do(ctx, http.MethodPost, "/api/v1/cloud/accounts", "", map[string]any{"name": "e2e-aws", "provider": "eks", "scopes": []string{"eu-west-1"},
		"credentials": map[string]string{"accessKeyId": "AKIDE2E", "secretAccessKey": "s3cret"}}, &acct); err != nil {
		t.Fatal(err)
	}
	var imp struct{ Results []cloud.ImportResult }
	if err := h.Do(ctx, http.MethodPost, "/api/v1/cloud/accounts/"+acct.ID+"/import", "", map[string]any{"clusters": []map[string]string{
		{"scope": "eu-west-1", "ref": f.ARN("eu-west-1", "shop")}}}, &imp); err != nil || imp.Results[0].ClusterID == "" {
		t.Fatalf("import: %+v, %v", imp.Results, err)
	}
	id := imp.Results[0].ClusterID
	var res hub.CloudInstall
	if err := h.Do(ctx, http.MethodPost, "/api/v1/clusters/"+id+"/cloud-install", "", nil, &res); err != nil {
		t.Fatalf("one-click install: %v", err)
	}
	if got := f.AccessPolicies("shop", "arn:aws:iam::123456789012:user/AKIDE2E"); !strings.Contains(fmt.Sprint(got), "AmazonEKSClusterAdminPolicy") {
		t.Errorf("access entry policies: %v", got)
	}
	setup, err := localeco.Installed(ctx, eksCluster, id, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, hub: h, id: id, setup: setup}
	w.startAgent(setup.AgentConfig())
	t.Cleanup(func() { w.stopAgent() })
	if _, err := h.WaitState(ctx, id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestOneClickInstallGKE: a GKE cluster is installed by the hub itself
// with an OAuth token of the account's service account, from the key's
// (fake) token URI, against a real local API server that authenticates
// it through the fake's webhook; the agent connects.
func TestOneClickInstallGKE(t *testing.T) {
	ctx := t.Context()
	f, err := gcpfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	key, err := f.NewKey("eco-hub@proj-e2e.iam.gserviceaccount.com", "proj-e2e")
	if err != nil {
		t.Fatal(err)
	}
	webhook := httptest.NewServer(f.TokenReviewHandler())
	t.Cleanup(webhook.Close)
	dir := t.TempDir()
	wcfg := filepath.Join(dir, "webhook.kubeconfig")
	if err := os.WriteFile(wcfg, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: gke, cluster: {server: %q}}]
users: [{name: kube-apiserver, user: {}}]
contexts: [{name: webhook, context: {cluster: gke, user: kube-apiserver}}]
current-context: webhook
`, webhook.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	gkeCluster := clustertest.Start(t, localcluster.Config{Name: "gke", APIServerArgs: []string{
		"--authentication-token-webhook-config-file=" + wcfg, "--authentication-token-webhook-version=v1"}})
	f.SetClusters("proj-e2e", &containerpb.Cluster{Name: "shop", Location: "europe-west1", Status: containerpb.Cluster_RUNNING,
		CurrentMasterVersion: "1.34.4-gke.1", Endpoint: strings.TrimPrefix(gkeCluster.URL, "https://"),
		MasterAuth: &containerpb.MasterAuth{ClusterCaCertificate: base64.StdEncoding.EncodeToString(gkeCluster.CAPEM)}})

	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: filepath.Join(dir, "hub"), HeartbeatInterval: time.Second, Logger: logger(t),
		Configure: func(c *hub.Config) {
			c.CloudProviders = map[store.Provider]cloud.Provider{store.ProviderGKE: gcp.New(gcp.Config{
				Endpoint: f.Endpoint, TokenURI: f.TokenURI, ClientOptions: f.ClientOptions(), HTTPClient: f.HTTPClient()})}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var acct cloud.AccountInfo
	if err := h.Do(ctx, http.MethodPost, "/api/v1/cloud/accounts", "", map[string]any{"name": "e2e-gcp", "provider": "gke", "scopes": []string{"proj-e2e"},
		"credentials": map[string]string{"serviceAccountKey": string(key)}}, &acct); err != nil {
		t.Fatal(err)
	}
	var imp struct{ Results []cloud.ImportResult }
	if err := h.Do(ctx, http.MethodPost, "/api/v1/cloud/accounts/"+acct.ID+"/import", "", map[string]any{"clusters": []map[string]string{
		{"scope": "proj-e2e", "ref": gcpfake.SelfLink("proj-e2e", "europe-west1", "shop")}}}, &imp); err != nil || imp.Results[0].ClusterID == "" {
		t.Fatalf("import: %+v, %v", imp.Results, err)
	}
	id := imp.Results[0].ClusterID
	var res hub.CloudInstall
	if err := h.Do(ctx, http.MethodPost, "/api/v1/clusters/"+id+"/cloud-install", "", nil, &res); err != nil {
		t.Fatalf("one-click install: %v", err)
	}
	setup, err := localeco.Installed(ctx, gkeCluster, id, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, hub: h, id: id, setup: setup}
	w.startAgent(setup.AgentConfig())
	t.Cleanup(func() { w.stopAgent() })
	if _, err := h.WaitState(ctx, id, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
