package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/tunnel"
)

// Backoff of the namespace watch after API errors. Its cap also bounds how
// long after the API server comes back the agent notices (besides the
// periodic self-check).
const (
	watchBackoffInitial = 250 * time.Millisecond
	watchBackoffMax     = 5 * time.Second
)

// watchNamespace watches the agent's namespace (with a field selector on
// its name: the agent may not list other namespaces) and sends a goodbye
// reason on removed once the namespace is being deleted or is gone.
func (a *Agent) watchNamespace(ctx context.Context, removed chan<- string) {
	b := tunnel.Backoff{Initial: watchBackoffInitial, Max: watchBackoffMax}
	for {
		reason, err := a.watchNamespaceOnce(ctx, &b)
		if reason != "" {
			removed <- reason // buffered; sent once
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Debug("watching the namespace", "namespace", a.cfg.Namespace, "err", err)
			a.triggerCheck() // the API server may be gone: tell the hub soon
			if b.Wait(ctx) != nil {
				return
			}
		}
	}
}

// namespaceQuery selects the agent's namespace.
func (a *Agent) namespaceQuery() url.Values {
	return url.Values{"fieldSelector": {"metadata.name=" + a.cfg.Namespace}}
}

// watchNamespaceOnce lists the namespace, then watches it until the watch
// fails. It returns a goodbye reason when the agent must go, nil after a
// "resource version too old" error (list again), or the error that ended
// the watch.
func (a *Agent) watchNamespaceOnce(ctx context.Context, b *tunnel.Backoff) (string, error) {
	var list corev1.NamespaceList
	if err := a.api.get(ctx, "/api/v1/namespaces", a.namespaceQuery(), &list); err != nil {
		return "", fmt.Errorf("listing namespace %s: %w", a.cfg.Namespace, err)
	}
	if b.Attempt() > 0 {
		a.triggerCheck() // the API server is back
		b.Reset()
	}
	if len(list.Items) == 0 {
		if r := a.namespaceGone(); r != "" {
			return r, nil
		}
		return "", fmt.Errorf("namespace %s not found", a.cfg.Namespace)
	}
	if r := a.observeNamespace(ctx, &list.Items[0]); r != "" {
		return r, nil
	}
	rv := list.ResourceVersion
	for {
		q := a.namespaceQuery()
		q.Set("watch", "1")
		q.Set("resourceVersion", rv)
		q.Set("allowWatchBookmarks", "true")
		q.Set("timeoutSeconds", strconv.Itoa(300+rand.IntN(300)))
		resp, err := a.api.request(ctx, http.MethodGet, "/api/v1/namespaces", q, "", nil)
		if err != nil {
			return "", fmt.Errorf("watching namespace %s: %w", a.cfg.Namespace, err)
		}
		reason, next, err := a.readWatch(ctx, resp, rv)
		resp.Body.Close()
		if reason != "" || err != nil {
			return reason, err
		}
		if next == "" {
			return "", nil // too old: list again
		}
		rv = next
	}
}

// readWatch reads one watch response until it ends. It returns a goodbye
// reason, or the resource version to watch from next ("" to list again),
// or an error.
func (a *Agent) readWatch(ctx context.Context, resp *http.Response, rv string) (reason, next string, err error) {
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return "", rv, nil // the server ended the watch: watch again
			}
			return "", "", fmt.Errorf("watching namespace %s: %w", a.cfg.Namespace, err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			var ns corev1.Namespace
			if err := json.Unmarshal(ev.Object, &ns); err != nil {
				return "", "", fmt.Errorf("decoding namespace event: %w", err)
			}
			rv = ns.ResourceVersion
			if r := a.observeNamespace(ctx, &ns); r != "" {
				return r, "", nil
			}
		case "DELETED":
			var ns corev1.Namespace
			if err := json.Unmarshal(ev.Object, &ns); err == nil {
				a.observeNamespace(ctx, &ns)
			}
			return a.goneReason(), "", nil
		case "BOOKMARK":
			var ns metav1.PartialObjectMetadata
			if err := json.Unmarshal(ev.Object, &ns); err == nil && ns.ResourceVersion != "" {
				rv = ns.ResourceVersion
			}
		case "ERROR":
			var st metav1.Status
			if err := json.Unmarshal(ev.Object, &st); err != nil {
				return "", "", fmt.Errorf("decoding watch error: %w", err)
			}
			if st.Code == http.StatusGone {
				return "", "", nil
			}
			return "", "", fmt.Errorf("watching namespace %s: %w", a.cfg.Namespace, &apierrors.StatusError{ErrStatus: st})
		}
	}
}

// observeNamespace records what the agent saw of its namespace and returns
// a goodbye reason if the namespace is being deleted (or was replaced by a
// new one of the same name). The first time, it makes the namespace the
// owner of the install's cluster-scoped objects.
func (a *Agent) observeNamespace(ctx context.Context, ns *corev1.Namespace) string {
	a.mu.Lock()
	seen := a.nsUID
	if seen == "" {
		a.nsUID = ns.UID
	}
	done := a.ownerRefsDone
	a.mu.Unlock()
	if seen != "" && seen != ns.UID {
		return a.goneReason()
	}
	if ns.DeletionTimestamp != nil {
		return a.deletingReason()
	}
	if !done {
		a.ensureOwnerRefs(ctx, ns.UID)
	}
	return ""
}

func (a *Agent) deletingReason() string {
	return fmt.Sprintf("namespace %s is being deleted", a.cfg.Namespace)
}

func (a *Agent) goneReason() string {
	return fmt.Sprintf("namespace %s was deleted", a.cfg.Namespace)
}

// namespaceGone returns a goodbye reason if the agent saw its namespace
// before: a namespace the agent never saw missing means a configuration
// mistake (a wrong --namespace), not a removal, and must not make it delete
// the install's RBAC.
func (a *Agent) namespaceGone() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nsUID == "" {
		return ""
	}
	return a.goneReason()
}

// namespaceRemoval gets the namespace and returns a goodbye reason if it is
// being deleted or gone, "" if not.
func (a *Agent) namespaceRemoval(ctx context.Context) (string, error) {
	var ns corev1.Namespace
	err := a.api.get(ctx, "/api/v1/namespaces/"+url.PathEscape(a.cfg.Namespace), nil, &ns)
	if apierrors.IsNotFound(err) {
		return a.namespaceGone(), nil
	}
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	seen := a.nsUID
	a.mu.Unlock()
	if ns.DeletionTimestamp != nil || (seen != "" && seen != ns.UID) {
		return a.deletingReason(), nil
	}
	return "", nil
}

// ensureOwnerRefs makes the namespace the owner of each object of
// install.ClusterScopedObjects, so that the garbage collector deletes them
// once the namespace is gone, even if the agent cannot. Best effort: a
// missing object is skipped, a refusal logged; a transient error leaves the
// work for the next time the namespace is listed.
func (a *Agent) ensureOwnerRefs(ctx context.Context, uid types.UID) {
	ref := install.NamespaceOwnerReference(a.cfg.Namespace, uid)
	// A strategic merge patch merges ownerReferences by UID: it keeps any
	// other owner, and changes nothing when the reference is there.
	patch := map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{ref}}}
	done := true
	for _, o := range install.ClusterScopedObjects() {
		err := a.api.do(ctx, http.MethodPatch, resourcePath(o.Resource, o.Name), nil,
			"application/strategic-merge-patch+json", patch, nil)
		switch {
		case err == nil:
			a.log.Debug("owner reference set", "resource", o.Resource.Resource, "name", o.Name, "owner", a.cfg.Namespace)
		case apierrors.IsNotFound(err):
			a.log.Info("install object not found; not setting its owner", "resource", o.Resource.Resource, "name", o.Name)
		case apierrors.IsForbidden(err):
			a.log.Warn("may not set the owner of an install object; it will outlive the namespace unless the agent deletes it",
				"resource", o.Resource.Resource, "name", o.Name, "err", err)
		default:
			a.log.Warn("setting the owner of an install object", "resource", o.Resource.Resource, "name", o.Name, "err", err)
			done = false
		}
	}
	a.mu.Lock()
	a.ownerRefsDone = done
	a.mu.Unlock()
}

// deleteClusterObjects deletes the install's cluster-scoped objects in the
// order of install.ClusterScopedObjects. Deleting its own binding takes the
// agent's permissions away, so later deletions are expected to be
// forbidden; the garbage collector deletes those once the namespace is gone.
func (a *Agent) deleteClusterObjects(ctx context.Context) {
	for _, o := range install.ClusterScopedObjects() {
		err := a.api.do(ctx, http.MethodDelete, resourcePath(o.Resource, o.Name), nil, "", nil, nil)
		switch {
		case err == nil:
			a.log.Info("deleted", "resource", o.Resource.Resource, "name", o.Name)
		case apierrors.IsNotFound(err):
			a.log.Info("already deleted", "resource", o.Resource.Resource, "name", o.Name)
		case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
			a.log.Info("may no longer delete; the garbage collector will", "resource", o.Resource.Resource, "name", o.Name)
		default:
			a.log.Warn("deleting", "resource", o.Resource.Resource, "name", o.Name, "err", err)
		}
	}
}
