package aws_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/cloud/aws"
	"github.com/eco-project/eco/cloud/aws/awsfake"
)

// review asks the fake's TokenReview webhook for cluster about token.
func review(t *testing.T, f *awsfake.Server, cluster, token string) (bool, string, []string) {
	t.Helper()
	rec := httptest.NewRecorder()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}`
	f.TokenReviewHandler(cluster).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", strings.NewReader(body)))
	var out struct {
		Status struct {
			Authenticated bool
			User          struct {
				Username string
				Groups   []string
			}
			Error string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out.Status.Authenticated, out.Status.User.Username + out.Status.Error, out.Status.User.Groups
}

func TestAccess(t *testing.T) {
	r := newRig(t)
	ca := base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"))
	r.fake.SetClusters("eu-west-1",
		awsfake.Cluster{Name: "shop", Status: "ACTIVE", Endpoint: "https://shop.example", CAData: ca},
		awsfake.Cluster{Name: "vault", Status: "ACTIVE", Private: true})
	r.fake.AddRole("arn:aws:iam::123456789012:role/eco", "ext-1")
	for _, tt := range []struct {
		name      string
		creds     cloud.Credentials
		principal string
	}{
		{"access keys", r.acct.Credentials, "arn:aws:iam::123456789012:user/AKIDECO"},
		{"an assumed role", cloud.Credentials{AccessKeyID: "AKIDECO", SecretAccessKey: "s3cret", RoleARN: "arn:aws:iam::123456789012:role/eco", ExternalID: "ext-1"}, "arn:aws:iam::123456789012:role/eco"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := r.acct
			a.Credentials = tt.creds
			ref := r.fake.ARN("eu-west-1", "shop")
			for range 2 { // again: the access entry exists, that is fine
				acc, err := r.p.Access(t.Context(), a, "eu-west-1", ref)
				if err != nil {
					t.Fatalf("Access: %v", err)
				}
				if acc.Server != "https://shop.example" || !strings.Contains(string(acc.CAData), "fake") || !strings.HasPrefix(acc.BearerToken, aws.TokenPrefix) {
					t.Fatalf("Access = %+v", acc)
				}
				if !slices.Contains(r.fake.AccessPolicies("shop", tt.principal), aws.AdminPolicyARN) {
					t.Errorf("no admin access entry for %s: %v", tt.principal, r.fake.AccessPolicies("shop", tt.principal))
				}
				ok, who, groups := review(t, r.fake, "shop", acc.BearerToken)
				if !ok || who != tt.principal || !slices.Contains(groups, "system:masters") {
					t.Errorf("TokenReview = %v %q %v", ok, who, groups)
				}
				// The token names its cluster: another cluster refuses it.
				if ok, why, _ := review(t, r.fake, "vault", acc.BearerToken); ok {
					t.Errorf("a token for shop authenticates at vault: %s", why)
				}
			}
		})
	}
	if _, err := r.p.Access(t.Context(), r.acct, "eu-west-1", r.fake.ARN("eu-west-1", "vault")); !errors.Is(err, cloud.ErrPrivateEndpoint) {
		t.Errorf("a private cluster: %v, want ErrPrivateEndpoint", err)
	}
	if ok, _, _ := review(t, r.fake, "shop", "k8s-aws-v1.bm90LWEtdXJs"); ok {
		t.Errorf("a garbage token authenticates")
	}
}

func TestPrincipalARN(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:iam::1:user/alice":                 "arn:aws:iam::1:user/alice",
		"arn:aws:sts::1:assumed-role/eco/eco-hub":   "arn:aws:iam::1:role/eco",
		"arn:aws:sts::1:federated-user/bob":         "arn:aws:sts::1:federated-user/bob",
		"arn:aws:sts::1:assumed-role/eco/with/more": "arn:aws:iam::1:role/eco",
	} {
		if got := aws.PrincipalARN(in); got != want {
			t.Errorf("PrincipalARN(%q) = %q, want %q", in, got, want)
		}
	}
}
