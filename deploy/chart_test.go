package deploy_test

import (
	"bytes"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localcluster/clustertest"
)

const chartDir = "chart/eco-hub"

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// valueSets are the value sets lint and template run with.
func valueSets() map[string]map[string]any {
	return map[string]map[string]any{
		"minimal": {"externalURL": "https://eco.example.com"},
		"everything": {
			"externalURL":    "https://eco.example.com/",
			"image":          map[string]any{"tag": "v1.2.3", "digest": "sha256:" + strings.Repeat("ab", 32)},
			"tls":            map[string]any{"secretName": "eco-tls"},
			"store":          map[string]any{"dsnSecret": map[string]any{"name": "eco-db", "key": "url"}},
			"persistence":    map[string]any{"enabled": false},
			"adminToken":     map[string]any{"existingSecret": "my-admin", "key": "secret"},
			"agent":          map[string]any{"image": "mirror.example/eco-agent:v1.2.3", "namespace": "eco-agents"},
			"ingress":        map[string]any{"enabled": true, "className": "nginx", "tlsSecretName": "eco-ingress-tls", "annotations": map[string]any{"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}},
			"networkPolicy":  map[string]any{"enabled": true, "metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}}},
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
			"extraArgs":      []any{"--audit-reads"},
			"service":        map[string]any{"type": "LoadBalancer"},
		},
		"existing claim, no metrics": {
			"externalURL": "https://hub.example.org:8443",
			"persistence": map[string]any{"existingClaim": "eco-data"},
			"metrics":     map[string]any{"enabled": false},
		},
	}
}

func TestLint(t *testing.T) {
	for name, vals := range valueSets() {
		t.Run(name, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = "eco"
			res := l.Run([]string{chartDir}, vals)
			for _, m := range res.Messages {
				t.Log(m)
			}
			if len(res.Errors) > 0 {
				t.Errorf("lint: %v", res.Errors)
			}
		})
	}
}

// render renders the chart client-side, as helm template does.
func render(t *testing.T, vals map[string]any) (map[string]*unstructured.Unstructured, error) {
	t.Helper()
	cfg := action.NewConfiguration()
	in := action.NewInstall(cfg)
	in.DryRunStrategy = action.DryRunClient
	in.Replace = true
	in.ReleaseName = "eco"
	in.Namespace = "eco"
	rel, err := in.Run(loadChart(t), vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("release is a %T", rel)
	}
	return objects(t, r.Manifest), nil
}

// objects splits a manifest into objects keyed "Kind/name".
func objects(t *testing.T, manifest string) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("decoding the manifest: %v\n%s", err, manifest)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		out[u.GetKind()+"/"+u.GetName()] = u
	}
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	if u == nil {
		t.Fatal("object missing")
	}
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
		t.Fatalf("%s/%s: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestTemplate(t *testing.T) {
	sets := valueSets()

	t.Run("minimal", func(t *testing.T) {
		objs, err := render(t, sets["minimal"])
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"Deployment/eco-eco-hub", "PersistentVolumeClaim/eco-eco-hub-data", "Secret/eco-eco-hub-admin-token", "Service/eco-eco-hub", "ServiceAccount/eco-eco-hub"}
		if got := keys(objs); !slices.Equal(got, want) {
			t.Errorf("objects %v, want %v", got, want)
		}
		d := convert[appsv1.Deployment](t, objs["Deployment/eco-eco-hub"])
		checkRestricted(t, d)
		c := d.Spec.Template.Spec.Containers[0]
		if c.Image != "ghcr.io/eco-project/eco-hub:v0.1.0" {
			t.Errorf("image %s", c.Image)
		}
		for _, a := range []string{"--external-url=https://eco.example.com", "--bootstrap-token-file=/etc/eco-hub/admin/token", "--data-dir=/var/lib/eco-hub",
			"--tls-hosts=eco-eco-hub,eco-eco-hub.eco.svc", "--metrics-addr=:9090"} {
			if !slices.Contains(c.Args, a) {
				t.Errorf("args %v lack %s", c.Args, a)
			}
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("readiness probe %+v", c.ReadinessProbe)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("liveness probe %+v", c.LivenessProbe)
		}
		if c.Resources.Requests.Cpu().String() != "100m" || c.Resources.Limits.Memory().String() != "512Mi" {
			t.Errorf("resources %+v", c.Resources)
		}
		if d.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "eco-eco-hub-data" {
			t.Errorf("data volume %+v", d.Spec.Template.Spec.Volumes[0])
		}
		s := convert[corev1.Secret](t, objs["Secret/eco-eco-hub-admin-token"])
		// Rendered YAML has data base64-encoded; the converter keeps bytes.
		if !regexp.MustCompile(`^ecot_[A-Za-z0-9]{48}$`).Match(s.Data["token"]) {
			t.Errorf("generated admin token %q", s.Data["token"])
		}
		if s.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Error("the admin token Secret is not kept on uninstall")
		}
	})

	t.Run("everything", func(t *testing.T) {
		objs, err := render(t, sets["everything"])
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"Ingress/eco-eco-hub", "NetworkPolicy/eco-eco-hub", "ServiceMonitor/eco-eco-hub"} {
			if objs[k] == nil {
				t.Errorf("no %s; objects %v", k, keys(objs))
			}
		}
		for _, k := range []string{"PersistentVolumeClaim/eco-eco-hub-data", "Secret/eco-eco-hub-admin-token"} {
			if objs[k] != nil {
				t.Errorf("%s rendered though not wanted", k)
			}
		}
		d := convert[appsv1.Deployment](t, objs["Deployment/eco-eco-hub"])
		checkRestricted(t, d)
		c := d.Spec.Template.Spec.Containers[0]
		if c.Image != "ghcr.io/eco-project/eco-hub:v1.2.3@sha256:"+strings.Repeat("ab", 32) {
			t.Errorf("image %s", c.Image)
		}
		for _, a := range []string{"--external-url=https://eco.example.com", "--tls-cert=/etc/eco-hub/tls/tls.crt", "--store=$(ECO_STORE_DSN)",
			"--agent-image=mirror.example/eco-agent:v1.2.3", "--agent-namespace=eco-agents", "--audit-reads"} {
			if !slices.Contains(c.Args, a) {
				t.Errorf("args %v lack %s", c.Args, a)
			}
		}
		if len(c.Env) != 1 || c.Env[0].ValueFrom.SecretKeyRef.Name != "eco-db" || c.Env[0].ValueFrom.SecretKeyRef.Key != "url" {
			t.Errorf("env %+v", c.Env)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			vols[v.Name] = v
		}
		if vols["data"].EmptyDir == nil || vols["tls"].Secret.SecretName != "eco-tls" || vols["admin-token"].Secret.SecretName != "my-admin" ||
			vols["admin-token"].Secret.Items[0].Key != "secret" {
			t.Errorf("volumes %+v", vols)
		}
		ing := objs["Ingress/eco-eco-hub"]
		rules, _, _ := unstructured.NestedSlice(ing.Object, "spec", "rules")
		if len(rules) != 1 || rules[0].(map[string]any)["host"] != "eco.example.com" {
			t.Errorf("ingress rules %v", rules)
		}
		np := objs["NetworkPolicy/eco-eco-hub"]
		ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
		if len(ingress) != 2 {
			t.Errorf("network policy ingress %v", ingress)
		}
		sm := objs["ServiceMonitor/eco-eco-hub"]
		if sm.GetLabels()["release"] != "prom" {
			t.Errorf("service monitor labels %v", sm.GetLabels())
		}
	})

	t.Run("existing claim, no metrics", func(t *testing.T) {
		objs, err := render(t, sets["existing claim, no metrics"])
		if err != nil {
			t.Fatal(err)
		}
		d := convert[appsv1.Deployment](t, objs["Deployment/eco-eco-hub"])
		if d.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "eco-data" {
			t.Errorf("data volume %+v", d.Spec.Template.Spec.Volumes[0])
		}
		if objs["PersistentVolumeClaim/eco-eco-hub-data"] != nil {
			t.Error("a claim was created beside the existing one")
		}
		for _, a := range d.Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(a, "--metrics-addr") {
				t.Errorf("metrics disabled but %s", a)
			}
		}
		svc := convert[corev1.Service](t, objs["Service/eco-eco-hub"])
		if len(svc.Spec.Ports) != 1 {
			t.Errorf("service ports %+v", svc.Spec.Ports)
		}
	})

	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"no external URL", map[string]any{}, "externalURL is required"},
		{"http external URL", map[string]any{"externalURL": "http://eco.example.com"}, "must start with https://"},
		{"service monitor without metrics", map[string]any{"externalURL": "https://e.example", "metrics": map[string]any{"enabled": false}, "serviceMonitor": map[string]any{"enabled": true}}, "serviceMonitor.enabled needs metrics.enabled"},
		{"bad service type", map[string]any{"externalURL": "https://e.example", "service": map[string]any{"type": "Nope"}}, "/service/type"},
		{"unknown value", map[string]any{"externalURL": "https://e.example", "externalUrl": "x"}, "externalUrl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// checkRestricted checks the pod meets the restricted Pod Security
// Standard.
func checkRestricted(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 65532 ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", ps)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s security context %+v", c.Name, sc)
		}
	}
	if d.Spec.Template.Spec.AutomountServiceAccountToken == nil || *d.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("the hub pod mounts a ServiceAccount token it does not need")
	}
}

// TestInstall installs the chart with Helm's SDK onto a real local cluster
// (kube-apiserver, controller-manager, scheduler, kwok nodes), checks its
// objects, and upgrades it: the generated admin token must stay.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a local cluster")
	}
	cluster := clustertest.Start(t, localcluster.Config{Full: true, Name: "chart"})
	ctx := t.Context()
	const ns = "eco"
	kubeconfig := cluster.AdminKubeconfig
	namespace := ns
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &namespace
	var logs bytes.Buffer
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(&logs, nil).WithAttrs(nil)))
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	// The namespace enforces the restricted Pod Security Standard: a pod
	// that does not meet it is refused, and no hub pod would appear below.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A volume for the data claim (the local cluster has no provisioner).
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "eco-data"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: t.TempDir()}},
		}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(cfg)
	in.ReleaseName = "eco"
	in.Namespace = ns
	in.Timeout = 2 * time.Minute
	in.WaitStrategy = kube.HookOnlyStrategy
	vals := map[string]any{"externalURL": "https://eco.example.com"}
	if _, err := in.RunWithContext(ctx, loadChart(t), vals); err != nil {
		t.Fatalf("install: %v\n%s", err, logs.String())
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "eco-eco-hub", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRestricted(t, d)
	if d.Labels["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("deployment labels %v", d.Labels)
	}
	if _, err := cs.CoreV1().Services(ns).Get(ctx, "eco-eco-hub", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "eco-eco-hub", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "eco-eco-hub-admin-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := string(sec.Data["token"])
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "eco-eco-hub-data", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if !strings.HasPrefix(token, "ecot_") || len(token) != 53 {
		t.Errorf("admin token %q", token)
	}
	// The controller-manager and scheduler take it from there: a pod of
	// the Deployment passes Pod Security admission and is scheduled on a
	// kwok node.
	deadline := time.Now().Add(60 * time.Second)
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=eco"})
		if err == nil && len(pods.Items) == 1 && pods.Items[0].Spec.NodeName != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled hub pod after 60s: %v %+v", err, pods)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// An upgrade keeps the generated token (lookup finds it).
	up := action.NewUpgrade(cfg)
	up.Namespace = ns
	up.Timeout = 2 * time.Minute
	up.WaitStrategy = kube.HookOnlyStrategy
	vals["logLevel"] = "debug"
	if _, err := up.RunWithContext(ctx, "eco", loadChart(t), vals); err != nil {
		t.Fatalf("upgrade: %v\n%s", err, logs.String())
	}
	sec, err = cs.CoreV1().Secrets(ns).Get(ctx, "eco-eco-hub-admin-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["token"]) != token {
		t.Error("the upgrade changed the admin token")
	}
	d, err = cs.AppsV1().Deployments(ns).Get(ctx, "eco-eco-hub", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--log-level=debug") {
		t.Errorf("upgraded args %v", d.Spec.Template.Spec.Containers[0].Args)
	}

	// Uninstall keeps the admin token Secret (resource-policy: keep).
	un := action.NewUninstall(cfg)
	un.Timeout = time.Minute
	un.WaitStrategy = kube.HookOnlyStrategy
	if _, err := un.Run("eco"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, "eco-eco-hub", metav1.GetOptions{}); err == nil {
		t.Error("the Deployment survived uninstall")
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, "eco-eco-hub-admin-token", metav1.GetOptions{}); err != nil {
		t.Errorf("the admin token Secret went with uninstall: %v", err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "eco-eco-hub-data", metav1.GetOptions{}); err != nil {
		t.Errorf("the data claim went with uninstall: %v", err)
	}
}
