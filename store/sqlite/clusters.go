package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eco-project/eco/store"
)

// clusterColumns is what scanCluster reads, in order.
const clusterColumns = `id, name, provider, region, cloud_ref, created_at, credential_hash,
	fingerprint, fingerprint_pinned_at, cloud_health,
	state, reason, state_since, last_heartbeat, rtt_ns, agent_version, kubernetes_version,
	oidc_issuer, require_approval, identity_state,
	credential_generation, credential_confirmed, credential_rotated_at, previous_credential_hash, previous_credential_until,
	labels`

func scanCluster(row interface{ Scan(...any) error }) (store.Cluster, error) {
	var c store.Cluster
	err := row.Scan(&c.ID, &c.Name, &c.Provider, &c.Region, &c.CloudRef, scanTime{&c.CreatedAt}, &c.AgentCredentialHash,
		&c.Fingerprint, scanTime{&c.FingerprintPinnedAt}, &c.CloudHealth,
		&c.Status.State, &c.Status.Reason, scanTime{&c.Status.Since}, scanTime{&c.Status.LastHeartbeat},
		&c.Status.RTT, &c.Status.AgentVersion, &c.Status.KubernetesVersion,
		&c.Identity.OIDCIssuer, &c.Identity.RequireApproval, &c.IdentityState,
		&c.Credential.Generation, &c.Credential.Confirmed, scanTime{&c.Credential.RotatedAt},
		&c.Credential.PreviousHash, scanTime{&c.Credential.PreviousUntil},
		scanLabels{&c.Labels})
	return c, err
}

// scanLabels reads the labels column: a JSON object, nil when empty.
type scanLabels struct{ m *map[string]string }

func (s scanLabels) Scan(src any) error {
	var text []byte
	switch v := src.(type) {
	case string:
		text = []byte(v)
	case []byte:
		text = v
	default:
		return fmt.Errorf("labels: unexpected %T", src)
	}
	if string(text) == "{}" { // most clusters: no decoding on every list
		*s.m = nil
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(text, &m); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if len(m) == 0 {
		m = nil
	}
	*s.m = m
	return nil
}

// UpdateCluster implements [store.Store].
func (s *Store) UpdateCluster(ctx context.Context, id string, u store.ClusterUpdate) (store.Cluster, error) {
	if err := u.Validate(); err != nil {
		return store.Cluster{}, fmt.Errorf("updating cluster %q: %w", id, err)
	}
	var c store.Cluster
	err := s.write(ctx, func(w op) error {
		var err error
		if c, err = scanCluster(w.queryRow(qClusterByID, id)); err != nil {
			return notFound(err)
		}
		if u.Name != "" && u.Name != c.Name {
			if taken, err := w.exists(qClusterNameTaken, u.Name); err != nil {
				return err
			} else if taken {
				return fmt.Errorf("the name %q is taken by another cluster: %w", u.Name, store.ErrConflict)
			}
			if _, err := w.exec(qRenameCluster, u.Name, id); err != nil {
				if isUniqueViolation(err) {
					return fmt.Errorf("the name %q is taken by another cluster: %w", u.Name, store.ErrConflict)
				}
				return err
			}
			c.Name = u.Name
		}
		if u.Labels != nil {
			text, err := json.Marshal(u.Labels)
			if err != nil {
				return err
			}
			if _, err := w.exec(qSetClusterLabels, string(text), id); err != nil {
				return err
			}
			c.Labels = maps.Clone(u.Labels)
			if len(c.Labels) == 0 {
				c.Labels = nil
			}
		}
		return nil
	})
	if err != nil {
		return store.Cluster{}, fmt.Errorf("updating cluster %q: %w", id, err)
	}
	return c, nil
}

// notFound maps sql.ErrNoRows to store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// CreateCluster implements [store.Store].
func (s *Store) CreateCluster(ctx context.Context, nc store.NewCluster) (store.Cluster, error) {
	if err := nc.Validate(); err != nil {
		return store.Cluster{}, fmt.Errorf("creating cluster: %w", err)
	}
	now := s.cfg.Now()
	c := store.Cluster{
		Name:                nc.Name,
		Provider:            nc.Provider,
		Region:              nc.Region,
		CloudRef:            nc.CloudRef,
		Identity:            nc.Identity,
		CreatedAt:           now,
		AgentCredentialHash: slices.Clone(nc.AgentCredentialHash),
		Status:              store.InitialStatus(now),
	}
	if err := insertCluster(s.w.do(ctx), &c); err != nil {
		return store.Cluster{}, fmt.Errorf("creating cluster %q: %w", nc.Name, err)
	}
	return c, nil
}

// insertCluster inserts c with a fresh ID. The INSERT alone is the common
// case; only when a unique constraint fails does it look for the cause.
func insertCluster(o op, c *store.Cluster) error {
	for range 3 {
		c.ID = store.NewClusterID()
		_, err := o.exec(qInsertCluster, c.ID, c.Name, string(c.Provider), c.Region, c.CloudRef, dbTime(c.CreatedAt),
			c.AgentCredentialHash, string(c.Status.State), c.Status.Reason, dbTime(c.Status.Since),
			c.Identity.OIDCIssuer, c.Identity.RequireApproval)
		if !isUniqueViolation(err) {
			return err
		}
		if taken, err := o.exists(qClusterNameTaken, c.Name); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("name is already taken: %w", store.ErrConflict)
		}
		if taken, err := o.exists(qCredentialTaken, c.AgentCredentialHash, ""); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("credential hash is already in use: %w", store.ErrConflict)
		}
		// Neither: the random ID collided (or the other cluster has just
		// gone). Draw again.
	}
	return fmt.Errorf("no free cluster ID after 3 attempts: %w", store.ErrConflict)
}

// GetCluster implements [store.Store].
func (s *Store) GetCluster(ctx context.Context, id string) (store.Cluster, error) {
	c, err := scanCluster(s.r.do(ctx).queryRow(qClusterByID, id))
	if err != nil {
		return store.Cluster{}, fmt.Errorf("getting cluster %q: %w", id, notFound(err))
	}
	return c, nil
}

// GetClusterByName implements [store.Store].
func (s *Store) GetClusterByName(ctx context.Context, name string) (store.Cluster, error) {
	c, err := scanCluster(s.r.do(ctx).queryRow(qClusterByName, name))
	if err != nil {
		return store.Cluster{}, fmt.Errorf("getting cluster named %q: %w", name, notFound(err))
	}
	return c, nil
}

// ClusterByCredentialHash implements [store.Store].
func (s *Store) ClusterByCredentialHash(ctx context.Context, hash []byte) (store.Cluster, error) {
	if len(hash) == 0 {
		return store.Cluster{}, fmt.Errorf("finding cluster by credential: %w", store.ErrNotFound)
	}
	c, err := scanCluster(s.r.do(ctx).queryRow(qClusterByHash, hash, hash))
	if err != nil {
		return store.Cluster{}, fmt.Errorf("finding cluster by credential: %w", notFound(err))
	}
	return c, nil
}

// ListClusters implements [store.Store].
func (s *Store) ListClusters(ctx context.Context, opts store.ListOptions) (store.ClusterPage, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return store.ClusterPage{}, fmt.Errorf("listing clusters: %w", err)
	}
	q := listQueries(opts)
	// There are at most about 150 distinct list queries: prepare them like
	// the fixed ones, before the transaction takes a connection.
	if err := s.r.prepare(ctx, q.count, q.page, q.pageByScan); err != nil {
		return store.ClusterPage{}, fmt.Errorf("listing clusters: %w", err)
	}
	page := store.ClusterPage{Clusters: []store.Cluster{}}
	err = s.read(ctx, func(o op) error {
		if err := o.queryRow(q.count, q.args...).Scan(&page.Total); err != nil {
			return err
		}
		if opts.Offset >= page.Total {
			return nil
		}
		list := q.page
		if page.Total > sortMatchesMax {
			list = q.pageByScan
		}
		rows, err := o.query(list, append(q.args, opts.Limit, opts.Offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanCluster(rows)
			if err != nil {
				return err
			}
			page.Clusters = append(page.Clusters, c)
		}
		return rows.Err()
	})
	if err != nil {
		return store.ClusterPage{}, fmt.Errorf("listing clusters: %w", err)
	}
	return page, nil
}

// sortMatchesMax is the number of search matches up to which a page is
// cut from the sorted matches; beyond it, walking the index of the order and
// testing membership is cheaper.
const sortMatchesMax = 1000

// clusterQueries are the queries of one ListClusters call.
type clusterQueries struct {
	count string // the number of matching clusters
	// page selects a page. With a search it starts from the matches of the
	// search index and sorts them; pageByScan (the same query otherwise)
	// walks the index of the order instead and stops at the page's end.
	page, pageByScan string
	args             []any // of the WHERE clause, shared by all three
}

// listQueries returns the queries for opts, which must have its defaults.
func listQueries(opts store.ListOptions) clusterQueries {
	var (
		q      clusterQueries
		conds  []string
		search = -1 // index in conds of the search index condition
	)
	switch {
	case utf8.RuneCountInString(opts.Search) >= 3:
		// The trigram index finds substrings of three characters or more;
		// a quoted FTS5 string is matched literally, ignoring case.
		search = len(conds)
		conds = append(conds, `seq IN (SELECT rowid FROM clusters_search WHERE clusters_search MATCH ?)`)
		q.args = append(q.args, `"`+strings.ReplaceAll(opts.Search, `"`, `""`)+`"`)
	case opts.Search != "":
		// Shorter terms scan the table; LIKE ignores ASCII case.
		p := "%" + escapeLike(opts.Search) + "%"
		conds = append(conds, `(name LIKE ? ESCAPE '\' OR id LIKE ? ESCAPE '\' OR region LIKE ? ESCAPE '\' OR cloud_ref LIKE ? ESCAPE '\')`)
		q.args = append(q.args, p, p, p, p)
	}
	if opts.Provider != "" {
		conds = append(conds, `provider = ?`)
		q.args = append(q.args, string(opts.Provider))
	}
	if opts.State != "" {
		conds = append(conds, `state = ?`)
		q.args = append(q.args, string(opts.State))
	}
	if opts.IDs != nil {
		// One JSON argument, so the query's text does not depend on the
		// number of IDs.
		ids, _ := json.Marshal(opts.IDs)
		conds = append(conds, `id IN (SELECT value FROM json_each(?))`)
		q.args = append(q.args, string(ids))
	}
	where := func(conds []string) string {
		if len(conds) == 0 {
			return ""
		}
		return ` WHERE ` + strings.Join(conds, ` AND `)
	}
	// Each order follows an index and ends in a unique column.
	var order []string
	switch opts.SortBy {
	case store.SortByName:
		order = []string{"name"}
	case store.SortByCreated:
		order = []string{"created_at", "id"}
	case store.SortByState:
		order = []string{"state", "name"}
	}
	if opts.Desc {
		for i := range order {
			order[i] += " DESC"
		}
	}
	tail := ` ORDER BY ` + strings.Join(order, ", ") + ` LIMIT ? OFFSET ?`
	q.count = `SELECT count(*) FROM clusters` + where(conds)
	q.page = `SELECT ` + clusterColumns + ` FROM clusters` + where(conds) + tail
	q.pageByScan = q.page
	if search >= 0 {
		// The unary + keeps SQLite from driving the query by seq.
		scan := slices.Clone(conds)
		scan[search] = "+" + scan[search]
		q.pageByScan = `SELECT ` + clusterColumns + ` FROM clusters` + where(scan) + tail
	}
	return q
}

// escapeLike makes s match literally in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// DeleteCluster implements [store.Store].
func (s *Store) DeleteCluster(ctx context.Context, id string) error {
	err := s.write(ctx, func(o op) error {
		if _, err := o.exec(qDeleteHistory, id); err != nil {
			return err
		}
		if _, err := o.exec(qDeleteClusterGrants, id); err != nil {
			return err
		}
		res, err := o.exec(qDeleteCluster, id)
		return affected(res, err, store.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("deleting cluster %q: %w", id, err)
	}
	return nil
}

// PinFingerprint implements [store.Store].
func (s *Store) PinFingerprint(ctx context.Context, id, fingerprint string) error {
	if err := store.ValidateFingerprint(fingerprint); err != nil {
		return fmt.Errorf("pinning fingerprint of cluster %q: %w", id, err)
	}
	now := s.cfg.Now()
	err := s.write(ctx, func(o op) error {
		// Compare-and-set: only an empty fingerprint is overwritten.
		res, err := o.exec(qPin, fingerprint, dbTime(now), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err // nil: pinned now
		}
		var pinned string
		if err := o.queryRow(qFingerprint, id).Scan(&pinned); err != nil {
			return notFound(err)
		}
		if pinned != fingerprint {
			return fmt.Errorf("a different fingerprint is pinned: %w", store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pinning fingerprint of cluster %q: %w", id, err)
	}
	return nil
}

// RotateCredential implements [store.Store].
func (s *Store) RotateCredential(ctx context.Context, id string, hash []byte) error {
	if err := store.ValidateHash("agent credential hash", hash); err != nil {
		return fmt.Errorf("rotating credential of cluster %q: %w", id, err)
	}
	err := s.write(ctx, func(o op) error {
		if taken, err := o.exists(qCredentialTaken, hash, id); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("credential hash is already in use: %w", store.ErrConflict)
		}
		res, err := o.exec(qRotate, hash, id)
		return affected(res, err, store.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("rotating credential of cluster %q: %w", id, err)
	}
	return nil
}

// NextCredentialGeneration implements [store.Store].
func (s *Store) NextCredentialGeneration(ctx context.Context, id string, from int64, hash []byte, previousUntil time.Time) (store.Cluster, error) {
	if err := store.ValidateHash("agent credential hash", hash); err != nil {
		return store.Cluster{}, fmt.Errorf("rotating credential of cluster %q: %w", id, err)
	}
	if from < 0 {
		return store.Cluster{}, fmt.Errorf("rotating credential of cluster %q: %w: generation %d is negative", id, store.ErrInvalid, from)
	}
	now := s.cfg.Now()
	var c store.Cluster
	err := s.write(ctx, func(o op) error {
		if taken, err := o.exists(qCredentialTaken, hash, id); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("credential hash is already in use: %w", store.ErrConflict)
		}
		res, err := o.exec(qNextGeneration, hash, dbTime(now), dbTime(previousUntil), id, from)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if exists, err := o.exists(qClusterExists, id); err != nil {
				return err
			} else if !exists {
				return store.ErrNotFound
			}
			return fmt.Errorf("the credential is no longer at generation %d: %w", from, store.ErrConflict)
		}
		c, err = scanCluster(o.queryRow(qClusterByID, id))
		return err
	})
	if err != nil {
		return store.Cluster{}, fmt.Errorf("rotating credential of cluster %q: %w", id, err)
	}
	return c, nil
}

// ConfirmCredential implements [store.Store].
func (s *Store) ConfirmCredential(ctx context.Context, id string, gen int64) error {
	err := s.write(ctx, func(o op) error {
		if _, err := o.exec(qConfirmCredential, gen, id, gen, gen); err != nil {
			return err
		}
		if exists, err := o.exists(qClusterExists, id); err != nil {
			return err
		} else if !exists {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("confirming credential of cluster %q: %w", id, err)
	}
	return nil
}

// SetCloudHealth implements [store.Store].
func (s *Store) SetCloudHealth(ctx context.Context, id, health string) error {
	if err := store.ValidateCloudHealth(health); err != nil {
		return fmt.Errorf("setting cloud health of cluster %q: %w", id, err)
	}
	res, err := s.w.do(ctx).exec(qCloudHealth, health, id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("setting cloud health of cluster %q: %w", id, err)
	}
	return nil
}
