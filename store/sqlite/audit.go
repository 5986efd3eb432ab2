package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/eco-project/eco/store"
)

const auditColumns = `seq, at, user_name, token_id, source, verb, cluster_id, api_group, resource,
	subresource, namespace, name, path, code, request_id, client_request_id, remote_addr`

// AppendAudit implements [store.Store].
func (s *Store) AppendAudit(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	for i := range events {
		events[i] = events[i].Clamp()
		if events[i].Source == "" || events[i].Verb == "" {
			return fmt.Errorf("appending audit events: event %d: %w: source and verb are required", i, store.ErrInvalid)
		}
		if events[i].At.IsZero() {
			events[i].At = s.cfg.Now()
		} else {
			events[i].At = store.Timestamp(events[i].At)
		}
	}
	err := s.write(ctx, func(o op) error {
		for i := range events {
			e := &events[i]
			res, err := o.exec(qInsertAudit, dbTime(e.At), e.User, e.TokenID, e.Source, e.Verb, e.ClusterID,
				e.APIGroup, e.Resource, e.Subresource, e.Namespace, e.Name, e.Path, e.Code, e.RequestID,
				e.ClientRequestID, e.RemoteAddr)
			if err != nil {
				return err
			}
			if e.Seq, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		if s.cfg.AuditLimit > 0 {
			_, err := o.exec(qPruneAudit, events[len(events)-1].Seq-int64(s.cfg.AuditLimit))
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("appending %d audit events: %w", len(events), err)
	}
	return nil
}

// ListAudit implements [store.Store].
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("listing audit events: %w", err)
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultPageSize
	}
	var where []string
	var args []any
	if q.ClusterID != "" {
		where, args = append(where, "cluster_id = ?"), append(args, q.ClusterID)
	}
	if q.User != "" {
		where, args = append(where, "user_name = ?"), append(args, q.User)
	}
	if q.Before > 0 {
		where, args = append(where, "seq < ?"), append(args, q.Before)
	}
	query := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.r.do(ctx).query(query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit events: %w", err)
	}
	defer rows.Close()
	events := []store.AuditEvent{}
	for rows.Next() {
		var e store.AuditEvent
		if err := rows.Scan(&e.Seq, scanTime{&e.At}, &e.User, &e.TokenID, &e.Source, &e.Verb, &e.ClusterID,
			&e.APIGroup, &e.Resource, &e.Subresource, &e.Namespace, &e.Name, &e.Path, &e.Code,
			&e.RequestID, &e.ClientRequestID, &e.RemoteAddr); err != nil {
			return nil, fmt.Errorf("listing audit events: %w", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit events: %w", err)
	}
	return events, nil
}
