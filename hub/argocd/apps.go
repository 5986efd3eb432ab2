package argocd

import (
	"context"
	"fmt"
	"net/url"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// applicationsGVR is Argo CD's Application resource.
var applicationsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// Application is an Argo CD Application whose destination is a cluster.
type Application struct {
	Instance  string `json:"instance"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Project   string `json:"project,omitempty"`
	// Sync and Health are Argo CD's status.sync.status and
	// status.health.status (e.g. Synced, Healthy); empty before Argo CD
	// has looked.
	Sync   string `json:"sync,omitempty"`
	Health string `json:"health,omitempty"`
	// Link is the Application's page in Argo CD's UI, if the instance's
	// URL is configured.
	Link string `json:"link,omitempty"`
}

// Applications returns the Applications of every instance whose
// destination is cluster id (by the hub's server URL for it, or by its
// name), read from Argo CD's Application objects. An instance that cannot
// be read is reported in errs, by instance name.
func (r *Registrar) Applications(ctx context.Context, id, name string) (apps []Application, errs map[string]string) {
	server := ServerURL(r.hub.ExternalURL(), id)
	for _, in := range r.instances {
		list, err := in.dynamic.Resource(applicationsGVR).Namespace(in.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			if errs == nil {
				errs = map[string]string{}
			}
			errs[in.Name] = fmt.Sprintf("listing Applications: %v", err)
			continue
		}
		for _, u := range list.Items {
			dServer, _, _ := unstructured.NestedString(u.Object, "spec", "destination", "server")
			dName, _, _ := unstructured.NestedString(u.Object, "spec", "destination", "name")
			if dServer != server && (dName == "" || dName != name) {
				continue
			}
			a := Application{Instance: in.Name, Namespace: u.GetNamespace(), Name: u.GetName()}
			a.Project, _, _ = unstructured.NestedString(u.Object, "spec", "project")
			a.Sync, _, _ = unstructured.NestedString(u.Object, "status", "sync", "status")
			a.Health, _, _ = unstructured.NestedString(u.Object, "status", "health", "status")
			if in.URL != "" {
				a.Link = in.URL + "/applications/" + url.PathEscape(a.Namespace) + "/" + url.PathEscape(a.Name)
			}
			apps = append(apps, a)
		}
	}
	sort.Slice(apps, func(i, j int) bool {
		if apps[i].Instance != apps[j].Instance {
			return apps[i].Instance < apps[j].Instance
		}
		return apps[i].Name < apps[j].Name
	})
	return apps, errs
}

// applicationsFor returns the names of in's Applications whose
// destination is cluster id, for the log when it is unregistered; nil if
// there are none or they cannot be read.
func (r *Registrar) applicationsFor(ctx context.Context, in *instance, id string) []string {
	server := ServerURL(r.hub.ExternalURL(), id)
	list, err := in.dynamic.Resource(applicationsGVR).Namespace(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var names []string
	for _, u := range list.Items {
		if s, _, _ := unstructured.NestedString(u.Object, "spec", "destination", "server"); s == server {
			names = append(names, u.GetName())
		}
	}
	return names
}
