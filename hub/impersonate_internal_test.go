package hub

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzRequestedImpersonation feeds header sets to the parser of a
// client's impersonation: it never panics, asks for no user it was not
// given, and whenever any header names impersonation it either refuses,
// or returns what the cluster must review, or the headers were an empty
// Impersonate-User alone (none, as for kube-apiserver).
func FuzzRequestedImpersonation(f *testing.F) {
	f.Add("Impersonate-User", "bob", "Impersonate-Group", "devs")
	f.Add("iMPERSONATE-uSER", "system:admin", "impersonate-extra-scopes", "all")
	f.Add("Impersonate-Group", "system:masters", "X", "y")
	f.Add("Impersonate-Extra-%zz", "v", "Impersonate-User", "")
	f.Add("Impersonate_User", "system:admin", "Impersonate-Uid", "0")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{}
		h[k1] = append(h[k1], v1)
		h[k2] = append(h[k2], v2)
		imp, err := requestedImpersonation(h)
		asks := false
		for k := range h {
			if len(k) >= len(impersonatePrefix) && strings.EqualFold(k[:len(impersonatePrefix)], impersonatePrefix) {
				asks = true
			}
		}
		switch {
		case err != nil:
			if !asks {
				t.Fatalf("refused headers %v that ask for no impersonation: %v", h, err)
			}
		case imp != nil:
			if imp.user == "" || (imp.user != v1 && imp.user != v2) {
				t.Fatalf("impersonation %+v of a user not given in %v", imp, h)
			}
			if len(imp.reviews()) == 0 {
				t.Fatalf("impersonation %+v needs no review", imp)
			}
		case asks:
			for k, vs := range h {
				if strings.EqualFold(k, "Impersonate-User") {
					for _, v := range vs {
						if v != "" {
							t.Fatalf("headers %v ask for user %q, parsed as none", h, v)
						}
					}
					continue
				}
				if len(k) >= len(impersonatePrefix) && strings.EqualFold(k[:len(impersonatePrefix)], impersonatePrefix) {
					t.Fatalf("header %s parsed as no impersonation", k)
				}
			}
		}
	})
}

// TestForbiddenStatusMatchesAPIServer pins the message kube-apiserver's
// impersonation filter writes (k8s.io/apiserver responsewriters.Forbidden).
func TestForbiddenStatusMatchesAPIServer(t *testing.T) {
	imp := &impersonation{user: "system:serviceaccount:ns:sa", groups: []string{"g"}, uid: "u", extra: map[string][]string{"scopes": {"a"}}}
	want := []string{
		`serviceaccounts "sa" is forbidden: User "eco:alice" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "ns"`,
		`groups "g" is forbidden: User "eco:alice" cannot impersonate resource "groups" in API group "" at the cluster scope`,
		`userextras.authentication.k8s.io "a" is forbidden: User "eco:alice" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope`,
		`uids.authentication.k8s.io "u" is forbidden: User "eco:alice" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope`,
	}
	reviews := imp.reviews()
	if len(reviews) != len(want) {
		t.Fatalf("%d reviews, want %d", len(reviews), len(want))
	}
	for i, ra := range reviews {
		st := forbiddenStatus("eco:alice", ra, "")
		if st.Message != want[i] || st.Code != 403 || st.Reason != "Forbidden" || st.Kind != "Status" {
			t.Errorf("review %d: %+v\nwant message %s", i, st, want[i])
		}
	}
}
