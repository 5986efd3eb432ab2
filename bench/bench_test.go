package bench

import (
	"testing"

	"github.com/eco-project/eco/install"
)

func TestTokenFromInstallYAML(t *testing.T) {
	tok, err := install.NewAgentToken()
	if err != nil {
		t.Fatal(err)
	}
	y, err := install.Render(install.Options{ClusterID: "c1", HubURL: "https://hub.example", Token: tok, AgentVersion: "v0.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tokenFromInstallYAML(y)
	if err != nil || got != tok {
		t.Fatalf("tokenFromInstallYAML = %q, %v; want %q", got, err, tok)
	}
	if _, err := tokenFromInstallYAML([]byte("kind: Namespace\n")); err == nil {
		t.Fatal("no error for YAML without a Secret")
	}
}

func TestPercentileAndCurve(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if m := median(xs); m != 3 {
		t.Errorf("median = %v, want 3", m)
	}
	if p := percentile(xs, 0.99); p != 4 {
		t.Errorf("p99 of 5 samples = %v, want 4 (nearest rank below)", p)
	}
	if xs[0] != 5 {
		t.Error("percentile sorted its input")
	}
	if c := curve([]float64{10, 60, 70, 140}); c != "50:1 100:3 150:4" {
		t.Errorf("curve = %q", c)
	}
}
