// Command eco-agent is the eco External Cluster Operator: it runs inside a
// managed Kubernetes cluster, dials out to the eco hub and forwards the
// hub's requests to its API server (package agent, docs/agent.md).
//
// In a pod, as the install YAML runs it:
//
//	eco-agent --config-dir=/etc/eco-agent
//
// Outside a cluster (the local demo, debugging), with a kubeconfig holding
// the agent ServiceAccount's token and a token for the same ServiceAccount
// with the hub's URL as audience (kubectl create token eco-agent -n
// eco-system --audience=HUB-URL --duration=10m):
//
//	eco-agent --config-dir=DIR --kubeconfig=agent.kubeconfig --namespace=eco-system --identity-token-file=identity.token
//
// The version is set at link time:
//
//	go build -ldflags "-X main.version=v0.1.0" ./cmd/eco-agent
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/eco-project/eco/agent"
	"github.com/eco-project/eco/install"
)

// version is the agent's version, set with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// envProxyCAFile is the environment variable that gives --proxy-ca-file
// its default.
const envProxyCAFile = "ECO_PROXY_CA_FILE"

// options are eco-agent's flags.
type options struct {
	configDir   string
	identityTok string
	kubeconfig  string
	namespace   string
	proxyCAFile string
	healthAddr  string
	maxStreams  int
	logFormat   string
	logLevel    string
	version     bool
}

// defaultOptions returns the flags' defaults, those of them that come
// from the environment read with getenv.
func defaultOptions(getenv func(string) string) options {
	return options{
		configDir:   install.ConfigDir,
		identityTok: install.IdentityTokenPath,
		proxyCAFile: getenv(envProxyCAFile),
		healthAddr:  agent.DefaultHealthAddr,
		maxStreams:  agent.DefaultMaxStreams,
		logFormat:   "json",
		logLevel:    "info",
	}
}

// flagSet returns the flag set that parses into o.
func (o *options) flagSet(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("eco-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.configDir, install.ConfigDirFlag, o.configDir,
		"`directory` holding the agent configuration from the install Secret (files hub-url, cluster-id, token, ca.crt and, optionally, namespace)")
	fs.StringVar(&o.identityTok, install.IdentityTokenFlag, o.identityTok,
		"`file` holding the agent's identity token, re-read at every connect: a ServiceAccount token for the agent with the hub's URL as audience, which proves to the hub which cluster the agent runs in (the install YAML mounts a projected token the kubelet rotates here); empty sends none, and the hub refuses the agent")
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig,
		"kubeconfig `file` for the API server, for running outside the cluster; empty means the in-cluster ServiceAccount")
	fs.StringVar(&o.namespace, "namespace", o.namespace,
		"the agent's `namespace` (deleting it removes the agent); empty means the pod's namespace, else the namespace file in the config directory, else "+install.DefaultNamespace)
	fs.StringVar(&o.proxyCAFile, "proxy-ca-file", o.proxyCAFile,
		"PEM `file` of CA certificates that, with the system roots, verify an https:// proxy's certificate (HTTPS_PROXY=https://...), never the hub's; empty means the proxy is verified like the hub (ca.crt, or the system roots if that is empty); $"+envProxyCAFile+" sets the default")
	fs.StringVar(&o.healthAddr, "health-addr", o.healthAddr,
		"`address` of the plain-HTTP health server ("+install.HealthzPath+", "+install.ReadyzPath+", "+agent.MetricsPath+")")
	fs.IntVar(&o.maxStreams, "max-streams", o.maxStreams,
		"streams from the hub served at once, each with its own API server connection; more are answered 429 (-1: no cap)")
	fs.StringVar(&o.logFormat, "log-format", o.logFormat, "log `format`: json or text")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "minimum log `level`: debug, info, warn or error")
	fs.BoolVar(&o.version, "version", o.version, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: eco-agent [flags]

eco-agent runs in a managed Kubernetes cluster. It dials out to the eco hub
(honouring HTTPS_PROXY and NO_PROXY), forwards the hub's requests to the
API server as the users the hub names, reports whether it can reach and is
allowed by its API server, and, when its namespace is deleted, tells the
hub and deletes its cluster-scoped RBAC objects.

Environment: HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply to the connection
to the hub only; `+envProxyCAFile+` is the default of --proxy-ca-file.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

// validate reports bad flag values.
func (o *options) validate() error {
	var errs []error
	if o.logFormat != "json" && o.logFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format must be json or text, not %q", o.logFormat))
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		errs = append(errs, err)
	}
	if o.configDir == "" {
		errs = append(errs, fmt.Errorf("--%s must not be empty", install.ConfigDirFlag))
	}
	if o.healthAddr == "" {
		errs = append(errs, errors.New("--health-addr must not be empty"))
	}
	if o.maxStreams == 0 || o.maxStreams < -1 {
		errs = append(errs, fmt.Errorf("--max-streams must be positive, or -1 for no cap, not %d", o.maxStreams))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

func (o *options) logger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(o.logLevel)
	hopts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, hopts))
	}
	return slog.New(slog.NewJSONHandler(w, hopts))
}

// run is main without the exit: 0 on a clean stop or removal, 1 on a
// failure, 2 on bad flags.
func run(args []string, stdout, stderr io.Writer) int {
	o := defaultOptions(os.Getenv)
	fs := o.flagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "eco-agent: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "eco-agent %s\n", version)
		return 0
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "eco-agent: %v\n", err)
		return 2
	}
	log := o.logger(stderr)
	cfg, err := o.agentConfig(log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	// client-go logs through klog; send that to the same place.
	klog.SetSlogLogger(log.With("component", "client-go"))

	// The first SIGTERM or SIGINT stops the agent gracefully (saying goodbye
	// if its namespace is being deleted); a second one kills it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop)

	if err := agent.Run(ctx, cfg); err != nil {
		log.Error("eco-agent failed", "err", err)
		return 1
	}
	log.Info("eco-agent stopped")
	return 0
}

// agentConfig builds the agent's Config from the flags and the
// configuration directory.
func (o *options) agentConfig(log *slog.Logger) (agent.Config, error) {
	proxyRoots, err := loadProxyRoots(o.proxyCAFile, log)
	if err != nil {
		return agent.Config{}, err
	}
	ac, err := install.LoadConfigDir(o.configDir)
	if err != nil {
		return agent.Config{}, fmt.Errorf("reading the agent configuration: %w", err)
	}
	if o.namespace != "" {
		ac.Namespace = o.namespace
	}
	var rc *rest.Config
	if o.kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return agent.Config{}, fmt.Errorf("API server configuration: %w", err)
	}
	// In-cluster traffic goes direct: HTTPS_PROXY is for the hub only.
	// (A nil Proxy would make client-go use the environment.) The agent
	// builds its API transports without a proxy anyway.
	rc.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	return agent.Config{
		HubURL:    ac.HubURL,
		ClusterID: ac.ClusterID,
		Token:     ac.Token,
		HubCAPEM:  ac.CAPEM,
		// Re-read at every connect, as the kubelet rotates it.
		IdentityTokenFile: o.identityTok,
		ProxyRootCAs:      proxyRoots,
		Namespace:         ac.Namespace,
		RESTConfig:        rc,
		Version:           version,
		HealthAddr:        o.healthAddr,
		MaxStreams:        o.maxStreams,
		Logger:            log,
	}, nil
}

// loadProxyRoots returns the roots for an https:// proxy: the system
// roots plus the PEM certificates in file (--proxy-ca-file), since a
// corporate proxy's CA is often added to the system's. An empty file name
// returns nil: the proxy is verified like the hub. A file that cannot be
// read or holds no certificate is an error naming it.
func loadProxyRoots(file string, log *slog.Logger) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the proxy CA (--proxy-ca-file or $%s): %w", envProxyCAFile, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		log.Warn("no system roots: only --proxy-ca-file verifies an https:// proxy", "err", err)
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("the proxy CA file %s (--proxy-ca-file or $%s) holds no PEM certificate", file, envProxyCAFile)
	}
	return pool, nil
}
