package ui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

func TestSignInSessionAndSignOut(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	c := h.browser()

	code, loc, _ := do(t, c, "GET", h.url+"/", nil, nil)
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/login?next=") {
		t.Fatalf("GET / signed out = %d, Location %q; want a redirect to the sign-in page", code, loc)
	}
	_, _, page := do(t, c, "GET", h.url+"/ui/login", nil, nil)
	csrf := csrfIn(t, page)

	// A wrong token, and a sign-in without the form's CSRF token, fail.
	if code, _, page := do(t, c, "POST", h.url+"/ui/login", url.Values{"csrf": {csrf}, "token": {"ecot_wrong"}}, nil); code != http.StatusUnauthorized || !strings.Contains(page, "not a valid hub API token") {
		t.Errorf("sign-in with a wrong token = %d", code)
	}
	if code, _, _ := do(t, c, "POST", h.url+"/ui/login", url.Values{"token": {h.admin}}, nil); code != http.StatusForbidden {
		t.Errorf("sign-in without CSRF token = %d, want 403", code)
	}

	// The session cookie is HttpOnly, Secure and SameSite.
	_, _, page = do(t, c, "GET", h.url+"/ui/login", nil, nil)
	req, _ := http.NewRequest("POST", h.url+"/ui/login", strings.NewReader(url.Values{"csrf": {csrfIn(t, page)}, "token": {h.admin}, "next": {"//evil.example/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Errorf("sign-in with an off-site next went to %q, want /", loc)
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "eco_session" {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteLaxMode || sess.Value == h.admin {
		t.Fatalf("session cookie = %+v; want HttpOnly, Secure, SameSite=Lax and not the token", sess)
	}

	code, _, page = do(t, c, "GET", h.url+"/", nil, nil)
	if code != http.StatusOK || !strings.Contains(page, "<title>Imported Clusters · eco</title>") {
		t.Fatalf("GET / signed in = %d:\n%s", code, page)
	}
	csrf = csrfIn(t, page)

	// Sign-out needs the CSRF token too, then ends the session.
	if code, _, _ := do(t, c, "POST", h.url+"/ui/logout", url.Values{}, nil); code != http.StatusForbidden {
		t.Errorf("sign-out without CSRF token = %d, want 403", code)
	}
	if code, loc, _ := do(t, c, "POST", h.url+"/ui/logout", url.Values{"csrf": {csrf}}, nil); code != http.StatusSeeOther || loc != "/ui/login" {
		t.Errorf("sign-out = %d, %q", code, loc)
	}
	// The old cookie no longer works even if replayed.
	replay := h.browser()
	replay.Jar.SetCookies(mustURL(t, h.url), []*http.Cookie{{Name: "eco_session", Value: sess.Value}})
	if code, _, _ := do(t, replay, "GET", h.url+"/", nil, nil); code != http.StatusSeeOther {
		t.Errorf("GET / with a signed-out session = %d, want a redirect", code)
	}
}

func TestRevokedTokenEndsSession(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	tok := h.token("carol", store.RoleAdmin)
	c := h.browser()
	h.signIn(c, tok)
	id, err := h.hub.AuthenticateToken(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.hub.RevokeToken(t.Context(), id.TokenID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, c, "GET", h.url+"/", nil, nil); code != http.StatusSeeOther {
		t.Errorf("GET / after the token was revoked = %d, want a redirect to sign in", code)
	}
}

func TestCSRFLessPostRefused(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	c := h.browser()
	csrf := h.signIn(c, h.admin)
	for _, form := range []url.Values{
		{"name": {"no-csrf"}},
		{"name": {"no-csrf"}, "csrf": {"forged"}},
		{"name": {"no-csrf"}, "csrf": {csrf + "x"}},
	} {
		code, _, page := do(t, c, "POST", h.url+"/ui/clusters/new", form, nil)
		if code != http.StatusForbidden || !strings.Contains(page, "CSRF") {
			t.Errorf("import with csrf=%q = %d, want 403 naming CSRF", form.Get("csrf"), code)
		}
	}
	if _, err := h.hub.Store().GetClusterByName(t.Context(), "no-csrf"); err == nil {
		t.Fatal("a CSRF-less POST created a cluster")
	}
	// With the token, it works.
	code, loc, _ := do(t, c, "POST", h.url+"/ui/clusters/new", url.Values{"name": {"with-csrf"}, "provider": {"eks"}, "region": {"eu-west-1"}, "csrf": {csrf}}, nil)
	if code != http.StatusSeeOther || !strings.HasSuffix(loc, "/eco?imported=1") {
		t.Fatalf("import with CSRF = %d, %q", code, loc)
	}
	cl, err := h.hub.Store().GetClusterByName(t.Context(), "with-csrf")
	if err != nil || cl.Provider != store.ProviderEKS || cl.Region != "eu-west-1" {
		t.Fatalf("imported cluster = %+v, %v", cl, err)
	}
	// The agent credential is the derived one: the install YAML the UI
	// shows is the one the hub accepts.
	code, _, page := do(t, c, "GET", h.url+"/ui/clusters/"+cl.ID+"/eco", nil, nil)
	if code != http.StatusOK || !strings.Contains(page, "kubectl apply -f eco-with-csrf.yaml") || !strings.Contains(page, "kind: Secret") {
		t.Errorf("ECO tab = %d:\n%s", code, page)
	}
	// Delete needs CSRF too.
	if code, _, _ := do(t, c, "POST", h.url+"/ui/clusters/"+cl.ID+"/delete", url.Values{}, nil); code != http.StatusForbidden {
		t.Errorf("delete without CSRF = %d, want 403", code)
	}
	if code, loc, _ := do(t, c, "POST", h.url+"/ui/clusters/"+cl.ID+"/delete", url.Values{"csrf": {csrf}}, nil); code != http.StatusSeeOther || !strings.Contains(loc, "deleted=with-csrf") {
		t.Errorf("delete = %d, %q", code, loc)
	}
}

func TestBearerTokenOnPages(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	bearer := http.Header{"Authorization": {"Bearer " + h.admin}}
	code, _, page := do(t, h.client, "GET", h.url+"/", nil, bearer)
	if code != http.StatusOK || !strings.Contains(page, "<h1>Imported Clusters</h1>") {
		t.Fatalf("GET / with a bearer token = %d", code)
	}
	// A script can import without a session or CSRF token: no cookie is
	// involved, so no cross-site request can ride on it.
	code, _, _ = do(t, h.client, "POST", h.url+"/ui/clusters/new", url.Values{"name": {"scripted"}}, bearer)
	if code != http.StatusSeeOther {
		t.Errorf("import with a bearer token = %d, want 303", code)
	}
	code, _, _ = do(t, h.client, "GET", h.url+"/", nil, http.Header{"Authorization": {"Bearer ecot_nope"}})
	if code != http.StatusUnauthorized {
		t.Errorf("GET / with a bad bearer token = %d, want 401", code)
	}
	// The API and the probes are still the hub's.
	if code, _, body := do(t, h.client, "GET", h.url+"/healthz", nil, nil); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _, body := do(t, h.client, "GET", h.url+"/api/v1/clusters", nil, bearer); code != http.StatusOK || !strings.Contains(body, `"scripted"`) {
		t.Errorf("/api/v1/clusters = %d %q", code, body)
	}
}

func TestViewerRefusedHubWrites(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	c, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	csrf := h.signIn(b, h.viewer("victor"))
	const hubAdmin, clusterAdmin = "needs the admin role", "needs admin access to it"
	for _, tc := range []struct{ method, path, why string }{
		{"GET", "/ui/clusters/new", hubAdmin},
		{"POST", "/ui/clusters/new", hubAdmin},
		{"GET", "/ui/clusters/" + c.ID + "/install.yaml", clusterAdmin},
		{"GET", "/ui/clusters/" + c.ID + "/delete", clusterAdmin},
		{"POST", "/ui/clusters/" + c.ID + "/delete", clusterAdmin},
	} {
		var form url.Values
		if tc.method == "POST" {
			form = url.Values{"csrf": {csrf}, "name": {"sneaky"}}
		}
		code, _, page := do(t, b, tc.method, h.url+tc.path, form, nil)
		if code != http.StatusForbidden || !strings.Contains(page, tc.why) {
			t.Errorf("viewer %s %s = %d, want 403 saying it %s", tc.method, tc.path, code, tc.why)
		}
	}
	// A viewer sees the cluster and its status, but not the YAML, which
	// carries the agent credential.
	code, _, page := do(t, b, "GET", h.url+"/ui/clusters/"+c.ID+"/eco", nil, nil)
	if code != http.StatusOK || strings.Contains(page, "kind: Secret") || !strings.Contains(page, "only the cluster's admins") {
		t.Errorf("viewer ECO tab = %d", code)
	}
	if strings.Contains(page, ">Delete") {
		t.Error("viewer is offered Delete")
	}
}

func TestClustersTableSearchSortPage(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	for i := range 60 {
		if _, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: fmt.Sprintf("c%02d", i), Region: []string{"eu", "us"}[i%2]}); err != nil {
			t.Fatal(err)
		}
	}
	bearer := http.Header{"Authorization": {"Bearer " + h.admin}}
	get := func(q string) string {
		code, _, page := do(t, h.client, "GET", h.url+"/"+q, nil, bearer)
		if code != http.StatusOK {
			t.Fatalf("GET /%s = %d", q, code)
		}
		return page
	}
	page := get("?size=25")
	if !strings.Contains(page, "1–25 of 60") || !strings.Contains(page, ">c00<") || strings.Contains(page, ">c25<") || !strings.Contains(page, "Page 1 of 3") {
		t.Errorf("first page wrong")
	}
	page = get("?size=25&page=3")
	if !strings.Contains(page, "51–60 of 60") || !strings.Contains(page, ">c59<") {
		t.Errorf("last page wrong")
	}
	page = get("?sort=name&desc=1&size=25")
	if !strings.Contains(page, ">c59<") || strings.Contains(page, ">c00<") {
		t.Errorf("descending sort wrong")
	}
	page = get("?q=c1")
	if !strings.Contains(page, "1–10 of 10") {
		t.Errorf("search c1 should match c10..c19")
	}
	page = get("?state=Connected")
	if !strings.Contains(page, "No cluster matches") {
		t.Errorf("state filter wrong")
	}
	// Every row is NotInstalled: in red, with its reason and an Install ECO link.
	page = get("?q=c00")
	for _, want := range []string{`class="state bad"`, store.ReasonNeverConnected, "Install ECO"} {
		if !strings.Contains(page, want) {
			t.Errorf("NotInstalled row lacks %q", want)
		}
	}
	code, _, body := do(t, h.client, "GET", h.url+"/ui/clusters/status?q=c00", nil, bearer)
	if code != http.StatusOK || !strings.Contains(body, `"state":"NotInstalled"`) || !strings.Contains(body, `"bad":true`) {
		t.Errorf("status JSON = %d %s", code, body)
	}
}

func TestConcurrentSessions(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := h.browser()
			h.signIn(c, h.admin)
		})
	}
	wg.Wait()
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestMemberSeesOnlyGrantedClusters: the Imported Clusters list, its
// status JSON, the cluster pages and the dashboards show a member only the
// clusters it was granted; another cluster's pages read as if it did not
// exist.
func TestMemberSeesOnlyGrantedClusters(t *testing.T) {
	h := newTestHub(t, hubOptions{})
	granted, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "granted"})
	if err != nil {
		t.Fatal(err)
	}
	hidden, err := h.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: "hidden"})
	if err != nil {
		t.Fatal(err)
	}
	secret := h.token("mia", store.RoleMember)
	if _, err := h.hub.CreateGrant(t.Context(), store.NewGrant{Kind: store.SubjectUser, Subject: "mia", ClusterID: granted.ID, Role: store.ClusterView}); err != nil {
		t.Fatal(err)
	}
	bearer := http.Header{"Authorization": {"Bearer " + secret}}
	code, _, page := do(t, h.client, "GET", h.url+"/", nil, bearer)
	if code != http.StatusOK || !strings.Contains(page, ">granted<") || strings.Contains(page, ">hidden<") || strings.Contains(page, hidden.ID) {
		t.Errorf("member cluster list (%d) shows the ungranted cluster or misses the granted one", code)
	}
	code, _, body := do(t, h.client, "GET", h.url+"/ui/clusters/status", nil, bearer)
	if code != http.StatusOK || strings.Contains(body, hidden.ID) || !strings.Contains(body, granted.ID) {
		t.Errorf("member's status JSON = %d %s", code, body)
	}
	for _, tab := range []string{"", "/eco", "/workloads", "/rbac"} {
		code, _, page := do(t, h.client, "GET", h.url+"/ui/clusters/"+hidden.ID+tab, nil, bearer)
		codeMissing, _, pageMissing := do(t, h.client, "GET", h.url+"/ui/clusters/c-aaaaaaaaaa"+tab, nil, bearer)
		if code != http.StatusNotFound || codeMissing != http.StatusNotFound || page != pageMissing {
			t.Errorf("ungranted cluster page %q: %d, missing cluster: %d; want the same 404 page", tab, code, codeMissing)
		}
	}
	if code, _, _ := do(t, h.client, "GET", h.url+"/ui/clusters/"+granted.ID, nil, bearer); code != http.StatusOK {
		t.Errorf("granted cluster page = %d", code)
	}
}
