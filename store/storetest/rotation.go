package storetest

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eco-project/eco/store"
)

// testCredentialGenerations: each rotation moves the generation by one,
// keeps the previous hash beside the current one, and the lookup finds the
// cluster by either.
func testCredentialGenerations(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, b := e.create("a"), e.create("b")
	if a.Credential.Generation != 0 || a.Credential.Confirmed != 0 || a.Credential.PreviousHash != nil ||
		!a.Credential.RotatedAt.IsZero() || !a.Credential.PreviousUntil.IsZero() {
		t.Fatalf("new cluster's credential state = %+v, want zero", a.Credential)
	}
	until := e.clock.Now().Add(10 * time.Minute)
	got, err := e.s.NextCredentialGeneration(e.ctx, a.ID, 0, Hash("a-1"), until)
	if err != nil {
		t.Fatal(err)
	}
	want := store.CredentialState{Generation: 1, Confirmed: 0, RotatedAt: e.clock.Stored(),
		PreviousHash: a.AgentCredentialHash, PreviousUntil: store.Timestamp(until)}
	wantEqual(t, "credential state after rotation", got.Credential, want)
	if !bytes.Equal(got.AgentCredentialHash, Hash("a-1")) {
		t.Fatalf("hash after rotation = %x, want the new one", got.AgentCredentialHash)
	}
	wantEqual(t, "GetCluster after rotation", e.get(a.ID).Credential, want)

	for _, tt := range []struct {
		name string
		hash []byte
		want string
	}{
		{"current hash", Hash("a-1"), a.ID},
		{"previous hash", a.AgentCredentialHash, a.ID},
		{"other cluster's hash", b.AgentCredentialHash, b.ID},
	} {
		c, err := e.s.ClusterByCredentialHash(e.ctx, tt.hash)
		if err != nil || c.ID != tt.want {
			t.Fatalf("ClusterByCredentialHash(%s) = %q, %v; want %q", tt.name, c.ID, err, tt.want)
		}
	}

	// A second rotation drops generation 0's hash.
	e.clock.Advance(time.Minute)
	if _, err := e.s.NextCredentialGeneration(e.ctx, a.ID, 1, Hash("a-2"), until); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.ClusterByCredentialHash(e.ctx, a.AgentCredentialHash)
	wantErr(t, "generation 0 after two rotations", err, store.ErrNotFound)
	c, err := e.s.ClusterByCredentialHash(e.ctx, Hash("a-1"))
	if err != nil || c.Credential.Generation != 2 || !bytes.Equal(c.Credential.PreviousHash, Hash("a-1")) {
		t.Fatalf("generation 1 after two rotations: %+v, %v", c.Credential, err)
	}

	// Confirmation only moves forward and never past the generation.
	for _, tt := range []struct {
		confirm, want int64
	}{{1, 1}, {3, 1}, {0, 1}, {2, 2}, {1, 2}} {
		if err := e.s.ConfirmCredential(e.ctx, a.ID, tt.confirm); err != nil {
			t.Fatal(err)
		}
		if got := e.get(a.ID).Credential.Confirmed; got != tt.want {
			t.Fatalf("after confirming %d: confirmed = %d, want %d", tt.confirm, got, tt.want)
		}
	}
	if got := e.get(b.ID).Credential; got.Generation != 0 || got.Confirmed != 0 {
		t.Fatalf("the other cluster changed: %+v", got)
	}
}

// testCredentialGenerationErrors: stale generations, other clusters'
// hashes, bad input and unknown clusters.
func testCredentialGenerationErrors(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a, b := e.create("a"), e.create("b")
	until := e.clock.Now().Add(time.Minute)
	for _, tt := range []struct {
		name string
		id   string
		from int64
		hash []byte
		want error
	}{
		{"stale generation", a.ID, 1, Hash("x"), store.ErrConflict},
		{"other cluster's hash", a.ID, 0, b.AgentCredentialHash, store.ErrConflict},
		{"short hash", a.ID, 0, []byte("short"), store.ErrInvalid},
		{"negative generation", a.ID, -1, Hash("x"), store.ErrInvalid},
		{"unknown cluster", "c-aaaaaaaaaa", 0, Hash("x"), store.ErrNotFound},
	} {
		_, err := e.s.NextCredentialGeneration(e.ctx, tt.id, tt.from, tt.hash, until)
		wantErr(t, tt.name, err, tt.want)
	}
	wantErr(t, "confirming an unknown cluster", e.s.ConfirmCredential(e.ctx, "c-aaaaaaaaaa", 1), store.ErrNotFound)
	if got := e.get(a.ID); got.Credential.Generation != 0 || !bytes.Equal(got.AgentCredentialHash, a.AgentCredentialHash) {
		t.Fatalf("failed rotations changed the cluster: %+v", got.Credential)
	}
}

// testCredentialGenerationRace: of concurrent rotations from the same
// generation exactly one wins.
func testCredentialGenerationRace(t *testing.T, open OpenFunc) {
	e := newEnv(t, open, store.Config{})
	a := e.create("a")
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.s.NextCredentialGeneration(e.ctx, a.ID, 0, Hash(string(rune('a'+i))), e.clock.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("losing rotation: got %v, want ErrConflict", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d rotations from generation 0 succeeded, want 1", wins)
	}
	if g := e.get(a.ID).Credential.Generation; g != 1 {
		t.Fatalf("generation = %d, want 1", g)
	}
}
