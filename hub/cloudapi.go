package hub

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/store"
)

// Cloud import and health (issue 18, docs/cloud.md): the hub wires package
// cloud's Service to its store, its import and its API. Every route is for
// hub admins; credentials go in, never out.

// hubClusters lets the cloud Service import and remove clusters the way
// the API does.
type hubClusters struct{ h *Hub }

func (c hubClusters) ImportCluster(ctx context.Context, ic cloud.ImportedCluster) (store.Cluster, error) {
	return c.h.ImportCluster(ctx, ImportRequest{Name: ic.Name, Provider: ic.Provider, Region: ic.Region, CloudRef: ic.CloudRef})
}

func (c hubClusters) DeleteCluster(ctx context.Context, id string) error {
	return c.h.DeleteCluster(ctx, id)
}

// startCloud creates the cloud Service and starts its poller.
func (h *Hub) startCloud() error {
	var err error
	h.cloud, err = cloud.New(cloud.Config{
		Store: h.store, Clusters: hubClusters{h}, Providers: h.cfg.CloudProviders, Sealer: h.sealer,
		Interval: h.cfg.CloudPollInterval, FastInterval: h.cfg.CloudFastPollInterval,
		Registerer: h.registry, Logger: h.logger.With("component", "cloud"), Now: h.cfg.Now,
	})
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	h.cloudStop = stop
	h.cloudDone.Add(1)
	go func() { // owned: Close stops and waits
		defer h.cloudDone.Done()
		h.cloud.Run(ctx)
	}()
	return nil
}

// Cloud returns the hub's cloud Service (accounts, discovery, import).
func (h *Hub) Cloud() *cloud.Service { return h.cloud }

func (h *Hub) cloudRoutes(api func(pattern, route string, need access, f http.HandlerFunc)) {
	api("GET /api/v1/cloud/accounts", "list-cloud-accounts", hubAdmin, h.listCloudAccounts)
	api("POST /api/v1/cloud/accounts", "create-cloud-account", hubAdmin, h.createCloudAccount)
	api("DELETE /api/v1/cloud/accounts/{account}", "delete-cloud-account", hubAdmin, h.deleteCloudAccount)
	api("GET /api/v1/cloud/accounts/{account}/clusters", "discover-cloud-clusters", hubAdmin, h.discoverCloudClusters)
	api("POST /api/v1/cloud/accounts/{account}/import", "import-cloud-clusters", hubAdmin, h.importCloudClusters)
	api("POST /api/v1/clusters/{id}/cloud-install", "cloud-install", hubAdmin, h.cloudInstall)
}

// writeCloudError answers an error of the cloud Service.
func writeCloudError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrInvalid):
		writeStoreError(w, err)
	case errors.Is(err, cloud.ErrCredentialsRejected):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, cloud.ErrThrottled):
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, cloud.ErrUnseal):
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeError(w, http.StatusBadGateway, "cloud provider: "+err.Error())
	}
}

func (h *Hub) listCloudAccounts(w http.ResponseWriter, r *http.Request) {
	as, err := h.cloud.Accounts(r.Context())
	if err != nil {
		writeCloudError(w, err)
		return
	}
	ps := h.cloud.Enabled()
	if ps == nil {
		ps = []store.Provider{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": ps, "accounts": as})
}

func (h *Hub) createCloudAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name        string            `json:"name"`
		Provider    store.Provider    `json:"provider"`
		Scopes      []string          `json:"scopes"`
		Credentials cloud.Credentials `json:"credentials"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	a, err := h.cloud.CreateAccount(r.Context(), cloud.NewAccount{Name: req.Name, Provider: req.Provider, Scopes: req.Scopes, Credentials: req.Credentials})
	if err != nil {
		writeCloudError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("cloud account created", "account", a.ID, "name", a.Name, "provider", a.Provider, "by", ident.Name)
	w.Header().Set("Location", "/api/v1/cloud/accounts/"+a.ID)
	writeJSON(w, http.StatusCreated, a)
}

func (h *Hub) deleteCloudAccount(w http.ResponseWriter, r *http.Request) {
	if err := h.cloud.DeleteAccount(r.Context(), r.PathValue("account")); err != nil {
		writeCloudError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) discoverCloudClusters(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	ds, err := h.cloud.Discover(ctx, r.PathValue("account"), r.URL.Query()["scope"])
	if err != nil {
		writeCloudError(w, err)
		return
	}
	if ds == nil {
		ds = []cloud.Discovered{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clusters": ds})
}

func (h *Hub) importCloudClusters(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Clusters []cloud.ImportItem `json:"clusters"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	res, err := h.cloud.Import(ctx, r.PathValue("account"), req.Clusters)
	if err != nil {
		writeCloudError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	for _, x := range res {
		if x.ClusterID != "" {
			h.audit.Record(store.AuditEvent{User: ident.Name, TokenID: ident.TokenID, Source: "api", Verb: "import-cloud-cluster",
				ClusterID: x.ClusterID, Path: r.URL.Path, Code: http.StatusCreated, RemoteAddr: r.RemoteAddr})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": res})
}
