package store

import (
	"fmt"
	"time"
)

// AuditEvent is one entry of the hub's audit log: who did what to which
// cluster, when, with what result. The hub writes one for every hub API
// action that changes something and for every proxied Kubernetes request
// that does (reads optionally); see package hub/audit.
type AuditEvent struct {
	// Seq is assigned by the store, increasing; ListAudit pages by it.
	Seq int64
	// At is when the action ended.
	At time.Time
	// User is the hub user, TokenID the API token (or UI session's token)
	// that acted. Service identities of the hub appear here by name.
	User    string
	TokenID string
	// Source is "api" (a hub API action) or "proxy" (a request through a
	// cluster's Kubernetes proxy).
	Source string
	// Verb is the Kubernetes verb (get, list, watch, create, update, patch,
	// delete, deletecollection, connect) for the proxy, the API route (e.g.
	// create-cluster) for the API.
	Verb string
	// ClusterID is the cluster acted on; empty for hub-wide actions.
	ClusterID string
	// APIGroup, Resource, Subresource, Namespace and Name say which
	// Kubernetes object a proxied request touched, as far as its path tells.
	APIGroup    string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	// Path is the request path as received (bounded).
	Path string
	// Code is the HTTP status code of the answer.
	Code int
	// RequestID is the hub-generated ID that also reaches the cluster's
	// own audit log; ClientRequestID what the client sent as X-Request-Id,
	// recorded beside it, never trusted as the ID.
	RequestID       string
	ClientRequestID string
	// RemoteAddr is the client's address.
	RemoteAddr string
}

// Bounds of an audit event's text fields. Longer values are cut by
// [AuditEvent.Clamp], never refused: an audit record must not be lost
// because a client sent a long path.
const (
	maxAuditField = 256
	maxAuditPath  = 1024
)

// Clamp returns e with every text field cut to its bound.
func (e AuditEvent) Clamp() AuditEvent {
	for _, f := range []*string{&e.User, &e.TokenID, &e.Source, &e.Verb, &e.ClusterID, &e.APIGroup,
		&e.Resource, &e.Subresource, &e.Namespace, &e.Name, &e.RequestID, &e.ClientRequestID, &e.RemoteAddr} {
		*f = cut(*f, maxAuditField)
	}
	e.Path = cut(e.Path, maxAuditPath)
	return e
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	// ClusterID, when set, keeps only that cluster's events.
	ClusterID string
	// User, when set, keeps only that hub user's events.
	User string
	// Before, when positive, keeps events with Seq < Before: the cursor of
	// the next page is the last event's Seq.
	Before int64
	// Limit is the page size: 0 means DefaultPageSize, above MaxPageSize
	// is ErrInvalid.
	Limit int
}

// Validate reports the first problem with q, wrapping [ErrInvalid].
func (q AuditQuery) Validate() error {
	if q.Limit < 0 || q.Limit > MaxPageSize {
		return fmt.Errorf("%w: limit %d: must be 0 to %d", ErrInvalid, q.Limit, MaxPageSize)
	}
	if q.Before < 0 {
		return fmt.Errorf("%w: before %d: must not be negative", ErrInvalid, q.Before)
	}
	return nil
}
