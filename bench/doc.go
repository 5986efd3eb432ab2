// Package bench measures eco's tunnel side by side with the open
// alternatives on loopback: direct (client → backend), revproxy (one
// httputil.ReverseProxy hop), eco (hub → tunnel → agent → backend, ws and
// wss) and rancher/remotedialer wired the way Rancher wires it (a reverse
// proxy whose transport dials through remotedialer's Server.Dialer).
//
// It is its own Go module so the main module never depends on a peer. The
// command is cmd/ecobench; `make bench` and `make bench-quick` run it.
//
// Every proxy side runs in a child process (the ecobench binary run with
// "child ROLE ..."), so CPU and memory figures are those of the tunnel's own
// processes; the load generator and the backend share the parent process.
package bench
