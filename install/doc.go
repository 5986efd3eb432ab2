// Package install describes how eco-agent is installed into a managed
// cluster, and is shared by the hub (which renders the install YAML) and the
// agent (which reads the configuration that YAML carries).
//
// After a cluster is imported, the hub calls [Render] with that cluster's
// [Options] to produce a multi-document YAML built from typed Kubernetes
// objects: a Namespace, the agent's ServiceAccount, a least-privilege
// ClusterRole and its binding, bindings of the eco:admins and eco:viewers
// groups to cluster-admin and view, a Secret with the agent's configuration
// and credential, and the agent Deployment. `kubectl apply -f` of it starts
// the agent, which dials out to the hub. The YAML is deterministic for given
// Options, so applying it again is harmless.
//
// Inside the cluster the agent mounts the Secret at [ConfigDir] and reads it
// with [LoadConfigDir]. [NewAgentToken], [HashToken] and [TokenMatches]
// define the agent credential: the hub mints it, stores only its hash and
// compares in constant time.
//
// docs/install-yaml.md explains what each object and permission is for and
// how removal works.
package install
