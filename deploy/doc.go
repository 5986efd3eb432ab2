// Package deploy holds what runs eco's hub on Kubernetes: the Helm chart
// in chart/eco-hub (values documented in its values.yaml and README.md).
// Its tests lint and render the chart with Helm's own Go SDK, install it
// onto a real local cluster (whose kwok nodes run no pods), and run the
// pod the chart describes as a process: eco-hub built from this tree with
// the Deployment's args, environment and mounted Secrets, probed as the
// kubelet would.
package deploy
