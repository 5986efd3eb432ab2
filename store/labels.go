package store

import (
	"fmt"
	"regexp"
	"strings"
)

// Cluster labels are the user's key/value pairs on a cluster, in
// Kubernetes' label syntax, so that they can go as they are onto what the
// hub writes for the cluster elsewhere (Argo CD's cluster Secret, which
// ApplicationSet's cluster generator selects on).
const (
	// MaxLabels bounds the labels of one cluster.
	MaxLabels      = 64
	maxLabelName   = 63
	maxLabelPrefix = 253
)

// labelName is Kubernetes' label name (and non-empty value) syntax.
var labelName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// dnsSubdomain is a label key's prefix syntax.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ReservedLabelPrefixes are the key prefixes eco and Argo CD write
// themselves: a user's label may not take them.
var ReservedLabelPrefixes = []string{"eco.dev/", "argocd.argoproj.io/", "app.kubernetes.io/"}

// ValidateLabels checks a cluster's labels: at most MaxLabels, keys
// "[prefix/]name" and values as Kubernetes labels, no reserved prefix.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: %d labels, at most %d", ErrInvalid, len(labels), MaxLabels)
	}
	for k, v := range labels {
		if err := validateLabelKey(k); err != nil {
			return err
		}
		if v != "" && (len(v) > maxLabelName || !labelName.MatchString(v)) {
			return fmt.Errorf("%w: label %s: value %q: at most %d letters, digits, '-', '_' or '.', starting and ending with a letter or digit", ErrInvalid, k, v, maxLabelName)
		}
	}
	return nil
}

func validateLabelKey(k string) error {
	for _, p := range ReservedLabelPrefixes {
		if strings.HasPrefix(k, p) {
			return fmt.Errorf("%w: label key %q: the prefix %s is eco's or Argo CD's", ErrInvalid, k, p)
		}
	}
	prefix, name, found := strings.Cut(k, "/")
	if !found {
		prefix, name = "", k
	} else if prefix == "" || len(prefix) > maxLabelPrefix || !dnsSubdomain.MatchString(prefix) {
		return fmt.Errorf("%w: label key %q: its prefix must be a DNS subdomain", ErrInvalid, k)
	}
	if name == "" || len(name) > maxLabelName || !labelName.MatchString(name) {
		return fmt.Errorf("%w: label key %q: the name must be at most %d letters, digits, '-', '_' or '.', starting and ending with a letter or digit", ErrInvalid, k, maxLabelName)
	}
	return nil
}

// ClusterUpdate changes what a user may change of a cluster.
type ClusterUpdate struct {
	// Name, if not empty, renames the cluster (see ValidateClusterName;
	// a name taken is ErrConflict). The cluster's ID stays.
	Name string
	// Labels, if not nil, replace the cluster's labels (empty: none).
	Labels map[string]string
}

// Validate reports the first problem with u, wrapping [ErrInvalid].
func (u ClusterUpdate) Validate() error {
	if u.Name != "" {
		if err := ValidateClusterName(u.Name); err != nil {
			return err
		}
	}
	if u.Labels != nil {
		return ValidateLabels(u.Labels)
	}
	return nil
}
