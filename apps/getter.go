package apps

import (
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// restGetter is the RESTClientGetter Helm's action.Configuration is built
// from: a client-go config through the hub's access chain (Hub.ClusterConfig
// for the acting identity) and the release namespace.
//
// The namespace matters: Helm's kube client asks ToRawKubeConfigLoader for
// the namespace of namespaced objects a chart leaves without one; a getter
// that answers "" puts them in "default" (helm#9256). It answers the
// release namespace.
type restGetter struct {
	cfg       *rest.Config
	namespace string

	once   sync.Once
	dc     discovery.CachedDiscoveryInterface
	mapper meta.RESTMapper
	err    error
}

func newRESTGetter(cfg *rest.Config, namespace string) *restGetter {
	return &restGetter{cfg: cfg, namespace: namespace}
}

func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }

func (g *restGetter) init() {
	g.once.Do(func() {
		d, err := discovery.NewDiscoveryClientForConfig(rest.CopyConfig(g.cfg))
		if err != nil {
			g.err = err
			return
		}
		g.dc = memory.NewMemCacheClient(d)
		g.mapper = restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(g.dc), g.dc, nil)
	})
}

func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	g.init()
	return g.dc, g.err
}

func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) {
	g.init()
	return g.mapper, g.err
}

func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return namespaceConfig{g}
}

// namespaceConfig is the clientcmd.ClientConfig of a restGetter: its
// namespace (explicitly set, so Helm does not fall back to "default") and
// its rest.Config. There is no kubeconfig file behind it.
type namespaceConfig struct{ g *restGetter }

func (c namespaceConfig) RawConfig() (clientcmdapi.Config, error) {
	cfg := clientcmdapi.NewConfig()
	ctx := clientcmdapi.NewContext()
	ctx.Namespace = c.g.namespace
	cfg.Contexts["eco"] = ctx
	cfg.CurrentContext = "eco"
	return *cfg, nil
}

func (c namespaceConfig) ClientConfig() (*rest.Config, error) { return c.g.ToRESTConfig() }

func (c namespaceConfig) Namespace() (string, bool, error) {
	if c.g.namespace == "" {
		return "default", false, nil
	}
	return c.g.namespace, true, nil
}

func (c namespaceConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}
