package addons

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// Mount serves the add-ons' API on h (hub/openapi.yaml, tag addons). Any
// hub user sees the list and the status in the clusters they may see;
// only a hub admin changes anything.
//
//	GET  /api/v1/addons                        the list, with rollouts
//	PUT  /api/v1/addons/{name}                 {"enabled": bool} for every cluster, or {"version": "x"} to roll out
//	PUT  /api/v1/addons/{name}/clusters/{id}   {"enabled": bool} for one cluster
//	POST /api/v1/addons/resync                 reconcile every cluster now
//	GET  /api/v1/clusters/{id}/addons          status in a cluster
func (m *Manager) Mount(h *hub.Hub) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/addons", m.auth(m.list))
	mux.HandleFunc("PUT /api/v1/addons/{name}", m.auth(m.put))
	mux.HandleFunc("PUT /api/v1/addons/{name}/clusters/{id}", m.auth(m.putCluster))
	mux.HandleFunc("POST /api/v1/addons/resync", m.auth(m.resync))
	mux.HandleFunc("GET /api/v1/clusters/{id}/addons", m.auth(m.clusterStatus))
	h.Mount("/api/v1/addons", mux)
	h.Mount("/api/v1/addons/", mux)
	h.Mount("/api/v1/clusters/{id}/addons", mux)
}

func (m *Manager) auth(next func(http.ResponseWriter, *http.Request, hub.Identity)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ident, ok := apps.Authenticate(m.hub, w, r)
		if !ok {
			return
		}
		if c := r.PathValue("id"); c != "" && !apps.KnownCluster(r, m.store, ident, c) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("cluster %q: %v", c, hub.ErrNoAccess)})
			return
		}
		next(w, r, ident)
		if r.Method != http.MethodGet {
			m.hub.RecordAudit(store.AuditEvent{User: ident.Name, TokenID: ident.TokenID, Source: "api", Verb: "addons-" + r.Method,
				ClusterID: r.PathValue("id"), Name: r.PathValue("name"), Path: r.URL.Path, Code: http.StatusOK})
		}
	}
}

func (m *Manager) list(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	writeJSON(w, http.StatusOK, map[string]any{"items": m.Addons(), "rollouts": m.Rollouts()})
}

type putJSON struct {
	Enabled *bool  `json:"enabled,omitempty"`
	Version string `json:"version,omitempty"`
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "request body: " + err.Error()})
		return false
	}
	return true
}

func (m *Manager) put(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	var in putJSON
	if !decode(w, r, &in) {
		return
	}
	name := r.PathValue("name")
	switch {
	case in.Version != "" && in.Enabled != nil:
		writeErr(w, fmt.Errorf("%w: enabled or version, not both", ErrInvalid))
	case in.Version != "":
		ro, err := m.SetVersion(r.Context(), ident, name, in.Version)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, ro)
	case in.Enabled != nil:
		if err := m.Enable(r.Context(), ident, name, "", *in.Enabled); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"addon": name, "enabled": *in.Enabled, "clusters": "all"})
	default:
		writeErr(w, fmt.Errorf("%w: give enabled or version", ErrInvalid))
	}
}

func (m *Manager) putCluster(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	var in putJSON
	if !decode(w, r, &in) {
		return
	}
	if in.Enabled == nil || in.Version != "" {
		writeErr(w, fmt.Errorf("%w: give enabled (a version is the same for every cluster)", ErrInvalid))
		return
	}
	if err := m.Enable(r.Context(), ident, r.PathValue("name"), r.PathValue("id"), *in.Enabled); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"addon": r.PathValue("name"), "enabled": *in.Enabled, "cluster": r.PathValue("id")})
}

func (m *Manager) resync(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	if err := m.mayManage(ident); err != nil {
		writeErr(w, err)
		return
	}
	m.enqueue(task{all: true})
	w.WriteHeader(http.StatusAccepted)
}

func (m *Manager) clusterStatus(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	st, err := m.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": st, "connected": m.hub.Connected(r.PathValue("id"))})
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
