package apps

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// MaxRequestBody bounds an install or upgrade request (a chart archive
// fits).
const MaxRequestBody = 8 << 20

// Mount serves the Helm service's API on h (see hub/openapi.yaml, tag
// apps):
//
//	GET    /api/v1/clusters/{id}/releases[?namespace=]
//	POST   /api/v1/clusters/{id}/releases                      install (dryRun: preview)
//	GET    /api/v1/clusters/{id}/releases/{ns}/{name}[?revision=]   values and manifest
//	GET    /api/v1/clusters/{id}/releases/{ns}/{name}/history
//	POST   /api/v1/clusters/{id}/releases/{ns}/{name}/upgrade  (dryRun: preview and diff)
//	POST   /api/v1/clusters/{id}/releases/{ns}/{name}/rollback
//	DELETE /api/v1/clusters/{id}/releases/{ns}/{name}          uninstall
//	GET    /api/v1/clusters/{id}/operations[?namespace=&release=]
//	GET    /api/v1/operations/{op}
func (s *Service) Mount(h *hub.Hub) {
	m := http.NewServeMux()
	m.HandleFunc("GET /api/v1/clusters/{id}/releases", s.auth(s.listReleases))
	m.HandleFunc("POST /api/v1/clusters/{id}/releases", s.auth(s.install))
	m.HandleFunc("GET /api/v1/clusters/{id}/releases/{ns}/{name}", s.auth(s.getRelease))
	m.HandleFunc("GET /api/v1/clusters/{id}/releases/{ns}/{name}/history", s.auth(s.history))
	m.HandleFunc("POST /api/v1/clusters/{id}/releases/{ns}/{name}/upgrade", s.auth(s.upgrade))
	m.HandleFunc("POST /api/v1/clusters/{id}/releases/{ns}/{name}/rollback", s.auth(s.rollback))
	m.HandleFunc("DELETE /api/v1/clusters/{id}/releases/{ns}/{name}", s.auth(s.uninstall))
	m.HandleFunc("GET /api/v1/clusters/{id}/operations", s.auth(s.listOperations))
	m.HandleFunc("GET /api/v1/operations/{op}", s.auth(s.getOperation))
	for _, p := range []string{"/api/v1/clusters/{id}/releases", "/api/v1/clusters/{id}/releases/", "/api/v1/clusters/{id}/operations", "/api/v1/operations/"} {
		h.Mount(p, m)
	}
}

type handler func(w http.ResponseWriter, r *http.Request, ident hub.Identity)

// auth authenticates a request (Authenticate) and refuses a cluster the
// identity has no role in as not found.
func (s *Service) auth(next handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ident, ok := Authenticate(s.hub, w, r)
		if !ok {
			return
		}
		if c := r.PathValue("id"); c != "" && !knownCluster(r, s.store, ident, c) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("cluster %q: %v", c, hub.ErrNoAccess))
			return
		}
		next(w, r, ident)
	}
}

// Authenticate returns the identity a mounting handler (the web UI's
// session) put in r's context, or the one of its bearer token. If there is
// none it answers 401 (or 500) and returns false.
func Authenticate(h *hub.Hub, w http.ResponseWriter, r *http.Request) (hub.Identity, bool) {
	if ident, ok := hub.IdentityFrom(r.Context()); ok {
		return ident, true
	}
	tok, _ := cutBearer(r.Header.Get("Authorization"))
	ident, err := h.AuthenticateToken(r.Context(), tok)
	if err != nil {
		if errors.Is(err, hub.ErrUnauthenticated) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="eco"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return hub.Identity{}, false
		}
		writeError(w, http.StatusInternalServerError, "authentication is unavailable")
		return hub.Identity{}, false
	}
	return ident, true
}

func cutBearer(h string) (string, bool) {
	const p = "Bearer "
	if len(h) > len(p) && h[:len(p)] == p {
		return h[len(p):], true
	}
	return "", false
}

// OperationJSON is an operation as the API shows it.
type OperationJSON struct {
	ID         string     `json:"id"`
	Cluster    string     `json:"cluster"`
	Namespace  string     `json:"namespace"`
	Release    string     `json:"release"`
	Kind       string     `json:"kind"`
	User       string     `json:"user"`
	State      string     `json:"state"`
	Message    string     `json:"message"`
	Log        string     `json:"log"`
	Revision   int        `json:"revision,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Link       string     `json:"link"`
}

func operationJSON(o store.Operation) OperationJSON {
	out := OperationJSON{ID: o.ID, Cluster: o.ClusterID, Namespace: o.Namespace, Release: o.Release, Kind: o.Kind,
		User: o.User, State: string(o.State), Message: o.Message, Log: o.Log, Revision: o.Revision,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt, Link: "/api/v1/operations/" + o.ID}
	if !o.FinishedAt.IsZero() {
		t := o.FinishedAt
		out.FinishedAt = &t
	}
	return out
}

// ChartJSON says which chart to install: an archive (.tgz, base64) or a
// chart of the App Catalog.
type ChartJSON struct {
	// Archive is a packaged chart (helm package), base64.
	Archive string `json:"archive,omitempty"`
	ChartRef
}

// InstallJSON is the body of an install or upgrade.
type InstallJSON struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Chart     ChartJSON `json:"chart"`
	// Values is YAML (or JSON) overriding the chart's defaults.
	Values string `json:"values,omitempty"`
	// DryRun previews the manifests (and for an upgrade the diff)
	// without changing anything.
	DryRun bool `json:"dryRun,omitempty"`
	// Wait waits for the workloads to be ready before succeeding.
	Wait bool `json:"wait,omitempty"`
}

func (s *Service) readInstall(w http.ResponseWriter, r *http.Request) (InstallJSON, *chart.Chart, map[string]any, bool) {
	var in InstallJSON
	if !decode(w, r, &in) {
		return in, nil, nil, false
	}
	ch, err := s.loadChart(r, in.Chart)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return in, nil, nil, false
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(in.Values), &vals); err != nil {
		writeError(w, http.StatusBadRequest, "values: not YAML: "+err.Error())
		return in, nil, nil, false
	}
	if vals == nil {
		vals = map[string]any{}
	}
	return in, ch, vals, true
}

func (s *Service) loadChart(r *http.Request, c ChartJSON) (*chart.Chart, error) {
	switch {
	case c.Archive != "":
		data, err := base64.StdEncoding.DecodeString(c.Archive)
		if err != nil {
			return nil, fmt.Errorf("chart archive: not base64: %w", err)
		}
		ch, err := loader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("chart archive: %w", err)
		}
		return ch, nil
	case c.Name != "":
		if s.cfg.Charts == nil {
			return nil, errors.New("chart: this hub has no App Catalog; send a chart archive")
		}
		return s.cfg.Charts.Chart(r.Context(), c.ChartRef)
	}
	return nil, errors.New("chart: give an archive or a catalog chart (repo, name, version)")
}

func (s *Service) install(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	in, ch, vals, ok := s.readInstall(w, r)
	if !ok {
		return
	}
	req := Request{Kind: KindInstall, Cluster: r.PathValue("id"), Namespace: in.Namespace, Release: in.Name, Chart: ch, Values: vals, Wait: in.Wait}
	s.startOrPreview(w, r, ident, req, in.DryRun)
}

func (s *Service) upgrade(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	in, ch, vals, ok := s.readInstall(w, r)
	if !ok {
		return
	}
	req := Request{Kind: KindUpgrade, Cluster: r.PathValue("id"), Namespace: r.PathValue("ns"), Release: r.PathValue("name"), Chart: ch, Values: vals, Wait: in.Wait}
	s.startOrPreview(w, r, ident, req, in.DryRun)
}

func (s *Service) startOrPreview(w http.ResponseWriter, r *http.Request, ident hub.Identity, req Request, dryRun bool) {
	if dryRun {
		p, err := s.DryRun(r.Context(), ident, req)
		if err != nil {
			writeServiceError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
		return
	}
	op, err := s.Start(r.Context(), ident, req)
	if err != nil {
		writeServiceError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/operations/"+op.ID)
	writeJSON(w, http.StatusAccepted, operationJSON(op))
}

func (s *Service) rollback(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	var in struct {
		Revision int `json:"revision"`
	}
	if !decode(w, r, &in) {
		return
	}
	s.startOrPreview(w, r, ident, Request{Kind: KindRollback, Cluster: r.PathValue("id"), Namespace: r.PathValue("ns"), Release: r.PathValue("name"), Revision: in.Revision}, false)
}

func (s *Service) uninstall(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	s.startOrPreview(w, r, ident, Request{Kind: KindUninstall, Cluster: r.PathValue("id"), Namespace: r.PathValue("ns"), Release: r.PathValue("name")}, false)
}

func (s *Service) listReleases(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	rels, err := s.List(r.Context(), ident, r.PathValue("id"), r.URL.Query().Get("namespace"))
	if err != nil {
		writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": rels})
}

func (s *Service) getRelease(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	rev := 0
	if v := r.URL.Query().Get("revision"); v != "" {
		var err error
		if rev, err = strconv.Atoi(v); err != nil || rev < 0 {
			writeError(w, http.StatusBadRequest, "revision: a positive number")
			return
		}
	}
	d, err := s.Get(r.Context(), ident, r.PathValue("id"), r.PathValue("ns"), r.PathValue("name"), rev)
	if err != nil {
		writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Service) history(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	h, err := s.History(r.Context(), ident, r.PathValue("id"), r.PathValue("ns"), r.PathValue("name"))
	if err != nil {
		writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": h})
}

func (s *Service) listOperations(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	q := r.URL.Query()
	ops, err := s.Operations(r.Context(), ident, r.PathValue("id"), q.Get("namespace"), q.Get("release"))
	if err != nil {
		writeServiceError(w, err)
		return
	}
	out := make([]OperationJSON, 0, len(ops))
	for _, o := range ops {
		out = append(out, operationJSON(o))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (s *Service) getOperation(w http.ResponseWriter, r *http.Request, ident hub.Identity) {
	op, err := s.Operation(r.Context(), ident, r.PathValue("op"))
	if err != nil {
		writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, operationJSON(op))
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body: %v (at most %d bytes)", err, MaxRequestBody))
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

// writeServiceError answers err with its status; Helm's and the
// cluster's errors are shown as they are.
func writeServiceError(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, ErrForbidden), apierrors.IsForbidden(err):
		code = http.StatusForbidden
	case errors.Is(err, ErrBusy):
		code = http.StatusConflict
	case errors.Is(err, hub.ErrNoAccess), errors.Is(err, store.ErrNotFound), errors.Is(err, driver.ErrReleaseNotFound), apierrors.IsNotFound(err):
		code = http.StatusNotFound
	case errors.Is(err, ErrNotConnected), errors.Is(err, tunnel.ErrNoSession):
		code = http.StatusServiceUnavailable
	}
	if busy := (*store.BusyError)(nil); code == http.StatusConflict && errors.As(err, &busy) {
		// The 409 names the operation holding the release.
		writeJSON(w, code, map[string]string{"error": err.Error(), "operation": busy.Holder})
		return
	}
	writeError(w, code, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// knownCluster reports whether cluster c exists and ident has a role in
// it (an admin has one in any ID, so the store decides).
func knownCluster(r *http.Request, st store.Store, ident hub.Identity, c string) bool {
	if ident.ClusterRole(c) == "" {
		return false
	}
	_, err := st.GetCluster(r.Context(), c)
	return err == nil
}

// KnownCluster is knownCluster for the other hub features' APIs.
func KnownCluster(r *http.Request, st store.Store, ident hub.Identity, c string) bool {
	return knownCluster(r, st, ident, c)
}
