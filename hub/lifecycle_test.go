package hub_test

import (
	"testing"
	"time"

	"github.com/eco-project/eco/hub/lifecycle"
	"github.com/eco-project/eco/store"
)

// TestLifecycleEvents: a hub feature subscribed to the hub sees a
// cluster's life as it happens — imported, connected, disconnected,
// deleted — in order, from the hub's own paths (API, tunnel, status).
func TestLifecycleEvents(t *testing.T) {
	e := newEnv(t)
	events, cancel := e.hub.Subscribe(16)
	defer cancel()
	c := e.createCluster("lived")
	sess, err := e.agent(c.ID, e.credential(c.ID), "fp", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(c.ID, store.StateConnected)
	sess.Close()
	e.waitState(c.ID, store.StateDisconnected)
	if code := e.do("DELETE", "/api/v1/clusters/"+c.ID, e.admin, "", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	want := []lifecycle.Kind{lifecycle.Imported, lifecycle.Connected, lifecycle.Disconnected, lifecycle.Deleted}
	var got []lifecycle.Kind
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.ClusterID != c.ID || ev.At.IsZero() {
				t.Fatalf("event %+v: want cluster %s and a time", ev, c.ID)
			}
			got = append(got, ev.Kind)
		case <-timeout:
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}
