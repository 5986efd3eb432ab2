// Package localcluster runs a real Kubernetes control plane on loopback for
// eco's tests and demo: etcd and kube-apiserver (the light mode), plus
// kube-controller-manager, kube-scheduler and kwok with one fake node in
// the full mode, so that default ServiceAccounts, namespace deletion,
// garbage collection, the aggregated view/edit roles, Deployments, Running
// pods, `kubectl logs -f` and `kubectl exec` all work.
//
// The binaries are built from Go modules by Build (see tools/kube) and
// cached by version. Every cluster has its own ports, PKI and data
// directory; its processes die with the process that started them.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eco-project/eco/pki"
)

// Config configures a local cluster.
type Config struct {
	// BinDir holds the binaries (see Build). Empty means DefaultBinDir().
	BinDir string
	// Dir holds the cluster's state: PKI, etcd data, kubeconfigs, logs.
	// Empty means a new temporary directory that Stop removes; a given
	// directory is kept.
	Dir string
	// Full also runs kube-controller-manager, kube-scheduler and kwok with
	// one fake node. False runs etcd and kube-apiserver only, which is
	// enough for tests that need no pods, no namespace deletion and no
	// aggregated roles.
	Full bool
	// Name names the cluster's kubeconfig context and, with "-node", its
	// fake node. Empty means "eco-local".
	Name string
	// AuditLog makes kube-apiserver write its audit log, every request at
	// the Metadata level, as JSON lines to Cluster.AuditLogFile: tests read
	// who the API server saw act (the impersonated user and its extras).
	AuditLog bool
	// StartTimeout bounds Start. Zero means 2 minutes.
	StartTimeout time.Duration
	// APIServerArgs are more kube-apiserver flags, e.g. an authentication
	// webhook for a test of a cloud's tokens.
	APIServerArgs []string
	// Logger receives component start/stop events. Nil discards them.
	Logger *slog.Logger
}

// Cluster is a running local cluster.
type Cluster struct {
	// Name is the kubeconfig context name.
	Name string
	// Dir is the state directory.
	Dir string
	// URL is the kube-apiserver's https URL on 127.0.0.1.
	URL string
	// CAPEM is the cluster CA that signed the API server's certificate.
	CAPEM []byte
	// AdminKubeconfig is the path of a kubeconfig with a system:masters
	// client certificate.
	AdminKubeconfig string
	// NodeName is the fake node's name in the full mode, empty otherwise.
	NodeName string
	// PodLogFile is the CRI-format log file kwok serves as every
	// container's log in the full mode; append lines with AppendPodLog.
	PodLogFile string
	// PortForwardAddr is where kwok sends `kubectl port-forward` to any
	// pod port in the full mode: a loopback address reserved for the
	// cluster, on which a test serves what the "pod" answers.
	PortForwardAddr string
	// AuditLogFile is kube-apiserver's audit log when Config.AuditLog is
	// set, empty otherwise.
	AuditLogFile string
	// Bin locates the binaries, kubectl among them.
	Bin Binaries

	cfg        Config
	ownDir     bool
	restConfig *rest.Config
	etcd       *process
	apiserver  *process
	others     []*process // controller-manager, scheduler, kwok
	logger     *slog.Logger
}

// Start starts a cluster and waits until it serves. On error nothing is
// left running.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Name == "" {
		cfg.Name = "eco-local"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	bin, err := FindBinaries(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	began := time.Now()

	c := &Cluster{Name: cfg.Name, Dir: cfg.Dir, Bin: bin, cfg: cfg, logger: logger.With("cluster", cfg.Name)}
	if c.Dir == "" {
		d, err := os.MkdirTemp("", "eco-localcluster-")
		if err != nil {
			return nil, fmt.Errorf("creating cluster directory: %w", err)
		}
		c.Dir, c.ownDir = d, true
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	for _, d := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("creating cluster directory: %w", err)
		}
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kubeletPort := ports[0], ports[1], ports[2], ports[3]
	if cfg.Full {
		c.PortForwardAddr = "127.0.0.1:" + strconv.Itoa(ports[4])
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	if err := c.writePKI(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(ctx, etcdPort, peerPort); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, etcdPort, apiPort); err != nil {
		return nil, err
	}
	if cfg.Full {
		if err := c.startFull(ctx, kubeletPort); err != nil {
			return nil, err
		}
	}
	c.logger.Info("local cluster ready", "url", c.URL, "full", cfg.Full, "dir", c.Dir, "elapsed", time.Since(began).Round(time.Millisecond))
	return c, nil
}

// RESTConfig returns a new admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Clientset returns an admin clientset.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("creating clientset: %w", err)
	}
	return cs, nil
}

// Kubectl returns a command running the cached kubectl against this
// cluster as admin (unless args carry their own --kubeconfig).
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Bin.Path(Kubectl), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.AdminKubeconfig)
	return cmd
}

// StopAPIServer stops kube-apiserver, leaving etcd (and everything else)
// running: the cluster is unreachable until StartAPIServer. It simulates
// an outage, so it waits only a second for a graceful exit (which, with
// watches open, kube-apiserver would stretch to its full grace period)
// before killing the process.
func (c *Cluster) StopAPIServer() error { return c.apiserver.stop(time.Second) }

// StartAPIServer starts kube-apiserver again on the same port and waits
// until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.apiserver.start(); err != nil {
		return err
	}
	return c.waitAPIServer(ctx)
}

// AppendPodLog appends one line to the log kwok serves for every
// container, as the container runtime would write it.
func (c *Cluster) AppendPodLog(line string) error {
	if c.PodLogFile == "" {
		return errors.New("pod logs need a full cluster")
	}
	f, err := os.OpenFile(c.PodLogFile, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("opening pod log: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), line)
	return err
}

// Stop stops every component and, when Start created the state directory,
// removes it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.others) - 1; i >= 0; i-- {
		errs = append(errs, c.others[i].stop(5*time.Second))
	}
	if c.apiserver != nil {
		errs = append(errs, c.apiserver.stop(10*time.Second))
	}
	if c.etcd != nil {
		errs = append(errs, c.etcd.stop(10*time.Second))
	}
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

func (c *Cluster) newProcess(name string, args ...string) *process {
	return &process{
		name:    name,
		path:    c.Bin.Path(name),
		args:    args,
		logPath: c.path("logs", name+".log"),
		logger:  c.logger,
	}
}

// writePKI issues the cluster CA and every certificate the components use.
func (c *Cluster) writePKI() error {
	now := time.Now()
	ca, err := pki.NewCA(c.Name+"-ca", now)
	if err != nil {
		return err
	}
	c.CAPEM = ca.CertPEM
	files := map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": ca.KeyPEM}
	leaves := []struct {
		file string
		req  pki.LeafRequest
	}{
		{"apiserver", pki.LeafRequest{CommonName: "kube-apiserver", Hosts: []string{
			"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}}},
		{"admin", pki.LeafRequest{CommonName: "eco-local-admin", Organization: []string{"system:masters"}}},
		{"apiserver-kubelet-client", pki.LeafRequest{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}}},
		{"controller-manager", pki.LeafRequest{CommonName: "system:kube-controller-manager"}},
		{"scheduler", pki.LeafRequest{CommonName: "system:kube-scheduler"}},
		{"kwok", pki.LeafRequest{CommonName: "kwok", Organization: []string{"system:masters"}}},
		{"kwok-serving", pki.LeafRequest{CommonName: "kwok-kubelet", Hosts: []string{"127.0.0.1", "localhost"}}},
	}
	pairs := map[string]pki.KeyPair{}
	for _, l := range leaves {
		kp, err := ca.Issue(l.req, now)
		if err != nil {
			return err
		}
		pairs[l.file] = kp
		files[l.file+".crt"] = kp.CertPEM
		files[l.file+".key"] = kp.KeyPEM
	}
	saKey, saPub, err := pki.NewRSAKey()
	if err != nil {
		return err
	}
	files["sa.key"], files["sa.pub"] = saKey, saPub
	if err := pki.WriteFiles(c.path("pki"), files); err != nil {
		return err
	}
	c.restConfig = &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   ca.CertPEM,
			CertData: pairs["admin"].CertPEM,
			KeyData:  pairs["admin"].KeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	c.AdminKubeconfig = c.path("admin.kubeconfig")
	for _, kc := range []struct{ file, pair string }{
		{"admin.kubeconfig", "admin"},
		{"controller-manager.kubeconfig", "controller-manager"},
		{"scheduler.kubeconfig", "scheduler"},
		{"kwok.kubeconfig", "kwok"},
	} {
		if err := c.WriteKubeconfig(c.path(kc.file), pairs[kc.pair]); err != nil {
			return err
		}
	}
	return nil
}

// WriteKubeconfig writes a kubeconfig for this cluster authenticating with
// the given client certificate, everything embedded.
func (c *Cluster) WriteKubeconfig(path string, client pki.KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.CAPEM}
	cfg.AuthInfos[c.Name] = &clientcmdapi.AuthInfo{ClientCertificateData: client.CertPEM, ClientKeyData: client.KeyPEM}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	cfg.CurrentContext = c.Name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context, port, peerPort int) error {
	client := "http://127.0.0.1:" + strconv.Itoa(port)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	c.etcd = c.newProcess(Etcd,
		"--name=default",
		"--data-dir="+c.path("etcd"),
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err := c.etcd.start(); err != nil {
		return err
	}
	err := poll(ctx, c.etcd, func(ctx context.Context) (bool, error) {
		body, err := httpGet(ctx, http.DefaultClient, client+"/health")
		return err == nil && strings.Contains(body, `"health":"true"`), nil
	})
	if err != nil {
		return processError(c.etcd, fmt.Errorf("waiting for etcd: %w", err))
	}
	return nil
}

func (c *Cluster) startAPIServer(ctx context.Context, etcdPort, apiPort int) error {
	p := func(f string) string { return c.path("pki", f) }
	c.apiserver = c.newProcess(KubeAPIServer,
		"--etcd-servers=http://127.0.0.1:"+strconv.Itoa(etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+p("apiserver.crt"),
		"--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--kubelet-client-certificate="+p("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+p("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p("sa.pub"),
		"--service-account-signing-key-file="+p("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--shutdown-delay-duration=0s",
	)
	if c.cfg.AuditLog {
		policy := c.path("audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return fmt.Errorf("writing the audit policy: %w", err)
		}
		c.AuditLogFile = c.path("audit.log")
		c.apiserver.args = append(c.apiserver.args, "--audit-policy-file="+policy,
			"--audit-log-path="+c.AuditLogFile, "--audit-log-format=json", "--audit-log-maxbackup=1")
	}
	c.apiserver.args = append(c.apiserver.args, c.cfg.APIServerArgs...)
	if err := c.apiserver.start(); err != nil {
		return err
	}
	return c.waitAPIServer(ctx)
}

// auditPolicy logs every request's metadata once, when its response is
// complete.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
`

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	tlsCfg, err := rest.TLSConfigFor(c.restConfig)
	if err != nil {
		return fmt.Errorf("building admin TLS config: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	err = poll(ctx, c.apiserver, func(ctx context.Context) (bool, error) {
		body, err := httpGet(ctx, hc, c.URL+"/readyz")
		return err == nil && body == "ok", nil
	})
	if err != nil {
		return processError(c.apiserver, fmt.Errorf("waiting for kube-apiserver: %w", err))
	}
	return nil
}

// poll calls check every 100 ms until it reports done, ctx ends, or p
// exits.
func poll(ctx context.Context, p *process, check func(context.Context) (bool, error)) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := check(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p != nil {
			if gone, _ := p.exited(); gone {
				return fmt.Errorf("%s %w", p.name, errExited)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func httpGet(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// freePorts reserves n distinct loopback ports. They are released before
// return, so a component may lose one in a race; Start then fails with the
// component's own "address in use" log.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserving a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
