package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// APIPath is the route of the Argo CD view of a cluster (Handler).
const APIPath = "GET /api/v1/clusters/{id}/argocd"

// ClusterView is the answer of APIPath: the cluster's registrations and
// the Applications whose destination it is.
type ClusterView struct {
	ClusterID string `json:"clusterId"`
	// Connected is false while ECO has no working tunnel to the cluster:
	// Argo CD's features are unavailable then (the cluster stays
	// registered; the hub answers Argo CD with a Status naming why).
	Connected     bool           `json:"connected"`
	State         string         `json:"state"`
	Reason        string         `json:"reason,omitempty"`
	Registrations []Registration `json:"registrations"`
	Applications  []Application  `json:"applications"`
	// Errors are the instances whose Applications could not be read.
	Errors map[string]string `json:"errors,omitempty"`
}

// Authenticator resolves a hub API token; *hub.Hub has it.
type Authenticator interface {
	AuthenticateToken(ctx context.Context, token string) (hub.Identity, error)
}

// View returns the Argo CD view of cluster c.
func (r *Registrar) View(ctx context.Context, c store.Cluster) ClusterView {
	v := ClusterView{
		ClusterID: c.ID, State: string(c.Status.State), Reason: c.Status.Reason,
		Connected:     c.Status.State == store.StateConnected,
		Registrations: r.Status(c.ID),
	}
	if v.Registrations == nil {
		v.Registrations = []Registration{}
	}
	v.Applications, v.Errors = r.Applications(ctx, c.ID, c.Name)
	if v.Applications == nil {
		v.Applications = []Application{}
	}
	return v
}

// Handler serves APIPath for users with any role in the cluster; mount it
// on the hub (Hub.Mount). A cluster the caller may not reach is 404, as
// everywhere in the hub API.
func (r *Registrar) Handler(auth Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, ok := clusterCaller(auth, w, req)
		if !ok {
			return
		}
		c, err := r.store.GetCluster(req.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such cluster"})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "reading the cluster failed"})
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, r.View(ctx, c))
	})
}

// NotConfigured is the error of NotConfiguredHandler.
const NotConfigured = "this hub registers clusters into no Argo CD instance: eco-hub runs without --argocd-config, --argocd-kubeconfig, --argocd-in-cluster or --argocd-cluster (docs/argocd.md)"

// NotConfiguredHandler serves APIPath on a hub without Argo CD: a JSON
// 404 that says so ({"error": NotConfigured, "reason": "NotConfigured"}),
// to any caller with a role in the cluster, so a client can tell it from
// a cluster it may not see (404 "no such cluster", as everywhere).
func NotConfiguredHandler(auth Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, ok := clusterCaller(auth, w, req); !ok {
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": NotConfigured, "reason": "NotConfigured"})
	})
}

// clusterCaller authenticates req's bearer token and returns the cluster
// of its path if the caller has a role there; otherwise it has answered
// 401, or 404 "no such cluster" (whether it exists is not the caller's
// business), and returns false.
func clusterCaller(auth Authenticator, w http.ResponseWriter, req *http.Request) (string, bool) {
	token, _ := cutBearer(req.Header.Get("Authorization"))
	ident, err := auth.AuthenticateToken(req.Context(), token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="eco"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid hub API token is required (Authorization: Bearer ecot_...)"})
		return "", false
	}
	id := req.PathValue("id")
	if ident.ClusterRole(id) == "" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such cluster"})
		return "", false
	}
	return id, true
}

func cutBearer(h string) (string, bool) {
	const p = "Bearer "
	if len(h) > len(p) && h[:len(p)] == p {
		return h[len(p):], true
	}
	return "", false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
