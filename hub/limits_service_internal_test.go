package hub

import "testing"

// A service identity's per-user caps count per cluster; a person's across
// all clusters.
func TestServiceIdentityCapsPerCluster(t *testing.T) {
	tests := []struct {
		user       string
		wantSecond string // the cap refusing a watch in a second cluster, "" if none
	}{
		{"service:argocd", ""},
		{"alice", capUserWatches},
	}
	for _, tt := range tests {
		c := newStreamCaps(Limits{StreamsPerUser: 10, StreamsPerCluster: 10, WatchesPerUser: 1, WatchesPerCluster: 10})
		if _, refused := c.acquire(tt.user, "c-aaaaaaaaaa", true); refused != "" {
			t.Fatalf("%s: first watch refused by %s", tt.user, refused)
		}
		if _, refused := c.acquire(tt.user, "c-aaaaaaaaaa", true); refused != capUserWatches {
			t.Errorf("%s: second watch in the same cluster refused by %q, want %q", tt.user, refused, capUserWatches)
		}
		if _, refused := c.acquire(tt.user, "c-bbbbbbbbbb", true); refused != tt.wantSecond {
			t.Errorf("%s: a watch in another cluster refused by %q, want %q", tt.user, refused, tt.wantSecond)
		}
	}
}
