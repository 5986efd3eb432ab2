package sqlite

import (
	"context"
	"fmt"

	"github.com/eco-project/eco/store"
)

// UpdateStatus implements [store.Store].
func (s *Store) UpdateStatus(ctx context.Context, id string, u store.StatusUpdate) (store.Status, error) {
	if err := u.Validate(); err != nil {
		return store.Status{}, fmt.Errorf("updating status of cluster %q: %w", id, err)
	}
	now := s.cfg.Now()
	var next store.Status
	err := s.write(ctx, func(o op) error {
		var cur store.Status
		err := o.queryRow(qStatus, id).Scan(&cur.State, &cur.Reason, scanTime{&cur.Since},
			scanTime{&cur.LastHeartbeat}, &cur.RTT, &cur.AgentVersion, &cur.KubernetesVersion)
		if err != nil {
			return notFound(err)
		}
		var changed bool
		next, changed = cur.Apply(u, now)
		if _, err := o.exec(qUpdateStatus, string(next.State), next.Reason, dbTime(next.Since),
			dbTime(next.LastHeartbeat), int64(next.RTT), next.AgentVersion, next.KubernetesVersion, id); err != nil {
			return err
		}
		if !changed {
			return nil
		}
		if _, err := o.exec(qInsertTransition, id, string(cur.State), string(next.State), next.Reason, dbTime(now)); err != nil {
			return err
		}
		if s.cfg.HistoryLimit < 0 {
			return nil
		}
		_, err = o.exec(qPruneHistory, id, id, s.cfg.HistoryLimit)
		return err
	})
	if err != nil {
		return store.Status{}, fmt.Errorf("updating status of cluster %q: %w", id, err)
	}
	return next, nil
}

// StatusHistory implements [store.Store].
func (s *Store) StatusHistory(ctx context.Context, id string, limit int) ([]store.Transition, error) {
	limit, err := store.PageSize(limit)
	if err != nil {
		return nil, fmt.Errorf("reading status history of cluster %q: %w", id, err)
	}
	history := []store.Transition{}
	err = s.read(ctx, func(o op) error {
		if ok, err := o.exists(qClusterExists, id); err != nil {
			return err
		} else if !ok {
			return store.ErrNotFound
		}
		rows, err := o.query(qHistory, id, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t store.Transition
			if err := rows.Scan(&t.ClusterID, &t.From, &t.To, &t.Reason, scanTime{&t.At}); err != nil {
				return err
			}
			history = append(history, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("reading status history of cluster %q: %w", id, err)
	}
	return history, nil
}
