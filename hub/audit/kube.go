package audit

import (
	"net/http"
	"net/url"
	"strings"
)

// KubeRequest is what a Kubernetes API request acts on, read from its
// method, path and query the way kube-apiserver reads them (its
// RequestInfo), for the audit log and the proxy's decisions.
type KubeRequest struct {
	// Verb is get, list, watch, create, update, patch, delete,
	// deletecollection or connect for resource requests; the lower-case
	// HTTP method for others.
	Verb string
	// Resource is empty for a non-resource path (/version, /healthz, …).
	APIGroup, APIVersion, Resource, Subresource, Namespace, Name string
}

// Mutates reports whether the request may change the cluster: anything
// but get, list, watch and the read-only HTTP methods. connect (exec,
// attach, port-forward, proxy) counts, since it can.
func (k KubeRequest) Mutates() bool {
	switch k.Verb {
	case "get", "list", "watch", "head", "options":
		return false
	}
	return true
}

// ParseKubeRequest reads r's Kubernetes verb and target. path is the API
// path (without the hub's /clusters/{id}/k8s prefix).
func ParseKubeRequest(method, path string, query url.Values, upgrade bool) KubeRequest {
	var k KubeRequest
	parts := splitPath(path)
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		k.APIVersion, parts = parts[1], parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		k.APIGroup, k.APIVersion, parts = parts[1], parts[2], parts[3:]
	default:
		k.Verb = strings.ToLower(method)
		return k // a non-resource path
	}
	// namespaces/{ns}/{resource}/… names a namespaced resource; the
	// namespace object itself is namespaces/{ns}[/{subresource}].
	if len(parts) >= 3 && parts[0] == "namespaces" && parts[2] != "status" && parts[2] != "finalize" {
		k.Namespace, parts = parts[1], parts[2:]
	}
	switch len(parts) {
	case 0:
	case 1:
		k.Resource = parts[0]
	case 2:
		k.Resource, k.Name = parts[0], parts[1]
	default:
		k.Resource, k.Name, k.Subresource = parts[0], parts[1], strings.Join(parts[2:], "/")
	}
	if k.Resource == "namespaces" && k.Namespace == "" && k.Name != "" {
		k.Namespace = k.Name
	}
	watch := query.Get("watch") == "true" || query.Get("watch") == "1"
	switch method {
	case http.MethodGet, http.MethodHead:
		switch {
		case upgrade:
			k.Verb = "connect"
		case watch:
			k.Verb = "watch"
		case k.Name == "":
			k.Verb = "list"
		default:
			k.Verb = "get"
		}
	case http.MethodPost:
		k.Verb = "create"
		if upgrade || isConnect(k.Subresource) {
			k.Verb = "connect"
		}
	case http.MethodPut:
		k.Verb = "update"
	case http.MethodPatch:
		k.Verb = "patch"
	case http.MethodDelete:
		k.Verb = "delete"
		if k.Name == "" {
			k.Verb = "deletecollection"
		}
	default:
		k.Verb = strings.ToLower(method)
	}
	return k
}

// isConnect reports whether a subresource is one of the streaming
// "connect" ones.
func isConnect(sub string) bool {
	switch sub {
	case "exec", "attach", "portforward", "proxy":
		return true
	}
	return strings.HasPrefix(sub, "proxy/")
}

// splitPath splits p at slashes, dropping empty segments.
func splitPath(p string) []string {
	var parts []string
	for s := range strings.SplitSeq(p, "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}
