package store

import (
	"fmt"
	"time"
)

// OperationState is where a hub job (a Helm operation) stands.
type OperationState string

// Operation states. Running and Recovering are unfinished: while one is,
// no other operation may start on the same release.
const (
	// OperationRunning: a hub is running it.
	OperationRunning OperationState = "running"
	// OperationRecovering: the hub that ran it stopped, or its tunnel
	// dropped, before it ended; a hub will put the release right (a
	// release left pending-* is marked failed) and finish it as
	// OperationInterrupted.
	OperationRecovering OperationState = "recovering"
	// OperationSucceeded, OperationFailed, OperationInterrupted are final.
	OperationSucceeded   OperationState = "succeeded"
	OperationFailed      OperationState = "failed"
	OperationInterrupted OperationState = "interrupted"
)

// Finished reports whether s is a final state.
func (s OperationState) Finished() bool {
	switch s {
	case OperationSucceeded, OperationFailed, OperationInterrupted:
		return true
	}
	return false
}

// Valid reports whether s is a known state.
func (s OperationState) Valid() bool {
	return s == OperationRunning || s == OperationRecovering || s.Finished()
}

// MaxOperationLog bounds Operation.Log; a longer log keeps its end.
const MaxOperationLog = 64 << 10

// Operation is a job the hub runs on a Helm release in a cluster: an
// install, upgrade, rollback or uninstall, with its progress and Helm's
// own log. Operations outlive the hub process that started them.
type Operation struct {
	ID        string
	ClusterID string
	Namespace string
	Release   string
	// Kind is install, upgrade, rollback or uninstall.
	Kind string
	// User is the hub user it acts for.
	User  string
	State OperationState
	// Message is the outcome: Helm's error as it said it, or what was done.
	Message string
	// Log is Helm's log of the operation (at most MaxOperationLog bytes).
	Log string
	// Revision is the release revision the operation made, if any.
	Revision   int
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero while unfinished
}

// Validate checks a new operation.
func (o Operation) Validate() error {
	switch {
	case o.ClusterID == "" || o.Namespace == "" || o.Release == "":
		return fmt.Errorf("operation needs a cluster, namespace and release: %w", ErrInvalid)
	case o.Kind == "":
		return fmt.Errorf("operation needs a kind: %w", ErrInvalid)
	case o.State != "" && !o.State.Valid():
		return fmt.Errorf("operation state %q: %w", o.State, ErrInvalid)
	}
	return nil
}

// OperationUpdate changes an operation. Empty fields are left as they are,
// except that Log replaces the log when not empty.
type OperationUpdate struct {
	State    OperationState
	Message  string
	Log      string
	Revision int
}

// OperationQuery selects operations, newest first.
type OperationQuery struct {
	ClusterID string // empty: every cluster
	Namespace string // with Release: one release
	Release   string
	// Unfinished selects only running and recovering operations.
	Unfinished bool
	// Limit is 0 for DefaultPageSize; above MaxPageSize is ErrInvalid.
	Limit int
}

// OperationIDPrefix starts every operation ID.
const OperationIDPrefix = "op-"

// NewOperationID returns a fresh random operation ID such as
// "op-p4n2b7xqre".
func NewOperationID() string { return newID(OperationIDPrefix) }

// Repository is a chart repository of the App Catalog: an HTTP chart
// repository (index.yaml) or an OCI registry.
type Repository struct {
	Name string
	// Kind is "http" or "oci".
	Kind string
	URL  string
	// Username goes with a password; the secret (password or token) is
	// SealedSecret, sealed by the hub (hub.Seal) — the store never sees it
	// in clear.
	Username     string
	SealedSecret []byte
	// CAPEM is a custom CA for the repository's TLS; empty means the
	// system's roots.
	CAPEM string
	// Charts lists the charts of an OCI repository (a registry has no
	// index); empty, the catalog discovers them through the registry's
	// catalog API.
	Charts    []string
	CreatedAt time.Time

	// What the last refresh left: the index (index.yaml for HTTP, a
	// generated one for OCI), its ETag, when and any error.
	ETag         string
	Index        []byte
	RefreshedAt  time.Time
	RefreshError string
}

// Validate checks a new repository.
func (r Repository) Validate() error {
	switch {
	case r.Name == "" || len(r.Name) > 63:
		return fmt.Errorf("repository name must be 1 to 63 characters: %w", ErrInvalid)
	case r.Kind != "http" && r.Kind != "oci":
		return fmt.Errorf("repository kind %q: http or oci: %w", r.Kind, ErrInvalid)
	case r.URL == "":
		return fmt.Errorf("repository URL is required: %w", ErrInvalid)
	}
	return nil
}

// RepositoryIndex is what a refresh of a repository records.
type RepositoryIndex struct {
	ETag        string
	Index       []byte // nil keeps the index (not modified, or failed)
	RefreshedAt time.Time
	Error       string
}

// AddonSetting is the desired state of a managed add-on (package addons)
// in one cluster, or in every cluster when ClusterID is empty; a
// cluster's own setting overrides the one for all.
type AddonSetting struct {
	Addon     string
	ClusterID string
	Enabled   bool
	UpdatedAt time.Time
	UpdatedBy string
}

// Bounds of an [AddonVersion].
const (
	MaxAddonName    = 63
	MaxAddonVersion = 128 // a chart version: SemVer with room for pre-release and build parts
)

// AddonVersion is the chart version a hub admin pinned for a managed
// add-on (package addons). It outlives the hub process, so a restart
// keeps rolling out the admin's version instead of the hub's built-in
// one.
type AddonVersion struct {
	Addon     string
	Version   string
	UpdatedAt time.Time
	UpdatedBy string
}

// Validate checks v: an add-on name of 1 to [MaxAddonName] bytes and a
// version of 1 to [MaxAddonVersion].
func (v AddonVersion) Validate() error {
	switch {
	case v.Addon == "" || len(v.Addon) > MaxAddonName:
		return fmt.Errorf("add-on name must be 1 to %d characters: %w", MaxAddonName, ErrInvalid)
	case v.Version == "" || len(v.Version) > MaxAddonVersion:
		return fmt.Errorf("add-on %q: version must be 1 to %d characters: %w", v.Addon, MaxAddonVersion, ErrInvalid)
	}
	return nil
}
