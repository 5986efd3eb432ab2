package ui_test

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

// TestBrowserApps walks through the App Catalog and the Apps and Add-ons
// tabs in Chromium against a real hub, cluster and agent: search the
// catalog, open a chart's page, preview an install, install it, see the
// release deployed on the Apps tab (and in the cluster), and see the
// add-ons.
func TestBrowserApps(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster and Chromium")
	}
	findChromium(t)
	ctx := t.Context()
	ch := newChrome(t)
	cluster := clustertest.Start(t, localcluster.Config{Full: true, Name: "uiapps"})

	repoDir := t.TempDir()
	if err := chartrepo.WriteShopRepository(repoDir); err != nil {
		t.Fatal(err)
	}
	repo, err := chartrepo.New(chartrepo.Config{Dir: repoDir})
	if err != nil {
		t.Fatal(err)
	}
	repoSrv := httptest.NewTLSServer(repo)
	defer repoSrv.Close()

	var features *hubapps.Features
	h, err := localeco.StartHub(ctx, localeco.HubConfig{Dir: t.TempDir(), HeartbeatInterval: time.Second, Logger: testLogger(t, 0),
		Mount: func(hh *hub.Hub) error {
			var err error
			if features, err = hubapps.Start(ctx, hubapps.Config{Hub: hh, Logger: testLogger(t, 0), AddonResync: time.Hour}); err != nil {
				return err
			}
			_, err = ui.Mount(ui.Config{Hub: hh, Logger: testLogger(t, 0), Apps: features.UI()})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	defer func() { features.Close() }()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: repoSrv.Certificate().Raw}))
	c, err := h.Import(ctx, "shop-prod")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := localeco.Install(ctx, h, cluster, c.ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	acfg := setup.AgentConfig()
	acfg.Logger = testLogger(t, 0)
	actx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Run(actx, acfg) }()
	defer func() { stopAgent(); <-agentDone }()
	if _, err := h.WaitState(ctx, c.ID, store.StateConnected, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// waitJS waits until expr is true in the page, across its reloads.
	waitJS := func(what, expr string) {
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			sctx, cancel := context.WithTimeout(ch.ctx, 5*time.Second)
			ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
			cancel()
			if err == nil && ok {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("%s: %s never held (%v)", what, expr, err)
			}
		}
	}
	ch.run("signing in", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), h.AdminToken), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("table.clusters")))

	ch.run("opening the App Catalog", chromedp.Click(chromedp.CSS(`a[href="/ui/catalog"]`)), chromedp.WaitVisible(chromedp.CSS("#charts")))
	// Out of the box: the add-on charts built into the hub.
	ch.wantText("the App Catalog of a new hub", "eco-addons", "built into the hub", "eco-monitoring", "eco-logging")
	if got := ch.text("#charts tbody"); strings.Contains(got, "shop") {
		t.Fatalf("the shop chart before its repository was added: %s", got)
	}
	ch.run("adding the repository",
		chromedp.Click(chromedp.CSS(`details summary`)),
		chromedp.SendKeys(chromedp.CSS("#repo-name"), "eco-demo"),
		chromedp.SendKeys(chromedp.CSS("#repo-url"), repoSrv.URL),
		chromedp.SetValue(chromedp.CSS("#repo-ca"), caPEM),
		chromedp.Submit(chromedp.CSS("#repo-name")),
		chromedp.WaitVisible(chromedp.CSS(`#repositories tr[data-repo="eco-demo"]`)))
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(ch.text(`#repositories tr[data-repo="eco-demo"]`), "ok"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the repository never refreshed: %s", ch.text("#repositories"))
		}
		ch.run("reloading the App Catalog", chromedp.Navigate(h.URL+"/ui/catalog"), chromedp.WaitVisible(chromedp.CSS("#repositories")))
	}
	if r, err := h.Store().GetRepository(ctx, "eco-demo"); err != nil || r.CAPEM == "" {
		t.Fatalf("the repository added in the UI: %+v %v", r, err)
	}
	ch.wantText("the App Catalog", "shop", "eco-monitoring", "eco-logging")
	ch.run("searching", chromedp.SendKeys(chromedp.CSS("#q"), "web shop"), chromedp.Submit(chromedp.CSS("#q")),
		chromedp.WaitVisible(chromedp.CSS(`#q[value="web shop"]`)), chromedp.WaitVisible(chromedp.CSS("#charts")))
	if got := ch.text("#charts tbody"); !strings.Contains(got, "shop") || strings.Contains(got, "eco-monitoring") {
		t.Errorf("search for web shop shows %q", got)
	}
	ch.shot("20-app-catalog")

	ch.run("opening the chart's page", chromedp.Click(chromedp.CSS(`#charts a[href*="chart=shop"]`)), chromedp.WaitVisible(chromedp.CSS("#chart-page")))
	ch.wantText("the chart's page", "shop", "1.1.0", "1.0.0", "A small web shop", "replicaCount", "Values schema")
	ch.run("filling the install form",
		chromedp.SetValue(chromedp.CSS("#namespace"), "ui-shop"),
		chromedp.SetValue(chromedp.CSS("#name"), "shop"),
		chromedp.SendKeys(chromedp.CSS("#values"), "replicaCount: 1\ngreeting: hello from the browser\n"))
	ch.shot("21-chart-page")
	ch.run("previewing", chromedp.Click(chromedp.CSS(`#install-form button[name=dryrun]`)), chromedp.WaitVisible(chromedp.CSS("#preview")))
	ch.wantText("the preview", "nothing was changed", "kind: Deployment", "hello from the browser")
	if out, _ := cluster.Kubectl(ctx, "get", "namespace", "ui-shop").CombinedOutput(); !strings.Contains(string(out), "NotFound") {
		t.Errorf("the preview changed the cluster: %s", out)
	}
	ch.shot("22-install-preview")
	ch.run("installing", chromedp.Click(chromedp.CSS(`#preview button.primary`)))
	waitJS("the install's redirect", `location.search.includes("op=")`)

	// The operation runs in the background; the Apps tab reloads itself
	// while it does, then shows the release.
	waitOps := func() {
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			var ops struct{ Items []struct{ State string } }
			if err := h.Do(ctx, "GET", "/api/v1/clusters/"+c.ID+"/operations", "", nil, &ops); err != nil {
				t.Fatal(err)
			}
			running := false
			for _, op := range ops.Items {
				running = running || op.State == "running" || op.State == "recovering"
			}
			if !running {
				// Let the page's own reloads (data-reload-after) settle.
				for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
					sctx, cancel := context.WithTimeout(ch.ctx, 5*time.Second)
					settled, err := chromedp.Run(sctx, chromedp.Evaluate[bool](`document.readyState === "complete" && !document.querySelector("[data-reload-after]")`))
					cancel()
					if err == nil && settled {
						return
					}
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("operations still running: %+v", ops.Items)
			}
		}
	}
	waitOps()
	ch.run("reloading the Apps tab", chromedp.Navigate(h.URL+"/ui/clusters/"+c.ID+"/apps"), chromedp.WaitVisible(chromedp.CSS("#releases")))
	if got := ch.text("#releases tbody"); !strings.Contains(got, "deployed") {
		t.Fatalf("the release is not deployed: %s / %s", got, ch.text("#operations tbody"))
	}
	ch.wantText("the Apps tab", "shop-1.1.0", "ui-shop", "install", "succeeded", "installed shop-1.1.0 revision 1")
	ch.shot("23-apps-tab")
	if out, err := cluster.Kubectl(ctx, "get", "-n", "ui-shop", "configmap", "shop-config", "-o", "jsonpath={.data.greeting}").CombinedOutput(); err != nil || string(out) != "hello from the browser" {
		t.Errorf("in the cluster: %s %v", out, err)
	}
	ch.run("opening the history", chromedp.Click(chromedp.CSS(`a[href*="history=ui-shop/shop"]`)), chromedp.WaitVisible(chromedp.CSS("#history")))
	ch.wantText("the history", "History of ui-shop/shop", "Install complete")

	// Upgrade from the catalog with other values: the preview is a diff.
	ch.run("opening the chart to upgrade", chromedp.Click(chromedp.CSS(`#releases a[href^="/ui/catalog?q=shop"]`)), chromedp.WaitVisible(chromedp.CSS("#charts")),
		chromedp.Click(chromedp.CSS(`#charts a[href*="chart=shop"]`)), chromedp.WaitVisible(chromedp.CSS("#install-form")))
	ch.run("filling the upgrade",
		chromedp.SetValue(chromedp.CSS("#namespace"), "ui-shop"),
		chromedp.SetValue(chromedp.CSS("#name"), "shop"),
		chromedp.Click(chromedp.CSS("#upgrade")),
		chromedp.SendKeys(chromedp.CSS("#values"), "replicaCount: 1\ngreeting: upgraded in the browser\n"),
		chromedp.Click(chromedp.CSS(`#install-form button[name=dryrun]`)), chromedp.WaitVisible(chromedp.CSS("#preview")))
	ch.wantText("the upgrade's diff", "-  greeting: \"hello from the browser\"", "+  greeting: \"upgraded in the browser\"")
	ch.shot("25-upgrade-diff")
	ch.run("upgrading", chromedp.Click(chromedp.CSS(`#preview button.primary`)))
	waitJS("the upgrade's redirect", `location.search.includes("op=")`)
	waitRevision := func(rev string) {
		waitOps()
		ch.run("reloading the history", chromedp.Navigate(h.URL+"/ui/clusters/"+c.ID+"/apps?history=ui-shop/shop"), chromedp.WaitVisible(chromedp.CSS("#history")))
		if got := ch.text(`#releases tr[data-release="ui-shop/shop"]`); !strings.Contains(got, "\t"+rev+"\tdeployed") {
			t.Fatalf("revision %s is not deployed: %s / %s", rev, ch.text("#releases"), ch.text("#operations"))
		}
	}
	waitRevision("2")
	ch.run("rolling back to revision 1", chromedp.Click(chromedp.CSS(`#history button`)))
	waitJS("the rollback's redirect", `location.search.includes("op=")`)
	waitRevision("3")
	if out, err := cluster.Kubectl(ctx, "get", "-n", "ui-shop", "configmap", "shop-config", "-o", "jsonpath={.data.greeting}").CombinedOutput(); err != nil || string(out) != "hello from the browser" {
		t.Errorf("after the rollback: %s %v", out, err)
	}

	// The Monitoring add-on: enabled for this cluster, it shows healthy on
	// the Add-ons tab and the Monitoring dashboard finds its Prometheus.
	ch.run("enabling monitoring", chromedp.Navigate(h.URL+"/ui/clusters/"+c.ID+"/addons"), chromedp.WaitVisible(chromedp.CSS("#addons")),
		chromedp.Click(chromedp.CSS(`tr[data-addon="monitoring"] button`)))
	waitJS("monitoring enabled", `document.readyState === "complete" && (document.querySelector('tr[data-addon="monitoring"] button') || {}).textContent === "Disable"`)
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		ch.run("opening the Add-ons tab", chromedp.Navigate(h.URL+"/ui/clusters/"+c.ID+"/addons"), chromedp.WaitVisible(chromedp.CSS("#addons")))
		if strings.Contains(ch.text(`tr[data-addon="monitoring"]`), "healthy") && !strings.Contains(ch.text(`tr[data-addon="monitoring"]`), "unhealthy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("monitoring never turned healthy: %s", ch.text("#addons"))
		}
	}
	ch.wantText("the Add-ons tab", "Metrics Server", "Monitoring", "Log shipping", "disabled", "0.1.0 / 0.1.0", "healthy")
	ch.shot("24-addons-tab")

	ch.run("opening the Monitoring dashboard", chromedp.Navigate(h.URL+"/ui/clusters/"+c.ID+"/monitoring"), chromedp.WaitVisible(chromedp.CSS("#prometheus")))
	ch.wantText("the Monitoring dashboard", "Prometheus (monitoring add-on)", "eco-monitoring/eco-monitoring-prometheus")

	if os.Getenv("ECO_UPDATE_SCREENSHOTS") != "" {
		copyScreenshots(t, ch.artifacts, "../../docs/screenshots", "20-app-catalog", "21-chart-page", "22-install-preview", "23-apps-tab", "24-addons-tab", "25-upgrade-diff")
	}
}
