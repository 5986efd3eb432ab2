package catalog

import (
	"context"
	"sort"
	"strings"
	"time"

	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/eco-project/eco/apps"
)

// Hit is a chart found by Search: its newest version and how many there
// are.
type Hit struct {
	Repo        string   `json:"repo"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion,omitempty"`
	Description string   `json:"description,omitempty"`
	Icon        string   `json:"icon,omitempty"`
	Keywords    []string `json:"keywords,omitempty"`
	Versions    int      `json:"versions"`
	Deprecated  bool     `json:"deprecated,omitempty"`
}

// Search finds charts across every repository whose name, description or
// keywords contain every word of query (case-insensitive; an empty query
// lists every chart), best matches first: a name equal to the query, then
// a name containing it, then the rest, each by name. At most limit hits
// (0: 100).
func (c *Catalog) Search(query string, limit int) []Hit {
	if limit <= 0 {
		limit = 100
	}
	words := strings.Fields(strings.ToLower(query))
	q := strings.ToLower(strings.TrimSpace(query))
	type scored struct {
		e     *searchEntry
		repo  string
		score int
	}
	var hits []scored
	c.mu.RLock()
	for rname, st := range c.repos {
		for i := range st.search {
			e := &st.search[i]
			ok := true
			for _, w := range words {
				if !strings.Contains(e.text, w) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			score := 2
			switch {
			case q != "" && e.lname == q:
				score = 0
			case q != "" && strings.Contains(e.lname, q):
				score = 1
			}
			hits = append(hits, scored{e, rname, score})
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		a, b := hits[i], hits[j]
		if a.score != b.score {
			return a.score < b.score
		}
		if a.e.name != b.e.name {
			return a.e.name < b.e.name
		}
		return a.repo < b.repo
	})
	out := make([]Hit, 0, min(limit, len(hits)))
	for i := 0; i < len(hits) && i < limit; i++ {
		e, top := hits[i].e, hits[i].e.top
		out = append(out, Hit{Repo: hits[i].repo, Name: e.name, Version: top.Version, AppVersion: top.AppVersion,
			Description: top.Description, Icon: top.Icon, Keywords: top.Keywords, Versions: e.versions, Deprecated: top.Deprecated})
	}
	c.mu.RUnlock()
	return out
}

// searchEntry is a chart of an index as Search matches it: its newest
// version and its text lower-cased once, when the index is loaded.
type searchEntry struct {
	name, lname, text string
	top               *repo.ChartVersion
	versions          int
}

// setIndex sets the repository's index and its search entries.
func (st *repoState) setIndex(ix *repo.IndexFile) {
	st.index = ix
	st.search = st.search[:0:0]
	for name, vs := range ix.Entries {
		if len(vs) == 0 {
			continue
		}
		top := vs[0]
		lname := strings.ToLower(name)
		st.search = append(st.search, searchEntry{name: name, lname: lname, top: top, versions: len(vs),
			text: lname + "\x00" + strings.ToLower(top.Description) + "\x00" + strings.ToLower(strings.Join(top.Keywords, "\x00"))})
	}
}

// VersionInfo is one version of a chart.
type VersionInfo struct {
	Version    string    `json:"version"`
	AppVersion string    `json:"appVersion,omitempty"`
	Created    time.Time `json:"created,omitzero"`
}

// Page is a chart's page: its versions and, for the version shown, its
// README, default values and values schema.
type Page struct {
	Repo         string        `json:"repo"`
	Name         string        `json:"name"`
	Version      string        `json:"version"`
	AppVersion   string        `json:"appVersion,omitempty"`
	Description  string        `json:"description,omitempty"`
	Home         string        `json:"home,omitempty"`
	Icon         string        `json:"icon,omitempty"`
	Versions     []VersionInfo `json:"versions"`
	Readme       string        `json:"readme,omitempty"`
	Values       string        `json:"values"`
	Schema       string        `json:"schema,omitempty"`
	Dependencies []string      `json:"dependencies,omitempty"`
}

// ChartPage returns the page of chart name in repository repoName at
// version ("" for the newest), downloading the chart.
func (c *Catalog) ChartPage(ctx context.Context, repoName, name, version string) (Page, error) {
	ref := apps.ChartRef{Repo: repoName, Name: name, Version: version}
	_, _, cv, err := c.version(ref)
	if err != nil {
		return Page{}, err
	}
	ch, err := c.Chart(ctx, apps.ChartRef{Repo: repoName, Name: name, Version: cv.Version})
	if err != nil {
		return Page{}, err
	}
	p := Page{Repo: repoName, Name: name, Version: cv.Version, AppVersion: cv.AppVersion, Description: cv.Description, Home: cv.Home, Icon: cv.Icon, Schema: string(ch.Schema)}
	c.mu.RLock()
	if st := c.repos[repoName]; st != nil && st.index != nil {
		for _, v := range st.index.Entries[name] {
			p.Versions = append(p.Versions, VersionInfo{Version: v.Version, AppVersion: v.AppVersion, Created: v.Created})
		}
	}
	c.mu.RUnlock()
	for _, f := range ch.Raw {
		if f.Name == "values.yaml" {
			p.Values = string(f.Data)
		}
	}
	for _, f := range ch.Files {
		if strings.EqualFold(f.Name, "README.md") {
			p.Readme = string(f.Data)
		}
	}
	for _, d := range ch.Metadata.Dependencies {
		p.Dependencies = append(p.Dependencies, d.Name+" "+d.Version)
	}
	return p, nil
}
