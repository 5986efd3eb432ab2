package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/eco-project/eco/tunnel/mux"
)

// hubSession is one agent's session on the hub. The ServeHTTP call that
// accepted it starts it (start) and returns. From then on no
// goroutine waits on an idle session: control messages are read by a short
// drain goroutine started when the multiplexer reports data on the control
// stream (wake), heartbeat pings and the silence timeout run on timers, and
// the end of the session runs once on its own goroutine (finish). The
// session holds one count of the Server's wg from start until finish is
// done.
//
// A session is registered (reachable by DialContext, and replaceable)
// before start; ending it in between is deferred to start.
type hubSession struct {
	srv        *Server
	clusterID  string
	remoteAddr string
	conn       *wsConn
	mux        *mux.Session

	// Set before start, read-only afterwards.
	id          uint64
	ctrl        *controlStream
	hello       Hello
	connectedAt time.Time

	// mu guards the fields below.
	mu sync.Mutex
	// closing is set once the session is ending; cause says why and
	// goodbye, if not empty, is sent to the agent first.
	closing bool
	cause   error
	goodbye string
	// Draining state: served once start ran; draining while a drain
	// goroutine runs; rewake when more arrived meanwhile; finishing once
	// the session is ending (finish runs once both are set).
	served, draining, rewake, finishing bool
	// silence fires when nothing was received for HeartbeatTimeout.
	silence *time.Timer
	// Heartbeat state. hbTimer fires heartbeat; hbStopped stops it.
	hbTimer       *time.Timer
	hbStopped     bool
	pingSeq       uint64
	pingSent      time.Time
	lastHeartbeat time.Time
	rtt           time.Duration
	status        Status

	// hbWG counts running heartbeat callbacks and drain goroutines. Add is
	// only called with mu held and hbStopped (or finishing) false, so it
	// never races with Wait.
	hbWG sync.WaitGroup
}

// start reports the session and starts serving it; it does not block.
// The caller has added the session's count to the Server's wg.
func (h *hubSession) start() {
	s := h.srv
	s.stats.sessionsTotal.Add(1)
	s.log.Info("tunnel: agent connected", "cluster", h.clusterID, "session", h.id, "remote", h.remoteAddr,
		"agentVersion", h.hello.AgentVersion, "kubernetesVersion", h.hello.KubernetesVersion)
	s.emit(Event{Kind: EventConnected, ClusterID: h.clusterID, SessionID: h.id, Time: h.connectedAt, Hello: h.hello})

	h.mu.Lock()
	h.served = true
	if h.finishing { // ended (replaced, disconnected, closed) before now
		h.mu.Unlock()
		go h.finish() // owned: holds the session's count of the Server's wg
		return
	}
	h.hbTimer = time.AfterFunc(s.cfg.HeartbeatInterval, h.heartbeat)
	h.silence = time.AfterFunc(s.cfg.HeartbeatTimeout, func() {
		h.end(fmt.Errorf("%w: nothing received for %v", ErrHeartbeatTimeout, s.cfg.HeartbeatTimeout), "")
	})
	h.mu.Unlock()
	h.ctrl.st.SetReadNotify(h.wake)
	h.wake() // anything that arrived before
}

// wake is the control stream's read notification: it starts a drain
// goroutine unless one is running, which then goes round once more.
func (h *hubSession) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.finishing:
	case h.draining:
		h.rewake = true
	default:
		h.draining = true
		h.hbWG.Add(1)
		go h.drain() // owned: finish waits on hbWG
	}
}

// drain handles every control message that has arrived, without waiting
// for more.
func (h *hubSession) drain() {
	defer h.hbWG.Done()
	for {
		bye, cause := h.handleAvailable()
		if cause != nil {
			h.end(cause, bye)
		}
		h.mu.Lock()
		if !h.rewake || h.finishing {
			h.draining = false
			h.mu.Unlock()
			return
		}
		h.rewake = false
		h.mu.Unlock()
	}
}

// handleAvailable handles the messages available now. It returns a cause
// when the session must end, with the goodbye to send, if any.
func (h *hubSession) handleAvailable() (goodbye string, cause error) {
	s := h.srv
	for {
		m, err := h.ctrl.tryRecv()
		switch {
		case err != nil && errors.Is(err, ErrProtocol):
			return "", err
		case err != nil:
			return "", h.connErr(err)
		case m == nil:
			return "", nil
		}
		now := time.Now()
		h.mu.Lock()
		if h.silence != nil {
			h.silence.Reset(s.cfg.HeartbeatTimeout)
		}
		h.mu.Unlock()
		switch m.Type {
		case msgPong:
			h.mu.Lock()
			ok := m.Seq == h.pingSeq && !h.pingSent.IsZero()
			var rtt time.Duration
			if ok {
				rtt = now.Sub(h.pingSent)
				h.rtt, h.lastHeartbeat = rtt, now
				h.pingSent = time.Time{}
			}
			h.mu.Unlock()
			if ok {
				s.emit(Event{Kind: EventHeartbeat, ClusterID: h.clusterID, SessionID: h.id, Time: now, RTT: rtt})
			}
		case msgStatus:
			h.mu.Lock()
			h.status = *m.Status
			h.mu.Unlock()
			s.emit(Event{Kind: EventStatus, ClusterID: h.clusterID, SessionID: h.id, Time: now, Status: *m.Status})
		case msgGoodbye:
			s.emit(Event{Kind: EventGoodbye, ClusterID: h.clusterID, SessionID: h.id, Time: now, Reason: m.Reason})
			return "goodbye acknowledged", fmt.Errorf("%w: %s", ErrGoodbye, m.Reason)
		case msgCredentialAck:
			if ack := s.cfg.CredentialAck; ack != nil {
				ack(h.clusterID, h.id, *m.Credential)
			}
		case msgPing, msgCredential:
			return "", fmt.Errorf("%w: unexpected %s message from agent", ErrProtocol, m.Type)
		default:
			// Unknown types come from newer minor versions: ignore.
		}
	}
}

// end ends the session with cause (the first cause wins), sending goodbye
// first if it is not empty. It does not wait: finish sends the goodbye,
// lingers briefly and closes (once start has run, if it has not yet).
func (h *hubSession) end(cause error, goodbye string) {
	h.mu.Lock()
	if h.finishing {
		h.mu.Unlock()
		return
	}
	h.finishing = true
	if !h.closing {
		h.closing, h.cause, h.goodbye = true, cause, goodbye
	}
	served := h.served
	h.mu.Unlock()
	if served {
		go h.finish() // owned: holds the session's count of the Server's wg
	}
}

// finish stops the timers, waits for drains and heartbeats, sends the
// goodbye, closes the session and reports it.
func (h *hubSession) finish() {
	s := h.srv
	defer s.wg.Done()
	h.mu.Lock()
	cause, goodbye := h.cause, h.goodbye
	h.hbStopped = true
	if h.hbTimer != nil {
		h.hbTimer.Stop()
	}
	if h.silence != nil {
		h.silence.Stop()
	}
	h.mu.Unlock()
	h.hbWG.Wait()

	if goodbye != "" {
		err := h.ctrl.send(&message{Type: msgGoodbye, Reason: goodbye}, time.Now().Add(lingerTimeout))
		if err == nil {
			h.linger()
		} else {
			s.log.Debug("tunnel: sending goodbye", "cluster", h.clusterID, "session", h.id, "err", err)
		}
	}
	h.mux.Close()
	s.unregister(h)
	if errors.Is(cause, ErrHeartbeatTimeout) {
		s.stats.heartbeatTimeouts.Add(1)
	}
	s.log.Info("tunnel: agent disconnected", "cluster", h.clusterID, "session", h.id, "cause", cause)
	s.emit(Event{Kind: EventDisconnected, ClusterID: h.clusterID, SessionID: h.id, Time: time.Now(), Err: cause})
}

// linger waits, up to lingerTimeout, for the agent to close after a final
// goodbye, discarding anything it still sends.
func (h *hubSession) linger() {
	if err := h.ctrl.st.SetReadDeadline(time.Now().Add(lingerTimeout)); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, h.ctrl.st)
}

// heartbeat sends one ping and schedules the next.
func (h *hubSession) heartbeat() {
	h.mu.Lock()
	if h.closing || h.hbStopped {
		h.mu.Unlock()
		return
	}
	h.hbWG.Add(1)
	defer h.hbWG.Done()
	h.pingSeq++
	seq := h.pingSeq
	h.pingSent = time.Now()
	h.mu.Unlock()

	interval := h.srv.cfg.HeartbeatInterval
	if err := h.ctrl.send(&message{Type: msgPing, Seq: seq}, time.Now().Add(interval)); err != nil {
		// A dead connection surfaces in the read loop.
		h.srv.log.Debug("tunnel: sending ping", "cluster", h.clusterID, "err", err)
	}
	h.mu.Lock()
	if !h.closing && !h.hbStopped {
		h.hbTimer.Reset(interval)
	}
	h.mu.Unlock()
}

// connErr wraps err, a failed read or write, as ErrConnectionLost with the
// WebSocket-level cause if there was one.
func (h *hubSession) connErr(err error) error {
	if cerr := h.conn.err(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrConnectionLost, cerr)
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, err)
}

func (h *hubSession) info() SessionInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return SessionInfo{
		ClusterID:     h.clusterID,
		SessionID:     h.id,
		Hello:         h.hello,
		RemoteAddr:    h.remoteAddr,
		ConnectedAt:   h.connectedAt,
		LastHeartbeat: h.lastHeartbeat,
		RTT:           h.rtt,
		Status:        h.status,
		Streams:       h.mux.NumStreams(),
	}
}
