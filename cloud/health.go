package cloud

import "strings"

// State is a cluster's health as its cloud provider reports it, mapped to
// one model for every provider.
type State string

// The states of [Health]. Provisioning, Updating and Deleting are
// transitions: the poller looks again sooner while a cluster is in one.
const (
	Healthy      State = "Healthy"
	Provisioning State = "Provisioning"
	Updating     State = "Updating"
	Degraded     State = "Degraded"
	Stopped      State = "Stopped"
	Deleting     State = "Deleting"
	Failed       State = "Failed"
	NotFound     State = "NotFound"
	Unknown      State = "Unknown"
)

// States lists every State.
func States() []State {
	return []State{Healthy, Provisioning, Updating, Degraded, Stopped, Deleting, Failed, NotFound, Unknown}
}

// Transitional reports whether s is a state the cluster moves out of by
// itself (the poller polls faster then).
func (s State) Transitional() bool {
	return s == Provisioning || s == Updating || s == Deleting
}

// Class is how a UI shows s: "ok" (Healthy), "neutral" (Stopped, on
// purpose), "progress" (a transition) or "bad" (everything else).
func (s State) Class() string {
	switch s {
	case Healthy:
		return "ok"
	case Stopped:
		return "neutral"
	case Provisioning, Updating, Deleting:
		return "progress"
	}
	return "bad"
}

// Health is a cluster's cloud health: a State and, when it says more,
// the provider's own words.
type Health struct {
	State  State
	Reason string
}

// ReasonCredentialsRejected is the reason of the Unknown health of every
// cluster of an account whose credentials the provider rejects: it says
// nothing about the clusters themselves.
const ReasonCredentialsRejected = "credentials rejected"

// String is how the health is stored and shown: "Healthy", or the state,
// ": " and the reason.
func (h Health) String() string {
	if h.Reason == "" {
		return string(h.State)
	}
	return string(h.State) + ": " + h.Reason
}

// ParseHealth reads what String wrote. An empty string, or one whose
// state is not one of States, is Unknown (with the text as reason).
func ParseHealth(s string) Health {
	state, reason, _ := strings.Cut(s, ": ")
	for _, st := range States() {
		if string(st) == state {
			return Health{State: st, Reason: reason}
		}
	}
	return Health{State: Unknown, Reason: s}
}

// JoinReasons joins the provider's words for several problems with "; ",
// leaving out empty ones.
func JoinReasons(rs ...string) string {
	out := rs[:0:0]
	for _, r := range rs {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return strings.Join(out, "; ")
}
