package argocd

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/eco-project/eco/store"
)

// Labels and annotations on the Secrets the hub writes. ApplicationSet's
// cluster generator selects on the labels; the annotations carry what is
// not a valid label value. The token itself is only ever in data.config.
const (
	LabelSecretType   = "argocd.argoproj.io/secret-type"
	SecretTypeCluster = "cluster"
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedBy         = "eco-hub"
	LabelClusterID    = "eco.dev/cluster-id"
	LabelClusterName  = "eco.dev/cluster-name"
	LabelProvider     = "eco.dev/provider"
	LabelRegion       = "eco.dev/region"
	LabelInstance     = "eco.dev/argocd-instance"

	AnnotationClusterName    = "eco.dev/cluster-name"
	AnnotationRegion         = "eco.dev/region"
	AnnotationTokenID        = "eco.dev/token-id"
	AnnotationTokenExpiresAt = "eco.dev/token-expires-at"

	// FieldManager is the server-side apply field manager the hub writes
	// with.
	FieldManager = "eco-hub"
)

// SecretName returns the name of cluster id's Secret: by ID, so it stays
// the same when the cluster is renamed (Argo CD's sharding keys on it).
func SecretName(clusterID string) string { return "eco-" + clusterID }

// ServerURL returns the server of cluster id: the hub's proxy URL for it.
func ServerURL(hubURL, clusterID string) string {
	return hubURL + "/clusters/" + clusterID + "/k8s"
}

// clusterConfig is the "config" field of an Argo CD cluster Secret, in
// Argo CD's own JSON shape (v1alpha1.ClusterConfig).
type clusterConfig struct {
	BearerToken     string          `json:"bearerToken"`
	TLSClientConfig tlsClientConfig `json:"tlsClientConfig"`
}

type tlsClientConfig struct {
	Insecure bool   `json:"insecure"`
	CAData   []byte `json:"caData,omitempty"`
}

// registration is what one cluster's Secret says.
type registration struct {
	Cluster   store.Cluster
	Instance  Instance
	Server    string
	Token     string
	TokenID   string
	ExpiresAt time.Time
	CAPEM     []byte
}

// secretApply returns the Secret for r as a server-side apply
// configuration: only the fields the hub owns.
func (r registration) secretApply() (*applycorev1.SecretApplyConfiguration, error) {
	cfg, err := json.Marshal(clusterConfig{BearerToken: r.Token, TLSClientConfig: tlsClientConfig{CAData: r.CAPEM}})
	if err != nil {
		return nil, fmt.Errorf("encoding cluster config: %w", err)
	}
	c := r.Cluster
	labels := map[string]string{
		LabelSecretType:  SecretTypeCluster,
		LabelManagedBy:   ManagedBy,
		LabelClusterID:   c.ID,
		LabelClusterName: c.Name,
		LabelProvider:    string(c.Provider),
		LabelInstance:    r.Instance.Name,
	}
	// The user's labels, for ApplicationSet's cluster generator; eco's
	// and Argo CD's own keys are reserved (store.ValidateLabels), and win.
	for k, v := range c.Labels {
		if _, ours := labels[k]; !ours {
			labels[k] = v
		}
	}
	annotations := map[string]string{
		AnnotationClusterName:    c.Name,
		AnnotationTokenID:        r.TokenID,
		AnnotationTokenExpiresAt: r.ExpiresAt.UTC().Format(time.RFC3339),
	}
	if c.Region != "" {
		annotations[AnnotationRegion] = c.Region
		if len(validation.IsValidLabelValue(c.Region)) == 0 {
			labels[LabelRegion] = c.Region
		}
	}
	data := map[string][]byte{
		"name":   []byte(c.Name),
		"server": []byte(r.Server),
		"config": cfg,
	}
	if r.Instance.Project != "" {
		data["project"] = []byte(r.Instance.Project)
	}
	return applycorev1.Secret(SecretName(c.ID), r.Instance.Namespace).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithType(corev1.SecretTypeOpaque).
		WithData(data), nil
}

// tokenOf returns the bearer token in a Secret's config, or "".
func tokenOf(s *corev1.Secret) string {
	var cfg clusterConfig
	if s == nil || json.Unmarshal(s.Data["config"], &cfg) != nil {
		return ""
	}
	return cfg.BearerToken
}
