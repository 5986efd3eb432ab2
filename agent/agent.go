// Package agent is eco-agent, the External Cluster Operator that runs inside
// each managed Kubernetes cluster and connects it to the eco hub.
//
// The agent dials OUT to the hub over a tunnel (package tunnel) and serves,
// on the streams the hub opens, a Forwarder: a pass-through to its own API
// server that reads only request heads, authenticates as the agent's
// ServiceAccount and impersonates the hub user each request names, so that
// the cluster's RBAC decides what that user may do. It never listens on the
// public network; its only listener is a plain-HTTP health server
// (/healthz, /readyz, /metrics).
//
// Run does the rest of the agent's job:
//
//   - it sends the hub, in the tunnel handshake, its identity token (a
//     ServiceAccount token its cluster signed with the hub's URL as audience,
//     re-read at every connect as the kubelet rotates it), which proves to
//     the hub which cluster it runs in, so that an install YAML cannot serve
//     another cluster; and, as information, the agent and Kubernetes
//     versions and the cluster fingerprint (the kube-system namespace UID);
//   - it reconnects with jittered exponential backoff when the tunnel is lost,
//     and keeps retrying, slowly, when the hub rejects it;
//   - it checks every Config.CheckInterval, and whenever something suggests
//     trouble, that it can reach its API server and may impersonate users,
//     and reports Ready or Failing with a reason to the hub;
//   - it makes its namespace the owner of the install's cluster-scoped RBAC
//     objects, watches that namespace and, when it is deleted, says goodbye
//     to the hub (which then shows the cluster as Removed, not Failing),
//     deletes those objects and returns.
//
// cmd/eco-agent wires Config from flags and the install Secret;
// docs/agent.md describes the agent for operators.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/tunnel"
)

// Defaults of Config.
const (
	// DefaultTunnelPath is the path, below the hub's base URL, at which
	// the hub serves the tunnel endpoint.
	DefaultTunnelPath = tunnel.DefaultPath
	// DefaultCheckInterval is how often the agent checks that it can
	// reach its API server and may impersonate users.
	DefaultCheckInterval = 15 * time.Second
	// DefaultMaxStreams is the default Config.MaxStreams: the hub's
	// default per-cluster cap on requests in flight (1,000) plus its pool
	// of idle streams (256) and room to spare. Decision 0010 has the
	// memory it costs.
	DefaultMaxStreams = 1500
)

// DefaultHealthAddr is where the health server listens by default: every
// interface, on the port the install YAML's probes use.
var DefaultHealthAddr = ":" + strconv.Itoa(install.HealthPort)

// MetricsPath is the health server's Prometheus endpoint.
const MetricsPath = "/metrics"

// Timeouts of the agent's own work.
const (
	// checkTimeout bounds one self-check.
	checkTimeout = 5 * time.Second
	// minCheckGap spaces self-checks that something triggered (a failed
	// request, a lost watch), so a burst of failures costs one check.
	minCheckGap = time.Second
	// stableSession is how long a session must have lasted for the
	// reconnect backoff to start over from its first, short delay.
	stableSession = 10 * time.Second
	// removalTimeout bounds saying goodbye and deleting the install's
	// cluster-scoped objects (the install gives the pod 30 s).
	removalTimeout = 20 * time.Second
	// goodbyeTimeout bounds waiting for the hub to acknowledge a goodbye.
	goodbyeTimeout = 5 * time.Second
	// stopCheckTimeout bounds looking at the namespace on shutdown.
	stopCheckTimeout = 5 * time.Second
)

// Config configures an Agent. HubURL, ClusterID, Token, Namespace and
// RESTConfig are required; the zero value of every other field means the
// default documented on it. cmd/eco-agent fills it from the install Secret
// (install.LoadConfigDir) and its flags.
type Config struct {
	// HubURL is the hub's base URL, https:// (http:// only for tests), as
	// in the install Secret's hub-url. Required.
	HubURL string
	// TunnelPath is appended to HubURL's path to form the tunnel endpoint,
	// with the scheme changed to wss:// (ws://). If empty,
	// DefaultTunnelPath.
	TunnelPath string
	// ClusterID is the hub's ID for this cluster. Required.
	ClusterID string
	// Token is the agent credential the hub issued for this cluster.
	// Required. When the hub rotates it over the tunnel, the agent writes
	// the new one into the Secret SecretName and uses it from then on.
	Token string
	// SecretName is the agent's install Secret in Namespace, where it
	// keeps a credential the hub rotates. If empty, install.AgentName.
	SecretName string
	// IdentityTokenFile holds the agent's identity token: a
	// ServiceAccount token for the agent with the hub's URL as audience
	// (install.IdentityTokenPath in a pod, a projected token the kubelet
	// rotates). It is re-read at every connect. If empty, or unreadable,
	// no token is sent and the hub refuses the agent.
	IdentityTokenFile string
	// HubCAPEM holds the PEM certificates to trust for the hub. If empty,
	// the system roots.
	HubCAPEM []byte
	// Proxy picks the HTTP proxy for the connection to the hub. If nil,
	// the environment (HTTPS_PROXY, NO_PROXY) decides. It never applies to
	// the API server, which the agent always dials directly.
	Proxy func(*http.Request) (*url.URL, error)
	// ProxyRootCAs verifies the certificate of an https:// proxy
	// (HTTPS_PROXY=https://…), e.g. the system roots plus a corporate
	// CA. It never verifies the hub, which HubCAPEM alone does. If nil,
	// the proxy's certificate is verified as the hub's is (HubCAPEM, else
	// the system roots), as net/http does: a proxy whose certificate the
	// hub's CA did not sign then fails. See tunnel.ClientConfig.ProxyRootCAs.
	ProxyRootCAs *x509.CertPool

	// Namespace is the namespace the agent runs in and watches: deleting
	// it removes the agent. Required.
	Namespace string
	// RESTConfig reaches the cluster's API server as the agent's
	// ServiceAccount (rest.InClusterConfig in a pod). A BearerTokenFile is
	// re-read whenever it changes. Its proxy, dialer, transport and
	// impersonation settings are ignored. Required.
	RESTConfig *rest.Config

	// Version is the agent's version, sent to the hub. If empty, "dev".
	Version string

	// CheckInterval is how often the agent checks its API server access
	// and reports its state to the hub. If zero, DefaultCheckInterval
	// (15 s). It also checks right after connecting and whenever a request
	// to the API server fails.
	CheckInterval time.Duration

	// BackoffInitial is the ceiling of the first reconnect delay. If zero,
	// tunnel.DefaultBackoffInitial (250 ms).
	BackoffInitial time.Duration
	// BackoffMax caps reconnect delays. After the hub rejects the agent,
	// the next attempt comes after a delay between BackoffMax/2 and
	// BackoffMax. If zero, tunnel.DefaultBackoffMax (30 s).
	BackoffMax time.Duration

	// MaxStreams caps the streams from the hub the agent serves at once;
	// each holds a connection to the API server. A stream over the cap is
	// answered 429 Too Many Requests with Retry-After and closed, so the
	// agent refuses work rather than run out of memory. Zero means
	// DefaultMaxStreams; negative means no cap.
	MaxStreams int

	// HealthAddr is the health server's listen address. If empty,
	// DefaultHealthAddr (":8081").
	HealthAddr string
	// HealthListener, if not nil, is served instead of listening on
	// HealthAddr. Run closes it.
	HealthListener net.Listener

	// Logger receives the agent's logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// Agent is a running eco-agent. Create it with New and start it with Run.
type Agent struct {
	cfg       Config // defaults applied
	log       *slog.Logger
	tunnelURL string
	tlsConfig *tls.Config // for the hub; nil means system roots
	// sessions keeps the hub's TLS session ticket across reconnects, so
	// a reconnect after a hub restart resumes instead of a full handshake.
	sessions tls.ClientSessionCache
	kube     *kubeTransport
	api      *apiClient
	fwd      *Forwarder
	metrics  *metrics

	checkNow chan struct{} // buffered(1): run a self-check soon
	rehello  chan struct{} // buffered(1): the Hello changed

	mu sync.Mutex // guards the fields below
	// running is set by the first Run.
	running bool
	// session is the live tunnel session, nil when not connected;
	// sessionHello is the Hello it was established with.
	session      *tunnel.ClientSession
	sessionHello tunnel.Hello
	// notConnected says why there is no session.
	notConnected string
	// token is the credential the next connect presents: cfg.Token until
	// the hub rotates it.
	token string
	// status is the last self-check's result (zero before the first).
	status tunnel.Status
	// kubeVersion and fingerprint are learnt from the API server.
	kubeVersion, fingerprint string
	// nsUID is the UID of Namespace once seen; ownerRefsDone is set once
	// the cluster-scoped objects name it as their owner.
	nsUID         types.UID
	ownerRefsDone bool
}

// New validates cfg, applies its defaults and returns an Agent.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if cfg.ClusterID == "" {
		errs = append(errs, errors.New("cluster ID is required"))
	}
	if cfg.Token == "" {
		errs = append(errs, errors.New("token is required"))
	}
	if cfg.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if cfg.RESTConfig == nil {
		errs = append(errs, errors.New("API server configuration (RESTConfig) is required"))
	}
	tunnelURL, err := tunnelURL(cfg.HubURL, cfg.TunnelPath)
	if err != nil {
		errs = append(errs, err)
	}
	var tlsCfg *tls.Config
	if len(cfg.HubCAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.HubCAPEM) {
			errs = append(errs, errors.New("hub CA: no PEM certificate found"))
		}
		tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("agent config: %w", errors.Join(errs...))
	}

	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.SecretName == "" {
		cfg.SecretName = install.AgentName
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = tunnel.DefaultBackoffInitial
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = tunnel.DefaultBackoffMax
	}
	if cfg.HealthAddr == "" {
		cfg.HealthAddr = DefaultHealthAddr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	kube, err := newKubeTransport(cfg.RESTConfig, "eco-agent/"+cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	a := &Agent{
		cfg:          cfg,
		log:          log,
		tunnelURL:    tunnelURL,
		tlsConfig:    tlsCfg,
		sessions:     tls.NewLRUClientSessionCache(1),
		kube:         kube,
		api:          newAPIClient(kube),
		metrics:      newMetrics(cfg.Version),
		checkNow:     make(chan struct{}, 1),
		rehello:      make(chan struct{}, 1),
		notConnected: "not started",
		token:        cfg.Token,
	}
	a.fwd = newForwarder(kube, log.With("component", "forwarder"))
	a.fwd.onError = a.forwardError
	a.fwd.onRequest = a.metrics.requests.Inc
	a.fwd.maxStreams = cfg.MaxStreams
	a.fwd.onRefused = a.metrics.streamsRefused.Inc
	return a, nil
}

// tunnelURL derives the tunnel endpoint from the hub's base URL.
func tunnelURL(hubURL, path string) (string, error) {
	if hubURL == "" {
		return "", errors.New("hub URL is required")
	}
	u, err := url.Parse(hubURL)
	if err != nil {
		return "", fmt.Errorf("hub URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("hub URL %q: scheme must be https or http", hubURL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("hub URL %q has no host", hubURL)
	}
	if path == "" {
		path = DefaultTunnelPath
	}
	u = u.JoinPath(path)
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// Run creates an Agent from cfg and runs it; see Agent.Run.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Run runs the agent until ctx ends or the agent is removed from its
// cluster, and returns only after every goroutine it started has ended.
//
// When ctx ends, Run looks at its namespace: if the namespace is being
// deleted (the pod got SIGTERM because of it), the agent is removed as if
// it had seen the deletion itself; otherwise (a rollout, a drained node) it
// closes the tunnel without a goodbye, and the hub shows the cluster as
// disconnected until the next agent connects.
//
// Removal means: say goodbye to the hub, delete the objects of
// install.ClusterScopedObjects (tolerating NotFound and Forbidden; the
// garbage collector deletes what the agent could not), and return.
//
// Run returns nil after a clean stop or a removal, and an error only if it
// cannot start (the health address is taken, or Run was called before).
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("agent: Run called twice")
	}
	a.running = true
	a.mu.Unlock()

	ln := a.cfg.HealthListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", a.cfg.HealthAddr); err != nil {
			return fmt.Errorf("health server: %w", err)
		}
	}
	health := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	defer func() {
		health.Close()
		wg.Wait()
		a.kube.close()
	}()
	wg.Go(func() {
		if err := health.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("health server stopped", "err", err)
		}
	})

	a.log.Info("eco-agent starting", "version", a.cfg.Version, "cluster", a.cfg.ClusterID,
		"hub", a.tunnelURL, "apiServer", a.kube.host.String(), "namespace", a.cfg.Namespace,
		"health", ln.Addr().String())

	// Background work: self-checks and the namespace watch.
	bgCtx, stopBG := context.WithCancel(ctx)
	defer stopBG() // runs before the deferred wg.Wait
	// A first check before dialing gives the Hello its fingerprint and
	// Kubernetes version. If the API server is unreachable the agent
	// connects anyway, and says so.
	a.setStatus(a.check(bgCtx))
	removed := make(chan string, 1)
	wg.Go(func() { a.watchNamespace(bgCtx, removed) })
	wg.Go(func() { a.checkLoop(bgCtx) })

	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	live := make(chan *liveSession, 1)
	wg.Go(func() { live <- a.connectLoop(loopCtx) })

	var reason string
	select {
	case reason = <-removed:
	case <-ctx.Done():
		select {
		case reason = <-removed:
		default:
			reason = a.removedOnStop(ctx)
		}
	}
	if reason == "" {
		a.log.Info("stopping: closing the tunnel (the namespace is not being deleted)")
		stopLoop()
		if ls := <-live; ls != nil {
			ls.close()
		}
		a.setNotConnected("agent stopped")
		return nil
	}
	a.remove(ctx, reason, stopLoop, live)
	return nil
}

// remove says goodbye to the hub and deletes the install's cluster-scoped
// objects, both at once: once the namespace controller deletes the
// ServiceAccount, the agent's token stops working.
func (a *Agent) remove(ctx context.Context, reason string, stopLoop func(), live <-chan *liveSession) {
	a.log.Info("removing the agent", "reason", reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removalTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { a.deleteClusterObjects(ctx) })

	stopLoop()
	ls := <-live
	if ls == nil {
		// Not connected: connect once, only to say goodbye.
		dctx, dcancel := context.WithTimeout(ctx, goodbyeTimeout)
		s, err := tunnel.Dial(dctx, a.clientConfig(a.hello()))
		dcancel()
		if err != nil {
			a.log.Warn("cannot tell the hub the agent was removed", "err", err)
		} else {
			ls = &liveSession{s: s}
		}
	}
	if ls != nil {
		gctx, gcancel := context.WithTimeout(ctx, goodbyeTimeout)
		if err := ls.s.Goodbye(gctx, reason); err != nil {
			a.log.Warn("saying goodbye to the hub", "err", err)
		} else {
			a.log.Info("said goodbye to the hub", "reason", reason)
		}
		gcancel()
		ls.close()
	}
	a.setNotConnected("removed: " + reason)
	wg.Wait()
}

// removedOnStop is called when Run's ctx ended (SIGTERM): it returns the
// goodbye reason if the namespace is being deleted, or "" if not or if
// that cannot be told.
func (a *Agent) removedOnStop(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopCheckTimeout)
	defer cancel()
	reason, err := a.namespaceRemoval(ctx)
	if err != nil {
		a.log.Warn("stopping: cannot tell whether the namespace is being deleted", "err", err)
		return ""
	}
	return reason
}

// rejectDelay is the wait after the hub rejected the agent: between half
// the maximum backoff and the maximum.
func (a *Agent) rejectDelay() time.Duration {
	half := a.cfg.BackoffMax / 2
	return half + time.Duration(rand.Float64()*float64(a.cfg.BackoffMax-half))
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// triggerCheck asks the self-check loop to check soon.
func (a *Agent) triggerCheck() {
	select {
	case a.checkNow <- struct{}{}:
	default:
	}
}

// forwardError is the Forwarder's error hook.
func (a *Agent) forwardError(err error) {
	switch {
	case errors.Is(err, ErrNoImpersonation):
		a.metrics.forwardErrors.WithLabelValues("no_impersonation").Inc()
	case errors.Is(err, ErrReservedUser):
		a.metrics.forwardErrors.WithLabelValues("reserved_user").Inc()
	default:
		a.metrics.forwardErrors.WithLabelValues("api_server").Inc()
		a.triggerCheck()
	}
}

// hello is the Hello the agent sends now, with the identity token read
// afresh.
func (a *Agent) hello() tunnel.Hello {
	token := a.identityToken()
	a.mu.Lock()
	defer a.mu.Unlock()
	return tunnel.Hello{
		AgentVersion:      a.cfg.Version,
		KubernetesVersion: a.kubeVersion,
		Fingerprint:       a.fingerprint,
		IdentityToken:     token,
		Capabilities:      []string{tunnel.CapabilityCredential},
	}
}

// identityToken reads the identity token file, "" if there is none.
func (a *Agent) identityToken() string {
	if a.cfg.IdentityTokenFile == "" {
		return ""
	}
	b, err := os.ReadFile(a.cfg.IdentityTokenFile)
	if err != nil {
		a.log.Warn("cannot read the identity token: the hub will refuse the agent", "file", a.cfg.IdentityTokenFile, "err", err)
		return ""
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) > tunnel.MaxIdentityTokenLen {
		a.log.Warn("the identity token is too long: the hub will refuse the agent", "file", a.cfg.IdentityTokenFile, "bytes", len(tok))
		return ""
	}
	return tok
}
