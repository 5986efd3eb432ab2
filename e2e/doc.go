// Package e2e holds eco's end-to-end tests: a real hub on loopback TLS, real
// local Kubernetes clusters (kube-apiserver, etcd, controller-manager,
// scheduler, kwok), the install YAML applied with real kubectl, the agent
// running with a real ServiceAccount token, and real kubectl and client-go
// going through hub → tunnel → agent → API server.
package e2e
