package ui

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/eco-project/eco/cloud"
	"github.com/eco-project/eco/store"
)

// The cloud import wizard (docs/cloud.md): account → regions → clusters.
// Hub admins only, like the API behind it; credentials go in through the
// form and never come back out.

func (u *UI) cloudRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /ui/cloud", u.user(store.RoleAdmin, u.hubAdmin(u.cloudPage)))
	m.HandleFunc("POST /ui/cloud/accounts", u.user(store.RoleAdmin, u.hubAdmin(u.audited("create-cloud-account", u.createCloudAccount))))
	m.HandleFunc("GET /ui/cloud/{account}/import", u.user(store.RoleAdmin, u.hubAdmin(u.cloudImportPage)))
	m.HandleFunc("POST /ui/cloud/{account}/import", u.user(store.RoleAdmin, u.hubAdmin(u.audited("import-cloud-clusters", u.cloudImport))))
	m.HandleFunc("POST /ui/clusters/{id}/cloud-install", u.user(store.RoleAdmin, u.hubAdmin(u.audited("cloud-install", u.cloudInstall))))
}

// cloudInstall is the one-click install: the hub applies the install
// YAML with credentials from the cloud, or says why it cannot.
func (u *UI) cloudInstall(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	res, err := u.hub.InstallFromCloud(r.Context(), c.ID)
	if err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, cloud.ErrPrivateEndpoint) || errors.Is(err, cloud.ErrNoOneClick) {
			code = http.StatusConflict
		}
		u.fail(w, r, rq, code, "The hub could not install ECO itself: "+err.Error()+". The External Cluster Operator tab has the YAML to apply.")
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/ui/clusters/%s/eco?installed=%d", c.ID, len(res.Applied)), http.StatusSeeOther)
}

// hubAdmin refuses admin tokens scoped to some clusters: cloud accounts
// are the whole hub's.
func (u *UI) hubAdmin(next func(http.ResponseWriter, *http.Request, *request)) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, rq *request) {
		if rq.ident.Scope.Clusters != nil {
			u.fail(w, r, rq, http.StatusForbidden, "This token is scoped to some clusters; cloud accounts need an unscoped admin.")
			return
		}
		next(w, r, rq)
	}
}

// healthClass is how the UI colours a cloud health string: see
// cloud.State.Class; no health yet is neutral.
func healthClass(health string) string {
	if health == "" {
		return "neutral"
	}
	return cloud.ParseHealth(health).State.Class()
}

type cloudPageData struct {
	Providers []store.Provider
	Accounts  []cloud.AccountInfo
	Form      cloudAccountForm
}

// cloudAccountForm is the Add account form, refilled after an error —
// without its secrets.
type cloudAccountForm struct {
	Name, Provider, Scopes           string
	AccessKeyID, RoleARN, ExternalID string
	TenantID, ClientID               string
}

func (u *UI) cloudPage(w http.ResponseWriter, r *http.Request, rq *request) {
	u.renderCloud(w, r, rq, http.StatusOK, cloudAccountForm{Provider: string(store.ProviderEKS)}, "")
}

func (u *UI) renderCloud(w http.ResponseWriter, r *http.Request, rq *request, code int, f cloudAccountForm, msg string) {
	as, err := u.hub.Cloud().Accounts(r.Context())
	if err != nil {
		u.storeFail(w, r, rq, err)
		return
	}
	v := rq.view("Cloud accounts", "cloud")
	v.Error = msg
	v.Flash = r.URL.Query().Get("created")
	if v.Flash != "" {
		v.Flash = "Account " + v.Flash + " saved: its credentials were checked with the cloud."
	}
	v.Data = cloudPageData{Providers: u.hub.Cloud().Enabled(), Accounts: as, Form: f}
	u.render(w, r, code, "cloud", v)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func (u *UI) createCloudAccount(w http.ResponseWriter, r *http.Request, rq *request) {
	p := r.PostForm
	f := cloudAccountForm{
		Name: strings.TrimSpace(p.Get("name")), Provider: p.Get("provider"), Scopes: strings.TrimSpace(p.Get("scopes")),
		AccessKeyID: strings.TrimSpace(p.Get("accessKeyId")), RoleARN: strings.TrimSpace(p.Get("roleArn")), ExternalID: strings.TrimSpace(p.Get("externalId")),
		TenantID: strings.TrimSpace(p.Get("tenantId")), ClientID: strings.TrimSpace(p.Get("clientId")),
	}
	creds := cloud.Credentials{}
	switch store.Provider(f.Provider) {
	case store.ProviderEKS:
		creds.AccessKeyID, creds.SecretAccessKey, creds.RoleARN, creds.ExternalID = f.AccessKeyID, strings.TrimSpace(p.Get("secretAccessKey")), f.RoleARN, f.ExternalID
	case store.ProviderAKS:
		creds.TenantID, creds.ClientID, creds.ClientSecret, creds.ClientCertificate = f.TenantID, f.ClientID, p.Get("clientSecret"), p.Get("clientCertificate")
	case store.ProviderGKE:
		creds.ServiceAccountKey = p.Get("serviceAccountKey")
	}
	a, err := u.hub.Cloud().CreateAccount(r.Context(), cloud.NewAccount{Name: f.Name, Provider: store.Provider(f.Provider), Scopes: splitList(f.Scopes), Credentials: creds})
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, store.ErrConflict) {
			code = http.StatusConflict
		} else if !errors.Is(err, store.ErrInvalid) {
			code = http.StatusBadGateway
		}
		u.renderCloud(w, r, rq, code, f, "The account was not saved: "+err.Error())
		return
	}
	http.Redirect(w, r, "/ui/cloud/"+a.ID+"/import?created="+a.Name, http.StatusSeeOther)
}

type cloudImportData struct {
	Account   cloud.AccountInfo
	ScopeName string
	Scopes    []scopeChoice
	Listed    bool
	Clusters  []cloud.Discovered
	Results   []cloud.ImportResult
	Imported  int
}

type scopeChoice struct {
	Name    string
	Checked bool
}

func (u *UI) account(w http.ResponseWriter, r *http.Request, rq *request) (cloud.AccountInfo, bool) {
	as, err := u.hub.Cloud().Accounts(r.Context())
	if err != nil {
		u.storeFail(w, r, rq, err)
		return cloud.AccountInfo{}, false
	}
	for _, a := range as {
		if a.ID == r.PathValue("account") {
			return a, true
		}
	}
	u.fail(w, r, rq, http.StatusNotFound, "There is no cloud account "+r.PathValue("account")+".")
	return cloud.AccountInfo{}, false
}

func scopeLabel(p store.Provider) string {
	switch p {
	case store.ProviderAKS:
		return "Subscription"
	case store.ProviderGKE:
		return "Project"
	}
	return "Regions"
}

func (u *UI) cloudImportPage(w http.ResponseWriter, r *http.Request, rq *request) {
	a, ok := u.account(w, r, rq)
	if !ok {
		return
	}
	chosen := r.URL.Query()["scope"]
	d := cloudImportData{Account: a, ScopeName: scopeLabel(a.Provider), Listed: len(chosen) > 0 || len(a.Scopes) == 1}
	if len(a.Scopes) == 1 {
		chosen = a.Scopes
	}
	for _, s := range a.Scopes {
		d.Scopes = append(d.Scopes, scopeChoice{Name: s, Checked: slices.Contains(chosen, s)})
	}
	v := rq.view("Import from "+a.Name, "cloud")
	if c := r.URL.Query().Get("created"); c != "" {
		v.Flash = "Account " + c + " saved: its credentials were checked with the cloud."
	}
	code := http.StatusOK
	if d.Listed {
		cs, err := u.hub.Cloud().Discover(r.Context(), a.ID, chosen)
		if err != nil {
			v.Error = "Listing the clusters failed: " + err.Error()
			code = http.StatusBadGateway
			if errors.Is(err, store.ErrInvalid) {
				code = http.StatusBadRequest
			}
		}
		d.Clusters = cs
	}
	v.Data = d
	u.render(w, r, code, "cloudimport", v)
}

func (u *UI) cloudImport(w http.ResponseWriter, r *http.Request, rq *request) {
	a, ok := u.account(w, r, rq)
	if !ok {
		return
	}
	var items []cloud.ImportItem
	for _, sel := range r.PostForm["cluster"] {
		scope, ref, ok := strings.Cut(sel, "|")
		if !ok {
			continue
		}
		items = append(items, cloud.ImportItem{Scope: scope, Ref: ref, Name: strings.TrimSpace(r.PostForm.Get("name:" + ref))})
	}
	v := rq.view("Import from "+a.Name, "cloud")
	d := cloudImportData{Account: a, ScopeName: scopeLabel(a.Provider)}
	if len(items) == 0 {
		v.Error = "Select at least one cluster to import."
		v.Data = d
		u.render(w, r, http.StatusBadRequest, "cloudimport", v)
		return
	}
	res, err := u.hub.Cloud().Import(r.Context(), a.ID, items)
	if err != nil {
		v.Error = "The import failed: " + err.Error()
		v.Data = d
		u.render(w, r, http.StatusBadGateway, "cloudimport", v)
		return
	}
	d.Results = res
	code := http.StatusOK
	for _, x := range res {
		if x.ClusterID != "" {
			d.Imported++
		}
	}
	if d.Imported == 0 {
		code = http.StatusConflict
		v.Error = "Nothing was imported."
	} else {
		v.Flash = fmt.Sprintf("%d of %d clusters imported.", d.Imported, len(res))
	}
	v.Data = d
	u.render(w, r, code, "cloudimport", v)
}
