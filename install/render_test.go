package install

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

var update = flag.Bool("update", false, "rewrite testdata/install.golden.yaml")

const goldenFile = "testdata/install.golden.yaml"

// testToken is a well-formed, fixed agent token for deterministic output.
const testToken = "ecoa_dGVzdC10b2tlbi1ub3Qtc2VjcmV0LWF0LWFsbC0wMTI"

func testOptions(t *testing.T) Options {
	t.Helper()
	ca, err := os.ReadFile("testdata/hub-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		ClusterID:    "c-7f3a9d",
		HubURL:       "https://eco.example.com",
		Token:        testToken,
		HubCAPEM:     ca,
		AgentVersion: "v0.1.0",
	}
}

func TestRenderGolden(t *testing.T) {
	got, err := Render(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test ./install -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Render differs from %s (run go test ./install -update and review the diff):\n%s", goldenFile, got)
	}
}

// decodeAll decodes every YAML document of b strictly with client-go's
// scheme, as kubectl would.
func decodeAll(t *testing.T, b []byte) []runtime.Object {
	t.Helper()
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("reading YAML document %d: %v", len(objs), err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := s.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decoding YAML document %d: %v\n%s", len(objs), err, doc)
		}
		objs = append(objs, obj)
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

func TestRenderDecodesStrictly(t *testing.T) {
	type kindName struct{ Kind, Namespace, Name string }
	ns := "eco-system"
	wantOrder := []kindName{
		{"Namespace", "", ns},
		{"ServiceAccount", ns, "eco-agent"},
		{"ClusterRole", "", "eco-agent"},
		{"ClusterRoleBinding", "", "eco-agent"},
		{"ClusterRoleBinding", "", "eco:admins"},
		{"ClusterRoleBinding", "", "eco:editors"},
		{"ClusterRoleBinding", "", "eco:viewers"},
		{"Role", ns, "eco-agent"},
		{"RoleBinding", ns, "eco-agent"},
		{"Secret", ns, "eco-agent"},
		{"Deployment", ns, "eco-agent"},
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		ns     string
	}{
		{"defaults", func(*Options) {}, ns},
		{"custom namespace and proxy", func(o *Options) {
			o.Namespace = "eco-agent-2"
			o.HTTPSProxy = "http://proxy.corp:3128"
			o.NoProxy = ".corp,10.0.0.0/8"
			o.ExtraImpersonationGroups = []string{"team-a"}
		}, "eco-agent-2"},
		{"no CA, insecure hub", func(o *Options) {
			o.HubCAPEM = nil
			o.HubURL = "http://127.0.0.1:8443"
			o.AllowInsecureHubURL = true
		}, ns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			tc.mutate(&opts)
			b, err := Render(opts)
			if err != nil {
				t.Fatal(err)
			}
			decoded := decodeAll(t, b)
			var got []kindName
			for _, obj := range decoded {
				m := obj.(Object)
				got = append(got, kindName{obj.GetObjectKind().GroupVersionKind().Kind, m.GetNamespace(), m.GetName()})
			}
			want := slices.Clone(wantOrder)
			for i := range want {
				if want[i].Name == ns {
					want[i].Name = tc.ns
				}
				if want[i].Namespace == ns {
					want[i].Namespace = tc.ns
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("documents:\n got %v\nwant %v", got, want)
			}
			// The YAML says exactly what the typed objects say.
			objs, err := Objects(opts)
			if err != nil {
				t.Fatal(err)
			}
			for i, obj := range objs {
				if !equality.Semantic.DeepEqual(obj, decoded[i]) {
					t.Errorf("document %d does not round-trip:\n got %#v\nwant %#v", i, decoded[i], obj)
				}
			}
			for _, obj := range objs {
				if obj.GetGenerateName() != "" {
					t.Errorf("%s uses generateName", obj.GetName())
				}
				for k, v := range map[string]string{LabelManagedBy: "eco", LabelName: AgentName, LabelClusterID: opts.ClusterID} {
					if obj.GetLabels()[k] != v {
						t.Errorf("%s: label %s = %q, want %q", obj.GetName(), k, obj.GetLabels()[k], v)
					}
				}
			}
		})
	}
}

func TestAgentRules(t *testing.T) {
	core := func(resource string, verbs []string, names ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{resource}, Verbs: verbs, ResourceNames: names}
	}
	rbac := func(resource string, names ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{resource},
			Verbs: []string{"get", "patch", "delete"}, ResourceNames: names}
	}
	impersonate := []string{"impersonate"}
	wantRules := func(ns string, groups ...string) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{
			core("users", impersonate),
			core("groups", impersonate, groups...),
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"userextras/eco.dev/request-id"}, Verbs: impersonate},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"selfsubjectaccessreviews"}, Verbs: []string{"create"}},
			core("namespaces", []string{"get", "list", "watch"}, ns),
			core("namespaces", []string{"get"}, "kube-system"),
			rbac("clusterroles", "eco-agent"),
			rbac("clusterrolebindings", "eco:admins", "eco:editors", "eco:viewers", "eco-agent"),
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   []rbacv1.PolicyRule
	}{
		{"defaults", func(*Options) {}, wantRules("eco-system", "eco:admins", "eco:editors", "eco:viewers")},
		{"namespace", func(o *Options) { o.Namespace = "other" }, wantRules("other", "eco:admins", "eco:editors", "eco:viewers")},
		{"extra groups sorted, deduplicated", func(o *Options) {
			o.ExtraImpersonationGroups = []string{"team-b", "eco:admins", "team-a", "team-b"}
		}, wantRules("eco-system", "eco:admins", "eco:editors", "eco:viewers", "team-a", "team-b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			tc.mutate(&opts)
			objs, err := Objects(opts)
			if err != nil {
				t.Fatal(err)
			}
			var role *rbacv1.ClusterRole
			for _, obj := range objs {
				if r, ok := obj.(*rbacv1.ClusterRole); ok {
					role = r
				}
			}
			if role == nil {
				t.Fatal("no ClusterRole")
			}
			if !reflect.DeepEqual(role.Rules, tc.want) {
				t.Errorf("rules:\n got %+v\nwant %+v", role.Rules, tc.want)
			}
			if role.AggregationRule != nil {
				t.Error("agent ClusterRole must not aggregate other roles")
			}
			for _, r := range role.Rules {
				for _, field := range [][]string{r.Verbs, r.Resources, r.APIGroups, r.ResourceNames} {
					for _, v := range field {
						if strings.Contains(v, "*") {
							t.Errorf("rule %+v: wildcard %q", r, v)
						}
					}
				}
				if len(r.NonResourceURLs) > 0 {
					t.Errorf("rule %+v: non-resource URLs", r)
				}
				for _, verb := range r.Verbs {
					if slices.Contains([]string{"escalate", "bind", "create", "update"}, verb) && r.Resources[0] != "selfsubjectaccessreviews" {
						t.Errorf("rule %+v: dangerous verb %q", r, verb)
					}
				}
			}
		})
	}
}

// TestClusterScopedObjects checks that the list the agent owns and deletes
// is exactly the install's cluster-scoped objects.
func TestClusterScopedObjects(t *testing.T) {
	objs, err := Objects(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	var installed []string
	for _, obj := range objs {
		if obj.GetNamespace() != "" {
			continue
		}
		switch obj.(type) {
		case *rbacv1.ClusterRole:
			installed = append(installed, "clusterroles/"+obj.GetName())
		case *rbacv1.ClusterRoleBinding:
			installed = append(installed, "clusterrolebindings/"+obj.GetName())
		}
	}
	var listed []string
	for _, o := range ClusterScopedObjects() {
		if o.Resource.Group != rbacv1.GroupName || o.Resource.Version != "v1" {
			t.Errorf("%v: unexpected group/version", o)
		}
		listed = append(listed, o.Resource.Resource+"/"+o.Name)
	}
	slices.Sort(installed)
	slices.Sort(listed)
	if !slices.Equal(installed, listed) {
		t.Errorf("ClusterScopedObjects = %v, install has %v", listed, installed)
	}

	ref := NamespaceOwnerReference("eco-system", "uid-1")
	if ref.APIVersion != "v1" || ref.Kind != "Namespace" || ref.Name != "eco-system" || ref.UID != "uid-1" ||
		ref.BlockOwnerDeletion != nil || ref.Controller != nil {
		t.Errorf("NamespaceOwnerReference = %+v", ref)
	}
}

func find[T Object](t *testing.T, objs []Object) T {
	t.Helper()
	for _, obj := range objs {
		if o, ok := obj.(T); ok {
			return o
		}
	}
	var zero T
	t.Fatalf("no %T in install", zero)
	return zero
}

func TestSecretAndDeployment(t *testing.T) {
	opts := testOptions(t)
	opts.HTTPSProxy = "http://proxy.corp:3128"
	opts.NoProxy = ".corp"
	objs, err := Objects(opts)
	if err != nil {
		t.Fatal(err)
	}
	secret := find[*corev1.Secret](t, objs)
	if secret.Type != corev1.SecretTypeOpaque {
		t.Errorf("secret type %q", secret.Type)
	}
	wantData := map[string]string{
		KeyHubURL:    opts.HubURL,
		KeyClusterID: opts.ClusterID,
		KeyToken:     opts.Token,
		KeyCACert:    string(opts.HubCAPEM),
	}
	gotData := map[string]string{}
	for k, v := range secret.Data {
		gotData[k] = string(v)
	}
	if !reflect.DeepEqual(gotData, wantData) || len(secret.StringData) != 0 {
		t.Errorf("secret data = %q, stringData = %q; want data %q", gotData, secret.StringData, wantData)
	}

	d := find[*appsv1.Deployment](t, objs)
	spec := d.Spec.Template.Spec
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %d, strategy %q; want 1 and Recreate", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels %v", k, v, d.Spec.Template.Labels)
		}
	}
	if spec.ServiceAccountName != AgentName || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Errorf("service account %q, automount %v", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != "ghcr.io/eco-project/eco-agent:v0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %q %q", c.Image, c.ImagePullPolicy)
	}
	if cmd := append(slices.Clone(c.Command), c.Args...); !slices.Equal(cmd, []string{"eco-agent", "--config-dir=/etc/eco-agent", "--identity-token-file=/var/run/secrets/eco.dev/identity/token"}) {
		t.Errorf("command %q", cmd)
	}
	wantEnv := []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy.corp:3128"}, {Name: "NO_PROXY", Value: ".corp"}}
	if !reflect.DeepEqual(c.Env, wantEnv) {
		t.Errorf("env %v, want %v", c.Env, wantEnv)
	}
	if len(c.VolumeMounts) != 2 || c.VolumeMounts[0].MountPath != ConfigDir || !c.VolumeMounts[0].ReadOnly ||
		c.VolumeMounts[1].MountPath != IdentityTokenDir || !c.VolumeMounts[1].ReadOnly {
		t.Errorf("mounts %+v", c.VolumeMounts)
	}
	if len(spec.Volumes) != 2 || spec.Volumes[0].Name != c.VolumeMounts[0].Name ||
		spec.Volumes[0].Secret == nil || spec.Volumes[0].Secret.SecretName != secret.Name {
		t.Errorf("volumes %+v", spec.Volumes)
	}
	// The identity token: the agent's ServiceAccount, the hub's URL as
	// audience, 10 minutes.
	if len(spec.Volumes) == 2 {
		v := spec.Volumes[1]
		if v.Name != c.VolumeMounts[1].Name || v.Projected == nil || len(v.Projected.Sources) != 1 {
			t.Fatalf("identity volume %+v", v)
		}
		sat := v.Projected.Sources[0].ServiceAccountToken
		if sat == nil || sat.Audience != "https://eco.example.com" || sat.ExpirationSeconds == nil ||
			*sat.ExpirationSeconds != 600 || sat.Path+"" != IdentityTokenFile {
			t.Errorf("identity token projection %+v", sat)
		}
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context %+v", sc)
	}
	if psc := spec.SecurityContext; psc == nil || !*psc.RunAsNonRoot || *psc.RunAsUser == 0 {
		t.Errorf("pod security context %+v", psc)
	}
	for name, p := range map[string]*corev1.Probe{HealthzPath: c.LivenessProbe, ReadyzPath: c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.StrVal != "health" {
			t.Errorf("probe for %s: %+v", name, p)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "health" || c.Ports[0].ContainerPort != HealthPort {
		t.Errorf("ports %+v", c.Ports)
	}
	if c.Resources.Requests.Cpu().String() != "50m" || c.Resources.Requests.Memory().String() != "64Mi" ||
		c.Resources.Limits.Memory().String() != "256Mi" {
		t.Errorf("resources %+v", c.Resources)
	}
	if h := d.Spec.Template.Annotations[AnnotationConfigHash]; h != secretHash(secret.Data) || len(h) != 64 {
		t.Errorf("config hash annotation %q", h)
	}
}

// TestPerClusterAndDeterministic checks that rendering is a pure function
// of the options and that each cluster's install differs where it must.
func TestPerClusterAndDeterministic(t *testing.T) {
	render := func(o Options) []byte {
		t.Helper()
		b, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := testOptions(t)
	if !bytes.Equal(render(a), render(a)) {
		t.Fatal("rendering the same options twice gave different output")
	}
	// Equal intents render equally: defaults spelled out, groups in any order.
	spelled := a
	spelled.Namespace, spelled.ImagePullPolicy = DefaultNamespace, DefaultImagePullPolicy
	spelled.Image = DefaultImageRepository + ":" + a.AgentVersion
	if !bytes.Equal(render(a), render(spelled)) {
		t.Error("explicit defaults changed the output")
	}

	b := a
	b.ClusterID = "c-other"
	var err error
	if b.Token, err = NewAgentToken(); err != nil {
		t.Fatal(err)
	}
	objsA, _ := Objects(a)
	objsB, _ := Objects(b)
	secretA, secretB := find[*corev1.Secret](t, objsA), find[*corev1.Secret](t, objsB)
	if bytes.Equal(secretA.Data[KeyToken], secretB.Data[KeyToken]) ||
		bytes.Equal(secretA.Data[KeyClusterID], secretB.Data[KeyClusterID]) {
		t.Error("two clusters got the same credential or cluster ID")
	}
	hash := func(objs []Object) string {
		return find[*appsv1.Deployment](t, objs).Spec.Template.Annotations[AnnotationConfigHash]
	}
	if hash(objsA) == hash(objsB) {
		t.Error("different Secrets, same config hash")
	}

	// A new credential alone rolls the pod.
	c := a
	c.Token = testToken[:len(testToken)-1] + "A"
	objsC, _ := Objects(c)
	if hash(objsA) == hash(objsC) {
		t.Error("new token, same config hash")
	}
	if !strings.Contains(string(render(a)), "c-7f3a9d") || strings.Contains(string(render(a)), "c-other") {
		t.Error("cluster ID missing or leaked")
	}
}

func TestSecretHashIsUnambiguous(t *testing.T) {
	x := secretHash(map[string][]byte{"a": []byte("bc")})
	y := secretHash(map[string][]byte{"ab": []byte("c")})
	z := secretHash(map[string][]byte{"a": nil, "b": []byte("c")})
	if x == y || x == z || y == z {
		t.Error("different contents hash equally")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*Options)
		wantErr string // empty: valid
	}{
		{"valid", func(*Options) {}, ""},
		{"no CA", func(o *Options) { o.HubCAPEM = nil }, ""},
		{"image without version", func(o *Options) { o.AgentVersion = ""; o.Image = "registry.local/eco-agent@sha256:abc" }, ""},
		{"http allowed", func(o *Options) { o.HubURL = "http://127.0.0.1:1234"; o.AllowInsecureHubURL = true }, ""},
		{"hub URL with path", func(o *Options) { o.HubURL = "https://example.com/eco" }, ""},
		{"socks proxy", func(o *Options) { o.HTTPSProxy = "socks5://10.0.0.1:1080" }, ""},

		{"missing cluster ID", func(o *Options) { o.ClusterID = "" }, "cluster ID is required"},
		{"cluster ID not a label value", func(o *Options) { o.ClusterID = "a/b" }, `cluster ID "a/b"`},
		{"cluster ID too long", func(o *Options) { o.ClusterID = strings.Repeat("x", 64) }, "cluster ID"},
		{"missing hub URL", func(o *Options) { o.HubURL = "" }, "hub URL is required"},
		{"http hub URL", func(o *Options) { o.HubURL = "http://eco.example.com" }, "must use https"},
		{"wss hub URL", func(o *Options) { o.HubURL = "wss://eco.example.com" }, "scheme must be https"},
		{"relative hub URL", func(o *Options) { o.HubURL = "eco.example.com" }, "scheme must be https"},
		{"hub URL without host", func(o *Options) { o.HubURL = "https:///x" }, "has no host"},
		{"hub URL with user", func(o *Options) { o.HubURL = "https://u:p@eco.example.com" }, "user info"},
		{"hub URL with query", func(o *Options) { o.HubURL = "https://eco.example.com/?a=b" }, "query"},
		{"hub URL with fragment", func(o *Options) { o.HubURL = "https://eco.example.com/#x" }, "fragment"},
		{"missing token", func(o *Options) { o.Token = "" }, "agent token is required"},
		{"token hash instead of token", func(o *Options) { o.Token = HashToken(testToken) }, "not an eco agent token"},
		{"bad CA", func(o *Options) { o.HubCAPEM = []byte("not a cert") }, "hub CA: not PEM"},
		{"CA is a key", func(o *Options) {
			o.HubCAPEM = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, `"PRIVATE KEY", want CERTIFICATE`},
		{"namespace not a DNS label", func(o *Options) { o.Namespace = "Eco_System" }, `namespace "Eco_System": must be a DNS label`},
		{"namespace too long", func(o *Options) { o.Namespace = strings.Repeat("a", 64) }, "must be a DNS label"},
		{"kube-system namespace", func(o *Options) { o.Namespace = "kube-system" }, "reserved by Kubernetes"},
		{"default namespace", func(o *Options) { o.Namespace = "default" }, "reserved by Kubernetes"},
		{"no image or version", func(o *Options) { o.AgentVersion = "" }, "image or agent version is required"},
		{"image with space", func(o *Options) { o.Image = "eco agent" }, "white space"},
		{"bad pull policy", func(o *Options) { o.ImagePullPolicy = "Sometimes" }, `image pull policy "Sometimes"`},
		{"proxy without scheme", func(o *Options) { o.HTTPSProxy = "proxy:3128" }, "HTTPS proxy"},
		{"ftp proxy", func(o *Options) { o.HTTPSProxy = "ftp://proxy:21" }, "scheme must be http, https or socks5"},
		{"no-proxy with newline", func(o *Options) { o.NoProxy = "a\nb" }, "no-proxy list"},
		{"system group", func(o *Options) { o.ExtraImpersonationGroups = []string{"system:masters"} }, "reserved groups"},
		{"wildcard group", func(o *Options) { o.ExtraImpersonationGroups = []string{"*"} }, "reserved groups"},
		{"empty group", func(o *Options) { o.ExtraImpersonationGroups = []string{""} }, "impersonation group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			tc.mutate(&opts)
			err := opts.Validate()
			_, renderErr := Render(opts)
			if tc.wantErr == "" {
				if err != nil || renderErr != nil {
					t.Fatalf("Validate() = %v, Render error %v; want valid", err, renderErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
			if renderErr == nil || !strings.Contains(renderErr.Error(), tc.wantErr) {
				t.Fatalf("Render error = %v, want error containing %q", renderErr, tc.wantErr)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Error("error contains the token")
			}
		})
	}

	// All problems are reported at once.
	err := Options{}.Validate()
	for _, want := range []string{"cluster ID is required", "hub URL is required", "agent token is required", "image or agent version"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Options{}.Validate() = %v, want it to mention %q", err, want)
		}
	}
}

// TestSecretFeedsLoadConfig writes the rendered Secret as the kubelet
// would mount it and loads it as the agent does.
func TestSecretFeedsLoadConfig(t *testing.T) {
	opts := testOptions(t)
	opts.Namespace = "eco-elsewhere"
	objs, err := Objects(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for k, v := range find[*corev1.Secret](t, objs).Data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	nsFile := filepath.Join(t.TempDir(), "namespace")
	if err := os.WriteFile(nsFile, []byte(opts.Namespace), 0o400); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(dir, nsFile)
	if err != nil {
		t.Fatal(err)
	}
	want := AgentConfig{HubURL: opts.HubURL, ClusterID: opts.ClusterID, Token: opts.Token,
		CAPEM: bytes.TrimSpace(opts.HubCAPEM), Namespace: opts.Namespace}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("LoadConfig = %+v, want %+v", cfg, want)
	}
}
