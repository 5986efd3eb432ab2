package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/eco-project/eco/tunnel"
)

// connectLoop keeps a tunnel to the hub: it dials, serves the Forwarder on
// the session's streams, and when the session ends dials again after a
// jittered backoff. It returns when ctx ends, handing back the session live at that
// moment (nil if none), still open, so that the caller may say goodbye on
// it.
func (a *Agent) connectLoop(ctx context.Context) *liveSession {
	b := tunnel.Backoff{Initial: a.cfg.BackoffInitial, Max: a.cfg.BackoffMax}
	for {
		hello := a.hello()
		s, err := tunnel.Dial(ctx, a.clientConfig(hello))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var rej *tunnel.RejectError
			if errors.As(err, &rej) {
				a.metrics.dialErrors.WithLabelValues("rejected").Inc()
				a.setNotConnected("the hub rejected the agent: " + rej.Reason)
				delay := a.rejectDelay()
				a.log.Error("the hub rejected the agent; an operator must fix this on the hub (or install a new YAML); retrying",
					"reason", rej.Reason, "status", rej.StatusCode, "hub", a.tunnelURL, "retryIn", delay.Round(time.Millisecond))
				if a.sleepUnlessRehello(ctx, delay, hello) != nil {
					return nil
				}
				continue
			}
			a.metrics.dialErrors.WithLabelValues("error").Inc()
			a.setNotConnected("cannot connect to the hub: " + err.Error())
			a.log.Warn("cannot connect to the hub; retrying", "hub", a.tunnelURL, "err", err, "attempt", b.Attempt()+1)
			if b.Wait(ctx) != nil {
				return nil
			}
			continue
		}

		ls := a.serve(ctx, s, hello)
		a.log.Info("connected to the hub", "hub", a.tunnelURL, "session", s.SessionID(),
			"fingerprint", hello.Fingerprint, "kubernetesVersion", hello.KubernetesVersion)
		start := time.Now()
		redial := false
		for !redial {
			select {
			case <-ctx.Done():
				return ls
			case <-s.Done():
				redial = true
			case <-a.rehello:
				// The first Hello lacked what the API server told
				// since (it was unreachable): reconnect at once so the
				// hub learns the fingerprint.
				if h := a.hello(); !sameHello(h, hello) {
					a.log.Info("reconnecting to send the hub the cluster fingerprint", "fingerprint", h.Fingerprint)
					ls.close()
					a.setNotConnected("reconnecting with the cluster fingerprint")
					ls = nil
					redial = true
				}
			}
		}
		if ls == nil {
			b.Reset()
			continue
		}
		ls.close()
		err = s.Err()
		a.metrics.reconnects.Inc()
		a.setNotConnected("lost the connection to the hub: " + errString(err))
		if time.Since(start) >= stableSession {
			b.Reset()
		}
		level := slog.LevelWarn
		if errors.Is(err, tunnel.ErrDisconnected) {
			level = slog.LevelInfo // the hub hung up on purpose, and said why
		}
		a.log.Log(ctx, level, "tunnel to the hub ended; reconnecting", "err", err, "connectedFor", time.Since(start).Round(time.Millisecond))
		if b.Wait(ctx) != nil {
			return nil
		}
	}
}

// sameHello compares the fields of a Hello the agent fills in.
func sameHello(x, y tunnel.Hello) bool {
	return x.AgentVersion == y.AgentVersion && x.KubernetesVersion == y.KubernetesVersion &&
		x.Fingerprint == y.Fingerprint
}

// sleepUnlessRehello waits for d, or until ctx ends, or until the Hello
// differs from sent: a hub that rejected a Hello without a fingerprint
// (the API server was unreachable) may well accept one with it.
func (a *Agent) sleepUnlessRehello(ctx context.Context, d time.Duration, sent tunnel.Hello) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case <-a.rehello:
			if !sameHello(a.hello(), sent) {
				return nil
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// clientConfig is the tunnel configuration for one dial.
func (a *Agent) clientConfig(hello tunnel.Hello) tunnel.ClientConfig {
	return tunnel.ClientConfig{
		URL:          a.tunnelURL,
		ClusterID:    a.cfg.ClusterID,
		Token:        a.currentToken(),
		Hello:        hello,
		TLSConfig:    a.tlsConfig,
		SessionCache: a.sessions,
		Proxy:        a.cfg.Proxy,
		ProxyRootCAs: a.cfg.ProxyRootCAs,
		OnCredential: a.keepCredential,
		Logger:       a.log.With("component", "tunnel"),
	}
}

// liveSession is a tunnel session with the Forwarder serving it.
type liveSession struct {
	s      *tunnel.ClientSession
	stop   context.CancelFunc // ends serving; nil for a session opened only to say goodbye
	served chan struct{}      // closed when Forwarder.Serve returned
	a      *Agent
}

// serve starts serving the Forwarder on s and makes s the agent's session.
func (a *Agent) serve(ctx context.Context, s *tunnel.ClientSession, hello tunnel.Hello) *liveSession {
	// Serving ends when the session is closed, not with ctx: the caller
	// may still say goodbye on a session connectLoop hands back.
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ls := &liveSession{s: s, stop: stop, served: make(chan struct{}), a: a}
	go func() { // owned: close waits for it
		defer close(ls.served)
		if err := a.fwd.Serve(ctx, countingListener{s, a.metrics}); err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Debug("serving the tunnel", "err", err)
		}
	}()
	a.mu.Lock()
	a.session, a.sessionHello, a.notConnected = s, hello, ""
	a.mu.Unlock()
	a.metrics.connected.Set(1)
	a.metrics.sessions.Inc()
	a.triggerCheck() // report the state to the hub at once
	return ls
}

// close ends the session and waits for every stream it served.
func (ls *liveSession) close() {
	if ls.a != nil {
		ls.a.mu.Lock()
		if ls.a.session == ls.s {
			ls.a.session = nil
			ls.a.metrics.connected.Set(0)
		}
		ls.a.mu.Unlock()
	}
	ls.s.Close()
	if ls.stop != nil {
		ls.stop()
		<-ls.served
	}
}

func (a *Agent) setNotConnected(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.notConnected = why
}

// currentSession returns the live session, or nil.
func (a *Agent) currentSession() *tunnel.ClientSession {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

// countingListener counts the streams the hub opens.
type countingListener struct {
	*tunnel.ClientSession
	m *metrics
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.ClientSession.Accept()
	if err == nil {
		l.m.streams.Inc()
	}
	return c, err
}
