// Package apps is eco's Helm service: Helm's own Go SDK (v4) run by the
// hub against a cluster through its tunnel, acting as the signed-in hub
// user (Hub.ClusterConfig), so the cluster's RBAC applies and releases are
// stored as Helm stores them — Secrets in the release namespace that the
// helm CLI sees too.
//
// Changing operations (install, upgrade, rollback, uninstall) run as hub
// jobs: answered at once with an operation ID, their progress and Helm's
// own log kept in the store (store.Operation), one per release at a time.
// A job cut off — the hub stopped, the tunnel dropped — leaves its release
// pending-*; the Service's Run loop puts such releases right (marks the
// pending revision failed, so Helm accepts the next operation) when the
// cluster can be reached again, and finishes the job as interrupted.
package apps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/prometheus/client_golang/prometheus"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// Operation kinds.
const (
	KindInstall   = "install"
	KindUpgrade   = "upgrade"
	KindRollback  = "rollback"
	KindUninstall = "uninstall"
)

// Config configures a Service.
type Config struct {
	// Hub gives access to clusters (ClusterConfig), the store and the
	// audit log. Required.
	Hub *hub.Hub
	// Logger receives the service's logs. Nil discards them.
	Logger *slog.Logger
	// Timeout bounds one operation. Zero means DefaultTimeout.
	Timeout time.Duration
	// RecoverInterval is how often Run looks for operations to recover.
	// Zero means 10 s.
	RecoverInterval time.Duration
	// Charts resolves the chart references of install and upgrade
	// requests (the App Catalog). Nil means only uploaded archives.
	Charts ChartSource
	// Registerer receives the service's metrics. Nil means none.
	Registerer prometheus.Registerer
}

// ChartSource finds a chart by reference: a repository's chart at a
// version (the App Catalog implements it).
type ChartSource interface {
	Chart(ctx context.Context, ref ChartRef) (*chart.Chart, error)
}

// ChartRef names a chart in a repository of the App Catalog.
type ChartRef struct {
	Repo    string `json:"repo"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Service runs Helm operations. Its jobs' goroutines are its own: Close
// stops them (a job cut off is recovered by the next Run).
type Service struct {
	cfg    Config
	hub    *hub.Hub
	store  store.Store
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]bool // IDs of the operations this Service runs; guarded by mu
	// startMu is held while Start creates an operation and marks it
	// running, and while it recovers a release a previous process left;
	// and while recoverAll takes what runs and lists what is unfinished.
	startMu sync.Mutex

	metrics metrics
}

type metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Hub == nil {
		return nil, errors.New("apps: Config.Hub is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RecoverInterval <= 0 {
		cfg.RecoverInterval = 10 * time.Second
	}
	s := &Service{cfg: cfg, hub: cfg.Hub, store: cfg.Hub.Store(), log: cfg.Logger, running: map[string]bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_helm_operations_total", Help: "Helm operations finished, by kind and final state.",
		}, []string{"kind", "state"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eco_helm_operation_duration_seconds", Help: "Duration of Helm operations, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 12),
		}, []string{"kind"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eco_helm_operations_running", Help: "Helm operations this hub is running.",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.metrics.ops, s.metrics.duration, s.metrics.inflight} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("apps: registering metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Close stops the running operations and waits for their goroutines. An
// operation cut off is left recovering for the next Run.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Run recovers operations cut off before they finished — by a previous
// hub process, or by a dropped tunnel — at once and then every
// RecoverInterval, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.RecoverInterval)
	defer t.Stop()
	for {
		s.recoverAll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RecoverNow runs one recovery pass (tests and the API's resync).
func (s *Service) RecoverNow(ctx context.Context) { s.recoverAll(ctx) }

func (s *Service) recoverAll(ctx context.Context) {
	// What runs here is taken before the list, both under startMu: an
	// operation Start creates is then either in neither or ours, and one
	// that ends meanwhile was ours when the list still had it unfinished.
	// (Looking up each listed operation afterwards took one Start had just
	// created, before it marked it running, for one cut off.)
	s.startMu.Lock()
	s.mu.Lock()
	mine := make(map[string]bool, len(s.running))
	for id := range s.running {
		mine[id] = true
	}
	s.mu.Unlock()
	ops, err := s.store.ListOperations(ctx, store.OperationQuery{Unfinished: true, Limit: store.MaxPageSize})
	s.startMu.Unlock()
	if err != nil {
		s.log.Warn("listing unfinished operations", "err", err)
		return
	}
	for _, op := range ops {
		if mine[op.ID] || !s.hub.Connected(op.ClusterID) {
			continue
		}
		s.recoverOne(ctx, op)
	}
}

// recoverRelease recovers the unfinished operations on r's release that
// this process does not run, and reports whether it recovered any.
func (s *Service) recoverRelease(ctx context.Context, r Request) bool {
	ops, err := s.store.ListOperations(ctx, store.OperationQuery{ClusterID: r.Cluster, Namespace: r.Namespace, Release: r.Release, Unfinished: true})
	if err != nil {
		return false
	}
	recovered := false
	for _, op := range ops {
		s.mu.Lock()
		mine := s.running[op.ID]
		s.mu.Unlock()
		if mine {
			return false // a live operation of ours: the release is busy
		}
		s.recoverOne(ctx, op)
		recovered = true
	}
	return recovered
}

// recoverOne puts op's release right and finishes op as interrupted.
func (s *Service) recoverOne(ctx context.Context, op store.Operation) {
	why := "the hub stopped during " + op.Kind
	if op.State == store.OperationRecovering && op.Message != "" {
		why = op.Message
	}
	hc, err := s.client(ctx, op.ClusterID, s.serviceIdentity(op.ClusterID), slog.New(slog.DiscardHandler))
	if err != nil {
		s.log.Warn("recovering operation", "operation", op.ID, "err", err)
		return
	}
	did, err := hc.recoverPending(op.Namespace, op.Release, why)
	if err != nil {
		s.log.Warn("recovering operation", "operation", op.ID, "cluster", op.ClusterID, "err", err)
		if op.State != store.OperationRecovering {
			s.store.UpdateOperation(ctx, op.ID, store.OperationUpdate{State: store.OperationRecovering, Message: why})
		}
		return
	}
	msg := fmt.Sprintf("interrupted: %s; recovered: %s", why, did)
	if _, err := s.store.UpdateOperation(ctx, op.ID, store.OperationUpdate{State: store.OperationInterrupted, Message: msg}); err != nil {
		s.log.Warn("finishing recovered operation", "operation", op.ID, "err", err)
		return
	}
	s.metrics.ops.WithLabelValues(op.Kind, string(store.OperationInterrupted)).Inc()
	s.log.Info("recovered operation", "operation", op.ID, "cluster", op.ClusterID, "release", op.Namespace+"/"+op.Release, "result", did)
}

// serviceIdentity is who recovers releases: the hub's "helm" service
// identity, admin in that cluster (the user who started the operation
// may be gone).
func (s *Service) serviceIdentity(cluster string) hub.Identity {
	return s.hub.ServiceIdentity("helm", store.ClusterAdmin, cluster)
}

// client returns a Helm client for cluster acting as ident. Every request
// it makes ends when ctx does: Helm's actions go on in goroutines of their
// own after their context ends, and this makes them fail fast instead of
// acting on the cluster after the operation is over.
func (s *Service) client(ctx context.Context, cluster string, ident hub.Identity, logger *slog.Logger) (helmClient, error) {
	cfg, err := s.hub.ClusterConfig(cluster, ident)
	if err != nil {
		return helmClient{}, err
	}
	cfg.Timeout = 0
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &boundTransport{rt: rt, ctx: ctx} }
	return helmClient{rest: cfg, logger: logger, ctx: ctx}, nil
}

// boundTransport ends every request when ctx ends.
type boundTransport struct {
	rt  http.RoundTripper
	ctx context.Context
}

func (t *boundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, fmt.Errorf("operation over: %w", err)
	}
	rctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	resp, err := t.rt.RoundTrip(req.WithContext(rctx))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	resp.Body = &endingBody{ReadCloser: resp.Body, end: func() { stop(); cancel() }}
	return resp, nil
}

type endingBody struct {
	io.ReadCloser
	once sync.Once
	end  func()
}

func (b *endingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.end)
	return err
}

// Errors of the Service, for the API's status codes.
var (
	// ErrForbidden: the identity may only look in this cluster.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: the request is malformed or its values fail the chart's
	// schema.
	ErrInvalid = errors.New("invalid request")
	// ErrBusy: another operation is running on the release.
	ErrBusy = errors.New("another operation is running on this release")
	// ErrNotConnected: the cluster's agent has no tunnel to the hub.
	ErrNotConnected = errors.New("eco is not connected to this cluster")
)

// Request is an operation to start.
type Request struct {
	Kind      string
	Cluster   string
	Namespace string
	Release   string
	// Chart and Values are for install and upgrade.
	Chart  *chart.Chart
	Values map[string]any
	// Revision is the revision a rollback returns to (0: the previous).
	Revision int
	// Wait makes install and upgrade wait for the workloads to be ready.
	Wait bool
}

func (r Request) validate() error {
	switch r.Kind {
	case KindInstall, KindUpgrade:
		if r.Chart == nil {
			return fmt.Errorf("%w: %s needs a chart", ErrInvalid, r.Kind)
		}
		if err := validateValues(r.Chart, r.Values); err != nil {
			return fmt.Errorf("%w: values do not match the chart's schema: %w", ErrInvalid, err)
		}
	case KindRollback, KindUninstall:
	default:
		return fmt.Errorf("%w: unknown operation %q", ErrInvalid, r.Kind)
	}
	if err := validName(r.Namespace, 63); err != nil {
		return fmt.Errorf("%w: namespace: %w", ErrInvalid, err)
	}
	if err := validName(r.Release, 53); err != nil {
		return fmt.Errorf("%w: release name: %w", ErrInvalid, err)
	}
	return nil
}

// validName checks a DNS-1123 label of at most max characters.
func validName(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%q must be 1 to %d characters", s, max)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1
		if !ok {
			return fmt.Errorf("%q must be lower-case letters, digits and inner dashes", s)
		}
	}
	return nil
}

// mayChange refuses an identity that may only look at cluster id.
func mayChange(ident hub.Identity, cluster string) error {
	switch ident.ClusterRole(cluster) {
	case store.ClusterEdit, store.ClusterAdmin:
		return nil
	case "":
		return fmt.Errorf("cluster %q: %w", cluster, hub.ErrNoAccess)
	}
	return fmt.Errorf("%w: hub user %q may only view cluster %s", ErrForbidden, ident.Name, cluster)
}

// Start validates r, records it as a running operation and runs it in the
// background, acting as ident. It returns the operation at once. A second
// operation on the same release while one runs is ErrBusy.
func (s *Service) Start(ctx context.Context, ident hub.Identity, r Request) (store.Operation, error) {
	if err := mayChange(ident, r.Cluster); err != nil {
		return store.Operation{}, err
	}
	if err := r.validate(); err != nil {
		return store.Operation{}, err
	}
	if !s.hub.Connected(r.Cluster) {
		return store.Operation{}, fmt.Errorf("cluster %s: %w", r.Cluster, ErrNotConnected)
	}
	if s.ctx.Err() != nil {
		return store.Operation{}, errors.New("apps: the service is closed")
	}
	newOp := store.Operation{
		ClusterID: r.Cluster, Namespace: r.Namespace, Release: r.Release, Kind: r.Kind, User: ident.Name,
		Message: "started",
	}
	// Creating and marking the operation ours happen under startMu, so
	// recoverRelease never takes another Start's new operation for one
	// a previous process left.
	s.startMu.Lock()
	op, err := s.store.CreateOperation(ctx, newOp)
	if errors.Is(err, store.ErrConflict) && s.recoverRelease(ctx, r) {
		// The release was held by an operation a previous hub process
		// left unfinished, which the periodic pass had not reached yet
		// (its cluster had just connected): recovered, so try again.
		op, err = s.store.CreateOperation(ctx, newOp)
	}
	if err == nil {
		s.mu.Lock()
		s.running[op.ID] = true
		s.mu.Unlock()
	}
	s.startMu.Unlock()
	if errors.Is(err, store.ErrConflict) {
		return store.Operation{}, fmt.Errorf("%w: %w", ErrBusy, err)
	}
	if err != nil {
		return store.Operation{}, err
	}
	s.metrics.inflight.Inc()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.metrics.inflight.Dec()
		defer func() {
			s.mu.Lock()
			delete(s.running, op.ID)
			s.mu.Unlock()
		}()
		s.run(op, ident, r)
	}()
	return op, nil
}

// jobLog collects Helm's log of one operation and saves it to the store
// now and then, so a reader sees progress.
type jobLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer // guarded by mu
	dirty bool         // guarded by mu
}

func (l *jobLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.buf.Len() > 2*store.MaxOperationLog {
		b := l.buf.Bytes()
		keep := append([]byte(nil), b[len(b)-store.MaxOperationLog:]...)
		l.buf.Reset()
		l.buf.Write(keep)
	}
	l.dirty = true
	return len(p), nil
}

// take returns the log if it changed since the last take.
func (l *jobLog) take() (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dirty {
		return "", false
	}
	l.dirty = false
	return l.buf.String(), true
}

func (l *jobLog) line(format string, args ...any) {
	fmt.Fprintf(l, time.Now().UTC().Format(time.TimeOnly)+" "+format+"\n", args...)
}

func (s *Service) run(op store.Operation, ident hub.Identity, r Request) {
	start := time.Now()
	jl := &jobLog{}
	logger := slog.New(slog.NewTextHandler(jl, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(s.ctx, cmpDuration(s.cfg.Timeout))
	defer cancel()
	// Progress: the log reaches the store every half second.
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if text, ok := jl.take(); ok {
					s.store.UpdateOperation(context.WithoutCancel(ctx), op.ID, store.OperationUpdate{Log: text, Message: "running"})
				}
			}
		}
	}()
	jl.line("%s of release %s/%s in cluster %s by %s", r.Kind, r.Namespace, r.Release, r.Cluster, ident.Name)
	revision, msg, err := s.do(ctx, ident, r, logger, jl)
	cancel()
	<-flushed

	final := context.Background()
	u := store.OperationUpdate{State: store.OperationSucceeded, Message: msg, Revision: revision}
	if err != nil {
		u.State, u.Message = store.OperationFailed, err.Error()
		jl.line("error: %s", err)
		// Helm may have left the release pending: it could not write the
		// failed state (tunnel gone) or was cut off (hub closing).
		if s.ctx.Err() != nil {
			u.State, u.Message = store.OperationRecovering, "the hub stopped during "+r.Kind+": "+err.Error()
		} else if hc, cerr := s.client(s.ctx, r.Cluster, s.serviceIdentity(r.Cluster), logger); cerr == nil {
			if did, rerr := hc.recoverPending(r.Namespace, r.Release, r.Kind+" failed: "+err.Error()); rerr != nil {
				u.State, u.Message = store.OperationRecovering, r.Kind+" failed and the release could not be checked yet: "+err.Error()
				jl.line("checking the release: %s", rerr)
			} else {
				jl.line("release check: %s", did)
			}
		}
	} else {
		jl.line("done: %s", msg)
	}
	text, _ := jl.take()
	if text == "" {
		jl.mu.Lock()
		text = jl.buf.String()
		jl.mu.Unlock()
	}
	u.Log = text
	if _, err := s.store.UpdateOperation(final, op.ID, u); err != nil {
		s.log.Error("recording the end of an operation", "operation", op.ID, "err", err)
	}
	if u.State.Finished() {
		s.metrics.ops.WithLabelValues(r.Kind, string(u.State)).Inc()
	}
	s.metrics.duration.WithLabelValues(r.Kind).Observe(time.Since(start).Seconds())
	s.log.Info("helm operation", "operation", op.ID, "kind", r.Kind, "cluster", r.Cluster,
		"release", r.Namespace+"/"+r.Release, "user", ident.Name, "state", u.State, "duration", time.Since(start))
	s.hub.RecordAudit(store.AuditEvent{
		User: ident.Name, TokenID: ident.TokenID, Source: "helm", Verb: "helm-" + r.Kind, ClusterID: r.Cluster,
		Namespace: r.Namespace, Name: r.Release, Path: "operation " + op.ID, Code: auditCode(u.State),
	})
}

func auditCode(s store.OperationState) int {
	if s == store.OperationSucceeded {
		return 200
	}
	return 500
}

func (s *Service) do(ctx context.Context, ident hub.Identity, r Request, logger *slog.Logger, jl *jobLog) (int, string, error) {
	hc, err := s.client(ctx, r.Cluster, ident, logger)
	if err != nil {
		return 0, "", err
	}
	o := installOptions{Namespace: r.Namespace, Release: r.Release, Chart: r.Chart, Values: r.Values, Timeout: s.cfg.Timeout, Wait: r.Wait}
	switch r.Kind {
	case KindInstall:
		rel, err := hc.install(ctx, o)
		if err != nil {
			return 0, "", err
		}
		return rel.Version, fmt.Sprintf("installed %s revision %d: %s", chartName(r.Chart), rel.Version, rel.Info.Status), nil
	case KindUpgrade:
		rel, err := hc.upgrade(ctx, o)
		if err != nil {
			return 0, "", err
		}
		return rel.Version, fmt.Sprintf("upgraded to %s revision %d: %s", chartName(r.Chart), rel.Version, rel.Info.Status), nil
	case KindRollback:
		if err := hc.rollback(r.Namespace, r.Release, r.Revision, s.cfg.Timeout); err != nil {
			return 0, "", err
		}
		rel, err := hc.get(r.Namespace, r.Release, 0)
		if err != nil {
			return 0, "", err
		}
		return rel.Version, fmt.Sprintf("rolled back to revision %d as revision %d", r.Revision, rel.Version), nil
	case KindUninstall:
		if _, err := hc.uninstall(r.Namespace, r.Release, s.cfg.Timeout); err != nil {
			return 0, "", err
		}
		return 0, "uninstalled", nil
	}
	return 0, "", fmt.Errorf("%w: unknown operation %q", ErrInvalid, r.Kind)
}

func chartName(ch *chart.Chart) string {
	if ch == nil || ch.Metadata == nil {
		return "?"
	}
	return ch.Metadata.Name + "-" + ch.Metadata.Version
}

// Preview renders an install or upgrade without changing the cluster
// (Helm's server-side dry run): the manifests, and for an upgrade the
// diff from the deployed release's.
type Preview struct {
	Manifest string `json:"manifest"`
	Notes    string `json:"notes,omitempty"`
	Diff     string `json:"diff,omitempty"`
}

// DryRun previews r (install or upgrade) as ident.
func (s *Service) DryRun(ctx context.Context, ident hub.Identity, r Request) (Preview, error) {
	if err := mayChange(ident, r.Cluster); err != nil {
		return Preview{}, err
	}
	if err := r.validate(); err != nil {
		return Preview{}, err
	}
	if r.Kind != KindInstall && r.Kind != KindUpgrade {
		return Preview{}, fmt.Errorf("%w: only install and upgrade have a preview", ErrInvalid)
	}
	hc, err := s.client(ctx, r.Cluster, ident, s.log)
	if err != nil {
		return Preview{}, err
	}
	o := installOptions{Namespace: r.Namespace, Release: r.Release, Chart: r.Chart, Values: r.Values, DryRun: true}
	if r.Kind == KindInstall {
		// Client-side: a chart's custom resources cannot be checked by
		// the server before its CRDs exist.
		o.ClientDryRun = true
		rel, err := hc.install(ctx, o)
		if err != nil {
			return Preview{}, err
		}
		return Preview{Manifest: manifestWithHooks(rel), Notes: rel.Info.Notes}, nil
	}
	cur, err := hc.get(r.Namespace, r.Release, 0)
	if err != nil {
		return Preview{}, err
	}
	rel, err := hc.upgrade(ctx, o)
	if err != nil {
		return Preview{}, err
	}
	p := Preview{Manifest: manifestWithHooks(rel), Notes: rel.Info.Notes}
	p.Diff = diff(fmt.Sprintf("revision %d", cur.Version), "upgrade", manifestWithHooks(cur), p.Manifest)
	return p, nil
}

// Access to releases for reading: any role in the cluster, and the
// cluster's RBAC decides the rest.

// List returns the releases in namespace ns ("" for all namespaces).
//
// Helm keeps releases in Secrets, which Kubernetes' view role may not
// read. A user whose own list is forbidden but who has a role in the
// cluster (a viewer) gets the summary — name, namespace, revision, status,
// chart, dates — read by the hub's helm service identity; values and
// manifests (which may hold secrets) stay behind the cluster's RBAC.
func (s *Service) List(ctx context.Context, ident hub.Identity, cluster, ns string) ([]Release, error) {
	hc, err := s.reader(ctx, cluster, ident)
	if err != nil {
		return nil, err
	}
	out, err := hc.list(ns)
	if apierrors.IsForbidden(err) && ident.ClusterRole(cluster) != "" {
		if hc, err = s.client(ctx, cluster, s.serviceIdentity(cluster), s.log); err != nil {
			return nil, err
		}
		out, err = hc.list(ns)
		for i := range out {
			out[i].Notes = ""
		}
	}
	return out, err
}

// History returns a release's revisions, oldest first.
func (s *Service) History(ctx context.Context, ident hub.Identity, cluster, ns, name string) ([]Release, error) {
	hc, err := s.reader(ctx, cluster, ident)
	if err != nil {
		return nil, err
	}
	rels, err := hc.history(ns, name)
	if apierrors.IsForbidden(err) && ident.ClusterRole(cluster) != "" { // a viewer: the summary (see List)
		if hc, err = s.client(ctx, cluster, s.serviceIdentity(cluster), s.log); err != nil {
			return nil, err
		}
		rels, err = hc.history(ns, name)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Release, 0, len(rels))
	for _, r := range rels {
		rj := releaseJSON(r)
		rj.Notes = ""
		out = append(out, rj)
	}
	return out, nil
}

// Details are one revision of a release with its values and manifest.
type Details struct {
	Release
	// Values are the values given at install or upgrade (not the chart's
	// defaults).
	Values map[string]any `json:"values"`
	// Manifest is what Helm applied, hooks included.
	Manifest string `json:"manifest"`
}

// Get returns revision rev (0: the latest) of a release.
func (s *Service) Get(ctx context.Context, ident hub.Identity, cluster, ns, name string, rev int) (Details, error) {
	hc, err := s.reader(ctx, cluster, ident)
	if err != nil {
		return Details{}, err
	}
	r, err := hc.get(ns, name, rev)
	if err != nil {
		return Details{}, err
	}
	vals := r.Config
	if vals == nil {
		vals = map[string]any{}
	}
	return Details{Release: releaseJSON(r), Values: vals, Manifest: manifestWithHooks(r)}, nil
}

func (s *Service) reader(ctx context.Context, cluster string, ident hub.Identity) (helmClient, error) {
	if !s.hub.Connected(cluster) && ident.ClusterRole(cluster) != "" {
		return helmClient{}, fmt.Errorf("cluster %s: %w", cluster, ErrNotConnected)
	}
	return s.client(ctx, cluster, ident, s.log)
}

// Operation returns operation id if ident may see its cluster.
func (s *Service) Operation(ctx context.Context, ident hub.Identity, id string) (store.Operation, error) {
	op, err := s.store.GetOperation(ctx, id)
	if err != nil {
		return store.Operation{}, err
	}
	if ident.ClusterRole(op.ClusterID) == "" {
		return store.Operation{}, fmt.Errorf("operation %q: %w", id, store.ErrNotFound)
	}
	return op, nil
}

// Operations lists a cluster's operations, newest first (of one release
// if ns and name are set).
func (s *Service) Operations(ctx context.Context, ident hub.Identity, cluster, ns, name string) ([]store.Operation, error) {
	if ident.ClusterRole(cluster) == "" {
		return nil, fmt.Errorf("cluster %q: %w", cluster, hub.ErrNoAccess)
	}
	return s.store.ListOperations(ctx, store.OperationQuery{ClusterID: cluster, Namespace: ns, Release: name})
}

// manifestWithHooks is a release's manifest followed by its hooks'.
func manifestWithHooks(rel *release.Release) string {
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "\n---\n# Source: %s (hook: %v)\n%s", h.Path, h.Events, strings.TrimSpace(h.Manifest))
	}
	return b.String()
}

// diff is a unified diff from a to b.
func diff(aName, bName, a, b string) string {
	out, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b), FromFile: aName, ToFile: bName, Context: 3,
	})
	if err != nil {
		return err.Error()
	}
	return out
}

// Wait waits until operation id is finished and returns it.
func (s *Service) Wait(ctx context.Context, id string) (store.Operation, error) {
	for {
		op, err := s.store.GetOperation(ctx, id)
		if err != nil || op.State.Finished() {
			return op, err
		}
		select {
		case <-ctx.Done():
			return op, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ErrReleaseNotFound is Helm's error for a release that does not exist.
var ErrReleaseNotFound = driver.ErrReleaseNotFound

// Chart loads a chart of the App Catalog (Config.Charts).
func (s *Service) Chart(ctx context.Context, ref ChartRef) (*chart.Chart, error) {
	if s.cfg.Charts == nil {
		return nil, errors.New("apps: this hub has no App Catalog")
	}
	return s.cfg.Charts.Chart(ctx, ref)
}
