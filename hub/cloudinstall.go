package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/store"
)

// One-click install: the hub applies a cluster's install YAML itself, with
// credentials from the cloud account the cluster was imported from
// (docs/cloud.md). Private API servers keep the copy-the-YAML flow.

// CloudInstall is the result of InstallFromCloud.
type CloudInstall struct {
	ClusterID string   `json:"clusterId"`
	Applied   []string `json:"applied"` // kind/namespace/name
}

// InstallFromCloud applies cluster id's install YAML to the cluster with
// credentials its cloud hands out (server-side apply, field manager
// eco-hub). It fails with cloud.ErrPrivateEndpoint or cloud.ErrNoOneClick
// where the YAML must be applied by hand.
func (h *Hub) InstallFromCloud(ctx context.Context, id string) (CloudInstall, error) {
	c, err := h.store.GetCluster(ctx, id)
	if err != nil {
		return CloudInstall{}, fmt.Errorf("installing ECO: %w", err)
	}
	if c.CloudRef == "" {
		return CloudInstall{}, fmt.Errorf("installing ECO: %w", cloud.ErrNoOneClick)
	}
	acc, provider, err := h.cloud.Access(ctx, c.CloudRef)
	if err != nil {
		return CloudInstall{}, fmt.Errorf("installing ECO: %w", err)
	}
	cfg, err := accessConfig(acc)
	if err != nil {
		return CloudInstall{}, fmt.Errorf("installing ECO: the cloud's credentials: %w", err)
	}
	cfg.UserAgent = "eco-hub/" + h.cfg.Version
	cfg.Timeout = 30 * time.Second
	yaml, err := h.InstallYAML(id)
	if err != nil {
		return CloudInstall{}, err
	}
	applied, err := applyYAML(ctx, cfg, yaml)
	if err != nil {
		return CloudInstall{}, fmt.Errorf("installing ECO: %w", err)
	}
	if err := h.store.NoteStatus(ctx, id, fmt.Sprintf("ECO install YAML applied by the hub with credentials from %s", providerName(provider))); err != nil {
		h.logger.Warn("cannot note the install in the status history", "cluster", id, "err", err)
	}
	ident, _ := identityFrom(ctx)
	h.logger.Info("ECO installed from the cloud", "cluster", id, "provider", provider, "objects", len(applied), "by", ident.Name)
	return CloudInstall{ClusterID: id, Applied: applied}, nil
}

func providerName(p store.Provider) string {
	switch string(p) {
	case "eks":
		return "EKS"
	case "aks":
		return "AKS's credential API"
	case "gke":
		return "GKE"
	}
	return string(p)
}

func accessConfig(a cloud.ClusterAccess) (*rest.Config, error) {
	if len(a.Kubeconfig) > 0 {
		return clientcmd.RESTConfigFromKubeConfig(a.Kubeconfig)
	}
	if a.Server == "" {
		return nil, errors.New("no API server address")
	}
	return &rest.Config{Host: a.Server, BearerToken: a.BearerToken, TLSClientConfig: rest.TLSClientConfig{CAData: a.CAData}}, nil
}

// applyYAML server-side applies every object of a multi-document YAML, in
// order, and returns kind/namespace/name of each.
func applyYAML(ctx context.Context, cfg *rest.Config, yaml []byte) ([]string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var applied []string
	dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(yaml), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return applied, nil
		} else if err != nil {
			return applied, fmt.Errorf("reading the install YAML: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return applied, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "eco-hub", Force: true}); err != nil {
			return applied, fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
		applied = append(applied, gvk.Kind+"/"+u.GetNamespace()+"/"+u.GetName())
	}
}

func (h *Hub) cloudInstall(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	res, err := h.InstallFromCloud(ctx, r.PathValue("id"))
	switch {
	case errors.Is(err, cloud.ErrPrivateEndpoint), errors.Is(err, cloud.ErrNoOneClick):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errCredentialKeyGone):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		writeCloudError(w, err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}
