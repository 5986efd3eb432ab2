// Package eco is the root of eco, an External Cluster Operator: a hub that
// manages Kubernetes clusters running elsewhere through an outbound tunnel
// opened by an agent inside each cluster. The code lives in the packages
// below this one; see README.md for the map.
package eco
