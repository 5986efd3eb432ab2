package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/eco-project/eco/store"
)

const grantColumns = `id, subject_kind, subject, cluster_id, role, created_at`

func scanGrant(row interface{ Scan(...any) error }) (store.Grant, error) {
	var g store.Grant
	err := row.Scan(&g.ID, &g.Kind, &g.Subject, &g.ClusterID, &g.Role, scanTime{&g.CreatedAt})
	return g, err
}

// CreateGrant implements [store.Store].
func (s *Store) CreateGrant(ctx context.Context, ng store.NewGrant) (store.Grant, error) {
	if err := ng.Validate(); err != nil {
		return store.Grant{}, fmt.Errorf("creating grant: %w", err)
	}
	g := store.Grant{Kind: ng.Kind, Subject: ng.Subject, ClusterID: ng.ClusterID, Role: ng.Role, CreatedAt: s.cfg.Now()}
	err := s.write(ctx, func(o op) error {
		if g.ClusterID != "" {
			if ok, err := o.exists(qClusterExists, g.ClusterID); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("cluster %q: %w", g.ClusterID, store.ErrNotFound)
			}
		}
		for range 3 {
			g.ID = store.NewGrantID()
			_, err := o.exec(qInsertGrant, g.ID, string(g.Kind), g.Subject, g.ClusterID, string(g.Role), dbTime(g.CreatedAt))
			if !isUniqueViolation(err) {
				return err
			}
			if taken, err := o.exists(qGrantTaken, string(g.Kind), g.Subject, g.ClusterID); err != nil {
				return err
			} else if taken {
				return fmt.Errorf("%s %q already has a grant there; delete it first: %w", g.Kind, g.Subject, store.ErrConflict)
			}
		}
		return fmt.Errorf("no free grant ID after 3 attempts: %w", store.ErrConflict)
	})
	if err != nil {
		return store.Grant{}, fmt.Errorf("creating grant for %s %q: %w", ng.Kind, ng.Subject, err)
	}
	return g, nil
}

// ListGrants implements [store.Store].
func (s *Store) ListGrants(ctx context.Context, clusterID string) ([]store.Grant, error) {
	q, args := qGrants, []any(nil)
	if clusterID != "" {
		q, args = qClusterGrants, []any{clusterID}
	}
	gs, err := s.grants(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	return gs, nil
}

// GrantsFor implements [store.Store].
func (s *Store) GrantsFor(ctx context.Context, user string, groups []string) ([]store.Grant, error) {
	if groups == nil {
		groups = []string{}
	}
	gj, err := json.Marshal(groups)
	if err != nil {
		return nil, fmt.Errorf("listing grants of %q: %w", user, err)
	}
	gs, err := s.grants(ctx, qGrantsFor, user, string(gj))
	if err != nil {
		return nil, fmt.Errorf("listing grants of %q: %w", user, err)
	}
	return gs, nil
}

func (s *Store) grants(ctx context.Context, q string, args ...any) ([]store.Grant, error) {
	rows, err := s.r.do(ctx).query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	gs := []store.Grant{}
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, rows.Err()
}

// DeleteGrant implements [store.Store].
func (s *Store) DeleteGrant(ctx context.Context, id string) error {
	res, err := s.w.do(ctx).exec(qDeleteGrant, id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("deleting grant %q: %w", id, err)
	}
	return nil
}
