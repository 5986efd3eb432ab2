package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
)

// pageSizes are the page sizes the clusters table offers.
var pageSizes = []int{25, 50, 100}

// listQuery is the Imported Clusters table's state, kept in the URL.
type listQuery struct {
	Q     string
	State string
	Sort  string
	Desc  bool
	Page  int // from 1
	Size  int
}

func parseListQuery(v url.Values) listQuery {
	q := listQuery{Q: strings.TrimSpace(v.Get("q")), State: v.Get("state"), Sort: v.Get("sort"), Desc: v.Get("desc") == "1"}
	if len(q.Q) > store.MaxSearchLen {
		q.Q = q.Q[:store.MaxSearchLen]
	}
	if !store.State(q.State).Valid() {
		q.State = ""
	}
	switch store.SortKey(q.Sort) {
	case store.SortByName, store.SortByCreated, store.SortByState:
	default:
		q.Sort = string(store.SortByName)
	}
	q.Page, _ = strconv.Atoi(v.Get("page"))
	q.Page = max(q.Page, 1)
	q.Size, _ = strconv.Atoi(v.Get("size"))
	if q.Size <= 0 || q.Size > store.MaxPageSize {
		q.Size = store.DefaultPageSize
	}
	return q
}

// url returns the table's URL for q with changes applied.
func (q listQuery) url(change func(*listQuery)) string {
	if change != nil {
		change(&q)
	}
	v := url.Values{}
	if q.Q != "" {
		v.Set("q", q.Q)
	}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Sort != string(store.SortByName) {
		v.Set("sort", q.Sort)
	}
	if q.Desc {
		v.Set("desc", "1")
	}
	if q.Page > 1 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.Size != store.DefaultPageSize {
		v.Set("size", strconv.Itoa(q.Size))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

func (u *UI) list(r *http.Request, q listQuery) (store.ClusterPage, error) {
	return u.hub.Store().ListClusters(r.Context(), store.ListOptions{
		Search: q.Q, State: store.State(q.State), SortBy: store.SortKey(q.Sort), Desc: q.Desc,
		Limit: q.Size, Offset: (q.Page - 1) * q.Size,
		IDs: identity(r).VisibleClusters(),
	})
}

// clusterRow is one row of the Imported Clusters table.
type clusterRow struct {
	store.Cluster
	Bad      bool
	LastSeen string
	// CloudVersion is the Kubernetes version the cloud reported when the
	// cluster was imported from a cloud account (General tab only).
	CloudVersion string
}

func (u *UI) row(c store.Cluster) clusterRow {
	return clusterRow{Cluster: c, Bad: c.Status.State != store.StateConnected, LastSeen: u.ago(c.Status.LastHeartbeat)}
}

// sortHeader is a sortable column header.
type sortHeader struct {
	Label string
	URL   string
	Aria  string // aria-sort value
	Arrow string
}

type listData struct {
	Rows         []clusterRow
	Query        listQuery
	Total        int
	Pages        int
	From, To     int
	Prev, Next   string
	First, Last  string
	Sort         map[string]sortHeader
	States       []store.State
	Sizes        []int
	PollMillis   int64
	StatusURL    string
	SelectedID   string
	TableCaption string
}

func (u *UI) clustersPage(w http.ResponseWriter, r *http.Request, rq *request) {
	q := parseListQuery(r.URL.Query())
	page, err := u.list(r, q)
	if err != nil {
		u.storeFail(w, r, rq, err)
		return
	}
	pages := max(1, (page.Total+q.Size-1)/q.Size)
	if q.Page > pages && page.Total > 0 {
		http.Redirect(w, r, q.url(func(q *listQuery) { q.Page = pages }), http.StatusSeeOther)
		return
	}
	d := listData{Query: q, Total: page.Total, Pages: pages, States: store.States(), Sizes: pageSizes,
		PollMillis: u.cfg.PollInterval.Milliseconds()}
	for _, c := range page.Clusters {
		d.Rows = append(d.Rows, u.row(c))
	}
	if len(d.Rows) > 0 {
		d.From = (q.Page-1)*q.Size + 1
		d.To = d.From + len(d.Rows) - 1
	}
	if q.Page > 1 {
		d.Prev = q.url(func(q *listQuery) { q.Page-- })
		d.First = q.url(func(q *listQuery) { q.Page = 1 })
	}
	if q.Page < pages {
		d.Next = q.url(func(q *listQuery) { q.Page++ })
		d.Last = q.url(func(q *listQuery) { q.Page = pages })
	}
	d.Sort = map[string]sortHeader{}
	for key, label := range map[string]string{"name": "Name", "state": "ECO status", "created": "Imported"} {
		h := sortHeader{Label: label, Aria: "none"}
		desc := false
		if q.Sort == key {
			desc = !q.Desc
			h.Aria, h.Arrow = "ascending", "▲"
			if q.Desc {
				h.Aria, h.Arrow = "descending", "▼"
			}
		}
		h.URL = q.url(func(q *listQuery) { q.Sort, q.Desc, q.Page = key, desc, 1 })
		d.Sort[key] = h
	}
	d.StatusURL = "/ui/clusters/status" + strings.TrimPrefix(q.url(nil), "/")
	v := rq.view("Imported Clusters", "clusters")
	v.Data = d
	switch {
	case r.URL.Query().Get("deleted") != "":
		v.Flash = "Cluster " + r.URL.Query().Get("deleted") + " was deleted."
	case r.URL.Query().Get("none") != "":
		v.Error = "Select a cluster first."
	}
	u.render(w, r, http.StatusOK, "clusters", v)
}

// statusJSON is one row's live fields, for the page's polling.
type statusJSON struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Reason      string `json:"reason"`
	Bad         bool   `json:"bad"`
	LastSeen    string `json:"lastSeen"`
	Kubernetes  string `json:"kubernetes"`
	Agent       string `json:"agent"`
	CloudHealth string `json:"cloudHealth"`
	// CloudHealthClass colours it: ok, neutral, progress or bad.
	CloudHealthClass string `json:"cloudHealthClass"`
}

// clustersStatus answers the Imported Clusters page's polling with the
// live fields of the same page of clusters.
func (u *UI) clustersStatus(w http.ResponseWriter, r *http.Request, rq *request) {
	q := parseListQuery(r.URL.Query())
	page, err := u.list(r, q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := struct {
		Total int          `json:"total"`
		Rows  []statusJSON `json:"rows"`
	}{Total: page.Total, Rows: []statusJSON{}}
	for _, c := range page.Clusters {
		row := u.row(c)
		out.Rows = append(out.Rows, statusJSON{
			ID: c.ID, State: string(c.Status.State), Reason: c.Status.Reason, Bad: row.Bad, LastSeen: row.LastSeen,
			Kubernetes: c.Status.KubernetesVersion, Agent: c.Status.AgentVersion, CloudHealth: c.CloudHealth,
			CloudHealthClass: healthClass(c.CloudHealth),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// selectCluster is the table action bar: Edit or Delete the cluster whose
// radio button is selected.
func (u *UI) selectCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	id := r.URL.Query().Get("cluster")
	if !store.ValidID(store.ClusterIDPrefix, id) {
		http.Redirect(w, r, "/?none=1", http.StatusSeeOther)
		return
	}
	switch r.URL.Query().Get("action") {
	case "delete":
		http.Redirect(w, r, "/ui/clusters/"+id+"/delete", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/ui/clusters/"+id, http.StatusSeeOther)
	}
}

type importData struct {
	Name, Provider, Region, CloudRef string
	Providers                        []store.Provider
}

func (u *UI) importPage(w http.ResponseWriter, r *http.Request, rq *request) {
	v := rq.view("Import cluster", "clusters")
	v.Data = importData{Provider: string(store.ProviderGeneric), Providers: store.Providers()}
	u.render(w, r, http.StatusOK, "import", v)
}

func (u *UI) importCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	d := importData{
		Name: strings.TrimSpace(r.PostForm.Get("name")), Provider: r.PostForm.Get("provider"),
		Region: strings.TrimSpace(r.PostForm.Get("region")), CloudRef: strings.TrimSpace(r.PostForm.Get("cloudRef")),
		Providers: store.Providers(),
	}
	c, err := u.hub.ImportCluster(r.Context(), hub.ImportRequest{
		Name: d.Name, Provider: store.Provider(d.Provider), Region: d.Region, CloudRef: d.CloudRef,
	})
	if err != nil {
		v := rq.view("Import cluster", "clusters")
		v.Data = d
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, store.ErrConflict):
			v.Error = fmt.Sprintf("A cluster named %q exists already.", d.Name)
			code = http.StatusConflict
		case errors.Is(err, store.ErrInvalid):
			v.Error = "Check the form: " + err.Error()
		default:
			u.storeFail(w, r, rq, err)
			return
		}
		u.render(w, r, code, "import", v)
		return
	}
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"/eco?imported=1", http.StatusSeeOther)
}

// cluster loads the cluster named by the path, or renders an error.
func (u *UI) cluster(w http.ResponseWriter, r *http.Request, rq *request) (store.Cluster, bool) {
	id := r.PathValue("id")
	if !store.ValidID(store.ClusterIDPrefix, id) {
		u.fail(w, r, rq, http.StatusNotFound, "There is no cluster "+id+".")
		return store.Cluster{}, false
	}
	// A cluster the user was not granted reads exactly as one that does
	// not exist.
	if rq.ident.ClusterRole(id) == "" {
		u.storeFail(w, r, rq, store.ErrNotFound)
		return store.Cluster{}, false
	}
	c, err := u.hub.Store().GetCluster(r.Context(), id)
	if err != nil {
		u.storeFail(w, r, rq, err)
		return store.Cluster{}, false
	}
	return c, true
}

// identity is the hub identity user() put in r's context.
func identity(r *http.Request) hub.Identity {
	id, _ := hub.IdentityFrom(r.Context())
	return id
}

func (u *UI) storeFail(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		u.fail(w, r, rq, http.StatusNotFound, "That cluster does not exist (it may have been deleted).")
	case errors.Is(err, store.ErrInvalid):
		u.fail(w, r, rq, http.StatusBadRequest, err.Error())
	default:
		u.logger.Error("store", "err", err)
		u.fail(w, r, rq, http.StatusInternalServerError, "The hub's store is unavailable; try again shortly.")
	}
}

// clusterView is the view of a page about cluster c.
func (u *UI) clusterView(rq *request, c *store.Cluster, title, section string) view {
	v := rq.view(title+" · "+c.Name, section)
	v.Cluster = c
	v.ClusterAdmin = rq.clusterAdmin(c.ID)
	v.Connected = u.hub.Connected(c.ID)
	v.ArgoCD = u.cfg.ArgoCD != nil
	return v
}

func (u *UI) generalTab(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	v := u.clusterView(rq, &c, "Edit Cluster", "general")
	row := u.row(c)
	if c.CloudRef != "" {
		if l, err := u.hub.Store().CloudLinkByRef(r.Context(), c.CloudRef); err == nil && l.ClusterID == c.ID {
			row.CloudVersion = l.Version
		}
	}
	v.Data = row
	if r.URL.Query().Get("updated") != "" {
		v.Flash = "Cluster " + c.Name + " was saved."
	}
	u.render(w, r, http.StatusOK, "general", v)
}

// updateCluster renames the cluster and replaces its labels from the
// General tab's form: a name, and labels one KEY=VALUE a line.
func (u *UI) updateCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	labels, err := parseLabelLines(r.PostFormValue("labels"))
	if err != nil {
		u.fail(w, r, rq, http.StatusBadRequest, "Labels: "+err.Error()+".")
		return
	}
	upd := store.ClusterUpdate{Name: strings.TrimSpace(r.PostFormValue("name")), Labels: labels}
	if upd.Name == "" {
		u.fail(w, r, rq, http.StatusBadRequest, "A cluster needs a name.")
		return
	}
	if _, err := u.hub.UpdateCluster(r.Context(), c.ID, upd); err != nil {
		if errors.Is(err, store.ErrConflict) {
			u.fail(w, r, rq, http.StatusConflict, "Another cluster is already named "+upd.Name+".")
			return
		}
		u.storeFail(w, r, rq, err)
		return
	}
	u.logger.Info("cluster updated", "cluster", c.ID, "name", upd.Name, "was", c.Name, "labels", len(labels), "by", rq.ident.Name)
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"?updated=1", http.StatusSeeOther)
}

// parseLabelLines reads labels written one KEY=VALUE a line; blank lines
// are skipped. The store checks the keys and values.
func parseLabelLines(text string) (map[string]string, error) {
	labels := map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", line)
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return labels, nil
}

type ecoData struct {
	Row      clusterRow
	History  []store.Transition
	YAML     string
	Filename string
	Command  string
	Imported bool
}

// rotatedFlash says, after "Rotate agent credential", what happens next,
// by the hub's delivery of the new credential.
var rotatedFlash = map[string]string{
	hub.DeliverySent:          "The agent credential was rotated and sent to the connected agent, which stores it in its Secret. The YAML below carries the new credential.",
	hub.DeliveryAgentOutdated: "The agent credential was rotated. The connected agent is too old to take it over the tunnel: re-apply the YAML below before the previous credential expires.",
	hub.DeliveryNotConnected:  "The agent credential was rotated. No agent is connected: re-apply the YAML below.",
	hub.DeliveryFailed:        "The agent credential was rotated, but sending it to the agent failed: re-apply the YAML below.",
}

// rotateCredential is the "Rotate agent credential" button (hub admins).
func (u *UI) rotateCredential(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	rot, err := u.hub.RotateCredential(r.Context(), c.ID)
	if err != nil {
		u.storeFail(w, r, rq, err)
		return
	}
	u.logger.Info("agent credential rotated", "cluster", c.ID, "generation", rot.Generation, "delivery", rot.Delivery, "by", rq.ident.Name)
	http.Redirect(w, r, "/ui/clusters/"+c.ID+"/eco?rotated="+url.QueryEscape(rot.Delivery), http.StatusSeeOther)
}

func (u *UI) ecoTab(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	hist, err := u.hub.Store().StatusHistory(r.Context(), c.ID, 20)
	if err != nil {
		u.storeFail(w, r, rq, err)
		return
	}
	d := ecoData{Row: u.row(c), History: hist, Filename: installFilename(c), Imported: r.URL.Query().Get("imported") != ""}
	d.Command = "kubectl apply -f " + d.Filename
	if rq.clusterAdmin(c.ID) {
		y, err := u.hub.InstallYAML(c.ID)
		if err != nil {
			u.logger.Error("rendering install YAML", "cluster", c.ID, "err", err)
			u.fail(w, r, rq, http.StatusInternalServerError, "The install YAML could not be rendered.")
			return
		}
		d.YAML = string(y)
	}
	v := u.clusterView(rq, &c, "Edit Cluster", "eco")
	v.Data = d
	if d.Imported {
		v.Flash = "Cluster " + c.Name + " was imported. Install ECO into it with the YAML below."
	}
	if msg, ok := rotatedFlash[r.URL.Query().Get("rotated")]; ok {
		v.Flash = msg
	}
	if r.URL.Query().Get("installed") != "" {
		v.Flash = "The hub applied the install YAML with credentials from the cloud; the agent connects once its pod runs."
	}
	u.render(w, r, http.StatusOK, "eco", v)
}

func installFilename(c store.Cluster) string { return "eco-" + c.Name + ".yaml" }

func (u *UI) installYAML(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	y, err := u.hub.InstallYAML(c.ID)
	if err != nil {
		u.logger.Error("rendering install YAML", "cluster", c.ID, "err", err)
		u.fail(w, r, rq, http.StatusInternalServerError, "The install YAML could not be rendered.")
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", installFilename(c)))
	_, _ = w.Write(y)
}

func (u *UI) deletePage(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	v := u.clusterView(rq, &c, "Delete cluster", "general")
	u.render(w, r, http.StatusOK, "delete", v)
}

// deleteCluster removes the cluster as the API's DELETE does: its
// credential stops matching and its tunnel is closed.
func (u *UI) deleteCluster(w http.ResponseWriter, r *http.Request, rq *request) {
	c, ok := u.cluster(w, r, rq)
	if !ok {
		return
	}
	if err := u.hub.DeleteCluster(r.Context(), c.ID); err != nil {
		u.storeFail(w, r, rq, err)
		return
	}
	u.logger.Info("cluster deleted", "cluster", c.ID, "name", c.Name, "by", rq.ident.Name)
	http.Redirect(w, r, "/?deleted="+url.QueryEscape(c.Name), http.StatusSeeOther)
}

// ago describes how long ago t was; "never" for the zero time.
func (u *UI) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return humanDuration(u.cfg.Now().Sub(t)) + " ago"
}

func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
