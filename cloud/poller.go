package cloud

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/store"
)

// The health poller (docs/decisions/0019-cloud-health-polling.md). Its cost
// grows with the number of scopes (regions, subscriptions, projects that
// hold imported clusters), not of clusters, wherever the provider's list
// carries the status (AKS, GKE); EKS lists names only, so it describes
// each imported cluster of the region.

func defaultJitter() float64 { return 0.8 + 0.4*rand.Float64() }

// PollNow wakes the poller, which polls at once every scope it has not
// polled yet (after an import). It never blocks.
func (s *Service) PollNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

type scopeKey struct{ account, scope string }

// scopeState is the poller's memory of one scope; only Run's goroutine
// touches it.
type scopeState struct {
	next    time.Time
	backoff time.Duration // while throttled; zero otherwise
}

// Run polls until ctx ends, then returns nil. It first seals again under
// the current key any account sealed under a previous one.
func (s *Service) Run(ctx context.Context) error {
	if n, err := s.Reseal(ctx); err != nil {
		s.log.Error("sealing cloud accounts under the current key", "err", err)
	} else if n > 0 {
		s.log.Info("cloud accounts sealed under the current secret key", "accounts", n)
	}
	states := map[scopeKey]*scopeState{}
	last := map[string]string{}
	// The scopes there are at start are spread over the fast interval, so
	// a restarted hub with thousands of them does not call every cloud
	// API at the same instant; scopes that appear later (an import) are
	// polled at once.
	s.spreadNew(ctx, states)
	for {
		wait := s.pollDue(ctx, states, last)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-s.kick:
			t.Stop()
		}
	}
}

// spreadNew gives every scope a first poll time in the next fast interval.
func (s *Service) spreadNew(ctx context.Context, states map[scopeKey]*scopeState) {
	links, err := s.cfg.Store.CloudLinks(ctx, "")
	if err != nil {
		return // pollDue reports it
	}
	now := s.cfg.Now()
	for _, l := range links {
		k := scopeKey{l.AccountID, l.Scope}
		if states[k] == nil {
			states[k] = &scopeState{next: now.Add(time.Duration(rand.Float64() * float64(s.cfg.FastInterval)))}
		}
	}
}

// pollDue polls every scope that is due and returns how long until the
// next one is.
func (s *Service) pollDue(ctx context.Context, states map[scopeKey]*scopeState, last map[string]string) time.Duration {
	links, err := s.cfg.Store.CloudLinks(ctx, "")
	if err != nil {
		s.log.Error("listing cloud links", "err", err)
		return s.cfg.FastInterval
	}
	groups := map[scopeKey][]store.CloudLink{}
	for _, l := range links {
		k := scopeKey{l.AccountID, l.Scope}
		groups[k] = append(groups[k], l)
	}
	for k := range states {
		if groups[k] == nil {
			delete(states, k)
		}
	}
	now := s.cfg.Now()
	next := now.Add(s.cfg.Interval)
	accounts := map[string]*Account{}
	for k, ls := range groups {
		if ctx.Err() != nil {
			return 0
		}
		st := states[k]
		if st == nil {
			st = &scopeState{}
			states[k] = st
		}
		if now.Before(st.next) {
			if st.next.Before(next) {
				next = st.next
			}
			continue
		}
		a := accounts[k.account]
		if a == nil {
			opened, err := s.open(ctx, k.account)
			if err != nil {
				s.log.Error("opening a cloud account", "account", k.account, "err", err)
				opened = Account{ID: k.account}
			}
			a = &opened
			accounts[k.account] = a
		}
		st.next = s.cfg.Now().Add(s.pollScope(ctx, a, k.scope, ls, st, last))
		if st.next.Before(next) {
			next = st.next
		}
	}
	return max(next.Sub(s.cfg.Now()), 0)
}

func (s *Service) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.Jitter())
}

// pollScope asks the provider for the health of the clusters linked in
// one scope and records it; it returns when to poll the scope next.
func (s *Service) pollScope(ctx context.Context, a *Account, scope string, ls []store.CloudLink, st *scopeState, last map[string]string) time.Duration {
	setAll := func(h Health) {
		for _, l := range ls {
			s.record(ctx, l.ClusterID, h, last)
		}
	}
	if a.Provider == "" { // the account could not be opened
		setAll(Health{State: Unknown, Reason: "the account's credentials cannot be opened with the hub's secret keys"})
		return s.jitter(s.cfg.Interval)
	}
	pr, err := s.provider(a.Provider)
	if err != nil {
		setAll(Health{State: Unknown, Reason: "provider " + string(a.Provider) + " is not enabled on this hub"})
		return s.jitter(s.cfg.Interval)
	}
	refs := make([]string, len(ls))
	for i, l := range ls {
		refs[i] = l.CloudRef
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	start := time.Now()
	hs, err := pr.Health(cctx, *a, scope, refs)
	cancel()
	s.metrics.pollDuration.WithLabelValues(string(a.Provider)).Observe(time.Since(start).Seconds())
	s.metrics.call(a.Provider, "health", err)
	switch {
	case errors.Is(err, ErrThrottled):
		st.backoff = min(max(2*st.backoff, 2*s.cfg.FastInterval), s.cfg.MaxBackoff)
		s.log.Warn("cloud provider throttles the health poll; backing off", "account", a.ID, "scope", scope, "backoff", st.backoff)
		return s.jitter(st.backoff)
	case errors.Is(err, ErrCredentialsRejected):
		st.backoff = 0
		s.log.Warn("cloud provider rejects the account's credentials", "account", a.ID, "scope", scope, "err", err)
		setAll(Health{State: Unknown, Reason: ReasonCredentialsRejected})
		return s.jitter(s.cfg.Interval)
	case err != nil:
		st.backoff = min(max(2*st.backoff, s.cfg.FastInterval), s.cfg.Interval)
		s.log.Warn("polling cloud health", "account", a.ID, "scope", scope, "err", err)
		if ctx.Err() == nil {
			setAll(Health{State: Unknown, Reason: "cannot reach the cloud API"})
		}
		return s.jitter(st.backoff)
	}
	st.backoff = 0
	fast := false
	for _, l := range ls {
		h, ok := hs[l.CloudRef]
		if !ok {
			h = Health{State: NotFound, Reason: fmt.Sprintf("no longer in %s %s", scopeName(a.Provider), scope)}
		}
		fast = fast || h.State.Transitional()
		s.record(ctx, l.ClusterID, h, last)
	}
	if fast {
		return s.jitter(s.cfg.FastInterval)
	}
	return s.jitter(s.cfg.Interval)
}

// record stores cluster id's health if it changed, and notes the change in
// its status history.
func (s *Service) record(ctx context.Context, id string, h Health, last map[string]string) {
	text := clean(h.String())
	prev, ok := last[id]
	if !ok {
		c, err := s.cfg.Store.GetCluster(ctx, id)
		if err != nil {
			return // deleted meanwhile
		}
		prev = c.CloudHealth
	}
	last[id] = text
	if text == prev {
		return
	}
	if err := s.setHealth(ctx, id, prev, h); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("cannot record cloud health", "cluster", id, "err", err)
		delete(last, id)
	}
}

// setHealth stores h as cluster id's cloud health and notes the change
// from prev in its history.
func (s *Service) setHealth(ctx context.Context, id, prev string, h Health) error {
	text := clean(h.String())
	if text == prev {
		return nil
	}
	if err := s.cfg.Store.SetCloudHealth(ctx, id, text); err != nil {
		return err
	}
	s.metrics.changes.WithLabelValues(string(h.State)).Inc()
	s.log.Info("cloud health changed", "cluster", id, "from", prev, "to", text)
	return s.cfg.Store.NoteStatus(ctx, id, "cloud health: "+text)
}

// clean makes the provider's words fit the store: no control characters,
// valid UTF-8, at most store.MaxCloudHealthLen bytes.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	for len(s) > store.MaxCloudHealthLen {
		_, size := utf8.DecodeLastRuneInString(s[:store.MaxCloudHealthLen-2])
		s = s[:store.MaxCloudHealthLen-2-size] + "…"
	}
	return s
}

type metrics struct {
	calls        *prometheus.CounterVec
	changes      *prometheus.CounterVec
	pollDuration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_cloud_api_calls_total",
			Help: "Calls to cloud provider APIs, by provider (eks, aks, gke), call (health, discover) and result (ok, throttled, rejected, error).",
		}, []string{"provider", "call", "result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eco_cloud_health_changes_total",
			Help: "Changes of imported clusters' cloud health, by new state.",
		}, []string{"state"}),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eco_cloud_poll_duration_seconds",
			Help:    "Time to poll the health of one scope (region, subscription, project), by provider.",
			Buckets: prometheus.DefBuckets,
		}, []string{"provider"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.changes, m.pollDuration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("cloud: registering metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) call(p store.Provider, call string, err error) {
	result := "ok"
	switch {
	case errors.Is(err, ErrThrottled):
		result = "throttled"
	case errors.Is(err, ErrCredentialsRejected):
		result = "rejected"
	case err != nil:
		result = "error"
	}
	m.calls.WithLabelValues(string(p), call, result).Inc()
}
