package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestArgoCDFlagsRefused: the Argo CD flags that cannot work together, or
// a bad file, stop the hub with a clear error before anything runs.
func TestArgoCDFlagsRefused(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("instances:\n- name: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    argocdOptions
		want string
	}{
		{"file and a flag instance", argocdOptions{config: bad, kubeconfig: "/k", tokenTTL: time.Hour}, "not with --argocd-kubeconfig"},
		{"missing file", argocdOptions{config: "/nonexistent.yaml", tokenTTL: time.Hour}, "--argocd-config"},
		{"file without a way to reach Argo CD", argocdOptions{config: bad, tokenTTL: time.Hour}, "exactly one of"},
		{"short token TTL", argocdOptions{inCluster: true, tokenTTL: time.Second}, "--argocd-token-ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, stop, err := tt.o.start(nil, prometheus.NewRegistry(), nil, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if reg != nil || stop != nil {
				t.Error("a refused configuration returned a registrar")
			}
		})
	}
	// Nothing configured: nothing runs.
	reg, stop, err := (&argocdOptions{tokenTTL: time.Hour}).start(nil, nil, nil, nil)
	if err != nil || reg != nil {
		t.Fatalf("no Argo CD flags: %v, %v", reg, err)
	}
	stop()
}
