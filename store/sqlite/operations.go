package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/eco-project/eco/store"
)

const operationColumns = `id, cluster_id, namespace, release, kind, user_name, state, message, log,
	revision, created_at, updated_at, finished_at`

const (
	qInsertOperation = `INSERT INTO operations (` + operationColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qOperationByID   = `SELECT ` + operationColumns + ` FROM operations WHERE id = ?`
	qOperationHolder = `SELECT id FROM operations WHERE cluster_id = ? AND namespace = ? AND release = ?
		AND state IN ('running', 'recovering')`
	// qPruneOperations keeps a cluster's newest OperationLimit finished
	// operations.
	qPruneOperations = `DELETE FROM operations WHERE id IN (
		SELECT id FROM operations WHERE cluster_id = ? AND state NOT IN ('running', 'recovering')
		ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)`
	qUpdateOperation = `UPDATE operations SET state = ?, message = ?, log = ?, revision = ?,
		updated_at = ?, finished_at = ? WHERE id = ?`
	qListOperations = `SELECT ` + operationColumns + ` FROM operations
		WHERE (?1 = '' OR cluster_id = ?1)
		AND (?2 = '' OR namespace = ?2) AND (?3 = '' OR release = ?3)
		AND (?4 = 0 OR state IN ('running', 'recovering'))
		ORDER BY created_at DESC, id DESC LIMIT ?5`
)

func scanOperation(row interface{ Scan(...any) error }) (store.Operation, error) {
	var o store.Operation
	err := row.Scan(&o.ID, &o.ClusterID, &o.Namespace, &o.Release, &o.Kind, &o.User, &o.State,
		&o.Message, &o.Log, &o.Revision, scanTime{&o.CreatedAt}, scanTime{&o.UpdatedAt}, scanTime{&o.FinishedAt})
	return o, err
}

func boundLog(s string) string {
	if len(s) > store.MaxOperationLog {
		return s[len(s)-store.MaxOperationLog:]
	}
	return s
}

// CreateOperation implements [store.Store].
func (s *Store) CreateOperation(ctx context.Context, o store.Operation) (store.Operation, error) {
	if err := o.Validate(); err != nil {
		return store.Operation{}, fmt.Errorf("creating operation: %w", err)
	}
	if o.State == "" {
		o.State = store.OperationRunning
	}
	o.Log = boundLog(o.Log)
	o.CreatedAt = s.cfg.Now()
	o.UpdatedAt = o.CreatedAt
	o.FinishedAt = time.Time{}
	if o.State.Finished() {
		o.FinishedAt = o.CreatedAt
	}
	err := s.write(ctx, func(w op) error {
		for range 3 {
			o.ID = store.NewOperationID()
			_, err := w.exec(qInsertOperation, o.ID, o.ClusterID, o.Namespace, o.Release, o.Kind, o.User,
				string(o.State), o.Message, o.Log, o.Revision, dbTime(o.CreatedAt), dbTime(o.UpdatedAt), dbTime(o.FinishedAt))
			if err == nil && s.cfg.OperationLimit > 0 {
				_, err = w.exec(qPruneOperations, o.ClusterID, s.cfg.OperationLimit)
			}
			if !isUniqueViolation(err) {
				return err
			}
			var holder string
			switch err := w.queryRow(qOperationHolder, o.ClusterID, o.Namespace, o.Release).Scan(&holder); {
			case err == nil:
				return &store.BusyError{Holder: holder, Namespace: o.Namespace, Release: o.Release}
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		return fmt.Errorf("no free operation ID after 3 attempts: %w", store.ErrConflict)
	})
	if err != nil {
		return store.Operation{}, fmt.Errorf("creating %s operation on %s/%s: %w", o.Kind, o.Namespace, o.Release, err)
	}
	return o, nil
}

// UpdateOperation implements [store.Store].
func (s *Store) UpdateOperation(ctx context.Context, id string, u store.OperationUpdate) (store.Operation, error) {
	if u.State != "" && !u.State.Valid() {
		return store.Operation{}, fmt.Errorf("updating operation %q: state %q: %w", id, u.State, store.ErrInvalid)
	}
	var o store.Operation
	err := s.write(ctx, func(w op) error {
		var err error
		if o, err = scanOperation(w.queryRow(qOperationByID, id)); errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		if o.State.Finished() {
			return fmt.Errorf("operation is %s already: %w", o.State, store.ErrConflict)
		}
		if u.State != "" {
			o.State = u.State
		}
		if u.Message != "" {
			o.Message = u.Message
		}
		if u.Log != "" {
			o.Log = boundLog(u.Log)
		}
		if u.Revision != 0 {
			o.Revision = u.Revision
		}
		o.UpdatedAt = s.cfg.Now()
		if o.State.Finished() {
			o.FinishedAt = o.UpdatedAt
		}
		_, err = w.exec(qUpdateOperation, string(o.State), o.Message, o.Log, o.Revision, dbTime(o.UpdatedAt), dbTime(o.FinishedAt), id)
		return err
	})
	if err != nil {
		return store.Operation{}, fmt.Errorf("updating operation %q: %w", id, err)
	}
	return o, nil
}

// GetOperation implements [store.Store].
func (s *Store) GetOperation(ctx context.Context, id string) (store.Operation, error) {
	o, err := scanOperation(s.r.do(ctx).queryRow(qOperationByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Operation{}, fmt.Errorf("getting operation %q: %w", id, err)
	}
	return o, nil
}

// ListOperations implements [store.Store].
func (s *Store) ListOperations(ctx context.Context, q store.OperationQuery) ([]store.Operation, error) {
	if q.Limit < 0 || q.Limit > store.MaxPageSize {
		return nil, fmt.Errorf("listing operations: limit %d: must be 0 to %d: %w", q.Limit, store.MaxPageSize, store.ErrInvalid)
	}
	if q.Limit == 0 {
		q.Limit = store.DefaultPageSize
	}
	unfinished := 0
	if q.Unfinished {
		unfinished = 1
	}
	rows, err := s.r.do(ctx).query(qListOperations, q.ClusterID, q.Namespace, q.Release, unfinished, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("listing operations: %w", err)
	}
	defer rows.Close()
	out := []store.Operation{}
	for rows.Next() {
		o, err := scanOperation(rows)
		if err != nil {
			return nil, fmt.Errorf("listing operations: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
