// Package azurefake is a local fake of Microsoft Entra ID (OpenID
// discovery and the client-credentials token endpoint, with a client
// secret or a certificate assertion) and of Azure Resource Manager's AKS
// list (managedClusters of a subscription), over TLS, for driving the real
// Azure SDK for Go in tests. Resource Manager checks every bearer token.
package azurefake

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	azcloud "github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v6"
	"github.com/go-jose/go-jose/v4"
)

// Server is the fake.
type Server struct {
	*httptest.Server

	mu       sync.Mutex                  // guards everything below
	secrets  map[string]string           // tenant/client → secret
	certs    map[string]crypto.PublicKey // tenant/client → certificate key
	grants   map[string][]string         // tenant/client → subscriptions it may read
	tokens   map[string]string           // access token → tenant/client
	subs     map[string][]*armcontainerservice.ManagedCluster
	throttle int
	calls    map[string]int    // list calls by subscription
	kubecfgs map[string][]byte // lowercased resource ID → admin kubeconfig
	expired  map[string]bool   // tenant/client whose secret expired
	issued   int
}

// New starts the fake on loopback with TLS; Close it when done.
func New() *Server {
	s := &Server{secrets: map[string]string{}, certs: map[string]crypto.PublicKey{}, grants: map[string][]string{},
		tokens: map[string]string{}, subs: map[string][]*armcontainerservice.ManagedCluster{}, calls: map[string]int{}, kubecfgs: map[string][]byte{}, expired: map[string]bool{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Cloud is the Azure cloud configuration that points the SDK here.
func (s *Server) Cloud() azcloud.Configuration {
	return azcloud.Configuration{
		ActiveDirectoryAuthorityHost: s.URL + "/",
		Services: map[azcloud.ServiceName]azcloud.ServiceConfiguration{
			azcloud.ResourceManager: {Audience: "https://management.core.windows.net/", Endpoint: s.URL},
		},
	}
}

// AddSecret registers a service principal with a client secret, allowed
// to read subscriptions.
func (s *Server) AddSecret(tenant, client, secret string, subscriptions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets[tenant+"/"+client] = secret
	s.grants[tenant+"/"+client] = subscriptions
}

// AddCertificate registers a service principal with a new certificate
// and returns its PEM (certificate and unencrypted key).
func (s *Server) AddCertificate(tenant, client string, subscriptions ...string) ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: client},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.certs[tenant+"/"+client] = &k.PublicKey
	s.grants[tenant+"/"+client] = subscriptions
	s.mu.Unlock()
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), nil
}

// ExpireSecret makes the service principal's client secret expired, and
// forgets the tokens issued to it.
func (s *Server) ExpireSecret(tenant, client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := tenant + "/" + client
	s.expired[id] = true
	for t, who := range s.tokens {
		if who == id {
			delete(s.tokens, t)
		}
	}
}

// Revoke removes a service principal and its tokens.
func (s *Server) Revoke(tenant, client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := tenant + "/" + client
	delete(s.secrets, id)
	delete(s.certs, id)
	delete(s.grants, id)
	for t, who := range s.tokens {
		if who == id {
			delete(s.tokens, t)
		}
	}
}

// SetClusters replaces the subscription's clusters.
func (s *Server) SetClusters(subscription string, mcs ...*armcontainerservice.ManagedCluster) {
	s.mu.Lock()
	s.subs[subscription] = mcs
	s.mu.Unlock()
}

// SetKubeconfig is what the credential API (listClusterAdminCredential)
// hands out for the cluster with resource ID id.
func (s *Server) SetKubeconfig(id string, kubeconfig []byte) {
	s.mu.Lock()
	s.kubecfgs[strings.ToLower(id)] = kubeconfig
	s.mu.Unlock()
}

// TokenRequests is how many tokens the token endpoint issued.
func (s *Server) TokenRequests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.issued }

// Throttle answers the next n Resource Manager calls with 429.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// Calls is how many list calls subscription had.
func (s *Server) Calls(subscription string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[subscription]
}

// ResourceID is the ID of AKS cluster name in a resource group.
func ResourceID(subscription, group, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerService/managedClusters/%s", subscription, group, name)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known":
		tenant := parts[0]
		base := s.URL + "/" + tenant
		json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint": base + "/oauth2/v2.0/token", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer": base + "/v2.0", "jwks_uri": base + "/discovery/v2.0/keys",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	case len(parts) == 4 && parts[1] == "oauth2" && parts[3] == "token":
		s.token(w, r, parts[0])
	case len(parts) == 5 && parts[0] == "subscriptions" && strings.EqualFold(parts[3], "Microsoft.ContainerService") && strings.EqualFold(parts[4], "managedClusters"):
		s.list(w, r, parts[1])
	case (len(parts) == 8 || len(parts) == 9) && parts[0] == "subscriptions" && strings.EqualFold(parts[6], "managedClusters"):
		s.cluster(w, r, parts)
	default:
		armError(w, http.StatusNotFound, "NotFound", "no such path "+r.URL.Path)
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
		return
	}
	id := tenant + "/" + r.PostForm.Get("client_id")
	s.mu.Lock()
	secret, hasSecret := s.secrets[id]
	pub := s.certs[id]
	expired := s.expired[id]
	s.mu.Unlock()
	if expired && r.PostForm.Get("client_secret") != "" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app are expired.","error_codes":[7000222]}`)
		return
	}
	ok := false
	switch {
	case r.PostForm.Get("client_secret") != "":
		ok = hasSecret && r.PostForm.Get("client_secret") == secret
	case r.PostForm.Get("client_assertion") != "" && pub != nil:
		if sig, err := jose.ParseSignedCompact(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256, jose.PS256}); err == nil {
			_, err := sig.Verify(pub)
			ok = err == nil
		}
	}
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}`)
		return
	}
	s.mu.Lock()
	s.issued++
	tok := fmt.Sprintf("eyJ.fake-%d", s.issued)
	s.tokens[tok] = id
	s.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
}

func armError(w http.ResponseWriter, code int, errCode, msg string) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": errCode, "message": msg}})
}

// authorizeLocked checks the bearer token, throttling and the caller's
// access to sub, answering if it fails. s.mu is held.
func (s *Server) authorizeLocked(w http.ResponseWriter, r *http.Request, sub string) bool {
	who, ok := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		armError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
		return false
	}
	s.calls[sub]++
	if s.throttle > 0 {
		s.throttle--
		w.Header().Set("Retry-After", "1")
		armError(w, http.StatusTooManyRequests, "TooManyRequests", "The request is being throttled.")
		return false
	}
	allowed := false
	for _, g := range s.grants[who] {
		allowed = allowed || g == sub
	}
	if !allowed {
		armError(w, http.StatusForbidden, "AuthorizationFailed", "The client does not have authorization to perform action 'Microsoft.ContainerService/managedClusters/read' over scope '/subscriptions/"+sub+"'.")
		return false
	}
	return true
}

// cluster serves one managed cluster (GET) and its credential API (POST
// …/listClusterAdminCredential).
func (s *Server) cluster(w http.ResponseWriter, r *http.Request, parts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authorizeLocked(w, r, parts[1]) {
		return
	}
	id := "/" + strings.ToLower(strings.Join(parts[:8], "/"))
	var mc *armcontainerservice.ManagedCluster
	for _, c := range s.subs[parts[1]] {
		if c.ID != nil && strings.ToLower(*c.ID) == id {
			mc = c
		}
	}
	if mc == nil {
		armError(w, http.StatusNotFound, "ResourceNotFound", "The Resource 'Microsoft.ContainerService/managedClusters/"+parts[7]+"' was not found.")
		return
	}
	if len(parts) == 8 && r.Method == http.MethodGet {
		json.NewEncoder(w).Encode(mc)
		return
	}
	if len(parts) == 9 && r.Method == http.MethodPost && parts[8] == "listClusterAdminCredential" {
		kc, ok := s.kubecfgs[id]
		if !ok {
			armError(w, http.StatusBadRequest, "BadRequest", "Getting static credential is not allowed because this cluster is set to disable local accounts.")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"kubeconfigs": []map[string]any{{"name": "clusterAdmin", "value": kc}}})
		return
	}
	armError(w, http.StatusNotFound, "NotFound", "no such operation")
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, sub string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authorizeLocked(w, r, sub) {
		return
	}
	mcs := s.subs[sub]
	if mcs == nil {
		mcs = []*armcontainerservice.ManagedCluster{}
	}
	json.NewEncoder(w).Encode(map[string]any{"value": mcs})
}
