// Command eco-demo runs eco's local demo in the foreground until Ctrl-C
// stops every process it started: a real local Kubernetes cluster (package
// localcluster), an eco hub on loopback, the cluster imported through the
// hub's API, its install YAML applied with kubectl, and eco-agent run as a
// local process exactly as its Deployment would run it — its configuration
// from the applied Secret, its identity a real ServiceAccount token from
// the TokenRequest API.
//
// State lives under $ECO_DEMO_DIR (default .eco-demo in the working
// directory), which is wiped at start. There it writes cluster.kubeconfig
// (admin, straight to the local cluster), hub.env (ECO_HUB_URL and
// ECO_TOKEN, the admin API token) and hub.kubeconfig (admin, through the
// hub's /clusters/{id}/k8s proxy).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/apps/hubapps"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/localcluster"
	"github.com/eco-project/eco/localeco"
	"github.com/eco-project/eco/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "eco-demo:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eco-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: eco-demo [flags]\n\nRuns the local demo until Ctrl-C. State goes to $ECO_DEMO_DIR (default .eco-demo).\n\n")
		fs.PrintDefaults()
	}
	defaultDir := os.Getenv("ECO_DEMO_DIR")
	if defaultDir == "" {
		defaultDir = ".eco-demo"
	}
	dir := fs.String("dir", defaultDir, "state directory (wiped at start; overrides $ECO_DEMO_DIR)")
	module := fs.String("kube-module", "tools/kube", "tools/kube module, to build the cluster binaries when they are not cached")
	agentBin := fs.String("agent-bin", "bin/eco-agent", "eco-agent binary to run (make demo builds it)")
	hubAddr := fs.String("hub-addr", "127.0.0.1:8443", "hub listen address (a free port is used if this one is taken)")
	argocdBin := fs.String("argocd-bin", "", "also run the real Argo CD (application controller, repo server) from this binary, as make demo-argocd builds it, with Redis from Debian")
	argocdCRDs := fs.String("argocd-crds", "", "Argo CD's manifests/crds directory, with --argocd-bin")
	argocdTokenTTL := fs.Duration("argocd-token-ttl", argocd.DefaultTokenTTL, "lifetime of the demo's Argo CD token (replaced when a third is left)")
	maxStreams := fs.Int("max-streams-per-user", hub.DefaultStreamsPerUser, "proxied Kubernetes requests one hub user may have in flight, as eco-hub's flag of the same name")
	maxWatches := fs.Int("max-watches-per-user", hub.DefaultWatchesPerUser, "long-running requests (watches, logs -f, exec) one hub user may hold at once, as eco-hub's flag of the same name")
	argocdResync := fs.Duration("argocd-resync", 30*time.Second, "how often the demo's Argo CD registration (namespace argocd of the local cluster) is checked")
	profileAddr := fs.String("profile-addr", "", "serve the demo process's heap and goroutine profiles (/heap?gc=1, /goroutine) over plain HTTP on this address, e.g. 127.0.0.1:6061, for go tool pprof (default: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *profileAddr != "" {
		// A sample per 4 KiB, not 512: fine enough to see what one
		// watch holds.
		runtime.MemProfileRate = 4096
		stop, err := serveProfiles(*profileAddr)
		if err != nil {
			return err
		}
		defer stop()
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(absDir); err != nil {
		return fmt.Errorf("wiping %s: %w", absDir, err)
	}
	if err := os.MkdirAll(absDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", absDir, err)
	}

	bins, err := localcluster.FindBinaries("")
	if errors.Is(err, localcluster.ErrMissingBinaries) {
		fmt.Fprintln(stdout, "building the local cluster's binaries (once; cached afterwards)")
		bins, err = localcluster.Build(ctx, localcluster.BuildConfig{ModuleDir: *module, Progress: stdout})
	}
	if err != nil {
		return err
	}

	start := time.Now()
	fmt.Fprintln(stdout, "starting a local Kubernetes cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
	cluster, err := localcluster.Start(ctx, localcluster.Config{
		BinDir: bins.Dir,
		Dir:    filepath.Join(absDir, "cluster"),
		Full:   true,
		Name:   "eco-demo",
		Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("starting local cluster: %w", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "stopping the local cluster")
		if err := cluster.Stop(); err != nil {
			logger.Error("stopping local cluster", "err", err)
		}
	}()
	kubeconfig := filepath.Join(absDir, "cluster.kubeconfig")
	if err := copyFile(cluster.AdminKubeconfig, kubeconfig); err != nil {
		return err
	}

	// A fake AWS (STS and EKS, the real SDK talks to it) with a few
	// clusters, so "Import from a cloud" can be tried (docs/cloud.md).
	demoAWS := demoCloud()
	defer demoAWS.Close()

	// Argo CD registration: the demo cluster is registered into
	// namespace argocd of the local cluster itself (docs/argocd.md), so
	// the Secret can be seen with kubectl even when Argo CD is not running.
	if err := cluster.Kubectl(ctx, "create", "namespace", argocd.DefaultNamespace).Run(); err != nil {
		return fmt.Errorf("creating namespace %s: %w", argocd.DefaultNamespace, err)
	}
	var registrar *argocd.Registrar
	mountArgoCD := func(h *hub.Hub) error {
		ca, err := os.ReadFile(filepath.Join(absDir, "hub", "tls", "ca.crt"))
		if err != nil {
			return fmt.Errorf("reading the hub's CA: %w", err)
		}
		registrar, err = argocd.New(argocd.Config{
			Hub: h, CAPEM: ca, Resync: *argocdResync, TokenTTL: *argocdTokenTTL, Logger: logger.With("component", "argocd"),
			Instances: []argocd.Instance{{Kubeconfig: kubeconfig, Namespace: argocd.DefaultNamespace}},
		})
		if err != nil {
			return err
		}
		h.Mount(argocd.APIPath, registrar.Handler(h))
		return nil
	}

	// The built-in add-on repository's generated chart (metrics-server):
	// compiled in when go generate ran first (make demo does), else
	// generated now.
	generated, err := generatedCharts(ctx, filepath.Join(absDir, "generated-charts"))
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, "starting the eco hub")
	var features *hubapps.Features
	hubCfg := localeco.HubConfig{Dir: filepath.Join(absDir, "hub"), Addr: *hubAddr, Logger: logger.With("side", "hub"), Mount: func(h *hub.Hub) error {
		if err := mountArgoCD(h); err != nil {
			return err
		}
		return mountUI(logger, registrar, generated, &features)(h)
	},
		Configure: func(c *hub.Config) {
			c.CloudProviders = map[store.Provider]cloud.Provider{store.ProviderEKS: aws.New(aws.Config{EKSEndpoint: demoAWS.URL, STSEndpoint: demoAWS.URL})}
			c.CloudPollInterval, c.CloudFastPollInterval = 20*time.Second, 5*time.Second
			c.Limits.StreamsPerUser, c.Limits.WatchesPerUser = *maxStreams, *maxWatches
		}}
	h, err := localeco.StartHub(ctx, hubCfg)
	if err != nil {
		hubCfg.Addr = ""
		h, err = localeco.StartHub(ctx, hubCfg)
	}
	if err != nil {
		return fmt.Errorf("starting hub: %w", err)
	}
	defer func() {
		fmt.Fprintln(stdout, "stopping the hub")
		features.Close()
		h.Close()
	}()

	regCtx, regStop := context.WithCancel(ctx)
	regDone := make(chan struct{})
	go func() { // owned: stopped and awaited below
		defer close(regDone)
		if err := registrar.Run(regCtx); err != nil {
			logger.Error("Argo CD registration stopped", "err", err)
		}
	}()
	defer func() { regStop(); <-regDone }()

	fmt.Fprintln(stdout, "importing the local cluster and applying its install YAML with kubectl")
	imported, err := h.Import(ctx, "local")
	if err != nil {
		return err
	}
	setup, err := localeco.Install(ctx, h, cluster, imported.ID, filepath.Join(absDir, "agent"))
	if err != nil {
		return err
	}
	go setup.KeepTokenFresh(ctx)

	fmt.Fprintln(stdout, "starting eco-agent as the Deployment would run it")
	agentLog, err := os.Create(filepath.Join(absDir, "agent.log"))
	if err != nil {
		return err
	}
	defer agentLog.Close()
	agentCmd := setup.AgentCommand(context.Background(), *agentBin, "127.0.0.1:0")
	agentCmd.Stdout, agentCmd.Stderr = agentLog, agentLog
	agentCmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := agentCmd.Start(); err != nil {
		return fmt.Errorf("starting %s (make demo builds it): %w", *agentBin, err)
	}
	agentDone := make(chan struct{})
	go func() { _ = agentCmd.Wait(); close(agentDone) }()
	defer func() {
		fmt.Fprintln(stdout, "stopping eco-agent")
		_ = agentCmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-agentDone:
		case <-time.After(10 * time.Second):
			_ = agentCmd.Process.Kill()
			<-agentDone
		}
	}()
	if _, err := h.WaitState(ctx, imported.ID, store.StateConnected, 60*time.Second); err != nil {
		return fmt.Errorf("%w (agent log: %s)", err, agentLog.Name())
	}

	argoNote := "  (make demo-argocd also runs the real Argo CD)"
	if *argocdBin != "" {
		fmt.Fprintln(stdout, "starting Argo CD: application controller and repo server, with Redis")
		a := &argoCDDemo{bin: *argocdBin, crds: *argocdCRDs, dir: absDir, cluster: cluster}
		defer a.stop()
		app, err := a.start(ctx, h.URL+hub.ProxyPrefix+imported.ID+hub.ProxySuffix)
		if err != nil {
			return fmt.Errorf("starting Argo CD: %w", err)
		}
		argoNote = fmt.Sprintf(`
  Argo CD runs (logs in %s); sync the example Application from a local git repository:
    KUBECONFIG=%s %s apply -f %s
    KUBECONFIG=%s %s -n argocd get application guestbook -w     # Synced, Healthy
    KUBECONFIG=%s %s -n guestbook get deploy,configmap`,
			filepath.Join(absDir, "argocd"), kubeconfig, bins.Path(localcluster.Kubectl), app,
			kubeconfig, bins.Path(localcluster.Kubectl), kubeconfig, bins.Path(localcluster.Kubectl))
	}
	fmt.Fprintln(stdout, "serving the demo chart repository (eco-demo) and enabling the metrics-server add-on (from the built-in eco-addons)")
	repoURL, stopRepo, err := demoCatalog(ctx, h, features, imported.ID, filepath.Join(absDir, "charts"))
	if err != nil {
		return fmt.Errorf("demo catalog: %w", err)
	}
	defer stopRepo()

	hubEnv := filepath.Join(absDir, "hub.env")
	if err := os.WriteFile(hubEnv, []byte(fmt.Sprintf("ECO_HUB_URL=%s\nECO_TOKEN=%s\n", h.URL, h.AdminToken)), 0o600); err != nil {
		return err
	}
	hubKubeconfig := filepath.Join(absDir, "hub.kubeconfig")
	if err := h.WriteKubeconfig(ctx, imported.ID, "", hubKubeconfig); err != nil {
		return err
	}
	kubectl := bins.Path(localcluster.Kubectl)
	fmt.Fprintf(stdout, `
eco demo is up (%s)
  hub:             %s   (web UI: sign in with the admin token; API; CA in %s)
  admin token:     %s
  cluster:         %s (%s) — ECO Connected, Kubernetes %s on %s
  hub.env:         %s   (ECO_HUB_URL, ECO_TOKEN)
  hub.kubeconfig:  %s   (kubectl through the hub as admin: a token for this cluster only, 8 h)
  cluster.kubeconfig: %s   (straight to the local cluster)
  agent log:       %s
  demo AWS:        Import from a cloud → EKS, access key %s, secret %s, regions eu-west-1, us-east-1
  Argo CD:         cluster Secret %s/%s in the local cluster (what Argo CD reads)%s
  App Catalog:     repository eco-addons built into the hub (the add-on charts, metrics-server), eco-demo at %s (the shop demo chart)

try:
  source %s
  curl --cacert %s -H "Authorization: Bearer $ECO_TOKEN" $ECO_HUB_URL/api/v1/clusters
  KUBECONFIG=%s %s auth whoami
  KUBECONFIG=%s %s get pods -A
  KUBECONFIG=%s %s -n argocd get secret %s -o yaml
  curl --cacert %s -H "Authorization: Bearer $ECO_TOKEN" $ECO_HUB_URL/api/v1/clusters/%s/argocd
  KUBECONFIG=%s %s list -A   # the metrics-server add-on's release (Helm's release Secret)

Ctrl-C stops everything.
`, time.Since(start).Round(100*time.Millisecond), h.URL, filepath.Join(absDir, "hub", "tls", "ca.crt"), h.AdminToken,
		imported.Name, imported.ID, localcluster.KubernetesVersion, cluster.URL,
		hubEnv, hubKubeconfig, kubeconfig, agentLog.Name(), demoKeyID, demoSecret, argocd.DefaultNamespace, argocd.SecretName(imported.ID), argoNote, repoURL,
		hubEnv, filepath.Join(absDir, "hub", "tls", "ca.crt"), hubKubeconfig, kubectl, hubKubeconfig, kubectl,
		kubeconfig, kubectl, argocd.SecretName(imported.ID), filepath.Join(absDir, "hub", "tls", "ca.crt"), imported.ID,
		hubKubeconfig, filepath.Join(filepath.Dir(*agentBin), "helm"))
	select {
	case <-ctx.Done():
	case <-agentDone:
		return fmt.Errorf("eco-agent exited; see %s", agentLog.Name())
	}
	return nil
}

// The demo AWS account's keys (of a fake AWS on loopback).
const (
	demoKeyID  = "AKIDEMO"
	demoSecret = "demo-secret"
)

// demoCloud starts a fake AWS with EKS clusters in two regions: two of
// the same name, one being created, one private, one degraded.
func demoCloud() *awsfake.Server {
	f := awsfake.New()
	f.AddKey(demoKeyID, demoSecret)
	f.SetClusters("eu-west-1",
		awsfake.Cluster{Name: "shop", Status: "ACTIVE", Version: "1.33", Endpoint: "https://shop.eu-west-1.eks.example"},
		awsfake.Cluster{Name: "batch", Status: "CREATING", Version: "1.34"},
		awsfake.Cluster{Name: "data", Status: "ACTIVE", Version: "1.32", Groups: []awsfake.Nodegroup{{Name: "workers", Status: "DEGRADED",
			Issues: []awsfake.Issue{{Code: "AsgInstanceLaunchFailures", Message: "Could not launch On-Demand Instances. InsufficientInstanceCapacity"}}}}})
	f.SetClusters("us-east-1",
		awsfake.Cluster{Name: "shop", Status: "ACTIVE", Version: "1.33", Private: true})
	return f
}

// mountUI starts the App Catalog, Helm service and add-ons and mounts the
// web UI on the hub, with the Argo CD tab, as eco-hub does.
func mountUI(logger *slog.Logger, argo *argocd.Registrar, generated fs.FS, features **hubapps.Features) func(*hub.Hub) error {
	return func(h *hub.Hub) error {
		f, err := hubapps.Start(context.Background(), hubapps.Config{Hub: h, Logger: logger.With("side", "hub"), Addons: demoAddons(), GeneratedCharts: generated})
		if err != nil {
			return fmt.Errorf("apps: %w", err)
		}
		*features = f
		if _, err := ui.Mount(ui.Config{Hub: h, Logger: logger.With("component", "ui"), ArgoCD: argo, Apps: f.UI()}); err != nil {
			return fmt.Errorf("web UI: %w", err)
		}
		return nil
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("reading %s: %w", from, err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", to, err)
	}
	return nil
}

// demoAddons is the curated list with metrics-server's APIService off: the
// demo cluster's pods are kwok's, which serve nothing, and an APIService
// without a backend would break API discovery for every client.
func demoAddons() []addons.Addon {
	list := addons.Defaults(chartrepo.AddonRepository)
	list[0].Values = map[string]any{"args": []any{"--kubelet-insecure-tls"}, "apiService": map[string]any{"create": false}}
	return list
}

// generatedCharts returns the generated add-on charts compiled into this
// binary or, when it was built without them (go run without go generate),
// writes them into dir now: the demo has a Go toolchain.
func generatedCharts(ctx context.Context, dir string) (fs.FS, error) {
	gen := chartrepo.Generated()
	if found, _ := fs.Glob(gen, chartrepo.MetricsServerChart+"-*.tgz"); len(found) > 0 {
		return gen, nil
	}
	if _, err := chartrepo.WriteGenerated(ctx, dir); err != nil {
		return nil, fmt.Errorf("generating the metrics-server chart (make demo generates it before building): %w", err)
	}
	return os.DirFS(dir), nil
}

// demoRepository is the App Catalog repository of the demo chart; the
// add-on charts are in the hub's built-in eco-addons.
const demoRepository = "eco-demo"

// demoCatalog serves the demo chart "shop" as the App Catalog repository
// eco-demo on loopback, adds it to the hub and enables the
// metrics-server add-on (its chart built into the hub) for the cluster.
func demoCatalog(ctx context.Context, h *localeco.Hub, f *hubapps.Features, cluster, dir string) (string, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	if err := chartrepo.WriteShopRepository(dir); err != nil {
		return "", nil, err
	}
	repo, err := chartrepo.New(chartrepo.Config{Dir: dir})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: repo, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String()
	stop := func() { srv.Close() }
	err = h.Do(ctx, http.MethodPost, "/api/v1/catalog/repositories", "", map[string]any{"name": demoRepository, "url": url}, nil)
	var apiErr *localeco.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.Code == http.StatusConflict) { // kept from an earlier run
		stop()
		return "", nil, err
	}
	if _, err := f.Catalog.RefreshAndWait(ctx, demoRepository); err != nil {
		stop()
		return "", nil, err
	}
	if err := h.Do(ctx, http.MethodPut, "/api/v1/addons/metrics-server/clusters/"+cluster, "", map[string]any{"enabled": true}, nil); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

// serveProfiles serves the process's heap profile (after a collection,
// with ?gc=1) and goroutine profile on addr until stop.
func serveProfiles(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--profile-addr: %w", err)
	}
	mux := http.NewServeMux()
	for _, name := range []string{"heap", "goroutine"} {
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("gc") != "" {
				runtime.GC()
				runtime.GC()
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			if err := pprof.Lookup(name).WriteTo(w, 0); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}
