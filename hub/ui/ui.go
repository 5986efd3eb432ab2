// Package ui is eco-hub's web UI: sign-in, the Imported Clusters table,
// import, the Edit Cluster tabs with the ECO install YAML, and the
// Workloads, Storage, RBAC and Monitoring dashboards, which read each
// cluster live through its tunnel as the signed-in user so that the
// cluster's own RBAC decides what they show.
//
// Pages are rendered on the server from embedded html/template files; a
// little JavaScript (static/eco.js) refreshes statuses and copies text, and
// every page works without it. Mount the UI on the hub:
//
//	_, err := ui.Mount(ui.Config{Hub: h, Logger: logger})
package ui

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Config.
const (
	DefaultSessionTTL   = 12 * time.Hour
	DefaultPollInterval = 3 * time.Second
)

// Config configures the UI.
type Config struct {
	// Hub is the hub the UI is mounted on. Required.
	Hub *hub.Hub
	// Logger receives the UI's logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts. Zero means
	// DefaultSessionTTL. Sessions live in this process's memory: a
	// restart signs everyone out.
	SessionTTL time.Duration
	// PollInterval is how often the Imported Clusters page refreshes the
	// statuses it shows. Zero means DefaultPollInterval.
	PollInterval time.Duration
	// ArgoCD, if set, adds the Argo CD tab to the cluster page
	// (eco-hub --argocd-*). Nil: no tab.
	ArgoCD ArgoCD
	// Apps, if set, adds the App Catalog page and the Apps and Add-ons
	// tabs (package hubapps implements it).
	Apps Apps
}

// UI is the web UI, an http.Handler for the paths in Patterns.
type UI struct {
	cfg      Config
	hub      *hub.Hub
	logger   *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	secure   bool // cookies get the Secure attribute (https ExternalURL)
}

// Patterns returns the hub mux patterns the UI serves: "/" (exactly) and
// everything under "/ui/".
func Patterns() []string { return []string{"/{$}", "/ui/"} }

// Mount creates the UI for cfg.Hub and mounts it on every pattern of
// Patterns.
func Mount(cfg Config) (*UI, error) {
	u, err := New(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range Patterns() {
		cfg.Hub.Mount(p, u)
	}
	return u, nil
}

// New parses the templates and returns the UI.
func New(cfg Config) (*UI, error) {
	if cfg.Hub == nil {
		return nil, errors.New("ui: Hub is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	u := &UI{
		cfg:      cfg,
		hub:      cfg.Hub,
		logger:   cfg.Logger,
		sessions: newSessions(cfg.Now, cfg.SessionTTL),
		secure:   strings.HasPrefix(cfg.Hub.ExternalURL(), "https://"),
	}
	var err error
	if u.pages, err = parsePages(); err != nil {
		return nil, err
	}
	u.routes()
	return u, nil
}

// parsePages parses layout.html with each page template once.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("ui: parsing layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("ui: parsing %s: %w", n, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func (u *UI) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	m.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	}))
	m.HandleFunc("GET /ui/login", u.loginPage)
	m.HandleFunc("POST /ui/login", u.login)
	m.HandleFunc("POST /ui/logout", u.user(store.RoleMember, u.logout))

	m.HandleFunc("GET /{$}", u.user(store.RoleMember, u.clustersPage))
	m.HandleFunc("GET /ui/clusters", u.user(store.RoleMember, u.clustersPage))
	m.HandleFunc("GET /ui/clusters/status", u.user(store.RoleMember, u.clustersStatus))
	m.HandleFunc("GET /ui/clusters/select", u.user(store.RoleMember, u.selectCluster))
	m.HandleFunc("GET /ui/clusters/new", u.user(store.RoleAdmin, u.importPage))
	m.HandleFunc("POST /ui/clusters/new", u.user(store.RoleAdmin, u.audited("create-cluster", u.importCluster)))
	m.HandleFunc("GET /ui/clusters/{id}", u.user(store.RoleMember, u.generalTab))
	m.HandleFunc("GET /ui/clusters/{id}/eco", u.user(store.RoleMember, u.ecoTab))
	m.HandleFunc("GET /ui/clusters/{id}/audit", u.user(store.RoleMember, u.clusterAdmin(u.auditTab)))
	m.HandleFunc("GET /ui/clusters/{id}/install.yaml", u.user(store.RoleMember, u.clusterAdmin(u.installYAML)))
	m.HandleFunc("POST /ui/clusters/{id}/update", u.user(store.RoleMember, u.clusterAdmin(u.audited("update-cluster", u.updateCluster))))
	m.HandleFunc("POST /ui/clusters/{id}/rotate-credential", u.user(store.RoleAdmin, u.audited("rotate-credential", u.rotateCredential)))
	m.HandleFunc("GET /ui/clusters/{id}/delete", u.user(store.RoleMember, u.clusterAdmin(u.deletePage)))
	m.HandleFunc("POST /ui/clusters/{id}/delete", u.user(store.RoleMember, u.clusterAdmin(u.audited("delete-cluster", u.deleteCluster))))

	m.HandleFunc("GET /ui/clusters/{id}/workloads", u.user(store.RoleMember, u.dashboard("workloads", u.workloads)))
	m.HandleFunc("GET /ui/clusters/{id}/pods/{ns}/{name}", u.user(store.RoleMember, u.dashboard("pod", u.pod)))
	m.HandleFunc("GET /ui/clusters/{id}/storage", u.user(store.RoleMember, u.dashboard("storage", u.storage)))
	m.HandleFunc("GET /ui/clusters/{id}/rbac", u.user(store.RoleMember, u.dashboard("rbac", u.rbac)))
	// Any hub user may try to bind: the cluster's RBAC decides.
	m.HandleFunc("POST /ui/clusters/{id}/rbac/bind", u.user(store.RoleMember, u.bind))
	m.HandleFunc("GET /ui/clusters/{id}/monitoring", u.user(store.RoleMember, u.dashboard("monitoring", u.monitoring)))
	u.cloudRoutes(m)
	if u.cfg.ArgoCD != nil {
		m.HandleFunc("GET /ui/clusters/{id}/argocd", u.user(store.RoleMember, u.argocdTab))
	}
	// App Catalog, Helm releases, add-ons (apps.go)
	m.HandleFunc("GET /ui/catalog", u.user(store.RoleMember, u.withApps(u.catalogPage)))
	m.HandleFunc("POST /ui/catalog/repositories/{action}", u.user(store.RoleAdmin, u.withApps(u.audited("catalog", u.catalogRepo))))
	m.HandleFunc("POST /ui/catalog/install", u.user(store.RoleMember, u.withApps(u.audited("helm", u.catalogInstall))))
	m.HandleFunc("GET /ui/clusters/{id}/apps", u.user(store.RoleMember, u.withApps(u.appsTab)))
	m.HandleFunc("POST /ui/clusters/{id}/apps/{action}", u.user(store.RoleMember, u.withApps(u.audited("helm", u.appsAction))))
	m.HandleFunc("GET /ui/clusters/{id}/addons", u.user(store.RoleMember, u.withApps(u.addonsTab)))
	m.HandleFunc("POST /ui/clusters/{id}/addons/{addon}", u.user(store.RoleAdmin, u.withApps(u.audited("addons", u.addonSet))))
	m.HandleFunc("POST /ui/clusters/{id}/addons/{addon}/version", u.user(store.RoleAdmin, u.withApps(u.audited("addons", u.addonVersion))))
	m.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, nil, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
	u.mux = m
}

// ServeHTTP serves the UI's pages.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	u.mux.ServeHTTP(w, r)
}

// view is what every page template gets.
type view struct {
	Title string
	User  hub.Identity
	Admin bool
	// ClusterAdmin: the user may manage Cluster (request.clusterAdmin).
	ClusterAdmin bool
	CSRF         string
	Section      string // highlights the current tab
	Cluster      *store.Cluster
	Connected    bool
	ArgoCD       bool // the Argo CD tab is shown
	Flash        string
	Error        string
	Data         any
}

// render writes page name with v.
func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, name string, v view) {
	t, ok := u.pages[name]
	if !ok {
		panic("ui: no template " + name)
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		u.logger.Error("rendering page", "page", name, "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// errorData is the error page's.
type errorData struct {
	Message string
	Back    string // a local page to go back to, if known
}

// fail renders an error page.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, rq *request, code int, msg string) {
	v := view{Title: http.StatusText(code)}
	if rq != nil {
		v = rq.view(v.Title, "")
	}
	d := errorData{Message: msg}
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && ref.Path != r.URL.Path {
		d.Back = localPath(ref.RequestURI())
	}
	v.Data = d
	u.render(w, r, code, "error", v)
}

// localPath returns p if it is a path on this site, else "/".
func localPath(p string) string {
	if p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return p
}
