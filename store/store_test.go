package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/eco-project/eco/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestValidateClusterName(t *testing.T) {
	valid := []string{"a", "0", "prod", "prod-eu-1", "1st", "a--b", strings.Repeat("a", 63)}
	invalid := []string{"", "-a", "a-", "A", "prod_eu", "prod.eu", "prod eu", "prød", "a/b", strings.Repeat("a", 64)}
	for _, name := range valid {
		if err := store.ValidateClusterName(name); err != nil {
			t.Errorf("ValidateClusterName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range invalid {
		if err := store.ValidateClusterName(name); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ValidateClusterName(%q) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestValidateUserName(t *testing.T) {
	valid := []string{"admin", "alice@example.com", "ci-bot_2", "a+b", "A.B", "service:argocd"}
	invalid := []string{"", "system:admin", "eco:admins", "service:", "service:service:x", "service:a:b", "service:system:admin", "a b", "a/b", "é", strings.Repeat("a", store.MaxTokenNameLen+1)}
	for _, name := range valid {
		if err := store.ValidateUserName(name); err != nil {
			t.Errorf("ValidateUserName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range invalid {
		if err := store.ValidateUserName(name); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ValidateUserName(%q) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestEnums(t *testing.T) {
	for _, p := range store.Providers() {
		if !p.Valid() {
			t.Errorf("provider %q is listed but not valid", p)
		}
	}
	for _, s := range store.States() {
		if !s.Valid() {
			t.Errorf("state %q is listed but not valid", s)
		}
	}
	// The state names are part of the API (JSON, UI, history rows).
	want := []store.State{"NotInstalled", "Connected", "Disconnected", "Failing", "Removed"}
	if got := store.States(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("States() = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "EKS", "openshift"} {
		if store.Provider(bad).Valid() {
			t.Errorf("provider %q is valid", bad)
		}
	}
	if !store.RoleAdmin.Valid() || !store.RoleMember.Valid() || store.Role("root").Valid() {
		t.Error("Role.Valid is wrong")
	}
}

func TestIDs(t *testing.T) {
	seen := make(map[string]bool)
	for range 10_000 {
		id := store.NewClusterID()
		if !store.ValidID(store.ClusterIDPrefix, id) || len(id) != 12 {
			t.Fatalf("NewClusterID() = %q, want c- and 10 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewClusterID() repeated %q", id)
		}
		seen[id] = true
	}
	if id := store.NewTokenID(); !store.ValidID(store.TokenIDPrefix, id) {
		t.Errorf("NewTokenID() = %q", id)
	}
	for _, bad := range []string{"", "c-", "c-abc", "t-abcdefghij", "c-ABCDEFGHIJ", "c-abcdefghi1", "c-abcdefghijk"} {
		if store.ValidID(store.ClusterIDPrefix, bad) {
			t.Errorf("ValidID(c-, %q) = true", bad)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	fixed := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", -7*3600))
	cfg := store.Config{Now: func() time.Time { return fixed }}.WithDefaults()
	want := time.Date(2025, 1, 2, 10, 4, 5, 123456000, time.UTC)
	if got := cfg.Now(); got != want {
		t.Errorf("Now() = %v, want %v (UTC, microseconds)", got, want)
	}
	if cfg.Logger == nil || cfg.HistoryLimit != store.DefaultHistoryLimit {
		t.Errorf("defaults not filled in: %+v", cfg)
	}
	if got := (store.Config{HistoryLimit: -1}).WithDefaults().HistoryLimit; got != -1 {
		t.Errorf("HistoryLimit -1 became %d", got)
	}
	now := store.Config{}.WithDefaults().Now()
	if now.Location() != time.UTC || now.Nanosecond()%1000 != 0 || now != now.Round(0) {
		t.Errorf("default Now() = %v, want UTC microseconds without monotonic reading", now)
	}
}

func TestListOptionsWithDefaults(t *testing.T) {
	got, err := store.ListOptions{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.SortBy != store.SortByName || got.Limit != store.DefaultPageSize {
		t.Errorf("defaults: %+v", got)
	}
}

func TestApply(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	connected := store.Status{State: store.StateConnected, Reason: "up", Since: t0, LastHeartbeat: t0, RTT: time.Millisecond, AgentVersion: "v1", KubernetesVersion: "v1.34.4"}
	tests := []struct {
		name    string
		update  store.StatusUpdate
		want    store.Status
		changed bool
	}{
		{
			"heartbeat",
			store.StatusUpdate{State: store.StateConnected, Heartbeat: true, RTT: 5 * time.Millisecond},
			store.Status{State: store.StateConnected, Reason: "up", Since: t0, LastHeartbeat: now, RTT: 5 * time.Millisecond, AgentVersion: "v1", KubernetesVersion: "v1.34.4"},
			false,
		},
		{
			"same state, new reason",
			store.StatusUpdate{State: store.StateConnected, Reason: "still up"},
			store.Status{State: store.StateConnected, Reason: "still up", Since: t0, LastHeartbeat: t0, RTT: time.Millisecond, AgentVersion: "v1", KubernetesVersion: "v1.34.4"},
			false,
		},
		{
			"state change keeps heartbeat and versions",
			store.StatusUpdate{State: store.StateDisconnected, Reason: "heartbeat lost"},
			store.Status{State: store.StateDisconnected, Reason: "heartbeat lost", Since: now, LastHeartbeat: t0, RTT: time.Millisecond, AgentVersion: "v1", KubernetesVersion: "v1.34.4"},
			true,
		},
		{
			"state change without reason clears it",
			store.StatusUpdate{State: store.StateFailing},
			store.Status{State: store.StateFailing, Since: now, LastHeartbeat: t0, RTT: time.Millisecond, AgentVersion: "v1", KubernetesVersion: "v1.34.4"},
			true,
		},
		{
			"new versions",
			store.StatusUpdate{State: store.StateConnected, AgentVersion: "v2", KubernetesVersion: "v1.35.0"},
			store.Status{State: store.StateConnected, Reason: "up", Since: t0, LastHeartbeat: t0, RTT: time.Millisecond, AgentVersion: "v2", KubernetesVersion: "v1.35.0"},
			false,
		},
	}
	for _, tt := range tests {
		got, changed := connected.Apply(tt.update, now)
		if got != tt.want || changed != tt.changed {
			t.Errorf("%s:\n got %+v, %v\nwant %+v, %v", tt.name, got, changed, tt.want, tt.changed)
		}
	}
}

func TestApplyTruncates(t *testing.T) {
	for _, n := range []int{store.MaxReasonLen - 1, store.MaxReasonLen, store.MaxReasonLen + 1, 5000} {
		for _, unit := range []string{"a", "é", "€", "😀"} {
			reason := strings.Repeat(unit, n/len(unit)+1)[:n]
			reason = strings.ToValidUTF8(reason, "")
			got, _ := store.Status{}.Apply(store.StatusUpdate{State: store.StateFailing, Reason: reason}, time.Time{})
			if len(got.Reason) > store.MaxReasonLen || !utf8.ValidString(got.Reason) || !strings.HasPrefix(reason, got.Reason) {
				t.Errorf("%d×%q: reason of %d bytes, valid %v", n, unit, len(got.Reason), utf8.ValidString(got.Reason))
			}
			if len(reason) <= store.MaxReasonLen && got.Reason != reason {
				t.Errorf("%d×%q: short reason changed", n, unit)
			}
		}
	}
}

func TestStatusUpdateValidate(t *testing.T) {
	for _, u := range []store.StatusUpdate{{}, {State: "connected"}, {State: store.StateConnected, RTT: -1}} {
		if err := u.Validate(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", u, err)
		}
	}
}

// A heartbeat leaves the state and its since-time alone; a state change
// starts a new since-time, and the caller records a transition.
func ExampleStatus_Apply() {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	st := store.InitialStatus(t0)

	st, changed := st.Apply(store.StatusUpdate{State: store.StateConnected, Reason: "agent connected", Heartbeat: true}, t0.Add(time.Minute))
	fmt.Println(st.State, st.Since.Format(time.TimeOnly), changed)

	st, changed = st.Apply(store.StatusUpdate{State: store.StateConnected, Heartbeat: true, RTT: 8 * time.Millisecond}, t0.Add(2*time.Minute))
	fmt.Println(st.State, st.Since.Format(time.TimeOnly), st.LastHeartbeat.Format(time.TimeOnly), st.Reason, changed)
	// Output:
	// Connected 12:01:00 true
	// Connected 12:01:00 12:02:00 agent connected false
}
