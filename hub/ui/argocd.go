package ui

import (
	"context"
	"net/http"
	"time"

	"github.com/eco-project/eco/hub/argocd"
	"github.com/eco-project/eco/store"
)

// ArgoCD is what the Argo CD tab shows; *argocd.Registrar has it.
type ArgoCD interface {
	View(ctx context.Context, c store.Cluster) argocd.ClusterView
}

// argocdTab shows the cluster's Argo CD registrations and the
// Applications whose destination it is.
func (u *UI) argocdTab(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	v := u.clusterView(rq, &c, "Edit Cluster", "argocd")
	v.Data = u.cfg.ArgoCD.View(ctx, c)
	u.render(w, r, http.StatusOK, "argocd", v)
}
