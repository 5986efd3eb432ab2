package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/hub/saproof"
	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// Defaults of the identity proof.
const (
	// DefaultIdentityRefresh is how often the hub fetches, through each
	// connected agent whose cluster's keys are pinned, the keys the
	// cluster serves, to follow the cluster's own key rotation.
	DefaultIdentityRefresh = 10 * time.Minute
	// refusedIdentity is all an agent that failed the proof is told.
	refusedIdentity = "agent identity not proven"
	// noteEvery spaces the status-history notes of refused takeovers of
	// one cluster, so a flood of them cannot flush the history.
	noteEvery = time.Minute
	// keysFetchTimeout bounds one fetch of a cluster's keys.
	keysFetchTimeout = 10 * time.Second
)

// Status reasons of the identity proof, readable by every hub user: they
// name no pinned or claimed value.
const (
	reasonNotProven        = "agent identity not proven: an administrator finds the cause at GET /api/v1/clusters/{id}/identity"
	reasonNoToken          = "agent identity not proven: the agent sent no ServiceAccount token (re-apply the install YAML to update it)"
	reasonAwaitingApproval = "agent identity awaiting an administrator's approval (POST /api/v1/clusters/{id}/identity/approve)"
	reasonApproved         = "agent identity approved; waiting for the agent to connect again"
	noteTakeoverRefused    = "refused an agent whose identity is not proven while the cluster's agent is connected"
)

// identityMetrics count the proof's outcomes.
type identityMetrics struct {
	refusals  *prometheus.CounterVec // by saproof reason
	takeovers prometheus.Counter
	pins      *prometheus.CounterVec // pinned, awaiting-approval, rotated
}

func newIdentityMetrics(reg *prometheus.Registry) (*identityMetrics, error) {
	m := &identityMetrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_agent_identity_refusals_total",
			Help: "Agents refused because they did not prove their cluster identity, by reason (missing, malformed, unknown-key, signature, issuer, audience, expired, not-yet-valid, lifetime, subject, keys, awaiting-approval).",
		}, []string{"reason"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eco_hub_agent_takeover_refusals_total",
			Help: "Agents refused for want of a proven identity while their cluster's agent was connected: attempted takeovers of a live tunnel.",
		}),
		pins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_agent_identity_pins_total",
			Help: "Cluster keys pinned on first use (pinned, awaiting-approval) or updated from a proven agent (rotated).",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.refusals, m.takeovers, m.pins} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}

// identityFailure is the last failed proof of a cluster, for its
// administrators.
type identityFailure struct {
	At             time.Time
	Reason         saproof.Reason
	Detail         string
	WhileConnected bool
}

// identityState is the hub's in-memory bookkeeping of proofs.
type identityState struct {
	mu       sync.Mutex
	failures map[string]identityFailure // last failure per cluster
	noted    map[string]time.Time       // last takeover note per cluster
}

// expectedClaims is what every agent token must say, but the issuer.
func (h *Hub) expectedClaims() saproof.Expect {
	ns := h.cfg.AgentNamespace
	if ns == "" {
		ns = install.DefaultNamespace
	}
	return saproof.Expect{Audience: h.cfg.ExternalURL, Namespace: ns, ServiceAccount: install.AgentName}
}

// refuseIdentity refuses an agent that failed the proof: the agent learns
// nothing but refusedIdentity; the logs and the admin-only identity API
// say what failed; the status says the identity is not proven, or, while
// the cluster's own agent is connected, the history notes the attempted
// takeover (at most once a minute) and the status stays as it is.
func (h *Hub) refuseIdentity(ctx context.Context, c store.Cluster, err error) error {
	reason := saproof.ReasonOf(err)
	detail := err.Error()
	var pe *saproof.Error
	if errors.As(err, &pe) {
		detail = pe.Detail
	}
	live := h.connected(c.ID)
	now := h.cfg.Now()
	h.metrics.agentAuthFailures.WithLabelValues("identity").Inc()
	h.idMetrics.refusals.WithLabelValues(string(reason)).Inc()
	h.logger.Warn("agent refused: identity not proven", "cluster", c.ID, "reason", reason, "detail", detail, "clusterAgentConnected", live)
	h.ids.mu.Lock()
	h.ids.failures[c.ID] = identityFailure{At: now, Reason: reason, Detail: detail, WhileConnected: live}
	note := false
	if live {
		if last, ok := h.ids.noted[c.ID]; !ok || now.Sub(last) >= noteEvery {
			h.ids.noted[c.ID] = now
			note = true
		}
	}
	h.ids.mu.Unlock()
	switch {
	case live:
		h.idMetrics.takeovers.Inc()
		if note {
			h.status.note(c.ID, noteTakeoverRefused)
		}
	case reason == saproof.ReasonMissing:
		h.status.record(c.ID, store.StatusUpdate{State: store.StateFailing, Reason: reasonNoToken})
	default:
		h.status.record(c.ID, store.StatusUpdate{State: store.StateFailing, Reason: reasonNotProven})
	}
	msg := refusedIdentity
	if reason == saproof.ReasonMissing {
		msg += ": the agent sent no ServiceAccount token; re-apply the install YAML"
	}
	return &tunnel.RejectError{Reason: msg}
}

// awaitingApproval refuses an agent while the cluster's first-use pin
// awaits an administrator's approval.
func (h *Hub) awaitingApproval(ctx context.Context, c store.Cluster) error {
	h.metrics.agentAuthFailures.WithLabelValues("identity").Inc()
	h.idMetrics.refusals.WithLabelValues("awaiting-approval").Inc()
	if !h.connected(c.ID) {
		h.status.record(c.ID, store.StatusUpdate{State: store.StateFailing, Reason: reasonAwaitingApproval})
	}
	return &tunnel.RejectError{Reason: refusedIdentity}
}

// identityProven records what a proven agent tells: its cluster's
// kube-system UID, kept as information (the first one seen) and no longer
// a trust anchor.
func (h *Hub) identityProven(ctx context.Context, c store.Cluster, hello tunnel.Hello, how string) {
	h.logger.Debug("agent identity proven", "cluster", c.ID, "how", how)
	if hello.Fingerprint == "" || c.Fingerprint == hello.Fingerprint {
		return
	}
	err := h.store.PinFingerprint(ctx, c.ID, hello.Fingerprint)
	switch {
	case errors.Is(err, store.ErrConflict):
		h.logger.Info("a proven agent reports another kube-system UID than the first one seen (the namespace was re-created?)",
			"cluster", c.ID, "first", c.Fingerprint, "now", hello.Fingerprint)
	case err != nil:
		h.logger.Warn("recording the cluster fingerprint", "cluster", c.ID, "err", err)
	}
}

// refreshPinnedKeys fetches the keys cluster id serves through its live,
// proven session and, if they changed, pins them in place of the old ones:
// the cluster rotated its service-account keys. It returns the keys now
// pinned, or nil if the cluster's keys are not pinned.
func (h *Hub) refreshPinnedKeys(ctx context.Context, id string) (*jose.JSONWebKeySet, error) {
	ident, err := h.store.ClusterIdentity(ctx, id)
	if err != nil || ident.State != store.IdentityPinned {
		return nil, err
	}
	body, err := fetchClusterJWKS(ctx, func(ctx context.Context) (net.Conn, error) { return h.tunnels.DialContext(ctx, id) })
	if err != nil {
		return nil, err
	}
	keys, err := saproof.ParseJWKS(body)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(body, ident.JWKS) {
		return keys, nil
	}
	if err := h.store.UpdateIdentityKeys(ctx, id, ident.Issuer, body); err != nil {
		return nil, err
	}
	h.idMetrics.pins.WithLabelValues("rotated").Inc()
	h.logger.Info("cluster keys updated from its proven agent (the cluster rotated its keys)", "cluster", id, "kids", saproof.KeyIDs(keys))
	return keys, nil
}

// refreshLoop follows the key rotation of every connected cluster whose
// keys are pinned, every interval, until ctx ends.
func (h *Hub) refreshLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range h.tunnels.Sessions() {
			if ctx.Err() != nil {
				return
			}
			fctx, cancel := context.WithTimeout(ctx, keysFetchTimeout)
			if _, err := h.refreshPinnedKeys(fctx, s.ClusterID); err != nil && ctx.Err() == nil {
				h.logger.Warn("cannot refresh the cluster's keys through its agent", "cluster", s.ClusterID, "err", err)
			}
			cancel()
		}
	}
}

// fetchClusterJWKS fetches the keys a cluster's API server serves at
// install.IdentityKeysPath, over a stream dial opens to its agent. The
// request names no user: the agent sends it as its own ServiceAccount,
// which the API server's default system:service-account-issuer-discovery
// binding allows (see agent.Forwarder).
func fetchClusterJWKS(ctx context.Context, dial func(context.Context) (net.Conn, error)) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, keysFetchTimeout)
	defer cancel()
	tr := &http.Transport{
		DialContext:            func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://cluster"+install.IdentityKeysPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", install.IdentityKeysPath, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", install.IdentityKeysPath, resp.Status, bytes.TrimSpace(b))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, saproof.MaxJWKSLen+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", install.IdentityKeysPath, err)
	}
	if len(b) > saproof.MaxJWKSLen {
		return nil, fmt.Errorf("GET %s: more than %d bytes", install.IdentityKeysPath, saproof.MaxJWKSLen)
	}
	return b, nil
}
