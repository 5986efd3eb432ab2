package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/store"
)

// This file is what other hub features (the web UI, dashboards, Helm,
// Argo CD) build on: authentication, the store, and client-go access to a
// cluster through its tunnel as a hub user.

// ErrUnauthenticated is returned by AuthenticateToken for a missing,
// unknown or revoked token.
var ErrUnauthenticated = errUnauthenticated

// AuthenticateToken resolves a hub API token to its identity.
func (h *Hub) AuthenticateToken(ctx context.Context, token string) (Identity, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return Identity{}, err
	}
	r.Header.Set("Authorization", "Bearer "+token)
	return h.authenticate(r)
}

// IdentityFrom returns the identity a hub handler authenticated.
func IdentityFrom(ctx context.Context) (Identity, bool) { return identityFrom(ctx) }

// WithIdentity returns ctx carrying id, for handlers mounted with Mount
// that authenticate in their own way (e.g. a session cookie).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Store returns the hub's store.
func (h *Hub) Store() store.Store { return h.store }

// Connected reports whether cluster id's agent has a live tunnel.
func (h *Hub) Connected(id string) bool { return h.connected(id) }

// ExternalURL is the URL the hub is reached at.
func (h *Hub) ExternalURL() string { return h.cfg.ExternalURL }

// Mount serves handler for pattern (http.ServeMux syntax) beside the API,
// e.g. the web UI at "/". Call it before serving.
func (h *Hub) Mount(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

// ErrNoAccess is returned by ClusterConfig for a cluster the identity was
// not granted. Show it as "not found": whether the cluster exists is not
// the user's business.
var ErrNoAccess = errors.New("no such cluster")

// KubeUser returns the Kubernetes user name the hub impersonates for ident.
func (h *Hub) KubeUser(ident Identity) string { return h.cfg.UserPrefix + ident.Name }

// ClusterConfig returns a client-go configuration that reaches cluster id's
// API server through its tunnel, impersonating ident exactly as the proxy
// does (its user name with the hub's prefix, the group of its role in that
// cluster), so the cluster's RBAC applies to whatever it is used for. It
// returns ErrNoAccess if ident has no role in cluster id. A request to a
// cluster without a tunnel fails with an error wrapping
// tunnel.ErrNoSession. Every client built from it shares the proxy's
// transport and its pool of idle tunnel streams, so a dashboard page reuses
// streams (and the agent's API-server connections behind them) instead of
// opening new ones; there is nothing to close when done.
func (h *Hub) ClusterConfig(id string, ident Identity) (*rest.Config, error) {
	role := ident.ClusterRole(id)
	if role == "" {
		return nil, fmt.Errorf("cluster %q: %w", id, ErrNoAccess)
	}
	return &rest.Config{
		Host:      "http://" + id,
		Transport: &featureTransport{h: h, ident: ident, cluster: id, source: "hub"},
		Impersonate: rest.ImpersonationConfig{
			UserName: h.KubeUser(ident),
			Groups:   []string{KubeGroup(role)},
		},
		UserAgent: "eco-hub/" + h.cfg.Version,
		QPS:       50,
		Burst:     100,
	}, nil
}

// CreateGrant records a grant; this hub applies it from now on, other
// replicas within tokenCacheTTL.
func (h *Hub) CreateGrant(ctx context.Context, g store.NewGrant) (store.Grant, error) {
	out, err := h.store.CreateGrant(ctx, g)
	if err != nil {
		return out, err
	}
	h.tokens.clear()
	return out, nil
}

// DeleteGrant deletes grant id; this hub applies it from now on, other
// replicas within tokenCacheTTL.
func (h *Hub) DeleteGrant(ctx context.Context, id string) error {
	if err := h.store.DeleteGrant(ctx, id); err != nil {
		return err
	}
	h.tokens.clear()
	return nil
}

// featureTransport is the transport of ClusterConfig's clients: the same
// access chain as the proxy's (docs/decisions/0013-access-seam.md), in the
// same order — limits (the user's and the cluster's caps; over one, a 429
// with Retry-After, which client-go waits out and retries), a hub request
// ID as the impersonated user extra RequestIDExtra, a retry of a request
// the agent refused unread, the tunnel transport; then metrics and an audit
// event for a request that may change the cluster. client-go's own
// impersonation wrapper has set the identity headers before it.
type featureTransport struct {
	h       *Hub
	ident   Identity
	cluster string
	source  string
}

func (t *featureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	verb := kubeVerb(req)
	release, refused := t.h.proxy.caps.acquire(t.ident.Name, t.cluster, streams(req, verb))
	if refused != "" {
		t.h.metrics.proxyRefused.WithLabelValues(refused).Inc()
		rec := httptest.NewRecorder()
		tooMany(rec, t.h.proxy.caps.limits.RetryAfter, refused, "user "+t.ident.Name)
		resp := rec.Result()
		resp.Request = req
		return resp, nil
	}
	reqID := uuid.NewString()
	out := req.Clone(req.Context()) // a RoundTripper must not change its request
	out.Header[t.h.proxy.requestIDHeader] = []string{reqID}
	start := time.Now()
	resp, err := t.h.proxy.retrying.RoundTrip(out)
	code := http.StatusBadGateway
	if err == nil {
		code = resp.StatusCode
		resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	} else {
		release()
	}
	t.h.metrics.proxyDuration.WithLabelValues(t.cluster, verb, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	if req.Method != http.MethodGet && req.Method != http.MethodHead || t.h.cfg.AuditReads {
		t.h.auditKube(req, t.source, t.ident, t.cluster, req.URL.Path, code, reqID, "")
	}
	return resp, err
}

// releasingBody gives a cap back when the response body is closed: a
// watch holds its cap for as long as it is read.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// Subscribe returns the hub's cluster lifecycle events from now on —
// imported, connected, disconnected, failing, removed, deleted — with room
// for buffer of them, and the function that ends the subscription. A hub
// feature reconciles on them and on a periodic resync; an event of kind
// lifecycle.Lagged says it missed some. See package hub/lifecycle.
func (h *Hub) Subscribe(buffer int) (<-chan lifecycle.Event, func()) {
	return h.events.Subscribe(buffer)
}

// RecordAudit adds an event to the audit log, for hub features that act
// other than through the API or a cluster client (the web UI's forms).
// It never blocks.
func (h *Hub) RecordAudit(e store.AuditEvent) { h.audit.Record(e) }

// RevokeToken revokes API token id; this hub refuses it from now on, other
// replicas within tokenCacheTTL.
func (h *Hub) RevokeToken(ctx context.Context, id string) error {
	if err := h.store.RevokeToken(ctx, id); err != nil {
		return err
	}
	h.tokens.clear()
	return nil
}

// ServicePrefix starts the hub user name of every service identity.
const ServicePrefix = "service:"

// ServiceIdentity returns the identity a hub feature acts as when it works
// in clusters on its own rather than for a signed-in user (Argo CD's
// registrations, managed add-ons): hub user "service:<name>", so clusters
// see Kubernetes user "<prefix>service:<name>" (eco:service:argocd) and
// the audit log names the feature. It has role in the given clusters, or
// in every cluster when none are given; pass it to ClusterConfig.
func (h *Hub) ServiceIdentity(name string, role store.ClusterRole, clusters ...string) Identity {
	id := Identity{Name: ServicePrefix + name, Role: store.RoleMember}
	if len(clusters) == 0 {
		id.grants = []store.Grant{{Kind: store.SubjectUser, Subject: id.Name, Role: role}}
		return id
	}
	for _, c := range clusters {
		id.grants = append(id.grants, store.Grant{Kind: store.SubjectUser, Subject: id.Name, ClusterID: c, Role: role})
	}
	return id
}
