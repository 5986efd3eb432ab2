package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/eco-project/eco/store"
)

// kubeTimeout bounds each dashboard's reads from a cluster.
const kubeTimeout = 20 * time.Second

// logTailLines is how many lines of a container's log the pod page shows.
const logTailLines = 200

// dash is the data every dashboard page shares.
type dash struct {
	// NotConnected is set when the cluster has no tunnel: the page says so
	// instead of trying.
	NotConnected bool
	Namespace    string   // "" for all namespaces
	Namespaces   []string // for the selector; nil if they cannot be listed
	// Errs holds, by section, why a section could not be read (e.g. the
	// cluster's RBAC forbids it).
	Errs map[string]string
	Page any // the dashboard's own data

	mu sync.Mutex // guards Errs while sections load in parallel
}

// try records err for section and reports whether there was none.
func (d *dash) try(section string, err error) bool {
	if err == nil {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Errs[section] = kubeMessage(err)
	return false
}

// kubeMessage explains a Kubernetes error to a user.
func kubeMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		switch s.Reason {
		case metav1.StatusReasonForbidden:
			return "The cluster's RBAC does not allow this: " + s.Message
		case metav1.StatusReasonNotFound:
			return "Not found: " + s.Message
		}
		return s.Message
	}
	return err.Error()
}

// parallel runs fns at once and waits for them.
func parallel(fns ...func()) {
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Go(f)
	}
	wg.Wait()
}

// dashboard serves a dashboard page: it loads the cluster, says plainly
// when ECO is not connected, and otherwise calls fill with a client that
// reaches the cluster through its tunnel as the signed-in user.
func (u *UI) dashboard(name string, fill func(ctx context.Context, cs kubernetes.Interface, r *http.Request, d *dash) error) func(http.ResponseWriter, *http.Request, *request) {
	titles := map[string]string{"workloads": "Workloads", "pod": "Pod", "storage": "Storage", "rbac": "RBAC", "monitoring": "Monitoring"}
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		c, ok := u.cluster(w, r, rq)
		if !ok {
			return
		}
		section := name
		if name == "pod" {
			section = "workloads"
		}
		v := u.clusterView(rq, &c, titles[name], section)
		d := &dash{Namespace: r.URL.Query().Get("ns"), Errs: map[string]string{}}
		v.Data = d
		if name == "pod" {
			d.Namespace = r.PathValue("ns")
		}
		if !v.Connected {
			d.NotConnected = true
			u.render(w, r, http.StatusOK, name, v)
			return
		}
		cs, err := u.kube(c.ID, rq)
		if err != nil {
			u.logger.Error("cluster client", "cluster", c.ID, "err", err)
			u.fail(w, r, rq, http.StatusInternalServerError, "A client for this cluster could not be made.")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), kubeTimeout)
		defer cancel()
		parallel(func() {
			if name == "pod" {
				return
			}
			nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if err == nil {
				for _, ns := range nss.Items {
					d.Namespaces = append(d.Namespaces, ns.Name)
				}
			}
		}, func() {
			err = fill(ctx, cs, r, d)
		})
		if err != nil {
			code := http.StatusBadGateway
			if apierrors.IsNotFound(err) {
				code = http.StatusNotFound
			} else if apierrors.IsForbidden(err) {
				code = http.StatusForbidden
			}
			u.fail(w, r, rq, code, kubeMessage(err))
			return
		}
		switch r.URL.Query().Get("bound") {
		case "":
		default:
			v.Flash = "Created binding " + r.URL.Query().Get("bound") + "."
		}
		u.render(w, r, http.StatusOK, name, v)
	}
}

// kube returns a clientset for cluster id acting as rq's user. Its tunnel
// streams come from the hub's shared pool, so there is nothing to release.
func (u *UI) kube(id string, rq *request) (kubernetes.Interface, error) {
	cfg, err := u.hub.ClusterConfig(id, rq.ident)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = kubeTimeout
	return kubernetes.NewForConfig(cfg)
}

type workloadsData struct {
	Pods         []corev1.Pod
	Deployments  []appsv1.Deployment
	StatefulSets []appsv1.StatefulSet
	DaemonSets   []appsv1.DaemonSet
	Jobs         []batchv1.Job
	CronJobs     []batchv1.CronJob
	Services     []corev1.Service
}

func (u *UI) workloads(ctx context.Context, cs kubernetes.Interface, r *http.Request, d *dash) error {
	ns, o := d.Namespace, metav1.ListOptions{}
	p := &workloadsData{}
	d.Page = p
	parallel(
		func() {
			l, err := cs.CoreV1().Pods(ns).List(ctx, o)
			if d.try("pods", err) {
				p.Pods = l.Items
			}
		},
		func() {
			l, err := cs.AppsV1().Deployments(ns).List(ctx, o)
			if d.try("deployments", err) {
				p.Deployments = l.Items
			}
		},
		func() {
			l, err := cs.AppsV1().StatefulSets(ns).List(ctx, o)
			if d.try("statefulsets", err) {
				p.StatefulSets = l.Items
			}
		},
		func() {
			l, err := cs.AppsV1().DaemonSets(ns).List(ctx, o)
			if d.try("daemonsets", err) {
				p.DaemonSets = l.Items
			}
		},
		func() {
			l, err := cs.BatchV1().Jobs(ns).List(ctx, o)
			if d.try("jobs", err) {
				p.Jobs = l.Items
			}
		},
		func() {
			l, err := cs.BatchV1().CronJobs(ns).List(ctx, o)
			if d.try("cronjobs", err) {
				p.CronJobs = l.Items
			}
		},
		func() {
			l, err := cs.CoreV1().Services(ns).List(ctx, o)
			if d.try("services", err) {
				p.Services = l.Items
			}
		},
	)
	return nil
}

type podData struct {
	Pod       *corev1.Pod
	Events    []corev1.Event
	Container string
	Log       string
}

func (u *UI) pod(ctx context.Context, cs kubernetes.Interface, r *http.Request, d *dash) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	p := &podData{Pod: pod, Container: r.URL.Query().Get("container")}
	d.Page = p
	if p.Container == "" && len(pod.Spec.Containers) > 0 {
		p.Container = pod.Spec.Containers[0].Name
	}
	parallel(
		func() {
			l, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + name,
			})
			if d.try("events", err) {
				p.Events = newestEvents(l.Items, 100)
			}
		},
		func() {
			tail, limit := int64(logTailLines), int64(256<<10)
			b, err := cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{
				Container: p.Container, TailLines: &tail, LimitBytes: &limit,
			}).DoRaw(ctx)
			if d.try("logs", err) {
				p.Log = string(b)
			}
		},
	)
	return nil
}

// eventTime is when an event last happened, whichever field has it.
func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func newestEvents(evs []corev1.Event, n int) []corev1.Event {
	slices.SortFunc(evs, func(a, b corev1.Event) int { return eventTime(b).Compare(eventTime(a)) })
	if len(evs) > n {
		evs = evs[:n]
	}
	return evs
}

type storageData struct {
	PersistentVolumes      []corev1.PersistentVolume
	PersistentVolumeClaims []corev1.PersistentVolumeClaim
	StorageClasses         []storagev1.StorageClass
}

func (u *UI) storage(ctx context.Context, cs kubernetes.Interface, r *http.Request, d *dash) error {
	p := &storageData{}
	d.Page = p
	o := metav1.ListOptions{}
	parallel(
		func() {
			l, err := cs.CoreV1().PersistentVolumes().List(ctx, o)
			if d.try("pvs", err) {
				p.PersistentVolumes = l.Items
			}
		},
		func() {
			l, err := cs.CoreV1().PersistentVolumeClaims(d.Namespace).List(ctx, o)
			if d.try("pvcs", err) {
				p.PersistentVolumeClaims = l.Items
			}
		},
		func() {
			l, err := cs.StorageV1().StorageClasses().List(ctx, o)
			if d.try("storageclasses", err) {
				p.StorageClasses = l.Items
			}
		},
	)
	return nil
}

type rbacData struct {
	ShowSystem          bool
	HiddenSystem        int
	Roles               []rbacv1.Role
	ClusterRoles        []rbacv1.ClusterRole
	RoleBindings        []rbacv1.RoleBinding
	ClusterRoleBindings []rbacv1.ClusterRoleBinding
	ServiceAccounts     []corev1.ServiceAccount
	SystemURL           string
}

// isSystem reports whether an RBAC object is Kubernetes' own.
func isSystem(name string) bool { return strings.HasPrefix(name, "system:") }

func (u *UI) rbac(ctx context.Context, cs kubernetes.Interface, r *http.Request, d *dash) error {
	p := &rbacData{ShowSystem: r.URL.Query().Get("system") == "1"}
	d.Page = p
	q := url.Values{}
	if d.Namespace != "" {
		q.Set("ns", d.Namespace)
	}
	if !p.ShowSystem {
		q.Set("system", "1")
	}
	p.SystemURL = "?" + q.Encode()
	ns, o := d.Namespace, metav1.ListOptions{}
	var hidden1, hidden2 int
	parallel(
		func() {
			l, err := cs.RbacV1().Roles(ns).List(ctx, o)
			if d.try("roles", err) {
				p.Roles = l.Items
			}
		},
		func() {
			l, err := cs.RbacV1().ClusterRoles().List(ctx, o)
			if d.try("clusterroles", err) {
				for _, cr := range l.Items {
					if p.ShowSystem || !isSystem(cr.Name) {
						p.ClusterRoles = append(p.ClusterRoles, cr)
					} else {
						hidden1++
					}
				}
			}
		},
		func() {
			l, err := cs.RbacV1().RoleBindings(ns).List(ctx, o)
			if d.try("rolebindings", err) {
				p.RoleBindings = l.Items
			}
		},
		func() {
			l, err := cs.RbacV1().ClusterRoleBindings().List(ctx, o)
			if d.try("clusterrolebindings", err) {
				for _, b := range l.Items {
					if p.ShowSystem || !isSystem(b.Name) {
						p.ClusterRoleBindings = append(p.ClusterRoleBindings, b)
					} else {
						hidden2++
					}
				}
			}
		},
		func() {
			l, err := cs.CoreV1().ServiceAccounts(ns).List(ctx, o)
			if d.try("serviceaccounts", err) {
				p.ServiceAccounts = l.Items
			}
		},
	)
	p.HiddenSystem = hidden1 + hidden2
	return nil
}

// bindingNameUnsafe matches what a binding's generated name may not hold.
var bindingNameUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// bind creates a RoleBinding (namespace given) or ClusterRoleBinding that
// grants a hub user or group a role, as the signed-in user: the cluster's
// RBAC decides whether that user may.
func (u *UI) bind(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	f := r.PostForm
	subjectKind, subject := f.Get("subjectKind"), strings.TrimSpace(f.Get("subject"))
	roleKind, role, ns := f.Get("roleKind"), strings.TrimSpace(f.Get("role")), strings.TrimSpace(f.Get("namespace"))
	switch {
	case subjectKind != rbacv1.UserKind && subjectKind != rbacv1.GroupKind:
		u.fail(w, r, rq, http.StatusBadRequest, "Bind a User or a Group.")
		return
	case subject == "" || role == "":
		u.fail(w, r, rq, http.StatusBadRequest, "Name the user or group, and the role.")
		return
	case roleKind != "ClusterRole" && roleKind != "Role":
		u.fail(w, r, rq, http.StatusBadRequest, "The role is a ClusterRole or a Role.")
		return
	case roleKind == "Role" && ns == "":
		u.fail(w, r, rq, http.StatusBadRequest, "A Role exists in a namespace: choose one.")
		return
	}
	if !u.hub.Connected(c.ID) {
		u.fail(w, r, rq, http.StatusServiceUnavailable, "ECO is not connected to "+c.Name+", so the hub cannot reach its API server.")
		return
	}
	cs, err := u.kube(c.ID, rq)
	if err != nil {
		u.fail(w, r, rq, http.StatusInternalServerError, "A client for this cluster could not be made.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), kubeTimeout)
	defer cancel()
	meta := metav1.ObjectMeta{
		GenerateName: "eco-" + strings.Trim(bindingNameUnsafe.ReplaceAllString(strings.ToLower(subject+"-"+role), "-"), "-") + "-",
		Labels:       map[string]string{"app.kubernetes.io/managed-by": "eco-hub"},
		Annotations:  map[string]string{"eco.dev/created-by": rq.ident.Name},
	}
	subjects := []rbacv1.Subject{{Kind: subjectKind, Name: subject, APIGroup: rbacv1.GroupName}}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: roleKind, Name: role}
	var name string
	if ns == "" {
		b, err2 := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: subjects, RoleRef: ref}, metav1.CreateOptions{})
		if err = err2; err == nil {
			name = b.Name
		}
	} else {
		b, err2 := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: subjects, RoleRef: ref}, metav1.CreateOptions{})
		if err = err2; err == nil {
			name = ns + "/" + b.Name
		}
	}
	if err != nil {
		code := http.StatusBadGateway
		var st apierrors.APIStatus
		if errors.As(err, &st) && st.Status().Code >= 400 {
			code = int(st.Status().Code)
		}
		u.fail(w, r, rq, code, "The cluster refused the binding. "+kubeMessage(err))
		return
	}
	u.logger.Info("role bound", "cluster", c.ID, "binding", name, "subject", subject, "role", role, "by", rq.ident.Name)
	q := url.Values{"bound": {name}}
	if ns != "" {
		q.Set("ns", ns)
	}
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"/rbac?"+q.Encode(), http.StatusSeeOther)
}

// usage is one object's CPU and memory use from metrics.k8s.io.
type usage struct {
	Namespace, Name string
	CPU, Memory     string
}

type monitoringData struct {
	Nodes []corev1.Node
	// MetricsMissing is set when the cluster does not serve
	// metrics.k8s.io.
	MetricsMissing bool
	NodeUsage      []usage
	PodUsage       []usage
	Events         []corev1.Event
	// Prometheus is what the monitoring add-on provides, if installed
	// (apps.go).
	Prometheus *promData
}

// metricsList is the part of a metrics.k8s.io NodeMetricsList or
// PodMetricsList the page shows.
type metricsList struct {
	Items []struct {
		Metadata   metav1.ObjectMeta `json:"metadata"`
		Usage      corev1.ResourceList
		Containers []struct {
			Usage corev1.ResourceList `json:"usage"`
		} `json:"containers"`
	} `json:"items"`
}

func (u *UI) metrics(ctx context.Context, cs kubernetes.Interface, path string) ([]usage, error) {
	b, err := cs.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var l metricsList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	var out []usage
	for _, it := range l.Items {
		use := it.Usage
		if len(it.Containers) > 0 {
			var cpu, mem resource.Quantity
			for _, c := range it.Containers {
				cpu.Add(c.Usage[corev1.ResourceCPU])
				mem.Add(c.Usage[corev1.ResourceMemory])
			}
			use = corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}
		}
		cpu, mem := use[corev1.ResourceCPU], use[corev1.ResourceMemory]
		out = append(out, usage{Namespace: it.Metadata.Namespace, Name: it.Metadata.Name, CPU: cpu.String(), Memory: mem.String()})
	}
	return out, nil
}

func (u *UI) monitoring(ctx context.Context, cs kubernetes.Interface, r *http.Request, d *dash) error {
	p := &monitoringData{}
	d.Page = p
	podMetrics := "/apis/metrics.k8s.io/v1beta1/pods"
	if d.Namespace != "" {
		podMetrics = "/apis/metrics.k8s.io/v1beta1/namespaces/" + url.PathEscape(d.Namespace) + "/pods"
	}
	parallel(
		func() {
			l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if d.try("nodes", err) {
				p.Nodes = l.Items
			}
		},
		func() {
			l, err := cs.CoreV1().Events(d.Namespace).List(ctx, metav1.ListOptions{Limit: 500})
			if d.try("events", err) {
				p.Events = newestEvents(l.Items, 50)
			}
		},
		func() {
			nodes, err := u.metrics(ctx, cs, "/apis/metrics.k8s.io/v1beta1/nodes")
			if apierrors.IsNotFound(err) {
				p.MetricsMissing = true
				return
			}
			if d.try("metrics", err) {
				p.NodeUsage = nodes
			}
			pods, err := u.metrics(ctx, cs, podMetrics)
			if d.try("metrics", err) {
				p.PodUsage = pods
			}
		},
		func() { p.Prometheus = prometheusFromAddon(ctx, cs) },
	)
	return nil
}

// Used by templates: whether a store state means trouble.
func stateBad(s store.State) bool { return s != store.StateConnected }
