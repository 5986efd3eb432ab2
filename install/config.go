package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Keys of the agent Secret, which are also the file names under ConfigDir.
const (
	// KeyHubURL holds the hub's base URL.
	KeyHubURL = "hub-url"
	// KeyClusterID holds the hub's ID for this cluster.
	KeyClusterID = "cluster-id"
	// KeyToken holds the agent credential (see NewAgentToken).
	KeyToken = "token"
	// KeyCACert holds the PEM certificate(s) the agent trusts for the hub;
	// empty when the hub's certificate is publicly trusted.
	KeyCACert = "ca.crt"
	// KeyNamespace optionally holds the agent's namespace, for an agent run
	// outside a pod. The install does not write it: in a pod the namespace
	// comes from ServiceAccountNamespaceFile.
	KeyNamespace = "namespace"
)

// ServiceAccountNamespaceFile is where Kubernetes tells a pod its
// namespace, next to its service account token.
const ServiceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// AgentConfig is the agent's configuration, as the install YAML provides
// it. Values are trimmed of surrounding white space.
type AgentConfig struct {
	// HubURL is the hub's base URL, http or https (the choice was made
	// when the hub rendered the install).
	HubURL string
	// ClusterID is the hub's ID for this cluster.
	ClusterID string
	// Token is the agent credential.
	Token string
	// CAPEM holds the PEM certificate(s) to trust for the hub. If empty,
	// the system roots.
	CAPEM []byte
	// Namespace is the namespace the agent runs in.
	Namespace string
}

// LoadConfigDir reads the agent configuration from dir (normally
// ConfigDir), taking the namespace from ServiceAccountNamespaceFile. See
// LoadConfig.
func LoadConfigDir(dir string) (AgentConfig, error) {
	return LoadConfig(dir, ServiceAccountNamespaceFile)
}

// LoadConfig reads the agent configuration from the files of dir named by
// the Key constants, and validates it. hub-url, cluster-id, token and
// ca.crt must exist; all but ca.crt must be non-empty.
//
// The namespace is read from namespaceFile when that file exists (in a
// pod, ServiceAccountNamespaceFile), otherwise from dir's optional
// namespace file, otherwise it is DefaultNamespace. An empty namespaceFile
// skips the first source.
func LoadConfig(dir, namespaceFile string) (AgentConfig, error) {
	var errs []error
	read := func(key string, required bool) string {
		b, err := os.ReadFile(filepath.Join(dir, key))
		switch {
		case errors.Is(err, fs.ErrNotExist) && !required:
			return ""
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("missing %s (key %q of the %s Secret)", filepath.Join(dir, key), key, AgentName))
			return ""
		case err != nil:
			errs = append(errs, fmt.Errorf("reading %s: %w", key, err))
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	cfg := AgentConfig{
		HubURL:    read(KeyHubURL, true),
		ClusterID: read(KeyClusterID, true),
		Token:     read(KeyToken, true),
		CAPEM:     []byte(read(KeyCACert, true)),
		Namespace: read(KeyNamespace, false),
	}
	if len(cfg.CAPEM) == 0 {
		cfg.CAPEM = nil
	}
	if len(errs) > 0 {
		return AgentConfig{}, fmt.Errorf("loading agent config from %s: %w", dir, errors.Join(errs...))
	}
	if namespaceFile != "" {
		b, err := os.ReadFile(namespaceFile)
		switch {
		case err == nil:
			cfg.Namespace = strings.TrimSpace(string(b))
		case !errors.Is(err, fs.ErrNotExist):
			return AgentConfig{}, fmt.Errorf("loading agent config: reading namespace: %w", err)
		}
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if err := cfg.Validate(); err != nil {
		return AgentConfig{}, fmt.Errorf("loading agent config from %s: %w", dir, err)
	}
	return cfg, nil
}

// Validate reports what is wrong with c, naming the Secret key of each
// bad value. It accepts http hub URLs: whether to allow one was decided
// when the install was rendered.
func (c AgentConfig) Validate() error {
	var errs []error
	if c.HubURL == "" {
		errs = append(errs, fmt.Errorf("%s is empty", KeyHubURL))
	} else if err := checkHubURL(c.HubURL, true); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", KeyHubURL, err))
	}
	if c.ClusterID == "" {
		errs = append(errs, fmt.Errorf("%s is empty", KeyClusterID))
	} else if msgs := validation.IsValidLabelValue(c.ClusterID); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("%s %q: %s", KeyClusterID, c.ClusterID, strings.Join(msgs, "; ")))
	}
	if c.Token == "" {
		errs = append(errs, fmt.Errorf("%s is empty", KeyToken))
	} else if err := CheckTokenFormat(c.Token); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", KeyToken, err))
	}
	if err := checkCAPEM(c.CAPEM); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", KeyCACert, err))
	}
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", c.Namespace, strings.Join(msgs, "; ")))
	}
	return errors.Join(errs...)
}
