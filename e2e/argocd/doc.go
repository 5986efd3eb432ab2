// Package argocd tests eco's Argo CD registration with Argo CD's own code:
// Argo CD v3.2.11's settings manager and cluster database read the cluster
// Secret the hub writes and list the cluster through the hub, and the real
// argocd-application-controller and argocd-repo-server, built from this
// module, sync an Application into a cluster reached only through the hub.
//
// It is a module of its own because Argo CD pins k8s.io/* v0.34 with a
// replace block, while eco's main module uses v0.37: it imports no eco
// package that needs v0.37 (only localcluster), and runs the hub and the
// agent as built binaries.
package argocd
