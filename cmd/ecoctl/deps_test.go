package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: ecoctl reaches the App Catalog, the Helm service, the
// add-ons and Argo CD through the hub's API only (hubclient's own types),
// so it links neither Helm, Argo CD, nor the hub features' packages.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{"helm.sh/", "github.com/argoproj/", "github.com/chromedp/",
		"github.com/eco-project/eco/apps", "github.com/eco-project/eco/catalog", "github.com/eco-project/eco/addons", "github.com/eco-project/eco/hub/argocd"}
	for _, d := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("ecoctl depends on %s (forbidden: %s)", d, f)
			}
		}
	}
}
