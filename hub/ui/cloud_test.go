package ui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

func newCloudHub(t *testing.T) (*testHub, *awsfake.Server) {
	f := awsfake.New()
	t.Cleanup(f.Close)
	f.AddKey("AKIDECO", "s3cret-never-shown")
	f.SetClusters("eu-west-1",
		awsfake.Cluster{Name: "shop", Status: "ACTIVE", Version: "1.31", Endpoint: "https://shop.eu.example"},
		awsfake.Cluster{Name: "batch", Status: "CREATING", Version: "1.32"})
	f.SetClusters("us-east-1",
		awsfake.Cluster{Name: "shop", Status: "ACTIVE", Version: "1.30", Private: true})
	h := newTestHub(t, hubOptions{poll: 300 * time.Millisecond, cloud: func(c *hub.Config) {
		c.CloudProviders = map[store.Provider]cloud.Provider{store.ProviderEKS: aws.New(aws.Config{EKSEndpoint: f.URL, STSEndpoint: f.URL, MaxAttempts: 1})}
		c.CloudPollInterval = 200 * time.Millisecond
		c.CloudFastPollInterval = 100 * time.Millisecond
	}})
	return h, f
}

// TestCloudPagesAdminsOnly: a member is refused every cloud page and form.
func TestCloudPagesAdminsOnly(t *testing.T) {
	h, _ := newCloudHub(t)
	b := h.browser()
	csrf := h.signIn(b, h.viewer("mia"))
	for _, r := range []struct {
		method, path string
		form         url.Values
	}{
		{"GET", "/ui/cloud", nil},
		{"POST", "/ui/cloud/accounts", url.Values{"csrf": {csrf}, "name": {"x"}, "provider": {"eks"}, "scopes": {"eu-west-1"}, "accessKeyId": {"AKIDECO"}, "secretAccessKey": {"s3cret-never-shown"}}},
		{"GET", "/ui/cloud/a-aaaaaaaaaa/import", nil},
		{"POST", "/ui/cloud/a-aaaaaaaaaa/import", url.Values{"csrf": {csrf}, "cluster": {"eu-west-1|x"}}},
	} {
		if code, _, _ := do(t, b, r.method, h.url+r.path, r.form, nil); code != http.StatusForbidden {
			t.Errorf("member %s %s = %d, want 403", r.method, r.path, code)
		}
	}
	if as, _ := h.hub.Cloud().Accounts(t.Context()); len(as) != 0 {
		t.Errorf("a member added an account")
	}
}

// TestCloudWizardBrowser walks the import wizard in Chromium — account,
// regions, clusters — then watches the Cloud health column follow the
// (fake) cloud.
func TestCloudWizardBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Chromium")
	}
	ch := newChrome(t)
	h, f := newCloudHub(t)
	ch.run("signing in", chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), h.admin), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("table.clusters")))
	ch.run("opening the wizard", chromedp.Click(chromedp.CSS(`a[href="/ui/cloud"]`)), chromedp.WaitVisible(chromedp.CSS("#add-account")))
	// A wrong secret is refused, and not echoed back.
	ch.run("adding an account with a wrong secret",
		chromedp.SendKeys(chromedp.CSS("#acct-name"), "prod-aws"),
		chromedp.SetValue(chromedp.CSS("#acct-provider"), "eks"),
		chromedp.SendKeys(chromedp.CSS("#acct-scopes"), "eu-west-1, us-east-1"),
		chromedp.SendKeys(chromedp.CSS("#accessKeyId"), "AKIDECO"),
		chromedp.SendKeys(chromedp.CSS("#secretAccessKey"), "wrong"),
		chromedp.Submit(chromedp.CSS("#acct-name")),
		chromedp.WaitVisible(chromedp.CSS(".error")))
	ch.wantText("a refused account", "credentials rejected")
	if v := value(ch, "reading the secret field", chromedp.Value(chromedp.CSS("#secretAccessKey"))); v != "" {
		t.Errorf("the secret came back in the form: %q", v)
	}
	ch.run("adding the account",
		chromedp.SendKeys(chromedp.CSS("#secretAccessKey"), "s3cret-never-shown"),
		chromedp.Submit(chromedp.CSS("#acct-name")),
		chromedp.WaitVisible(chromedp.CSS("#scopes")))
	ch.shot("cloud-1-regions")
	ch.run("choosing both regions",
		chromedp.Click(chromedp.CSS(`#scopes input[value="eu-west-1"]`)),
		chromedp.Click(chromedp.CSS(`#scopes input[value="us-east-1"]`)),
		chromedp.Submit(chromedp.CSS("#scopes")),
		chromedp.WaitVisible(chromedp.CSS("#discovered")))
	ch.wantText("the discovered clusters", "shop", "batch", "Not importable: still being created", "private: apply the install YAML")
	disabled := value(ch, "reading the CREATING cluster's box", chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector('tr[data-ref=%q] input[type=checkbox]').disabled`, f.ARN("eu-west-1", "batch"))))
	if !disabled {
		t.Errorf("a cluster being created can be selected")
	}
	ch.run("selecting both shop clusters",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-ref=%q] input[type=checkbox]`, f.ARN("eu-west-1", "shop")))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-ref=%q] input[type=checkbox]`, f.ARN("us-east-1", "shop")))))
	ch.shot("cloud-2-clusters")
	ch.run("importing", chromedp.Submit(chromedp.CSS("#pick")), chromedp.WaitVisible(chromedp.CSS("#results")))
	ch.wantText("the import results", "2 of 2 clusters imported", "Imported as shop", "Imported as shop-us-east-1", "its API server is private")
	ch.shot("cloud-3-imported")

	// The clusters table: Cloud health in green, then red as the cloud
	// changes, without a reload.
	eu, err := h.hub.Store().GetClusterByName(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	us, err := h.hub.Store().GetClusterByName(t.Context(), "shop-us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if eu.Provider != store.ProviderEKS || eu.Region != "eu-west-1" || eu.CloudRef != f.ARN("eu-west-1", "shop") {
		t.Errorf("imported: %+v", eu)
	}
	ch.run("opening the clusters page", chromedp.Navigate(h.url+"/"), chromedp.WaitVisible(chromedp.CSS("table.clusters")))
	cell := func(id string) string { return fmt.Sprintf(`tr[data-id=%q] [data-field=cloudHealth]`, id) }
	if got := ch.text(cell(eu.ID)); got != "Healthy" {
		t.Errorf("cloud health shown = %q, want Healthy", got)
	}
	f.SetClusters("eu-west-1", awsfake.Cluster{Name: "shop", Status: "ACTIVE", Version: "1.31",
		Groups: []awsfake.Nodegroup{{Name: "workers", Status: "DEGRADED", Issues: []awsfake.Issue{{Code: "AsgInstanceLaunchFailures", Message: "no capacity in eu-west-1a"}}}}})
	f.SetClusters("us-east-1", awsfake.Cluster{Name: "shop", Status: "UPDATING", Version: "1.30", Private: true})
	ch.run("waiting for the poll", chromedp.WaitVisible(chromedp.CSS(cell(eu.ID)+`.bad`)), chromedp.WaitVisible(chromedp.CSS(cell(us.ID)+`.progress`)))
	if got := ch.text(cell(eu.ID)); !strings.Contains(got, "Degraded: node group workers DEGRADED; AsgInstanceLaunchFailures") {
		t.Errorf("degraded health shown = %q", got)
	}
	color := value(ch, "reading the health colour", chromedp.Evaluate[string](fmt.Sprintf(`getComputedStyle(document.querySelector('%s')).color`, cell(eu.ID))))
	if color != "rgb(179, 38, 30)" {
		t.Errorf("Degraded is shown in %s, want red", color)
	}
	ch.shot("cloud-4-health")
	ch.run("opening the General tab", chromedp.Navigate(h.url+"/ui/clusters/"+eu.ID), chromedp.WaitVisible(chromedp.CSS("#cloud-health.bad")))
	ch.wantText("the General tab", "Degraded: node group workers DEGRADED", "arn:aws:eks:eu-west-1", "Version at import", "1.31")

	if os.Getenv("ECO_UPDATE_SCREENSHOTS") != "" {
		copyScreenshots(t, ch.artifacts, "../../docs/screenshots", "cloud-1-regions", "cloud-2-clusters", "cloud-3-imported", "cloud-4-health")
	}
}
