package install

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Names and defaults shared by the hub, the install YAML and the agent.
const (
	// DefaultNamespace is the namespace the agent runs in when
	// Options.Namespace is empty.
	DefaultNamespace = "eco-system"

	// AgentName names the agent's ServiceAccount, ClusterRole,
	// ClusterRoleBinding, Secret, Deployment and container.
	AgentName = "eco-agent"

	// AdminsGroup is the group the hub impersonates for cluster
	// administrators. The install binds it to the cluster-admin ClusterRole
	// with a ClusterRoleBinding of the same name.
	AdminsGroup = "eco:admins"
	// EditorsGroup is the group the hub impersonates for hub users granted
	// edit on the cluster. The install binds it to the edit ClusterRole
	// with a ClusterRoleBinding of the same name.
	EditorsGroup = "eco:editors"
	// ViewersGroup is the group the hub impersonates for hub users granted
	// view (and for read-only tokens). The install binds it to the view
	// ClusterRole with a ClusterRoleBinding of the same name.
	ViewersGroup = "eco:viewers"

	// RequestIDExtra is the user-info extra key under which the hub passes
	// its request ID when impersonating (the Impersonate-Extra-eco.dev%2frequest-id
	// header), so that the ID shows in the managed cluster's audit log.
	// The agent's ClusterRole allows impersonating this extra and no other.
	RequestIDExtra = "eco.dev/request-id"

	// DefaultImageRepository is the agent image used, tagged with
	// Options.AgentVersion, when Options.Image is empty.
	DefaultImageRepository = "ghcr.io/eco-project/eco-agent"

	// DefaultImagePullPolicy is used when Options.ImagePullPolicy is empty.
	DefaultImagePullPolicy = corev1.PullIfNotPresent

	// ConfigDir is where the Deployment mounts the agent Secret.
	ConfigDir = "/etc/eco-agent"
	// ConfigDirFlag is the eco-agent flag naming the configuration
	// directory; the Deployment runs `eco-agent --config-dir=/etc/eco-agent`.
	ConfigDirFlag = "config-dir"

	// HealthPort is the agent's health port, serving HealthzPath
	// (liveness) and ReadyzPath (readiness) over plain HTTP.
	HealthPort = 8081
	// HealthzPath is the agent's liveness endpoint.
	HealthzPath = "/healthz"
	// ReadyzPath is the agent's readiness endpoint.
	ReadyzPath = "/readyz"

	// AgentUID is the numeric user and group the agent container runs as
	// (the distroless "nonroot" user).
	AgentUID = 65532

	// IdentityTokenDir is where the Deployment mounts the agent's identity
	// token: a projected ServiceAccount token with the hub's URL as
	// audience, which the kubelet rotates; the agent presents it to the
	// hub at every connect to prove which cluster it runs in.
	IdentityTokenDir = "/var/run/secrets/eco.dev/identity"
	// IdentityTokenFile is the token's file name in IdentityTokenDir.
	IdentityTokenFile = "token"
	// IdentityTokenPath is the token's full path in the agent container.
	IdentityTokenPath = IdentityTokenDir + "/" + IdentityTokenFile
	// IdentityTokenFlag is the eco-agent flag naming the token file.
	IdentityTokenFlag = "identity-token-file"
	// IdentityTokenExpirySeconds is the identity token's lifetime: 10
	// minutes, the least the kubelet allows; it rotates the token at 80%.
	IdentityTokenExpirySeconds = 600

	// IdentityKeysPath is where an API server serves its service-account
	// issuer's public keys (a JWKS). The hub fetches it through the
	// agent, which sends that one request as its own ServiceAccount.
	IdentityKeysPath = "/openid/v1/jwks"
	// IdentityDiscoveryPath is the API server's OIDC discovery document,
	// which the agent serves the same way.
	IdentityDiscoveryPath = "/.well-known/openid-configuration"
)

// Labels and annotations the install sets.
const (
	// LabelManagedBy is set to "eco" on every object of the install.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelName is set to AgentName on every object of the install; the
	// Deployment selects its pods by it.
	LabelName = "app.kubernetes.io/name"
	// LabelClusterID carries the hub's cluster ID on every object.
	LabelClusterID = "eco.dev/cluster-id"
	// AnnotationConfigHash on the agent pod template holds the SHA-256 of
	// the agent Secret's content, so that a new credential or hub URL
	// rolls the pod.
	AnnotationConfigHash = "eco.dev/config-hash"

	managedByValue = "eco"
)

// Options describe one cluster's install. The hub fills them from the
// cluster record; see each field for its zero value.
type Options struct {
	// ClusterID is the hub's ID for the cluster. Required. It is the
	// value of the eco.dev/cluster-id label, so it must be a valid label
	// value: at most 63 characters of [A-Za-z0-9_.-], starting and ending
	// with an alphanumeric.
	ClusterID string

	// HubURL is the base URL of the hub the agent dials, such as
	// "https://eco.example.com" or "https://example.com/eco". Required.
	// It must use https unless AllowInsecureHubURL is set, and may not
	// carry user info, a query or a fragment.
	HubURL string

	// AllowInsecureHubURL permits an http:// HubURL. It exists for tests
	// on loopback: over http the agent credential crosses the network in
	// clear. False (the zero value) requires https.
	AllowInsecureHubURL bool

	// Token is the agent credential, as returned by NewAgentToken.
	// Required; it is checked with CheckTokenFormat.
	Token string

	// HubCAPEM holds the PEM certificate(s) the agent trusts for HubURL.
	// If empty, the agent verifies the hub with the system roots (a
	// publicly trusted hub certificate); the Secret then has an empty
	// ca.crt. If set, every PEM block must be a parseable CERTIFICATE.
	HubCAPEM []byte

	// Namespace is where the agent runs, created by the install and
	// deleted to remove the agent. If empty, DefaultNamespace. It must be
	// a DNS label and may not be a namespace Kubernetes itself uses
	// (default, kube-system, kube-public, kube-node-lease), since deleting
	// it is how the agent is removed.
	Namespace string

	// Image is the agent image reference. If empty,
	// DefaultImageRepository tagged with AgentVersion.
	Image string

	// ImagePullPolicy of the agent container. If empty,
	// DefaultImagePullPolicy (IfNotPresent).
	ImagePullPolicy corev1.PullPolicy

	// AgentVersion is the agent release, such as "v0.3.1", used as the
	// image tag when Image is empty. Required when Image is empty;
	// ignored otherwise.
	AgentVersion string

	// HTTPSProxy, if set, is passed to the agent as HTTPS_PROXY: the
	// proxy through which it dials the hub (http://, https:// or
	// socks5:// URL). If empty, the agent dials directly.
	HTTPSProxy string

	// NoProxy, if set, is passed to the agent as NO_PROXY (Go's
	// comma-separated syntax). If empty, no NO_PROXY is set.
	NoProxy string

	// ExtraImpersonationGroups are groups, besides AdminsGroup,
	// EditorsGroup and ViewersGroup, that the agent may impersonate on the hub's behalf,
	// for hubs that map their users to further groups bound by the
	// cluster's own RBAC. If empty, only the three eco groups. Groups in the
	// reserved "system:" namespace are refused.
	ExtraImpersonationGroups []string
}

// reservedNamespaces are namespaces Kubernetes creates itself. Removing
// the agent deletes its namespace, so it must not share one of these.
func reservedNamespace(ns string) bool {
	switch ns {
	case "default", "kube-system", "kube-public", "kube-node-lease":
		return true
	}
	return false
}

// withDefaults returns o with empty fields defaulted as documented, and
// the extra groups sorted and without duplicates or eco groups, so that
// equal intents render identically.
func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.ImagePullPolicy == "" {
		o.ImagePullPolicy = DefaultImagePullPolicy
	}
	if o.Image == "" && o.AgentVersion != "" {
		o.Image = DefaultImageRepository + ":" + o.AgentVersion
	}
	if len(o.ExtraImpersonationGroups) > 0 {
		groups := make([]string, 0, len(o.ExtraImpersonationGroups))
		for _, g := range o.ExtraImpersonationGroups {
			if g != AdminsGroup && g != EditorsGroup && g != ViewersGroup {
				groups = append(groups, g)
			}
		}
		slices.Sort(groups)
		o.ExtraImpersonationGroups = slices.Compact(groups)
	}
	return o
}

// Validate reports whether o, with its defaults applied, describes a
// valid install. All problems are reported, joined with errors.Join.
func (o Options) Validate() error {
	return o.withDefaults().validate()
}

func (o Options) validate() error {
	var errs []error
	if o.ClusterID == "" {
		errs = append(errs, errors.New("cluster ID is required"))
	} else if msgs := validation.IsValidLabelValue(o.ClusterID); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("cluster ID %q: must be usable as a label value: %s", o.ClusterID, strings.Join(msgs, "; ")))
	}
	if err := checkHubURL(o.HubURL, o.AllowInsecureHubURL); err != nil {
		errs = append(errs, err)
	}
	if o.Token == "" {
		errs = append(errs, errors.New("agent token is required"))
	} else if err := CheckTokenFormat(o.Token); err != nil {
		errs = append(errs, err)
	}
	if err := checkCAPEM(o.HubCAPEM); err != nil {
		errs = append(errs, err)
	}
	if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: must be a DNS label: %s", o.Namespace, strings.Join(msgs, "; ")))
	} else if reservedNamespace(o.Namespace) {
		errs = append(errs, fmt.Errorf("namespace %q: reserved by Kubernetes; the agent needs a namespace of its own, deleted to remove it", o.Namespace))
	}
	switch {
	case o.Image == "":
		errs = append(errs, errors.New("image or agent version is required"))
	case strings.ContainsFunc(o.Image, isSpaceOrControl):
		errs = append(errs, fmt.Errorf("image %q: contains white space or control characters", o.Image))
	}
	switch o.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("image pull policy %q: must be Always, IfNotPresent or Never", o.ImagePullPolicy))
	}
	if o.HTTPSProxy != "" {
		if err := checkProxyURL(o.HTTPSProxy); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.ContainsFunc(o.NoProxy, isSpaceOrControl) {
		errs = append(errs, fmt.Errorf("no-proxy list %q: contains white space or control characters", o.NoProxy))
	}
	for _, g := range o.ExtraImpersonationGroups {
		switch {
		case g == "" || strings.ContainsFunc(g, isSpaceOrControl):
			errs = append(errs, fmt.Errorf("impersonation group %q: must be non-empty without white space or control characters", g))
		case g == "*" || strings.HasPrefix(g, "system:"):
			errs = append(errs, fmt.Errorf("impersonation group %q: reserved groups may not be impersonated", g))
		}
	}
	return errors.Join(errs...)
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// checkHubURL reports whether s is usable as a hub URL: absolute, https (or
// http when allowInsecure), with a host and without user info, query or
// fragment.
func checkHubURL(s string, allowInsecure bool) error {
	if s == "" {
		return errors.New("hub URL is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("hub URL: %w", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowInsecure:
	case u.Scheme == "http":
		return fmt.Errorf("hub URL %q: must use https (http is allowed only with AllowInsecureHubURL)", s)
	default:
		return fmt.Errorf("hub URL %q: scheme must be https", s)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("hub URL %q: has no host", s)
	case u.User != nil:
		return fmt.Errorf("hub URL %q: must not carry user info", s)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("hub URL %q: must not have a query", s)
	case u.Fragment != "":
		return fmt.Errorf("hub URL %q: must not have a fragment", s)
	}
	return nil
}

func checkProxyURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("HTTPS proxy: %w", err)
	}
	switch u.Scheme {
	case "http", "https", "socks5":
	default:
		return fmt.Errorf("HTTPS proxy %q: scheme must be http, https or socks5", s)
	}
	if u.Host == "" {
		return fmt.Errorf("HTTPS proxy %q: has no host", s)
	}
	return nil
}

// checkCAPEM reports whether pemBytes is empty (use the system roots) or
// holds only parseable CERTIFICATE blocks.
func checkCAPEM(pemBytes []byte) error {
	rest := pemBytes
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("hub CA: PEM block %d is a %q, want CERTIFICATE", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("hub CA: PEM block %d: %w", n, err)
		}
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		if n == 0 {
			return errors.New("hub CA: not PEM")
		}
		return fmt.Errorf("hub CA: trailing data after %d PEM certificate(s)", n)
	}
	return nil
}
