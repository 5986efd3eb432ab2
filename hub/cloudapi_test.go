package hub_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// newCloudEnv is a hub whose EKS provider talks to an awsfake.
func newCloudEnv(t *testing.T) (*env, *awsfake.Server) {
	f := awsfake.New()
	t.Cleanup(f.Close)
	f.AddKey("AKIDECO", "s3cret-never-shown")
	e := newEnvWith(t, envOpts{hub: func(c *hub.Config) {
		c.CloudProviders = map[store.Provider]cloud.Provider{
			store.ProviderEKS: aws.New(aws.Config{EKSEndpoint: f.URL, STSEndpoint: f.URL, MaxAttempts: 1}),
		}
		c.CloudPollInterval = 50 * time.Millisecond
		c.CloudFastPollInterval = 20 * time.Millisecond
	}})
	return e, f
}

const awsAccount = `{"name":"prod-aws","provider":"eks","scopes":["eu-west-1","us-east-1"],
	"credentials":{"accessKeyId":"AKIDECO","secretAccessKey":"s3cret-never-shown"}}`

func TestCloudAPI(t *testing.T) {
	e, f := newCloudEnv(t)
	f.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.31"}, awsfake.Cluster{Name: "new", Status: "CREATING"})
	f.SetClusters("us-east-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Version: "1.30", Private: true})

	// Credentials the cloud refuses are refused on save.
	if code, body := e.raw("POST", "/api/v1/cloud/accounts", e.admin, strings.Replace(awsAccount, "s3cret-never-shown", "wrong", 1), nil); code != 400 || !strings.Contains(body, "credentials rejected") {
		t.Errorf("an account with a wrong secret: %d %s", code, body)
	}
	code, body := e.raw("POST", "/api/v1/cloud/accounts", e.admin, awsAccount, nil)
	if code != 201 {
		t.Fatalf("create account: %d %s", code, body)
	}
	var acct cloud.AccountInfo
	if err := json.Unmarshal([]byte(body), &acct); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.raw("POST", "/api/v1/cloud/accounts", e.admin, awsAccount, nil); code != 409 {
		t.Errorf("the same account name twice: %d, want 409", code)
	}
	_, list := e.raw("GET", "/api/v1/cloud/accounts", e.admin, "", nil)
	for _, out := range []string{body, list} {
		if strings.Contains(out, "s3cret") || strings.Contains(out, "AKIDECO") {
			t.Errorf("the API returns credentials: %s", out)
		}
	}

	code, body = e.raw("GET", "/api/v1/cloud/accounts/"+acct.ID+"/clusters", e.admin, "", nil)
	var disc struct{ Clusters []cloud.Discovered }
	if code != 200 || json.Unmarshal([]byte(body), &disc) != nil || len(disc.Clusters) != 3 {
		t.Fatalf("discover: %d %s", code, body)
	}
	items := fmt.Sprintf(`{"clusters":[{"scope":"eu-west-1","ref":%q},{"scope":"us-east-1","ref":%q}]}`, f.ARN("eu-west-1", "prod"), f.ARN("us-east-1", "prod"))
	code, body = e.raw("POST", "/api/v1/cloud/accounts/"+acct.ID+"/import", e.admin, items, nil)
	var imp struct{ Results []cloud.ImportResult }
	if code != 200 || json.Unmarshal([]byte(body), &imp) != nil || imp.Results[0].ClusterID == "" || imp.Results[1].ClusterID == "" {
		t.Fatalf("import: %d %s", code, body)
	}
	c := e.cluster(imp.Results[1].ClusterID)
	if c.Provider != "eks" || c.Region != "us-east-1" || c.CloudRef != f.ARN("us-east-1", "prod") || c.CloudHealth != "Healthy" || c.Name != "prod-us-east-1" {
		t.Errorf("imported cluster: %+v", c)
	}
	// The install YAML of an imported cloud cluster is there as for any.
	if code, _ := e.raw("GET", "/api/v1/clusters/"+c.ID+"/install.yaml", e.admin, "", nil); code != 200 {
		t.Errorf("install.yaml of an imported cluster: %d", code)
	}
	code, body = e.raw("POST", "/api/v1/cloud/accounts/"+acct.ID+"/import", e.admin, items, nil)
	if code != 200 || !strings.Contains(body, "already imported as cluster "+imp.Results[0].ClusterID) || !strings.Contains(body, `"conflict": true`) {
		t.Errorf("importing twice: %d %s", code, body)
	}

	// One-click install: a private API server keeps the copy-the-YAML
	// flow, with the reason; a generic cluster has none.
	if code, body := e.raw("POST", "/api/v1/clusters/"+c.ID+"/cloud-install", e.admin, "", nil); code != 409 || !strings.Contains(body, "no public endpoint") {
		t.Errorf("one-click install of a private cluster: %d %s", code, body)
	}
	generic := e.createCluster("generic-one")
	if code, body := e.raw("POST", "/api/v1/clusters/"+generic.ID+"/cloud-install", e.admin, "", nil); code != 409 || !strings.Contains(body, "not available") {
		t.Errorf("one-click install of a generic cluster: %d %s", code, body)
	}

	// The poller follows the cloud: Degraded, then deleted in the cloud.
	f.SetClusters("eu-west-1", awsfake.Cluster{Name: "prod", Status: "ACTIVE", Issues: []awsfake.Issue{{Code: "IamRoleNotFound", Message: "role gone"}}})
	e.waitCloudHealth(imp.Results[0].ClusterID, "Degraded: IamRoleNotFound: role gone")
	f.SetClusters("eu-west-1")
	e.waitCloudHealth(imp.Results[0].ClusterID, "NotFound: no longer in region eu-west-1")
	// The poller notes the change in the history just after it stores
	// the health: awaited.
	e.waitHistory(imp.Results[0].ClusterID, "cloud health: NotFound")
	if m := e.metric("eco_cloud_api_calls_total"); !strings.Contains(m, `provider="eks"`) {
		t.Errorf("no cloud call metrics: %q", m)
	}

	if code, _ := e.raw("DELETE", "/api/v1/cloud/accounts/"+acct.ID, e.admin, "", nil); code != 409 {
		t.Errorf("deleting an account in use: %d, want 409", code)
	}
	for _, r := range imp.Results {
		if code, body := e.raw("DELETE", "/api/v1/clusters/"+r.ClusterID, e.admin, "", nil); code != 204 {
			t.Fatalf("delete cluster: %d %s", code, body)
		}
	}
	if code, body := e.raw("DELETE", "/api/v1/cloud/accounts/"+acct.ID, e.admin, "", nil); code != 204 {
		t.Errorf("deleting an unused account: %d %s", code, body)
	}
}

func (e *env) waitCloudHealth(id, want string) {
	e.t.Helper()
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = e.cluster(id).CloudHealth; got == want {
			return
		}
	}
	e.t.Fatalf("cloud health of %s = %q, want %q", id, got, want)
}

// TestCloudAPIAdminsOnly: members (and a cluster-scoped admin token) are
// refused every cloud route.
func TestCloudAPIAdminsOnly(t *testing.T) {
	e, _ := newCloudEnv(t)
	member := e.userToken("mia", store.RoleMember)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/api/v1/cloud/accounts", ""},
		{"POST", "/api/v1/cloud/accounts", awsAccount},
		{"DELETE", "/api/v1/cloud/accounts/a-aaaaaaaaaa", ""},
		{"GET", "/api/v1/cloud/accounts/a-aaaaaaaaaa/clusters", ""},
		{"POST", "/api/v1/cloud/accounts/a-aaaaaaaaaa/import", `{"clusters":[]}`},
		{"POST", "/api/v1/clusters/c-aaaaaaaaaa/cloud-install", ""},
	} {
		if code, body := e.raw(r.method, r.path, member, r.body, nil); code != http.StatusForbidden {
			t.Errorf("member %s %s: %d %s, want 403", r.method, r.path, code, body)
		}
		if code, _ := e.raw(r.method, r.path, "", r.body, nil); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s %s: %d, want 401", r.method, r.path, code)
		}
	}
	if as, _ := e.hub.Cloud().Accounts(t.Context()); len(as) != 0 {
		t.Errorf("a member created an account: %+v", as)
	}
}
