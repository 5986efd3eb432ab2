// Package store defines what the hub keeps between restarts — clusters, their
// operator status and its history, API tokens, the grants of access to
// clusters and the audit log — as the [Store] interface, plus the types,
// validation rules and status semantics every backend shares.
//
// Backends live in subpackages: [github.com/eco-project/eco/store/sqlite] is the
// embedded default; PostgreSQL follows. [github.com/eco-project/eco/store/backend]
// opens one by DSN, and [github.com/eco-project/eco/store/storetest] is the
// contract suite every backend must pass.
//
// Secrets never reach the store: agent credentials and API tokens are stored
// only as hashes computed by the caller (SHA-256 of a high-entropy token is
// enough), and lookups are by hash.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Sentinel errors. Backends wrap them with %w and context, so test with
// [errors.Is].
var (
	// ErrNotFound reports that the cluster or token does not exist (or, for
	// lookups by hash, that no live record carries that hash).
	ErrNotFound = errors.New("not found")
	// ErrConflict reports that the write contradicts existing state: a
	// duplicate cluster name or hash, or a fingerprint already pinned to a
	// different value.
	ErrConflict = errors.New("conflict")
	// ErrInvalid reports input that fails validation (empty or malformed
	// name, unknown provider, state or role, out-of-range limit, …).
	ErrInvalid = errors.New("invalid input")
)

// BusyError is CreateOperation's ErrConflict when an unfinished operation
// holds the release: Holder is that operation's ID, so a caller can point
// at it (the hub API's 409 names it). errors.Is(err, ErrConflict) holds.
type BusyError struct {
	Holder             string
	Namespace, Release string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("operation %s is still running on release %s/%s: %v", e.Holder, e.Namespace, e.Release, ErrConflict)
}

// Unwrap makes a BusyError an ErrConflict.
func (e *BusyError) Unwrap() error { return ErrConflict }

// Store is the hub's persistent state. Implementations are safe for
// concurrent use. Every timestamp they record comes from [Config.Now] and is
// returned in UTC with microsecond precision.
type Store interface {
	// CreateCluster records a new cluster with a generated ID (see
	// [NewClusterID]) in state [StateNotInstalled]. A duplicate name or
	// credential hash is ErrConflict.
	CreateCluster(ctx context.Context, c NewCluster) (Cluster, error)
	// GetCluster returns the cluster with its current status.
	GetCluster(ctx context.Context, id string) (Cluster, error)
	// UpdateCluster renames cluster id and/or replaces its labels, and
	// returns it. A name taken by another cluster is ErrConflict.
	UpdateCluster(ctx context.Context, id string, u ClusterUpdate) (Cluster, error)
	// GetClusterByName is GetCluster by unique name.
	GetClusterByName(ctx context.Context, name string) (Cluster, error)
	// ClusterByCredentialHash returns the cluster whose current agent
	// credential, or previous generation's credential, hashes to hash
	// (the caller compares hash with AgentCredentialHash and
	// Credential.PreviousHash to tell which, and applies the grace
	// period). It is an indexed lookup.
	ClusterByCredentialHash(ctx context.Context, hash []byte) (Cluster, error)
	// ListClusters returns one page of clusters, with their status, that
	// match opts, and the number of clusters that match in total.
	ListClusters(ctx context.Context, opts ListOptions) (ClusterPage, error)
	// DeleteCluster removes the cluster, its status and its history. Its
	// credential hash then matches nothing and its name is free again.
	DeleteCluster(ctx context.Context, id string) error
	// PinFingerprint atomically pins the cluster's fingerprint: it records
	// fingerprint if none is pinned, succeeds without change if the same one
	// is, and returns ErrConflict if a different one is.
	PinFingerprint(ctx context.Context, id, fingerprint string) error
	// RotateCredential replaces the cluster's agent credential hash; the old
	// hash stops matching at once. The pinned fingerprint is kept.
	RotateCredential(ctx context.Context, id string, hash []byte) error
	// NextCredentialGeneration atomically moves the cluster's credential
	// from generation from to from+1 with hash: the current hash becomes
	// the previous one, accepted until previousUntil. It returns the
	// cluster as it is now, or ErrConflict if the generation is no longer
	// from (another rotation won) or hash is another cluster's.
	NextCredentialGeneration(ctx context.Context, id string, from int64, hash []byte, previousUntil time.Time) (Cluster, error)
	// ConfirmCredential records that the cluster's agent holds credential
	// generation gen: Credential.Confirmed becomes gen if that is newer and
	// not beyond the current generation (else nothing changes).
	ConfirmCredential(ctx context.Context, id string, gen int64) error
	// SetCloudHealth records the health string the cloud provider reports.
	SetCloudHealth(ctx context.Context, id, health string) error

	// ClusterIdentity returns the cluster's identity configuration and pin.
	ClusterIdentity(ctx context.Context, id string) (Identity, error)
	// SetIdentityConfig replaces the cluster's identity configuration; the
	// pin is kept.
	SetIdentityConfig(ctx context.Context, id string, cfg IdentityConfig) error
	// PinIdentity atomically pins issuer and jwks as the cluster's keys,
	// in state IdentityAwaitingApproval if awaitingApproval, else
	// IdentityPinned. It returns ErrConflict if anything is pinned already.
	PinIdentity(ctx context.Context, id, issuer string, jwks []byte, awaitingApproval bool) error
	// ApproveIdentity turns a pin awaiting approval into IdentityPinned;
	// ErrConflict if none awaits.
	ApproveIdentity(ctx context.Context, id string) error
	// UpdateIdentityKeys replaces the pinned keys (the cluster rotated its
	// own); ErrConflict unless the cluster is IdentityPinned with issuer.
	UpdateIdentityKeys(ctx context.Context, id, issuer string, jwks []byte) error
	// ResetIdentity forgets the pin (state IdentityUnpinned); the
	// configuration is kept.
	ResetIdentity(ctx context.Context, id string) error
	// NoteStatus appends note to the cluster's status history as a
	// transition from its current state to itself, leaving the status as
	// it is: an event worth showing that changes no state.
	NoteStatus(ctx context.Context, id, note string) error

	// UpdateStatus applies u to the cluster's current status as described by
	// [Status.Apply]. When the state changes it also appends a [Transition]
	// to the history, in the same transaction. It returns the new status.
	UpdateStatus(ctx context.Context, id string, u StatusUpdate) (Status, error)
	// StatusHistory returns up to limit transitions of the cluster, newest
	// first. A limit of 0 means [DefaultPageSize]; above [MaxPageSize] is
	// ErrInvalid.
	StatusHistory(ctx context.Context, id string, limit int) ([]Transition, error)

	// CreateToken records a new API token with a generated ID (see
	// [NewTokenID]). A duplicate hash is ErrConflict.
	CreateToken(ctx context.Context, t NewToken) (Token, error)
	// TokenByHash returns the unrevoked token with this hash. Revoked tokens
	// are ErrNotFound, so a caller cannot forget to check. It is an indexed
	// lookup.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	// ListTokens returns all tokens, revoked ones included, oldest first.
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken marks the token revoked. Revoking it again is not an error
	// and keeps the first revocation time.
	RevokeToken(ctx context.Context, id string) error
	// TouchToken sets the token's LastUsedAt to now: one small write, meant
	// to be called on every authenticated request.
	TouchToken(ctx context.Context, id string) error
	// CountTokens returns the number of unrevoked, unexpired tokens (the hub
	// mints a bootstrap admin token when there are none).
	CountTokens(ctx context.Context) (int, error)
	// DeleteExpiredTokens deletes the tokens that expired before before and
	// returns how many it deleted; unexpired and never-expiring tokens stay.
	// (The hub mints a token per kubeconfig it hands out.)
	DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error)

	// AppendAudit records events in one transaction, assigning each its Seq,
	// then deletes the oldest beyond [Config.AuditLimit]. Text fields are
	// clamped (see [AuditEvent.Clamp]); an empty Source or Verb is
	// ErrInvalid.
	AppendAudit(ctx context.Context, events []AuditEvent) error
	// ListAudit returns up to q.Limit events matching q, newest first.
	ListAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
	// CreateGrant records a new grant with a generated ID (see
	// [NewGrantID]). A grant to the same subject for the same cluster (or
	// for all) is ErrConflict; a cluster that does not exist is
	// ErrNotFound.
	CreateGrant(ctx context.Context, g NewGrant) (Grant, error)
	// ListGrants returns the grants for cluster id (not those for all
	// clusters), or every grant if id is empty, oldest first.
	ListGrants(ctx context.Context, clusterID string) ([]Grant, error)
	// GrantsFor returns the grants to user and to any of groups, for any
	// cluster, oldest first.
	GrantsFor(ctx context.Context, user string, groups []string) ([]Grant, error)
	// DeleteGrant removes a grant. Deleting a cluster removes its grants.
	DeleteGrant(ctx context.Context, id string) error

	// CreateCloudAccount records a cloud account with a generated ID (see
	// [NewCloudAccountID]). A duplicate name is ErrConflict.
	CreateCloudAccount(ctx context.Context, a NewCloudAccount) (CloudAccount, error)
	// GetCloudAccount returns cloud account id.
	GetCloudAccount(ctx context.Context, id string) (CloudAccount, error)
	// ListCloudAccounts returns every cloud account, oldest first.
	ListCloudAccounts(ctx context.Context) ([]CloudAccount, error)
	// ResealCloudAccount replaces the account's sealed credentials (after
	// a rotation of the key that seals them).
	ResealCloudAccount(ctx context.Context, id string, sealed []byte) error
	// DeleteCloudAccount removes the account; ErrConflict while clusters
	// imported from it are linked to it.
	DeleteCloudAccount(ctx context.Context, id string) error
	// LinkCloudCluster records that cluster l.ClusterID was imported from
	// account l.AccountID. A cloud reference already linked is
	// ErrConflict; a missing cluster or account is ErrNotFound. Deleting
	// the cluster removes its link.
	LinkCloudCluster(ctx context.Context, l CloudLink) error
	// CloudLinks returns the links of account id, or every link if id is
	// empty, ordered by account, scope and cloud reference.
	CloudLinks(ctx context.Context, accountID string) ([]CloudLink, error)
	// CloudLinkByRef returns the link with cloud reference ref.
	CloudLinkByRef(ctx context.Context, ref string) (CloudLink, error)
	// Helm operations (hub jobs of package apps). CreateOperation records
	// op (ID generated, see [NewOperationID]; State running unless set)
	// and returns a *[BusyError] (an ErrConflict naming the holder) if an
	// unfinished operation holds the same release: one operation per
	// release at a time, across hub replicas.
	CreateOperation(ctx context.Context, op Operation) (Operation, error)
	// UpdateOperation applies u to operation id and returns it; a final
	// state sets FinishedAt. A finished operation is ErrConflict.
	UpdateOperation(ctx context.Context, id string, u OperationUpdate) (Operation, error)
	// GetOperation returns operation id.
	GetOperation(ctx context.Context, id string) (Operation, error)
	// ListOperations returns the operations q selects, newest first.
	ListOperations(ctx context.Context, q OperationQuery) ([]Operation, error)

	// Chart repositories of the App Catalog (package catalog).
	// CreateRepository records r; a duplicate name is ErrConflict.
	CreateRepository(ctx context.Context, r Repository) (Repository, error)
	// ListRepositories returns every repository by name, without their
	// indexes when withIndex is false.
	ListRepositories(ctx context.Context, withIndex bool) ([]Repository, error)
	// GetRepository returns repository name with its index.
	GetRepository(ctx context.Context, name string) (Repository, error)
	// SetRepositoryIndex records a refresh of repository name.
	SetRepositoryIndex(ctx context.Context, name string, ix RepositoryIndex) error
	// DeleteRepository removes repository name.
	DeleteRepository(ctx context.Context, name string) error

	// Managed add-ons' desired state (package addons). SetAddon records
	// s, replacing the setting for the same add-on and cluster.
	SetAddon(ctx context.Context, s AddonSetting) (AddonSetting, error)
	// ListAddons returns every add-on setting, by add-on then cluster.
	ListAddons(ctx context.Context) ([]AddonSetting, error)
	// DeleteAddon removes the setting of addon for clusterID (the
	// cluster then follows the setting for all clusters).
	DeleteAddon(ctx context.Context, addon, clusterID string) error
	// SetAddonVersion records v (see [AddonVersion.Validate]), replacing
	// the version pinned for the same add-on, and returns it with
	// UpdatedAt set.
	SetAddonVersion(ctx context.Context, v AddonVersion) (AddonVersion, error)
	// AddonVersions returns every pinned add-on version, by add-on.
	AddonVersions(ctx context.Context) ([]AddonVersion, error)

	// Close releases the store's resources. It is safe to call more than
	// once; other methods fail after it.
	Close() error
}

// DefaultHistoryLimit is the number of transitions kept per cluster when
// [Config.HistoryLimit] is zero.
const DefaultHistoryLimit = 1000

// Config is what every backend takes besides its DSN. The zero value is
// ready to use.
type Config struct {
	// Now returns the current time; tests inject a fake clock here. Every
	// timestamp the store records comes from it, converted to UTC and
	// truncated to microseconds (the precision all backends keep). If nil,
	// time.Now is used.
	Now func() time.Time

	// Logger receives the few events a store logs (opening, migrations).
	// DSNs and secrets are never logged. If nil, nothing is logged.
	Logger *slog.Logger

	// HistoryLimit is how many status transitions are kept per cluster;
	// recording a transition deletes the oldest ones beyond it. Zero means
	// DefaultHistoryLimit; a negative value keeps everything.
	HistoryLimit int

	// AuditLimit is how many audit events are kept; appending deletes the
	// oldest beyond it. Zero means DefaultAuditLimit; a negative value keeps
	// everything.
	AuditLimit int

	// OperationLimit is how many finished Helm operations are kept per
	// cluster; creating one deletes the oldest finished ones beyond it
	// (unfinished ones are never deleted). Zero means
	// DefaultOperationLimit; a negative value keeps everything.
	OperationLimit int
}

// DefaultOperationLimit is the number of finished operations kept per
// cluster when [Config.OperationLimit] is zero: with logs of at most
// [MaxOperationLog], at most ~32 MiB a cluster, and in practice (Helm's
// logs are a few KiB) a few hundred KiB.
const DefaultOperationLimit = 500

// DefaultAuditLimit is the number of audit events kept when
// [Config.AuditLimit] is zero: about 400 MiB of SQLite at ~400 bytes each.
const DefaultAuditLimit = 1_000_000

// WithDefaults returns a copy of c with every zero field replaced by its
// default, and Now wrapped to return UTC at microsecond precision. Backends
// call it once when opening.
func (c Config) WithDefaults() Config {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	c.Now = func() time.Time { return Timestamp(now()) }
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HistoryLimit == 0 {
		c.HistoryLimit = DefaultHistoryLimit
	}
	if c.AuditLimit == 0 {
		c.AuditLimit = DefaultAuditLimit
	}
	if c.OperationLimit == 0 {
		c.OperationLimit = DefaultOperationLimit
	}
	return c
}

// Timestamp normalises t the way the store records times: UTC, truncated to
// microseconds, without a monotonic clock reading.
func Timestamp(t time.Time) time.Time {
	return t.Round(0).UTC().Truncate(time.Microsecond)
}
