package store

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// State is the operator state of a cluster: how the hub sees its agent.
type State string

// The operator states.
const (
	// StateNotInstalled: the agent has never connected. Every new cluster
	// starts here.
	StateNotInstalled State = "NotInstalled"
	// StateConnected: the tunnel is up and heartbeats arrive.
	StateConnected State = "Connected"
	// StateDisconnected: the agent was connected, but its heartbeats stopped.
	StateDisconnected State = "Disconnected"
	// StateFailing: the tunnel is up, but the agent cannot reach its API
	// server or is not allowed to.
	StateFailing State = "Failing"
	// StateRemoved: the agent said goodbye because its namespace is being
	// deleted.
	StateRemoved State = "Removed"
)

// ReasonNeverConnected is the reason of a new cluster's NotInstalled state.
const ReasonNeverConnected = "agent has never connected"

// Limits on status text, in bytes. Longer values are truncated, not rejected:
// a status change must never be lost to an overlong error message.
const (
	MaxReasonLen  = 1024
	MaxVersionLen = 128
)

// States lists every valid [State].
func States() []State {
	return []State{StateNotInstalled, StateConnected, StateDisconnected, StateFailing, StateRemoved}
}

// Valid reports whether s is one of [States].
func (s State) Valid() bool {
	switch s {
	case StateNotInstalled, StateConnected, StateDisconnected, StateFailing, StateRemoved:
		return true
	}
	return false
}

// Status is the current operator status of a cluster.
type Status struct {
	State  State
	Reason string    // human-readable, may be empty
	Since  time.Time // when State last changed (creation, at first)
	// LastHeartbeat is when the last heartbeat was recorded; zero if never.
	LastHeartbeat time.Time
	// RTT is the round-trip time measured with the last heartbeat.
	RTT               time.Duration
	AgentVersion      string // empty until the agent reports it
	KubernetesVersion string // empty until the agent reports it
}

// InitialStatus is the status of a cluster created at now.
func InitialStatus(now time.Time) Status {
	return Status{State: StateNotInstalled, Reason: ReasonNeverConnected, Since: now}
}

// StatusUpdate is the input to [Store.UpdateStatus]. See [Status.Apply] for
// what each field does.
type StatusUpdate struct {
	// State is the cluster's state now; required.
	State State
	// Reason explains State. On a state change it replaces the reason, even
	// when empty; otherwise an empty Reason leaves the reason unchanged.
	Reason string
	// Heartbeat records a heartbeat: LastHeartbeat becomes now and RTT is
	// stored. Without it LastHeartbeat and RTT are left alone.
	Heartbeat bool
	// RTT is the measured round-trip time; only used with Heartbeat.
	RTT time.Duration
	// AgentVersion and KubernetesVersion replace the stored ones unless
	// empty.
	AgentVersion      string
	KubernetesVersion string
}

// Validate reports the first problem with u, wrapping [ErrInvalid].
func (u StatusUpdate) Validate() error {
	if !u.State.Valid() {
		return fmt.Errorf("%w: state %q: must be one of %v", ErrInvalid, u.State, States())
	}
	if u.RTT < 0 {
		return fmt.Errorf("%w: negative round-trip time %v", ErrInvalid, u.RTT)
	}
	return nil
}

// Apply returns the status that results from applying u at time now, and
// whether the state changed. It is the one definition of UpdateStatus
// semantics, shared by all backends:
//
//   - a different State replaces State and Reason and sets Since to now
//     (the caller then records a [Transition]);
//   - the same State keeps Since and replaces Reason only if u.Reason is
//     not empty;
//   - Heartbeat sets LastHeartbeat to now and RTT to u.RTT;
//   - non-empty versions replace the stored ones;
//   - text longer than MaxReasonLen or MaxVersionLen is truncated.
//
// u must be valid (see [StatusUpdate.Validate]).
func (s Status) Apply(u StatusUpdate, now time.Time) (next Status, changed bool) {
	next = s
	reason := truncate(u.Reason, MaxReasonLen)
	if u.State != s.State {
		changed = true
		next.State = u.State
		next.Reason = reason
		next.Since = now
	} else if reason != "" {
		next.Reason = reason
	}
	if u.Heartbeat {
		next.LastHeartbeat = now
		next.RTT = u.RTT
	}
	if u.AgentVersion != "" {
		next.AgentVersion = truncate(u.AgentVersion, MaxVersionLen)
	}
	if u.KubernetesVersion != "" {
		next.KubernetesVersion = truncate(u.KubernetesVersion, MaxVersionLen)
	}
	return next, changed
}

// TruncateReason cuts a reason to MaxReasonLen bytes, as UpdateStatus
// does.
func TruncateReason(s string) string { return truncate(s, MaxReasonLen) }

// truncate cuts s to at most max bytes without splitting a UTF-8 sequence.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// Transition is one entry of a cluster's status history.
type Transition struct {
	ClusterID string
	From, To  State
	Reason    string // the reason given with the new state
	At        time.Time
}
