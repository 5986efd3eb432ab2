// Package sqlite is the embedded SQLite backend of [store.Store]: the whole
// state in one database file, pure Go (modernc.org/sqlite, no cgo), schema
// migrated by goose from SQL embedded in the binary when the store opens.
//
// SQLite allows one writer at a time. The store therefore sends every write
// through a single connection, so concurrent writers queue in Go rather than
// fail with "database is locked", and reads through a small pool of
// read-only connections that WAL mode lets run alongside the writer. A busy
// timeout covers the remaining contention (checkpoints, another process).
// Commits are durable across a crash of the process; with synchronous=NORMAL
// the last transactions before a power loss may be lost, never corrupted.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/eco-project/eco/store"
)

// Memory is the path that opens a private in-memory database, gone on Close.
// Its store uses one connection for reads and writes. Meant for tests.
const Memory = ":memory:"

const (
	// busyTimeout is how long a statement waits for a lock held elsewhere
	// (a WAL checkpoint, another process) before failing.
	busyTimeout = 10 * time.Second
	// maxReaders is the size of the read-only connection pool.
	maxReaders = 4
)

// Store is a [store.Store] on one SQLite database.
type Store struct {
	cfg    store.Config
	path   string
	w      *pool // all writes; exactly one connection
	r      *pool // reads; read-only connections, or w itself for Memory
	goose  *goose.Provider
	closed sync.Once
	err    error // from Close, guarded by closed
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path, or a private
// in-memory one if path is [Memory], and applies any pending schema
// migrations. A new database file is created readable by its owner only.
// Open refuses a database whose schema is newer than this binary knows.
func Open(ctx context.Context, path string, cfg store.Config) (*Store, error) {
	start := time.Now()
	cfg = cfg.WithDefaults()
	s := &Store{cfg: cfg, path: path}
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening SQLite store %q: %w", path, err)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening SQLite store %q: %w", path, err)
	}
	cfg.Logger.Info("store opened", "backend", "sqlite", "path", path, "schema_version", v, "duration", time.Since(start))
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	path := s.path
	switch {
	case path == "":
		return errors.New("empty path")
	case strings.ContainsAny(path, "?#"), strings.HasPrefix(path, "file:"):
		return errors.New("path must be a plain file path, without URI syntax or parameters")
	}
	common := "?_busy_timeout=" + strconv.FormatInt(busyTimeout.Milliseconds(), 10) + "&_foreign_keys=1"
	writer := path + common + "&_txlock=immediate"
	if path != Memory {
		// Create the file ourselves so it is private to its owner; SQLite
		// gives the -wal and -shm files the same mode.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("creating database file: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("creating database file: %w", err)
		}
		writer += "&_journal_mode=WAL&_synchronous=NORMAL"
	}
	db, err := sql.Open("sqlite", writer)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s.w = newPool(db)
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	if path == Memory {
		s.r = s.w
	} else {
		if db, err = sql.Open("sqlite", path+common+"&_query_only=1"); err != nil {
			return err
		}
		db.SetMaxOpenConns(maxReaders)
		db.SetMaxIdleConns(maxReaders)
		s.r = newPool(db)
	}
	if err := s.w.prepare(ctx, writeQueries()...); err != nil {
		return err
	}
	return s.r.prepare(ctx, readQueries()...)
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closed.Do(func() {
		if s.r != nil && s.r != s.w {
			s.err = s.r.close()
		}
		if s.w != nil {
			// Let SQLite refresh its query planner statistics if useful;
			// cheap, and harmless when it fails.
			_, _ = s.w.db.ExecContext(context.Background(), "PRAGMA optimize")
			s.err = errors.Join(s.err, s.w.close())
		}
	})
	return s.err
}

// write runs fn in a write transaction (BEGIN IMMEDIATE on the single writer
// connection) and commits it if fn succeeds.
func (s *Store) write(ctx context.Context, fn func(op) error) error {
	return s.w.inTx(ctx, fn)
}

// read runs fn in a read transaction, so its queries see one snapshot.
func (s *Store) read(ctx context.Context, fn func(op) error) error {
	return s.r.inTx(ctx, fn)
}
