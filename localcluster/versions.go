package localcluster

// Versions of the components a local cluster runs. They must match
// tools/kube/go.mod (a test checks it): the binaries are built from that
// module and cached in a directory named after these versions.
const (
	// KubernetesVersion is the k8s.io/kubernetes release of kube-apiserver,
	// kube-controller-manager, kube-scheduler and kubectl.
	KubernetesVersion = "v1.34.4"
	// EtcdVersion is the go.etcd.io/etcd/server/v3 release that
	// KubernetesVersion pins.
	EtcdVersion = "v3.6.4"
	// KwokVersion is the sigs.k8s.io/kwok release that fakes nodes and
	// serves pod logs and exec.
	KwokVersion = "v0.8.0"
)

// versionKey names the binary cache directory.
const versionKey = "k8s-" + KubernetesVersion + "_etcd-" + EtcdVersion + "_kwok-" + KwokVersion
