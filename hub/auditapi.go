package hub

import (
	"net/http"
	"strconv"

	"github.com/eco-project/eco/hub/audit"
	"github.com/eco-project/eco/store"
)

// auditLog serves GET /api/v1/audit: the hub's audit log, newest first,
// filtered by ?cluster= and ?user=, paged by ?before= (the next page's
// cursor is the response's "next").
func (h *Hub) auditLog(w http.ResponseWriter, r *http.Request) {
	h.serveAudit(w, r, r.URL.Query().Get("cluster"))
}

// clusterAuditLog serves GET /api/v1/clusters/{id}/audit: one cluster's
// audit log. A deleted cluster's trail stays readable through
// /api/v1/audit?cluster=.
func (h *Hub) clusterAuditLog(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	h.serveAudit(w, r, c.ID)
}

// AuditPageJSON is one page of the audit log.
type AuditPageJSON struct {
	Items []audit.EventJSON `json:"items"`
	// Next is the ?before= of the next page; empty on the last.
	Next string `json:"next,omitempty"`
}

func (h *Hub) serveAudit(w http.ResponseWriter, r *http.Request, clusterID string) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	var before int64
	if v := q.Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before <= 0 {
			writeError(w, http.StatusBadRequest, "before: must be a positive integer, the previous page's next")
			return
		}
	}
	query := store.AuditQuery{ClusterID: clusterID, User: q.Get("user"), Before: before, Limit: limit}
	events, err := h.store.ListAudit(r.Context(), query)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	page := AuditPageJSON{Items: make([]audit.EventJSON, 0, len(events))}
	for _, e := range events {
		page.Items = append(page.Items, audit.EventJSONOf(e))
	}
	size := limit
	if size == 0 {
		size = store.DefaultPageSize
	}
	if len(events) == size {
		page.Next = strconv.FormatInt(events[len(events)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, page)
}
