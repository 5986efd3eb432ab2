// Package tunnel carries traffic between the eco hub and the agents that run
// inside managed clusters.
//
// An agent dials out to the hub over HTTPS and upgrades to a WebSocket. The
// WebSocket carries a session of eco's multiplexer (package tunnel/mux) in
// which the hub opens streams toward the agent: stream 1 is the control channel (handshake, heartbeats, status,
// goodbye), every further stream is one connection the hub dials into the
// cluster. The agent never opens streams. The wire format is specified in
// spec.md next to this file.
//
// The hub side is [Server], an [net/http.Handler] that authenticates and
// upgrades agents and hands out connections with [Server.DialContext] (or
// [Server.Dialer] for an [net/http.Transport]); [Transport] carries HTTP/1.1
// on those streams without net/http's per-connection goroutines, and
// [RetryRefused] sends again what an agent's full backlog refused. The
// agent side is [Dial],
// which returns a [ClientSession]: a [net.Listener] on which the agent serves
// an [net/http.Server]. [Backoff] paces the agent's reconnect loop.
//
// The package has no globals: logging, hooks and limits come in through
// [ServerConfig] and [ClientConfig], whose zero values mean documented
// defaults. Every goroutine it starts is stopped and waited for by
// [Server.Close] or [ClientSession.Close].
package tunnel
