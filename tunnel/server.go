package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/eco-project/eco/tunnel/mux"
)

// HTTP headers of the upgrade request (spec.md, "Upgrade request").
// DefaultPath is the path, below a hub's base URL, at which eco's hub
// serves the tunnel endpoint and its agents dial it.
const DefaultPath = "/api/v1/tunnel"

const (
	// HeaderClusterID carries the cluster ID the agent claims to serve.
	// ServerConfig.Authenticate decides whether the credential may.
	HeaderClusterID = "X-Eco-Cluster-Id"
	// HeaderAgentProtocol carries the agent's protocol version.
	HeaderAgentProtocol = "X-Eco-Tunnel-Protocol"
)

// Defaults for ServerConfig.
const (
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultHeartbeatMisses   = 3
	DefaultHandshakeTimeout  = 10 * time.Second
	// lingerTimeout bounds the wait for a peer to close after a final
	// goodbye, so the message is read before the connection drops.
	lingerTimeout = time.Second
)

// ServerConfig configures a hub-side Server. The zero value of every field
// except Authenticate means the default documented on it.
type ServerConfig struct {
	// Authenticate is called for every upgrade request before the
	// WebSocket upgrade and returns the cluster the request may serve. An
	// error refuses the request without upgrading: 403 Forbidden if it
	// wraps ErrForbidden, 401 Unauthorized otherwise; the error text is
	// the response body, so keep it short and free of secrets. Required.
	Authenticate func(r *http.Request) (clusterID string, err error)

	// Admit is called with the agent's Hello (from the upgrade request's
	// headers) after Authenticate, before the upgrade; ctx ends with the
	// handshake timeout or Close. An error refuses the agent with 403: its
	// text (or a *RejectError's Reason) is the response body, which the
	// agent surfaces as a *RejectError. If nil, every agent that speaks a
	// supported protocol version is admitted. An error wrapping
	// ErrProbation admits the agent on probation (see Prove).
	Admit func(ctx context.Context, clusterID string, hello Hello) error

	// Prove decides on an agent Admit admitted on probation. It is called
	// after the upgrade (the agent has its 101 and serves the streams the
	// hub opens), before the session becomes its cluster's: DialContext
	// does not reach it and it has replaced no other session. dial opens a
	// stream to the agent over the new session, e.g. to fetch from its
	// cluster what the proof needs; ctx ends with the handshake timeout or
	// Close. Nil makes the session its cluster's; an error ends it at once
	// with a goodbye whose reason is the error's *RejectError Reason, or
	// "agent identity not proven". If nil, ErrProbation refuses the agent.
	Prove func(ctx context.Context, clusterID string, hello Hello, dial func(context.Context) (net.Conn, error)) error

	// Events, if not nil, is called synchronously from the session's
	// goroutine for each session event (see EventKind). It must return
	// quickly and must not call Server.Close.
	Events func(Event)

	// CredentialAck, if not nil, is called from the session's goroutine
	// when its agent acknowledges a credential sent with SendCredential
	// (the Token it now holds, or the Error that kept it from storing it).
	// It delays that session's control messages only; keep it short (a
	// store write).
	CredentialAck func(clusterID string, sessionID uint64, ack Credential)

	// HeartbeatInterval is how often the hub pings each agent. If zero,
	// DefaultHeartbeatInterval (10 s), shorter than common load-balancer
	// idle timeouts (60 s and up).
	HeartbeatInterval time.Duration
	// HeartbeatTimeout closes a session from which nothing was received
	// for this long. If zero, DefaultHeartbeatMisses (3) intervals. Agents
	// learn both values in the handshake.
	HeartbeatTimeout time.Duration
	// HandshakeTimeout bounds the Admit call. If zero,
	// DefaultHandshakeTimeout (10 s).
	HandshakeTimeout time.Duration

	// MaxControlMessage limits one control frame body in bytes. If zero,
	// DefaultMaxControlMessage (64 KiB).
	MaxControlMessage int
	// MaxMessageSize limits one received WebSocket message in bytes. If
	// zero, DefaultMaxMessageSize (1 MiB).
	MaxMessageSize int64

	// Mux tunes the multiplexer; its zero value means the defaults.
	Mux MuxConfig

	// Logger receives the server's logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// Server is the hub side of the tunnel. It is an http.Handler that accepts
// agents (mount it at the tunnel path) and dials connections into their
// clusters with DialContext. Create it with NewServer; stop it with Close.
type Server struct {
	cfg    ServerConfig // defaults applied
	log    *slog.Logger
	muxCfg mux.Config
	ctx    context.Context // ends on Close; parent of Admit contexts
	cancel context.CancelFunc

	nextID   atomic.Uint64
	counters byteCounters
	stats    struct {
		sessionsTotal, authFailures, rejected, handshakeErrors,
		streamsOpened, dialErrors, heartbeatTimeouts atomic.Uint64
	}

	// mu guards sessions and closed.
	mu       sync.Mutex
	sessions map[string]*hubSession // admitted sessions by cluster ID
	closed   bool

	// wg counts ServeHTTP calls and session goroutines.
	wg sync.WaitGroup
}

// NewServer validates cfg, applies defaults and returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Authenticate == nil {
		return nil, errors.New("tunnel: ServerConfig.Authenticate is required")
	}
	if cfg.HeartbeatInterval < 0 || cfg.HeartbeatTimeout < 0 || cfg.HandshakeTimeout < 0 ||
		cfg.MaxControlMessage < 0 || cfg.MaxMessageSize < 0 {
		return nil, errors.New("tunnel: negative durations or limits in ServerConfig")
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatMisses * cfg.HeartbeatInterval
	}
	if cfg.HeartbeatTimeout <= cfg.HeartbeatInterval {
		return nil, fmt.Errorf("tunnel: HeartbeatTimeout %v must exceed HeartbeatInterval %v",
			cfg.HeartbeatTimeout, cfg.HeartbeatInterval)
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxControlMessage == 0 {
		cfg.MaxControlMessage = DefaultMaxControlMessage
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	log := discardLogger(cfg.Logger)
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:      cfg,
		log:      log,
		muxCfg:   cfg.Mux.mux(log),
		ctx:      ctx,
		cancel:   cancel,
		sessions: make(map[string]*hubSession),
	}, nil
}

// ServeHTTP authenticates an agent, admits its Hello and upgrades its
// request to a WebSocket; the 101 response carries the hub's answer, so
// the session is up after this one round trip. An admitted session then
// runs on goroutines owned by the Server until it ends or Close is called.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "tunnel server is shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	clusterID, err := s.cfg.Authenticate(r)
	if err == nil && clusterID == "" {
		err = errors.New("no cluster for this credential")
	}
	if err != nil {
		s.stats.authFailures.Add(1)
		code := http.StatusUnauthorized
		if errors.Is(err, ErrForbidden) {
			code = http.StatusForbidden
		}
		s.log.Info("tunnel: agent refused", "remote", r.RemoteAddr, "status", code, "err", err)
		http.Error(w, "tunnel: "+err.Error(), code)
		return
	}
	// The wire format below the handshake differs between majors (1.x
	// framed yamux): an agent of another one is turned away with a reason
	// it can show.
	version := r.Header.Get(HeaderAgentProtocol)
	if err := checkVersion(version); err != nil {
		if version == "" {
			err = fmt.Errorf("%w: the agent states no %s", ErrUnsupportedVersion, HeaderAgentProtocol)
		}
		s.stats.rejected.Add(1)
		s.log.Info("tunnel: agent refused", "cluster", clusterID, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error()+"; re-apply the cluster's install YAML to update the agent", http.StatusForbidden)
		return
	}
	hello, err := helloFromHeaders(r.Header)
	if err != nil {
		s.stats.handshakeErrors.Add(1)
		s.log.Info("tunnel: agent refused", "cluster", clusterID, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	probation := false
	if s.cfg.Admit != nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
		stop := context.AfterFunc(r.Context(), cancel)
		err := s.cfg.Admit(ctx, clusterID, hello)
		stop()
		cancel()
		if errors.Is(err, ErrProbation) && s.cfg.Prove != nil {
			probation, err = true, nil
		}
		if err != nil {
			reason := err.Error()
			var re *RejectError
			if errors.As(err, &re) {
				reason = re.Reason
			}
			if len(reason) > maxFieldLen {
				reason = reason[:maxFieldLen]
			}
			s.stats.rejected.Add(1)
			s.log.Info("tunnel: agent rejected", "cluster", clusterID, "remote", r.RemoteAddr, "reason", reason)
			http.Error(w, reason, http.StatusForbidden)
			return
		}
	}

	// The identity token goes to Admit and Prove only: events and
	// SessionInfo never carry it.
	sessionHello := hello
	sessionHello.IdentityToken = ""
	h := &hubSession{
		srv:        s,
		clusterID:  clusterID,
		remoteAddr: r.RemoteAddr,
		hello:      sessionHello,
		id:         s.nextID.Add(1),
	}
	acceptInfo{
		protocolVersion:   ProtocolVersion,
		sessionID:         h.id,
		heartbeatInterval: s.cfg.HeartbeatInterval,
		heartbeatTimeout:  s.cfg.HeartbeatTimeout,
	}.setHeaders(w.Header())
	// The 101 response is held back until the session is registered, so
	// an agent that has read it is reachable at once; the upgradeResponse
	// writes it on release (or with the first bytes sent).
	uw := &upgradeResponse{ResponseWriter: w}
	if hj, ok := w.(http.Hijacker); ok {
		uw.hj = hj
	}
	ws, err := websocket.Accept(uw, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		// Accept has answered the request (400, 426, ...).
		s.stats.handshakeErrors.Add(1)
		s.log.Info("tunnel: upgrade failed", "cluster", clusterID, "remote", r.RemoteAddr, "err", err)
		return
	}
	h.conn = newWSConn(ws, s.cfg.MaxMessageSize, uw.conn != nil, &s.counters)
	h.mux = mux.Client(h.conn, s.muxCfg)
	h.ctrl = newControlStream(h.mux.Control(), s.cfg.MaxControlMessage)
	h.connectedAt = time.Now()
	if probation && !s.prove(h, uw, hello) {
		return
	}
	if !s.register(h) {
		h.mux.Close()
		return
	}
	if err := uw.release(); err != nil {
		s.stats.handshakeErrors.Add(1)
		s.log.Info("tunnel: upgrade failed", "cluster", clusterID, "remote", r.RemoteAddr, "err", err)
		h.mux.Close()
		s.unregister(h)
		return
	}
	s.wg.Add(1) // our own Add is outstanding, so this cannot race Wait; finish calls Done
	h.start()
}

// prove runs Prove on a session admitted on probation, before it is
// registered. It reports whether the session may become its cluster's; if
// not, the session is ended with a goodbye.
func (s *Server) prove(h *hubSession, uw *upgradeResponse, hello Hello) bool {
	if err := uw.release(); err != nil {
		s.stats.handshakeErrors.Add(1)
		s.log.Info("tunnel: upgrade failed", "cluster", h.clusterID, "remote", h.remoteAddr, "err", err)
		h.mux.Close()
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	dial := func(ctx context.Context) (net.Conn, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return h.mux.Open()
	}
	err := s.cfg.Prove(ctx, h.clusterID, hello, dial)
	if err == nil {
		return true
	}
	reason := "agent identity not proven"
	var re *RejectError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	if len(reason) > maxFieldLen {
		reason = reason[:maxFieldLen]
	}
	s.stats.rejected.Add(1)
	s.log.Info("tunnel: agent rejected on probation", "cluster", h.clusterID, "remote", h.remoteAddr, "reason", reason)
	if err := h.ctrl.send(&message{Type: msgGoodbye, Reason: reason}, time.Now().Add(lingerTimeout)); err == nil {
		h.linger()
	}
	h.mux.Close()
	return false
}

// register makes h the session of its cluster, replacing an older one at
// once: the hub admits (ServerConfig.Admit, Prove) only agents it trusts
// to serve the cluster, so the newest of them is the live one, and an
// agent restarted while its old connection lingers is reachable at once.
// It fails once the Server is closed.
func (s *Server) register(h *hubSession) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	old := s.sessions[h.clusterID]
	s.sessions[h.clusterID] = h
	s.mu.Unlock()
	if old != nil {
		old.end(ErrReplaced, "replaced by a newer session for this cluster")
	}
	return true
}

// unregister forgets h if it is still its cluster's session.
func (s *Server) unregister(h *hubSession) {
	s.mu.Lock()
	if s.sessions[h.clusterID] == h {
		delete(s.sessions, h.clusterID)
	}
	s.mu.Unlock()
}

func (s *Server) emit(ev Event) {
	if s.cfg.Events != nil {
		s.cfg.Events(ev)
	}
}

// DialContext opens a new stream to the agent of clusterID; the agent
// accepts it from its ClientSession. It fails with ErrNoSession if the
// cluster has no tunnel. Opening does not wait for the agent: the stream is
// announced and usable at once. ctx only bounds the dial; the returned
// connection is not tied to it.
func (s *Server) DialContext(ctx context.Context, clusterID string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		s.stats.dialErrors.Add(1)
		return nil, fmt.Errorf("dialing cluster %q: %w", clusterID, err)
	}
	s.mu.Lock()
	h, closed := s.sessions[clusterID], s.closed
	s.mu.Unlock()
	switch {
	case closed:
		s.stats.dialErrors.Add(1)
		return nil, fmt.Errorf("dialing cluster %q: %w", clusterID, ErrServerClosed)
	case h == nil:
		s.stats.dialErrors.Add(1)
		return nil, fmt.Errorf("dialing cluster %q: %w", clusterID, ErrNoSession)
	}
	st, err := h.mux.Open()
	if err != nil {
		s.stats.dialErrors.Add(1)
		if errors.Is(err, mux.ErrSessionClosed) {
			return nil, fmt.Errorf("dialing cluster %q: %w: %w", clusterID, ErrNoSession, err)
		}
		return nil, fmt.Errorf("dialing cluster %q: %w", clusterID, err)
	}
	s.stats.streamsOpened.Add(1)
	return st, nil
}

// Dialer returns a dial function for http.Transport.DialContext that
// ignores its address and dials clusterID.
func (s *Server) Dialer(clusterID string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return s.DialContext(ctx, clusterID)
	}
}

// DialAddr is a dial function for http.Transport.DialContext that takes the
// cluster ID from the host part of addr, so one Transport can reach every
// cluster through URLs like http://CLUSTER-ID/path. The port is ignored.
func (s *Server) DialAddr(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return s.DialContext(ctx, host)
}

// Disconnect ends the session of clusterID now, telling the agent reason
// (e.g. the cluster was deleted). New dials fail at once; open streams are
// reset when the session closes, within about a second. It reports whether
// there was a session.
func (s *Server) Disconnect(clusterID, reason string) bool {
	s.mu.Lock()
	h := s.sessions[clusterID]
	delete(s.sessions, clusterID)
	s.mu.Unlock()
	if h == nil {
		return false
	}
	if reason == "" {
		reason = "disconnected by the hub"
	}
	h.end(fmt.Errorf("%w: %s", ErrDisconnected, reason), reason)
	return true
}

// ErrNoCapability means the agent's session lacks the capability an
// operation needs, e.g. CapabilityCredential: the agent is older.
var ErrNoCapability = errors.New("tunnel: the agent lacks the capability")

// SendCredential hands the agent of clusterID a new credential over its
// control stream; ctx's deadline bounds the write. It fails with
// ErrNoSession when the cluster has no session and ErrNoCapability when
// its agent did not announce CapabilityCredential. The agent's answer
// arrives at ServerConfig.CredentialAck.
func (s *Server) SendCredential(ctx context.Context, clusterID string, c Credential) error {
	s.mu.Lock()
	h := s.sessions[clusterID]
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("%w %s", ErrNoSession, clusterID)
	}
	if !slices.Contains(h.hello.Capabilities, CapabilityCredential) {
		return fmt.Errorf("%w %q (agent %s)", ErrNoCapability, CapabilityCredential, h.hello.AgentVersion)
	}
	m := &message{Type: msgCredential, Credential: &c}
	if err := m.validate(); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(s.cfg.HeartbeatTimeout)
	}
	if err := h.ctrl.send(m, deadline); err != nil {
		return fmt.Errorf("tunnel: sending the credential to cluster %s: %w", clusterID, err)
	}
	return nil
}

// Connected reports whether clusterID has an admitted session. Unlike
// Sessions it costs the same with one session or ten thousand, so it suits a
// check on every proxied request.
func (s *Server) Connected(clusterID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[clusterID] != nil
}

// Sessions lists the live sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	hs := make([]*hubSession, 0, len(s.sessions))
	for _, h := range s.sessions {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	out := make([]SessionInfo, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.info())
	}
	return out
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	return Stats{
		Sessions:         n,
		SessionsTotal:    s.stats.sessionsTotal.Load(),
		AuthFailures:     s.stats.authFailures.Load(),
		Rejected:         s.stats.rejected.Load(),
		HandshakeErrors:  s.stats.handshakeErrors.Load(),
		StreamsOpened:    s.stats.streamsOpened.Load(),
		DialErrors:       s.stats.dialErrors.Load(),
		HeartbeatTimeout: s.stats.heartbeatTimeouts.Load(),
		BytesIn:          s.counters.in.Load(),
		BytesOut:         s.counters.out.Load(),
	}
}

// Close refuses new agents, says goodbye to every connected agent, closes
// all sessions and waits for every goroutine the server started. Agents
// get about a second to take the goodbye.
func (s *Server) Close() error {
	s.mu.Lock()
	var hs []*hubSession
	if !s.closed {
		s.closed = true
		for _, h := range s.sessions {
			hs = append(hs, h)
		}
		clear(s.sessions)
	}
	s.mu.Unlock()
	s.cancel()
	for _, h := range hs {
		h.end(fmt.Errorf("%w: hub shutting down", ErrDisconnected), "hub shutting down")
	}
	s.wg.Wait()
	return nil
}
