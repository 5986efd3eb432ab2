// Package hub is eco's management plane: the HTTP JSON API, the tunnel
// endpoint agents dial, the Kubernetes API proxy that reaches each cluster
// through its tunnel as the calling hub user, and the tracking of every
// cluster's operator status. It is an http.Handler; cmd/eco-hub serves it.
package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/hub/audit"
	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/hub/saproof"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/seal"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// Version is reported by the API and used as the default agent image tag.
// cmd/eco-hub sets it from its build.
const defaultVersion = "dev"

// Paths the hub serves.
const (
	// TunnelPath is where agents open their tunnel.
	TunnelPath = tunnel.DefaultPath
	// ProxyPrefix is followed by a cluster ID and ProxySuffix, then by the
	// Kubernetes API path.
	ProxyPrefix = "/clusters/"
	ProxySuffix = "/k8s"
)

// Config configures a Hub.
type Config struct {
	// Store holds clusters, tokens and status. Required; the Hub does not
	// close it.
	Store store.Store
	// ExternalURL is the https URL agents, kubectl and browsers use to
	// reach the hub, e.g. https://eco.example.com. Required. It goes into
	// install YAMLs and kubeconfigs.
	ExternalURL string
	// CAPEM is the CA that signed the hub's serving certificate; install
	// YAMLs and kubeconfigs carry it. Empty when the certificate is
	// publicly trusted.
	CAPEM []byte
	// SecretKey derives each cluster's agent credential (HMAC-SHA256 of the
	// cluster ID and credential generation), so the install YAML can be fetched again while the
	// store keeps only the credential's hash, and the TLS session ticket
	// keys of Hub.TLSConfig. At least 32 bytes. Required.
	SecretKey []byte
	// PreviousSecretKeys are secret keys the hub used before SecretKey,
	// kept while the hub's key is rotated (docs/security.md, "Rotating
	// credentials"): the install YAML of a cluster whose credential one
	// of them derived is still rendered; RotateCredential always derives
	// from SecretKey. Each at least 32 bytes.
	PreviousSecretKeys [][]byte
	// CredentialGrace is how long the previous generation of a rotated
	// agent credential is still accepted. Zero means
	// DefaultCredentialGrace.
	CredentialGrace time.Duration
	// Version is the hub's version, reported by the API. Empty means
	// "dev".
	Version string
	// AgentImage is the agent container image in install YAMLs. Empty
	// means install's default for Version.
	AgentImage string
	// AgentImagePullPolicy is the agent's imagePullPolicy. Empty means
	// install's default.
	AgentImagePullPolicy string
	// AgentNamespace is the namespace install YAMLs create. Empty means
	// install's default (eco-system).
	AgentNamespace string
	// UserPrefix is put before a hub user's name when the hub impersonates
	// it in a cluster, like kube-apiserver's --oidc-username-prefix: with
	// "eco:", hub user alice acts as Kubernetes user eco:alice, and can
	// never be taken for a user the cluster knows from elsewhere. Empty
	// means no prefix; cmd/eco-hub defaults to DefaultUserPrefix. It may
	// not start with "system:".
	UserPrefix string
	// KubeconfigTTL is how long the token in a kubeconfig from the API
	// lasts. Zero means DefaultKubeconfigTTL.
	KubeconfigTTL time.Duration
	// AllowInsecureAgentURL lets install YAMLs carry an http ExternalURL;
	// for tests only.
	AllowInsecureAgentURL bool
	// HeartbeatInterval is how often the hub pings agents. Zero means the
	// tunnel package's default (10 s).
	HeartbeatInterval time.Duration
	// IssuerClient fetches the OIDC discovery documents and keys of the
	// clusters' configured service-account issuers. Nil means an
	// http.Client with the default transport (system roots, proxy from
	// the environment).
	IssuerClient *http.Client
	// IdentityRefresh is how often the hub fetches, through each
	// connected agent whose cluster's keys are pinned, the keys the
	// cluster serves now, to follow its key rotation. Zero means
	// DefaultIdentityRefresh (10 min).
	IdentityRefresh time.Duration
	// Registry receives the hub's Prometheus metrics. Nil means a new
	// private registry. The hub serves it at /metrics to admins (a hub
	// API token with the admin role); MetricsHandler serves it without
	// authentication, e.g. on a listener of its own.
	Registry *prometheus.Registry
	// AuditLog, when set, also receives every audit event as a JSON line
	// (the store always keeps them). See package hub/audit.
	AuditLog io.Writer
	// AuditReads also audits proxied requests that only read (get, list,
	// watch); by default the audit log holds hub API actions that change
	// something and proxied requests that may change the cluster.
	AuditReads bool
	// Limits bound concurrent proxied requests per user and per cluster
	// and the time a request body may take. The zero value means the
	// defaults.
	Limits Limits
	// Logger receives structured logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time

	// CloudProviders are the clouds whose accounts the hub takes, to
	// import their clusters and poll their health (package cloud and its
	// subpackages aws, azure, gcp). Nil means none: the cloud API refuses
	// accounts.
	CloudProviders map[store.Provider]cloud.Provider
	// CloudPollInterval and CloudFastPollInterval are how often the cloud
	// health of steady clusters, and of clusters in a transition, is
	// polled. Zero means cloud.DefaultInterval and
	// cloud.DefaultFastInterval.
	CloudPollInterval     time.Duration
	CloudFastPollInterval time.Duration
}

// Hub is the management plane. Create it with New, serve it as an
// http.Handler, and Close it to stop its goroutines and end every tunnel.
type Hub struct {
	cfg   Config
	store store.Store
	// sealer seals secrets at rest under the hub's secret keys.
	sealer   *seal.Sealer
	tunnels  *tunnel.Server
	logger   *slog.Logger
	metrics  *metrics
	registry *prometheus.Registry
	mux      *http.ServeMux
	proxy    *kubeProxy
	status   *statusTracker
	tokens   tokenCache
	audit    *audit.Recorder
	events   lifecycle.Bus

	// Agent credential rotation (credential.go).
	credMetrics *credentialMetrics
	rotated     noteLimiter
	graceEnds   graceTimers

	// The proof of cluster identity (clusteridentity.go).
	discovery   *saproof.Discovery
	idMetrics   *identityMetrics
	ids         identityState
	refreshStop context.CancelFunc
	refreshDone sync.WaitGroup

	// Cloud import and health (cloudapi.go).
	cloud     *cloud.Service
	cloudStop context.CancelFunc
	cloudDone sync.WaitGroup

	closeOnce sync.Once
	ready     chan struct{}
}

// New validates cfg and returns a Hub whose status tracker is running.
func New(cfg Config) (*Hub, error) {
	if cfg.Store == nil {
		return nil, errors.New("hub: Store is required")
	}
	u, err := url.Parse(cfg.ExternalURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("hub: ExternalURL %q must be an absolute https URL", cfg.ExternalURL)
	}
	if u.Scheme == "http" && !cfg.AllowInsecureAgentURL {
		return nil, fmt.Errorf("hub: ExternalURL %q is not https (AllowInsecureAgentURL is for tests)", cfg.ExternalURL)
	}
	cfg.ExternalURL = strings.TrimRight(cfg.ExternalURL, "/")
	if len(cfg.SecretKey) < 32 {
		return nil, errors.New("hub: SecretKey must be at least 32 bytes")
	}
	for i, k := range cfg.PreviousSecretKeys {
		if len(k) < 32 {
			return nil, fmt.Errorf("hub: PreviousSecretKeys[%d] must be at least 32 bytes", i)
		}
	}
	if cfg.CredentialGrace == 0 {
		cfg.CredentialGrace = DefaultCredentialGrace
	}
	if cfg.CredentialGrace < 0 {
		return nil, errors.New("hub: CredentialGrace is negative")
	}
	if cfg.Version == "" {
		cfg.Version = defaultVersion
	}
	if err := validateUserPrefix(cfg.UserPrefix); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if cfg.KubeconfigTTL == 0 {
		cfg.KubeconfigTTL = DefaultKubeconfigTTL
	}
	if cfg.KubeconfigTTL < 0 {
		return nil, errors.New("hub: KubeconfigTTL is negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	cfg.Limits = cfg.Limits.withDefaults()
	sealer, err := seal.New(append([][]byte{cfg.SecretKey}, cfg.PreviousSecretKeys...)...)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h := &Hub{
		sealer:   sealer,
		cfg:      cfg,
		store:    cfg.Store,
		logger:   cfg.Logger,
		registry: cfg.Registry,
		ready:    make(chan struct{}),
	}
	h.metrics, err = newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	h.audit, err = audit.New(audit.Config{
		Store: cfg.Store, JSONLines: cfg.AuditLog, Registerer: cfg.Registry,
		Logger: cfg.Logger.With("component", "audit"), Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("hub: audit: %w", err)
	}
	if h.idMetrics, err = newIdentityMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	if h.credMetrics, err = newCredentialMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	if cfg.IdentityRefresh <= 0 {
		cfg.IdentityRefresh = DefaultIdentityRefresh
		h.cfg.IdentityRefresh = cfg.IdentityRefresh
	}
	h.discovery = saproof.NewDiscovery(saproof.DiscoveryConfig{Client: cfg.IssuerClient, Now: cfg.Now})
	h.ids.failures = map[string]identityFailure{}
	h.ids.noted = map[string]time.Time{}
	h.status = newStatusTracker(cfg.Store, cfg.Logger, cfg.Now, h.metrics, &h.events)
	h.tunnels, err = tunnel.NewServer(tunnel.ServerConfig{
		Authenticate:      h.authenticateAgent,
		Admit:             h.admitAgent,
		Prove:             h.proveAgent,
		Events:            h.status.event,
		CredentialAck:     h.credentialAck,
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            cfg.Logger.With("component", "tunnel"),
	})
	if err != nil {
		h.status.close()
		h.audit.Close()
		return nil, fmt.Errorf("hub: tunnel server: %w", err)
	}
	if h.proxy, err = newKubeProxy(h); err != nil {
		h.status.close()
		h.tunnels.Close()
		h.audit.Close()
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.metrics.registerTunnelStats(cfg.Registry, h.tunnels, h.proxy.transport)
	if err := h.startCloud(); err != nil {
		h.proxy.close()
		h.status.close()
		h.tunnels.Close()
		h.audit.Close()
		return nil, fmt.Errorf("hub: cloud: %w", err)
	}
	h.routes()
	refreshCtx, refreshStop := context.WithCancel(context.Background())
	h.refreshStop = refreshStop
	h.refreshDone.Add(1)
	go func() { // owned: Close stops and waits
		defer h.refreshDone.Done()
		h.refreshLoop(refreshCtx, cfg.IdentityRefresh)
	}()
	close(h.ready)
	return h, nil
}

// ServeHTTP serves the API, the tunnel endpoint and the proxy. A request
// body must arrive within Limits.BodyTimeout.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var tail *streamTail
	if r.ProtoMajor == 2 && strings.HasPrefix(r.URL.Path, ProxyPrefix) &&
		(strings.Contains(r.URL.RawQuery, "watch=") || strings.Contains(r.URL.RawQuery, "follow=")) {
		// A watch over HTTP/2 parks here, not under the frames below
		// (see streamTail). The test is a cheap superset of the proxy's
		// streams: only a stream fills the tail.
		tail = &streamTail{}
		r = r.WithContext(context.WithValue(r.Context(), streamTailKey{}, tail))
	}
	bodyDeadline(w, r, h.cfg.Limits.BodyTimeout)
	h.mux.ServeHTTP(w, r)
	if tail != nil && tail.body != nil {
		tail.pump()
	}
}

// MetricsHandler serves the hub's Prometheus metrics without
// authentication, for a listen address of their own (eco-hub
// --metrics-addr). The hub's own /metrics requires an admin token.
func (h *Hub) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(h.registry, promhttp.HandlerOpts{})
}

// Close ends every tunnel (agents reconnect to whichever hub serves next)
// and stops the status tracker. It does not close the store.
func (h *Hub) Close() error {
	var err error
	h.closeOnce.Do(func() {
		h.refreshStop()
		h.refreshDone.Wait()
		h.cloudStop()
		h.cloudDone.Wait()
		h.graceEnds.stop()
		err = h.tunnels.Close()
		h.proxy.close()
		h.status.close()
		h.audit.Close() // after the proxy: its last events are written
	})
	return err
}

// Tunnels exposes the tunnel server, e.g. for a hub feature that needs a
// raw connection to a cluster.
func (h *Hub) Tunnels() *tunnel.Server { return h.tunnels }

// hashSecret is how every secret (agent credentials, API tokens) is
// stored.
func hashSecret(secret string) []byte { return []byte(install.HashToken(secret)) }

// bg returns a context for work that must finish even when the request
// that caused it ends, bounded by d.
func bg(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
