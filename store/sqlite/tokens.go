package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/eco-project/eco/store"
)

const tokenColumns = `id, name, role, hash, created_at, last_used_at, revoked_at, expires_at, clusters, read_only, groups`

func scanToken(row interface{ Scan(...any) error }) (store.Token, error) {
	var (
		t        store.Token
		clusters sql.NullString
		groups   string
	)
	err := row.Scan(&t.ID, &t.Name, &t.Role, &t.Hash, scanTime{&t.CreatedAt}, scanTime{&t.LastUsedAt}, scanTime{&t.RevokedAt},
		scanTime{&t.ExpiresAt}, &clusters, &t.Scope.ReadOnly, &groups)
	if err != nil {
		return t, err
	}
	if clusters.Valid {
		if err := json.Unmarshal([]byte(clusters.String), &t.Scope.Clusters); err != nil {
			return t, fmt.Errorf("token %s: clusters: %w", t.ID, err)
		}
		if t.Scope.Clusters == nil {
			t.Scope.Clusters = []string{}
		}
	}
	if err := json.Unmarshal([]byte(groups), &t.Groups); err != nil {
		return t, fmt.Errorf("token %s: groups: %w", t.ID, err)
	}
	if t.Groups == nil {
		t.Groups = []string{}
	}
	return t, nil
}

// CreateToken implements [store.Store].
func (s *Store) CreateToken(ctx context.Context, nt store.NewToken) (store.Token, error) {
	if err := nt.Validate(); err != nil {
		return store.Token{}, fmt.Errorf("creating token: %w", err)
	}
	t := store.Token{
		Name: nt.Name, Role: nt.Role, Groups: slices.Clone(nt.Groups), Hash: slices.Clone(nt.Hash), CreatedAt: s.cfg.Now(),
		Scope: store.TokenScope{Clusters: slices.Clone(nt.Scope.Clusters), ReadOnly: nt.Scope.ReadOnly},
	}
	if !nt.ExpiresAt.IsZero() {
		t.ExpiresAt = store.Timestamp(nt.ExpiresAt)
	}
	if t.Groups == nil {
		t.Groups = []string{}
	}
	groups, _ := json.Marshal(t.Groups)
	var clusters any
	if t.Scope.Clusters != nil {
		b, _ := json.Marshal(t.Scope.Clusters)
		clusters = string(b)
	}
	err := func() error {
		o := s.w.do(ctx)
		for range 3 {
			t.ID = store.NewTokenID()
			_, err := o.exec(qInsertToken, t.ID, t.Name, string(t.Role), t.Hash, dbTime(t.CreatedAt),
				dbTime(t.ExpiresAt), clusters, t.Scope.ReadOnly, string(groups))
			if !isUniqueViolation(err) {
				return err
			}
			if taken, err := o.exists(qTokenTaken, t.Hash); err != nil {
				return err
			} else if taken {
				return fmt.Errorf("token hash is already in use: %w", store.ErrConflict)
			}
		}
		return fmt.Errorf("no free token ID after 3 attempts: %w", store.ErrConflict)
	}()
	if err != nil {
		return store.Token{}, fmt.Errorf("creating token for %q: %w", nt.Name, err)
	}
	return t, nil
}

// TokenByHash implements [store.Store].
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	if len(hash) == 0 {
		return store.Token{}, fmt.Errorf("finding token: %w", store.ErrNotFound)
	}
	t, err := scanToken(s.r.do(ctx).queryRow(qTokenByHash, hash, dbTime(s.cfg.Now())))
	if err != nil {
		return store.Token{}, fmt.Errorf("finding token: %w", notFound(err))
	}
	return t, nil
}

// ListTokens implements [store.Store].
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.r.do(ctx).query(qTokens)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	tokens := []store.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		tokens = append(tokens, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return tokens, nil
}

// RevokeToken implements [store.Store].
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	res, err := s.w.do(ctx).exec(qRevokeToken, dbTime(s.cfg.Now()), id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("revoking token %q: %w", id, err)
	}
	return nil
}

// TouchToken implements [store.Store].
func (s *Store) TouchToken(ctx context.Context, id string) error {
	res, err := s.w.do(ctx).exec(qTouchToken, dbTime(s.cfg.Now()), id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("touching token %q: %w", id, err)
	}
	return nil
}

// CountTokens implements [store.Store].
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := s.r.do(ctx).queryRow(qCountTokens, dbTime(s.cfg.Now())).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting tokens: %w", err)
	}
	return n, nil
}

// DeleteExpiredTokens implements [store.Store].
func (s *Store) DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.do(ctx).exec(qDeleteExpiredTokens, dbTime(store.Timestamp(before)))
	if err != nil {
		return 0, fmt.Errorf("deleting expired tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("deleting expired tokens: %w", err)
	}
	return int(n), nil
}
