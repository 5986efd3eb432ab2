package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/eco-project/eco/store"
)

// Cloud accounts and links (migration 00008). Their queries are few and
// rare, so they are not prepared.
const (
	qInsertCloudAccount = `INSERT INTO cloud_accounts (id, name, provider, scopes, sealed, created_at) VALUES (?, ?, ?, ?, ?, ?)`
	qCloudAccountName   = `SELECT 1 FROM cloud_accounts WHERE name = ?`
	cloudAccountColumns = `id, name, provider, scopes, sealed, created_at`
	qCloudAccount       = `SELECT ` + cloudAccountColumns + ` FROM cloud_accounts WHERE id = ?`
	qCloudAccounts      = `SELECT ` + cloudAccountColumns + ` FROM cloud_accounts ORDER BY created_at, id`
	qResealCloudAccount = `UPDATE cloud_accounts SET sealed = ? WHERE id = ?`
	qCloudAccountInUse  = `SELECT 1 FROM cloud_links WHERE account_id = ? LIMIT 1`
	qDeleteCloudAccount = `DELETE FROM cloud_accounts WHERE id = ?`
	qCloudAccountExists = `SELECT 1 FROM cloud_accounts WHERE id = ?`
	qCloudRefTaken      = `SELECT 1 FROM cloud_links WHERE cloud_ref = ?`
	qInsertCloudLink    = `INSERT INTO cloud_links (cluster_id, account_id, scope, cloud_ref, version) VALUES (?, ?, ?, ?, ?)`
	cloudLinkColumns    = `cluster_id, account_id, scope, cloud_ref, version`
	qCloudLinks         = `SELECT ` + cloudLinkColumns + ` FROM cloud_links ORDER BY account_id, scope, cloud_ref`
	qAccountCloudLinks  = `SELECT ` + cloudLinkColumns + ` FROM cloud_links WHERE account_id = ? ORDER BY account_id, scope, cloud_ref`
	qCloudLinkByRef     = `SELECT ` + cloudLinkColumns + ` FROM cloud_links WHERE cloud_ref = ?`
)

func scanCloudAccount(row interface{ Scan(...any) error }) (store.CloudAccount, error) {
	var a store.CloudAccount
	var scopes string
	if err := row.Scan(&a.ID, &a.Name, &a.Provider, &scopes, &a.Sealed, scanTime{&a.CreatedAt}); err != nil {
		return a, err
	}
	if err := json.Unmarshal([]byte(scopes), &a.Scopes); err != nil {
		return a, fmt.Errorf("account %q: scopes: %w", a.ID, err)
	}
	return a, nil
}

// CreateCloudAccount implements [store.Store].
func (s *Store) CreateCloudAccount(ctx context.Context, na store.NewCloudAccount) (store.CloudAccount, error) {
	if err := na.Validate(); err != nil {
		return store.CloudAccount{}, fmt.Errorf("creating cloud account: %w", err)
	}
	scopes, err := json.Marshal(na.Scopes)
	if err != nil {
		return store.CloudAccount{}, fmt.Errorf("creating cloud account: %w", err)
	}
	a := store.CloudAccount{Name: na.Name, Provider: na.Provider, Scopes: slices.Clone(na.Scopes),
		Sealed: slices.Clone(na.Sealed), CreatedAt: s.cfg.Now()}
	err = s.write(ctx, func(o op) error {
		for range 3 {
			a.ID = store.NewCloudAccountID()
			_, err := o.exec(qInsertCloudAccount, a.ID, a.Name, string(a.Provider), string(scopes), a.Sealed, dbTime(a.CreatedAt))
			if !isUniqueViolation(err) {
				return err
			}
			if taken, err := o.exists(qCloudAccountName, a.Name); err != nil {
				return err
			} else if taken {
				return fmt.Errorf("name is already taken: %w", store.ErrConflict)
			}
		}
		return fmt.Errorf("no free account ID after 3 attempts: %w", store.ErrConflict)
	})
	if err != nil {
		return store.CloudAccount{}, fmt.Errorf("creating cloud account %q: %w", na.Name, err)
	}
	return a, nil
}

// GetCloudAccount implements [store.Store].
func (s *Store) GetCloudAccount(ctx context.Context, id string) (store.CloudAccount, error) {
	a, err := scanCloudAccount(s.r.do(ctx).queryRow(qCloudAccount, id))
	if err != nil {
		return store.CloudAccount{}, fmt.Errorf("getting cloud account %q: %w", id, notFound(err))
	}
	return a, nil
}

// ListCloudAccounts implements [store.Store].
func (s *Store) ListCloudAccounts(ctx context.Context) ([]store.CloudAccount, error) {
	rows, err := s.r.do(ctx).query(qCloudAccounts)
	if err != nil {
		return nil, fmt.Errorf("listing cloud accounts: %w", err)
	}
	defer rows.Close()
	as := []store.CloudAccount{}
	for rows.Next() {
		a, err := scanCloudAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("listing cloud accounts: %w", err)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing cloud accounts: %w", err)
	}
	return as, nil
}

// ResealCloudAccount implements [store.Store].
func (s *Store) ResealCloudAccount(ctx context.Context, id string, sealed []byte) error {
	if err := store.ValidateSealed(sealed); err != nil {
		return fmt.Errorf("resealing cloud account %q: %w", id, err)
	}
	res, err := s.w.do(ctx).exec(qResealCloudAccount, sealed, id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("resealing cloud account %q: %w", id, err)
	}
	return nil
}

// DeleteCloudAccount implements [store.Store].
func (s *Store) DeleteCloudAccount(ctx context.Context, id string) error {
	err := s.write(ctx, func(o op) error {
		if used, err := o.exists(qCloudAccountInUse, id); err != nil {
			return err
		} else if used {
			return fmt.Errorf("clusters imported from it are still on the hub; delete them first: %w", store.ErrConflict)
		}
		res, err := o.exec(qDeleteCloudAccount, id)
		return affected(res, err, store.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("deleting cloud account %q: %w", id, err)
	}
	return nil
}

// LinkCloudCluster implements [store.Store].
func (s *Store) LinkCloudCluster(ctx context.Context, l store.CloudLink) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("linking cluster %q to its cloud: %w", l.ClusterID, err)
	}
	err := s.write(ctx, func(o op) error {
		if ok, err := o.exists(qClusterExists, l.ClusterID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("cluster %q: %w", l.ClusterID, store.ErrNotFound)
		}
		if ok, err := o.exists(qCloudAccountExists, l.AccountID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("cloud account %q: %w", l.AccountID, store.ErrNotFound)
		}
		if taken, err := o.exists(qCloudRefTaken, l.CloudRef); err != nil {
			return err
		} else if taken {
			return fmt.Errorf("%s is already imported: %w", l.CloudRef, store.ErrConflict)
		}
		_, err := o.exec(qInsertCloudLink, l.ClusterID, l.AccountID, l.Scope, l.CloudRef, l.Version)
		if isUniqueViolation(err) {
			return fmt.Errorf("the cluster is already linked to a cloud: %w", store.ErrConflict)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("linking cluster %q to its cloud: %w", l.ClusterID, err)
	}
	return nil
}

// CloudLinks implements [store.Store].
func (s *Store) CloudLinks(ctx context.Context, accountID string) ([]store.CloudLink, error) {
	q, args := qCloudLinks, []any(nil)
	if accountID != "" {
		q, args = qAccountCloudLinks, []any{accountID}
	}
	rows, err := s.r.do(ctx).query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing cloud links: %w", err)
	}
	defer rows.Close()
	ls := []store.CloudLink{}
	for rows.Next() {
		var l store.CloudLink
		if err := rows.Scan(&l.ClusterID, &l.AccountID, &l.Scope, &l.CloudRef, &l.Version); err != nil {
			return nil, fmt.Errorf("listing cloud links: %w", err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing cloud links: %w", err)
	}
	return ls, nil
}

// CloudLinkByRef implements [store.Store].
func (s *Store) CloudLinkByRef(ctx context.Context, ref string) (store.CloudLink, error) {
	var l store.CloudLink
	err := s.r.do(ctx).queryRow(qCloudLinkByRef, ref).Scan(&l.ClusterID, &l.AccountID, &l.Scope, &l.CloudRef, &l.Version)
	if err != nil {
		return l, fmt.Errorf("cloud link %q: %w", ref, notFound(err))
	}
	return l, nil
}
