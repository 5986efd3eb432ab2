package sqlite

import (
	"context"
	"fmt"

	"github.com/eco-project/eco/store"
)

const (
	qSetAddon = `INSERT INTO addon_settings (addon, cluster_id, enabled, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (addon, cluster_id) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at, updated_by = excluded.updated_by`
	qAddons      = `SELECT addon, cluster_id, enabled, updated_at, updated_by FROM addon_settings ORDER BY addon, cluster_id`
	qDeleteAddon = `DELETE FROM addon_settings WHERE addon = ? AND cluster_id = ?`

	qSetAddonVersion = `INSERT INTO addon_versions (addon, version, updated_at, updated_by) VALUES (?, ?, ?, ?)
		ON CONFLICT (addon) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`
	qAddonVersions = `SELECT addon, version, updated_at, updated_by FROM addon_versions ORDER BY addon`
)

// SetAddon implements [store.Store].
func (s *Store) SetAddon(ctx context.Context, a store.AddonSetting) (store.AddonSetting, error) {
	if a.Addon == "" {
		return store.AddonSetting{}, fmt.Errorf("setting an add-on: the add-on's name is required: %w", store.ErrInvalid)
	}
	a.UpdatedAt = s.cfg.Now()
	if _, err := s.w.do(ctx).exec(qSetAddon, a.Addon, a.ClusterID, a.Enabled, dbTime(a.UpdatedAt), a.UpdatedBy); err != nil {
		return store.AddonSetting{}, fmt.Errorf("setting add-on %q: %w", a.Addon, err)
	}
	return a, nil
}

// ListAddons implements [store.Store].
func (s *Store) ListAddons(ctx context.Context) ([]store.AddonSetting, error) {
	rows, err := s.r.do(ctx).query(qAddons)
	if err != nil {
		return nil, fmt.Errorf("listing add-ons: %w", err)
	}
	defer rows.Close()
	out := []store.AddonSetting{}
	for rows.Next() {
		var a store.AddonSetting
		if err := rows.Scan(&a.Addon, &a.ClusterID, &a.Enabled, scanTime{&a.UpdatedAt}, &a.UpdatedBy); err != nil {
			return nil, fmt.Errorf("listing add-ons: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteAddon implements [store.Store].
func (s *Store) DeleteAddon(ctx context.Context, addon, clusterID string) error {
	res, err := s.w.do(ctx).exec(qDeleteAddon, addon, clusterID)
	if err := affected(res, err, store.ErrNotFound); err != nil {
		return fmt.Errorf("deleting add-on setting %q/%q: %w", addon, clusterID, err)
	}
	return nil
}

// SetAddonVersion implements [store.Store].
func (s *Store) SetAddonVersion(ctx context.Context, v store.AddonVersion) (store.AddonVersion, error) {
	if err := v.Validate(); err != nil {
		return store.AddonVersion{}, fmt.Errorf("setting an add-on's version: %w", err)
	}
	v.UpdatedAt = s.cfg.Now()
	if _, err := s.w.do(ctx).exec(qSetAddonVersion, v.Addon, v.Version, dbTime(v.UpdatedAt), v.UpdatedBy); err != nil {
		return store.AddonVersion{}, fmt.Errorf("setting the version of add-on %q: %w", v.Addon, err)
	}
	return v, nil
}

// AddonVersions implements [store.Store].
func (s *Store) AddonVersions(ctx context.Context) ([]store.AddonVersion, error) {
	rows, err := s.r.do(ctx).query(qAddonVersions)
	if err != nil {
		return nil, fmt.Errorf("listing add-on versions: %w", err)
	}
	defer rows.Close()
	out := []store.AddonVersion{}
	for rows.Next() {
		var v store.AddonVersion
		if err := rows.Scan(&v.Addon, &v.Version, scanTime{&v.UpdatedAt}, &v.UpdatedBy); err != nil {
			return nil, fmt.Errorf("listing add-on versions: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
