package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// Mount serves the App Catalog's API on h (hub/openapi.yaml, tag catalog).
// Every hub user may look; only a hub admin (not a read-only token)
// changes repositories.
//
//	GET    /api/v1/catalog/repositories
//	POST   /api/v1/catalog/repositories
//	GET    /api/v1/catalog/repositories/{name}
//	DELETE /api/v1/catalog/repositories/{name}
//	POST   /api/v1/catalog/repositories/{name}/refresh
//	GET    /api/v1/catalog/charts?q=&limit=
//	GET    /api/v1/catalog/charts/{repo}/{name}[?version=]
func (c *Catalog) Mount(h *hub.Hub) {
	m := http.NewServeMux()
	m.HandleFunc("GET /api/v1/catalog/repositories", c.auth(false, c.listRepos))
	m.HandleFunc("POST /api/v1/catalog/repositories", c.auth(true, c.addRepo))
	m.HandleFunc("GET /api/v1/catalog/repositories/{name}", c.auth(false, c.getRepo))
	m.HandleFunc("DELETE /api/v1/catalog/repositories/{name}", c.auth(true, c.deleteRepo))
	m.HandleFunc("POST /api/v1/catalog/repositories/{name}/refresh", c.auth(true, c.refreshRepo))
	m.HandleFunc("GET /api/v1/catalog/charts", c.auth(false, c.search))
	m.HandleFunc("GET /api/v1/catalog/charts/{repo}/{name}", c.auth(false, c.chartPage))
	h.Mount("/api/v1/catalog/", m)
}

func (c *Catalog) auth(change bool, next func(http.ResponseWriter, *http.Request, hub.Identity)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ident, ok := apps.Authenticate(c.hub, w, r)
		if !ok {
			return
		}
		if change && (ident.Role != store.RoleAdmin || ident.Scope.ReadOnly || ident.Scope.Clusters != nil) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf("hub user %q may not change the App Catalog: the admin role is required", ident.Name)})
			return
		}
		next(w, r, ident)
		if change {
			c.hub.RecordAudit(store.AuditEvent{User: ident.Name, TokenID: ident.TokenID, Source: "api", Verb: "catalog-" + r.Method, Path: r.URL.Path, Code: http.StatusOK})
		}
	}
}

func (c *Catalog) listRepos(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	writeJSON(w, http.StatusOK, map[string]any{"items": c.Repositories()})
}

func (c *Catalog) addRepo(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	var in RepositoryInput
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, fmt.Errorf("%w: request body: %w", ErrInvalid, err))
		return
	}
	st, err := c.AddRepository(r.Context(), in)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/catalog/repositories/"+st.Name)
	writeJSON(w, http.StatusCreated, st)
}

func (c *Catalog) getRepo(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	st, err := c.Repository(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (c *Catalog) deleteRepo(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	if err := c.DeleteRepository(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Catalog) refreshRepo(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	name := r.PathValue("name")
	if _, err := c.Repository(name); err != nil {
		writeError(w, err)
		return
	}
	c.Refresh(name)
	st, _ := c.Repository(name)
	writeJSON(w, http.StatusAccepted, st)
}

func (c *Catalog) search(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	writeJSON(w, http.StatusOK, map[string]any{"items": c.Search(r.URL.Query().Get("q"), limit)})
}

func (c *Catalog) chartPage(w http.ResponseWriter, r *http.Request, _ hub.Identity) {
	p, err := c.ChartPage(r.Context(), r.PathValue("repo"), r.PathValue("name"), r.URL.Query().Get("version"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, store.ErrConflict), errors.Is(err, ErrBuiltIn):
		code = http.StatusConflict
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
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
