package storetest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

// testOperations: an operation is created running, one unfinished
// operation per release (a second is ErrConflict, also when racing), a
// final state frees the release and is final, the log is bounded and
// lists filter by release and by unfinished.
func testOperations(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	op := store.Operation{ClusterID: "c-a", Namespace: "web", Release: "shop", Kind: "install", User: "alice"}
	first, err := e.s.CreateOperation(e.ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	if first.State != store.OperationRunning || !store.ValidID(store.OperationIDPrefix, first.ID) || !first.FinishedAt.IsZero() {
		t.Fatalf("created %+v, want running with an op- ID", first)
	}
	_, err = e.s.CreateOperation(e.ctx, op)
	var busy *store.BusyError
	if !errors.Is(err, store.ErrConflict) || !errors.As(err, &busy) || busy.Holder != first.ID || busy.Namespace != "web" || busy.Release != "shop" {
		t.Fatalf("second operation on the release: %v, want a BusyError (ErrConflict) naming %s on web/shop", err, first.ID)
	}
	other := op
	other.Release = "blog"
	if _, err := e.s.CreateOperation(e.ctx, other); err != nil {
		t.Fatalf("an operation on another release: %v", err)
	}
	e.clock.Advance(time.Second)
	rec, err := e.s.UpdateOperation(e.ctx, first.ID, store.OperationUpdate{State: store.OperationRecovering, Log: "line 1\n"})
	if err != nil || rec.State != store.OperationRecovering || rec.Log != "line 1\n" || !rec.UpdatedAt.After(rec.CreatedAt) {
		t.Fatalf("to recovering: %+v, %v", rec, err)
	}
	if _, err := e.s.CreateOperation(e.ctx, op); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an operation while another recovers: %v, want ErrConflict", err)
	}
	long := make([]byte, store.MaxOperationLog+10)
	for i := range long {
		long[i] = 'x'
	}
	long[len(long)-1] = 'y'
	done, err := e.s.UpdateOperation(e.ctx, first.ID, store.OperationUpdate{State: store.OperationFailed, Message: "boom", Log: string(long), Revision: 2})
	if err != nil || done.FinishedAt.IsZero() || done.Message != "boom" || done.Revision != 2 || len(done.Log) != store.MaxOperationLog || done.Log[len(done.Log)-1] != 'y' {
		t.Fatalf("to failed: state %s finished %v message %q revision %d log %d bytes, %v", done.State, done.FinishedAt, done.Message, done.Revision, len(done.Log), err)
	}
	if _, err := e.s.UpdateOperation(e.ctx, first.ID, store.OperationUpdate{State: store.OperationRunning}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("updating a finished operation: %v, want ErrConflict", err)
	}
	if got, err := e.s.GetOperation(e.ctx, first.ID); err != nil || got.State != store.OperationFailed || !got.FinishedAt.Equal(done.FinishedAt) {
		t.Fatalf("GetOperation = %+v, %v", got, err)
	}
	if _, err := e.s.GetOperation(e.ctx, "op-nothere00"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetOperation(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := e.s.UpdateOperation(e.ctx, "op-nothere00", store.OperationUpdate{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateOperation(unknown) = %v, want ErrNotFound", err)
	}
	e.clock.Advance(time.Second)
	second, err := e.s.CreateOperation(e.ctx, store.Operation{ClusterID: "c-a", Namespace: "web", Release: "shop", Kind: "upgrade"})
	if err != nil {
		t.Fatalf("an operation after the first finished: %v", err)
	}
	shop, err := e.s.ListOperations(e.ctx, store.OperationQuery{ClusterID: "c-a", Namespace: "web", Release: "shop"})
	if err != nil || len(shop) != 2 || shop[0].ID != second.ID || shop[1].ID != first.ID {
		t.Fatalf("list of release shop: %+v, %v; want the upgrade then the install", shop, err)
	}
	open2, err := e.s.ListOperations(e.ctx, store.OperationQuery{Unfinished: true})
	if err != nil || len(open2) != 2 {
		t.Fatalf("unfinished: %+v, %v; want 2", open2, err)
	}
	for _, bad := range []store.Operation{{Namespace: "a", Release: "b", Kind: "install"}, {ClusterID: "c", Namespace: "a", Release: "b"}, {ClusterID: "c", Namespace: "a", Release: "b", Kind: "x", State: "weird"}} {
		if _, err := e.s.CreateOperation(e.ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateOperation(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := e.s.ListOperations(e.ctx, store.OperationQuery{Limit: store.MaxPageSize + 1}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ListOperations over MaxPageSize: %v, want ErrInvalid", err)
	}
}

// testOperationRace: of many operations started at once on one release,
// exactly one is created.
func testOperationRace(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, conflicts := 0, 0
	for range 8 {
		wg.Go(func() {
			_, err := e.s.CreateOperation(e.ctx, store.Operation{ClusterID: "c-a", Namespace: "ns", Release: "r", Kind: "install"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won != 1 || conflicts != 7 {
		t.Fatalf("%d created, %d conflicts; want 1 and 7", won, conflicts)
	}
}

// testRepositories: a repository round-trips (its sealed secret as
// given), names are unique, an index refresh is kept or replaced, and
// delete removes it.
func testRepositories(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	in := store.Repository{Name: "stable", Kind: "http", URL: "https://charts.example/", Username: "u", SealedSecret: []byte{1, 2, 3}, CAPEM: "pem"}
	r, err := e.s.CreateRepository(e.ctx, in)
	if err != nil || r.CreatedAt.IsZero() {
		t.Fatalf("CreateRepository = %+v, %v", r, err)
	}
	if _, err := e.s.CreateRepository(e.ctx, in); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate: %v, want ErrConflict", err)
	}
	for _, bad := range []store.Repository{{Kind: "http", URL: "x"}, {Name: "a", Kind: "ftp", URL: "x"}, {Name: "a", Kind: "oci"}} {
		if _, err := e.s.CreateRepository(e.ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateRepository(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := e.s.CreateRepository(e.ctx, store.Repository{Name: "oci", Kind: "oci", URL: "oci://r.example/charts", Charts: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if err := e.s.SetRepositoryIndex(e.ctx, "stable", store.RepositoryIndex{ETag: `"v1"`, Index: []byte("entries: {}")}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.SetRepositoryIndex(e.ctx, "stable", store.RepositoryIndex{Error: "unreachable"}); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.GetRepository(e.ctx, "stable")
	if err != nil || got.ETag != `"v1"` || string(got.Index) != "entries: {}" || got.RefreshError != "unreachable" || got.RefreshedAt.IsZero() ||
		string(got.SealedSecret) != "\x01\x02\x03" || got.Username != "u" || got.CAPEM != "pem" {
		t.Fatalf("GetRepository = %+v, %v", got, err)
	}
	list, err := e.s.ListRepositories(e.ctx, false)
	if err != nil || len(list) != 2 || list[0].Name != "oci" || list[0].Charts[1] != "b" || list[1].Index != nil {
		t.Fatalf("ListRepositories = %+v, %v", list, err)
	}
	if err := e.s.DeleteRepository(e.ctx, "stable"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.GetRepository(e.ctx, "stable"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := e.s.SetRepositoryIndex(e.ctx, "stable", store.RepositoryIndex{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("index of a deleted repository: %v", err)
	}
}

// testAddons: settings per add-on and cluster ("" for all) replace each
// other, list in order and delete.
func testAddons(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	for _, a := range []store.AddonSetting{
		{Addon: "monitoring", ClusterID: "", Enabled: true, UpdatedBy: "alice"},
		{Addon: "metrics-server", ClusterID: "c-b", Enabled: true},
		{Addon: "metrics-server", ClusterID: "c-a", Enabled: true},
		{Addon: "metrics-server", ClusterID: "c-a", Enabled: false, UpdatedBy: "bob"},
	} {
		if _, err := e.s.SetAddon(e.ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.s.ListAddons(e.ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("ListAddons = %+v, %v", got, err)
	}
	if got[0].Addon != "metrics-server" || got[0].ClusterID != "c-a" || got[0].Enabled || got[0].UpdatedBy != "bob" || got[2].Addon != "monitoring" || !got[2].Enabled || got[2].UpdatedAt.IsZero() {
		t.Fatalf("ListAddons = %+v", got)
	}
	if err := e.s.DeleteAddon(e.ctx, "metrics-server", "c-a"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteAddon(e.ctx, "metrics-server", "c-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if _, err := e.s.SetAddon(e.ctx, store.AddonSetting{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("no name: %v", err)
	}
}

// testAddonVersions: a pinned version per add-on replaces the previous
// one, lists by add-on with who set it and when, and is validated.
func testAddonVersions(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	if got, err := e.s.AddonVersions(e.ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("AddonVersions of a new store = %#v, %v; want empty, not nil", got, err)
	}
	for _, v := range []store.AddonVersion{
		{Addon: "monitoring", Version: "0.1.0"},
		{Addon: "logging", Version: "0.2.0", UpdatedBy: "alice"},
	} {
		if _, err := e.s.SetAddonVersion(e.ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Second)
	set, err := e.s.SetAddonVersion(e.ctx, store.AddonVersion{Addon: "monitoring", Version: "0.3.0-rc.1+build.5", UpdatedBy: "bob"})
	if err != nil || !set.UpdatedAt.Equal(e.clock.Stored()) {
		t.Fatalf("SetAddonVersion = %+v, %v; want UpdatedAt %v", set, err, e.clock.Stored())
	}
	got, err := e.s.AddonVersions(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AddonVersion{
		{Addon: "logging", Version: "0.2.0", UpdatedBy: "alice", UpdatedAt: e.clock.Stored().Add(-time.Second)},
		{Addon: "monitoring", Version: "0.3.0-rc.1+build.5", UpdatedBy: "bob", UpdatedAt: e.clock.Stored()},
	}
	wantEqual(t, "AddonVersions", got, want)
	for _, bad := range []store.AddonVersion{
		{Version: "1.0.0"},
		{Addon: "logging"},
		{Addon: strings.Repeat("a", store.MaxAddonName+1), Version: "1.0.0"},
		{Addon: "logging", Version: "1." + strings.Repeat("0", store.MaxAddonVersion)},
	} {
		if _, err := e.s.SetAddonVersion(e.ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetAddonVersion(%q, %q) = %v, want ErrInvalid", bad.Addon, bad.Version, err)
		}
	}
	if got, _ := e.s.AddonVersions(e.ctx); len(got) != 2 || got[0].Version != "0.2.0" {
		t.Errorf("after invalid writes: %+v, want them unchanged", got)
	}
}

// testOperationLimit: creating an operation keeps the cluster's newest
// OperationLimit finished ones; an unfinished operation, however old, and
// other clusters' operations stay.
func testOperationLimit(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{OperationLimit: 3})
	held, err := e.s.CreateOperation(e.ctx, store.Operation{ClusterID: "c-a", Namespace: "web", Release: "held", Kind: "install"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.s.CreateOperation(e.ctx, store.Operation{ClusterID: "c-b", Namespace: "web", Release: "shop", Kind: "install", State: store.OperationSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for i := range 6 {
		e.clock.Advance(time.Second)
		op, err := e.s.CreateOperation(e.ctx, store.Operation{ClusterID: "c-a", Namespace: "web", Release: "shop", Kind: "upgrade", State: store.OperationSucceeded, Revision: i + 1})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, op.ID)
	}
	got, err := e.s.ListOperations(e.ctx, store.OperationQuery{ClusterID: "c-a"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, op := range got {
		ids = append(ids, op.ID)
	}
	// Newest first: the last three made, then the unfinished one.
	want := []string{made[5], made[4], made[3], held.ID}
	if !slices.Equal(ids, want) {
		t.Errorf("operations of c-a = %v, want %v (the newest 3 finished and the unfinished one)", ids, want)
	}
	if _, err := e.s.GetOperation(e.ctx, other.ID); err != nil {
		t.Errorf("another cluster's operation: %v", err)
	}
}
