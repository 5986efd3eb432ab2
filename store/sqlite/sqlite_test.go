package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
	"github.com/eco-project/eco/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openFile opens a store on a new database file.
func openFile(tb testing.TB, cfg store.Config) store.Store {
	tb.Helper()
	return open(tb, filepath.Join(tb.TempDir(), "eco.db"), cfg)
}

// openMemory opens a store on a private in-memory database.
func openMemory(tb testing.TB, cfg store.Config) store.Store {
	tb.Helper()
	return open(tb, sqlite.Memory, cfg)
}

func open(tb testing.TB, path string, cfg store.Config) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(tb.Context(), path, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, openFile)
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, openMemory)
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, openFile)
}

// BenchmarkOpen measures opening a new database file, schema migration
// included, and reopening an existing one.
func BenchmarkOpen(b *testing.B) {
	b.Run("new", func(b *testing.B) {
		dir := b.TempDir()
		i := 0
		for b.Loop() {
			i++
			s, err := sqlite.Open(b.Context(), filepath.Join(dir, strings.Repeat("x", i%7)+time.Now().Format("150405.000000000")+".db"), store.Config{})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("existing", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "eco.db")
		s, err := sqlite.Open(b.Context(), path, store.Config{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		for b.Loop() {
			s, err := sqlite.Open(b.Context(), path, store.Config{})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}

func TestSchemaVersion(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "eco.db")
	s := open(t, path, store.Config{})
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != 2 {
		t.Errorf("schema version %d, want 2", v)
	}
	c, err := s.CreateCluster(ctx, store.NewCluster{Name: "kept", Provider: store.ProviderGeneric, AgentCredentialHash: storetest.Hash("kept")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening applies nothing and keeps the data.
	for range 2 {
		s := open(t, path, store.Config{})
		if v2, err := s.SchemaVersion(ctx); err != nil || v2 != v {
			t.Errorf("reopened schema version %d, %v; want %d", v2, err, v)
		}
		if _, err := s.GetCluster(ctx, c.ID); err != nil {
			t.Errorf("cluster lost on reopen: %v", err)
		}
		s.Close()
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eco.db")
	s := open(t, path, store.Config{})
	s.Close()
	execSQL(t, path, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)`)
	_, err := sqlite.Open(t.Context(), path, store.Config{})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a database from a newer binary: %v, want an error about its newer schema", err)
	}
	t.Log(err)
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eco.db")
	s := open(t, path, store.Config{})
	if _, err := s.CreateCluster(t.Context(), store.NewCluster{Name: "wal", Provider: store.ProviderGeneric, AgentCredentialHash: storetest.Hash("wal")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eco.db", "eco.db-wal"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, perm)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, path, want string
	}{
		{"empty path", "", "empty path"},
		{"missing directory", filepath.Join(dir, "missing", "eco.db"), "no such file or directory"},
		{"query parameters", filepath.Join(dir, "eco.db") + "?_pragma=foo", "plain file path"},
		{"URI", "file:" + filepath.Join(dir, "eco.db"), "plain file path"},
		{"directory", dir, ""},
	}
	for _, tt := range tests {
		s, err := sqlite.Open(t.Context(), tt.path, store.Config{})
		if err == nil {
			s.Close()
			t.Errorf("%s: Open(%q) succeeded", tt.name, tt.path)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Open(%q) = %v, want it to mention %q", tt.name, tt.path, err, tt.want)
		}
	}
}

func TestMemoryIsPrivate(t *testing.T) {
	ctx := t.Context()
	a, b := open(t, sqlite.Memory, store.Config{}), open(t, sqlite.Memory, store.Config{})
	if _, err := a.CreateCluster(ctx, store.NewCluster{Name: "only-in-a", Provider: store.ProviderGeneric, AgentCredentialHash: storetest.Hash("a")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetClusterByName(ctx, "only-in-a"); err == nil {
		t.Error("two in-memory stores share data")
	}
}

// execSQL runs statements on the database file directly.
func execSQL(t *testing.T, path, query string) {
	t.Helper()
	db, err := sqlDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), query); err != nil {
		t.Fatal(err)
	}
}

// TestSearchIndexIntegrity churns clusters and then has FTS5 compare its
// index with the clusters table.
func TestSearchIndexIntegrity(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "eco.db")
	s := open(t, path, store.Config{})
	var ids []string
	for i := range 200 {
		c, err := s.CreateCluster(ctx, store.NewCluster{Name: fmt.Sprintf("churn-%d", i), Provider: store.ProviderGKE,
			Region: "europe-west1", CloudRef: fmt.Sprintf("projects/p/locations/europe-west1/clusters/churn-%d", i),
			AgentCredentialHash: storetest.Hash(fmt.Sprint(i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
		if _, err := s.UpdateStatus(ctx, c.ID, store.StatusUpdate{State: store.StateConnected, Heartbeat: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		if i%3 == 0 {
			if err := s.DeleteCluster(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	execSQL(t, path, `INSERT INTO clusters_search (clusters_search, rank) VALUES ('integrity-check', 1)`)
}

// TestTwoStoresOneFile has two stores — as two processes would — write the
// same file at once: the busy timeout must absorb the contention.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "eco.db")
	a, b := open(t, path, store.Config{}), open(t, path, store.Config{})
	c, err := a.CreateCluster(ctx, store.NewCluster{Name: "shared", Provider: store.ProviderGeneric, AgentCredentialHash: storetest.Hash("shared")})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 8 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for j := range 25 {
				state := store.StateConnected
				if j%2 == 1 {
					state = store.StateDisconnected
				}
				if _, err := s.UpdateStatus(ctx, c.ID, store.StatusUpdate{State: state, Heartbeat: true}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent writers on one file: %v", err)
	}
}
