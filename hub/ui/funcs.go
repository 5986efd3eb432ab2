package ui

import (
	"fmt"
	"html/template"
	rbacv1 "k8s.io/api/rbac/v1"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eco-project/eco/store"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"provider":  providerLabel,
	"bad":       stateBad,
	"ts":        timestamp,
	"age":       age,
	"since":     func(t time.Time) string { return age(metav1.NewTime(t)) },
	"podStatus": podStatus,
	"podReady":  podReady,
	"restarts":  restarts,
	"deployReady": func(d appsv1.Deployment) string {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want)
	},
	"stsReady": func(s appsv1.StatefulSet) string {
		want := int32(1)
		if s.Spec.Replicas != nil {
			want = *s.Spec.Replicas
		}
		return fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, want)
	},
	"nodeReady":  nodeReady,
	"eventTime":  func(e corev1.Event) string { return age(metav1.NewTime(eventTime(e))) },
	"qty":        func(l corev1.ResourceList, name string) string { q := l[corev1.ResourceName(name)]; return q.String() },
	"join":       strings.Join,
	"rtt":        func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	"ports":      servicePorts,
	"subjects":   subjects,
	"suspended":  func(b *bool) bool { return b != nil && *b },
	"labelsText": labelsText,
	"st":         func(s store.State) store.Status { return store.Status{State: s} },

	// Cloud health (cloud.go).
	"healthClass": healthClass,
}

func providerLabel(p store.Provider) string {
	switch p {
	case store.ProviderEKS:
		return "EKS"
	case store.ProviderAKS:
		return "AKS"
	case store.ProviderGKE:
		return "GKE"
	case store.ProviderGeneric:
		return "Generic"
	}
	return string(p)
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// age is how long ago t was, shortly ("5m").
func age(t metav1.Time) string {
	if t.IsZero() {
		return "–"
	}
	return humanDuration(time.Since(t.Time))
}

// podStatus is the pod's status as kubectl's STATUS column shows it,
// roughly: a waiting or terminated container's reason wins over the phase.
func podStatus(p corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return w.Reason
		}
		if t := cs.State.Terminated; t != nil && t.Reason != "" && p.Status.Phase != corev1.PodSucceeded {
			return t.Reason
		}
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	return string(p.Status.Phase)
}

func podReady(p corev1.Pod) string {
	ready := 0
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
}

func restarts(p corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}

func nodeReady(n corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return "Ready"
			}
			return "NotReady"
		}
	}
	return "Unknown"
}

func servicePorts(s corev1.Service) string {
	var out []string
	for _, p := range s.Spec.Ports {
		out = append(out, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	return strings.Join(out, ", ")
}

func subjects(ss []rbacSubject) string {
	var out []string
	for _, s := range ss {
		n := s.Name
		if s.Namespace != "" {
			n = s.Namespace + "/" + n
		}
		out = append(out, s.Kind+" "+n)
	}
	return strings.Join(out, ", ")
}

func labelsText(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

type rbacSubject = rbacv1.Subject
