package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eco-project/eco/store"
)

const (
	repoColumns     = `name, kind, url, username, secret, ca_pem, charts, created_at, etag, refreshed_at, refresh_error`
	qInsertRepo     = `INSERT INTO chart_repositories (name, kind, url, username, secret, ca_pem, charts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	qRepos          = `SELECT ` + repoColumns + `, NULL FROM chart_repositories ORDER BY name`
	qReposWithIndex = `SELECT ` + repoColumns + `, idx FROM chart_repositories ORDER BY name`
	qRepoByName     = `SELECT ` + repoColumns + `, idx FROM chart_repositories WHERE name = ?`
	qRepoIndex      = `UPDATE chart_repositories SET etag = ?, idx = ?, refreshed_at = ?, refresh_error = ? WHERE name = ?`
	qRepoIndexKeep  = `UPDATE chart_repositories SET refreshed_at = ?, refresh_error = ? WHERE name = ?`
	qDeleteRepo     = `DELETE FROM chart_repositories WHERE name = ?`
)

func scanRepo(row interface{ Scan(...any) error }) (store.Repository, error) {
	var r store.Repository
	var charts string
	err := row.Scan(&r.Name, &r.Kind, &r.URL, &r.Username, &r.SealedSecret, &r.CAPEM, &charts,
		scanTime{&r.CreatedAt}, &r.ETag, scanTime{&r.RefreshedAt}, &r.RefreshError, &r.Index)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(charts), &r.Charts); err != nil {
		return r, fmt.Errorf("repository %q charts: %w", r.Name, err)
	}
	return r, nil
}

// CreateRepository implements [store.Store].
func (s *Store) CreateRepository(ctx context.Context, r store.Repository) (store.Repository, error) {
	if err := r.Validate(); err != nil {
		return store.Repository{}, fmt.Errorf("creating repository: %w", err)
	}
	if r.Charts == nil {
		r.Charts = []string{}
	}
	charts, err := json.Marshal(r.Charts)
	if err != nil {
		return store.Repository{}, err
	}
	r.CreatedAt = s.cfg.Now()
	r.ETag, r.Index, r.RefreshedAt, r.RefreshError = "", nil, time.Time{}, ""
	_, err = s.w.do(ctx).exec(qInsertRepo, r.Name, r.Kind, r.URL, r.Username, r.SealedSecret, r.CAPEM, string(charts), dbTime(r.CreatedAt))
	if isUniqueViolation(err) {
		err = fmt.Errorf("a repository named %q exists: %w", r.Name, store.ErrConflict)
	}
	if err != nil {
		return store.Repository{}, fmt.Errorf("creating repository %q: %w", r.Name, err)
	}
	return r, nil
}

// ListRepositories implements [store.Store].
func (s *Store) ListRepositories(ctx context.Context, withIndex bool) ([]store.Repository, error) {
	q := qRepos
	if withIndex {
		q = qReposWithIndex
	}
	rows, err := s.r.do(ctx).query(q)
	if err != nil {
		return nil, fmt.Errorf("listing repositories: %w", err)
	}
	defer rows.Close()
	out := []store.Repository{}
	for rows.Next() {
		r, err := scanRepo(rows)
		if err != nil {
			return nil, fmt.Errorf("listing repositories: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// GetRepository implements [store.Store].
func (s *Store) GetRepository(ctx context.Context, name string) (store.Repository, error) {
	r, err := scanRepo(s.r.do(ctx).queryRow(qRepoByName, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Repository{}, fmt.Errorf("repository %q: %w", name, err)
	}
	return r, nil
}

// SetRepositoryIndex implements [store.Store].
func (s *Store) SetRepositoryIndex(ctx context.Context, name string, ix store.RepositoryIndex) error {
	at := ix.RefreshedAt
	if at.IsZero() {
		at = s.cfg.Now()
	}
	var res sql.Result
	var err error
	if ix.Index != nil {
		res, err = s.w.do(ctx).exec(qRepoIndex, ix.ETag, ix.Index, dbTime(at), ix.Error, name)
	} else {
		res, err = s.w.do(ctx).exec(qRepoIndexKeep, dbTime(at), ix.Error, name)
	}
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("recording the index of repository %q: %w", name, err)
	}
	return nil
}

// DeleteRepository implements [store.Store].
func (s *Store) DeleteRepository(ctx context.Context, name string) error {
	res, err := s.w.do(ctx).exec(qDeleteRepo, name)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("deleting repository %q: %w", name, err)
	}
	return nil
}
