package tunnel

import (
	"errors"
	"fmt"
)

// Sentinel errors for protocol states. Errors returned by this package wrap
// them, so test with [errors.Is].
var (
	// ErrNoSession means the cluster has no live tunnel to the hub.
	ErrNoSession = errors.New("tunnel: no session for cluster")
	// ErrServerClosed is returned by a Server after Close.
	ErrServerClosed = errors.New("tunnel: server closed")
	// ErrSessionClosed is returned by operations on a closed session.
	ErrSessionClosed = errors.New("tunnel: session closed")
	// ErrProtocol means the peer broke the wire protocol (spec.md).
	ErrProtocol = errors.New("tunnel: protocol error")
	// ErrFrameTooLarge means a control frame announced a length above the
	// configured maximum. It wraps ErrProtocol.
	ErrFrameTooLarge = fmt.Errorf("%w: control frame too large", ErrProtocol)
	// ErrUnsupportedVersion means the peer speaks another major protocol
	// version.
	ErrUnsupportedVersion = errors.New("tunnel: unsupported protocol version")
	// ErrBadHello means the agent's Hello cannot be sent or was not valid
	// (spec.md section 5 limits).
	ErrBadHello = errors.New("tunnel: invalid hello")
	// ErrHeartbeatTimeout means no heartbeat arrived within the timeout:
	// the peer or the path to it is dead.
	ErrHeartbeatTimeout = errors.New("tunnel: heartbeat timed out")
	// ErrReplaced means a newer session for the same cluster replaced this
	// one.
	ErrReplaced = errors.New("tunnel: replaced by a newer session")
	// ErrDisconnected means the hub ended the session on purpose
	// (Server.Disconnect or Server.Close). On the agent side the error
	// carries the hub's reason.
	ErrDisconnected = errors.New("tunnel: disconnected by hub")
	// ErrGoodbye means the agent ended the session with a goodbye (it was
	// removed from its cluster).
	ErrGoodbye = errors.New("tunnel: agent said goodbye")
	// ErrConnectionLost means the underlying connection failed or was
	// closed by the peer without a goodbye.
	ErrConnectionLost = errors.New("tunnel: connection lost")
	// ErrForbidden may be returned (wrapped) by ServerConfig.Authenticate to
	// answer 403 Forbidden instead of 401 Unauthorized.
	ErrForbidden = errors.New("forbidden")
	// ErrProbation, wrapped in the error ServerConfig.Admit returns, admits
	// the agent on probation: the upgrade completes, but the session only
	// becomes its cluster's once ServerConfig.Prove accepts it.
	ErrProbation = errors.New("tunnel: admitted on probation")
)

// RejectError is the hub refusing an agent's upgrade request: the
// credential was not accepted (401, or 403 when valid but not allowed), the
// agent speaks another major protocol version, or ServerConfig.Admit refused
// it (403). Retrying without a change on the agent's side will fail the same
// way, so an agent should back off long or stop, where it retries a network
// failure soon.
type RejectError struct {
	// Reason is the hub's explanation, meant for humans.
	Reason string
	// StatusCode is the HTTP status of the refusal.
	StatusCode int
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("tunnel: hub refused the agent (HTTP %d): %s", e.StatusCode, e.Reason)
}

// IsRejected reports whether err is or wraps a *RejectError.
func IsRejected(err error) bool {
	var re *RejectError
	return errors.As(err, &re)
}
