package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/hub/ui"
	"github.com/eco-project/eco/localeco"
)

// accessSuite is the world of the per-cluster access rows: a hub with the
// web UI, the shared real cluster imported and connected as A, a second
// cluster B imported but not installed, and hub users with grants.
type accessSuite struct {
	w    *world
	a, b string // cluster IDs
	// kubeconfigs through the hub to A, by user or token kind.
	kc map[string]string
	// tokens by user or kind.
	tok map[string]hub.TokenJSON
	// rexGrant is the grant the suite deletes after rex got a kubeconfig.
	rexGrant string
}

func newAccessSuite(t *testing.T) *accessSuite {
	w := newWorldWith(t, func(c *localeco.HubConfig) {
		c.Mount = func(h *hub.Hub) error {
			_, err := ui.Mount(ui.Config{Hub: h, Logger: logger(t).With("component", "ui")})
			return err
		}
	})
	ctx := t.Context()
	s := &accessSuite{w: w, a: w.id, kc: map[string]string{}, tok: map[string]hub.TokenJSON{}}
	b, err := w.hub.Import(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	s.b = b.ID
	token := func(key string, body map[string]any) {
		t.Helper()
		var tok hub.TokenJSON
		if err := w.hub.Do(ctx, "POST", "/api/v1/tokens", "", body, &tok); err != nil {
			t.Fatal(err)
		}
		s.tok[key] = tok
	}
	grantKind := func(kind, subject, cluster, role string) hub.GrantJSON {
		t.Helper()
		var g hub.GrantJSON
		if err := w.hub.Do(ctx, "POST", "/api/v1/grants", "", map[string]string{"kind": kind, "subject": subject, "cluster": cluster, "role": role}, &g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	grant := func(subject, cluster, role string) hub.GrantJSON { return grantKind("user", subject, cluster, role) }
	token("nina", map[string]any{"name": "nina", "role": "member"}) // view on B only
	grant("nina", s.b, "view")
	token("vic", map[string]any{"name": "vic", "role": "member"}) // view on A and B
	grant("vic", s.a, "view")
	grant("vic", s.b, "view")
	token("ed", map[string]any{"name": "ed", "role": "member"}) // edit on A
	grant("ed", s.a, "edit")
	token("ivan", map[string]any{"name": "ivan", "role": "member"}) // view on A, may impersonate carol
	grant("ivan", s.a, "view")
	token("gina", map[string]any{"name": "gina", "role": "member", "groups": []string{"devs"}}) // view on A through group devs
	grantKind("group", "devs", s.a, "view")
	token("devs", map[string]any{"name": "devs", "role": "member"}) // a user named like the group: nothing
	token("ada", map[string]any{"name": "ada", "role": "member"})   // admin of cluster A, not of the hub
	grant("ada", s.a, "admin")
	token("rex", map[string]any{"name": "rex", "role": "member"}) // view on A, taken away after his kubeconfig
	s.rexGrant = grant("rex", s.a, "view").ID
	token("expired", map[string]any{"name": "old", "role": "admin", "expiresIn": "1s"})
	token("scopedA", map[string]any{"name": "scopy", "role": "admin", "clusters": []string{s.a}})
	token("readonly", map[string]any{"name": "reader", "role": "admin", "readOnly": true})

	// The cluster's own RBAC lets hub user ivan impersonate carol, nobody
	// else.
	adm := admin(t)
	cr := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-impersonate-carol"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"users"}, Verbs: []string{"impersonate"}, ResourceNames: []string{"carol"}}},
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-impersonate-carol"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: hub.DefaultUserPrefix + "ivan"}},
	}
	if _, err := adm.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		adm.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
		adm.RbacV1().ClusterRoles().Delete(context.Background(), cr.Name, metav1.DeleteOptions{})
	})

	// Members get their kubeconfig from the API, as a user would; tokens
	// used as they are get one written around them.
	dir := t.TempDir()
	for _, name := range []string{"vic", "ed", "ivan", "gina", "rex", "ada"} {
		s.kc[name] = filepath.Join(dir, name+".kubeconfig")
		if err := w.hub.WriteKubeconfig(ctx, s.a, s.tok[name].Token, s.kc[name]); err != nil {
			t.Fatalf("kubeconfig for %s: %v", name, err)
		}
	}
	// nina has no grant on A, so no kubeconfig from the hub for it: her own
	// token, unscoped, pointed at A.
	for _, kind := range []string{"nina", "devs", "expired", "scopedA", "readonly"} {
		s.kc[kind] = s.kubeconfigWith(t, s.a, s.tok[kind].Token)
	}
	s.kc["scopedA@B"] = s.kubeconfigWith(t, s.b, s.tok["scopedA"].Token)
	return s
}

// kubeconfigWith writes a kubeconfig through the hub to cluster id that
// uses token as it is.
func (s *accessSuite) kubeconfigWith(t *testing.T, id, token string) string {
	t.Helper()
	c, err := s.w.hub.Store().GetCluster(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	data, err := s.w.hub.Kubeconfig(c, "user", token)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "*.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	return f.Name()
}

// retarget rewrites kubeconfig path to reach cluster to instead of from.
func (s *accessSuite) retarget(t *testing.T, path, from, to string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := path + ".retargeted"
	if err := os.WriteFile(out, bytes.ReplaceAll(data, []byte("/clusters/"+from+"/k8s"), []byte("/clusters/"+to+"/k8s")), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// raw sends a request to the hub with token and extra headers; trailer,
// if not nil, is sent as request trailers of a chunked body.
func (s *accessSuite) raw(t *testing.T, method, path, token string, header, trailer http.Header, body string) (int, string) {
	t.Helper()
	var rd io.Reader = strings.NewReader(body)
	if trailer != nil {
		rd = io.MultiReader(strings.NewReader(body)) // no length: chunked
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.w.hub.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if trailer != nil {
		req.ContentLength = -1
		req.Trailer = trailer
	}
	for k, v := range header {
		req.Header[k] = v // as written: odd case survives
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.w.hub.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// whoamiRaw asks the cluster who the caller is, through the hub, with the
// given headers and trailers, and returns the user name it sees.
func (s *accessSuite) whoamiRaw(t *testing.T, token string, header, trailer http.Header) (int, string, string) {
	t.Helper()
	code, body := s.raw(t, "POST", "/clusters/"+s.a+"/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews", token, header, trailer,
		`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	var ssr struct {
		Status struct{ UserInfo struct{ Username string } }
	}
	json.Unmarshal([]byte(body), &ssr)
	return code, ssr.Status.UserInfo.Username, body
}

// statusMessage returns the message of a Kubernetes Status body.
func statusMessage(body string) string {
	var st struct{ Kind, Message string }
	if json.Unmarshal([]byte(body), &st) != nil || st.Kind != "Status" {
		return ""
	}
	return st.Message
}

// refused asserts that kubectl failed and said want.
func refused(t *testing.T, out string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("kubectl succeeded, want a refusal with %q:\n%s", want, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("kubectl refused with %q, want %q", strings.TrimSpace(out), w)
		}
	}
}

// TestSecurityAccess is the per-cluster access part of issue 15's
// security suite: each row names an attack and the refusal it must get,
// against a real hub, a real cluster and real kubectl.
func TestSecurityAccess(t *testing.T) {
	s := newAccessSuite(t)
	ctx := t.Context()
	prefix := hub.DefaultUserPrefix
	notImported := `cluster "` + s.a + `" is not imported in this hub`

	rows := []struct {
		attack  string
		refusal string
		run     func(t *testing.T)
	}{
		{
			attack:  "a member reads a cluster it was not granted through the API",
			refusal: "404, the same body as for a cluster that does not exist",
			run: func(t *testing.T) {
				code, body := s.raw(t, "GET", "/api/v1/clusters/"+s.a, s.tok["nina"].Token, nil, nil, "")
				codeNone, bodyNone := s.raw(t, "GET", "/api/v1/clusters/c-aaaaaaaaaa", s.tok["nina"].Token, nil, nil, "")
				if code != 404 || codeNone != 404 || strings.ReplaceAll(body, s.a, "X") != strings.ReplaceAll(bodyNone, "c-aaaaaaaaaa", "X") {
					t.Fatalf("ungranted: %d %s; unknown: %d %s", code, body, codeNone, bodyNone)
				}
			},
		},
		{
			attack:  "a member lists clusters to find one it was not granted",
			refusal: "the list and its total leave the cluster out",
			run: func(t *testing.T) {
				var list struct {
					Items []hub.ClusterJSON
					Total int
				}
				if err := s.w.hub.Do(ctx, "GET", "/api/v1/clusters", s.tok["nina"].Token, nil, &list); err != nil {
					t.Fatal(err)
				}
				if list.Total != 1 || len(list.Items) != 1 || list.Items[0].ID != s.b {
					t.Fatalf("nina lists %+v (total %d), want only %s", list.Items, list.Total, s.b)
				}
			},
		},
		{
			attack:  "a member looks for a cluster it was not granted in the web UI",
			refusal: "Imported Clusters does not show it; its pages are the 404 of a missing cluster",
			run: func(t *testing.T) {
				code, page := s.raw(t, "GET", "/ui/clusters", s.tok["nina"].Token, nil, nil, "")
				if code != 200 || strings.Contains(page, s.a) || strings.Contains(page, ">local</a>") || !strings.Contains(page, ">other</a>") {
					t.Fatalf("nina's Imported Clusters (%d) shows %s or misses %s", code, s.a, s.b)
				}
				for _, tab := range []string{"", "/workloads"} {
					code, _ := s.raw(t, "GET", "/ui/clusters/"+s.a+tab, s.tok["nina"].Token, nil, nil, "")
					if code != 404 {
						t.Fatalf("nina opens %s%s: %d, want 404", s.a, tab, code)
					}
				}
			},
		},
		{
			attack:  "a member runs kubectl against a cluster it was not granted",
			refusal: "NotFound (kubectl's discovery says the server could not find the requested resource); the Status says not imported",
			run: func(t *testing.T) {
				out, err := kubectl(ctx, s.kc["nina"], "get", "pods", "-A")
				refused(t, out, err, "Error from server (NotFound)")
				code, body := s.raw(t, "GET", "/clusters/"+s.a+"/k8s/api/v1/pods", s.tok["nina"].Token, nil, nil, "")
				if code != 404 || statusMessage(body) != "eco: "+notImported {
					t.Fatalf("raw: %d %s", code, body)
				}
			},
		},
		{
			attack:  "a hub user named like a granted hub group uses that group's access",
			refusal: "NotFound: grants to a group reach only tokens carrying the group (while a member of it reads)",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["gina"], "get", "pods", "-n", "default")
				out, err := kubectl(ctx, s.kc["devs"], "get", "pods", "-n", "default")
				refused(t, out, err, "Error from server (NotFound)")
			},
		},
		{
			attack:  "a member granted admin of a cluster deletes it from the hub or reads its install YAML (the agent credential)",
			refusal: "403: the hub role admin is required (while kubectl acts as cluster-admin)",
			run: func(t *testing.T) {
				who := mustKubectl(t, s.kc["ada"], "auth", "can-i", "*", "*")
				if strings.TrimSpace(who) != "yes" {
					t.Fatalf("ada can-i '*' '*' = %q, want yes", who)
				}
				for _, req := range [][2]string{{"DELETE", "/api/v1/clusters/" + s.a}, {"GET", "/api/v1/clusters/" + s.a + "/install.yaml"}} {
					if code, body := s.raw(t, req[0], req[1], s.tok["ada"].Token, nil, nil, ""); code != 403 || !strings.Contains(body, "admin role is required") {
						t.Fatalf("%s %s: %d %s", req[0], req[1], code, body)
					}
				}
			},
		},
		{
			attack:  "a kubeconfig is used after its user's grant was deleted",
			refusal: "NotFound at once: the minted token follows the user's grants",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["rex"], "get", "pods", "-n", "default")
				if err := s.w.hub.Do(ctx, "DELETE", "/api/v1/grants/"+s.rexGrant, "", nil, nil); err != nil {
					t.Fatal(err)
				}
				out, err := kubectl(ctx, s.kc["rex"], "get", "pods", "-n", "default")
				refused(t, out, err, "Error from server (NotFound)")
			},
		},
		{
			attack:  "a member with a view grant creates a ConfigMap",
			refusal: "forbidden by the cluster's RBAC for " + prefix + "vic in eco:viewers",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["vic"], "get", "configmaps", "-n", "default")
				out, err := kubectl(ctx, s.kc["vic"], "create", "configmap", "nope", "-n", "default")
				refused(t, out, err, "forbidden", `"`+prefix+`vic"`)
			},
		},
		{
			attack:  "a member with an edit grant creates RBAC to escalate",
			refusal: "forbidden (edit creates Deployments but not Roles or bindings)",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["ed"], "create", "deployment", "ed-web", "-n", "default", "--image=nginx")
				defer kubectl(context.Background(), s.w.kc, "delete", "deployment", "ed-web", "-n", "default")
				out, err := kubectl(ctx, s.kc["ed"], "create", "rolebinding", "ed-admin", "-n", "default", "--clusterrole=admin", "--user="+prefix+"ed")
				refused(t, out, err, "forbidden", `"`+prefix+`ed"`)
				out, err = kubectl(ctx, s.kc["ed"], "create", "role", "ed-role", "-n", "default", "--verb=get", "--resource=secrets")
				refused(t, out, err, "forbidden")
			},
		},
		{
			attack:  "an expired token is used with kubectl",
			refusal: "401 Unauthorized: you must be logged in",
			run: func(t *testing.T) {
				time.Sleep(time.Until(*s.tok["expired"].ExpiresAt) + 10*time.Millisecond)
				out, err := kubectl(ctx, s.kc["expired"], "get", "pods")
				refused(t, out, err, "You must be logged in to the server", "a valid hub API token is required")
			},
		},
		{
			attack:  "an expired token is used on the hub API",
			refusal: "401",
			run: func(t *testing.T) {
				time.Sleep(time.Until(*s.tok["expired"].ExpiresAt) + 10*time.Millisecond)
				if code, body := s.raw(t, "GET", "/api/v1/clusters", s.tok["expired"].Token, nil, nil, ""); code != 401 {
					t.Fatalf("%d %s", code, body)
				}
			},
		},
		{
			attack:  "a token scoped to cluster A is used with kubectl on cluster B",
			refusal: "NotFound: B is not imported (an unscoped admin gets 503, B is not connected)",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["scopedA"], "get", "namespaces")
				out, err := kubectl(ctx, s.kc["scopedA@B"], "get", "namespaces")
				refused(t, out, err, "Error from server (NotFound)")
				code, body := s.raw(t, "GET", "/clusters/"+s.b+"/k8s/api", s.tok["scopedA"].Token, nil, nil, "")
				if code != 404 || statusMessage(body) != `eco: cluster "`+s.b+`" is not imported in this hub` {
					t.Fatalf("raw: %d %s", code, body)
				}
				if code, body := s.raw(t, "GET", "/clusters/"+s.b+"/k8s/api", s.w.hub.AdminToken, nil, nil, ""); code != 503 {
					t.Fatalf("an unscoped admin on B: %d %s, want 503", code, body)
				}
			},
		},
		{
			attack:  "a token scoped to cluster A reads cluster B or manages the hub through the API",
			refusal: "404 for B; 403 for minting a token",
			run: func(t *testing.T) {
				if code, _ := s.raw(t, "GET", "/api/v1/clusters/"+s.b, s.tok["scopedA"].Token, nil, nil, ""); code != 404 {
					t.Fatalf("GET B: %d", code)
				}
				if code, _ := s.raw(t, "POST", "/api/v1/tokens", s.tok["scopedA"].Token, nil, nil, `{"name":"x","role":"admin"}`); code != 403 {
					t.Fatalf("POST token: %d", code)
				}
			},
		},
		{
			attack:  "a read-only token creates through kubectl",
			refusal: "403 Forbidden from the hub: the token is read-only",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["readonly"], "get", "pods", "-A")
				out, err := kubectl(ctx, s.kc["readonly"], "create", "namespace", "ro-nope")
				refused(t, out, err, "Forbidden", "is read-only")
			},
		},
		{
			attack:  "a read-only token deletes or execs through kubectl",
			refusal: "403 Forbidden from the hub: the token is read-only",
			run: func(t *testing.T) {
				out, err := kubectl(ctx, s.kc["readonly"], "delete", "namespace", "default", "--wait=false")
				refused(t, out, err, "is read-only")
				code, body := s.raw(t, "GET", "/clusters/"+s.a+"/k8s/api/v1/namespaces/default/pods/x/exec?command=sh", s.tok["readonly"].Token,
					http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, nil, "")
				if code != 403 || !strings.Contains(body, "read-only") {
					t.Fatalf("exec: %d %s", code, body)
				}
			},
		},
		{
			attack:  "a read-only token writes the hub API",
			refusal: "403",
			run: func(t *testing.T) {
				for _, p := range []string{"/api/v1/tokens", "/api/v1/clusters"} {
					if code, body := s.raw(t, "POST", p, s.tok["readonly"].Token, nil, nil, `{"name":"x","role":"admin"}`); code != 403 || !strings.Contains(body, "read-only") {
						t.Fatalf("POST %s: %d %s", p, code, body)
					}
				}
			},
		},
		{
			attack:  "the token of a cluster's kubeconfig is used on another cluster its user may see",
			refusal: "NotFound: not imported (the user's own token would get 503, B is not connected)",
			run: func(t *testing.T) {
				mustKubectl(t, s.kc["vic"], "get", "pods", "-n", "default")
				out, err := kubectl(ctx, s.retarget(t, s.kc["vic"], s.a, s.b), "get", "pods")
				refused(t, out, err, "Error from server (NotFound)")
			},
		},
		{
			attack:  "the token of a kubeconfig is used after its expiry",
			refusal: "401 Unauthorized: you must be logged in",
			run: func(t *testing.T) {
				var data []byte
				if err := s.w.hub.Do(ctx, "GET", "/api/v1/clusters/"+s.a+"/kubeconfig?ttl=2s", "", nil, &data); err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(data, []byte(s.w.hub.AdminToken)) {
					t.Fatal("the kubeconfig embeds the caller's own token")
				}
				path := filepath.Join(t.TempDir(), "short.kubeconfig")
				os.WriteFile(path, data, 0o600)
				mustKubectl(t, path, "get", "namespaces")
				time.Sleep(2100 * time.Millisecond)
				out, err := kubectl(ctx, path, "get", "namespaces")
				refused(t, out, err, "You must be logged in to the server", "a valid hub API token is required")
			},
		},
		{
			attack:  "the token of an admin's kubeconfig manages the hub",
			refusal: "403: a cluster-scoped token may not mint tokens or grants",
			run: func(t *testing.T) {
				var data []byte
				if err := s.w.hub.Do(ctx, "GET", "/api/v1/clusters/"+s.a+"/kubeconfig", "", nil, &data); err != nil {
					t.Fatal(err)
				}
				_, after, _ := strings.Cut(string(data), "token: ")
				token := strings.TrimSpace(strings.SplitN(after, "\n", 2)[0])
				for _, p := range []string{"/api/v1/tokens", "/api/v1/grants"} {
					if code, body := s.raw(t, "POST", p, token, nil, nil, `{"name":"x","role":"admin"}`); code != 403 {
						t.Fatalf("POST %s: %d %s", p, code, body)
					}
				}
			},
		},
		{
			attack:  "a member with view runs kubectl --as=someone",
			refusal: `403 as from kube-apiserver: users "someone" is forbidden: User "` + prefix + `vic" cannot impersonate`,
			run: func(t *testing.T) {
				out, err := kubectl(ctx, s.kc["vic"], "get", "pods", "-n", "default", "--as=someone")
				refused(t, out, err, `users "someone" is forbidden: User "`+prefix+`vic" cannot impersonate resource "users" in API group "" at the cluster scope`)
			},
		},
		{
			attack:  "a member allowed to impersonate carol only runs kubectl --as=dave",
			refusal: `403: users "dave" is forbidden (while --as=carol acts as carol)`,
			run: func(t *testing.T) {
				who := mustKubectl(t, s.kc["ivan"], "auth", "whoami", "--as=carol", "-o", "jsonpath={.status.userInfo.username}")
				if who != "carol" {
					t.Fatalf("--as=carol: whoami %q", who)
				}
				// kubectl auth whoami hides a 403's message; get shows it.
				out, err := kubectl(ctx, s.kc["ivan"], "get", "pods", "-n", "default", "--as=dave")
				refused(t, out, err, `users "dave" is forbidden: User "`+prefix+`ivan" cannot impersonate`)
				out, err = kubectl(ctx, s.kc["ivan"], "get", "pods", "-n", "default", "--as=carol", "--as-group=eco:admins")
				refused(t, out, err, `groups "eco:admins" is forbidden: User "`+prefix+`ivan"`)
			},
		},
		{
			attack:  "a view member impersonates a ServiceAccount (--as=system:serviceaccount:kube-system:default)",
			refusal: `403: serviceaccounts "default" is forbidden ... in the namespace "kube-system"`,
			run: func(t *testing.T) {
				out, err := kubectl(ctx, s.kc["vic"], "get", "pods", "-n", "default", "--as=system:serviceaccount:kube-system:default")
				refused(t, out, err, `serviceaccounts "default" is forbidden: User "`+prefix+`vic" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "kube-system"`)
			},
		},
		{
			attack:  "a hub admin (cluster-admin) adds --as-group=system:masters",
			refusal: "forbidden: the agent may impersonate the eco groups only (while --as=someone works)",
			run: func(t *testing.T) {
				who := mustKubectl(t, s.w.kc, "auth", "whoami", "--as=someone", "-o", "jsonpath={.status.userInfo.username}")
				if who != "someone" {
					t.Fatalf("--as=someone: whoami %q", who)
				}
				// What the cluster's yes costs: one access review through
				// the tunnel per impersonated user (and group, extra, UID).
				median := func(h http.Header) time.Duration {
					var ds []time.Duration
					for range 21 {
						start := time.Now()
						if code, body := s.raw(t, "GET", "/clusters/"+s.a+"/k8s/version", s.w.hub.AdminToken, h, nil, ""); code != 200 {
							t.Fatalf("%d %s", code, body)
						}
						ds = append(ds, time.Since(start))
					}
					slices.Sort(ds)
					return ds[len(ds)/2]
				}
				plain, as := median(nil), median(http.Header{"Impersonate-User": {"someone"}})
				t.Logf("median GET /version through the hub: %v as the hub user, %v with Impersonate-User (one access review)", plain, as)
				out, err := kubectl(ctx, s.w.kc, "get", "pods", "-n", "default", "--as=someone", "--as-group=system:masters")
				refused(t, out, err, "forbidden", `"system:masters"`)
			},
		},
		{
			attack:  "a view member sends Impersonate-User in odd case (iMPERSONATE-uSER)",
			refusal: "403: the cluster says the member may not impersonate",
			run: func(t *testing.T) {
				code, user, body := s.whoamiRaw(t, s.tok["vic"].Token, http.Header{"iMPERSONATE-uSER": {"system:admin"}}, nil)
				if code != 403 || !strings.Contains(body, `users \"system:admin\" is forbidden: User \"`+prefix+`vic\" cannot impersonate`) {
					t.Fatalf("%d as %q: %s", code, user, body)
				}
			},
		},
		{
			attack:  "a view member sends Impersonate-Group in lower case with a user it may not be",
			refusal: "403 for the user before any group is considered",
			run: func(t *testing.T) {
				code, user, body := s.whoamiRaw(t, s.tok["vic"].Token, http.Header{"impersonate-user": {"carol"}, "impersonate-group": {"system:masters"}}, nil)
				if code != 403 || !strings.Contains(body, `users \"carol\" is forbidden`) {
					t.Fatalf("%d as %q: %s", code, user, body)
				}
			},
		},
		{
			attack:  "Impersonate-User smuggled in a request trailer",
			refusal: "not honoured: the cluster sees the hub user",
			run: func(t *testing.T) {
				code, user, body := s.whoamiRaw(t, s.tok["vic"].Token, nil, http.Header{"Impersonate-User": {"system:admin"}, "Impersonate-Group": {"system:masters"}})
				if code != 201 || user != prefix+"vic" {
					t.Fatalf("%d as %q: %s", code, user, body)
				}
			},
		},
		{
			attack:  "Impersonate_User (underscore) sent to slip past a dash-only filter",
			refusal: "not honoured: the cluster sees the hub user",
			run: func(t *testing.T) {
				code, user, body := s.whoamiRaw(t, s.tok["vic"].Token, http.Header{"Impersonate_User": {"system:admin"}}, nil)
				if code != 201 || user != prefix+"vic" {
					t.Fatalf("%d as %q: %s", code, user, body)
				}
			},
		},
		{
			attack:  "Impersonate-Group without Impersonate-User, to add a group to oneself",
			refusal: "400 BadRequest: requested groups without impersonating a user",
			run: func(t *testing.T) {
				code, user, body := s.whoamiRaw(t, s.w.hub.AdminToken, http.Header{"Impersonate-Group": {"system:masters"}}, nil)
				if code != 400 || !strings.Contains(body, "without impersonating a user") {
					t.Fatalf("%d as %q: %s", code, user, body)
				}
			},
		},
	}
	for _, row := range rows {
		t.Run(row.attack, func(t *testing.T) {
			t.Logf("refusal wanted: %s", row.refusal)
			row.run(t)
		})
	}
}
