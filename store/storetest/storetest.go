// Package storetest is the contract suite for [store.Store] backends, in the
// manner of kine's conformance tests: each backend runs [Run] against
// itself, so SQLite and PostgreSQL behave alike, and [Benchmark] for numbers
// that can be compared.
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(tb testing.TB, cfg store.Config) store.Store {
//			s, err := sqlite.Open(tb.Context(), filepath.Join(tb.TempDir(), "eco.db"), cfg)
//			if err != nil {
//				tb.Fatal(err)
//			}
//			tb.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/eco-project/eco/store"
)

// OpenFunc opens a new, empty store with cfg, fails tb if it cannot, and
// closes the store in tb.Cleanup.
type OpenFunc func(tb testing.TB, cfg store.Config) store.Store

// Run runs the whole contract against stores from open. Subtests run in
// parallel, each on its own store. With -short, the 10,000-cluster test is
// skipped.
func Run(t *testing.T, open OpenFunc) {
	tests := []struct {
		name string
		fn   func(*testing.T, OpenFunc)
	}{
		{"Clusters/CreateAndGet", testCreateAndGet},
		{"Clusters/Validation", testClusterValidation},
		{"Clusters/Conflicts", testClusterConflicts},
		{"Clusters/NotFound", testNotFound},
		{"Clusters/Delete", testDelete},
		{"Clusters/Update", testUpdateCluster},
		{"Clusters/PinFingerprint", testPinFingerprint},
		{"Clusters/PinFingerprintRace", testPinFingerprintRace},
		{"Clusters/RotateCredential", testRotateCredential},
		{"Clusters/CredentialGenerations", testCredentialGenerations},
		{"Clusters/CredentialGenerationErrors", testCredentialGenerationErrors},
		{"Clusters/CredentialGenerationRace", testCredentialGenerationRace},
		{"Clusters/Identity", testIdentity},
		{"Clusters/IdentityPinRace", testIdentityPinRace},
		{"Status/Note", testNoteStatus},
		{"Clusters/CloudHealth", testCloudHealth},
		{"Status/Transitions", testStatusTransitions},
		{"Status/Validation", testStatusValidation},
		{"Status/Truncation", testStatusTruncation},
		{"Status/HistoryLimit", testHistoryLimit},
		{"Status/HistoryRetention", testHistoryRetention},
		{"Status/Concurrent", testConcurrentUpdates},
		{"List/FiltersAndOrder", testListClusters},
		{"List/Validation", testListValidation},
		{"List/SearchFollowsChanges", testSearchFollowsChanges},
		{"List/TenThousand", testList10k},
		{"Tokens/Lifecycle", testTokenLifecycle},
		{"Tokens/Validation", testTokenValidation},
		{"Audit/AppendAndList", testAuditAppendAndList},
		{"Audit/Validation", testAuditValidation},
		{"Audit/Retention", testAuditRetention},
		{"Tokens/ExpiryAndScope", testTokenExpiryAndScope},
		{"Grants/Lifecycle", testGrantLifecycle},
		{"Grants/Validation", testGrantValidation},
		{"List/IDs", testListIDs},
		{"Cloud/AccountsAndLinks", testCloudAccounts},
		{"Operations/Lifecycle", testOperations},
		{"Operations/Race", testOperationRace},
		{"Operations/Limit", testOperationLimit},
		{"Repositories/Lifecycle", testRepositories},
		{"Addons/Settings", testAddons},
		{"Addons/Versions", testAddonVersions},
		{"Lifecycle/Close", testClose},
		{"Lifecycle/CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open)
		})
	}
}

// Clock is a fake clock for store tests. It starts at a fixed time in a
// non-UTC zone with nanoseconds (to show the store normalises times) and
// moves only when told to. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

// NewClock returns a Clock at 2025-03-14 15:09:26.535897932 +01:00.
func NewClock() *Clock {
	return &Clock{now: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and returns the new time as the
// store records it.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return store.Timestamp(c.now)
}

// Stored returns the clock's time as the store records it.
func (c *Clock) Stored() time.Time { return store.Timestamp(c.Now()) }

// env is one store under test with its clock.
type env struct {
	t     *testing.T
	ctx   context.Context
	s     store.Store
	clock *Clock
}

func newEnv(t *testing.T, open OpenFunc, cfg store.Config) *env {
	t.Helper()
	clock := NewClock()
	cfg.Now = clock.Now
	return &env{t: t, ctx: t.Context(), s: open(t, cfg), clock: clock}
}

// Hash returns a deterministic 32-byte hash for seed, standing in for the
// SHA-256 of a credential.
func Hash(seed string) []byte {
	h := sha256.Sum256([]byte(seed))
	return h[:]
}

func newCluster(name string) store.NewCluster {
	return store.NewCluster{Name: name, Provider: store.ProviderGeneric, AgentCredentialHash: Hash("credential of " + name)}
}

func (e *env) create(name string) store.Cluster {
	e.t.Helper()
	c, err := e.s.CreateCluster(e.ctx, newCluster(name))
	if err != nil {
		e.t.Fatalf("CreateCluster(%q): %v", name, err)
	}
	return c
}

func (e *env) get(id string) store.Cluster {
	e.t.Helper()
	c, err := e.s.GetCluster(e.ctx, id)
	if err != nil {
		e.t.Fatalf("GetCluster(%q): %v", id, err)
	}
	return c
}

func (e *env) update(id string, u store.StatusUpdate) store.Status {
	e.t.Helper()
	st, err := e.s.UpdateStatus(e.ctx, id, u)
	if err != nil {
		e.t.Fatalf("UpdateStatus(%q, %+v): %v", id, u, err)
	}
	return st
}

func (e *env) history(id string, limit int) []store.Transition {
	e.t.Helper()
	h, err := e.s.StatusHistory(e.ctx, id, limit)
	if err != nil {
		e.t.Fatalf("StatusHistory(%q, %d): %v", id, limit, err)
	}
	return h
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func wantEqual[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testCreateAndGet(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	created := e.clock.Stored()
	in := store.NewCluster{
		Name:                "prod-eu",
		Provider:            store.ProviderEKS,
		Region:              "eu-west-1",
		CloudRef:            "arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu",
		AgentCredentialHash: Hash("secret"),
	}
	got, err := e.s.CreateCluster(e.ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !store.ValidID(store.ClusterIDPrefix, got.ID) {
		t.Errorf("ID %q is not c- and 10 base32 characters", got.ID)
	}
	want := store.Cluster{
		ID:                  got.ID,
		Name:                "prod-eu",
		Provider:            store.ProviderEKS,
		Region:              "eu-west-1",
		CloudRef:            "arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu",
		CreatedAt:           created,
		AgentCredentialHash: Hash("secret"),
		Status: store.Status{
			State:  store.StateNotInstalled,
			Reason: store.ReasonNeverConnected,
			Since:  created,
		},
	}
	wantEqual(t, "CreateCluster", got, want)
	if loc := got.CreatedAt.Location(); loc != time.UTC || got.CreatedAt.Nanosecond()%1000 != 0 {
		t.Errorf("CreatedAt %v: want UTC at microsecond precision", got.CreatedAt)
	}
	in.AgentCredentialHash[0] ^= 0xff // the store must have copied it

	e.clock.Advance(time.Minute)
	c := e.get(got.ID)
	wantEqual(t, "GetCluster", c, want)
	c, err = e.s.GetClusterByName(e.ctx, "prod-eu")
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "GetClusterByName", c, want)
	c, err = e.s.ClusterByCredentialHash(e.ctx, Hash("secret"))
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "ClusterByCredentialHash", c, want)
	page, err := e.s.ListClusters(e.ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "ListClusters", page, store.ClusterPage{Clusters: []store.Cluster{want}, Total: 1})
	if h := e.history(got.ID, 0); len(h) != 0 {
		t.Errorf("a new cluster has history %+v, want none", h)
	}

	// Edge cases of valid input.
	for _, name := range []string{"a", "0", "1a", "a-b", strings.Repeat("x", 63)} {
		nc := newCluster(name)
		nc.Provider = store.ProviderGKE
		if _, err := e.s.CreateCluster(e.ctx, nc); err != nil {
			t.Errorf("CreateCluster(%q): %v", name, err)
		}
	}
}

func testClusterValidation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	tests := []struct {
		name   string
		modify func(*store.NewCluster)
	}{
		{"empty name", func(c *store.NewCluster) { c.Name = "" }},
		{"uppercase name", func(c *store.NewCluster) { c.Name = "Prod" }},
		{"leading dash", func(c *store.NewCluster) { c.Name = "-prod" }},
		{"trailing dash", func(c *store.NewCluster) { c.Name = "prod-" }},
		{"underscore", func(c *store.NewCluster) { c.Name = "prod_eu" }},
		{"dot", func(c *store.NewCluster) { c.Name = "prod.eu" }},
		{"space", func(c *store.NewCluster) { c.Name = "prod eu" }},
		{"non-ASCII", func(c *store.NewCluster) { c.Name = "prød" }},
		{"64 characters", func(c *store.NewCluster) { c.Name = strings.Repeat("x", 64) }},
		{"empty provider", func(c *store.NewCluster) { c.Provider = "" }},
		{"unknown provider", func(c *store.NewCluster) { c.Provider = "openshift" }},
		{"uppercase provider", func(c *store.NewCluster) { c.Provider = "EKS" }},
		{"long region", func(c *store.NewCluster) { c.Region = strings.Repeat("r", store.MaxRegionLen+1) }},
		{"newline in region", func(c *store.NewCluster) { c.Region = "eu\nwest" }},
		{"long cloud ref", func(c *store.NewCluster) { c.CloudRef = strings.Repeat("r", store.MaxCloudRefLen+1) }},
		{"invalid UTF-8 in cloud ref", func(c *store.NewCluster) { c.CloudRef = "\xff" }},
		{"no credential hash", func(c *store.NewCluster) { c.AgentCredentialHash = nil }},
		{"short credential hash", func(c *store.NewCluster) { c.AgentCredentialHash = make([]byte, store.MinHashLen-1) }},
		{"long credential hash", func(c *store.NewCluster) { c.AgentCredentialHash = make([]byte, store.MaxHashLen+1) }},
	}
	for _, tt := range tests {
		nc := newCluster("valid")
		tt.modify(&nc)
		_, err := e.s.CreateCluster(e.ctx, nc)
		wantErr(t, tt.name, err, store.ErrInvalid)
		if err.Error() == store.ErrInvalid.Error() {
			t.Errorf("%s: error %q does not say what is wrong", tt.name, err)
		}
	}
	page, err := e.s.ListClusters(e.ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 0 {
		t.Errorf("invalid input created %d clusters", page.Total)
	}
}

func testClusterConflicts(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a := e.create("a")

	sameName := newCluster("a")
	sameName.AgentCredentialHash = Hash("other")
	_, err := e.s.CreateCluster(e.ctx, sameName)
	wantErr(t, "duplicate name", err, store.ErrConflict)

	sameHash := newCluster("b")
	sameHash.AgentCredentialHash = a.AgentCredentialHash
	_, err = e.s.CreateCluster(e.ctx, sameHash)
	wantErr(t, "duplicate credential hash", err, store.ErrConflict)

	if err := e.s.DeleteCluster(e.ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	again := e.create("a") // name and hash are free again
	if again.ID == a.ID {
		t.Errorf("re-created cluster reuses ID %q", a.ID)
	}
}

func testNotFound(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	e.create("exists")
	const id = "c-aaaaaaaaaa"
	ctx := e.ctx
	tests := []struct {
		name string
		call func() error
	}{
		{"GetCluster", func() error { _, err := e.s.GetCluster(ctx, id); return err }},
		{"GetCluster with empty ID", func() error { _, err := e.s.GetCluster(ctx, ""); return err }},
		{"GetClusterByName", func() error { _, err := e.s.GetClusterByName(ctx, "missing"); return err }},
		{"ClusterByCredentialHash", func() error { _, err := e.s.ClusterByCredentialHash(ctx, Hash("missing")); return err }},
		{"ClusterByCredentialHash with no hash", func() error { _, err := e.s.ClusterByCredentialHash(ctx, nil); return err }},
		{"DeleteCluster", func() error { return e.s.DeleteCluster(ctx, id) }},
		{"PinFingerprint", func() error { return e.s.PinFingerprint(ctx, id, "uid") }},
		{"RotateCredential", func() error { return e.s.RotateCredential(ctx, id, Hash("new")) }},
		{"SetCloudHealth", func() error { return e.s.SetCloudHealth(ctx, id, "ACTIVE") }},
		{"UpdateStatus", func() error {
			_, err := e.s.UpdateStatus(ctx, id, store.StatusUpdate{State: store.StateConnected})
			return err
		}},
		{"StatusHistory", func() error { _, err := e.s.StatusHistory(ctx, id, 10); return err }},
		{"TokenByHash", func() error { _, err := e.s.TokenByHash(ctx, Hash("missing")); return err }},
		{"TokenByHash with no hash", func() error { _, err := e.s.TokenByHash(ctx, nil); return err }},
		{"RevokeToken", func() error { return e.s.RevokeToken(ctx, "t-aaaaaaaaaa") }},
		{"TouchToken", func() error { return e.s.TouchToken(ctx, "t-aaaaaaaaaa") }},
	}
	for _, tt := range tests {
		wantErr(t, tt.name, tt.call(), store.ErrNotFound)
	}
}

func testDelete(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, b := e.create("a"), e.create("b")
	for _, c := range []store.Cluster{a, b} {
		e.update(c.ID, store.StatusUpdate{State: store.StateConnected, Heartbeat: true})
		e.update(c.ID, store.StatusUpdate{State: store.StateDisconnected})
		if err := e.s.PinFingerprint(e.ctx, c.ID, "uid-"+c.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.DeleteCluster(e.ctx, a.ID); err != nil {
		t.Fatal(err)
	}

	_, err := e.s.GetCluster(e.ctx, a.ID)
	wantErr(t, "GetCluster after delete", err, store.ErrNotFound)
	_, err = e.s.GetClusterByName(e.ctx, "a")
	wantErr(t, "GetClusterByName after delete", err, store.ErrNotFound)
	_, err = e.s.ClusterByCredentialHash(e.ctx, a.AgentCredentialHash)
	wantErr(t, "ClusterByCredentialHash after delete", err, store.ErrNotFound)
	_, err = e.s.StatusHistory(e.ctx, a.ID, 0)
	wantErr(t, "StatusHistory after delete", err, store.ErrNotFound)
	wantErr(t, "second DeleteCluster", e.s.DeleteCluster(e.ctx, a.ID), store.ErrNotFound)

	if h := e.history(b.ID, 0); len(h) != 2 {
		t.Errorf("the other cluster's history has %d entries, want 2", len(h))
	}
	page, err := e.s.ListClusters(e.ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 1 || len(page.Clusters) != 1 || page.Clusters[0].ID != b.ID {
		t.Errorf("after delete ListClusters = %+v, want only %q", page, b.ID)
	}

	// A new cluster of the same name starts from scratch.
	a2 := e.create("a")
	if a2.Fingerprint != "" || a2.Status.State != store.StateNotInstalled {
		t.Errorf("re-created cluster inherits state: %+v", a2)
	}
	if h := e.history(a2.ID, 0); len(h) != 0 {
		t.Errorf("re-created cluster inherits history %+v", h)
	}
}

func testPinFingerprint(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("pinned")
	const uid, other = "6f1a2c3d-0000-4000-8000-000000000001", "6f1a2c3d-0000-4000-8000-000000000002"

	for _, bad := range []string{"", "has space", "tab\t", strings.Repeat("u", store.MaxFingerprintLen+1)} {
		wantErr(t, fmt.Sprintf("PinFingerprint(%q)", bad), e.s.PinFingerprint(e.ctx, c.ID, bad), store.ErrInvalid)
	}

	pinnedAt := e.clock.Advance(time.Second)
	if err := e.s.PinFingerprint(e.ctx, c.ID, uid); err != nil {
		t.Fatalf("first pin: %v", err)
	}
	got := e.get(c.ID)
	if got.Fingerprint != uid || !got.FingerprintPinnedAt.Equal(pinnedAt) {
		t.Fatalf("after pin: fingerprint %q pinned at %v, want %q at %v", got.Fingerprint, got.FingerprintPinnedAt, uid, pinnedAt)
	}

	e.clock.Advance(time.Second)
	if err := e.s.PinFingerprint(e.ctx, c.ID, uid); err != nil {
		t.Fatalf("same fingerprint again: %v", err)
	}
	wantErr(t, "different fingerprint", e.s.PinFingerprint(e.ctx, c.ID, other), store.ErrConflict)
	got = e.get(c.ID)
	if got.Fingerprint != uid || !got.FingerprintPinnedAt.Equal(pinnedAt) {
		t.Errorf("pin changed to %q at %v, want %q at %v", got.Fingerprint, got.FingerprintPinnedAt, uid, pinnedAt)
	}
}

// testPinFingerprintRace has many agents present the same credential from
// different clusters at once: exactly one may win.
func testPinFingerprintRace(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("contested")
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = e.s.PinFingerprint(e.ctx, c.ID, fmt.Sprintf("uid-%d", i)) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("both uid-%d and uid-%d were pinned", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("uid-%d: %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no fingerprint was pinned")
	}
	if got := e.get(c.ID).Fingerprint; got != fmt.Sprintf("uid-%d", winner) {
		t.Errorf("pinned %q, but uid-%d won", got, winner)
	}
}

func testRotateCredential(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, b := e.create("a"), e.create("b")
	if err := e.s.PinFingerprint(e.ctx, a.ID, "uid-a"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.RotateCredential(e.ctx, a.ID, Hash("rotated")); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.ClusterByCredentialHash(e.ctx, a.AgentCredentialHash)
	wantErr(t, "old credential after rotation", err, store.ErrNotFound)
	got, err := e.s.ClusterByCredentialHash(e.ctx, Hash("rotated"))
	if err != nil {
		t.Fatalf("new credential after rotation: %v", err)
	}
	if got.ID != a.ID || got.Fingerprint != "uid-a" {
		t.Errorf("new credential finds %q with fingerprint %q, want %q with uid-a", got.ID, got.Fingerprint, a.ID)
	}
	if err := e.s.RotateCredential(e.ctx, a.ID, Hash("rotated")); err != nil {
		t.Errorf("rotating to the current hash: %v", err)
	}
	wantErr(t, "rotating to another cluster's hash", e.s.RotateCredential(e.ctx, a.ID, b.AgentCredentialHash), store.ErrConflict)
	wantErr(t, "rotating to a short hash", e.s.RotateCredential(e.ctx, a.ID, []byte("short")), store.ErrInvalid)
	if got := e.get(b.ID); !slices.Equal(got.AgentCredentialHash, b.AgentCredentialHash) {
		t.Error("rotation touched another cluster")
	}
}

func testCloudHealth(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("healthy")
	for _, h := range []string{"ACTIVE", "Succeeded", "RUNNING", "DEGRADED: node pool upgrade", ""} {
		if err := e.s.SetCloudHealth(e.ctx, c.ID, h); err != nil {
			t.Fatalf("SetCloudHealth(%q): %v", h, err)
		}
		if got := e.get(c.ID).CloudHealth; got != h {
			t.Errorf("after SetCloudHealth(%q) got %q", h, got)
		}
	}
	wantErr(t, "long health", e.s.SetCloudHealth(e.ctx, c.ID, strings.Repeat("h", store.MaxCloudHealthLen+1)), store.ErrInvalid)
	wantErr(t, "control character", e.s.SetCloudHealth(e.ctx, c.ID, "OK\x1b[31m"), store.ErrInvalid)
}

// testStatusTransitions walks one cluster through its life and checks the
// status after each update, then the recorded history.
func testStatusTransitions(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("walker")
	at := make([]time.Time, 9)
	at[0] = c.CreatedAt
	steps := []struct {
		name   string
		update store.StatusUpdate
		want   func() store.Status // evaluated after the step, so at[] is filled in
	}{
		{
			name:   "1 first connect",
			update: store.StatusUpdate{State: store.StateConnected, Reason: "agent connected", Heartbeat: true, RTT: 20 * time.Millisecond, AgentVersion: "v0.1.0", KubernetesVersion: "v1.34.4"},
			want: func() store.Status {
				return store.Status{State: store.StateConnected, Reason: "agent connected", Since: at[1], LastHeartbeat: at[1], RTT: 20 * time.Millisecond, AgentVersion: "v0.1.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "2 heartbeat keeps state, since and reason",
			update: store.StatusUpdate{State: store.StateConnected, Heartbeat: true, RTT: 30 * time.Millisecond},
			want: func() store.Status {
				return store.Status{State: store.StateConnected, Reason: "agent connected", Since: at[1], LastHeartbeat: at[2], RTT: 30 * time.Millisecond, AgentVersion: "v0.1.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "3 same state with a reason replaces the reason only",
			update: store.StatusUpdate{State: store.StateConnected, Reason: "all good"},
			want: func() store.Status {
				return store.Status{State: store.StateConnected, Reason: "all good", Since: at[1], LastHeartbeat: at[2], RTT: 30 * time.Millisecond, AgentVersion: "v0.1.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "4 heartbeat lost",
			update: store.StatusUpdate{State: store.StateDisconnected, Reason: "heartbeat lost"},
			want: func() store.Status {
				return store.Status{State: store.StateDisconnected, Reason: "heartbeat lost", Since: at[4], LastHeartbeat: at[2], RTT: 30 * time.Millisecond, AgentVersion: "v0.1.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "5 same state without a reason changes nothing",
			update: store.StatusUpdate{State: store.StateDisconnected},
			want: func() store.Status {
				return store.Status{State: store.StateDisconnected, Reason: "heartbeat lost", Since: at[4], LastHeartbeat: at[2], RTT: 30 * time.Millisecond, AgentVersion: "v0.1.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "6 reconnect with a new agent: empty reason clears the old one",
			update: store.StatusUpdate{State: store.StateConnected, Heartbeat: true, RTT: 10 * time.Millisecond, AgentVersion: "v0.2.0"},
			want: func() store.Status {
				return store.Status{State: store.StateConnected, Since: at[6], LastHeartbeat: at[6], RTT: 10 * time.Millisecond, AgentVersion: "v0.2.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "7 failing",
			update: store.StatusUpdate{State: store.StateFailing, Reason: "namespaces is forbidden", Heartbeat: true, RTT: 15 * time.Millisecond},
			want: func() store.Status {
				return store.Status{State: store.StateFailing, Reason: "namespaces is forbidden", Since: at[7], LastHeartbeat: at[7], RTT: 15 * time.Millisecond, AgentVersion: "v0.2.0", KubernetesVersion: "v1.34.4"}
			},
		},
		{
			name:   "8 removed",
			update: store.StatusUpdate{State: store.StateRemoved, Reason: "agent namespace deleted"},
			want: func() store.Status {
				return store.Status{State: store.StateRemoved, Reason: "agent namespace deleted", Since: at[8], LastHeartbeat: at[7], RTT: 15 * time.Millisecond, AgentVersion: "v0.2.0", KubernetesVersion: "v1.34.4"}
			},
		},
	}
	for i, step := range steps {
		at[i+1] = e.clock.Advance(time.Duration(i+1) * time.Second)
		got := e.update(c.ID, step.update)
		wantEqual(t, step.name+": UpdateStatus", got, step.want())
		wantEqual(t, step.name+": GetCluster", e.get(c.ID).Status, step.want())
	}

	want := []store.Transition{
		{ClusterID: c.ID, From: store.StateFailing, To: store.StateRemoved, Reason: "agent namespace deleted", At: at[8]},
		{ClusterID: c.ID, From: store.StateConnected, To: store.StateFailing, Reason: "namespaces is forbidden", At: at[7]},
		{ClusterID: c.ID, From: store.StateDisconnected, To: store.StateConnected, Reason: "", At: at[6]},
		{ClusterID: c.ID, From: store.StateConnected, To: store.StateDisconnected, Reason: "heartbeat lost", At: at[4]},
		{ClusterID: c.ID, From: store.StateNotInstalled, To: store.StateConnected, Reason: "agent connected", At: at[1]},
	}
	wantEqual(t, "StatusHistory", e.history(c.ID, 0), want)
	wantEqual(t, "StatusHistory limit 2", e.history(c.ID, 2), want[:2])
}

func testStatusValidation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("strict")
	for _, u := range []store.StatusUpdate{
		{},
		{State: "connected"},
		{State: "Unknown"},
		{State: store.StateConnected, Heartbeat: true, RTT: -time.Millisecond},
	} {
		_, err := e.s.UpdateStatus(e.ctx, c.ID, u)
		wantErr(t, fmt.Sprintf("UpdateStatus(%+v)", u), err, store.ErrInvalid)
	}
	wantEqual(t, "status after invalid updates", e.get(c.ID).Status, c.Status)
}

func testStatusTruncation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("verbose")
	long := strings.Repeat("é", store.MaxReasonLen) // two bytes each
	st := e.update(c.ID, store.StatusUpdate{
		State: store.StateFailing, Reason: long,
		AgentVersion: strings.Repeat("v", 1000), KubernetesVersion: strings.Repeat("€", 1000),
	})
	for what, s := range map[string]string{"reason": st.Reason, "agent version": st.AgentVersion, "kubernetes version": st.KubernetesVersion} {
		if !utf8.ValidString(s) || s == "" {
			t.Errorf("truncated %s is not valid UTF-8 or empty", what)
		}
	}
	if len(st.Reason) > store.MaxReasonLen || len(st.AgentVersion) > store.MaxVersionLen || len(st.KubernetesVersion) > store.MaxVersionLen {
		t.Errorf("status text not truncated: reason %d, versions %d and %d bytes", len(st.Reason), len(st.AgentVersion), len(st.KubernetesVersion))
	}
	wantEqual(t, "stored status", e.get(c.ID).Status, st)
	if h := e.history(c.ID, 1); len(h) != 1 || h[0].Reason != st.Reason {
		t.Errorf("history reason differs from status reason")
	}
}

// flip makes n state changes on cluster id, alternating Connected and
// Disconnected, one clock second apart.
func (e *env) flip(id string, n int) {
	e.t.Helper()
	for i := range n {
		e.clock.Advance(time.Second)
		state := store.StateConnected
		if i%2 == 1 {
			state = store.StateDisconnected
		}
		e.update(id, store.StatusUpdate{State: state, Reason: fmt.Sprintf("change %d", i)})
	}
}

func testHistoryLimit(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("flappy")
	e.flip(c.ID, store.DefaultPageSize+10)
	tests := []struct {
		limit int
		want  int
	}{
		{0, store.DefaultPageSize},
		{1, 1},
		{3, 3},
		{store.MaxPageSize, store.DefaultPageSize + 10},
	}
	for _, tt := range tests {
		h := e.history(c.ID, tt.limit)
		if len(h) != tt.want {
			t.Errorf("StatusHistory(limit %d) returned %d, want %d", tt.limit, len(h), tt.want)
		}
		if h[0].Reason != fmt.Sprintf("change %d", store.DefaultPageSize+9) {
			t.Errorf("StatusHistory(limit %d) starts with %q, want the newest", tt.limit, h[0].Reason)
		}
		for i := 1; i < len(h); i++ {
			if h[i].At.After(h[i-1].At) {
				t.Fatalf("history is not newest first at %d: %v after %v", i, h[i].At, h[i-1].At)
			}
		}
	}
	for _, limit := range []int{-1, store.MaxPageSize + 1} {
		_, err := e.s.StatusHistory(e.ctx, c.ID, limit)
		wantErr(t, fmt.Sprintf("StatusHistory(limit %d)", limit), err, store.ErrInvalid)
	}
}

func testHistoryRetention(t *testing.T, open OpenFunc) {
	tests := []struct {
		name      string
		retention int
		changes   int
		want      int
	}{
		{"prunes beyond the limit", 5, 12, 5},
		{"keeps everything under the limit", 5, 4, 4},
		{"negative keeps all", -1, 12, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, open, store.Config{HistoryLimit: tt.retention})
			a, b := e.create("a"), e.create("b")
			e.flip(b.ID, 2)
			e.flip(a.ID, tt.changes)
			h := e.history(a.ID, store.MaxPageSize)
			if len(h) != tt.want {
				t.Fatalf("kept %d transitions, want %d", len(h), tt.want)
			}
			for i, tr := range h {
				if want := fmt.Sprintf("change %d", tt.changes-1-i); tr.Reason != want {
					t.Errorf("transition %d is %q, want %q (the newest are kept)", i, tr.Reason, want)
				}
			}
			if n := len(e.history(b.ID, store.MaxPageSize)); n != 2 {
				t.Errorf("pruning touched another cluster: it has %d transitions, want 2", n)
			}
		})
	}
}

// testConcurrentUpdates hammers a few clusters from many goroutines, as
// heartbeats from many agents do, while others read. Nothing may fail
// (SQLite's "database is locked" included), and each cluster's history must
// be an unbroken chain ending in its current state.
func testConcurrentUpdates(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	var ids []string
	for i := range 4 {
		ids = append(ids, e.create(fmt.Sprintf("busy-%d", i)).ID)
	}
	const writers, updates = 16, 40
	states := []store.State{store.StateConnected, store.StateConnected, store.StateDisconnected, store.StateFailing}
	var wg sync.WaitGroup
	errs := make(chan error, writers*updates+4*updates)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range updates {
				u := store.StatusUpdate{State: states[rng.IntN(len(states))], Heartbeat: i%2 == 0, RTT: time.Duration(i) * time.Millisecond}
				if _, err := e.s.UpdateStatus(e.ctx, ids[rng.IntN(len(ids))], u); err != nil {
					errs <- err
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for i := range updates {
				if _, err := e.s.ListClusters(e.ctx, store.ListOptions{SortBy: store.SortByState}); err != nil {
					errs <- err
				}
				if _, err := e.s.StatusHistory(e.ctx, ids[i%len(ids)], 10); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent access failed: %v", err)
	}
	for _, id := range ids {
		h := e.history(id, store.MaxPageSize)
		if len(h) == 0 {
			continue
		}
		if cur := e.get(id).Status.State; h[0].To != cur {
			t.Errorf("%s: newest transition goes to %s, but the state is %s", id, h[0].To, cur)
		}
		if last := h[len(h)-1]; last.From != store.StateNotInstalled {
			t.Errorf("%s: oldest transition comes from %s, want NotInstalled", id, last.From)
		}
		for i, tr := range h {
			if tr.From == tr.To {
				t.Errorf("%s: transition %d does not change state: %+v", id, i, tr)
			}
			if i+1 < len(h) && h[i+1].To != tr.From {
				t.Errorf("%s: broken chain at %d: %s→%s after %s→%s", id, i, tr.From, tr.To, h[i+1].From, h[i+1].To)
			}
		}
	}
}

// listFixture creates five clusters whose name, creation and state orders
// all differ. No search term below can occur in a random ID.
func listFixture(e *env) {
	e.t.Helper()
	fixture := []struct {
		name     string
		provider store.Provider
		region   string
		cloudRef string
		state    store.State
	}{
		{"delta", store.ProviderGeneric, "", "", store.StateNotInstalled},
		{"alpha", store.ProviderEKS, "eu-west-1", "arn:aws:eks:eu-west-1:123456789012:cluster/alpha", store.StateConnected},
		{"gamma", store.ProviderGKE, "europe-west1", "projects/demo/locations/europe-west1/clusters/gamma", store.StateConnected},
		{"beta", store.ProviderAKS, "westeurope", "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/beta", store.StateFailing},
		{"epsilon", store.ProviderEKS, "us-east-1", "arn:aws:eks:us-east-1:123456789012:cluster/epsilon", store.StateDisconnected},
	}
	for _, f := range fixture {
		e.clock.Advance(time.Minute)
		c, err := e.s.CreateCluster(e.ctx, store.NewCluster{Name: f.name, Provider: f.provider, Region: f.region, CloudRef: f.cloudRef, AgentCredentialHash: Hash(f.name)})
		if err != nil {
			e.t.Fatal(err)
		}
		if f.state != store.StateNotInstalled {
			e.update(c.ID, store.StatusUpdate{State: f.state})
		}
	}
}

func names(cs []store.Cluster) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func testListClusters(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	listFixture(e)
	all := []string{"alpha", "beta", "delta", "epsilon", "gamma"}
	tests := []struct {
		name  string
		opts  store.ListOptions
		want  []string
		total int
	}{
		{"default is by name", store.ListOptions{}, all, 5},
		{"by name descending", store.ListOptions{Desc: true}, []string{"gamma", "epsilon", "delta", "beta", "alpha"}, 5},
		{"by creation", store.ListOptions{SortBy: store.SortByCreated}, []string{"delta", "alpha", "gamma", "beta", "epsilon"}, 5},
		{"by creation descending", store.ListOptions{SortBy: store.SortByCreated, Desc: true}, []string{"epsilon", "beta", "gamma", "alpha", "delta"}, 5},
		{"by state then name", store.ListOptions{SortBy: store.SortByState}, []string{"alpha", "gamma", "epsilon", "beta", "delta"}, 5},
		{"by state descending", store.ListOptions{SortBy: store.SortByState, Desc: true}, []string{"delta", "beta", "epsilon", "gamma", "alpha"}, 5},
		{"search name", store.ListOptions{Search: "alpha"}, []string{"alpha"}, 1},
		{"search ignores case", store.ListOptions{Search: "EPSIL"}, []string{"epsilon"}, 1},
		{"search region", store.ListOptions{Search: "WEST-1"}, []string{"alpha"}, 1},
		{"search region and cloud ref", store.ListOptions{Search: "-1:"}, []string{"alpha", "epsilon"}, 2},
		{"search cloud ref", store.ListOptions{Search: "Microsoft.ContainerService"}, []string{"beta"}, 1},
		{"search of two characters", store.ListOptions{Search: "-1"}, []string{"alpha", "epsilon"}, 2},
		{"search of two characters ignores case", store.ListOptions{Search: "T."}, []string{"beta"}, 1},
		{"search quote is literal", store.ListOptions{Search: `"beta`}, []string{}, 0},
		{"search star is literal", store.ListOptions{Search: "alp*"}, []string{}, 0},
		{"search percent is literal", store.ListOptions{Search: "%"}, []string{}, 0},
		{"search underscore is literal", store.ListOptions{Search: "_"}, []string{}, 0},
		{"search backslash is literal", store.ListOptions{Search: `\`}, []string{}, 0},
		{"provider", store.ListOptions{Provider: store.ProviderEKS}, []string{"alpha", "epsilon"}, 2},
		{"state", store.ListOptions{State: store.StateConnected}, []string{"alpha", "gamma"}, 2},
		{"state descending", store.ListOptions{State: store.StateConnected, Desc: true}, []string{"gamma", "alpha"}, 2},
		{"all filters", store.ListOptions{State: store.StateConnected, Provider: store.ProviderGKE, Search: "europe-west1"}, []string{"gamma"}, 1},
		{"first page", store.ListOptions{Limit: 2}, []string{"alpha", "beta"}, 5},
		{"second page", store.ListOptions{Limit: 2, Offset: 2}, []string{"delta", "epsilon"}, 5},
		{"last page", store.ListOptions{Limit: 2, Offset: 4}, []string{"gamma"}, 5},
		{"past the end", store.ListOptions{Limit: 2, Offset: 5}, []string{}, 5},
		{"far past the end", store.ListOptions{Offset: 1000}, []string{}, 5},
		{"filtered page", store.ListOptions{Provider: store.ProviderEKS, Limit: 1, Offset: 1}, []string{"epsilon"}, 2},
	}
	for _, tt := range tests {
		page, err := e.s.ListClusters(e.ctx, tt.opts)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := names(page.Clusters); !slices.Equal(got, tt.want) || page.Total != tt.total {
			t.Errorf("%s: got %v (total %d), want %v (total %d)", tt.name, got, page.Total, tt.want, tt.total)
		}
	}
	// Listed clusters carry the same data, status included, as GetCluster.
	page, err := e.s.ListClusters(e.ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range page.Clusters {
		wantEqual(t, "listed "+c.Name, c, e.get(c.ID))
	}
}

// testSearchFollowsChanges checks that search sees creations and deletions
// at once, whatever index a backend keeps for it.
func testSearchFollowsChanges(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	search := func(term string) []string {
		t.Helper()
		page, err := e.s.ListClusters(e.ctx, store.ListOptions{Search: term})
		if err != nil {
			t.Fatal(err)
		}
		return names(page.Clusters)
	}
	listFixture(e)
	gamma, err := e.s.GetClusterByName(e.ctx, "gamma")
	if err != nil {
		t.Fatal(err)
	}
	if got := search(gamma.ID); !slices.Equal(got, []string{"gamma"}) {
		t.Errorf("search by ID %s = %v", gamma.ID, got)
	}
	if err := e.s.DeleteCluster(e.ctx, gamma.ID); err != nil {
		t.Fatal(err)
	}
	for _, term := range []string{"gamma", "europe-west1", gamma.ID} {
		if got := search(term); len(got) != 0 {
			t.Errorf("after delete, search %q = %v", term, got)
		}
	}
	nc := newCluster("gamma")
	nc.Region = "asia-east1"
	if _, err := e.s.CreateCluster(e.ctx, nc); err != nil {
		t.Fatal(err)
	}
	// Status updates and other changes leave the search index consistent.
	for _, c := range []string{"alpha", "gamma"} {
		cl, err := e.s.GetClusterByName(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		e.update(cl.ID, store.StatusUpdate{State: store.StateFailing, Reason: "gamma ray"})
		if err := e.s.SetCloudHealth(e.ctx, cl.ID, "gamma"); err != nil {
			t.Fatal(err)
		}
	}
	if got := search("gamma"); !slices.Equal(got, []string{"gamma"}) {
		t.Errorf("after re-create, search gamma = %v", got)
	}
	if got := search("asia-east"); !slices.Equal(got, []string{"gamma"}) {
		t.Errorf("after re-create, search asia-east = %v", got)
	}
	if got := search("europe-west1"); len(got) != 0 {
		t.Errorf("after re-create, search for the old region = %v", got)
	}
}

func testListValidation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	for name, opts := range map[string]store.ListOptions{
		"unknown sort key": {SortBy: "size"},
		"negative limit":   {Limit: -1},
		"limit too large":  {Limit: store.MaxPageSize + 1},
		"negative offset":  {Offset: -1},
		"unknown provider": {Provider: "openshift"},
		"unknown state":    {State: "Happy"},
		"search too long":  {Search: strings.Repeat("s", store.MaxSearchLen+1)},
	} {
		_, err := e.s.ListClusters(e.ctx, opts)
		wantErr(t, name, err, store.ErrInvalid)
	}
}

// Populate creates n clusters named cluster-00000 and up, in a shuffled
// order one millisecond apart, so that name and creation orders differ.
// Every seventh cluster (by name) is set Connected. It returns the names in
// creation order.
func Populate(tb testing.TB, s store.Store, clock *Clock, n int) []string {
	tb.Helper()
	ctx := tb.Context()
	order := rand.New(rand.NewPCG(42, 42)).Perm(n)
	created := make([]string, 0, n)
	for _, i := range order {
		clock.Advance(time.Millisecond)
		name := fmt.Sprintf("cluster-%05d", i)
		c, err := s.CreateCluster(ctx, store.NewCluster{
			Name:                name,
			Provider:            store.Providers()[i%4],
			Region:              fmt.Sprintf("region-%d", i%10),
			CloudRef:            "ref/" + name,
			AgentCredentialHash: Hash(name),
		})
		if err != nil {
			tb.Fatal(err)
		}
		if i%7 == 0 {
			if _, err := s.UpdateStatus(ctx, c.ID, store.StatusUpdate{State: store.StateConnected, Heartbeat: true}); err != nil {
				tb.Fatal(err)
			}
		}
		created = append(created, name)
	}
	return created
}

func testList10k(t *testing.T, open OpenFunc) {
	if testing.Short() {
		t.Skip("creates 10,000 clusters")
	}
	const n = 10_000
	e := newEnv(t, open, store.Config{})
	start := time.Now()
	created := Populate(t, e.s, e.clock, n)
	t.Logf("created %d clusters in %v", n, time.Since(start))

	list := func(opts store.ListOptions) store.ClusterPage {
		t.Helper()
		page, err := e.s.ListClusters(e.ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		return page
	}
	byName := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("cluster-%05d", i))
		}
		return out
	}
	start = time.Now()
	page := list(store.ListOptions{})
	t.Logf("first page of 50 by name in %v", time.Since(start))
	if page.Total != n || !slices.Equal(names(page.Clusters), byName(0, 50)) {
		t.Errorf("first page: total %d, names %v", page.Total, names(page.Clusters))
	}
	if page := list(store.ListOptions{Offset: n - 50}); !slices.Equal(names(page.Clusters), byName(n-50, n)) {
		t.Errorf("last page: %v", names(page.Clusters))
	}
	if page := list(store.ListOptions{Desc: true, Limit: 1}); names(page.Clusters)[0] != "cluster-09999" {
		t.Errorf("descending starts with %v", names(page.Clusters))
	}
	if page := list(store.ListOptions{Search: "cluster-0999"}); page.Total != 10 || !slices.Equal(names(page.Clusters), byName(9990, 10000)) {
		t.Errorf("search: total %d, names %v", page.Total, names(page.Clusters))
	}
	if page := list(store.ListOptions{Search: "CLUSTER-", Offset: 5000}); page.Total != n || !slices.Equal(names(page.Clusters), byName(5000, 5050)) {
		t.Errorf("search matching all: total %d, names %v", page.Total, names(page.Clusters))
	}
	if page := list(store.ListOptions{Search: "ster-01", SortBy: store.SortByCreated, Limit: store.MaxPageSize}); page.Total != 1000 || len(page.Clusters) != 1000 {
		t.Errorf("search matching 1000: total %d, %d listed", page.Total, len(page.Clusters))
	}
	connected := (n + 6) / 7
	if page := list(store.ListOptions{State: store.StateConnected, Limit: 1}); page.Total != connected {
		t.Errorf("state filter: total %d, want %d", page.Total, connected)
	}
	if page := list(store.ListOptions{SortBy: store.SortByState, Limit: 2, Offset: connected - 1}); page.Clusters[0].Status.State != store.StateConnected || page.Clusters[1].Status.State != store.StateNotInstalled {
		t.Errorf("by state: the %d Connected clusters do not come first", connected)
	}

	// Paging through everything by creation time sees each cluster once,
	// in creation order.
	var all []string
	for offset := 0; offset < n; offset += store.MaxPageSize {
		all = append(all, names(list(store.ListOptions{SortBy: store.SortByCreated, Limit: store.MaxPageSize, Offset: offset}).Clusters)...)
	}
	if !slices.Equal(all, created) {
		t.Errorf("paging by creation returned %d clusters, not in creation order", len(all))
	}
}

func testTokenLifecycle(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	count := func(want int) {
		t.Helper()
		n, err := e.s.CountTokens(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("CountTokens = %d, want %d", n, want)
		}
	}
	count(0)
	if tokens, err := e.s.ListTokens(e.ctx); err != nil || len(tokens) != 0 {
		t.Fatalf("ListTokens on an empty store = %v, %v", tokens, err)
	}

	created := e.clock.Stored()
	admin, err := e.s.CreateToken(e.ctx, store.NewToken{Name: "admin", Role: store.RoleAdmin, Hash: Hash("admin token")})
	if err != nil {
		t.Fatal(err)
	}
	if !store.ValidID(store.TokenIDPrefix, admin.ID) {
		t.Errorf("token ID %q is not t- and 10 base32 characters", admin.ID)
	}
	want := store.Token{ID: admin.ID, Name: "admin", Role: store.RoleAdmin, Groups: []string{}, Hash: Hash("admin token"), CreatedAt: created}
	wantEqual(t, "CreateToken", admin, want)
	got, err := e.s.TokenByHash(e.ctx, Hash("admin token"))
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "TokenByHash", got, want)
	count(1)

	_, err = e.s.CreateToken(e.ctx, store.NewToken{Name: "mallory", Role: store.RoleMember, Hash: Hash("admin token")})
	wantErr(t, "duplicate token hash", err, store.ErrConflict)

	e.clock.Advance(time.Second)
	viewer, err := e.s.CreateToken(e.ctx, store.NewToken{Name: "alice@example.com", Role: store.RoleMember, Hash: Hash("viewer token")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.s.CreateToken(e.ctx, store.NewToken{Name: "admin", Role: store.RoleAdmin, Hash: Hash("second admin token")})
	if err != nil {
		t.Fatalf("a second token for the same user: %v", err)
	}
	count(3)

	for range 2 {
		want.LastUsedAt = e.clock.Advance(time.Minute)
		if err := e.s.TouchToken(e.ctx, admin.ID); err != nil {
			t.Fatal(err)
		}
		got, err := e.s.TokenByHash(e.ctx, Hash("admin token"))
		if err != nil {
			t.Fatal(err)
		}
		wantEqual(t, "token after TouchToken", got, want)
	}

	want.RevokedAt = e.clock.Advance(time.Minute)
	if err := e.s.RevokeToken(e.ctx, admin.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.TokenByHash(e.ctx, Hash("admin token"))
	wantErr(t, "TokenByHash of a revoked token", err, store.ErrNotFound)
	count(2)
	e.clock.Advance(time.Minute)
	if err := e.s.RevokeToken(e.ctx, admin.ID); err != nil {
		t.Errorf("revoking twice: %v", err)
	}

	tokens, err := e.s.ListTokens(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 3 {
		t.Fatalf("ListTokens returned %d tokens, want 3", len(tokens))
	}
	wantEqual(t, "revoked token in ListTokens", tokens[0], want)
	if !tokens[0].Revoked() || tokens[1].Revoked() {
		t.Errorf("Revoked() = %v, %v; want true, false", tokens[0].Revoked(), tokens[1].Revoked())
	}
	if ids := []string{tokens[1].ID, tokens[2].ID}; !slices.Contains(ids, viewer.ID) || !slices.Contains(ids, second.ID) {
		t.Errorf("ListTokens = %+v, want admin first, then the others", tokens)
	}
}

func testTokenValidation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	valid := store.NewToken{Name: "admin", Role: store.RoleAdmin, Hash: Hash("t")}
	tests := []struct {
		name   string
		modify func(*store.NewToken)
	}{
		{"empty name", func(n *store.NewToken) { n.Name = "" }},
		{"system: user", func(n *store.NewToken) { n.Name = "system:kube-scheduler" }},
		{"space", func(n *store.NewToken) { n.Name = "ad min" }},
		{"slash", func(n *store.NewToken) { n.Name = "a/b" }},
		{"long name", func(n *store.NewToken) { n.Name = strings.Repeat("a", store.MaxTokenNameLen+1) }},
		{"empty role", func(n *store.NewToken) { n.Role = "" }},
		{"unknown role", func(n *store.NewToken) { n.Role = "root" }},
		{"no hash", func(n *store.NewToken) { n.Hash = nil }},
		{"short hash", func(n *store.NewToken) { n.Hash = []byte("abc") }},
		{"viewer, the role before schema 2", func(n *store.NewToken) { n.Role = "viewer" }},
		{"group with a space", func(n *store.NewToken) { n.Groups = []string{"dev ops"} }},
		{"empty group", func(n *store.NewToken) { n.Groups = []string{""} }},
		{"too many groups", func(n *store.NewToken) { n.Groups = slices.Repeat([]string{"g"}, store.MaxTokenGroups+1) }},
		{"scope of a non-cluster ID", func(n *store.NewToken) { n.Scope.Clusters = []string{"t-aaaaaaaaaa"} }},
		{"scope of a garbage ID", func(n *store.NewToken) { n.Scope.Clusters = []string{"c-'; DROP"} }},
	}
	for _, tt := range tests {
		in := valid
		tt.modify(&in)
		_, err := e.s.CreateToken(e.ctx, in)
		wantErr(t, tt.name, err, store.ErrInvalid)
	}
	if n, err := e.s.CountTokens(e.ctx); err != nil || n != 0 {
		t.Errorf("invalid input created tokens: %d, %v", n, err)
	}
}

func testClose(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("closing")
	if err := e.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := e.s.GetCluster(e.ctx, c.ID); err == nil {
		t.Error("GetCluster after Close succeeded")
	}
}

func testCanceledContext(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("impatient")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	_, err := e.s.GetCluster(ctx, c.ID)
	wantErr(t, "GetCluster", err, context.Canceled)
	_, err = e.s.UpdateStatus(ctx, c.ID, store.StatusUpdate{State: store.StateConnected})
	wantErr(t, "UpdateStatus", err, context.Canceled)
	if got := e.get(c.ID).Status.State; got != store.StateNotInstalled {
		t.Errorf("canceled update was applied: state %s", got)
	}
}

func testTokenExpiryAndScope(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	expires := e.clock.Now().Add(time.Hour)
	nt := store.NewToken{
		Name: "alice", Role: store.RoleMember, Groups: []string{"devs", "oidc:ops"}, Hash: Hash("scoped"),
		ExpiresAt: expires, Scope: store.TokenScope{Clusters: []string{"c-aaaaaaaaaa", "c-bbbbbbbbbb"}, ReadOnly: true},
	}
	created, err := e.s.CreateToken(e.ctx, nt)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Token{
		ID: created.ID, Name: "alice", Role: store.RoleMember, Groups: []string{"devs", "oidc:ops"}, Hash: Hash("scoped"),
		CreatedAt: e.clock.Stored(), ExpiresAt: store.Timestamp(expires), Scope: nt.Scope,
	}
	wantEqual(t, "CreateToken", created, want)
	got, err := e.s.TokenByHash(e.ctx, Hash("scoped"))
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "TokenByHash", got, want)
	if got.Expired(e.clock.Now()) {
		t.Error("Expired before ExpiresAt")
	}

	// An empty, non-nil scope reaches no cluster: it stays non-nil.
	none, err := e.s.CreateToken(e.ctx, store.NewToken{Name: "nobody", Role: store.RoleMember, Hash: Hash("none"), Scope: store.TokenScope{Clusters: []string{}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err = e.s.TokenByHash(e.ctx, Hash("none"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Scope.Clusters == nil || len(got.Scope.Clusters) != 0 || none.Scope.Clusters == nil {
		t.Errorf("empty scope read back as %#v (created %#v), want an empty non-nil slice", got.Scope.Clusters, none.Scope.Clusters)
	}
	wantCount := func(want int) {
		t.Helper()
		if n, err := e.s.CountTokens(e.ctx); err != nil || n != want {
			t.Errorf("CountTokens = %d, %v; want %d", n, err, want)
		}
	}
	wantCount(2)

	// At ExpiresAt the token stops matching, like a revoked one, and no
	// longer counts; ListTokens still shows it.
	e.clock.Advance(time.Hour)
	if !want.Expired(e.clock.Now()) {
		t.Error("not Expired at ExpiresAt")
	}
	_, err = e.s.TokenByHash(e.ctx, Hash("scoped"))
	wantErr(t, "TokenByHash of an expired token", err, store.ErrNotFound)
	wantCount(1)
	tokens, err := e.s.ListTokens(e.ctx)
	if err != nil || len(tokens) != 2 {
		t.Fatalf("ListTokens = %v, %v; want 2 tokens", tokens, err)
	}
	i := slices.IndexFunc(tokens, func(t store.Token) bool { return t.ID == want.ID })
	if i < 0 {
		t.Fatalf("ListTokens = %+v, want the expired token in it", tokens)
	}
	wantEqual(t, "expired token in ListTokens", tokens[i], want)

	// Pruning deletes only what expired before the given time.
	if n, err := e.s.DeleteExpiredTokens(e.ctx, store.Timestamp(expires)); err != nil || n != 0 {
		t.Errorf("DeleteExpiredTokens at the expiry itself = %d, %v; want 0", n, err)
	}
	if n, err := e.s.DeleteExpiredTokens(e.ctx, e.clock.Now().Add(time.Second)); err != nil || n != 1 {
		t.Errorf("DeleteExpiredTokens = %d, %v; want 1", n, err)
	}
	if tokens, err := e.s.ListTokens(e.ctx); err != nil || len(tokens) != 1 || tokens[0].ID != none.ID {
		t.Errorf("after pruning ListTokens = %+v, %v; want only the token that never expires", tokens, err)
	}
}

func testGrantLifecycle(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, b := e.create("grant-a"), e.create("grant-b")
	if gs, err := e.s.ListGrants(e.ctx, ""); err != nil || len(gs) != 0 {
		t.Fatalf("ListGrants on an empty store = %v, %v", gs, err)
	}
	mk := func(ng store.NewGrant) store.Grant {
		t.Helper()
		e.clock.Advance(time.Second)
		g, err := e.s.CreateGrant(e.ctx, ng)
		if err != nil {
			t.Fatalf("CreateGrant(%+v): %v", ng, err)
		}
		if !store.ValidID(store.GrantIDPrefix, g.ID) {
			t.Errorf("grant ID %q is not g- and 10 base32 characters", g.ID)
		}
		want := store.Grant{ID: g.ID, Kind: ng.Kind, Subject: ng.Subject, ClusterID: ng.ClusterID, Role: ng.Role, CreatedAt: e.clock.Stored()}
		wantEqual(t, "CreateGrant", g, want)
		return g
	}
	aliceA := mk(store.NewGrant{Kind: store.SubjectUser, Subject: "alice", ClusterID: a.ID, Role: store.ClusterEdit})
	devsAll := mk(store.NewGrant{Kind: store.SubjectGroup, Subject: "devs", Role: store.ClusterView})
	bobB := mk(store.NewGrant{Kind: store.SubjectUser, Subject: "bob", ClusterID: b.ID, Role: store.ClusterAdmin})
	// The same name as a user and as a group are different subjects.
	aliceGroupA := mk(store.NewGrant{Kind: store.SubjectGroup, Subject: "alice", ClusterID: a.ID, Role: store.ClusterAdmin})

	_, err := e.s.CreateGrant(e.ctx, store.NewGrant{Kind: store.SubjectUser, Subject: "alice", ClusterID: a.ID, Role: store.ClusterView})
	wantErr(t, "a second grant to alice on a", err, store.ErrConflict)
	_, err = e.s.CreateGrant(e.ctx, store.NewGrant{Kind: store.SubjectUser, Subject: "alice", ClusterID: "c-aaaaaaaaaa", Role: store.ClusterView})
	wantErr(t, "a grant on a cluster that does not exist", err, store.ErrNotFound)

	list := func(what string, got []store.Grant, err error, want ...store.Grant) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if want == nil {
			want = []store.Grant{}
		}
		wantEqual(t, what, got, want)
	}
	gs, err := e.s.ListGrants(e.ctx, "")
	list("ListGrants", gs, err, aliceA, devsAll, bobB, aliceGroupA)
	gs, err = e.s.ListGrants(e.ctx, a.ID)
	list("ListGrants(a)", gs, err, aliceA, aliceGroupA)
	gs, err = e.s.GrantsFor(e.ctx, "alice", nil)
	list("GrantsFor(alice)", gs, err, aliceA)
	gs, err = e.s.GrantsFor(e.ctx, "alice", []string{"devs", "ops"})
	list("GrantsFor(alice, devs)", gs, err, aliceA, devsAll)
	gs, err = e.s.GrantsFor(e.ctx, "carol", []string{"alice"})
	list("GrantsFor(carol in group alice)", gs, err, aliceGroupA)
	gs, err = e.s.GrantsFor(e.ctx, "mallory", []string{"'); --", "%"})
	list("GrantsFor(mallory)", gs, err)

	if err := e.s.DeleteGrant(e.ctx, devsAll.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "deleting a grant twice", e.s.DeleteGrant(e.ctx, devsAll.ID), store.ErrNotFound)
	// Deleting a cluster deletes its grants; a new cluster does not
	// inherit them.
	if err := e.s.DeleteCluster(e.ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	gs, err = e.s.ListGrants(e.ctx, "")
	list("ListGrants after deleting a", gs, err, bobB)
}

func testGrantValidation(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("validation")
	valid := store.NewGrant{Kind: store.SubjectUser, Subject: "alice", ClusterID: c.ID, Role: store.ClusterView}
	tests := []struct {
		name   string
		modify func(*store.NewGrant)
	}{
		{"empty kind", func(g *store.NewGrant) { g.Kind = "" }},
		{"unknown kind", func(g *store.NewGrant) { g.Kind = "serviceaccount" }},
		{"empty subject", func(g *store.NewGrant) { g.Subject = "" }},
		{"user with a colon", func(g *store.NewGrant) { g.Subject = "system:admin" }},
		{"group with a slash", func(g *store.NewGrant) { g.Kind, g.Subject = store.SubjectGroup, "a/b" }},
		{"bad cluster ID", func(g *store.NewGrant) { g.ClusterID = "cluster-a" }},
		{"empty role", func(g *store.NewGrant) { g.Role = "" }},
		{"cluster-admin is spelled admin", func(g *store.NewGrant) { g.Role = "cluster-admin" }},
	}
	for _, tt := range tests {
		in := valid
		tt.modify(&in)
		_, err := e.s.CreateGrant(e.ctx, in)
		wantErr(t, tt.name, err, store.ErrInvalid)
	}
	if gs, err := e.s.ListGrants(e.ctx, ""); err != nil || len(gs) != 0 {
		t.Errorf("invalid input created grants: %v, %v", gs, err)
	}
}

func testListIDs(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, _, c := e.create("ids-a"), e.create("ids-b"), e.create("ids-c")
	tests := []struct {
		name string
		opts store.ListOptions
		want []string
	}{
		{"nil keeps all", store.ListOptions{}, []string{"ids-a", "ids-b", "ids-c"}},
		{"empty keeps none", store.ListOptions{IDs: []string{}}, []string{}},
		{"two", store.ListOptions{IDs: []string{c.ID, a.ID}}, []string{"ids-a", "ids-c"}},
		{"unknown IDs", store.ListOptions{IDs: []string{"c-aaaaaaaaaa", "x"}}, []string{}},
		{"with a search", store.ListOptions{IDs: []string{a.ID, c.ID}, Search: "ids-c"}, []string{"ids-c"}},
		{"descending", store.ListOptions{IDs: []string{a.ID, c.ID}, Desc: true}, []string{"ids-c", "ids-a"}},
	}
	for _, tt := range tests {
		page, err := e.s.ListClusters(e.ctx, tt.opts)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		wantEqual(t, tt.name, names(page.Clusters), tt.want)
		if page.Total != len(tt.want) {
			t.Errorf("%s: Total = %d, want %d", tt.name, page.Total, len(tt.want))
		}
	}
}

func testIdentity(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	cfg := store.IdentityConfig{OIDCIssuer: "https://oidc.example.com/id/1", RequireApproval: true}
	c, err := e.s.CreateCluster(e.ctx, store.NewCluster{Name: "ident", Provider: store.ProviderEKS,
		AgentCredentialHash: []byte("0123456789abcdef-ident"), Identity: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.get(c.ID); got.Identity != cfg || got.IdentityState != store.IdentityUnpinned {
		t.Fatalf("created with identity %+v (%q), want %+v", got.Identity, got.IdentityState, cfg)
	}
	wantErr(t, "control character in issuer", e.s.SetIdentityConfig(e.ctx, c.ID, store.IdentityConfig{OIDCIssuer: "https://x\n"}), store.ErrInvalid)
	wantErr(t, "unknown cluster", e.s.SetIdentityConfig(e.ctx, "c-nope", cfg), store.ErrNotFound)
	cfg.OIDCIssuer = ""
	if err := e.s.SetIdentityConfig(e.ctx, c.ID, cfg); err != nil {
		t.Fatal(err)
	}

	const iss = "https://kubernetes.default.svc"
	jwks, jwks2 := []byte(`{"keys":[1]}`), []byte(`{"keys":[2]}`)
	wantErr(t, "approve without a pin", e.s.ApproveIdentity(e.ctx, c.ID), store.ErrConflict)
	wantErr(t, "update keys without a pin", e.s.UpdateIdentityKeys(e.ctx, c.ID, iss, jwks2), store.ErrConflict)
	wantErr(t, "empty JWKS", e.s.PinIdentity(e.ctx, c.ID, iss, nil, true), store.ErrInvalid)
	wantErr(t, "oversized JWKS", e.s.PinIdentity(e.ctx, c.ID, iss, make([]byte, store.MaxJWKSLen+1), true), store.ErrInvalid)
	wantErr(t, "pin of an unknown cluster", e.s.PinIdentity(e.ctx, "c-nope", iss, jwks, true), store.ErrNotFound)

	pinnedAt := e.clock.Advance(time.Second)
	if err := e.s.PinIdentity(e.ctx, c.ID, iss, jwks, true); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second pin", e.s.PinIdentity(e.ctx, c.ID, iss, jwks2, false), store.ErrConflict)
	wantErr(t, "update keys while awaiting approval", e.s.UpdateIdentityKeys(e.ctx, c.ID, iss, jwks2), store.ErrConflict)
	id, err := e.s.ClusterIdentity(e.ctx, c.ID)
	if err != nil || id.State != store.IdentityAwaitingApproval || id.Issuer != iss || string(id.JWKS) != string(jwks) || !id.PinnedAt.Equal(pinnedAt) {
		t.Fatalf("after pin: %+v, %v", id, err)
	}
	if got := e.get(c.ID); got.IdentityState != store.IdentityAwaitingApproval {
		t.Fatalf("cluster identity state %q", got.IdentityState)
	}
	if err := e.s.ApproveIdentity(e.ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "approve twice", e.s.ApproveIdentity(e.ctx, c.ID), store.ErrConflict)
	wantErr(t, "update keys of another issuer", e.s.UpdateIdentityKeys(e.ctx, c.ID, "https://evil", jwks2), store.ErrConflict)
	rotatedAt := e.clock.Advance(time.Second)
	if err := e.s.UpdateIdentityKeys(e.ctx, c.ID, iss, jwks2); err != nil {
		t.Fatal(err)
	}
	id, _ = e.s.ClusterIdentity(e.ctx, c.ID)
	if id.State != store.IdentityPinned || string(id.JWKS) != string(jwks2) || !id.PinnedAt.Equal(pinnedAt) || !id.KeysUpdatedAt.Equal(rotatedAt) {
		t.Fatalf("after rotation: %+v", id)
	}
	if err := e.s.ResetIdentity(e.ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	id, _ = e.s.ClusterIdentity(e.ctx, c.ID)
	if id.State != store.IdentityUnpinned || id.Issuer != "" || id.JWKS != nil || !id.PinnedAt.IsZero() || !id.RequireApproval {
		t.Fatalf("after reset: %+v", id)
	}
	if _, err := e.s.ClusterIdentity(e.ctx, "c-nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("identity of an unknown cluster: %v", err)
	}
}

// testIdentityPinRace has many first connects race to pin: exactly one
// wins.
func testIdentityPinRace(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("race")
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			errs[i] = e.s.PinIdentity(e.ctx, c.ID, "https://i", fmt.Appendf(nil, `{"keys":[%d]}`, i), false)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("pin: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d pins won", won)
	}
}

func testNoteStatus(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	c := e.create("noted")
	e.update(c.ID, store.StatusUpdate{State: store.StateConnected, Reason: "agent connected"})
	if err := e.s.NoteStatus(e.ctx, c.ID, "refused an agent"); err != nil {
		t.Fatal(err)
	}
	got := e.get(c.ID)
	if got.Status.State != store.StateConnected || got.Status.Reason != "agent connected" {
		t.Fatalf("a note changed the status to %+v", got.Status)
	}
	h := e.history(c.ID, 1)
	if len(h) != 1 || h[0].From != store.StateConnected || h[0].To != store.StateConnected || h[0].Reason != "refused an agent" {
		t.Fatalf("history %+v", h)
	}
	wantErr(t, "note on an unknown cluster", e.s.NoteStatus(e.ctx, "c-nope", "x"), store.ErrNotFound)
}

// testUpdateCluster: a cluster is renamed (its ID stays, the old name is
// free again, search finds the new one) and its labels replaced or
// cleared; a name taken, an invalid name or label, and an unknown cluster
// are refused and change nothing.
func testUpdateCluster(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, err := e.s.CreateCluster(e.ctx, newCluster("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.CreateCluster(e.ctx, newCluster("beta")); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"env": "prod", "team.example.com/owner": "web", "empty": ""}
	got, err := e.s.UpdateCluster(e.ctx, a.ID, store.ClusterUpdate{Name: "alpha-2", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a.ID || got.Name != "alpha-2" || !reflect.DeepEqual(got.Labels, labels) {
		t.Fatalf("UpdateCluster = %+v", got)
	}
	if read, err := e.s.GetCluster(e.ctx, a.ID); err != nil || read.Name != "alpha-2" || !reflect.DeepEqual(read.Labels, labels) {
		t.Fatalf("GetCluster after update = %+v, %v", read, err)
	}
	if page, err := e.s.ListClusters(e.ctx, store.ListOptions{Search: "alpha-2"}); err != nil || !slices.Equal(names(page.Clusters), []string{"alpha-2"}) {
		t.Errorf("search for the new name = %v, %v", names(page.Clusters), err)
	}
	if _, err := e.s.GetClusterByName(e.ctx, "alpha"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the old name still finds a cluster: %v", err)
	}
	// Labels alone; the name stays.
	if got, err := e.s.UpdateCluster(e.ctx, a.ID, store.ClusterUpdate{Labels: map[string]string{}}); err != nil || got.Name != "alpha-2" || got.Labels != nil {
		t.Errorf("clearing the labels = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name string
		u    store.ClusterUpdate
		id   string
		want error
	}{
		{"a name taken", store.ClusterUpdate{Name: "beta"}, a.ID, store.ErrConflict},
		{"an invalid name", store.ClusterUpdate{Name: "Not_A_Label"}, a.ID, store.ErrInvalid},
		{"eco's label prefix", store.ClusterUpdate{Labels: map[string]string{"eco.dev/cluster-id": "x"}}, a.ID, store.ErrInvalid},
		{"Argo CD's label prefix", store.ClusterUpdate{Labels: map[string]string{"argocd.argoproj.io/secret-type": "cluster"}}, a.ID, store.ErrInvalid},
		{"a bad key", store.ClusterUpdate{Labels: map[string]string{"-env": "x"}}, a.ID, store.ErrInvalid},
		{"a bad prefix", store.ClusterUpdate{Labels: map[string]string{"Bad_Prefix/env": "x"}}, a.ID, store.ErrInvalid},
		{"a bad value", store.ClusterUpdate{Labels: map[string]string{"env": "a b"}}, a.ID, store.ErrInvalid},
		{"a long value", store.ClusterUpdate{Labels: map[string]string{"env": strings.Repeat("v", 64)}}, a.ID, store.ErrInvalid},
		{"an unknown cluster", store.ClusterUpdate{Name: "gamma"}, "c-aaaaaaaaaa", store.ErrNotFound},
	} {
		if _, err := e.s.UpdateCluster(e.ctx, tc.id, tc.u); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	too := map[string]string{}
	for i := range store.MaxLabels + 1 {
		too[fmt.Sprintf("l%d", i)] = "v"
	}
	if _, err := e.s.UpdateCluster(e.ctx, a.ID, store.ClusterUpdate{Labels: too}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("%d labels: %v, want ErrInvalid", len(too), err)
	}
	if read, _ := e.s.GetCluster(e.ctx, a.ID); read.Name != "alpha-2" || read.Labels != nil {
		t.Errorf("after refused updates: %+v", read)
	}
}
