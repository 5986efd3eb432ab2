package ui

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/eco-project/eco/store"
)

// audited records a form action of the UI in the hub's audit log, with the
// answer's status code, as the API records its own actions. Actions on a
// cluster through its client (RBAC bindings) are audited by the hub's
// cluster transport instead.
func (u *UI) audited(verb string, next func(http.ResponseWriter, *http.Request, *request)) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		reqID := uuid.NewString()
		w.Header().Set("X-Request-Id", reqID)
		next(rec, r, rq)
		cluster := r.PathValue("id")
		if cluster == "" { // an import redirects to the new cluster's page
			rest, _ := strings.CutPrefix(w.Header().Get("Location"), "/ui/clusters/")
			cluster, _, _ = strings.Cut(rest, "/")
		}
		u.hub.RecordAudit(store.AuditEvent{
			User: rq.ident.Name, TokenID: rq.ident.TokenID, Source: "ui", Verb: verb, ClusterID: cluster,
			Path: r.URL.Path, Code: rec.code, RequestID: reqID, RemoteAddr: r.RemoteAddr,
		})
	}
}

// codeRecorder remembers the status code written.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// auditPageSize is how many audit events the Audit tab shows at once.
const auditPageSize = 100

type auditData struct {
	Events []store.AuditEvent
	Next   int64 // ?before= of the next page, 0 on the last
}

// auditTab shows the cluster's audit log, newest first (admins only).
func (u *UI) auditTab(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	before, err := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	if err != nil || before < 0 {
		before = 0
	}
	events, err := u.hub.Store().ListAudit(r.Context(), store.AuditQuery{ClusterID: c.ID, Before: before, Limit: auditPageSize})
	if err != nil {
		u.storeFail(w, r, rq, err)
		return
	}
	d := auditData{Events: events}
	if len(events) == auditPageSize {
		d.Next = events[len(events)-1].Seq
	}
	v := u.clusterView(rq, &c, "Edit Cluster", "audit")
	v.Data = d
	u.render(w, r, http.StatusOK, "audit", v)
}
