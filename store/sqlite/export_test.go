package sqlite_test

import "database/sql"

// sqlDB opens path with the registered driver, bypassing the store.
func sqlDB(path string) (*sql.DB, error) { return sql.Open("sqlite", path) }
