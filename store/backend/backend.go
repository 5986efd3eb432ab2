// Package backend opens the [store.Store] a DSN names, so the hub needs one
// flag for its storage:
//
//	sqlite:///var/lib/eco/eco.db   SQLite file at an absolute path
//	sqlite://eco.db                SQLite file relative to the working directory
//	/var/lib/eco/eco.db, eco.db    the same, without the scheme
//	sqlite://:memory:, :memory:    private in-memory SQLite (tests)
//	postgres://…, postgresql://…   PostgreSQL: not supported yet
//
// It lives apart from package store because the backends import store for
// its types. Errors never repeat the DSN, which may hold a password.
package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
)

// Kind names a backend.
type Kind string

// The backends a DSN can select.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Open opens the store dsn names, applying schema migrations, with cfg. See
// the package documentation for the DSN forms. A PostgreSQL DSN fails with
// an error that wraps [errors.ErrUnsupported].
func Open(ctx context.Context, dsn string, cfg store.Config) (store.Store, error) {
	kind, target, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	switch kind {
	case SQLite:
		s, err := sqlite.Open(ctx, target, cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("opening %s store: %w", kind, errors.ErrUnsupported)
	}
}

// Parse returns the backend dsn selects and what to hand that backend: the
// file path for SQLite, the DSN itself for PostgreSQL.
func Parse(dsn string) (kind Kind, target string, err error) {
	if dsn == "" {
		return "", "", errors.New("store DSN is empty")
	}
	scheme, rest, ok := cutScheme(dsn)
	if !ok {
		if strings.Contains(dsn, "=") {
			// Most likely a libpq key=value string ("host=… password=…"):
			// do not create a file of that name.
			return "", "", errors.New("store DSN looks like a key=value connection string; use a postgres:// URL, or sqlite:// for a file path containing '='")
		}
		return SQLite, dsn, nil
	}
	switch scheme {
	case "sqlite", "sqlite3":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return "", "", errors.New("store DSN names no SQLite file")
		}
		return SQLite, path, nil
	case "postgres", "postgresql":
		return Postgres, dsn, nil
	}
	return "", "", fmt.Errorf("store DSN has unknown scheme %q; want sqlite:// or postgres://", scheme)
}

// cutScheme splits a URL scheme (two or more characters, so that a Windows
// drive letter is not one) off dsn.
func cutScheme(dsn string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(dsn, ':')
	if i < 2 {
		return "", "", false
	}
	for j, c := range dsn[:i] {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", "", false
		}
	}
	return strings.ToLower(dsn[:i]), dsn[i+1:], true
}
