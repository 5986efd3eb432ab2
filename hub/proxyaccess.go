package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// This file is the identity part of the proxy: who may reach which
// cluster, and as whom the hub acts there.

// requireProxyUser authenticates a proxied request; refusals are
// Kubernetes Status bodies, which kubectl shows as they are.
func (h *Hub) requireProxyUser(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := h.authenticate(r)
		if err != nil {
			if errors.Is(err, errUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="eco"`)
				writeKubeStatus(w, http.StatusUnauthorized, "Unauthorized", "eco: "+err.Error())
				return
			}
			h.logger.Error("authenticating", "err", err)
			writeKubeStatus(w, http.StatusInternalServerError, "InternalError", "eco: authentication is unavailable")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// Outcomes of the proxy's access decisions, the label values of
// eco_hub_proxy_access_total. A fixed set: no cluster or user names.
const (
	accessNotGranted          = "not-granted"
	accessReadOnly            = "read-only"
	accessBadImpersonation    = "bad-impersonation"
	accessImpersonationDenied = "impersonation-denied"
	accessImpersonationError  = "impersonation-error"
	accessImpersonated        = "impersonated"
)

// newAccessCounter registers eco_hub_proxy_access_total on reg.
func newAccessCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eco_hub_proxy_access_total",
		Help: "Proxied requests refused by the hub's access checks, by outcome (not-granted, read-only, bad-impersonation, impersonation-denied, impersonation-error), and requests impersonating what the cluster allowed (impersonated).",
	}, []string{"outcome"})
	for _, o := range []string{accessNotGranted, accessReadOnly, accessBadImpersonation, accessImpersonationDenied, accessImpersonationError, accessImpersonated} {
		c.WithLabelValues(o)
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("registering the access counter: %w", err)
	}
	return c, nil
}

// notImportedMessage answers a cluster the hub does not know, or that the
// caller may not reach: the two read the same.
func notImportedMessage(id string) string {
	return fmt.Sprintf("eco: cluster %q is not imported in this hub", id)
}

// authorize decides whether the caller of r may send it to cluster
// t.cluster, and fills in as whom (t.user, t.groups, t.as). On refusal it
// has answered and returns false.
func (p *kubeProxy) authorize(w http.ResponseWriter, r *http.Request, t *proxyTarget, verb string) bool {
	ident, _ := identityFrom(r.Context())
	role := ident.ClusterRole(t.cluster)
	if role == "" {
		p.access.WithLabelValues(accessNotGranted).Inc()
		writeKubeStatus(w, http.StatusNotFound, "NotFound", notImportedMessage(t.cluster))
		return false
	}
	if ident.Scope.ReadOnly && mutates(r, t.path) {
		p.access.WithLabelValues(accessReadOnly).Inc()
		writeKubeStatus(w, http.StatusForbidden, "Forbidden",
			fmt.Sprintf("eco: hub token %s is read-only: it may not %s (%s %s)", ident.TokenID, verb, r.Method, t.path))
		return false
	}
	t.user = p.h.KubeUser(ident)
	t.groups = []string{KubeGroup(role)}
	imp, err := requestedImpersonation(r.Header)
	if err != nil {
		p.access.WithLabelValues(accessBadImpersonation).Inc()
		writeKubeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		return false
	}
	if imp == nil {
		return true
	}
	if err := p.checkImpersonation(r.Context(), *t, imp); err != nil {
		var denied *errImpersonationDenied
		switch {
		case errors.As(err, &denied):
			p.access.WithLabelValues(accessImpersonationDenied).Inc()
			p.h.logger.Info("impersonation refused", "cluster", t.cluster, "user", ident.Name, "as", imp.user, "groups", imp.groups, "request_id", t.requestID, "reason", denied.status.Message)
			writeJSON(w, http.StatusForbidden, denied.status)
		case errors.Is(err, context.Canceled):
		default:
			p.access.WithLabelValues(accessImpersonationError).Inc()
			p.h.logger.Warn("impersonation check failed", "cluster", t.cluster, "user", ident.Name, "as", imp.user, "request_id", t.requestID, "err", err)
			writeKubeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "eco: could not ask the cluster whether "+t.user+" may impersonate: "+err.Error())
		}
		return false
	}
	// The cluster's audit log shows the target and the agent, and the
	// request ID; this line says which hub user acted.
	p.h.logger.Info("impersonating", "cluster", t.cluster, "user", ident.Name, "token", ident.TokenID, "as", imp.user, "groups", imp.groups, "request_id", t.requestID)
	p.access.WithLabelValues(accessImpersonated).Inc()
	t.as = imp
	return true
}

// mutates reports whether r may change the cluster: any method but GET,
// HEAD and OPTIONS, and any upgrade (exec, attach, port-forward), except
// the reviews a client makes of its own access (kubectl auth can-i,
// whoami), which change nothing.
func mutates(r *http.Request, path string) bool {
	if r.Header.Get("Upgrade") != "" || r.Header.Get("Connection") != "" && strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
		return true
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	case http.MethodPost:
		for _, p := range []string{
			"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
			"/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
			"/apis/authentication.k8s.io/v1/selfsubjectreviews",
		} {
			if path == p {
				return false
			}
		}
	}
	return true
}
