package sqlite

import (
	"context"
	"fmt"
	"slices"

	"github.com/eco-project/eco/store"
)

// ClusterIdentity implements [store.Store].
func (s *Store) ClusterIdentity(ctx context.Context, id string) (store.Identity, error) {
	var ident store.Identity
	var state string
	err := s.r.do(ctx).queryRow(qIdentity, id).Scan(&ident.OIDCIssuer, &ident.RequireApproval, &state,
		&ident.Issuer, &ident.JWKS, scanTime{&ident.PinnedAt}, scanTime{&ident.KeysUpdatedAt})
	if err != nil {
		return store.Identity{}, fmt.Errorf("reading identity of cluster %q: %w", id, notFound(err))
	}
	ident.State = store.IdentityState(state)
	return ident, nil
}

// SetIdentityConfig implements [store.Store].
func (s *Store) SetIdentityConfig(ctx context.Context, id string, cfg store.IdentityConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuring identity of cluster %q: %w", id, err)
	}
	res, err := s.w.do(ctx).exec(qSetIdentityConfig, cfg.OIDCIssuer, cfg.RequireApproval, id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("configuring identity of cluster %q: %w", id, err)
	}
	return nil
}

// PinIdentity implements [store.Store].
func (s *Store) PinIdentity(ctx context.Context, id, issuer string, jwks []byte, awaitingApproval bool) error {
	if err := store.ValidatePin(issuer, jwks); err != nil {
		return fmt.Errorf("pinning identity of cluster %q: %w", id, err)
	}
	state := store.IdentityPinned
	if awaitingApproval {
		state = store.IdentityAwaitingApproval
	}
	now := dbTime(s.cfg.Now())
	err := s.write(ctx, func(o op) error {
		res, err := o.exec(qPinIdentity, string(state), issuer, slices.Clone(jwks), now, now, id)
		return s.casResult(o, res, err, id, "an identity is pinned already")
	})
	if err != nil {
		return fmt.Errorf("pinning identity of cluster %q: %w", id, err)
	}
	return nil
}

// ApproveIdentity implements [store.Store].
func (s *Store) ApproveIdentity(ctx context.Context, id string) error {
	err := s.write(ctx, func(o op) error {
		res, err := o.exec(qApproveIdentity, id)
		return s.casResult(o, res, err, id, "no identity awaits approval")
	})
	if err != nil {
		return fmt.Errorf("approving identity of cluster %q: %w", id, err)
	}
	return nil
}

// UpdateIdentityKeys implements [store.Store].
func (s *Store) UpdateIdentityKeys(ctx context.Context, id, issuer string, jwks []byte) error {
	if err := store.ValidatePin(issuer, jwks); err != nil {
		return fmt.Errorf("updating identity keys of cluster %q: %w", id, err)
	}
	now := dbTime(s.cfg.Now())
	err := s.write(ctx, func(o op) error {
		res, err := o.exec(qUpdateKeys, slices.Clone(jwks), now, id, issuer)
		return s.casResult(o, res, err, id, "the cluster's identity is not pinned with this issuer")
	})
	if err != nil {
		return fmt.Errorf("updating identity keys of cluster %q: %w", id, err)
	}
	return nil
}

// ResetIdentity implements [store.Store].
func (s *Store) ResetIdentity(ctx context.Context, id string) error {
	res, err := s.w.do(ctx).exec(qResetIdentity, id)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("resetting identity of cluster %q: %w", id, err)
	}
	return nil
}

// NoteStatus implements [store.Store].
func (s *Store) NoteStatus(ctx context.Context, id, note string) error {
	now := dbTime(s.cfg.Now())
	note = store.TruncateReason(note)
	err := s.write(ctx, func(o op) error {
		res, err := o.exec(qNoteTransition, note, now, id)
		if err := affected(res, err, store.ErrNotFound); err != nil {
			return err
		}
		if s.cfg.HistoryLimit < 0 {
			return nil
		}
		_, err = o.exec(qPruneHistory, id, id, s.cfg.HistoryLimit)
		return err
	})
	if err != nil {
		return fmt.Errorf("noting status of cluster %q: %w", id, err)
	}
	return nil
}

// casResult turns a compare-and-set UPDATE that matched no row into
// ErrNotFound if the cluster does not exist, else ErrConflict with why.
func (s *Store) casResult(o op, res interface{ RowsAffected() (int64, error) }, err error, id, why string) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	if ok, err := o.exists(qClusterExists, id); err != nil {
		return err
	} else if !ok {
		return store.ErrNotFound
	}
	return fmt.Errorf("%s: %w", why, store.ErrConflict)
}
