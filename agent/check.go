package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/version"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/tunnel"
)

// checkLoop runs the self-check every CheckInterval and soon after
// triggerCheck, and reports each result to the hub.
func (a *Agent) checkLoop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.CheckInterval)
	defer tick.Stop()
	last := time.Now() // Run checked just before starting the loop
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.checkNow:
			if wait := minCheckGap - time.Since(last); wait > 0 {
				// Checked a moment ago: tell the hub what is known
				// now (e.g. to a session that just connected), then
				// check again soon.
				a.report(ctx, a.currentStatus())
				if sleep(ctx, wait) != nil {
					return
				}
			}
		}
		st := a.check(ctx)
		last = time.Now()
		if ctx.Err() != nil {
			return
		}
		a.setStatus(st)
		a.report(ctx, st)
	}
}

// report sends st to the hub, if connected.
func (a *Agent) report(ctx context.Context, st tunnel.Status) {
	s := a.currentSession()
	if s == nil || st.State == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if err := s.ReportStatus(ctx, st); err != nil {
		a.log.Debug("reporting status to the hub", "err", err)
	}
}

func (a *Agent) currentStatus() tunnel.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// setStatus records a self-check result, logging changes.
func (a *Agent) setStatus(st tunnel.Status) {
	a.mu.Lock()
	old := a.status
	a.status = st
	a.mu.Unlock()
	a.metrics.checks.WithLabelValues(string(st.State)).Inc()
	if st.State == tunnel.StateReady {
		a.metrics.ready.Set(1)
	} else {
		a.metrics.ready.Set(0)
	}
	if st == old {
		return
	}
	if st.State == tunnel.StateReady {
		a.log.Info("self-check: ready", "apiServer", a.kube.host.String())
	} else {
		a.log.Warn("self-check: failing", "reason", st.Reason)
	}
}

// check tells whether the agent can do its job: reach its API server with
// its credentials, and impersonate users and the eco groups. On the way it
// learns the Kubernetes version and the cluster fingerprint.
func (a *Agent) check(ctx context.Context) tunnel.Status {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	host := a.kube.host.String()

	var v version.Info
	if err := a.api.get(ctx, "/version", nil, &v); err != nil {
		return failing(reachReason(host, err))
	}
	if err := a.learnCluster(ctx, v.GitVersion); err != nil {
		return failing(fmt.Sprintf("cannot read the cluster fingerprint (the UID of namespace kube-system): %v", err))
	}

	checks := []struct {
		attrs authorizationv1.ResourceAttributes
		what  string
	}{
		{authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "users"}, "impersonate users"},
		{authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "groups", Name: install.AdminsGroup}, "impersonate group " + install.AdminsGroup},
	}
	for _, c := range checks {
		allowed, err := a.mayI(ctx, c.attrs)
		if err != nil {
			if apierrors.IsForbidden(err) {
				return failing(fmt.Sprintf("the agent's ServiceAccount may not create selfsubjectaccessreviews: check ClusterRole %s: %v", install.AgentName, err))
			}
			return failing(reachReason(host, err))
		}
		if !allowed {
			return failing(fmt.Sprintf("the agent's ServiceAccount may not %s: check ClusterRole %s", c.what, install.AgentName))
		}
	}
	return tunnel.Status{State: tunnel.StateReady}
}

func failing(reason string) tunnel.Status {
	return tunnel.Status{State: tunnel.StateFailing, Reason: reason}
}

// reachReason explains a failed request to the API server.
func reachReason(host string, err error) string {
	if apierrors.IsUnauthorized(err) {
		return fmt.Sprintf("the API server at %s does not accept the agent's ServiceAccount token: %v", host, err)
	}
	if _, ok := err.(apierrors.APIStatus); ok {
		return fmt.Sprintf("the API server at %s answers with an error: %v", host, err)
	}
	return fmt.Sprintf("cannot reach the API server at %s: %v", host, err)
}

// mayI asks the API server whether the agent may do what attrs describe.
func (a *Agent) mayI(ctx context.Context, attrs authorizationv1.ResourceAttributes) (bool, error) {
	review := authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}
	review.APIVersion, review.Kind = "authorization.k8s.io/v1", "SelfSubjectAccessReview"
	var out authorizationv1.SelfSubjectAccessReview
	err := a.api.do(ctx, http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", nil, "", &review, &out)
	if err != nil {
		return false, err
	}
	return out.Status.Allowed, nil
}

// learnCluster records the Kubernetes version and, the first time, reads
// the fingerprint. When either changes while a session is live, the
// connect loop reconnects so that the hub gets a complete Hello.
func (a *Agent) learnCluster(ctx context.Context, kubeVersion string) error {
	a.mu.Lock()
	changed := kubeVersion != "" && kubeVersion != a.kubeVersion
	if changed {
		a.kubeVersion = kubeVersion
	}
	need := a.fingerprint == ""
	a.mu.Unlock()
	var err error
	if need {
		var ns corev1.Namespace
		if err = a.api.get(ctx, "/api/v1/namespaces/kube-system", nil, &ns); err == nil {
			if ns.UID == "" {
				err = fmt.Errorf("namespace kube-system has no UID")
			} else {
				a.mu.Lock()
				a.fingerprint = string(ns.UID)
				a.mu.Unlock()
				changed = true
			}
		}
	}
	if changed {
		select {
		case a.rehello <- struct{}{}:
		default:
		}
	}
	return err
}
