package backend_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/backend"
	"github.com/eco-project/eco/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParse(t *testing.T) {
	tests := []struct {
		dsn    string
		kind   backend.Kind
		target string
	}{
		{"sqlite:///var/lib/eco/eco.db", backend.SQLite, "/var/lib/eco/eco.db"},
		{"sqlite://eco.db", backend.SQLite, "eco.db"},
		{"sqlite://./data/eco.db", backend.SQLite, "./data/eco.db"},
		{"sqlite:eco.db", backend.SQLite, "eco.db"},
		{"SQLITE:///eco.db", backend.SQLite, "/eco.db"},
		{"sqlite://:memory:", backend.SQLite, ":memory:"},
		{":memory:", backend.SQLite, ":memory:"},
		{"/var/lib/eco/eco.db", backend.SQLite, "/var/lib/eco/eco.db"},
		{"eco.db", backend.SQLite, "eco.db"},
		{"./eco.db", backend.SQLite, "./eco.db"},
		{`C:\eco\eco.db`, backend.SQLite, `C:\eco\eco.db`},
		{"sqlite:///data/a=b.db", backend.SQLite, "/data/a=b.db"},
		{"postgres://eco:secret@db:5432/eco?sslmode=require", backend.Postgres, "postgres://eco:secret@db:5432/eco?sslmode=require"},
		{"postgresql://db/eco", backend.Postgres, "postgresql://db/eco"},
	}
	for _, tt := range tests {
		kind, target, err := backend.Parse(tt.dsn)
		if err != nil || kind != tt.kind || target != tt.target {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tt.dsn, kind, target, err, tt.kind, tt.target)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		dsn, want string
	}{
		{"", "empty"},
		{"sqlite://", "no SQLite file"},
		{"sqlite:", "no SQLite file"},
		{"mysql://root:hunter2@db/eco", `unknown scheme "mysql"`},
		{"host=db user=eco password=hunter2 dbname=eco", "key=value"},
	}
	for _, tt := range tests {
		_, _, err := backend.Parse(tt.dsn)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error about %q", tt.dsn, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q): error %q leaks the password", tt.dsn, err)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	ctx := t.Context()
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "eco.db")
	s, err := backend.Open(ctx, dsn, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateCluster(ctx, store.NewCluster{Name: "persisted", Provider: store.ProviderAKS, AgentCredentialHash: storetest.Hash("p")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = backend.Open(ctx, dsn, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetCluster(ctx, c.ID); err != nil {
		t.Errorf("cluster not persisted: %v", err)
	}
}

func TestOpenMemory(t *testing.T) {
	s, err := backend.Open(t.Context(), "sqlite://:memory:", store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.CountTokens(t.Context()); err != nil || n != 0 {
		t.Errorf("CountTokens = %d, %v", n, err)
	}
}

func TestOpenPostgresNotYet(t *testing.T) {
	_, err := backend.Open(t.Context(), "postgres://eco:hunter2@localhost/eco", store.Config{})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Open(postgres://…) = %v, want errors.ErrUnsupported", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q leaks the password", err)
	}
}
