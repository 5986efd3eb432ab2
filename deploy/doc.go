// Package deploy holds what runs eco's hub on Kubernetes: the Helm chart
// in chart/eco-hub (values documented in its values.yaml and README.md).
// Its tests lint and render the chart with Helm's own Go SDK and install
// it onto a real local cluster.
package deploy
