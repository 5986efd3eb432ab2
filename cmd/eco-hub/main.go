// Command eco-hub runs eco's management plane: the HTTP API, the tunnel
// endpoint agents dial, and the Kubernetes API proxy.
//
// On first start it creates its data directory (SQLite store, a
// self-signed CA and serving certificate unless --tls-cert is given, and
// the secret key that derives agent credentials) and prints an admin API
// token once. The first SIGINT/SIGTERM drains requests; a second one stops
// at once.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/backend"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// agentRepository and agentDigest pin the agent image install YAMLs name
// (docs/install.md, "Which agent image"). `make images` links the hub in
// the hub image with the agent image it built beside it: agentRepository
// is REGISTRY/eco-agent and agentDigest its index digest, so the
// hub's version decides its agents' version. Empty: the repository is
// ghcr.io/eco-project/eco-agent and the image is named by tag alone.
var (
	agentRepository = ""
	agentDigest     = ""
)

type options struct {
	listen          string
	dataDir         string
	storeDSN        string
	externalURL     string
	tlsCert, tlsKey string
	tlsHosts        string
	agentImage      string
	agentRepo       string
	agentPullPolicy string
	agentNamespace  string
	heartbeat       time.Duration
	userPrefix      string
	kubeconfigTTL   time.Duration
	shutdownTimeout time.Duration
	logFormat       string
	logLevel        string
	adminTokenFile  string
	bootstrapToken  string
	auditLog        string
	auditReads      bool
	showVersion     bool
	printCA         bool
	metricsAddr     string
	limits          hub.Limits
	previousKeyFile string
	credentialGrace time.Duration
	cloud           cloudOptions
	argocd          argocdOptions
	// App Catalog, Helm service, managed add-ons (package hubapps).
	apps hubapps.Config
}

func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", ":8443", "address to serve HTTPS on")
	fs.StringVar(&o.dataDir, "data-dir", "eco-hub-data", "directory for the store, TLS identity and secret key")
	fs.StringVar(&o.storeDSN, "store", "", "store DSN: a SQLite path or sqlite:///path (default: DATA-DIR/eco.db)")
	fs.StringVar(&o.externalURL, "external-url", "", "https URL agents and users reach the hub at (default: https://127.0.0.1:PORT)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serving certificate PEM (default: a self-signed CA in DATA-DIR/tls issues one)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "serving key PEM, with --tls-cert")
	fs.StringVar(&o.tlsHosts, "tls-hosts", "", "extra comma-separated names/IPs for the self-signed certificate (the external URL's host, localhost and 127.0.0.1 are always included)")
	fs.StringVar(&o.agentImage, "agent-image", "", "agent image in install YAMLs, overriding --agent-image-repository (default: REPOSITORY:VERSION@DIGEST when this hub was built with its agent image's digest, as in the eco-hub image; else REPOSITORY:VERSION)")
	fs.StringVar(&o.agentRepo, "agent-image-repository", defaultAgentRepository(), "repository of the agent image in install YAMLs, e.g. a mirror; the built-in digest is kept")
	fs.StringVar(&o.agentPullPolicy, "agent-image-pull-policy", "", "agent imagePullPolicy in install YAMLs (default IfNotPresent)")
	fs.StringVar(&o.agentNamespace, "agent-namespace", "", "namespace install YAMLs create (default eco-system)")
	fs.DurationVar(&o.heartbeat, "heartbeat-interval", 10*time.Second, "how often the hub pings each agent")
	fs.StringVar(&o.previousKeyFile, "previous-secret-key-file", "", "the hub's previous secret key, while its key is being rotated (docs/security.md, \"Rotating credentials\"): install YAMLs of clusters whose credential it derived are still rendered until each cluster's credential is rotated")
	fs.DurationVar(&o.credentialGrace, "credential-grace", hub.DefaultCredentialGrace, "how long the previous generation of a rotated agent credential is still accepted (0: the default)")
	fs.StringVar(&o.userPrefix, "user-prefix", hub.DefaultUserPrefix, `put before hub user names the hub impersonates in clusters, like kube-apiserver's --oidc-username-prefix ("" for none)`)
	fs.DurationVar(&o.kubeconfigTTL, "kubeconfig-ttl", hub.DefaultKubeconfigTTL, "lifetime of the cluster-scoped token in a kubeconfig from the API")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long the first signal waits for requests to drain")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "also write the first admin token to this file (mode 0600)")
	fs.StringVar(&o.bootstrapToken, "bootstrap-token-file", "", "on first start, make the token in this file (ecot_ and at least 43 characters of [A-Za-z0-9_-], e.g. a mounted Kubernetes Secret) the admin token instead of minting and printing one; the Helm chart uses it so the token is never in a log")
	fs.StringVar(&o.auditLog, "audit-log", "", "also write the audit log as JSON lines to this file (appended, mode 0600), or - for stdout; the store keeps it regardless")
	fs.BoolVar(&o.auditReads, "audit-reads", false, "also audit proxied reads (get, list, watch), not only requests that may change a cluster")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.printCA, "print-ca", false, "print the self-signed CA certificate kept in --data-dir and exit (in a pod: kubectl exec deploy/eco-hub -- eco-hub --data-dir=/var/lib/eco-hub --print-ca)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "also serve Prometheus /metrics without authentication over plain HTTP on this address, e.g. 127.0.0.1:9090 (default: none; /metrics on --listen needs an admin token)")
	fs.IntVar(&o.limits.StreamsPerUser, "max-streams-per-user", hub.DefaultStreamsPerUser, "proxied Kubernetes requests one hub user may have in flight; more get 429 (-1: no limit)")
	fs.IntVar(&o.limits.StreamsPerCluster, "max-streams-per-cluster", hub.DefaultStreamsPerCluster, "proxied requests in flight to one cluster, all users together (-1: no limit)")
	fs.IntVar(&o.limits.WatchesPerUser, "max-watches-per-user", hub.DefaultWatchesPerUser, "long-running requests (watch, logs -f, exec, attach, port-forward) one hub user may hold (-1: no limit)")
	fs.IntVar(&o.limits.WatchesPerCluster, "max-watches-per-cluster", hub.DefaultWatchesPerCluster, "long-running requests to one cluster, all users together (-1: no limit)")
	fs.StringVar(&o.apps.AddonRepository, "addon-repository", "eco-addons", "App Catalog repository the managed add-ons' charts come from; the default is built into the hub (the add-on charts, no network); another must be added to the catalog (docs/helm.md)")
	fs.DurationVar(&o.apps.CatalogRefresh, "catalog-refresh", 10*time.Minute, "how often the App Catalog refreshes every repository's index")
	fs.DurationVar(&o.apps.OperationTimeout, "helm-timeout", 5*time.Minute, "how long one Helm operation (install, upgrade, rollback, uninstall) may take, hooks included")
	fs.DurationVar(&o.apps.AddonResync, "addon-resync", 5*time.Minute, "how often every connected cluster's managed add-ons are reconciled (drift repaired)")
	fs.DurationVar(&o.limits.BodyTimeout, "body-timeout", hub.DefaultBodyTimeout, "time a request body may take to arrive after its head; slower bodies are cut off (-1s: no limit)")
	o.cloud.flags(fs)
	o.argocd.flags(fs)
}

func main() {
	var o options
	fs := flag.NewFlagSet("eco-hub", flag.ContinueOnError)
	o.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: eco-hub [flags]\n\nRuns eco's management plane. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if o.showVersion {
		fmt.Println(version)
		return
	}
	if o.printCA {
		ca, err := os.ReadFile(filepath.Join(o.dataDir, "tls", "ca.crt"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "eco-hub: --print-ca:", err)
			os.Exit(1)
		}
		os.Stdout.Write(ca)
		return
	}
	// First signal: drain. Second: stop now.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	if err := run(o, os.Stdout, sigs); err != nil {
		fmt.Fprintln(os.Stderr, "eco-hub:", err)
		os.Exit(1)
	}
}

// defaultAgentRepository is the link-time agentRepository or install's
// default.
func defaultAgentRepository() string {
	if agentRepository != "" {
		return agentRepository
	}
	return install.DefaultImageRepository
}

// agentImage is the agent image install YAMLs name: flag if set, else
// repo tagged with version and, when known, pinned to digest.
func agentImage(flag, repo, version, digest string) string {
	switch {
	case flag != "":
		return flag
	case digest != "":
		return repo + ":" + version + "@" + digest
	default:
		return repo + ":" + version
	}
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// run serves until the first value on sigs, drains requests until the
// second or the shutdown timeout, and returns.
func run(o options, stdout io.Writer, sigs <-chan os.Signal) error {
	logger, err := newLogger(o.logFormat, o.logLevel, os.Stderr)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if o.externalURL == "" {
		o.externalURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	}
	u, err := url.Parse(o.externalURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--external-url %q must be an https URL", o.externalURL)
	}

	var ident hub.TLSIdentity
	if o.tlsCert != "" || o.tlsKey != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		ident.Certificate = cert
	} else {
		hosts := []string{u.Hostname(), "localhost", "127.0.0.1"}
		for _, h := range strings.Split(o.tlsHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		if ident, err = hub.LoadOrCreateTLS(filepath.Join(o.dataDir, "tls"), hosts, time.Now()); err != nil {
			return err
		}
	}
	key, err := hub.LoadOrCreateSecretKey(filepath.Join(o.dataDir, "secret.key"))
	if err != nil {
		return err
	}
	var previousKeys [][]byte
	if o.previousKeyFile != "" {
		prev, err := hub.LoadSecretKey(o.previousKeyFile)
		if err != nil {
			return fmt.Errorf("--previous-secret-key-file: %w", err)
		}
		previousKeys = append(previousKeys, prev)
	}
	if o.credentialGrace < 0 {
		return fmt.Errorf("--credential-grace must not be negative, got %v", o.credentialGrace)
	}

	ctx := context.Background()
	dsn := o.storeDSN
	if dsn == "" {
		dsn = filepath.Join(o.dataDir, "eco.db")
	}
	st, err := backend.Open(ctx, dsn, store.Config{Logger: logger.With("component", "store")})
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	defer st.Close()

	var auditLog io.Writer
	switch o.auditLog {
	case "":
	case "-":
		auditLog = os.Stdout
	default:
		f, err := os.OpenFile(o.auditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		defer f.Close()
		auditLog = f
	}
	cloudProviders, err := o.cloud.providers()
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	h, err := hub.New(hub.Config{
		Registry:             registry,
		AuditLog:             auditLog,
		AuditReads:           o.auditReads,
		Store:                st,
		ExternalURL:          o.externalURL,
		CAPEM:                ident.CAPEM,
		SecretKey:            key,
		PreviousSecretKeys:   previousKeys,
		CredentialGrace:      o.credentialGrace,
		Version:              version,
		AgentImage:           agentImage(o.agentImage, o.agentRepo, version, agentDigest),
		AgentImagePullPolicy: o.agentPullPolicy,
		AgentNamespace:       o.agentNamespace,
		HeartbeatInterval:    o.heartbeat,
		Limits:               o.limits,
		UserPrefix:           o.userPrefix,
		KubeconfigTTL:        o.kubeconfigTTL,
		Logger:               logger,

		// Cloud import and health (cloud.go).
		CloudProviders:        cloudProviders,
		CloudPollInterval:     o.cloud.interval,
		CloudFastPollInterval: o.cloud.fastInterval,
	})
	if err != nil {
		return err
	}
	defer h.Close()
	argo, stopArgoCD, err := o.argocd.start(h, registry, ident.CAPEM, logger.With("component", "argocd"))
	if err != nil {
		return err
	}
	defer stopArgoCD()
	if argo == nil {
		h.Mount(argocd.APIPath, argocd.NotConfiguredHandler(h))
	}
	o.apps.Hub, o.apps.Logger = h, logger
	features, err := hubapps.Start(ctx, o.apps)
	if err != nil {
		return err
	}
	defer features.Close()
	uiCfg := ui.Config{Hub: h, Logger: logger.With("component", "ui"), Apps: features.UI()}
	if argo != nil {
		uiCfg.ArgoCD = argo
	}
	if _, err := ui.Mount(uiCfg); err != nil {
		return err
	}

	if o.bootstrapToken != "" {
		b, err := os.ReadFile(o.bootstrapToken)
		if err != nil {
			return fmt.Errorf("--bootstrap-token-file: %w", err)
		}
		created, err := h.BootstrapWith(ctx, strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("--bootstrap-token-file %s: %w", o.bootstrapToken, err)
		}
		if created {
			logger.Info("first start: the admin token is the one in --bootstrap-token-file", "file", o.bootstrapToken)
		}
	} else if secret, err := h.Bootstrap(ctx); err != nil {
		return err
	} else if secret != "" {
		fmt.Fprintf(stdout, "First start: an admin API token was created. It is shown only this once:\n\n  %s\n\n", secret)
		if o.adminTokenFile != "" {
			if err := os.WriteFile(o.adminTokenFile, []byte(secret+"\n"), 0o600); err != nil {
				return fmt.Errorf("writing --admin-token-file: %w", err)
			}
		}
	}

	if o.metricsAddr != "" {
		mln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", h.MetricsHandler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		go msrv.Serve(mln)
		defer msrv.Close()
		logger.Info("serving metrics", "metrics_addr", mln.Addr().String())
	}

	srv := &http.Server{
		Handler: h,
		// No ReadTimeout or WriteTimeout: they would bound whole requests,
		// and watches, logs -f, exec and the agents' tunnels last for
		// hours. A request body has --body-timeout (hub.Limits), a head
		// 10 s, an idle keep-alive connection 2 minutes.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Session tickets keyed from the hub's secret key, so agents
		// resume their TLS sessions after a hub restart.
		TLSConfig: h.TLSConfig(&tls.Config{Certificates: []tls.Certificate{ident.Certificate}, MinVersion: tls.VersionTLS12}),
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	logger.Info("eco-hub serving", "version", version, "listen", ln.Addr().String(), "external_url", o.externalURL, "data_dir", o.dataDir)

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case sig := <-sigs:
		logger.Info("draining; signal again to stop now", "signal", sig.String(), "timeout", o.shutdownTimeout)
	}
	drainCtx, cancel := context.WithTimeout(ctx, o.shutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			logger.Warn("second signal: stopping now")
			cancel()
		case <-drainCtx.Done():
		}
	}()
	if err := srv.Shutdown(drainCtx); err != nil {
		logger.Warn("drain incomplete", "err", err)
		srv.Close()
	}
	logger.Info("stopped")
	return nil
}
