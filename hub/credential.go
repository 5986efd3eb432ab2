package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// Agent credential rotation (docs/decisions/0012-credential-rotation.md).

// DefaultCredentialGrace is how long the previous generation of a rotated
// agent credential is still accepted when Config.CredentialGrace is zero:
// long enough for the kubelet to bring a restarted agent pod the Secret the
// agent rewrote (its volume is refreshed within about a minute and a half),
// short enough that a stolen old credential soon stops working.
const DefaultCredentialGrace = 10 * time.Minute

// Texts about rotated credentials. refusedRotated is all an agent (or
// whoever holds the YAML) learns; the status history tells admins more.
const (
	refusedRotated  = "agent credential rotated: re-apply the install YAML from the hub"
	reasonRotated   = "credential rotated: the agent presented generation %d after its grace period ended (%s); re-apply the install YAML"
	noteRotatedLive = "a connect with the rotated credential generation %d was refused while the cluster's agent is connected"
)

// errCredentialKeyGone: no secret key of the hub derives the cluster's
// current credential.
var errCredentialKeyGone = errors.New("the cluster's agent credential was derived from a secret key the hub no longer has: rotate the credential, then re-apply the install YAML")

// deriveCredential is cluster id's agent credential of generation gen,
// derived from key. Generation 0, the credential given at import, is the
// derivation of docs/decisions/0004 (without a generation), so agents
// installed before rotation existed keep theirs.
func deriveCredential(key []byte, clusterID string, gen int64) string {
	m := hmac.New(sha256.New, key)
	if gen == 0 {
		m.Write([]byte("eco agent credential\x00"))
	} else {
		// Another label, then the generation in fixed width: no input
		// of one generation (or of generation 0) is another's.
		m.Write([]byte("eco agent credential generation\x00"))
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(gen)))
	}
	m.Write([]byte(clusterID))
	return install.TokenPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// agentCredential is cluster id's generation 0 credential from the current
// secret key: what ImportCluster gives it.
func (h *Hub) agentCredential(clusterID string) string {
	return deriveCredential(h.cfg.SecretKey, clusterID, 0)
}

// currentCredential returns the credential of c's current generation,
// derived with whichever of the hub's keys (current, then previous) gives
// the stored hash; previousKey tells it was a previous one.
func (h *Hub) currentCredential(c store.Cluster) (cred string, previousKey bool, err error) {
	for i, key := range h.secretKeys() {
		cred := deriveCredential(key, c.ID, c.Credential.Generation)
		if hmac.Equal(hashSecret(cred), c.AgentCredentialHash) {
			return cred, i > 0, nil
		}
	}
	return "", false, fmt.Errorf("cluster %s: %w", c.ID, errCredentialKeyGone)
}

// secretKeys lists the current secret key, then the previous ones.
func (h *Hub) secretKeys() [][]byte {
	return append([][]byte{h.cfg.SecretKey}, h.cfg.PreviousSecretKeys...)
}

// Delivery of a rotated credential to the cluster's agent.
const (
	// DeliverySent: the agent has it over the tunnel and will acknowledge.
	DeliverySent = "sent"
	// DeliveryAgentOutdated: the connected agent cannot take a credential
	// over the tunnel; re-apply the install YAML.
	DeliveryAgentOutdated = "agent-outdated"
	// DeliveryNotConnected: no agent is connected; re-apply the install
	// YAML.
	DeliveryNotConnected = "not-connected"
	// DeliveryFailed: sending it failed (the tunnel broke); re-apply the
	// install YAML, or rotate again once the agent is back.
	DeliveryFailed = "failed"
)

// Rotation is the result of RotateCredential.
type Rotation struct {
	ClusterID  string
	Generation int64
	// PreviousValidUntil is when the previous generation stops being
	// accepted.
	PreviousValidUntil time.Time
	// Delivery is one of the Delivery constants; Message says what to do.
	Delivery string
	Message  string
}

// RotateCredential gives cluster id's agent credential its next
// generation, derived from the current secret key, and sends it to the
// agent if it is connected and able to take it. The previous generation is
// accepted for Config.CredentialGrace more.
func (h *Hub) RotateCredential(ctx context.Context, id string) (Rotation, error) {
	c, err := h.store.GetCluster(ctx, id)
	if err != nil {
		return Rotation{}, fmt.Errorf("rotating the agent credential: %w", err)
	}
	gen := c.Credential.Generation + 1
	cred := deriveCredential(h.cfg.SecretKey, id, gen)
	until := h.cfg.Now().Add(h.cfg.CredentialGrace)
	if _, err := h.store.NextCredentialGeneration(ctx, id, c.Credential.Generation, hashSecret(cred), until); err != nil {
		return Rotation{}, fmt.Errorf("rotating the agent credential: %w", err)
	}
	r := Rotation{ClusterID: id, Generation: gen, PreviousValidUntil: until}
	h.graceEnds.set(id, h.cfg.CredentialGrace, func() { h.endStaleSession(id, gen) })
	sendCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = h.tunnels.SendCredential(sendCtx, id, tunnel.Credential{Generation: gen, Token: cred})
	deadline := until.UTC().Format(time.RFC3339)
	switch {
	case err == nil:
		r.Delivery = DeliverySent
		r.Message = "the new credential was sent to the connected agent, which stores it in its Secret and acknowledges it"
	case errors.Is(err, tunnel.ErrNoCapability):
		r.Delivery = DeliveryAgentOutdated
		r.Message = "the connected agent is too old to take a new credential over the tunnel: re-apply the install YAML before " + deadline
	case errors.Is(err, tunnel.ErrNoSession):
		r.Delivery = DeliveryNotConnected
		r.Message = "no agent is connected: re-apply the install YAML (before " + deadline + " the previous credential still works)"
	default:
		r.Delivery = DeliveryFailed
		r.Message = "sending the new credential to the agent failed: re-apply the install YAML before " + deadline + ", or rotate again once the agent is connected"
		h.logger.Warn("cannot send the rotated credential to the agent", "cluster", id, "err", err)
	}
	h.credMetrics.rotations.WithLabelValues(r.Delivery).Inc()
	ident, _ := identityFrom(ctx)
	h.logger.Info("agent credential rotated", "cluster", id, "generation", gen, "previousValidUntil", until, "delivery", r.Delivery, "by", ident.Name)
	by := ""
	if ident.Name != "" {
		by = " by " + ident.Name
	}
	h.status.note(id, fmt.Sprintf("agent credential rotated to generation %d%s: %s", gen, by, r.Message))
	return r, nil
}

// credentialAck is the tunnel's CredentialAck: the agent kept (or could
// not keep) the credential RotateCredential sent.
func (h *Hub) credentialAck(clusterID string, sessionID uint64, ack tunnel.Credential) {
	ctx, cancel := bg(5 * time.Second)
	defer cancel()
	if ack.Error != "" {
		h.credMetrics.acks.WithLabelValues("error").Inc()
		h.logger.Warn("the agent could not store its new credential", "cluster", clusterID, "generation", ack.Generation, "err", ack.Error)
		h.status.note(clusterID, fmt.Sprintf("the agent could not store credential generation %d (%s): re-apply the install YAML", ack.Generation, truncate(ack.Error, 256)))
		return
	}
	c, err := h.store.GetCluster(ctx, clusterID)
	if err != nil {
		h.logger.Warn("credential acknowledgement: loading the cluster", "cluster", clusterID, "err", err)
		return
	}
	if ack.Generation != c.Credential.Generation || !hmac.Equal(hashSecret(ack.Token), c.AgentCredentialHash) {
		// An older rotation's ack (a newer one is under way), or a wrong
		// credential: nothing is confirmed.
		h.credMetrics.acks.WithLabelValues("stale").Inc()
		h.logger.Warn("the agent acknowledged a credential that is not the current one", "cluster", clusterID, "session", sessionID,
			"ackGeneration", ack.Generation, "generation", c.Credential.Generation)
		return
	}
	h.credMetrics.acks.WithLabelValues("ok").Inc()
	h.confirmCredential(ctx, c)
}

// confirmCredential records that c's agent holds its current generation:
// the rotation is complete.
func (h *Hub) confirmCredential(ctx context.Context, c store.Cluster) {
	if c.Credential.Confirmed >= c.Credential.Generation {
		return
	}
	if err := h.store.ConfirmCredential(ctx, c.ID, c.Credential.Generation); err != nil {
		h.logger.Warn("recording the agent's credential generation", "cluster", c.ID, "err", err)
		return
	}
	h.logger.Info("agent credential rotation complete: the agent holds the new generation", "cluster", c.ID, "generation", c.Credential.Generation)
	h.status.note(c.ID, fmt.Sprintf("credential rotation complete: the agent holds generation %d", c.Credential.Generation))
}

// checkGeneration decides on a credential that matched c by hash: the
// current generation is accepted (and completes a pending rotation), the
// previous one until its grace period ends. It returns the error to
// refuse the agent with, or nil.
func (h *Hub) checkGeneration(ctx context.Context, c store.Cluster, hash []byte) error {
	if bytes.Equal(hash, c.AgentCredentialHash) {
		h.confirmCredential(ctx, c)
		return nil
	}
	now := h.cfg.Now()
	prev := c.Credential.Generation - 1
	if now.Before(c.Credential.PreviousUntil) {
		h.credMetrics.previous.WithLabelValues("accepted").Inc()
		h.logger.Info("agent accepted with the previous credential generation, within its grace period",
			"cluster", c.ID, "generation", prev, "graceEnds", c.Credential.PreviousUntil)
		return nil
	}
	h.credMetrics.previous.WithLabelValues("refused").Inc()
	h.metrics.agentAuthFailures.WithLabelValues("rotated").Inc()
	h.logger.Warn("agent refused: its credential was rotated and the grace period is over",
		"cluster", c.ID, "generation", prev, "graceEnded", c.Credential.PreviousUntil)
	if h.connected(c.ID) {
		if h.rotated.shouldNote(c.ID, now) {
			h.status.note(c.ID, fmt.Sprintf(noteRotatedLive, prev))
		}
	} else {
		h.status.record(c.ID, store.StatusUpdate{State: store.StateFailing,
			Reason: fmt.Sprintf(reasonRotated, prev, c.Credential.PreviousUntil.UTC().Format(time.RFC3339))})
	}
	return fmt.Errorf("%w: %s", tunnel.ErrForbidden, refusedRotated)
}

// endStaleSession runs when the grace period of cluster id's credential
// generation gen ends: if the cluster's agent has still not shown it holds
// gen (it is too old to take it over the tunnel, or could not store it),
// its live session runs on the previous generation, which is refused from
// now on: the session is ended, and its reconnect is refused with the
// reason.
func (h *Hub) endStaleSession(id string, gen int64) {
	ctx, cancel := bg(5 * time.Second)
	defer cancel()
	c, err := h.store.GetCluster(ctx, id)
	if err != nil {
		return // deleted meanwhile, or the store is away: the next connect is checked anyway
	}
	if c.Credential.Generation != gen || c.Credential.Confirmed >= gen || !h.connected(id) {
		return
	}
	if h.tunnels.Disconnect(id, refusedRotated) {
		h.credMetrics.previous.WithLabelValues("session-ended").Inc()
		h.logger.Warn("ended the agent's session on the rotated credential: the grace period is over", "cluster", id, "generation", gen-1)
		h.status.note(id, fmt.Sprintf("the grace period of credential generation %d ended and the agent still had not taken generation %d: its session was ended; re-apply the install YAML", gen-1, gen))
	}
}

// graceTimers end stale sessions when grace periods end, one timer per
// cluster (a newer rotation replaces it). Hub.Close stops them. They do
// not survive a hub restart: a session then lasts until its reconnect,
// which is refused.
type graceTimers struct {
	mu     sync.Mutex
	closed bool
	t      map[string]*time.Timer
	wg     sync.WaitGroup // running callbacks; Add only with mu held and !closed
}

func (g *graceTimers) set(id string, d time.Duration, f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	if g.t == nil {
		g.t = map[string]*time.Timer{}
	}
	if old := g.t[id]; old != nil {
		old.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() { // owned: stopped by stop
		g.mu.Lock()
		live := !g.closed && g.t[id] == t
		if live {
			delete(g.t, id)
			g.wg.Add(1)
		}
		g.mu.Unlock()
		if live {
			defer g.wg.Done()
			f()
		}
	})
	g.t[id] = t
}

// stop stops every timer and waits for a callback already running.
func (g *graceTimers) stop() {
	g.mu.Lock()
	g.closed = true
	for _, t := range g.t {
		t.Stop()
	}
	g.t = nil
	g.mu.Unlock()
	g.wg.Wait()
}

// noteLimiter notes an event in a cluster's history at most once per
// noteEvery.
type noteLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *noteLimiter) shouldNote(id string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if last, ok := l.last[id]; ok && now.Sub(last) < noteEvery {
		return false
	}
	l.last[id] = now
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// credentialMetrics count rotations.
type credentialMetrics struct {
	rotations *prometheus.CounterVec
	acks      *prometheus.CounterVec
	previous  *prometheus.CounterVec
}

func newCredentialMetrics(reg *prometheus.Registry) (*credentialMetrics, error) {
	m := &credentialMetrics{
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_credential_rotations_total",
			Help: "Agent credential rotations, by delivery to the agent (sent, agent-outdated, not-connected, failed).",
		}, []string{"delivery"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_credential_acks_total",
			Help: "Agents' acknowledgements of a rotated credential (ok, error: the agent could not store it, stale: not the current generation).",
		}, []string{"result"}),
		previous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_hub_previous_credential_connects_total",
			Help: "Agent connects with the previous credential generation: accepted within the grace period, refused after it; session-ended: live sessions on it ended when the grace period ended.",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.rotations, m.acks, m.previous} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
