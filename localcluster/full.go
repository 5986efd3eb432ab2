package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// startFull starts the controllers, the scheduler and kwok, registers one
// fake node, and waits until the cluster can run pods.
func (c *Cluster) startFull(ctx context.Context, kubeletPort int) error {
	p := func(f string) string { return c.path("pki", f) }
	cm := c.newProcess(KubeControllerManager,
		"--kubeconfig="+c.path("controller-manager.kubeconfig"),
		"--authentication-kubeconfig="+c.path("controller-manager.kubeconfig"),
		"--authorization-kubeconfig="+c.path("controller-manager.kubeconfig"),
		"--secure-port=0",
		"--use-service-account-credentials",
		"--root-ca-file="+p("ca.crt"),
		"--service-account-private-key-file="+p("sa.key"),
		"--cluster-signing-cert-file="+p("ca.crt"),
		"--cluster-signing-key-file="+p("ca.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--leader-elect=false",
		"--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
	)
	sched := c.newProcess(KubeScheduler,
		"--kubeconfig="+c.path("scheduler.kubeconfig"),
		"--authentication-kubeconfig="+c.path("scheduler.kubeconfig"),
		"--authorization-kubeconfig="+c.path("scheduler.kubeconfig"),
		"--secure-port=0",
		"--leader-elect=false",
	)
	kwokConfig, err := c.writeKwokConfig()
	if err != nil {
		return err
	}
	kwok := c.newProcess(Kwok,
		"--kubeconfig="+c.path("kwok.kubeconfig"),
		"--config="+kwokConfig,
		"--manage-all-nodes=true",
		// kwok renews the node's Lease, as a kubelet does; without it
		// the controller manager marks the node NotReady after its
		// grace period (~50 s), kwok's node-initialize stage runs again
		// and its patch drops the node's addresses, and exec, logs and
		// port-forward fail from then on ("no preferred addresses").
		"--node-lease-duration-seconds=40",
		"--node-ip=127.0.0.1",
		"--node-port="+strconv.Itoa(kubeletPort),
		"--server-address=127.0.0.1:"+strconv.Itoa(kubeletPort),
		"--tls-cert-file="+p("kwok-serving.crt"),
		"--tls-private-key-file="+p("kwok-serving.key"),
		"--cidr=10.244.0.1/16",
	)
	for _, proc := range []*process{cm, sched, kwok} {
		if err := proc.start(); err != nil {
			return err
		}
		c.others = append(c.others, proc)
	}

	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	c.NodeName = c.Name + "-node"
	if err := createNode(ctx, cs, c.NodeName); err != nil {
		return err
	}
	// Each check names the component it proves works.
	checks := []struct {
		proc *process
		what string
		ok   func(context.Context) (bool, error)
	}{
		{kwok, "fake node Ready", func(ctx context.Context) (bool, error) {
			n, err := cs.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		}},
		{cm, "default ServiceAccount", func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		}},
		{cm, "aggregated view ClusterRole", func(ctx context.Context) (bool, error) {
			r, err := cs.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
			return err == nil && len(r.Rules) > 0, nil
		}},
	}
	for _, chk := range checks {
		if err := poll(ctx, chk.proc, chk.ok); err != nil {
			return processError(chk.proc, fmt.Errorf("waiting for %s: %w", chk.what, err))
		}
	}
	return nil
}

// writeKwokConfig writes kwok's configuration: the stages from its module
// plus ClusterLogs, ClusterExec and ClusterPortForward objects that serve
// one log file for every container, run exec commands on this host, and
// forward every pod port to PortForwardAddr.
func (c *Cluster) writeKwokConfig() (string, error) {
	var docs []string
	for _, s := range kwokStages {
		data, err := os.ReadFile(filepath.Join(c.Bin.Dir, stagesDir, filepath.Base(s)))
		if err != nil {
			return "", fmt.Errorf("reading kwok stage: %w", err)
		}
		docs = append(docs, strings.TrimSpace(string(data)))
	}
	c.PodLogFile = c.path("logs", "pods.log")
	if err := os.WriteFile(c.PodLogFile, nil, 0o644); err != nil {
		return "", fmt.Errorf("creating pod log: %w", err)
	}
	if err := c.AppendPodLog("container started by kwok on " + c.Name); err != nil {
		return "", err
	}
	workDir := c.path("exec")
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return "", fmt.Errorf("creating exec directory: %w", err)
	}
	docs = append(docs, fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: all-pods
spec:
  selector: {}
  logs:
  - logsFile: %q
    follow: true`, c.PodLogFile), fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: all-pods
spec:
  selector: {}
  execs:
  - local:
      workDir: %q`, workDir), fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: all-pods
spec:
  selector: {}
  forwards:
  - target:
      address: 127.0.0.1
      port: %s`, strings.TrimPrefix(c.PortForwardAddr, "127.0.0.1:")))
	path := c.path("kwok.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing kwok config: %w", err)
	}
	return path, nil
}

func createNode(ctx context.Context, cs kubernetes.Interface, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("creating fake node: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("creating fake node: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
