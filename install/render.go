package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Object is a Kubernetes object of the install: typed, with its TypeMeta
// set. It has the shape of controller-runtime's client.Object.
type Object interface {
	metav1.Object
	runtime.Object
}

// Render returns the install YAML for opts: the objects of [Objects], in
// apply order, as YAML documents separated by "---", after a comment
// header. The output depends only on opts, so rendering twice gives the
// same bytes and applying it twice changes nothing.
//
// The YAML carries the agent credential: serve it only to those allowed to
// install the agent.
func Render(opts Options) ([]byte, error) {
	objs, err := Objects(opts)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# eco-agent install for cluster %s, connecting to %s.\n", opts.ClusterID, opts.HubURL)
	buf.WriteString("# Apply with `kubectl apply -f` to that cluster only; remove by deleting namespace " + opts.Namespace + ".\n")
	buf.WriteString("# Contains the agent's credential: keep this file secret.\n")
	for _, obj := range objs {
		b, err := encodeYAML(obj)
		if err != nil {
			gvk := obj.GetObjectKind().GroupVersionKind()
			return nil, fmt.Errorf("encoding %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// encodeYAML encodes obj as YAML with sorted keys, leaving out the empty
// "spec: {}" and "status: {}" that typed objects such as a Namespace
// carry: an install has no status to set.
func encodeYAML(obj Object) ([]byte, error) {
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var fields map[string]any
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	if err := d.Decode(&fields); err != nil {
		return nil, err
	}
	for _, k := range []string{"spec", "status"} {
		if m, ok := fields[k].(map[string]any); ok && len(m) == 0 {
			delete(fields, k)
		}
	}
	if j, err = json.Marshal(fields); err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

// Objects returns the install's objects for opts, in apply order:
// Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding for the
// agent, the eco:admins, eco:editors and eco:viewers ClusterRoleBindings,
// the agent's Role and RoleBinding for its own Secret, the agent Secret and
// the agent Deployment. It returns an error, from
// [Options.Validate], if opts are invalid.
func Objects(opts Options) ([]Object, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("install options: %w", err)
	}
	labels := func() map[string]string {
		return map[string]string{
			LabelManagedBy: managedByValue,
			LabelName:      AgentName,
			LabelClusterID: opts.ClusterID,
		}
	}
	meta := func(name, namespace string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels()}
	}
	ns := opts.Namespace

	namespace := &corev1.Namespace{
		TypeMeta:   typeMeta(corev1.SchemeGroupVersion, "Namespace"),
		ObjectMeta: meta(ns, ""),
	}
	// The agent pod meets the "restricted" Pod Security Standard; enforce
	// it so nothing less secure runs in the agent's namespace.
	namespace.Labels["pod-security.kubernetes.io/enforce"] = "restricted"

	serviceAccount := &corev1.ServiceAccount{
		TypeMeta:   typeMeta(corev1.SchemeGroupVersion, "ServiceAccount"),
		ObjectMeta: meta(AgentName, ns),
		// Only the agent pod, which opts in, gets a token.
		AutomountServiceAccountToken: ptr(false),
	}

	clusterRole := &rbacv1.ClusterRole{
		TypeMeta:   typeMeta(rbacv1.SchemeGroupVersion, "ClusterRole"),
		ObjectMeta: meta(AgentName, ""),
		Rules:      agentRules(ns, opts.ExtraImpersonationGroups),
	}

	agentBinding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   typeMeta(rbacv1.SchemeGroupVersion, "ClusterRoleBinding"),
		ObjectMeta: meta(AgentName, ""),
		RoleRef:    clusterRoleRef(AgentName),
		Subjects: []rbacv1.Subject{{
			Kind:      rbacv1.ServiceAccountKind,
			Name:      AgentName,
			Namespace: ns,
		}},
	}
	groupBinding := func(group, role string) *rbacv1.ClusterRoleBinding {
		return &rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta(rbacv1.SchemeGroupVersion, "ClusterRoleBinding"),
			ObjectMeta: meta(group, ""),
			RoleRef:    clusterRoleRef(role),
			Subjects: []rbacv1.Subject{{
				APIGroup: rbacv1.GroupName,
				Kind:     rbacv1.GroupKind,
				Name:     group,
			}},
		}
	}

	// The agent's own Secret, and only it, through a Role in its
	// namespace (a ClusterRole would name that Secret in every
	// namespace).
	secretRole := &rbacv1.Role{
		TypeMeta:   typeMeta(rbacv1.SchemeGroupVersion, "Role"),
		ObjectMeta: meta(AgentName, ns),
		Rules:      secretRules(),
	}
	secretBinding := &rbacv1.RoleBinding{
		TypeMeta:   typeMeta(rbacv1.SchemeGroupVersion, "RoleBinding"),
		ObjectMeta: meta(AgentName, ns),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: AgentName},
		Subjects: []rbacv1.Subject{{
			Kind:      rbacv1.ServiceAccountKind,
			Name:      AgentName,
			Namespace: ns,
		}},
	}

	secret := &corev1.Secret{
		TypeMeta:   typeMeta(corev1.SchemeGroupVersion, "Secret"),
		ObjectMeta: meta(AgentName, ns),
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			KeyHubURL:    []byte(opts.HubURL),
			KeyClusterID: []byte(opts.ClusterID),
			KeyToken:     []byte(opts.Token),
			KeyCACert:    append([]byte{}, opts.HubCAPEM...),
		},
	}

	deployment := agentDeployment(opts, meta(AgentName, ns), labels(), secretHash(secret.Data))

	return []Object{
		namespace,
		serviceAccount,
		clusterRole,
		agentBinding,
		groupBinding(AdminsGroup, "cluster-admin"),
		groupBinding(EditorsGroup, "edit"),
		groupBinding(ViewersGroup, "view"),
		secretRole,
		secretBinding,
		secret,
		deployment,
	}, nil
}

func agentDeployment(opts Options, meta metav1.ObjectMeta, podLabels map[string]string, configHash string) *appsv1.Deployment {
	var env []corev1.EnvVar
	if opts.HTTPSProxy != "" {
		env = append(env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: opts.HTTPSProxy})
	}
	if opts.NoProxy != "" {
		env = append(env, corev1.EnvVar{Name: "NO_PROXY", Value: opts.NoProxy})
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path:   path,
				Port:   intstr.FromString("health"),
				Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds:    10,
			TimeoutSeconds:   2,
			FailureThreshold: 3,
		}
	}
	liveness := probe(HealthzPath)
	// Give a slow API server or hub time before restarting the agent.
	liveness.InitialDelaySeconds = 10
	readiness := probe(ReadyzPath)

	return &appsv1.Deployment{
		TypeMeta:   typeMeta(appsv1.SchemeGroupVersion, "Deployment"),
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelName: AgentName}},
			// One tunnel per cluster: never run an old and a new agent
			// side by side.
			Strategy:             appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			RevisionHistoryLimit: ptr[int32](3),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{AnnotationConfigHash: configHash},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName:            AgentName,
					AutomountServiceAccountToken:  ptr(true),
					TerminationGracePeriodSeconds: ptr[int64](30),
					NodeSelector:                  map[string]string{corev1.LabelOSStable: "linux"},
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr(true),
						RunAsUser:      ptr[int64](AgentUID),
						RunAsGroup:     ptr[int64](AgentUID),
						FSGroup:        ptr[int64](AgentUID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            AgentName,
						Image:           opts.Image,
						ImagePullPolicy: opts.ImagePullPolicy,
						Command:         []string{AgentName},
						Args:            []string{"--" + ConfigDirFlag + "=" + ConfigDir, "--" + IdentityTokenFlag + "=" + IdentityTokenPath},
						Env:             env,
						Ports: []corev1.ContainerPort{{
							Name:          "health",
							ContainerPort: HealthPort,
							Protocol:      corev1.ProtocolTCP,
						}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("50m"),
								corev1.ResourceMemory: resource.MustParse("64Mi"),
							},
							Limits: corev1.ResourceList{
								corev1.ResourceMemory: resource.MustParse("256Mi"),
							},
						},
						LivenessProbe:  liveness,
						ReadinessProbe: readiness,
						VolumeMounts: []corev1.VolumeMount{{
							Name:      "config",
							MountPath: ConfigDir,
							ReadOnly:  true,
						}, {
							Name:      identityVolume,
							MountPath: IdentityTokenDir,
							ReadOnly:  true,
						}},
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             ptr(true),
							ReadOnlyRootFilesystem:   ptr(true),
							AllowPrivilegeEscalation: ptr(false),
							Privileged:               ptr(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Volumes: []corev1.Volume{{
						Name: "config",
						VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: AgentName,
							// Readable by the agent's group (FSGroup) only.
							DefaultMode: ptr[int32](0o440),
						}},
					}, {
						// The identity token: minted by the kubelet for the
						// agent's ServiceAccount with the hub's URL as
						// audience, rotated before its 10 minutes are up.
						// It proves to the hub which cluster the agent
						// runs in; no other audience accepts it.
						Name: identityVolume,
						VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Audience:          opts.HubURL,
								ExpirationSeconds: ptr[int64](IdentityTokenExpirySeconds),
								Path:              IdentityTokenFile,
							}}},
							DefaultMode: ptr[int32](0o440),
						}},
					}},
				},
			},
		},
	}
}

// identityVolume names the volume of the agent's identity token.
const identityVolume = "identity-token"

// secretHash returns a hex SHA-256 over the Secret's keys and values, in
// key order, each length-prefixed so that no two contents collide.
func secretHash(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		for _, b := range [][]byte{[]byte(k), data[k]} {
			h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func typeMeta(gv schema.GroupVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: gv.String(), Kind: kind}
}

func clusterRoleRef(name string) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
}

func ptr[T any](v T) *T { return &v }

// ClusterObject names a cluster-scoped object the install creates.
type ClusterObject struct {
	Resource schema.GroupVersionResource
	Name     string
}

// ClusterScopedObjects returns the cluster-scoped objects of an install,
// which deleting the agent's namespace does not remove by itself. The
// agent sets [NamespaceOwnerReference] on each so that the garbage
// collector deletes them once the namespace is gone, and on removal
// deletes them itself in the order returned: the group bindings first,
// then its own binding. After that it has no permissions left, so it
// cannot delete the last one, its ClusterRole (inert without a binding);
// the garbage collector does.
func ClusterScopedObjects() []ClusterObject {
	crb := rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings")
	return []ClusterObject{
		{Resource: crb, Name: AdminsGroup},
		{Resource: crb, Name: EditorsGroup},
		{Resource: crb, Name: ViewersGroup},
		{Resource: crb, Name: AgentName},
		{Resource: rbacv1.SchemeGroupVersion.WithResource("clusterroles"), Name: AgentName},
	}
}

// NamespaceOwnerReference returns the ownerReference the agent sets on the
// objects of [ClusterScopedObjects], naming its namespace (name and UID)
// as their owner. It sets neither controller nor blockOwnerDeletion:
// blocking the owner's deletion would need update permission on
// namespaces/finalizers where the OwnerReferencesPermissionEnforcement
// admission plugin runs, and nothing needs the namespace to wait.
func NamespaceOwnerReference(namespace string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: corev1.SchemeGroupVersion.String(),
		Kind:       "Namespace",
		Name:       namespace,
		UID:        uid,
	}
}
