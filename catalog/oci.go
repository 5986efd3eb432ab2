package catalog

// OCI registries: their charts are the repositories under the configured
// path, listed by hand or discovered through the registry's catalog API
// (GET /v2/_catalog), each checked to be a Helm chart by its manifest's
// config media type. The registry calls are oras-go's (which Helm's own
// registry client is built on), with the repository's CA and credentials.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Masterminds/semver/v3"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/eco-project/eco/store"
)

// Bounds of an OCI refresh.
const (
	// DefaultMaxDiscovered is how many repositories under an OCI
	// registry's path a refresh checks for charts, when its charts are not
	// listed (Config.MaxDiscovered).
	DefaultMaxDiscovered = 500
	// catalogPages bounds the pages of a registry's catalog one discovery
	// reads (a shared registry may hold far more than the path's charts).
	catalogPages = 500
	// defaultCatalogPageSize is the n of a catalog request: small enough
	// that every registry honours it.
	defaultCatalogPageSize = 100
	// tagPages bounds the pages of one repository's tag list.
	tagPages = 50
	// ociParallel is how many repositories a refresh reads at once.
	ociParallel = 4
	// maxChartConfig bounds a chart's config blob (its Chart.yaml as
	// JSON).
	maxChartConfig = 1 << 20
)

// NoticeAnnotation is the annotation of an OCI repository's generated
// index that keeps what its last refresh has to say without failing: the
// discovery was capped, repositories could not be read. The repository's
// status shows it as notice.
const NoticeAnnotation = "eco.dev/notice"

// errEnough stops a listing early.
var errEnough = errors.New("enough")

// ociTarget is where an OCI repository's charts are: the registry (host
// and port) and the path prefix of its repositories ("" or "path/").
func ociTarget(r store.Repository) (host, prefix string) {
	host, path, _ := strings.Cut(strings.TrimPrefix(r.URL, "oci://"), "/")
	if path = strings.Trim(path, "/"); path != "" {
		prefix = path + "/"
	}
	return host, prefix
}

// plainHTTP: a registry on localhost is spoken to without TLS, as helm
// does.
func plainHTTP(r store.Repository) bool { return strings.HasPrefix(r.URL, "oci://localhost") }

// authClient is an oras client for r: its CA, its credentials (basic auth
// with a username, else the secret as a bearer token; anonymous without
// one) and nothing from the hub host's docker or helm configuration.
func (c *Catalog) authClient(r store.Repository, secret string) (*auth.Client, *http.Client, error) {
	hc, err := c.httpClient(r)
	if err != nil {
		return nil, nil, err
	}
	ac := &auth.Client{Client: hc, Cache: auth.NewCache()}
	ac.Credential = func(context.Context, string) (auth.Credential, error) {
		switch {
		case secret == "":
			return auth.EmptyCredential, nil
		case r.Username != "":
			return auth.Credential{Username: r.Username, Password: secret}, nil
		}
		return auth.Credential{AccessToken: secret}, nil
	}
	return ac, hc, nil
}

// registryClient is Helm's OCI client for r (chart downloads).
func (c *Catalog) registryClient(r store.Repository, secret string) (*registry.Client, error) {
	ac, hc, err := c.authClient(r, secret)
	if err != nil {
		return nil, err
	}
	opts := []registry.ClientOption{
		registry.ClientOptHTTPClient(hc),
		registry.ClientOptAuthorizer(*ac),
		registry.ClientOptCredentialsFile(filepath.Join(os.TempDir(), "eco-catalog-no-credentials.json")),
	}
	if plainHTTP(r) {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	return registry.NewClient(opts...)
}

// ociRegistry is an oras client for r's registry; the repositories it
// derives share its client, credentials and bounds.
func (c *Catalog) ociRegistry(r store.Repository, secret string) (*remote.Registry, error) {
	host, _ := ociTarget(r)
	reg, err := remote.NewRegistry(host)
	if err != nil {
		return nil, fmt.Errorf("%w: registry %q: %w", ErrInvalid, host, err)
	}
	ac, _, err := c.authClient(r, secret)
	if err != nil {
		return nil, err
	}
	reg.Client, reg.PlainHTTP = ac, plainHTTP(r)
	reg.RepositoryListPageSize, reg.TagListMaxPages = c.catalogPageSize, tagPages
	return reg, nil
}

// probeCatalog checks, before an OCI repository without listed charts is
// added, that its registry lists its repositories to these credentials:
// one page of the catalog.
func (c *Catalog) probeCatalog(ctx context.Context, r store.Repository, secret string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	reg, err := c.ociRegistry(r, secret)
	if err != nil {
		return err
	}
	err = listRepositories(ctx, reg, func([]string) error { return errEnough })
	if err != nil && !errors.Is(err, errEnough) {
		return catalogRefused(ctx, reg, err, secret != "")
	}
	return nil
}

// listRepositories reads reg's catalog page by page into fn. A registry
// that refuses the page size (PAGINATION_NUMBER_INVALID) before any page
// is asked again with its own (reg keeps that).
func listRepositories(ctx context.Context, reg *remote.Registry, fn func([]string) error) error {
	called := false
	err := reg.Repositories(ctx, "", func(repos []string) error {
		called = true
		return fn(repos)
	})
	var resp *errcode.ErrorResponse
	if called || reg.RepositoryListPageSize == 0 || !errors.As(err, &resp) || resp.StatusCode != http.StatusBadRequest ||
		!slices.ContainsFunc(resp.Errors, func(e errcode.Error) bool { return e.Code == "PAGINATION_NUMBER_INVALID" }) {
		return err
	}
	reg.RepositoryListPageSize = 0
	return reg.Repositories(ctx, "", fn)
}

// catalogRefused explains a failed catalog request: a registry that does
// not list its repositories (404, 405, UNSUPPORTED; or 401/403 to
// credentials it takes otherwise, as Docker Hub does), credentials it
// refuses, or a registry out of reach. The first two are ErrInvalid.
func catalogRefused(ctx context.Context, reg *remote.Registry, err error, withSecret bool) error {
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		if withSecret {
			return fmt.Errorf("%w: the registry asks for a username and password, not a token: %w", ErrInvalid, err)
		}
		return fmt.Errorf("%w: the registry needs credentials: %w", ErrInvalid, err)
	}
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) {
		return fmt.Errorf("listing the registry's repositories: %w", err)
	}
	unsupported := resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed
	for _, e := range resp.Errors {
		unsupported = unsupported || e.Code == errcode.ErrorCodeUnsupported
	}
	if !unsupported && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		// The catalog alone, or the credentials? The registry's base
		// endpoint says.
		perr := reg.Ping(ctx)
		var presp *errcode.ErrorResponse
		switch {
		case perr == nil:
			unsupported = true
		case errors.As(perr, &presp) && (presp.StatusCode == http.StatusUnauthorized || presp.StatusCode == http.StatusForbidden):
			if withSecret {
				return fmt.Errorf("%w: the registry refused the credentials: %w", ErrInvalid, perr)
			}
			return fmt.Errorf("%w: the registry needs credentials: %w", ErrInvalid, perr)
		default:
			return fmt.Errorf("reaching the registry: %w", perr)
		}
	}
	if unsupported {
		return fmt.Errorf("%w: this registry does not list its repositories (its catalog API answered %d %s): list its charts",
			ErrInvalid, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return fmt.Errorf("listing the registry's repositories: %w", err)
}

// discover lists the charts' names under r's path from the registry's
// catalog, page by page: the repositories directly under the path (a
// chart's name has no slash), at most c.maxDiscovered of them. notes say
// where it stopped short.
func (c *Catalog) discover(ctx context.Context, r store.Repository, reg *remote.Registry, withSecret bool) (names, notes []string, err error) {
	_, prefix := ociTarget(r)
	read, pages := 0, 0
	err = listRepositories(ctx, reg, func(repos []string) error {
		if pages == catalogPages {
			notes = append(notes, fmt.Sprintf("the registry lists over %d repositories: only the first %d were read; list the charts to choose them", read, read))
			return errEnough
		}
		pages++
		for _, full := range repos {
			read++
			name, ok := strings.CutPrefix(full, prefix)
			if !ok || name == "" || strings.Contains(name, "/") {
				continue
			}
			if len(names) == c.maxDiscovered {
				notes = append(notes, fmt.Sprintf("more than %d repositories are under %s: only the first %d were checked for charts; list the charts to choose them",
					c.maxDiscovered, r.URL, c.maxDiscovered))
				return errEnough
			}
			names = append(names, name)
		}
		c.setProgress(r.Name, fmt.Sprintf("listing the registry's repositories: %d read, %d under the path", read, len(names)))
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, nil, catalogRefused(ctx, reg, err, withSecret)
	}
	return names, notes, nil
}

// ociChart is one repository of a registry as the index has it.
type ociChart struct {
	name     string
	versions []string // newest first
	meta     *chart.Metadata
	// notChart: its newest tag is something else than a Helm chart.
	notChart string
}

// readChart reads repository prefix+name: its semver tags (as helm has
// them) and, from the newest, the chart's metadata — the manifest's
// config, which is the chart's Chart.yaml. A repository without such tags
// has no versions.
func readChart(ctx context.Context, reg *remote.Registry, prefix, name string) (ociChart, error) {
	out := ociChart{name: name}
	rp, err := reg.Repository(ctx, prefix+name)
	if err != nil {
		return out, err
	}
	type tagged struct {
		tag string
		v   *semver.Version
	}
	var tags []tagged
	err = rp.Tags(ctx, "", func(page []string) error {
		for _, tag := range page {
			// A registry tag has "_" for semver's "+" (helm#10166).
			if v, err := semver.StrictNewVersion(strings.ReplaceAll(tag, "_", "+")); err == nil {
				tags = append(tags, tagged{tag, v})
			}
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("tags: %w", err)
	}
	if len(tags) == 0 {
		return out, nil
	}
	sort.SliceStable(tags, func(i, j int) bool { return tags[i].v.GreaterThan(tags[j].v) })
	desc, rc, err := rp.FetchReference(ctx, tags[0].tag)
	if err != nil {
		return out, fmt.Errorf("manifest of %s: %w", tags[0].tag, err)
	}
	raw, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return out, fmt.Errorf("manifest of %s: %w", tags[0].tag, err)
	}
	// Whatever the registry calls the manifest, a chart's has Helm's
	// config (an image index, for one, has no config).
	var m ocispec.Manifest
	switch err := json.Unmarshal(raw, &m); {
	case err != nil || m.Config.MediaType == "":
		out.notChart = fmt.Sprintf("%s is a %s without a config, not a chart's manifest", tags[0].tag, desc.MediaType)
		return out, nil
	case m.Config.MediaType != registry.ConfigMediaType:
		out.notChart = fmt.Sprintf("%s has a config of type %s, not %s", tags[0].tag, m.Config.MediaType, registry.ConfigMediaType)
		return out, nil
	}
	if m.Config.Size > maxChartConfig {
		return out, fmt.Errorf("the chart config of %s is %d bytes, over %d", tags[0].tag, m.Config.Size, maxChartConfig)
	}
	cfg, err := content.FetchAll(ctx, rp, m.Config)
	if err != nil {
		return out, fmt.Errorf("chart config of %s: %w", tags[0].tag, err)
	}
	out.meta = &chart.Metadata{}
	if err := json.Unmarshal(cfg, out.meta); err != nil {
		return out, fmt.Errorf("chart config of %s: %w", tags[0].tag, err)
	}
	if out.meta.Name == "" {
		out.meta.Name = name
	}
	for _, t := range tags {
		out.versions = append(out.versions, t.v.String())
	}
	return out, nil
}

// unreadable: a repository the catalog named but these credentials may
// not read (or that went meanwhile). A discovery skips it and says so.
func unreadable(err error) bool {
	var resp *errcode.ErrorResponse
	return errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound)
}

// refreshOCI builds an index from an OCI registry: the listed charts, or
// those discovered under the path; each one's versions (its semver tags)
// with the metadata of the newest. A listed chart that cannot be read
// fails the refresh (the last index stays); a discovered repository that
// is not a chart is left out, and one these credentials may not read is
// left out with a notice.
func (c *Catalog) refreshOCI(ctx context.Context, r store.Repository, secret string) (*repo.IndexFile, error) {
	reg, err := c.ociRegistry(r, secret)
	if err != nil {
		return nil, err
	}
	_, prefix := ociTarget(r)
	names, discovered := r.Charts, len(r.Charts) == 0
	var notes []string
	if discovered {
		c.setProgress(r.Name, "listing the registry's repositories")
		if names, notes, err = c.discover(ctx, r, reg, secret != ""); err != nil {
			return nil, err
		}
	}
	charts := make([]ociChart, len(names))
	errs := make([]error, len(names))
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ociParallel)
	for i, name := range names {
		g.Go(func() error {
			charts[i], errs[i] = readChart(gctx, reg, prefix, name)
			c.setProgress(r.Name, fmt.Sprintf("%d of %d repositories read: %s", done.Add(1), len(names), name))
			switch {
			case errs[i] == nil && charts[i].notChart != "":
				if !discovered {
					return fmt.Errorf("%s is not a Helm chart: %s", name, charts[i].notChart)
				}
				c.log.Debug("a repository of the registry is not a chart", "repository", r.Name, "name", name, "reason", charts[i].notChart)
			case errs[i] == nil:
			case !discovered || !unreadable(errs[i]):
				return fmt.Errorf("chart %s: %w", name, errs[i])
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	ix := repo.NewIndexFile()
	now := time.Now().UTC()
	var skipped []string
	for i, ch := range charts {
		if errs[i] != nil {
			skipped = append(skipped, fmt.Sprintf("%s (%v)", ch.name, errs[i]))
			continue
		}
		for _, v := range ch.versions {
			md := *ch.meta
			md.Version = v
			ix.Entries[ch.name] = append(ix.Entries[ch.name], &repo.ChartVersion{Metadata: &md, URLs: []string{r.URL + "/" + ch.name + ":" + v}, Created: now})
		}
	}
	if len(skipped) > 0 {
		notes = append(notes, "left out, not readable with these credentials: "+strings.Join(firstN(skipped, 3), "; "))
	}
	if len(notes) > 0 {
		ix.Annotations = map[string]string{NoticeAnnotation: strings.Join(notes, "; ")}
	}
	ix.SortEntries()
	return ix, nil
}

// firstN is at most n of s, with how many more there are.
func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}
