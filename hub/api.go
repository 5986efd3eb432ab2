package hub

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/eco-project/eco/install"
	"github.com/eco-project/eco/store"
)

//go:embed openapi.yaml
var openAPISpec []byte

// maxBody bounds JSON request bodies.
const maxBody = 64 << 10

func (h *Hub) routes() {
	m := http.NewServeMux()
	h.registry.MustRegister(newClustersByState(h.store))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	m.HandleFunc("GET /readyz", h.readyz)
	// Metrics name every cluster: admins only here; MetricsHandler
	// serves them on a listener of their own.
	m.HandleFunc("GET /metrics", h.requireUser(hubAdmin, h.MetricsHandler().ServeHTTP))
	m.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(openAPISpec)
	})
	m.Handle(TunnelPath, h.tunnels)

	api := func(pattern, route string, need access, f http.HandlerFunc) {
		m.HandleFunc(pattern, h.countAPI(route, h.requireUser(need, f)))
	}
	api("GET /api/v1/whoami", "whoami", anyUser, h.whoami)
	api("GET /api/v1/clusters", "list-clusters", anyUser, h.listClusters)
	api("POST /api/v1/clusters", "create-cluster", hubAdmin, h.createCluster)
	api("GET /api/v1/clusters/{id}", "get-cluster", anyUser, h.getCluster)
	api("PATCH /api/v1/clusters/{id}", "update-cluster", clusterAdmin, h.updateCluster)
	api("DELETE /api/v1/clusters/{id}", "delete-cluster", clusterAdmin, h.deleteCluster)
	api("GET /api/v1/clusters/{id}/install.yaml", "install-yaml", clusterAdmin, h.installYAML)
	api("POST /api/v1/clusters/{id}/rotate-credential", "rotate-credential", hubAdmin, h.rotateCredential)
	api("GET /api/v1/clusters/{id}/kubeconfig", "kubeconfig", anyUser, h.kubeconfig)
	api("GET /api/v1/clusters/{id}/status", "status", anyUser, h.clusterStatus)
	api("GET /api/v1/clusters/{id}/history", "history", anyUser, h.statusHistory)
	api("GET /api/v1/clusters/{id}/identity", "get-identity", hubAdmin, h.getIdentity)
	api("PATCH /api/v1/clusters/{id}/identity", "patch-identity", hubAdmin, h.patchIdentity)
	api("POST /api/v1/clusters/{id}/identity/approve", "approve-identity", hubAdmin, h.approveIdentity)
	api("POST /api/v1/clusters/{id}/identity/reset", "reset-identity", hubAdmin, h.resetIdentity)
	api("GET /api/v1/clusters/{id}/audit", "cluster-audit", clusterAdmin, h.clusterAuditLog)
	api("GET /api/v1/audit", "audit", hubAdmin, h.auditLog)
	api("GET /api/v1/tokens", "list-tokens", hubAdmin, h.listTokens)
	api("POST /api/v1/tokens", "create-token", hubAdmin, h.createToken)
	api("DELETE /api/v1/tokens/{id}", "revoke-token", hubAdmin, h.revokeToken)
	api("GET /api/v1/grants", "list-grants", hubAdmin, h.listGrants)
	api("POST /api/v1/grants", "create-grant", hubAdmin, h.createGrant)
	api("DELETE /api/v1/grants/{id}", "delete-grant", hubAdmin, h.deleteGrant)
	h.cloudRoutes(api)
	// The proxy checks the user's access to the cluster and, for a
	// read-only token, the verb itself: it answers Kubernetes Status
	// bodies.
	m.HandleFunc(ProxyPrefix+"{id}"+ProxySuffix+"/", h.requireProxyUser(h.proxy.ServeHTTP))
	m.HandleFunc(ProxyPrefix+"{id}"+ProxySuffix, h.requireProxyUser(h.proxy.ServeHTTP))
	h.mux = m
}

func (h *Hub) readyz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-h.ready:
	default:
		writeError(w, http.StatusServiceUnavailable, "starting")
		return
	}
	if _, err := h.store.CountTokens(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	io.WriteString(w, "ok\n")
}

// countAPI counts API requests by route and code, and audits those that
// may change something (any method but GET and HEAD), refused ones
// included.
func (h *Hub) countAPI(route string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		reqID := uuid.NewString()
		w.Header().Set("X-Request-Id", reqID)
		// The identity is known only inside next; it leaves it here.
		var who Identity
		r = r.WithContext(context.WithValue(r.Context(), auditIdentityKey{}, &who))
		next(rec, r)
		h.metrics.apiRequests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			cluster := r.PathValue("id")
			if cluster == "" { // an import: the new cluster is in Location
				cluster, _ = strings.CutPrefix(w.Header().Get("Location"), "/api/v1/clusters/")
			}
			h.audit.Record(store.AuditEvent{
				User: who.Name, TokenID: who.TokenID, Source: "api", Verb: route,
				ClusterID: cluster, Path: r.URL.Path, Code: rec.code,
				RequestID: reqID, ClientRequestID: sanitizeRequestID(r.Header.Get("X-Request-Id")), RemoteAddr: r.RemoteAddr,
			})
		}
	}
}

// auditIdentityKey carries, to countAPI, where requireUser leaves the
// identity it authenticated.
type auditIdentityKey struct{}

// ClusterJSON is a cluster as the API shows it.
type ClusterJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Provider    string    `json:"provider"`
	Region      string    `json:"region,omitempty"`
	CloudRef    string    `json:"cloudRef,omitempty"`
	CloudHealth string    `json:"cloudHealth,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// Labels are the user's, which the hub also puts on the cluster's
	// Argo CD Secret.
	Labels map[string]string `json:"labels,omitempty"`
	// IdentityState is how the cluster's agents prove their identity:
	// Issuer (a configured OIDC issuer), Unpinned, AwaitingApproval or
	// Pinned. The values behind it are for administrators only (GET
	// /api/v1/clusters/{id}/identity).
	IdentityState string     `json:"identityState"`
	Status        StatusJSON `json:"status"`
	// Credential is where the agent credential's rotation stands (never
	// the credential).
	Credential CredentialJSON `json:"credential"`
	// Links to the cluster's install YAML, kubeconfig and proxy.
	Links map[string]string `json:"links"`
}

// CredentialJSON is the generation of a cluster's agent credential.
type CredentialJSON struct {
	Generation int64 `json:"generation"`
	// RotationPending: the agent has not yet shown it holds Generation.
	RotationPending bool       `json:"rotationPending"`
	RotatedAt       *time.Time `json:"rotatedAt,omitempty"`
	// PreviousValidUntil is when the previous generation stops (or
	// stopped) being accepted.
	PreviousValidUntil *time.Time `json:"previousValidUntil,omitempty"`
	// SecretKey is the hub key that derived it: "current", "previous"
	// (rotate the credential before the hub drops its previous key) or
	// "unknown" (the install YAML cannot be rendered until it is rotated).
	SecretKey string `json:"secretKey"`
}

func (h *Hub) credentialJSON(cl store.Cluster) CredentialJSON {
	c := cl.Credential
	out := CredentialJSON{Generation: c.Generation, RotationPending: c.Confirmed < c.Generation, SecretKey: "current"}
	switch _, prev, err := h.currentCredential(cl); {
	case err != nil:
		out.SecretKey = "unknown"
	case prev:
		out.SecretKey = "previous"
	}
	if !c.RotatedAt.IsZero() {
		t := c.RotatedAt
		out.RotatedAt = &t
	}
	if !c.PreviousUntil.IsZero() {
		t := c.PreviousUntil
		out.PreviousValidUntil = &t
	}
	return out
}

// StatusJSON is a cluster's operator status.
type StatusJSON struct {
	State             string     `json:"state"`
	Reason            string     `json:"reason,omitempty"`
	Since             time.Time  `json:"since"`
	LastHeartbeat     *time.Time `json:"lastHeartbeat,omitempty"`
	RTTMillis         *float64   `json:"rttMillis,omitempty"`
	AgentVersion      string     `json:"agentVersion,omitempty"`
	KubernetesVersion string     `json:"kubernetesVersion,omitempty"`
}

func (h *Hub) clusterJSON(c store.Cluster) ClusterJSON {
	base := h.cfg.ExternalURL
	return ClusterJSON{
		ID: c.ID, Name: c.Name, Provider: string(c.Provider), Region: c.Region, CloudRef: c.CloudRef,
		CloudHealth: c.CloudHealth, CreatedAt: c.CreatedAt, Labels: c.Labels,
		IdentityState: identityStateName(c.Identity, c.IdentityState),
		Status:        statusJSON(c.Status),
		Credential:    h.credentialJSON(c),
		Links: map[string]string{
			"self":       base + "/api/v1/clusters/" + c.ID,
			"install":    base + "/api/v1/clusters/" + c.ID + "/install.yaml",
			"kubeconfig": base + "/api/v1/clusters/" + c.ID + "/kubeconfig",
			"kubernetes": base + ProxyPrefix + c.ID + ProxySuffix,
		},
	}
}

func statusJSON(s store.Status) StatusJSON {
	out := StatusJSON{
		State: string(s.State), Reason: s.Reason, Since: s.Since,
		AgentVersion: s.AgentVersion, KubernetesVersion: s.KubernetesVersion,
	}
	if !s.LastHeartbeat.IsZero() {
		hb := s.LastHeartbeat
		out.LastHeartbeat = &hb
		ms := float64(s.RTT.Microseconds()) / 1000
		out.RTTMillis = &ms
	}
	return out
}

func (h *Hub) whoami(w http.ResponseWriter, r *http.Request) {
	id, _ := identityFrom(r.Context())
	out := map[string]any{
		"name": id.Name, "role": id.Role, "groups": id.Groups, "kubernetesUser": h.KubeUser(id),
		"tokenId": id.TokenID, "readOnly": id.Scope.ReadOnly, "version": h.cfg.Version,
		"grants": grantsJSON(id.grants),
	}
	if id.Scope.Clusters != nil {
		out["clusters"] = id.Scope.Clusters
	}
	if !id.ExpiresAt.IsZero() {
		out["expiresAt"] = id.ExpiresAt
	}
	writeJSON(w, http.StatusOK, out)
}

// createClusterRequest is the body of POST /api/v1/clusters.
type createClusterRequest struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Region   string `json:"region"`
	CloudRef string `json:"cloudRef"`
	// OIDCIssuer and RequireApproval configure the identity proof.
	OIDCIssuer      string `json:"oidcIssuer"`
	RequireApproval bool   `json:"requireApproval"`
}

func (h *Hub) createCluster(w http.ResponseWriter, r *http.Request) {
	var req createClusterRequest
	if !readJSON(w, r, &req) {
		return
	}
	c, err := h.ImportCluster(r.Context(), ImportRequest{
		Name: req.Name, Provider: store.Provider(req.Provider), Region: req.Region, CloudRef: req.CloudRef,
		Identity: store.IdentityConfig{OIDCIssuer: req.OIDCIssuer, RequireApproval: req.RequireApproval},
	})
	if err != nil {
		writeStoreError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/clusters/"+c.ID)
	writeJSON(w, http.StatusCreated, h.clusterJSON(c))
}

func (h *Hub) listClusters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := store.ListOptions{
		Search: q.Get("search"), Provider: store.Provider(q.Get("provider")), State: store.State(q.Get("state")),
		SortBy: store.SortKey(q.Get("sort")), Desc: q.Get("desc") == "true",
	}
	var err error
	if opts.Limit, err = intParam(q.Get("limit")); err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	if opts.Offset, err = intParam(q.Get("offset")); err != nil {
		writeError(w, http.StatusBadRequest, "offset: "+err.Error())
		return
	}
	ident, _ := identityFrom(r.Context())
	opts.IDs = ident.VisibleClusters()
	page, err := h.store.ListClusters(r.Context(), opts)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	items := make([]ClusterJSON, 0, len(page.Clusters))
	for _, c := range page.Clusters {
		items = append(items, h.clusterJSON(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": page.Total})
}

func (h *Hub) getCluster(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, h.clusterJSON(c))
}

// updateClusterRequest renames a cluster and/or replaces its labels;
// what is absent (or null) stays.
type updateClusterRequest struct {
	Name   *string            `json:"name"`
	Labels *map[string]string `json:"labels"`
}

// updateCluster renames the cluster and/or replaces its labels. Its ID,
// and with it the proxy URL, kubeconfigs and the agent's credential,
// stay.
func (h *Hub) updateCluster(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	var req updateClusterRequest
	if !readJSON(w, r, &req) {
		return
	}
	var u store.ClusterUpdate
	if req.Name != nil {
		if *req.Name == "" {
			writeError(w, http.StatusBadRequest, "name: must not be empty")
			return
		}
		u.Name = *req.Name
	}
	if req.Labels != nil {
		u.Labels = *req.Labels
		if u.Labels == nil {
			u.Labels = map[string]string{}
		}
	}
	updated, err := h.UpdateCluster(r.Context(), c.ID, u)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("cluster updated", "cluster", c.ID, "name", updated.Name, "was", c.Name, "labels", len(updated.Labels), "by", ident.Name)
	writeJSON(w, http.StatusOK, h.clusterJSON(updated))
}

// deleteCluster removes the cluster: its credential stops matching at
// once, and its tunnel is closed.
func (h *Hub) deleteCluster(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	id := c.ID
	if err := h.DeleteCluster(r.Context(), id); err != nil {
		writeStoreError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("cluster deleted", "cluster", id, "by", ident.Name)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) installYAML(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	// The proxy the agent dials the hub through, if its cluster's egress
	// needs one (docs/install.md, "Behind an HTTPS proxy").
	var mods []func(*install.Options)
	if proxy, noProxy := r.URL.Query().Get("httpsProxy"), r.URL.Query().Get("noProxy"); proxy != "" || noProxy != "" {
		mods = append(mods, func(o *install.Options) { o.HTTPSProxy, o.NoProxy = proxy, noProxy })
	}
	yaml, err := h.installYAMLFor(c, mods...)
	if errors.Is(err, errCredentialKeyGone) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if errors.Is(err, errInstallOptions) && len(mods) > 0 {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	if r.URL.Query().Get("download") == "true" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "eco-"+c.Name+".yaml"))
	}
	w.Write(yaml)
}

// InstallYAML renders the install YAML of cluster id, with the credential
// of its current generation: the same bytes on every call until the
// credential is rotated.
func (h *Hub) InstallYAML(id string) ([]byte, error) {
	ctx, cancel := bg(10 * time.Second)
	defer cancel()
	c, err := h.store.GetCluster(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("rendering install YAML: %w", err)
	}
	return h.installYAMLFor(c)
}

// errInstallOptions: the install options did not validate.
var errInstallOptions = errors.New("invalid install options")

// installYAMLFor renders c's install YAML; mods change the options the
// hub's configuration gives, such as the agent's HTTPS proxy.
func (h *Hub) installYAMLFor(c store.Cluster, mods ...func(*install.Options)) ([]byte, error) {
	cred, _, err := h.currentCredential(c)
	if err != nil {
		return nil, fmt.Errorf("rendering install YAML: %w", err)
	}
	opts := install.Options{
		ClusterID:           c.ID,
		HubURL:              h.cfg.ExternalURL,
		AllowInsecureHubURL: h.cfg.AllowInsecureAgentURL,
		Token:               cred,
		HubCAPEM:            h.cfg.CAPEM,
		Namespace:           h.cfg.AgentNamespace,
		Image:               h.cfg.AgentImage,
		AgentVersion:        h.cfg.Version,
	}
	if h.cfg.AgentImagePullPolicy != "" {
		opts.ImagePullPolicy = corev1.PullPolicy(h.cfg.AgentImagePullPolicy)
	}
	for _, m := range mods {
		m(&opts)
	}
	y, err := install.Render(opts)
	if err != nil {
		return nil, fmt.Errorf("rendering install YAML: %w: %w", errInstallOptions, err)
	}
	return y, nil
}

// RotationJSON is the answer to POST .../rotate-credential.
type RotationJSON struct {
	Generation         int64     `json:"generation"`
	PreviousValidUntil time.Time `json:"previousValidUntil"`
	Delivery           string    `json:"delivery"`
	Message            string    `json:"message"`
}

// rotateCredential gives the cluster's agent credential its next
// generation (RotateCredential).
func (h *Hub) rotateCredential(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	rot, err := h.RotateCredential(r.Context(), c.ID)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, RotationJSON{Generation: rot.Generation, PreviousValidUntil: rot.PreviousValidUntil,
		Delivery: rot.Delivery, Message: rot.Message})
}

// kubeconfig returns a kubeconfig that reaches the cluster through the hub
// as the caller, with a new token of the caller's scoped to this cluster
// that expires after ?ttl= (a Go duration, at most MaxTokenTTL) or
// Config.KubeconfigTTL, and never after the caller's own token; with
// ?readOnly=true, or if the caller's token is read-only, it is read-only.
func (h *Hub) kubeconfig(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	ident, _ := identityFrom(r.Context())
	q := r.URL.Query()
	ttl := h.cfg.KubeconfigTTL
	if s := q.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > MaxTokenTTL {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl %q: want a positive Go duration of at most %s, e.g. 8h", s, MaxTokenTTL))
			return
		}
		ttl = d
	}
	readOnly := ident.Scope.ReadOnly
	switch q.Get("readOnly") {
	case "", "false":
	case "true":
		readOnly = true
	default:
		writeError(w, http.StatusBadRequest, "readOnly: want true or false")
		return
	}
	secret, t, err := h.MintClusterToken(r.Context(), ident, c.ID, ttl, readOnly)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	data, err := h.Kubeconfig(c, ident.Name, secret)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	h.logger.Info("kubeconfig token minted", "cluster", c.ID, "user", ident.Name, "by_token", ident.TokenID, "token", t.ID, "expires", t.ExpiresAt)
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(data)
}

// MintClusterToken creates a token for ident's user that reaches only
// cluster id and expires after ttl, or with ident's own token if that
// expires sooner. It carries ident's role, groups and read-only flag (or
// read-only if readOnly), and the user's grants apply to it as they change,
// so it never reaches further than ident.
func (h *Hub) MintClusterToken(ctx context.Context, ident Identity, id string, ttl time.Duration, readOnly bool) (string, store.Token, error) {
	if ident.ClusterRole(id) == "" {
		return "", store.Token{}, fmt.Errorf("cluster %q: %w", id, store.ErrNotFound)
	}
	expires := h.cfg.Now().Add(ttl)
	if !ident.ExpiresAt.IsZero() && ident.ExpiresAt.Before(expires) {
		expires = ident.ExpiresAt
	}
	h.pruneTokens(ctx)
	return h.CreateToken(ctx, store.NewToken{
		Name: ident.Name, Role: ident.Role, Groups: ident.Groups, ExpiresAt: expires,
		Scope: store.TokenScope{Clusters: []string{id}, ReadOnly: readOnly || ident.Scope.ReadOnly},
	})
}

// Kubeconfig renders a kubeconfig for cluster c through the hub, for user
// with the hub API token.
func (h *Hub) Kubeconfig(c store.Cluster, user, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	name := "eco-" + c.Name
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: h.cfg.ExternalURL + ProxyPrefix + c.ID + ProxySuffix, CertificateAuthorityData: h.cfg.CAPEM}
	cfg.AuthInfos[name+"-"+user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-" + user}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	return data, nil
}

func (h *Hub) clusterStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, statusJSON(c.Status))
}

// TransitionJSON is one status history entry.
type TransitionJSON struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

func (h *Hub) statusHistory(w http.ResponseWriter, r *http.Request) {
	c, ok := h.loadCluster(w, r)
	if !ok {
		return
	}
	limit, err := intParam(r.URL.Query().Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	if limit == 0 {
		limit = 100
	}
	hist, err := h.store.StatusHistory(r.Context(), c.ID, limit)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	items := make([]TransitionJSON, 0, len(hist))
	for _, t := range hist {
		items = append(items, TransitionJSON{From: string(t.From), To: string(t.To), Reason: t.Reason, At: t.At})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// TokenJSON is an API token as listed; the secret is shown only when
// created.
type TokenJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	Groups     []string   `json:"groups"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	// ExpiresAt is absent for a token that never expires.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Clusters is absent for a token that reaches every cluster its user
	// may.
	Clusters []string `json:"clusters,omitempty"`
	ReadOnly bool     `json:"readOnly"`
	Token    string   `json:"token,omitempty"`
}

func tokenJSON(t store.Token) TokenJSON {
	out := TokenJSON{ID: t.ID, Name: t.Name, Role: string(t.Role), Groups: t.Groups, CreatedAt: t.CreatedAt,
		Clusters: t.Scope.Clusters, ReadOnly: t.Scope.ReadOnly}
	if out.Groups == nil {
		out.Groups = []string{}
	}
	if !t.LastUsedAt.IsZero() {
		out.LastUsedAt = &t.LastUsedAt
	}
	if !t.RevokedAt.IsZero() {
		out.RevokedAt = &t.RevokedAt
	}
	if !t.ExpiresAt.IsZero() {
		out.ExpiresAt = &t.ExpiresAt
	}
	return out
}

// createTokenRequest is the body of POST /api/v1/tokens.
type createTokenRequest struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	Groups []string `json:"groups"`
	// ExpiresIn is a Go duration (e.g. "720h"), at most MaxTokenTTL;
	// empty means DefaultTokenTTL.
	ExpiresIn string `json:"expiresIn"`
	// NeverExpires asks for a token without expiry; ExpiresIn must then be
	// empty.
	NeverExpires bool     `json:"neverExpires"`
	Clusters     []string `json:"clusters"`
	ReadOnly     bool     `json:"readOnly"`
}

func (h *Hub) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := h.store.ListTokens(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	items := make([]TokenJSON, 0, len(ts))
	for _, t := range ts {
		items = append(items, tokenJSON(t))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (h *Hub) createToken(w http.ResponseWriter, r *http.Request) {
	var req createTokenRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Role == "viewer" {
		writeError(w, http.StatusBadRequest, `role "viewer" is gone: create a "member" token and grant it view (POST /api/v1/grants)`)
		return
	}
	nt := store.NewToken{Name: req.Name, Role: store.Role(req.Role), Groups: req.Groups,
		Scope: store.TokenScope{Clusters: req.Clusters, ReadOnly: req.ReadOnly}}
	switch {
	case req.NeverExpires && req.ExpiresIn != "":
		writeError(w, http.StatusBadRequest, "expiresIn and neverExpires exclude each other")
		return
	case req.NeverExpires:
	default:
		ttl := DefaultTokenTTL
		if req.ExpiresIn != "" {
			d, err := time.ParseDuration(req.ExpiresIn)
			if err != nil || d <= 0 || d > MaxTokenTTL {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("expiresIn %q: want a positive Go duration of at most %s, e.g. 720h, or neverExpires", req.ExpiresIn, MaxTokenTTL))
				return
			}
			ttl = d
		}
		nt.ExpiresAt = h.cfg.Now().Add(ttl)
	}
	secret, t, err := h.CreateToken(r.Context(), nt)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	out := tokenJSON(t)
	out.Token = secret
	writeJSON(w, http.StatusCreated, out)
}

func (h *Hub) revokeToken(w http.ResponseWriter, r *http.Request) {
	if err := h.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// loadCluster loads the cluster of the route if the caller may see it. A
// cluster the caller was not granted is answered exactly as one that does
// not exist, so its existence is not leaked.
func (h *Hub) loadCluster(w http.ResponseWriter, r *http.Request) (store.Cluster, bool) {
	id := r.PathValue("id")
	ident, _ := identityFrom(r.Context())
	notFound := func() { writeError(w, http.StatusNotFound, fmt.Sprintf("cluster %q not found", id)) }
	if ident.ClusterRole(id) == "" {
		notFound()
		return store.Cluster{}, false
	}
	c, err := h.store.GetCluster(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		notFound()
		return store.Cluster{}, false
	}
	if err != nil {
		writeStoreError(w, err)
		return store.Cluster{}, false
	}
	return c, true
}

// GrantJSON is a grant as the API shows it.
type GrantJSON struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	// Cluster is absent for a grant on every cluster.
	Cluster   string    `json:"cluster,omitempty"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
}

func grantsJSON(gs []store.Grant) []GrantJSON {
	out := make([]GrantJSON, 0, len(gs))
	for _, g := range gs {
		out = append(out, GrantJSON{ID: g.ID, Kind: string(g.Kind), Subject: g.Subject, Cluster: g.ClusterID, Role: string(g.Role), CreatedAt: g.CreatedAt})
	}
	return out
}

func (h *Hub) listGrants(w http.ResponseWriter, r *http.Request) {
	gs, err := h.store.ListGrants(r.Context(), r.URL.Query().Get("cluster"))
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": grantsJSON(gs)})
}

func (h *Hub) createGrant(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Kind    string `json:"kind"`
		Subject string `json:"subject"`
		Cluster string `json:"cluster"`
		Role    string `json:"role"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	g, err := h.CreateGrant(r.Context(), store.NewGrant{Kind: store.SubjectKind(req.Kind), Subject: req.Subject, ClusterID: req.Cluster, Role: store.ClusterRole(req.Role)})
	if err != nil {
		writeStoreError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("grant created", "grant", g.ID, "kind", g.Kind, "subject", g.Subject, "cluster", g.ClusterID, "role", g.Role, "by", ident.Name)
	w.Header().Set("Location", "/api/v1/grants/"+g.ID)
	writeJSON(w, http.StatusCreated, grantsJSON([]store.Grant{g})[0])
}

func (h *Hub) deleteGrant(w http.ResponseWriter, r *http.Request) {
	if err := h.DeleteGrant(r.Context(), r.PathValue("id")); err != nil {
		writeStoreError(w, err)
		return
	}
	ident, _ := identityFrom(r.Context())
	h.logger.Info("grant deleted", "grant", r.PathValue("id"), "by", ident.Name)
	w.WriteHeader(http.StatusNoContent)
}

func intParam(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	return n, nil
}

// readJSON decodes a bounded JSON body, rejecting unknown fields; on error
// it answers 400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "malformed JSON body: more than one value")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// writeKubeStatus answers with a Kubernetes Status, which kubectl and
// client-go show as a readable error.
func writeKubeStatus(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, kubeStatus(code, reason, msg))
}

// kubeStatus is a failed Kubernetes Status, which kubectl, client-go and
// Argo CD show as the error.
func kubeStatus(code int, reason, msg string) map[string]any {
	return map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	}
}
