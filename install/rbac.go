package install

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// agentRules returns the agent's ClusterRole rules: the least the agent
// needs. docs/install-yaml.md explains each one. The agent reads nothing
// else with its own identity: it forwards users' requests impersonating
// them, so the cluster's RBAC judges each user, not the agent.
func agentRules(namespace string, extraGroups []string) []rbacv1.PolicyRule {
	groups := append([]string{AdminsGroup, EditorsGroup, ViewersGroup}, extraGroups...)
	clusterRoleBindings := make([]string, 0, 4)
	for _, obj := range ClusterScopedObjects() {
		if obj.Resource.Resource == "clusterrolebindings" {
			clusterRoleBindings = append(clusterRoleBindings, obj.Name)
		}
	}
	return []rbacv1.PolicyRule{
		// Forward requests as any hub user (Impersonate-User). Users are
		// not known in advance, so no resourceNames; users named
		// system:serviceaccount:... need "serviceaccounts", which is not
		// granted.
		{
			APIGroups: []string{corev1.GroupName},
			Resources: []string{"users"},
			Verbs:     []string{"impersonate"},
		},
		// ... in the eco groups only (Impersonate-Group), never in groups
		// such as system:masters that no binding in the cluster controls.
		{
			APIGroups:     []string{corev1.GroupName},
			Resources:     []string{"groups"},
			Verbs:         []string{"impersonate"},
			ResourceNames: groups,
		},
		// ... carrying the hub's request ID into the audit log
		// (Impersonate-Extra-eco.dev%2frequest-id), and no other extra.
		{
			APIGroups: []string{authenticationv1.GroupName},
			Resources: []string{"userextras/" + RequestIDExtra},
			Verbs:     []string{"impersonate"},
		},
		// Check its own permissions to tell the hub what is missing.
		{
			APIGroups: []string{authorizationv1.GroupName},
			Resources: []string{"selfsubjectaccessreviews"},
			Verbs:     []string{"create"},
		},
		// Watch its own namespace to notice it is being deleted, and read
		// its UID to own the cluster-scoped objects. A list or watch is
		// allowed only with the field selector metadata.name=<namespace>.
		{
			APIGroups:     []string{corev1.GroupName},
			Resources:     []string{"namespaces"},
			Verbs:         []string{"get", "list", "watch"},
			ResourceNames: []string{namespace},
		},
		// Read the kube-system namespace's UID: the cluster fingerprint
		// the hub pins on first connect.
		{
			APIGroups:     []string{corev1.GroupName},
			Resources:     []string{"namespaces"},
			Verbs:         []string{"get"},
			ResourceNames: []string{"kube-system"},
		},
		// Set an ownerReference to its namespace on the cluster-scoped
		// objects of the install (a patch that changes only
		// ownerReferences needs no escalate or bind permission), and delete
		// them on removal.
		{
			APIGroups:     []string{rbacv1.GroupName},
			Resources:     []string{"clusterroles"},
			Verbs:         []string{"get", "patch", "delete"},
			ResourceNames: []string{AgentName},
		},
		{
			APIGroups:     []string{rbacv1.GroupName},
			Resources:     []string{"clusterrolebindings"},
			Verbs:         []string{"get", "patch", "delete"},
			ResourceNames: clusterRoleBindings,
		},
	}
}

// secretRules returns the rules of the agent's Role in its namespace: it
// may read and rewrite its own install Secret, and no other, to keep a
// credential the hub rotates (docs/decisions/0012-credential-rotation.md).
func secretRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{
		APIGroups:     []string{corev1.GroupName},
		Resources:     []string{"secrets"},
		Verbs:         []string{"get", "update", "patch"},
		ResourceNames: []string{AgentName},
	}}
}
