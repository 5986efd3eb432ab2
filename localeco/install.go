package localeco

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/localcluster"
)

// AgentSetup is what the agent's pod would have after the install YAML was
// applied: the Secret mounted as files, and its ServiceAccount's token.
type AgentSetup struct {
	// ClusterID is the hub's ID of the cluster.
	ClusterID string
	// Namespace is the agent's namespace.
	Namespace string
	// ConfigDir holds one file per key of the install Secret, as the
	// kubelet mounts it.
	ConfigDir string
	// TokenFile holds a ServiceAccount token from TokenRequest; see
	// RefreshToken.
	TokenFile string
	// IdentityTokenFile holds the agent's identity token: a TokenRequest
	// token for the same ServiceAccount with the hub's URL as audience
	// and a 10-minute expiry, as the install YAML's projected volume
	// gives the pod; see RefreshToken.
	IdentityTokenFile string
	// Kubeconfig reaches the cluster's API server with TokenFile, for an
	// agent run as a process (eco-agent --kubeconfig).
	Kubeconfig string
	// Config is the agent configuration loaded from ConfigDir.
	Config install.AgentConfig

	cluster *localcluster.Cluster
}

// TokenTTL is how long the ServiceAccount tokens Install requests live;
// RefreshToken is due well before.
const TokenTTL = time.Hour

// Install fetches cluster id's install YAML from the hub, applies it to c
// with real kubectl, and prepares the agent's files under dir.
func Install(ctx context.Context, h *Hub, c *localcluster.Cluster, id, dir string) (*AgentSetup, error) {
	var yaml []byte
	if err := h.Do(ctx, http.MethodGet, "/api/v1/clusters/"+id+"/install.yaml", "", nil, &yaml); err != nil {
		return nil, fmt.Errorf("fetching install YAML: %w", err)
	}
	if out, err := ApplyYAML(ctx, c, yaml); err != nil {
		return nil, err
	} else if !strings.Contains(out, "created") && !strings.Contains(out, "unchanged") && !strings.Contains(out, "configured") {
		return nil, fmt.Errorf("kubectl apply printed nothing expected:\n%s", out)
	}
	return Installed(ctx, c, id, dir)
}

// Installed prepares the agent's files under dir from an install YAML
// already applied to c (by kubectl, or by the hub itself).
func Installed(ctx context.Context, c *localcluster.Cluster, id, dir string) (*AgentSetup, error) {
	s := &AgentSetup{
		ClusterID:         id,
		ConfigDir:         filepath.Join(dir, "config"),
		TokenFile:         filepath.Join(dir, "token"),
		IdentityTokenFile: filepath.Join(dir, "identity.token"),
		Kubeconfig:        filepath.Join(dir, "agent.kubeconfig"),
		cluster:           c,
	}
	cs, err := c.Clientset()
	if err != nil {
		return nil, err
	}
	ns := install.DefaultNamespace
	secret, err := cs.CoreV1().Secrets(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the install Secret: %w", err)
	}
	if err := os.MkdirAll(s.ConfigDir, 0o700); err != nil {
		return nil, err
	}
	for k, v := range secret.Data {
		if err := os.WriteFile(filepath.Join(s.ConfigDir, k), v, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(s.ConfigDir, install.KeyNamespace), []byte(ns), 0o600); err != nil {
		return nil, err
	}
	if s.Config, err = install.LoadConfig(s.ConfigDir, ""); err != nil {
		return nil, err
	}
	s.Namespace = s.Config.Namespace
	if err := s.RefreshToken(ctx); err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.CAPEM}
	kc.AuthInfos["eco-agent"] = &clientcmdapi.AuthInfo{TokenFile: s.TokenFile}
	kc.Contexts["eco-agent"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "eco-agent", Namespace: ns}
	kc.CurrentContext = "eco-agent"
	if err := clientcmd.WriteToFile(*kc, s.Kubeconfig); err != nil {
		return nil, fmt.Errorf("writing agent kubeconfig: %w", err)
	}
	return s, nil
}

// ApplyYAML runs kubectl apply -f - against c.
func ApplyYAML(ctx context.Context, c *localcluster.Cluster, yaml []byte) (string, error) {
	cmd := c.Kubectl(ctx, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(string(yaml))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl apply: %w\n%s", err, out)
	}
	return string(out), nil
}

// IdentityTokenTTL is the identity token's lifetime, as in the install
// YAML's projected volume.
const IdentityTokenTTL = install.IdentityTokenExpirySeconds * time.Second

// RefreshToken requests new ServiceAccount tokens, one for the API server
// and the identity token with the hub's URL as audience, and replaces
// TokenFile and IdentityTokenFile atomically, as the kubelet rotates a
// projected token.
func (s *AgentSetup) RefreshToken(ctx context.Context) error {
	if err := s.requestToken(ctx, s.TokenFile, TokenTTL, nil); err != nil {
		return err
	}
	return s.requestToken(ctx, s.IdentityTokenFile, IdentityTokenTTL, []string{s.Config.HubURL})
}

// requestToken writes a TokenRequest token for the agent's ServiceAccount
// to file.
func (s *AgentSetup) requestToken(ctx context.Context, file string, ttl time.Duration, audiences []string) error {
	cs, err := s.cluster.Clientset()
	if err != nil {
		return err
	}
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(s.Namespace).CreateToken(ctx, install.AgentName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs, Audiences: audiences}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest for %s/%s: %w", s.Namespace, install.AgentName, err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// KeepTokenFresh refreshes the tokens every IdentityTokenTTL*0.8 (the
// shorter-lived one's due), until ctx ends.
func (s *AgentSetup) KeepTokenFresh(ctx context.Context) {
	t := time.NewTicker(IdentityTokenTTL * 8 / 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.RefreshToken(ctx)
		}
	}
}

// AgentConfig is the configuration for running the agent in-process.
func (s *AgentSetup) AgentConfig() agent.Config {
	return agent.Config{
		HubURL:            s.Config.HubURL,
		ClusterID:         s.Config.ClusterID,
		Token:             s.Config.Token,
		HubCAPEM:          s.Config.CAPEM,
		IdentityTokenFile: s.IdentityTokenFile,
		Namespace:         s.Namespace,
		RESTConfig:        &rest.Config{Host: s.cluster.URL, TLSClientConfig: rest.TLSClientConfig{CAData: s.cluster.CAPEM}, BearerTokenFile: s.TokenFile},
		HealthAddr:        "127.0.0.1:0",
	}
}

// AgentCommand returns the eco-agent command line a Deployment would run,
// pointed at this setup's files; bin is the eco-agent binary.
func (s *AgentSetup) AgentCommand(ctx context.Context, bin, healthAddr string) *exec.Cmd {
	return exec.CommandContext(ctx, bin,
		"--config-dir="+s.ConfigDir,
		"--kubeconfig="+s.Kubeconfig,
		"--identity-token-file="+s.IdentityTokenFile,
		"--namespace="+s.Namespace,
		"--health-addr="+healthAddr,
		"--log-format=text",
	)
}
