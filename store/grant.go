package store

import (
	"fmt"
	"time"
)

// ClusterRole is the access a grant gives in a cluster. The hub acts there
// with the Kubernetes group the install YAML binds to the ClusterRole of the
// same name (cluster-admin, edit, view).
type ClusterRole string

// The cluster roles, from most to least.
const (
	ClusterAdmin ClusterRole = "admin"
	ClusterEdit  ClusterRole = "edit"
	ClusterView  ClusterRole = "view"
)

// Valid reports whether r is one of the cluster roles.
func (r ClusterRole) Valid() bool { return r.rank() > 0 }

func (r ClusterRole) rank() int {
	switch r {
	case ClusterView:
		return 1
	case ClusterEdit:
		return 2
	case ClusterAdmin:
		return 3
	}
	return 0
}

// Max returns the greater of r and o; an invalid or empty role is less than
// every valid one.
func (r ClusterRole) Max(o ClusterRole) ClusterRole {
	if o.rank() > r.rank() {
		return o
	}
	return r
}

// Min returns the lesser of r and o; an empty role is less than every
// valid one, so Min with "" is "".
func (r ClusterRole) Min(o ClusterRole) ClusterRole {
	if o.rank() < r.rank() {
		return o
	}
	return r
}

// SubjectKind says whom a grant is for.
type SubjectKind string

// The subject kinds: a hub user (a token's Name) or a hub group (in a
// token's Groups).
const (
	SubjectUser  SubjectKind = "user"
	SubjectGroup SubjectKind = "group"
)

// GrantIDPrefix starts every grant ID.
const GrantIDPrefix = "g-"

// NewGrantID returns a fresh random grant ID such as "g-p4n2b7xqre".
func NewGrantID() string { return newID(GrantIDPrefix) }

// Grant gives a hub user or group a role in one cluster or in all. A hub
// user's role in a cluster is the greatest of the grants to it and to its
// groups for that cluster or for all clusters.
type Grant struct {
	ID      string
	Kind    SubjectKind
	Subject string
	// ClusterID is the cluster; empty means every cluster, present and
	// future.
	ClusterID string
	Role      ClusterRole
	CreatedAt time.Time
}

// NewGrant is the input to [Store.CreateGrant].
type NewGrant struct {
	Kind      SubjectKind
	Subject   string
	ClusterID string // empty: all clusters
	Role      ClusterRole
}

// Validate reports the first problem with g, wrapping [ErrInvalid].
func (g NewGrant) Validate() error {
	switch g.Kind {
	case SubjectUser:
		if err := ValidateUserName(g.Subject); err != nil {
			return err
		}
	case SubjectGroup:
		if err := ValidateGroupName(g.Subject); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: subject kind %q: must be %q or %q", ErrInvalid, g.Kind, SubjectUser, SubjectGroup)
	}
	if g.ClusterID != "" && !ValidID(ClusterIDPrefix, g.ClusterID) {
		return fmt.Errorf("%w: %q is not a cluster ID", ErrInvalid, g.ClusterID)
	}
	if !g.Role.Valid() {
		return fmt.Errorf("%w: cluster role %q: must be %q, %q or %q", ErrInvalid, g.Role, ClusterAdmin, ClusterEdit, ClusterView)
	}
	return nil
}
