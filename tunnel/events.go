package tunnel

import (
	"fmt"
	"time"
)

// EventKind says what happened to a session.
type EventKind int

// Event kinds, in the order a session produces them: Connected first,
// Disconnected last, Heartbeat, Status and Goodbye in between.
const (
	// EventConnected: the agent completed the handshake and was admitted.
	// Event.Hello is set.
	EventConnected EventKind = iota + 1
	// EventHeartbeat: a heartbeat round trip completed. Event.RTT is set.
	EventHeartbeat
	// EventStatus: the agent reported its state. Event.Status is set.
	EventStatus
	// EventGoodbye: the agent said it was removed from its cluster.
	// Event.Reason is set. EventDisconnected follows.
	EventGoodbye
	// EventDisconnected: the session ended. Event.Err says why; test it
	// with errors.Is against ErrHeartbeatTimeout, ErrReplaced,
	// ErrDisconnected, ErrGoodbye, ErrConnectionLost, ErrProtocol.
	EventDisconnected
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventHeartbeat:
		return "heartbeat"
	case EventStatus:
		return "status"
	case EventGoodbye:
		return "goodbye"
	case EventDisconnected:
		return "disconnected"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one thing that happened to one session on the hub.
type Event struct {
	Kind      EventKind
	ClusterID string
	// SessionID identifies the session within this Server; it grows with
	// every admitted session. A newer session for a cluster replaces an
	// older one, and the older one's EventDisconnected may be delivered
	// after the newer one's EventConnected: compare SessionIDs.
	SessionID uint64
	Time      time.Time

	Hello  Hello         // EventConnected
	RTT    time.Duration // EventHeartbeat
	Status Status        // EventStatus
	Reason string        // EventGoodbye
	Err    error         // EventDisconnected
}

// Stats are cumulative counters of a Server, for metrics. Counters only grow,
// except Sessions.
type Stats struct {
	Sessions         int    // live sessions now
	SessionsTotal    uint64 // sessions admitted since start
	AuthFailures     uint64 // upgrade requests refused by Authenticate
	Rejected         uint64 // handshakes refused by Admit or version checks
	HandshakeErrors  uint64 // handshakes that failed otherwise
	StreamsOpened    uint64 // successful DialContext calls
	DialErrors       uint64 // failed DialContext calls, ErrNoSession included
	HeartbeatTimeout uint64 // sessions closed as dead
	BytesIn          uint64 // WebSocket payload bytes received from agents
	BytesOut         uint64 // WebSocket payload bytes sent to agents
}

// SessionInfo describes one live session.
type SessionInfo struct {
	ClusterID     string
	SessionID     uint64
	Hello         Hello
	RemoteAddr    string
	ConnectedAt   time.Time
	LastHeartbeat time.Time     // zero until the first heartbeat completes
	RTT           time.Duration // of the last heartbeat
	Status        Status        // last reported; zero if none yet
	Streams       int           // open streams
}
