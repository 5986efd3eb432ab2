package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// pool is a database/sql pool with a cache of prepared statements: parsing
// SQL is a good part of the cost of a small statement in modernc's SQLite,
// so each query is prepared once (per connection, which database/sql
// handles) and reused.
type pool struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt // by query text; guarded by mu
}

func newPool(db *sql.DB) *pool {
	return &pool{db: db, stmts: make(map[string]*sql.Stmt)}
}

// prepare makes sure queries are in the cache. It may need a connection,
// so it must not be called while the caller holds a transaction on p.
func (p *pool) prepare(ctx context.Context, queries ...string) error {
	for _, q := range queries {
		if p.cached(q) != nil {
			continue
		}
		st, err := p.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("preparing %q: %w", q, err)
		}
		p.mu.Lock()
		if p.stmts[q] == nil {
			p.stmts[q] = st
			st = nil
		}
		p.mu.Unlock()
		if st != nil { // lost a race to another goroutine
			st.Close()
		}
	}
	return nil
}

func (p *pool) cached(query string) *sql.Stmt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stmts[query]
}

func (p *pool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for q, st := range p.stmts {
		errs = append(errs, st.Close())
		delete(p.stmts, q)
	}
	return errors.Join(append(errs, p.db.Close())...)
}

// op runs the statements of one store operation: inside a transaction if
// tx is set, else each statement on its own. It uses cached prepared
// statements; a query missing from the cache still runs, unprepared.
type op struct {
	ctx context.Context
	p   *pool
	tx  *sql.Tx
}

// do runs fn as one operation on p, outside a transaction.
func (p *pool) do(ctx context.Context) op { return op{ctx: ctx, p: p} }

// inTx runs fn in a transaction on p and commits it if fn succeeds. On the
// writer pool the transaction begins IMMEDIATE, taking the write lock at
// once.
func (p *pool) inTx(ctx context.Context, fn func(op) error) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(op{ctx: ctx, p: p, tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (o op) stmt(query string) *sql.Stmt {
	st := o.p.cached(query)
	if st != nil && o.tx != nil {
		return o.tx.StmtContext(o.ctx, st)
	}
	return st
}

func (o op) exec(query string, args ...any) (sql.Result, error) {
	switch st := o.stmt(query); {
	case st != nil:
		return st.ExecContext(o.ctx, args...)
	case o.tx != nil:
		return o.tx.ExecContext(o.ctx, query, args...)
	default:
		return o.p.db.ExecContext(o.ctx, query, args...)
	}
}

func (o op) query(query string, args ...any) (*sql.Rows, error) {
	switch st := o.stmt(query); {
	case st != nil:
		return st.QueryContext(o.ctx, args...)
	case o.tx != nil:
		return o.tx.QueryContext(o.ctx, query, args...)
	default:
		return o.p.db.QueryContext(o.ctx, query, args...)
	}
}

func (o op) queryRow(query string, args ...any) *sql.Row {
	switch st := o.stmt(query); {
	case st != nil:
		return st.QueryRowContext(o.ctx, args...)
	case o.tx != nil:
		return o.tx.QueryRowContext(o.ctx, query, args...)
	default:
		return o.p.db.QueryRowContext(o.ctx, query, args...)
	}
}

// exists reports whether query returns a row.
func (o op) exists(query string, args ...any) (bool, error) {
	var one int
	switch err := o.queryRow(query, args...).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// affected turns an UPDATE or DELETE that matched no row into notFound.
func affected(res sql.Result, err error, notFound error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure.
func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// timeLayout is how times are stored: fixed width, so text order is time
// order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// dbTime formats t for storage; the zero time is NULL.
func dbTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeLayout)
}

// scanTime is a [sql.Scanner] into a time.Time; NULL scans as the zero time.
type scanTime struct{ t *time.Time }

func (s scanTime) Scan(src any) error {
	var text string
	switch v := src.(type) {
	case nil:
		*s.t = time.Time{}
		return nil
	case string:
		text = v
	case []byte:
		text = string(v)
	default:
		return fmt.Errorf("scanning time: unexpected %T", src)
	}
	t, err := time.Parse(timeLayout, text)
	if err != nil {
		return fmt.Errorf("scanning time: %w", err)
	}
	*s.t = t
	return nil
}
