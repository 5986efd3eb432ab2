// Package awsfake is a local fake of the parts of AWS eco uses — STS
// (GetCallerIdentity, AssumeRole) and EKS (ListClusters, DescribeCluster,
// ListNodegroups, DescribeNodegroup) — speaking their wire protocols, for
// driving the real aws-sdk-go-v2 in tests. It checks each request's
// SigV4 signature against the secret of the access key it names.
package awsfake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	// sessions are temporary keys from AssumeRole: ID → secret, and the
	// role each was issued for.
	sessions     map[string]string
	sessionRoles map[string]string
	// expired are session keys past their expiry.
	expired map[string]bool
	// access maps cluster → principal ARN → the access policies
	// associated with its access entry.
	access map[string]map[string][]string
	// roles maps role ARNs to the external ID they require ("" for none).
	roles    map[string]string
	clusters map[string][]Cluster // by region
	throttle int                  // answer so many requests with ThrottlingException
	calls    map[string]int       // by operation and region, "ListClusters us-east-1"
}

// New starts a fake on loopback; Close it when done.
func New() *Server {
	s := &Server{Account: "123456789012", keys: map[string]string{}, sessions: map[string]string{},
		roles: map[string]string{}, clusters: map[string][]Cluster{}, calls: map[string]int{},
		sessionRoles: map[string]string{}, access: map[string]map[string][]string{}, expired: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddKey lets access key id with secret in.
func (s *Server) AddKey(id, secret string) { s.mu.Lock(); s.keys[id] = secret; s.mu.Unlock() }

// RemoveKey revokes an access key: its requests are refused from now on.
func (s *Server) RemoveKey(id string) { s.mu.Lock(); delete(s.keys, id); s.mu.Unlock() }

// ExpireSessions makes every session AssumeRole issued so far expired:
// their requests are answered ExpiredTokenException.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.sessions {
		s.expired[id] = true
	}
}

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
	if r.URL.Query().Get("X-Amz-Signature") != "" {
		s.presigned(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
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
	expired := s.expired[keyID]
	s.mu.Unlock()
	if expired {
		awsError(w, r, http.StatusForbidden, map[bool]string{true: "ExpiredToken", false: "ExpiredTokenException"}[service == "sts"],
			"The security token included in the request is expired")
		return
	}
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
		s.callerIdentity(w, keyID)
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
		s.sessionRoles[id] = role
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

// callerIdentity answers GetCallerIdentity for keyID: an IAM user, or the
// assumed role of a session.
func (s *Server) callerIdentity(w http.ResponseWriter, keyID string) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>`+
		`<Arn>%s</Arn><UserId>%s</UserId><Account>%s</Account></GetCallerIdentityResult>`+
		`<ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>`, s.callerARN(keyID), keyID, s.Account)
}

func (s *Server) callerARN(keyID string) string {
	s.mu.Lock()
	role, ok := s.sessionRoles[keyID]
	s.mu.Unlock()
	if ok {
		_, name, _ := strings.Cut(role, ":role/")
		return fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/eco-hub", s.Account, name)
	}
	return fmt.Sprintf("arn:aws:iam::%s:user/%s", s.Account, keyID)
}

// presigned serves a GET with SigV4 in the query (a presigned URL, as in
// an EKS token): only GetCallerIdentity, after checking the signature.
func (s *Server) presigned(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	parts := strings.Split(q.Get("X-Amz-Credential"), "/")
	if len(parts) != 5 || q.Get("Action") != "GetCallerIdentity" {
		awsError(w, r, http.StatusForbidden, "AccessDenied", "malformed presigned request")
		return
	}
	keyID, region := parts[0], parts[2]
	s.mu.Lock()
	secret, ok := s.keys[keyID]
	if !ok {
		secret, ok = s.sessions[keyID]
	}
	s.mu.Unlock()
	t, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if !ok || err != nil {
		awsError(w, r, http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
		return
	}
	if exp, err := time.ParseDuration(q.Get("X-Amz-Expires") + "s"); err != nil || time.Now().After(t.Add(exp)) {
		awsError(w, r, http.StatusForbidden, "ExpiredToken", "The presigned URL has expired.")
		return
	}
	want := q.Get("X-Amz-Signature")
	q.Del("X-Amz-Signature")
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Host+r.URL.Path+"?"+q.Encode(), nil)
	if err != nil {
		awsError(w, r, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	req.Host = r.Host
	for _, h := range strings.Split(q.Get("X-Amz-SignedHeaders"), ";") {
		if h != "host" {
			req.Header.Set(h, r.Header.Get(h))
		}
	}
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret, SessionToken: q.Get("X-Amz-Security-Token")}
	empty := sha256.Sum256(nil)
	uri, _, err := v4.NewSigner().PresignHTTP(r.Context(), creds, req, hex.EncodeToString(empty[:]), "sts", region, t)
	if err != nil || !strings.Contains(uri, "X-Amz-Signature="+want) {
		awsError(w, r, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return
	}
	s.count("PresignedGetCallerIdentity", "sts")
	s.callerIdentity(w, keyID)
}

// VerifyToken checks an EKS bearer token for cluster as
// aws-iam-authenticator does — GET its presigned URL (which must be this
// fake's) with the cluster's name in the signed header — and returns the
// caller's ARN.
func (s *Server) VerifyToken(ctx context.Context, token, cluster string) (string, error) {
	raw, ok := strings.CutPrefix(token, "k8s-aws-v1.")
	if !ok {
		return "", errors.New("not an EKS token")
	}
	u, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || !strings.HasPrefix(string(u), s.URL+"/") && !strings.HasPrefix(string(u), s.URL+"?") {
		return "", errors.New("the token is not a presigned URL of this STS")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, string(u), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("x-k8s-aws-id", cluster)
	resp, err := s.Client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Result struct {
			Arn string `xml:"Arn"`
		} `xml:"GetCallerIdentityResult"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("STS answered %d: %s", resp.StatusCode, b)
	}
	if err := xml.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", err
	}
	return out.Result.Arn, nil
}

// TokenReviewHandler is a kube-apiserver authentication webhook
// (--authentication-token-webhook-config-file) for EKS cluster name: a
// valid token of a principal whose access entry has
// AmazonEKSClusterAdminPolicy is that principal in system:masters.
func (s *Server) TokenReviewHandler(cluster string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Spec       struct {
				Token string `json:"token"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status := map[string]any{"authenticated": false}
		if arn, err := s.VerifyToken(r.Context(), review.Spec.Token, cluster); err != nil {
			status["error"] = err.Error()
		} else {
			principal := principalARN(arn)
			s.mu.Lock()
			policies := s.access[cluster][principal]
			s.mu.Unlock()
			for _, p := range policies {
				if strings.HasSuffix(p, "/AmazonEKSClusterAdminPolicy") {
					status = map[string]any{"authenticated": true, "user": map[string]any{"username": principal, "uid": principal, "groups": []string{"system:masters", "system:authenticated"}}}
				}
			}
			if status["authenticated"] == false {
				status["error"] = principal + " has no access entry with AmazonEKSClusterAdminPolicy"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": review.APIVersion, "kind": "TokenReview", "status": status})
	})
}

// AccessPolicies returns the policies of principal's access entry.
func (s *Server) AccessPolicies(cluster, principal string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.access[cluster][principal]...)
}

func principalARN(arn string) string {
	rest, ok := strings.CutPrefix(arn, "arn:aws:sts::")
	if !ok {
		return arn
	}
	account, path, ok := strings.Cut(rest, ":assumed-role/")
	if !ok {
		return arn
	}
	role, _, _ := strings.Cut(path, "/")
	return "arn:aws:iam::" + account + ":role/" + role
}

// accessEntries serves CreateAccessEntry and AssociateAccessPolicy.
func (s *Server) accessEntries(w http.ResponseWriter, r *http.Request, cluster string, parts []string) {
	var body struct {
		PrincipalArn string `json:"principalArn"`
		PolicyArn    string `json:"policyArn"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access[cluster] == nil {
		s.access[cluster] = map[string][]string{}
	}
	switch {
	case len(parts) == 3: // CreateAccessEntry
		s.calls["CreateAccessEntry "+cluster]++
		if _, ok := s.access[cluster][body.PrincipalArn]; ok {
			awsError(w, r, http.StatusConflict, "ResourceInUseException", "The specified access entry resource is already in use on this cluster.")
			return
		}
		s.access[cluster][body.PrincipalArn] = []string{}
		json.NewEncoder(w).Encode(map[string]any{"accessEntry": map[string]any{"clusterName": cluster, "principalArn": body.PrincipalArn, "type": "STANDARD"}})
	case len(parts) == 5 && parts[4] == "access-policies": // AssociateAccessPolicy
		s.calls["AssociateAccessPolicy "+cluster]++
		principal, _ := url.PathUnescape(parts[3])
		if _, ok := s.access[cluster][principal]; !ok {
			awsError(w, r, http.StatusNotFound, "ResourceNotFoundException", "The specified principalArn could not be found.")
			return
		}
		s.access[cluster][principal] = append(s.access[cluster][principal], body.PolicyArn)
		json.NewEncoder(w).Encode(map[string]any{"clusterName": cluster, "principalArn": principal,
			"associatedAccessPolicy": map[string]any{"policyArn": body.PolicyArn, "accessScope": map[string]any{"type": "cluster"}}})
	default:
		awsError(w, r, http.StatusNotFound, "NotFoundException", "no such operation")
	}
}

func (s *Server) eks(w http.ResponseWriter, r *http.Request, region string) {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	if r.Method == http.MethodPost && len(parts) >= 3 && parts[0] == "clusters" && parts[2] == "access-entries" {
		s.accessEntries(w, r, parts[1], parts)
		return
	}
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
