// Package gcpfake is a local fake of the GKE API (ClusterManager's
// ListClusters over gRPC, with TLS) and of Google's OAuth token endpoint,
// for driving Google's real Go clients in tests. It checks every call's
// credentials: a self-signed JWT of a service account it issued a key to,
// or an access token its token endpoint handed out for one.
package gcpfake

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/container/apiv1/containerpb"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Server is the fake.
type Server struct {
	containerpb.UnimplementedClusterManagerServer
	// Endpoint is the gRPC endpoint (host:port), TokenURI the token
	// endpoint.
	Endpoint string
	TokenURI string

	token *httptest.Server
	grpc  *grpc.Server
	done  chan struct{}
	roots *x509.CertPool

	mu       sync.Mutex // guards everything below
	keys     map[string]*rsa.PublicKey
	tokens   map[string]string // access token → service account
	projects map[string][]*containerpb.Cluster
	missing  map[string][]string // project → missing zones
	throttle int
	calls    map[string]int // ListClusters by project
	issued   int
}

// New starts the fake on loopback; Close it when done.
func New() (*Server, error) {
	s := &Server{keys: map[string]*rsa.PublicKey{}, tokens: map[string]string{}, projects: map[string][]*containerpb.Cluster{},
		missing: map[string][]string{}, calls: map[string]int{}, done: make(chan struct{})}
	s.token = httptest.NewTLSServer(http.HandlerFunc(s.serveToken))
	s.TokenURI = s.token.URL + "/token"
	s.roots = x509.NewCertPool()
	s.roots.AddCert(s.token.Certificate())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.token.Close()
		return nil, err
	}
	s.Endpoint = lis.Addr().String()
	s.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: s.token.TLS.Certificates})))
	containerpb.RegisterClusterManagerServer(s.grpc, s)
	go func() { // owned: Close stops it and waits
		defer close(s.done)
		s.grpc.Serve(lis)
	}()
	return s, nil
}

// Close stops the fake.
func (s *Server) Close() {
	s.grpc.Stop()
	<-s.done
	s.token.Close()
}

// ClientOptions make a Google client trust the fake's TLS certificate and
// call it.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithGRPCDialOption(grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(s.roots, ""))),
	}
}

// HTTPClient trusts the fake's token endpoint.
func (s *Server) HTTPClient() *http.Client { return s.token.Client() }

// NewKey returns a new service-account JSON key for email in project,
// whose token_uri is the fake's.
func (s *Server) NewKey(email, project string) ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[email] = &k.PublicKey
	s.mu.Unlock()
	return json.Marshal(map[string]string{
		"type": "service_account", "project_id": project, "private_key_id": "fake-" + email,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": email, "client_id": "1", "token_uri": s.TokenURI,
		"auth_uri": "https://accounts.google.com/o/oauth2/auth",
	})
}

// RevokeKey disables email's key and forgets the tokens issued to it.
func (s *Server) RevokeKey(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, email)
	for t, e := range s.tokens {
		if e == email {
			delete(s.tokens, t)
		}
	}
}

// SetClusters replaces the clusters of project; SelfLink is filled in
// where empty.
func (s *Server) SetClusters(project string, cs ...*containerpb.Cluster) {
	for _, c := range cs {
		if c.SelfLink == "" {
			c.SelfLink = SelfLink(project, c.Location, c.Name)
		}
	}
	s.mu.Lock()
	s.projects[project] = cs
	s.mu.Unlock()
}

// SetMissingZones makes ListClusters report zones it cannot reach.
func (s *Server) SetMissingZones(project string, zones ...string) {
	s.mu.Lock()
	s.missing[project] = zones
	s.mu.Unlock()
}

// Throttle answers the next n calls with RESOURCE_EXHAUSTED.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// Calls is how many ListClusters calls project had.
func (s *Server) Calls(project string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[project] }

// SelfLink is GKE's self link of a cluster.
func SelfLink(project, location, name string) string {
	return fmt.Sprintf("https://container.googleapis.com/v1/projects/%s/locations/%s/clusters/%s", project, location, name)
}

// verifyJWT checks a JWT signed by a known service account and returns
// its email.
func (s *Server) verifyJWT(raw string) (string, error) {
	sig, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return "", err
	}
	var claims struct {
		Iss string `json:"iss"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(sig.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return "", err
	}
	s.mu.Lock()
	pub := s.keys[claims.Iss]
	s.mu.Unlock()
	if pub == nil {
		return "", fmt.Errorf("no such service account %q", claims.Iss)
	}
	if _, err := sig.Verify(pub); err != nil {
		return "", err
	}
	if time.Now().Unix() > claims.Exp {
		return "", fmt.Errorf("expired")
	}
	return claims.Iss, nil
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
		return
	}
	email, err := s.verifyJWT(r.PostForm.Get("assertion"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
		return
	}
	s.mu.Lock()
	s.issued++
	tok := fmt.Sprintf("ya29.fake-%d", s.issued)
	s.tokens[tok] = email
	s.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "expires_in": 3600, "token_type": "Bearer"})
}

// Authenticate checks a bearer token from the fake's token endpoint or a
// self-signed JWT, and returns the service account.
func (s *Server) Authenticate(bearer string) (string, error) {
	s.mu.Lock()
	email, ok := s.tokens[bearer]
	s.mu.Unlock()
	if ok {
		return email, nil
	}
	return s.verifyJWT(bearer)
}

// TokenReviewHandler is a kube-apiserver authentication webhook
// (--authentication-token-webhook-config-file) standing in for GKE's:
// an access token the fake's token endpoint issued is its service
// account, in system:masters (as roles/container.admin would allow).
func (s *Server) TokenReviewHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			APIVersion string `json:"apiVersion"`
			Spec       struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		email, ok := s.tokens[review.Spec.Token]
		s.mu.Unlock()
		status := map[string]any{"authenticated": false, "error": "unknown access token"}
		if ok {
			status = map[string]any{"authenticated": true, "user": map[string]any{"username": email, "groups": []string{"system:masters", "system:authenticated"}}}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": review.APIVersion, "kind": "TokenReview", "status": status})
	})
}

// ListClusters implements containerpb.ClusterManagerServer.
func (s *Server) ListClusters(ctx context.Context, req *containerpb.ListClustersRequest) (*containerpb.ListClustersResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := ""
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}
	if _, err := s.Authenticate(strings.TrimPrefix(auth, "Bearer ")); err != nil {
		return nil, status.Error(codes.Unauthenticated, "Request had invalid authentication credentials.")
	}
	project, ok := strings.CutPrefix(req.GetParent(), "projects/")
	project, loc, _ := strings.Cut(project, "/locations/")
	if !ok || loc != "-" {
		return nil, status.Error(codes.InvalidArgument, "the fake lists all locations only")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[project]++
	if s.throttle > 0 {
		s.throttle--
		return nil, status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Read requests'")
	}
	cs, ok := s.projects[project]
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "Permission denied on resource project "+project+".")
	}
	return &containerpb.ListClustersResponse{Clusters: cs, MissingZones: s.missing[project]}, nil
}
