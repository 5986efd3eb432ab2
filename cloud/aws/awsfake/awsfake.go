// Package awsfake is a local fake of the parts of AWS eco uses — STS
// (GetCallerIdentity, AssumeRole) and EKS (ListClusters, DescribeCluster,
// ListNodegroups, DescribeNodegroup) — speaking their wire protocols, for
// driving the real aws-sdk-go-v2 in tests. It checks each request's
// SigV4 signature against the secret of the access key it names.
package awsfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Issue is an EKS health issue.
type Issue struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Nodegroup is an EKS node group as the fake serves it.
type Nodegroup struct {
	Name   string
	Status string
	Issues []Issue
}

// Cluster is an EKS cluster as the fake serves it.
type Cluster struct {
	Name     string
	Status   string // CREATING, ACTIVE, UPDATING, DELETING, FAILED, PENDING
	Version  string
	Endpoint string
	Private  bool
	CAData   string // base64 PEM, as EKS gives it
	Issues   []Issue
	Groups   []Nodegroup
}

// Server is the fake. Set its fields before serving, or under Lock.
type Server struct {
	*httptest.Server
	// Account is the AWS account ID in ARNs.
	Account string

	mu sync.Mutex // guards everything below
	// keys maps access key IDs to their secrets.
	keys map[string]string
	// sessions are temporary keys from AssumeRole: ID → secret.
	sessions map[string]string
	// roles maps role ARNs to the external ID they require ("" for none).
	roles    map[string]string
	clusters map[string][]Cluster // by region
	throttle int                  // answer so many requests with ThrottlingException
	calls    map[string]int       // by operation and region, "ListClusters us-east-1"
}

// New starts a fake on loopback; Close it when done.
func New() *Server {
	s := &Server{Account: "123456789012", keys: map[string]string{}, sessions: map[string]string{},
		roles: map[string]string{}, clusters: map[string][]Cluster{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddKey lets access key id with secret in.
func (s *Server) AddKey(id, secret string) { s.mu.Lock(); s.keys[id] = secret; s.mu.Unlock() }

// RemoveKey revokes an access key: its requests are refused from now on.
func (s *Server) RemoveKey(id string) { s.mu.Lock(); delete(s.keys, id); s.mu.Unlock() }

// AddRole lets any known key assume role arn with externalID.
func (s *Server) AddRole(arn, externalID string) {
	s.mu.Lock()
	s.roles[arn] = externalID
	s.mu.Unlock()
}

// SetClusters replaces the clusters of region.
func (s *Server) SetClusters(region string, cs ...Cluster) {
	s.mu.Lock()
	s.clusters[region] = cs
	s.mu.Unlock()
}

// Throttle answers the next n requests with a 429 ThrottlingException.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// Requests returns how many signed requests region had, throttled ones
// included.
func (s *Server) Requests(region string) int { return s.Calls("request", region) }

// Calls returns how many times op was answered in region.
func (s *Server) Calls(op, region string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op+" "+region]
}

// ARN is the ARN of cluster name in region.
func (s *Server) ARN(region, name string) string {
	return fmt.Sprintf("arn:aws:eks:%s:%s:cluster/%s", region, s.Account, name)
}

var credRE = regexp.MustCompile(`Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m := credRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		awsError(w, r, http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	}
	keyID, region, service := m[1], m[3], m[4]
	s.mu.Lock()
	secret, ok := s.keys[keyID]
	if !ok {
		secret, ok = s.sessions[keyID]
	}
	throttled := s.throttle > 0
	if throttled {
		s.throttle--
	}
	s.calls["request "+region]++
	s.mu.Unlock()
	if !ok {
		awsError(w, r, http.StatusForbidden, map[bool]string{true: "InvalidClientTokenId", false: "UnrecognizedClientException"}[service == "sts"],
			"The security token included in the request is invalid.")
		return
	}
	if !verify(r, body, keyID, secret, service, region) {
		awsError(w, r, http.StatusForbidden, map[bool]string{true: "SignatureDoesNotMatch", false: "InvalidSignatureException"}[service == "sts"],
			"The request signature we calculated does not match the signature you provided.")
		return
	}
	if throttled {
		awsError(w, r, http.StatusTooManyRequests, map[bool]string{true: "Throttling", false: "ThrottlingException"}[service == "sts"], "Rate exceeded")
		return
	}
	if service == "sts" {
		s.sts(w, r, body, keyID)
		return
	}
	s.eks(w, r, region)
}

// verify recomputes the request's SigV4 signature with secret.
func verify(r *http.Request, body []byte, keyID, secret, service, region string) bool {
	t, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return false
	}
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return false
	}
	// Only the headers the client signed: its transport adds others
	// (Accept-Encoding) after signing.
	_, signed, _ := strings.Cut(r.Header.Get("Authorization"), "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	for _, h := range strings.Split(signed, ";") {
		if v, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
			req.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	req.Host = r.Host
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, req, hex.EncodeToString(sum[:]), service, region, t); err != nil {
		return false
	}
	return signature(req.Header.Get("Authorization")) == signature(r.Header.Get("Authorization"))
}

func signature(auth string) string {
	_, sig, _ := strings.Cut(auth, "Signature=")
	return sig
}

func awsError(w http.ResponseWriter, r *http.Request, code int, errType, msg string) {
	if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" { // STS, query protocol
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(code)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>`, errType, xmlEscape(msg))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", errType)
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *Server) count(op, region string) {
	s.mu.Lock()
	s.calls[op+" "+region]++
	s.mu.Unlock()
}

func (s *Server) sts(w http.ResponseWriter, r *http.Request, body []byte, keyID string) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.ParseForm(); err != nil {
		awsError(w, r, http.StatusBadRequest, "InvalidParameter", err.Error())
		return
	}
	s.count(r.PostForm.Get("Action"), "sts")
	w.Header().Set("Content-Type", "text/xml")
	switch r.PostForm.Get("Action") {
	case "GetCallerIdentity":
		fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>`+
			`<Arn>arn:aws:iam::%s:user/%s</Arn><UserId>%s</UserId><Account>%s</Account></GetCallerIdentityResult>`+
			`<ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>`, s.Account, keyID, keyID, s.Account)
	case "AssumeRole":
		role := r.PostForm.Get("RoleArn")
		s.mu.Lock()
		ext, ok := s.roles[role]
		s.mu.Unlock()
		if !ok || ext != r.PostForm.Get("ExternalId") {
			awsError(w, r, http.StatusForbidden, "AccessDenied", "User is not authorized to perform: sts:AssumeRole on resource: "+role)
			return
		}
		id := fmt.Sprintf("ASIAFAKE%08d", time.Now().UnixNano()%1e8)
		secret := "session-secret-" + id
		s.mu.Lock()
		s.sessions[id] = secret
		s.mu.Unlock()
		fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>`+
			`<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>token-%s</SessionToken>`+
			`<Expiration>%s</Expiration></Credentials><AssumedRoleUser><Arn>%s/eco-hub</Arn><AssumedRoleId>AROAFAKE:eco-hub</AssumedRoleId></AssumedRoleUser>`+
			`</AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			id, secret, id, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), role)
	default:
		awsError(w, r, http.StatusBadRequest, "InvalidAction", "unsupported action "+r.PostForm.Get("Action"))
	}
}

func (s *Server) eks(w http.ResponseWriter, r *http.Request, region string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodGet || len(parts) == 0 || parts[0] != "clusters" {
		awsError(w, r, http.StatusNotFound, "NotFoundException", "no such operation")
		return
	}
	s.mu.Lock()
	clusters := append([]Cluster(nil), s.clusters[region]...)
	s.mu.Unlock()
	find := func(name string) (Cluster, bool) {
		for _, c := range clusters {
			if c.Name == name {
				return c, true
			}
		}
		return Cluster{}, false
	}
	w.Header().Set("Content-Type", "application/json")
	switch len(parts) {
	case 1:
		s.count("ListClusters", region)
		names := []string{}
		for _, c := range clusters {
			names = append(names, c.Name)
		}
		json.NewEncoder(w).Encode(map[string]any{"clusters": names})
	case 2:
		s.count("DescribeCluster", region)
		c, ok := find(parts[1])
		if !ok {
			awsError(w, r, http.StatusNotFound, "ResourceNotFoundException", "No cluster found for name: "+parts[1]+".")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"cluster": map[string]any{
			"name": c.Name, "arn": s.ARN(region, c.Name), "status": c.Status, "version": c.Version,
			"endpoint": c.Endpoint, "createdAt": 1.7e9,
			"resourcesVpcConfig":   map[string]any{"endpointPublicAccess": !c.Private, "endpointPrivateAccess": c.Private},
			"health":               map[string]any{"issues": c.Issues},
			"certificateAuthority": map[string]any{"data": c.CAData},
		}})
	case 3, 4:
		c, ok := find(parts[1])
		if !ok || parts[2] != "node-groups" {
			awsError(w, r, http.StatusNotFound, "ResourceNotFoundException", "No cluster found for name: "+parts[1]+".")
			return
		}
		if len(parts) == 3 {
			s.count("ListNodegroups", region)
			names := []string{}
			for _, g := range c.Groups {
				names = append(names, g.Name)
			}
			json.NewEncoder(w).Encode(map[string]any{"nodegroups": names})
			return
		}
		s.count("DescribeNodegroup", region)
		for _, g := range c.Groups {
			if g.Name == parts[3] {
				json.NewEncoder(w).Encode(map[string]any{"nodegroup": map[string]any{
					"nodegroupName": g.Name, "clusterName": c.Name, "status": g.Status,
					"health": map[string]any{"issues": g.Issues},
				}})
				return
			}
		}
		awsError(w, r, http.StatusNotFound, "ResourceNotFoundException", "No node group found for name: "+parts[3]+".")
	default:
		awsError(w, r, http.StatusNotFound, "NotFoundException", "no such operation")
	}
}
