package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/pressly/goose/v3"
)

// migrations holds the schema, one goose SQL file per version. Versions
// only ever move forward: a released file is never edited, a change is a
// new file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrate applies pending migrations on the writer connection. Each runs in
// its own transaction and is recorded in goose_db_version.
func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	s.goose, err = goose.NewProvider(goose.DialectSQLite3, s.w.db, fsys,
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return fmt.Errorf("loading migrations: %w", err)
	}
	results, err := s.goose.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	for _, r := range results {
		s.cfg.Logger.Info("store migration applied", "version", r.Source.Version, "file", path.Base(r.Source.Path), "duration", r.Duration)
	}
	current, target, err := s.goose.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if current > target {
		return fmt.Errorf("database schema version %d is newer than this binary supports (%d); use a newer eco-hub", current, target)
	}
	return nil
}

// SchemaVersion returns the schema version recorded in the database: the
// number of the last applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	v, err := s.goose.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}
