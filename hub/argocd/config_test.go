package argocd

import (
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

func TestParseFile(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, f File)
	}{
		{name: "kubeconfig instance, defaults", yaml: "instances:\n- kubeconfig: /k\n", check: func(t *testing.T, f File) {
			ttl, resync, err := f.Durations()
			if err != nil || ttl != DefaultTokenTTL || resync != DefaultResync {
				t.Errorf("durations = %v %v %v", ttl, resync, err)
			}
			in, err := ValidateInstances(f.Instances)
			if err != nil || in[0].Name != DefaultInstanceName || in[0].Namespace != DefaultNamespace {
				t.Errorf("instances = %+v, %v", in, err)
			}
		}},
		{name: "one cluster, two namespaces or contexts", yaml: "instances:\n- kubeconfig: /k\n- name: b\n  kubeconfig: /k\n  namespace: other\n- name: c\n  kubeconfig: /k\n  context: other\n", check: func(t *testing.T, f File) {
			if in, err := ValidateInstances(f.Instances); err != nil || len(in) != 3 {
				t.Errorf("instances = %+v, %v", in, err)
			}
		}},
		{name: "everything", yaml: `
grant: view
tokenTTL: 2h
resync: 30s
instances:
- name: mgmt
  cluster: management
  namespace: gitops
  project: platform
  url: https://argocd.example.com
  selector: {providers: [eks, gke], regions: [eu-west-1], names: [a], labels: {env: prod}}
- name: local
  inCluster: true
`, check: func(t *testing.T, f File) {
			ttl, resync, _ := f.Durations()
			if ttl != 2*time.Hour || resync != 30*time.Second || f.Grant != store.ClusterView {
				t.Errorf("got %v %v %v", ttl, resync, f.Grant)
			}
			if f.Instances[0].Selector.Providers[1] != store.ProviderGKE || f.Instances[0].Selector.Labels["env"] != "prod" || f.Instances[1].Namespace != "" {
				t.Errorf("instances = %+v", f.Instances)
			}
		}},
		{name: "no way to reach it", yaml: "instances:\n- name: x\n", wantErr: "exactly one of"},
		{name: "two ways to reach it", yaml: "instances:\n- kubeconfig: /k\n  inCluster: true\n", wantErr: "exactly one of"},
		{name: "duplicate names", yaml: "instances:\n- kubeconfig: /k\n- inCluster: true\n", wantErr: "used twice"},
		{name: "one namespace twice", yaml: "instances:\n- kubeconfig: /k\n- name: b\n  kubeconfig: /k\n", wantErr: `"argocd" and "b" are both kubeconfig /k context , namespace argocd`},
		{name: "one namespace twice, in cluster", yaml: "instances:\n- inCluster: true\n  namespace: gitops\n- name: b\n  inCluster: true\n  namespace: gitops\n", wantErr: "both the hub's own cluster, namespace gitops"},
		{name: "one managed cluster twice", yaml: "instances:\n- cluster: mgmt\n- name: b\n  cluster: mgmt\n", wantErr: "both cluster mgmt, namespace argocd"},
		{name: "unknown field", yaml: "instances:\n- kubeconfg: /k\n", wantErr: "unknown field"},
		{name: "bad grant", yaml: "grant: root\ninstances:\n- inCluster: true\n", wantErr: "grant"},
		{name: "bad ttl", yaml: "tokenTTL: 1s\ninstances:\n- inCluster: true\n", wantErr: "tokenTTL"},
		{name: "bad namespace", yaml: "instances:\n- inCluster: true\n  namespace: Argo_CD\n", wantErr: "namespace"},
		{name: "bad provider", yaml: "instances:\n- inCluster: true\n  selector: {providers: [openstack]}\n", wantErr: "provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFile([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

func TestSelectorMatches(t *testing.T) {
	c := store.Cluster{Name: "prod-1", Provider: store.ProviderEKS, Region: "eu-west-1", Labels: map[string]string{"env": "prod", "team": "web", "empty": ""}}
	tests := []struct {
		name string
		sel  Selector
		want bool
	}{
		{"zero picks all", Selector{}, true},
		{"provider", Selector{Providers: []store.Provider{store.ProviderAKS, store.ProviderEKS}}, true},
		{"other provider", Selector{Providers: []store.Provider{store.ProviderAKS}}, false},
		{"region", Selector{Regions: []string{"eu-west-1"}}, true},
		{"other region", Selector{Regions: []string{"us-east-1"}}, false},
		{"all fields must match", Selector{Providers: []store.Provider{store.ProviderEKS}, Names: []string{"prod-2"}}, false},
		{"name", Selector{Names: []string{"prod-1"}}, true},
		{"labels", Selector{Labels: map[string]string{"env": "prod", "team": "web"}}, true},
		{"a label with another value", Selector{Labels: map[string]string{"env": "dev"}}, false},
		{"a label the cluster lacks", Selector{Labels: map[string]string{"tier": ""}}, false},
		{"an empty label value", Selector{Labels: map[string]string{"empty": ""}}, true},
		{"labels and provider", Selector{Providers: []store.Provider{store.ProviderAKS}, Labels: map[string]string{"env": "prod"}}, false},
	}
	for _, tt := range tests {
		if got := tt.sel.Matches(c); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSecretApplyNeverPutsTheTokenInMetadata(t *testing.T) {
	r := registration{
		Cluster:  store.Cluster{ID: "c-abcdefghij", Name: "prod", Provider: store.ProviderGKE, Region: "europe west (1)"},
		Instance: Instance{Name: "argocd", Namespace: "argocd", Project: "platform"},
		Server:   "https://hub/clusters/c-abcdefghij/k8s", Token: "ecot_secret", TokenID: "t-1", CAPEM: []byte("CA"),
	}
	a, err := r.secretApply()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range a.Labels {
		if strings.Contains(v, "ecot_") {
			t.Errorf("label %s carries the token", k)
		}
	}
	for k, v := range a.Annotations {
		if strings.Contains(v, "ecot_") {
			t.Errorf("annotation %s carries the token", k)
		}
	}
	if _, ok := a.Labels[LabelRegion]; ok {
		t.Errorf("region %q is no label value but was put in a label", r.Cluster.Region)
	}
	if a.Annotations[AnnotationRegion] != r.Cluster.Region {
		t.Errorf("region annotation = %q", a.Annotations[AnnotationRegion])
	}
	if string(a.Data["project"]) != "platform" || !strings.Contains(string(a.Data["config"]), `"bearerToken":"ecot_secret"`) {
		t.Errorf("data = %q", a.Data)
	}
	if *a.Name != "eco-c-abcdefghij" || a.Labels[LabelSecretType] != "cluster" {
		t.Errorf("name %q labels %v", *a.Name, a.Labels)
	}
}
