package argocd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
)

// Hub is what the registrar needs from the hub; *hub.Hub has it.
type Hub interface {
	// Subscribe gives the cluster lifecycle events.
	Subscribe(buffer int) (<-chan lifecycle.Event, func())
	// Store is read for clusters, tokens and grants.
	Store() store.Store
	// CreateToken, RevokeToken, CreateGrant and DeleteGrant manage Argo
	// CD's credentials, so that the hub's token cache follows at once.
	CreateToken(ctx context.Context, nt store.NewToken) (string, store.Token, error)
	RevokeToken(ctx context.Context, id string) error
	CreateGrant(ctx context.Context, g store.NewGrant) (store.Grant, error)
	DeleteGrant(ctx context.Context, id string) error
	// ClusterConfig and ServiceIdentity reach an instance that runs in a
	// managed cluster, through its tunnel.
	ClusterConfig(id string, ident hub.Identity) (*rest.Config, error)
	ServiceIdentity(name string, role store.ClusterRole, clusters ...string) hub.Identity
	// ExternalURL is the hub's URL, the base of each Secret's server.
	ExternalURL() string
	// RecordAudit records a registration and an unregistration in the
	// hub's audit log, which outlives the cluster.
	RecordAudit(e store.AuditEvent)
}

// Config configures a Registrar.
type Config struct {
	// Hub is the hub whose clusters are registered. Required.
	Hub Hub
	// Instances are the Argo CD installations; at least one. Defaults are
	// filled in as ValidateInstances does.
	Instances []Instance
	// CAPEM is the CA of the hub's serving certificate, put in every
	// Secret. Empty when the certificate is publicly trusted.
	CAPEM []byte
	// Grant is the role Argo CD's identity gets in each registered
	// cluster. Empty means store.ClusterAdmin.
	Grant store.ClusterRole
	// TokenTTL is the lifetime of each registration's token; it is
	// replaced when less than a third of it is left. Zero means
	// DefaultTokenTTL.
	TokenTTL time.Duration
	// Resync is how often every registration is checked. Zero means
	// DefaultResync.
	Resync time.Duration
	// Workers is the number of registrations reconciled at once per
	// instance. Zero means 4.
	Workers int
	// Registerer receives the registrar's metrics. Nil means none.
	Registerer prometheus.Registerer
	// Logger receives structured logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Registrar keeps the Argo CD cluster Secrets of every instance true.
// Create it with New and call Run once.
type Registrar struct {
	cfg       Config
	hub       Hub
	store     store.Store
	user      string // service:argocd
	logger    *slog.Logger
	metrics   *metrics
	instances []*instance
}

// instance is one Argo CD installation at run time.
type instance struct {
	Instance
	group    string // the hub group of this instance's tokens
	client   kubernetes.Interface
	dynamic  dynamic.Interface
	metadata metadata.Interface
	queue    workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	status map[string]*Registration // guarded by mu, by cluster ID
	tokens map[string]string        // guarded by mu: the token last written, by cluster ID
}

// Registration is where one cluster's registration in one instance
// stands.
type Registration struct {
	Instance string `json:"instance"`
	// Namespace and Secret locate the cluster Secret.
	Namespace string `json:"namespace"`
	Secret    string `json:"secret"`
	// URL is the instance's UI, if configured.
	URL string `json:"url,omitempty"`
	// Server is the cluster's server in Argo CD: the hub's proxy URL.
	Server string `json:"server"`
	// Registered says whether the Secret is in place.
	Registered bool `json:"registered"`
	// Since is when the Secret was created.
	Since time.Time `json:"since,omitzero"`
	// LastReconcile is when the registration was last checked.
	LastReconcile time.Time `json:"lastReconcile,omitzero"`
	// TokenExpiresAt is when the Secret's token expires; it is replaced
	// well before.
	TokenExpiresAt time.Time `json:"tokenExpiresAt,omitzero"`
	// Error is the last reconcile's error, empty after a success.
	Error string `json:"error,omitempty"`
	// Reason says why the cluster is not registered, when it is not.
	Reason string `json:"reason,omitempty"`

	uid             types.UID // of the Secret last applied
	resourceVersion string
}

// New validates cfg and connects to each instance's API (lazily: nothing
// is requested before Run).
func New(cfg Config) (*Registrar, error) {
	if cfg.Hub == nil {
		return nil, errors.New("argocd: Hub is required")
	}
	if len(cfg.Instances) == 0 {
		return nil, errNoInstances
	}
	insts, err := ValidateInstances(cfg.Instances)
	if err != nil {
		return nil, fmt.Errorf("argocd: %w", err)
	}
	cfg.Instances = insts
	if cfg.Grant == "" {
		cfg.Grant = store.ClusterAdmin
	}
	if !cfg.Grant.Valid() {
		return nil, fmt.Errorf("argocd: grant %q: want admin, edit or view", cfg.Grant)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Resync == 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registrar{
		cfg: cfg, hub: cfg.Hub, store: cfg.Hub.Store(), logger: cfg.Logger,
		user: store.ServiceUserPrefix + ServiceName,
	}
	if r.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	for _, in := range insts {
		rc, err := r.restConfig(in)
		if err != nil {
			return nil, fmt.Errorf("argocd: instance %q: %w", in.Name, err)
		}
		if rc.QPS == 0 {
			// client-go's default (5/s) would take minutes for a
			// thousand clusters.
			rc.QPS, rc.Burst = DefaultQPS, 2*DefaultQPS
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("argocd: instance %q: %w", in.Name, err)
		}
		dc, err := dynamic.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("argocd: instance %q: %w", in.Name, err)
		}
		mc, err := metadata.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("argocd: instance %q: %w", in.Name, err)
		}
		r.instances = append(r.instances, &instance{
			Instance: in, group: "eco:argocd:" + in.Name, client: cs, dynamic: dc, metadata: mc,
			status: map[string]*Registration{}, tokens: map[string]string{},
		})
	}
	return r, nil
}

// restConfig returns how the hub reaches in's Kubernetes API.
func (r *Registrar) restConfig(in Instance) (*rest.Config, error) {
	switch {
	case in.Kubeconfig != "":
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: in.Kubeconfig}
		return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: in.Context}).ClientConfig()
	case in.InCluster:
		return rest.InClusterConfig()
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := r.store.GetCluster(ctx, in.Cluster)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			c, err = r.store.GetClusterByName(ctx, in.Cluster)
		}
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", in.Cluster, err)
		}
		return r.hub.ClusterConfig(c.ID, r.hub.ServiceIdentity(ServiceName+"-registrar", store.ClusterAdmin, c.ID))
	}
}

// Run reconciles until ctx ends, then stops every goroutine it started.
func (r *Registrar) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, unsubscribe := r.hub.Subscribe(1024)
	defer unsubscribe()

	var wg sync.WaitGroup
	var factories []metadatainformer.SharedInformerFactory
	for _, in := range r.instances {
		in.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "argocd-" + in.Name})
	}
	defer func() {
		for _, in := range r.instances {
			in.queue.ShutDown()
		}
		cancel()
		wg.Wait()
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	for _, in := range r.instances {
		// Watch the hub's own Secrets, their metadata only (no token is
		// cached): one edited or deleted by hand is reconciled at once.
		f := metadatainformer.NewFilteredSharedInformerFactory(in.metadata, r.cfg.Resync, in.Namespace,
			func(o *metav1.ListOptions) {
				o.LabelSelector = LabelManagedBy + "=" + ManagedBy + "," + LabelInstance + "=" + in.Name
			})
		enqueue := func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := obj.(metav1.Object); ok && m.GetLabels()[LabelClusterID] != "" {
				in.queue.Add(m.GetLabels()[LabelClusterID])
			}
		}
		if _, err := f.ForResource(corev1.SchemeGroupVersion.WithResource("secrets")).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj any) { enqueue(obj) },
			DeleteFunc: enqueue,
		}); err != nil {
			return fmt.Errorf("argocd: instance %q: watching Secrets: %w", in.Name, err)
		}
		f.Start(ctx.Done())
		factories = append(factories, f)
		for range r.cfg.Workers {
			wg.Add(1)
			go func() { // owned: ends when the queue shuts down
				defer wg.Done()
				for r.processNext(ctx, in) {
				}
			}()
		}
	}

	r.resync(ctx)
	tick := time.NewTicker(r.cfg.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				return nil
			}
			if e.Kind == lifecycle.Lagged {
				r.resync(ctx)
				continue
			}
			r.logger.Debug("lifecycle event", "kind", e.Kind, "cluster", e.ClusterID)
			for _, in := range r.instances {
				in.queue.Add(e.ClusterID)
			}
		case <-tick.C:
			r.resync(ctx)
		}
	}
}

// resync queues every cluster of the hub and every cluster an instance
// has a Secret for (which may be gone from the hub).
func (r *Registrar) resync(ctx context.Context) {
	var ids []string
	for offset := 0; ; offset += store.MaxPageSize {
		p, err := r.store.ListClusters(ctx, store.ListOptions{Limit: store.MaxPageSize, Offset: offset, SortBy: store.SortByCreated})
		if err != nil {
			r.logger.Warn("resync: listing clusters", "err", err)
			break
		}
		for _, c := range p.Clusters {
			ids = append(ids, c.ID)
		}
		if len(p.Clusters) < store.MaxPageSize {
			break
		}
	}
	for _, in := range r.instances {
		for _, id := range ids {
			in.queue.Add(id)
		}
		list, err := in.client.CoreV1().Secrets(in.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: LabelManagedBy + "=" + ManagedBy + "," + LabelInstance + "=" + in.Name,
		})
		if err != nil {
			r.logger.Warn("resync: listing Secrets", "instance", in.Name, "err", err)
			r.metrics.instanceUp.WithLabelValues(in.Name).Set(0)
			continue
		}
		r.metrics.instanceUp.WithLabelValues(in.Name).Set(1)
		for _, s := range list.Items {
			if id := s.Labels[LabelClusterID]; id != "" && !slices.Contains(ids, id) {
				in.queue.Add(id)
			}
		}
	}
}

func (r *Registrar) processNext(ctx context.Context, in *instance) bool {
	id, quit := in.queue.Get()
	if quit {
		return false
	}
	defer in.queue.Done(id)
	start := r.cfg.Now()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := r.reconcile(rctx, in, id)
	cancel()
	r.metrics.duration.WithLabelValues(in.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		r.metrics.reconciles.WithLabelValues(in.Name, "error").Inc()
		r.setStatus(in, id, func(s *Registration) { s.Error = err.Error(); s.LastReconcile = start })
		r.logger.Warn("reconciling Argo CD registration; will retry", "instance", in.Name, "cluster", id,
			"retries", in.queue.NumRequeues(id), "err", err)
		if ctx.Err() == nil {
			in.queue.AddRateLimited(id)
		}
		return true
	}
	r.metrics.reconciles.WithLabelValues(in.Name, "ok").Inc()
	in.queue.Forget(id)
	return true
}

// Status returns cluster id's registrations, one per instance that has
// considered it, ordered by instance name.
func (r *Registrar) Status(id string) []Registration {
	var out []Registration
	for _, in := range r.instances {
		in.mu.Lock()
		if s, ok := in.status[id]; ok {
			out = append(out, *s)
		}
		in.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}

// setStatus changes cluster id's registration in in.
func (r *Registrar) setStatus(in *instance, id string, f func(*Registration)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	s, ok := in.status[id]
	if !ok {
		s = &Registration{Instance: in.Name, Namespace: in.Namespace, Secret: SecretName(id), URL: in.URL,
			Server: ServerURL(r.hub.ExternalURL(), id)}
		in.status[id] = s
	}
	f(s)
	n := 0
	for _, s := range in.status {
		if s.Registered {
			n++
		}
	}
	r.metrics.registered.WithLabelValues(in.Name).Set(float64(n))
}

// reconcile makes cluster id's Secret in in what the hub's record says.
func (r *Registrar) reconcile(ctx context.Context, in *instance, id string) error {
	c, err := r.store.GetCluster(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := r.unregister(ctx, in, id, "the cluster was deleted from the hub", false); err != nil {
			return err
		}
		in.mu.Lock()
		delete(in.status, id) // nothing left to show, nor to remember
		in.mu.Unlock()
		return nil
	case err != nil:
		return fmt.Errorf("reading cluster: %w", err)
	case c.Status.State == store.StateRemoved:
		return r.unregister(ctx, in, id, "the cluster was removed (its agent's namespace was deleted)", true)
	case !in.Selector.Matches(c):
		return r.unregister(ctx, in, id, "the instance's selector does not pick the cluster", false)
	case c.Fingerprint == "":
		// Registered once it first connects; nothing to undo before.
		r.setStatus(in, id, func(s *Registration) {
			s.Reason, s.Error, s.LastReconcile = "waiting for the cluster's first connection", "", r.cfg.Now()
		})
		return nil
	}
	if err := r.ensureGrant(ctx, id); err != nil {
		return err
	}
	secrets := in.client.CoreV1().Secrets(in.Namespace)
	// The token this registrar last wrote saves reading the Secret back:
	// one request per cluster per resync instead of two. Without it (a
	// restart), the Secret says which token Argo CD holds.
	in.mu.Lock()
	old := in.tokens[id]
	in.mu.Unlock()
	if old == "" {
		current, err := secrets.Get(ctx, SecretName(id), metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading Secret %s/%s: %w", in.Namespace, SecretName(id), err)
		}
		if err == nil {
			old = tokenOf(current)
		}
	}
	token, t, err := r.token(ctx, in, id, old)
	if err != nil {
		return err
	}
	reg := registration{
		Cluster: c, Instance: in.Instance, Server: ServerURL(r.hub.ExternalURL(), id),
		Token: token, TokenID: t.ID, ExpiresAt: t.ExpiresAt, CAPEM: r.cfg.CAPEM,
	}
	apply, err := reg.secretApply()
	if err != nil {
		return err
	}
	out, err := secrets.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("applying Secret %s/%s: %w", in.Namespace, SecretName(id), err)
	}
	in.mu.Lock()
	in.tokens[id] = token
	prev := in.status[id]
	in.mu.Unlock()
	switch {
	case prev == nil || !prev.Registered || prev.uid != out.UID:
		r.logger.Info("cluster registered in Argo CD", "instance", in.Name, "cluster", id, "name", c.Name,
			"secret", in.Namespace+"/"+out.Name, "token", t.ID)
		r.audit("argocd-register", in, id, "instance "+in.Name)
	case prev.resourceVersion != out.ResourceVersion:
		r.logger.Info("Argo CD registration updated", "instance", in.Name, "cluster", id, "name", c.Name, "token", t.ID)
	}
	r.setStatus(in, id, func(s *Registration) {
		s.Registered, s.Since, s.TokenExpiresAt = true, out.CreationTimestamp.Time, t.ExpiresAt
		s.Error, s.Reason, s.LastReconcile = "", "", r.cfg.Now()
		s.uid, s.resourceVersion = out.UID, out.ResourceVersion
	})
	return nil
}

// token returns the token to put in cluster id's Secret: old (the one there) if
// it is a live token of this instance for this cluster with more than a
// third of its lifetime left, else a new one. A token that is replaced
// because it is getting old is left to expire, so Argo CD, which reads
// the Secret again within moments, never holds a token the hub refuses.
func (r *Registrar) token(ctx context.Context, in *instance, id, old string) (string, store.Token, error) {
	now := r.cfg.Now()
	if old != "" {
		t, err := r.store.TokenByHash(ctx, []byte(install.HashToken(old)))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return "", store.Token{}, fmt.Errorf("looking up the Secret's token: %w", err)
		case !r.ours(in, id, t):
			// Not this registration's: leave it alone, use our own.
		case t.ExpiresAt.Sub(now) > r.cfg.TokenTTL/3:
			return old, t, nil
		default:
			r.metrics.rotations.WithLabelValues(in.Name).Inc()
			r.logger.Info("rotating Argo CD token before it expires", "instance", in.Name, "cluster", id, "token", t.ID, "expires", t.ExpiresAt)
		}
	}
	secret, t, err := r.hub.CreateToken(ctx, store.NewToken{
		Name: r.user, Role: store.RoleMember, Groups: []string{in.group},
		ExpiresAt: now.Add(r.cfg.TokenTTL), Scope: store.TokenScope{Clusters: []string{id}},
	})
	if err != nil {
		return "", store.Token{}, fmt.Errorf("creating Argo CD's token: %w", err)
	}
	return secret, t, nil
}

// ours reports whether t is a token of in's registration of cluster id.
func (r *Registrar) ours(in *instance, id string, t store.Token) bool {
	return t.Name == r.user && slices.Contains(t.Groups, in.group) && slices.Equal(t.Scope.Clusters, []string{id})
}

// ensureGrant gives service:argocd the configured role in cluster id.
func (r *Registrar) ensureGrant(ctx context.Context, id string) error {
	grants, err := r.store.ListGrants(ctx, id)
	if err != nil {
		return fmt.Errorf("reading grants: %w", err)
	}
	for _, g := range grants {
		if g.Kind == store.SubjectUser && g.Subject == r.user {
			if g.Role == r.cfg.Grant {
				return nil
			}
			if err := r.hub.DeleteGrant(ctx, g.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("replacing Argo CD's grant: %w", err)
			}
		}
	}
	_, err = r.hub.CreateGrant(ctx, store.NewGrant{Kind: store.SubjectUser, Subject: r.user, ClusterID: id, Role: r.cfg.Grant})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("granting Argo CD %s in the cluster: %w", r.cfg.Grant, err)
	}
	return nil
}

// unregister revokes every token of in's registration of cluster id, then
// deletes its Secret from in; with dropGrant, also Argo CD's grant.
func (r *Registrar) unregister(ctx context.Context, in *instance, id, why string, dropGrant bool) error {
	secrets := in.client.CoreV1().Secrets(in.Namespace)
	current, err := secrets.Get(ctx, SecretName(id), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		current = nil
	case err != nil:
		return fmt.Errorf("reading Secret %s/%s: %w", in.Namespace, SecretName(id), err)
	case current.Labels[LabelManagedBy] != ManagedBy, current.Labels[LabelInstance] != in.Name:
		// Not ours: never delete a user's Secret, nor another
		// instance's (ValidateInstances refuses two instances in one
		// namespace, but two kubeconfigs may name one cluster).
		current = nil
	}
	in.mu.Lock()
	st, known := in.status[id]
	settled := known && !st.Registered && st.Reason == why && st.Error == ""
	in.mu.Unlock()
	if current == nil && !known {
		// Never registered here: say why, for the cluster's Argo CD tab.
		r.setStatus(in, id, func(s *Registration) {
			s.Reason, s.Error, s.LastReconcile = why, "", r.cfg.Now()
		})
		return nil
	}
	if current == nil && settled {
		return nil // unregistered already
	}
	// Revoke first: once the Secret is gone, its token is dead too.
	in.mu.Lock()
	delete(in.tokens, id)
	in.mu.Unlock()
	if err := r.revokeTokens(ctx, in, id); err != nil {
		return err
	}
	if current != nil {
		uid := current.UID
		err := secrets.Delete(ctx, current.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Secret %s/%s: %w", in.Namespace, current.Name, err)
		}
		apps := r.applicationsFor(ctx, in, id)
		r.logger.Info("cluster unregistered from Argo CD", "instance", in.Name, "cluster", id, "why", why,
			"applications_left", apps)
		note := "instance " + in.Name + ": " + why
		if len(apps) > 0 {
			note += "; Applications still pointing at it: " + strings.Join(apps, ", ")
		}
		r.audit("argocd-unregister", in, id, note)
	}
	if dropGrant {
		grants, err := r.store.ListGrants(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("reading grants: %w", err)
		}
		for _, g := range grants {
			if g.Kind == store.SubjectUser && g.Subject == r.user {
				if err := r.hub.DeleteGrant(ctx, g.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("deleting Argo CD's grant: %w", err)
				}
			}
		}
	}
	r.setStatus(in, id, func(s *Registration) {
		s.Registered, s.Since, s.TokenExpiresAt = false, time.Time{}, time.Time{}
		s.Reason, s.Error, s.LastReconcile = why, "", r.cfg.Now()
	})
	return nil
}

// audit records verb on cluster id's Secret in instance in, with note
// (cut to the audit log's bound) as the event's path.
func (r *Registrar) audit(verb string, in *instance, id, note string) {
	r.hub.RecordAudit(store.AuditEvent{
		At: r.cfg.Now(), User: "service:" + ServiceName + "-registrar", Source: "argocd", Verb: verb, ClusterID: id,
		Namespace: in.Namespace, Name: SecretName(id), Path: note, Code: http.StatusOK,
	})
}

// revokeTokens revokes every live token of in's registration of cluster
// id.
func (r *Registrar) revokeTokens(ctx context.Context, in *instance, id string) error {
	tokens, err := r.store.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("listing tokens: %w", err)
	}
	now := r.cfg.Now()
	for _, t := range tokens {
		if t.Revoked() || t.Expired(now) || !r.ours(in, id, t) {
			continue
		}
		if err := r.hub.RevokeToken(ctx, t.ID); err != nil {
			return fmt.Errorf("revoking Argo CD's token %s: %w", t.ID, err)
		}
		r.logger.Info("Argo CD token revoked", "instance", in.Name, "cluster", id, "token", t.ID)
	}
	return nil
}
