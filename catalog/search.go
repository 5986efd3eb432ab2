package catalog

import (
	"context"
	"sort"
	"strings"
	"time"

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
		Hit
		score int
	}
	var hits []scored
	c.mu.RLock()
	for rname, st := range c.repos {
		if st.index == nil {
			continue
		}
		for name, vs := range st.index.Entries {
			if len(vs) == 0 {
				continue
			}
			top := vs[0]
			lname := strings.ToLower(name)
			text := lname + "\x00" + strings.ToLower(top.Description) + "\x00" + strings.ToLower(strings.Join(top.Keywords, "\x00"))
			ok := true
			for _, w := range words {
				if !strings.Contains(text, w) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			score := 2
			switch {
			case q != "" && lname == q:
				score = 0
			case q != "" && strings.Contains(lname, q):
				score = 1
			}
			hits = append(hits, scored{Hit{Repo: rname, Name: name, Version: top.Version, AppVersion: top.AppVersion,
				Description: top.Description, Icon: top.Icon, Keywords: top.Keywords, Versions: len(vs), Deprecated: top.Deprecated}, score})
		}
	}
	c.mu.RUnlock()
	sort.Slice(hits, func(i, j int) bool {
		a, b := hits[i], hits[j]
		if a.score != b.score {
			return a.score < b.score
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Repo < b.Repo
	})
	out := make([]Hit, 0, min(limit, len(hits)))
	for i := 0; i < len(hits) && i < limit; i++ {
		out = append(out, hits[i].Hit)
	}
	return out
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
