// Package catalog is eco's App Catalog: chart repositories configured in
// the hub — HTTP chart repositories (index.yaml, refreshed with ETags) and
// OCI registries (their charts listed, or discovered through the
// registry's catalog API) — with basic auth or a token and a custom CA, and
// repositories built into the hub (Config.BuiltIn: eco-hub's add-on
// charts), read from an fs.FS and never changed. Secrets are
// sealed with the hub's key (hub.Seal) before they reach the store and are
// never returned. Indexes are refreshed in the background with progress;
// the catalog searches across repositories and gives a chart's page
// (versions, README, default values, values schema). It implements
// apps.ChartSource, so the Helm service installs catalog charts.
package catalog

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"

	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// sealPurpose binds repository secrets to this use (hub.Seal).
const sealPurpose = "catalog/repository"

// Defaults.
const (
	DefaultRefreshInterval = 10 * time.Minute
	// MaxIndexSize bounds an index.yaml; MaxChartSize a chart archive.
	MaxIndexSize = 64 << 20
	MaxChartSize = 20 << 20
)

// Config configures a Catalog.
type Config struct {
	// Hub gives the store, sealing and authentication. Required.
	Hub *hub.Hub
	// Logger receives the catalog's logs. Nil discards them.
	Logger *slog.Logger
	// RefreshInterval is how often every repository is refreshed. Zero
	// means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// Timeout bounds one HTTP request to a repository. Zero means 30 s.
	Timeout time.Duration
	// Registerer receives the catalog's metrics. Nil means none.
	Registerer prometheus.Registerer
	// MaxDiscovered bounds the repositories under an OCI registry's path
	// that a refresh checks for charts when they are not listed (found
	// through the registry's catalog API); past it the repository's
	// status has a notice. Zero means DefaultMaxDiscovered.
	MaxDiscovered int
	// BuiltIn are chart repositories built into the hub (eco-hub's
	// "eco-addons", the managed add-ons' charts). They are listed, searched
	// and installed from like the others, need no network, and cannot be
	// deleted; their names are reserved. A repository of the same name
	// already in the store (added by hand before) is used instead, with a
	// warning, until it is deleted.
	BuiltIn []BuiltInRepository
}

// BuiltInRepository is a chart repository built into the hub.
type BuiltInRepository struct {
	// Name is the repository's name in the catalog. Required.
	Name string
	// Charts is a chart repository's layout: index.yaml at its root and
	// the archives it names by relative URL. Required.
	Charts fs.FS
	// Missing names charts meant to be here that are not (a hub built
	// without a generated chart), each with why: looking one up fails
	// with that reason, and the repository's status lists them.
	Missing map[string]string
}

// KindBuiltIn is the kind of a built-in repository; its URL is
// "builtin://NAME".
const KindBuiltIn = "builtin"

// Catalog is the App Catalog. Run refreshes it; its goroutines end with
// Close.
type Catalog struct {
	cfg   Config
	hub   *hub.Hub
	store store.Store
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.RWMutex
	repos map[string]*repoState // guarded by mu

	builtIn map[string]BuiltInRepository // by name; set by New, then read-only

	charts chartCache

	refreshes *prometheus.CounterVec

	maxDiscovered   int // cfg.MaxDiscovered or its default
	catalogPageSize int // n of a registry catalog request; tests lower it
}

// repoState is a repository as the catalog holds it.
type repoState struct {
	cfg        store.Repository // without Index
	secret     string
	index      *repo.IndexFile
	search     []searchEntry // from index, for Search
	refreshing bool
	progress   string
	missing    map[string]string // a built-in's Missing
}

// New returns a Catalog with the repositories in the store.
func New(ctx context.Context, cfg Config) (*Catalog, error) {
	if cfg.Hub == nil {
		return nil, errors.New("catalog: Config.Hub is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxDiscovered <= 0 {
		cfg.MaxDiscovered = DefaultMaxDiscovered
	}
	c := &Catalog{cfg: cfg, hub: cfg.Hub, store: cfg.Hub.Store(), log: cfg.Logger, repos: map[string]*repoState{}, builtIn: map[string]BuiltInRepository{},
		maxDiscovered: cfg.MaxDiscovered, catalogPageSize: defaultCatalogPageSize}
	for _, b := range cfg.BuiltIn {
		if b.Name == "" || b.Charts == nil {
			return nil, errors.New("catalog: a built-in repository needs a Name and Charts")
		}
		if _, dup := c.builtIn[b.Name]; dup {
			return nil, fmt.Errorf("catalog: built-in repository %q twice", b.Name)
		}
		c.builtIn[b.Name] = b
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.charts = chartCache{max: 64, m: map[string]*chart.Chart{}}
	c.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eco_catalog_refreshes_total", Help: "Chart repository refreshes, by result (updated, not-modified, error).",
	}, []string{"result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.refreshes); err != nil {
			return nil, fmt.Errorf("catalog: registering metrics: %w", err)
		}
	}
	all, err := c.store.ListRepositories(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	for _, r := range all {
		st := &repoState{}
		if err := c.load(st, r); err != nil {
			c.log.Warn("loading repository", "repository", r.Name, "err", err)
		}
		c.repos[r.Name] = st
	}
	for _, b := range cfg.BuiltIn {
		if _, shadowed := c.repos[b.Name]; shadowed {
			c.log.Warn("a repository in the store has the name of a built-in repository: the stored one is used, not the built-in; delete it to use the built-in",
				"repository", b.Name)
			continue
		}
		c.useBuiltIn(b)
	}
	return c, nil
}

// useBuiltIn puts built-in repository b in the catalog and reads its
// index now, as a refresh does: it is in memory, and add-ons may need it
// at once.
func (c *Catalog) useBuiltIn(b BuiltInRepository) {
	st := &repoState{cfg: store.Repository{Name: b.Name, Kind: KindBuiltIn, URL: KindBuiltIn + "://" + b.Name}, missing: b.Missing}
	c.mu.Lock()
	c.repos[b.Name] = st
	c.mu.Unlock()
	c.refresh(st.cfg, "")
	for name, why := range b.Missing {
		c.log.Warn("a chart of a built-in repository is missing: installs of it fail until the hub is built with it", "repository", b.Name, "chart", name, "reason", why)
	}
}

// load fills st from the stored r.
func (c *Catalog) load(st *repoState, r store.Repository) error {
	if len(r.SealedSecret) > 0 {
		secret, err := c.hub.Unseal(sealPurpose, r.SealedSecret)
		if err != nil {
			return err
		}
		st.secret = string(secret)
	}
	if len(r.Index) > 0 {
		ix, err := parseIndex(r.Index)
		if err != nil {
			return err
		}
		st.setIndex(ix)
	}
	r.Index = nil
	st.cfg = r
	return nil
}

// Close stops refreshes and waits for them.
func (c *Catalog) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Run refreshes every repository now and every RefreshInterval until ctx
// ends.
func (c *Catalog) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.RefreshInterval)
	defer t.Stop()
	for {
		for _, name := range c.names() {
			c.Refresh(name)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Catalog) names() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.repos))
	for n := range c.repos {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Errors of the catalog.
var (
	ErrInvalid  = errors.New("invalid repository")
	ErrNotFound = errors.New("not found")
	// ErrBuiltIn refuses to delete or replace a built-in repository.
	ErrBuiltIn = errors.New("built into the hub")
)

// RepositoryInput configures a repository. Password or Token are the
// secret; they are sealed and never shown again. Charts names an OCI
// registry's charts (the repositories under its path); without them the
// registry's catalog API lists them, which a registry that does not serve
// it (GHCR, Docker Hub) refuses.
type RepositoryInput struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
	Token    string   `json:"token,omitempty"`
	CAPEM    string   `json:"caPEM,omitempty"`
	Charts   []string `json:"charts,omitempty"`
}

// AddRepository records a repository and starts its first refresh.
func (c *Catalog) AddRepository(ctx context.Context, in RepositoryInput) (RepositoryStatus, error) {
	if _, ok := c.builtIn[in.Name]; ok {
		return RepositoryStatus{}, fmt.Errorf("repository %q: %w: the name is reserved; choose another", in.Name, ErrBuiltIn)
	}
	u, err := url.Parse(in.URL)
	if err != nil || u.Host == "" {
		return RepositoryStatus{}, fmt.Errorf("%w: url %q: want https://host/path or oci://host/path", ErrInvalid, in.URL)
	}
	kind := "http"
	switch u.Scheme {
	case "http", "https":
	case "oci":
		kind = "oci"
	default:
		return RepositoryStatus{}, fmt.Errorf("%w: url scheme %q: https, http or oci", ErrInvalid, u.Scheme)
	}
	if in.Password != "" && in.Token != "" {
		return RepositoryStatus{}, fmt.Errorf("%w: a password or a token, not both", ErrInvalid)
	}
	if in.Password != "" && in.Username == "" {
		return RepositoryStatus{}, fmt.Errorf("%w: a password needs a username", ErrInvalid)
	}
	if in.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(in.CAPEM)) {
		return RepositoryStatus{}, fmt.Errorf("%w: caPEM holds no PEM certificate", ErrInvalid)
	}
	r := store.Repository{Name: in.Name, Kind: kind, URL: strings.TrimSuffix(in.URL, "/"), Username: in.Username, CAPEM: in.CAPEM, Charts: in.Charts}
	secret := in.Password + in.Token
	if kind == "oci" && len(in.Charts) == 0 {
		// The charts are to be discovered: the registry must list its
		// repositories to these credentials, or nothing is recorded.
		if err := c.probeCatalog(ctx, r, secret); err != nil {
			return RepositoryStatus{}, err
		}
	}
	if secret != "" {
		if r.SealedSecret, err = c.hub.Seal(sealPurpose, []byte(secret)); err != nil {
			return RepositoryStatus{}, err
		}
	}
	if r, err = c.store.CreateRepository(ctx, r); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			err = fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return RepositoryStatus{}, err
	}
	c.mu.Lock()
	c.repos[r.Name] = &repoState{cfg: r, secret: secret}
	c.mu.Unlock()
	c.Refresh(r.Name)
	return c.status(r.Name)
}

// DeleteRepository removes a repository; a built-in one cannot be. A
// stored repository that had a built-in one's name gives way to it.
func (c *Catalog) DeleteRepository(ctx context.Context, name string) error {
	c.mu.RLock()
	st := c.repos[name]
	isBuiltIn := st != nil && st.cfg.Kind == KindBuiltIn
	c.mu.RUnlock()
	if isBuiltIn {
		return fmt.Errorf("repository %q: %w: it cannot be deleted or changed", name, ErrBuiltIn)
	}
	if err := c.store.DeleteRepository(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("repository %q: %w", name, ErrNotFound)
		}
		return err
	}
	c.mu.Lock()
	delete(c.repos, name)
	c.mu.Unlock()
	if b, ok := c.builtIn[name]; ok {
		c.log.Info("the built-in repository is used again: the stored one of its name was deleted", "repository", name)
		c.useBuiltIn(b)
	}
	return nil
}

// RepositoryStatus is a repository as the API shows it: never its secret.
type RepositoryStatus struct {
	Name         string     `json:"name"`
	Kind         string     `json:"kind"`
	URL          string     `json:"url"`
	Username     string     `json:"username,omitempty"`
	HasSecret    bool       `json:"hasSecret"`
	CustomCA     bool       `json:"customCA"`
	Charts       int        `json:"charts"`
	Versions     int        `json:"versions"`
	Refreshing   bool       `json:"refreshing"`
	Progress     string     `json:"progress,omitempty"`
	RefreshedAt  *time.Time `json:"refreshedAt,omitempty"`
	RefreshError string     `json:"refreshError,omitempty"`
	// BuiltIn: built into the hub (Config.BuiltIn); it cannot be deleted.
	BuiltIn bool `json:"builtIn"`
	// Missing are charts a built-in repository lacks, each with why.
	Missing map[string]string `json:"missing,omitempty"`
	// Notice is what the last successful refresh says without failing:
	// an OCI discovery capped, repositories it could not read.
	Notice string `json:"notice,omitempty"`
}

// Repositories lists the repositories.
func (c *Catalog) Repositories() []RepositoryStatus {
	out := []RepositoryStatus{}
	for _, n := range c.names() {
		if st, err := c.status(n); err == nil {
			out = append(out, st)
		}
	}
	return out
}

func (c *Catalog) status(name string) (RepositoryStatus, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, ok := c.repos[name]
	if !ok {
		return RepositoryStatus{}, fmt.Errorf("repository %q: %w", name, ErrNotFound)
	}
	out := RepositoryStatus{Name: st.cfg.Name, Kind: st.cfg.Kind, URL: st.cfg.URL, Username: st.cfg.Username,
		HasSecret: st.secret != "", CustomCA: st.cfg.CAPEM != "", Refreshing: st.refreshing, Progress: st.progress,
		RefreshError: st.cfg.RefreshError, BuiltIn: st.cfg.Kind == KindBuiltIn, Missing: st.missing}
	if !st.cfg.RefreshedAt.IsZero() {
		t := st.cfg.RefreshedAt
		out.RefreshedAt = &t
	}
	if st.index != nil {
		out.Notice = st.index.Annotations[NoticeAnnotation]
		out.Charts = len(st.index.Entries)
		for _, vs := range st.index.Entries {
			out.Versions += len(vs)
		}
	}
	return out, nil
}

// Repository returns one repository's status.
func (c *Catalog) Repository(name string) (RepositoryStatus, error) { return c.status(name) }

// Refresh starts refreshing repository name in the background, unless a
// refresh of it is running. Its progress shows in the repository's status.
func (c *Catalog) Refresh(name string) {
	c.mu.Lock()
	st, ok := c.repos[name]
	if !ok || st.refreshing || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	st.refreshing, st.progress = true, "starting"
	cfg, secret := st.cfg, st.secret
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.refresh(cfg, secret)
	}()
}

// RefreshAndWait refreshes repository name and waits for the result.
func (c *Catalog) RefreshAndWait(ctx context.Context, name string) (RepositoryStatus, error) {
	c.Refresh(name)
	for {
		st, err := c.status(name)
		if err != nil || !st.Refreshing {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Catalog) setProgress(name, p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.repos[name]; ok {
		st.progress = p
	}
}

func (c *Catalog) refresh(r store.Repository, secret string) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*c.cfg.Timeout)
	defer cancel()
	var ix *repo.IndexFile
	var raw []byte
	var etag string
	var err error
	notModified := false
	switch r.Kind {
	case "oci":
		ix, err = c.refreshOCI(ctx, r, secret)
		if err == nil {
			raw, err = yaml.Marshal(ix)
		}
	default:
		raw, etag, notModified, err = c.fetchIndex(ctx, r, secret)
		if err == nil && !notModified {
			c.setProgress(r.Name, fmt.Sprintf("parsing index.yaml (%d bytes)", len(raw)))
			ix, err = parseIndex(raw)
		}
	}
	rec := store.RepositoryIndex{ETag: etag}
	result := "updated"
	switch {
	case err != nil:
		rec.Error = err.Error()
		result = "error"
		c.log.Warn("refreshing repository", "repository", r.Name, "err", err)
	case notModified:
		result = "not-modified"
	default:
		rec.Index = raw
	}
	c.refreshes.WithLabelValues(result).Inc()
	if serr := c.store.SetRepositoryIndex(context.WithoutCancel(ctx), r.Name, rec); serr != nil && !errors.Is(serr, store.ErrNotFound) {
		c.log.Warn("recording a repository refresh", "repository", r.Name, "err", serr)
	}
	now := time.Now().UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.repos[r.Name]
	if !ok || st.cfg.Kind != r.Kind || st.cfg.URL != r.URL { // deleted, or replaced meanwhile
		return
	}
	st.refreshing, st.progress = false, ""
	st.cfg.RefreshedAt, st.cfg.RefreshError = now, rec.Error
	if etag != "" {
		st.cfg.ETag = etag
	}
	if ix != nil {
		st.setIndex(ix)
	}
}

// httpClient is a client for repository r: its CA, the hub's timeout. A
// built-in repository's client reads its fs.FS (no network), so refreshes
// and downloads take the same path as for an HTTP repository.
func (c *Catalog) httpClient(r store.Repository) (*http.Client, error) {
	if r.Kind == KindBuiltIn {
		b, ok := c.builtIn[r.Name]
		if !ok {
			return nil, fmt.Errorf("built-in repository %q: %w", r.Name, ErrNotFound)
		}
		return &http.Client{Transport: http.NewFileTransportFS(b.Charts), Timeout: c.cfg.Timeout}, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(r.CAPEM)) {
			return nil, errors.New("the repository's CA is not PEM")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: c.cfg.Timeout}, nil
}

// authorize adds r's credentials to req if it goes to r's host (a chart
// hosted elsewhere does not get them, as with helm).
func authorize(req *http.Request, r store.Repository, secret string) {
	base, err := url.Parse(r.URL)
	if err != nil || base.Host != req.URL.Host || secret == "" {
		return
	}
	if r.Username != "" {
		req.SetBasicAuth(r.Username, secret)
	} else {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
}

// fetchIndex GETs r's index.yaml, conditional on the last ETag.
func (c *Catalog) fetchIndex(ctx context.Context, r store.Repository, secret string) (data []byte, etag string, notModified bool, err error) {
	hc, err := c.httpClient(r)
	if err != nil {
		return nil, "", false, err
	}
	defer hc.CloseIdleConnections()
	c.setProgress(r.Name, "fetching index.yaml")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/index.yaml", nil)
	if err != nil {
		return nil, "", false, err
	}
	authorize(req, r, secret)
	c.mu.RLock()
	if st := c.repos[r.Name]; st != nil && st.index != nil && st.cfg.ETag != "" {
		req.Header.Set("If-None-Match", st.cfg.ETag)
	}
	c.mu.RUnlock()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", false, fmt.Errorf("fetching index.yaml: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return nil, resp.Header.Get("ETag"), true, nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", false, fmt.Errorf("fetching index.yaml: %s", resp.Status)
	}
	pr := &progressReader{r: io.LimitReader(resp.Body, MaxIndexSize+1), total: resp.ContentLength, report: func(p string) { c.setProgress(r.Name, "fetching index.yaml: "+p) }}
	data, err = io.ReadAll(pr)
	if err != nil {
		return nil, "", false, fmt.Errorf("reading index.yaml: %w", err)
	}
	if len(data) > MaxIndexSize {
		return nil, "", false, fmt.Errorf("index.yaml is over %d bytes", MaxIndexSize)
	}
	return data, resp.Header.Get("ETag"), false, nil
}

// progressReader reports how much of a body was read.
type progressReader struct {
	r      io.Reader
	n      int64
	total  int64
	last   time.Time
	report func(string)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		if p.total > 0 {
			p.report(fmt.Sprintf("%d of %d bytes", p.n, p.total))
		} else {
			p.report(fmt.Sprintf("%d bytes", p.n))
		}
	}
	return n, err
}

func parseIndex(data []byte) (*repo.IndexFile, error) {
	ix := &repo.IndexFile{}
	if err := yaml.Unmarshal(data, ix); err != nil {
		return nil, fmt.Errorf("index.yaml: %w", err)
	}
	if ix.APIVersion == "" {
		return nil, fmt.Errorf("index.yaml: %w", repo.ErrNoAPIVersion)
	}
	for name, vs := range ix.Entries {
		kept := vs[:0]
		for _, v := range vs {
			if v != nil && v.Metadata != nil && v.Version != "" {
				kept = append(kept, v)
			}
		}
		ix.Entries[name] = kept
	}
	ix.SortEntries()
	return ix, nil
}

// chartCache keeps loaded charts by repository, name and version.
type chartCache struct {
	mu    sync.Mutex
	max   int
	m     map[string]*chart.Chart // guarded by mu
	order []string                // guarded by mu
}

func (cc *chartCache) get(k string) *chart.Chart {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.m[k]
}

func (cc *chartCache) put(k string, ch *chart.Chart) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.m[k]; ok {
		return
	}
	if len(cc.order) >= cc.max {
		delete(cc.m, cc.order[0])
		cc.order = cc.order[1:]
	}
	cc.m[k] = ch
	cc.order = append(cc.order, k)
}

// version finds a chart version in a repository's index ("" for the
// newest).
func (c *Catalog) version(ref apps.ChartRef) (store.Repository, string, *repo.ChartVersion, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, ok := c.repos[ref.Repo]
	if !ok {
		return store.Repository{}, "", nil, fmt.Errorf("repository %q: %w", ref.Repo, ErrNotFound)
	}
	if st.index == nil {
		return store.Repository{}, "", nil, fmt.Errorf("repository %q has no index yet (%s): %w", ref.Repo, st.cfg.RefreshError, ErrNotFound)
	}
	if why, ok := st.missing[ref.Name]; ok && len(st.index.Entries[ref.Name]) == 0 {
		return store.Repository{}, "", nil, fmt.Errorf("chart %s is not in the built-in repository %s: %s: %w", ref.Name, ref.Repo, why, ErrNotFound)
	}
	cv, err := st.index.Get(ref.Name, ref.Version)
	if err != nil {
		return store.Repository{}, "", nil, fmt.Errorf("chart %s %s in %s: %w: %w", ref.Name, ref.Version, ref.Repo, ErrNotFound, err)
	}
	return st.cfg, st.secret, cv, nil
}

// Chart loads a chart of the catalog (apps.ChartSource).
func (c *Catalog) Chart(ctx context.Context, ref apps.ChartRef) (*chart.Chart, error) {
	r, secret, cv, err := c.version(ref)
	if err != nil {
		return nil, err
	}
	// By URL, not name: a repository deleted and added again elsewhere, or
	// a stored one giving way to a built-in one, keeps no stale chart.
	key := r.URL + " " + cv.Name + "@" + cv.Version
	if ch := c.charts.get(key); ch != nil {
		return ch, nil
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("chart %s %s has no URL in the index", cv.Name, cv.Version)
	}
	var data []byte
	if r.Kind == "oci" {
		rc, err := c.registryClient(r, secret)
		if err != nil {
			return nil, err
		}
		res, err := rc.Pull(strings.TrimPrefix(cv.URLs[0], "oci://"))
		if err != nil {
			return nil, fmt.Errorf("pulling %s: %w", cv.URLs[0], err)
		}
		data = res.Chart.Data
	} else {
		u, err := repo.ResolveReferenceURL(r.URL, cv.URLs[0])
		if err != nil {
			return nil, err
		}
		hc, err := c.httpClient(r)
		if err != nil {
			return nil, err
		}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		authorize(req, r, secret)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("downloading %s: %w", u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("downloading %s: %s", u, resp.Status)
		}
		if data, err = io.ReadAll(io.LimitReader(resp.Body, MaxChartSize+1)); err != nil {
			return nil, fmt.Errorf("downloading %s: %w", u, err)
		}
		if len(data) > MaxChartSize {
			return nil, fmt.Errorf("chart %s is over %d bytes", u, MaxChartSize)
		}
	}
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("chart %s %s: %w", cv.Name, cv.Version, err)
	}
	c.charts.put(key, ch)
	return ch, nil
}
