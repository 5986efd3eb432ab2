package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/eco-project/eco/tunnel/mux"
)

// ClientConfig configures the agent side of a tunnel. URL and ClusterID are
// required; the zero value of every other field means the default documented
// on it.
type ClientConfig struct {
	// URL is the hub's tunnel endpoint, wss://HOST/PATH (ws:// for tests).
	URL string
	// ClusterID is sent in the X-Eco-Cluster-Id header.
	ClusterID string
	// Token is sent as "Authorization: Bearer TOKEN". If empty, no
	// Authorization header is sent.
	Token string
	// Header holds extra headers for the upgrade request.
	Header http.Header

	// Hello is sent in the upgrade request's headers. ProtocolVersion is
	// filled in if empty. Its fields must fit in headers (printable ASCII,
	// spec.md section 5), or Dial fails with ErrBadHello.
	Hello Hello

	// TLSConfig is used for wss:// URLs, e.g. with RootCAs set to the hub's
	// CA. If nil, the system roots are used. ALPN is always http/1.1. The
	// TLS to an https:// proxy uses it too (as net/http does), with the
	// proxy's host as ServerName and no session cache: unless
	// ProxyRootCAs is set, its RootCAs must then also trust the proxy.
	TLSConfig *tls.Config
	// ProxyRootCAs, if not nil, verifies the certificate of an https://
	// proxy in place of TLSConfig's RootCAs: e.g. the system roots plus a
	// corporate CA, while TLSConfig trusts only the hub's private CA. It
	// never verifies the hub, and changes nothing else of the proxy's TLS
	// (see TLSConfig). If nil, the proxy is verified with TLSConfig's
	// RootCAs, as net/http does (the system roots if those are nil too).
	// http:// proxies and direct connections do not use it.
	ProxyRootCAs *x509.CertPool
	// SessionCache keeps the TLS session tickets the hub sends, so that the
	// next Dial to the same hub resumes the session (TLS 1.3 PSK with
	// ECDHE: no certificate signature or chain verification) instead of a
	// full handshake. Dial is called once per attempt, so the cache must
	// outlive it: create one per agent, e.g. tls.NewLRUClientSessionCache(1),
	// and pass it to every Dial. It is used for direct and proxied (CONNECT)
	// connections alike, unless TLSConfig has a ClientSessionCache of its
	// own, which then wins. If both are nil, every Dial is a full
	// handshake. [ClientSession.TLS] tells whether a session was resumed.
	SessionCache tls.ClientSessionCache
	// Proxy picks the proxy for the upgrade request. If nil,
	// http.ProxyFromEnvironment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
	Proxy func(*http.Request) (*url.URL, error)

	// HandshakeTimeout bounds Dial: connect, TLS and upgrade (which is
	// the handshake). If zero, DefaultHandshakeTimeout (10 s). Dial's ctx
	// may end it sooner.
	HandshakeTimeout time.Duration
	// HeartbeatTimeout closes the session when no heartbeat arrived from
	// the hub for this long. If zero, the timeout the hub announces in the
	// handshake (3 heartbeat intervals by default).
	HeartbeatTimeout time.Duration

	// MaxControlMessage limits one control frame body in bytes. If zero,
	// DefaultMaxControlMessage (64 KiB).
	MaxControlMessage int
	// MaxMessageSize limits one received WebSocket message in bytes. If
	// zero, DefaultMaxMessageSize (1 MiB).
	MaxMessageSize int64
	// Mux tunes the multiplexer; its zero value means the defaults.
	Mux MuxConfig

	// OnCredential, if not nil, keeps a new credential the hub sends
	// (protocol 2.1; announce CapabilityCredential in Hello): it should
	// store it where the next Dial finds it, and return nil only once it
	// has. It runs on a goroutine of its own, one at a time; ctx ends with
	// the session. The session then acknowledges the credential to the
	// hub, with the error if it failed.
	OnCredential func(ctx context.Context, c Credential) error

	// Logger receives the session's logs. If nil, logs are discarded.
	Logger *slog.Logger
}

// ClientSession is an agent's live tunnel. It is a net.Listener: Accept
// returns each connection the hub dials, so an agent serves it with
// http.Server.Serve. Close it when done; Done is closed when it ends for any
// reason, and Err then says why.
type ClientSession struct {
	clusterID string
	log       *slog.Logger
	conn      *wsConn
	mux       *mux.Session
	ctrl      *controlStream
	id        uint64
	hbTimeout time.Duration
	tls       *tls.ConnectionState // nil for ws://

	onCredential func(context.Context, Credential) error
	credentials  chan Credential // to keepCredentials; newest wins
	ctx          context.Context // ends when run returns
	cancel       context.CancelFunc

	done       chan struct{} // closed when the session ended and run returned
	goodbyeAck chan struct{} // closed when the hub acknowledged our goodbye

	// mu guards err, closing and sentGoodbye.
	mu          sync.Mutex
	err         error // why the session ended; nil while it is live
	closing     bool  // Close was called
	sentGoodbye bool

	wg sync.WaitGroup // the control loop (run) and keepCredentials
}

// Dial connects to the hub, authenticates and performs the handshake, all
// in the one round trip of the HTTP upgrade: the session is up when Dial
// returns. A *RejectError means the hub refused this agent (bad credential,
// Admit failed, unsupported version); other errors are network or protocol
// failures worth retrying with a Backoff.
func Dial(ctx context.Context, cfg ClientConfig) (*ClientSession, error) {
	if cfg.URL == "" || cfg.ClusterID == "" {
		return nil, errors.New("tunnel: ClientConfig.URL and ClusterID are required")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxControlMessage <= 0 {
		cfg.MaxControlMessage = DefaultMaxControlMessage
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.Hello.ProtocolVersion == "" {
		cfg.Hello.ProtocolVersion = ProtocolVersion
	}
	if err := validateHello(&cfg.Hello); err != nil {
		return nil, err
	}
	log := discardLogger(cfg.Logger)

	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	ws, resp, err := dialWebSocket(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	acc, err := acceptFromHeaders(resp.Header)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("tunnel: handshake: %w", err)
	}
	timeout := cfg.HeartbeatTimeout
	if timeout <= 0 {
		timeout = acc.heartbeatTimeout
	}
	conn := newWSConn(ws, cfg.MaxMessageSize, false)
	m := mux.Server(conn, cfg.Mux.mux(log))
	c := &ClientSession{
		clusterID:  cfg.ClusterID,
		log:        log,
		conn:       conn,
		mux:        m,
		ctrl:       newControlStream(m.Control(), cfg.MaxControlMessage),
		id:         acc.sessionID,
		hbTimeout:  timeout,
		tls:        resp.TLS,
		done:       make(chan struct{}),
		goodbyeAck: make(chan struct{}),

		onCredential: cfg.OnCredential,
		credentials:  make(chan Credential, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.run()
	if c.onCredential != nil {
		c.wg.Add(1)
		go c.keepCredentials() // owned: ends with run (c.ctx); Close waits
	}
	return c, nil
}

// dialWebSocket performs the HTTP upgrade and returns the 101 response.
func dialWebSocket(ctx context.Context, cfg *ClientConfig) (*websocket.Conn, *http.Response, error) {
	var tlsCfg *tls.Config
	if cfg.TLSConfig != nil {
		tlsCfg = cfg.TLSConfig.Clone()
	} else {
		tlsCfg = &tls.Config{}
	}
	tlsCfg.NextProtos = []string{"http/1.1"}
	if tlsCfg.ClientSessionCache == nil {
		tlsCfg.ClientSessionCache = cfg.SessionCache
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	// Direct wss:// connections use TLS over a combiningConn; through a
	// proxy the Transport does the hub's TLS itself, inside the CONNECT
	// tunnel. Both get tlsCfg, so both keep and resume sessions in its
	// ClientSessionCache, under the same key (the hub's host name). The
	// TLS to an https:// proxy is dialed by cd too, with a configuration
	// of the proxy's own (see proxyTLSConfig).
	cd := &combiningDialer{dialer: dialer, tls: tlsCfg, proxyRoots: cfg.ProxyRootCAs}
	tr := &http.Transport{
		Proxy:               cd.recordProxy(proxy),
		TLSClientConfig:     tlsCfg,
		DialContext:         dialer.DialContext,
		DialTLSContext:      cd.dialTLS,
		TLSHandshakeTimeout: cfg.HandshakeTimeout,
		DisableCompression:  true,
		MaxIdleConns:        1,
	}
	defer tr.CloseIdleConnections()
	hdr := cfg.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if cfg.Token != "" {
		hdr.Set("Authorization", "Bearer "+cfg.Token)
	}
	hdr.Set(HeaderClusterID, cfg.ClusterID)
	setHelloHeaders(hdr, &cfg.Hello)
	ws, resp, err := websocket.Dial(ctx, cfg.URL, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: frameWriterTransport{RoundTripper: tr, combining: cd}},
		HTTPHeader:      hdr,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err == nil {
		return ws, resp, nil
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		var body string
		if resp.Body != nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			body = strings.TrimSpace(string(b))
		}
		if body == "" {
			body = http.StatusText(resp.StatusCode)
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return nil, nil, &RejectError{Reason: body, StatusCode: resp.StatusCode}
		}
		return nil, nil, fmt.Errorf("tunnel: dialing %s: HTTP %d: %s", redactURL(cfg.URL), resp.StatusCode, body)
	}
	return nil, nil, fmt.Errorf("tunnel: dialing %s: %w", redactURL(cfg.URL), err)
}

// redactURL drops userinfo and query from u for error messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "hub"
	}
	p.User, p.RawQuery = nil, ""
	return p.String()
}

// connLost wraps a failed read or write as ErrConnectionLost, preferring the
// WebSocket-level cause.
func connLost(conn *wsConn, err error) error {
	if cerr := conn.err(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrConnectionLost, cerr)
	}
	return fmt.Errorf("%w: %w", ErrConnectionLost, err)
}

// run answers heartbeats until the session ends.
func (c *ClientSession) run() {
	defer c.wg.Done()
	cause := c.readLoop()
	c.cancel()
	c.mu.Lock()
	if c.closing && !errors.Is(cause, ErrGoodbye) && !errors.Is(cause, ErrDisconnected) {
		cause = fmt.Errorf("%w: closed by the agent", ErrSessionClosed)
	}
	if c.err == nil {
		c.err = cause
	}
	cause = c.err
	c.mu.Unlock()
	c.mux.Close()
	c.log.Info("tunnel: session ended", "cluster", c.clusterID, "session", c.id, "cause", cause)
	close(c.done)
}

func (c *ClientSession) readLoop() error {
	for {
		if err := c.ctrl.st.SetReadDeadline(time.Now().Add(c.hbTimeout)); err != nil {
			return err
		}
		m, err := c.ctrl.recv()
		if err != nil {
			switch {
			case isTimeout(err):
				return fmt.Errorf("%w: no heartbeat from the hub for %v", ErrHeartbeatTimeout, c.hbTimeout)
			case errors.Is(err, ErrProtocol):
				return err
			}
			return connLost(c.conn, err)
		}
		switch m.Type {
		case msgPing:
			if err := c.ctrl.send(&message{Type: msgPong, Seq: m.Seq}, time.Now().Add(c.hbTimeout)); err != nil {
				return connLost(c.conn, err)
			}
		case msgGoodbye:
			c.mu.Lock()
			ours := c.sentGoodbye
			c.mu.Unlock()
			if ours {
				close(c.goodbyeAck)
				return fmt.Errorf("%w: acknowledged by the hub", ErrGoodbye)
			}
			return fmt.Errorf("%w: %s", ErrDisconnected, m.Reason)
		case msgCredential:
			if c.onCredential == nil {
				continue // not announced; an older agent ignores it too
			}
			select { // replace an older credential not yet taken
			case <-c.credentials:
			default:
			}
			c.credentials <- *m.Credential
		case msgPong, msgStatus, msgCredentialAck:
			return fmt.Errorf("%w: unexpected %s message from hub", ErrProtocol, m.Type)
		default:
			// Unknown types come from newer minor versions: ignore.
		}
	}
}

// keepCredentials hands each credential the hub sends to OnCredential and
// acknowledges it, until the session ends.
func (c *ClientSession) keepCredentials() {
	defer c.wg.Done()
	for {
		var cred Credential
		select {
		case <-c.ctx.Done():
			return
		case cred = <-c.credentials:
		}
		ack := Credential{Generation: cred.Generation, Token: cred.Token}
		if err := c.onCredential(c.ctx, cred); err != nil {
			msg := err.Error()
			if len(msg) > maxFieldLen {
				msg = msg[:maxFieldLen]
			}
			ack = Credential{Generation: cred.Generation, Error: msg}
			c.log.Warn("tunnel: cannot keep the new credential", "cluster", c.clusterID, "generation", cred.Generation, "err", err)
		}
		if err := c.send(c.ctx, &message{Type: msgCredentialAck, Credential: &ack}); err != nil {
			c.log.Debug("tunnel: acknowledging the credential", "cluster", c.clusterID, "err", err)
		}
	}
}

// Accept waits for and returns the next connection the hub dials. After the
// session ends it returns an error wrapping net.ErrClosed.
func (c *ClientSession) Accept() (net.Conn, error) {
	st, err := c.mux.Accept(context.Background())
	if err != nil {
		if cause := c.Err(); cause != nil {
			return nil, fmt.Errorf("tunnel: accept: %w (%w)", net.ErrClosed, cause)
		}
		return nil, fmt.Errorf("tunnel: accept: %w (%w)", net.ErrClosed, err)
	}
	return st, nil
}

// Addr returns a placeholder address naming the cluster.
func (c *ClientSession) Addr() net.Addr { return tunnelAddr(c.clusterID) }

// SessionID is the ID the hub gave this session.
func (c *ClientSession) SessionID() uint64 { return c.id }

// TLS is the state of the session's TLS connection to the hub, e.g.
// DidResume, or nil for a ws:// URL. The caller must not modify it.
func (c *ClientSession) TLS() *tls.ConnectionState { return c.tls }

// ReportStatus tells the hub the agent's state, e.g. StateFailing with the
// reason the API server cannot be reached. ctx's deadline bounds the write.
func (c *ClientSession) ReportStatus(ctx context.Context, st Status) error {
	m := &message{Type: msgStatus, Status: &st}
	if err := m.validate(); err != nil {
		return err
	}
	return c.send(ctx, m)
}

func (c *ClientSession) send(ctx context.Context, m *message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-c.done:
		return fmt.Errorf("%w: %w", ErrSessionClosed, c.Err())
	default:
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.hbTimeout)
	}
	if err := c.ctrl.send(m, deadline); err != nil {
		return fmt.Errorf("%w: %w", ErrSessionClosed, err)
	}
	return nil
}

// Goodbye tells the hub that the agent was removed from its cluster (not
// that it failed), waits for the hub to acknowledge or for ctx to end, and
// closes the session. It returns nil only if the hub acknowledged.
func (c *ClientSession) Goodbye(ctx context.Context, reason string) error {
	c.mu.Lock()
	c.sentGoodbye = true
	c.mu.Unlock()
	if len(reason) > maxFieldLen {
		reason = reason[:maxFieldLen]
	}
	err := c.send(ctx, &message{Type: msgGoodbye, Reason: reason})
	select {
	case <-c.goodbyeAck:
		// The ack can beat the report that the write completed.
		err = nil
	default:
	}
	if err == nil {
		select {
		case <-c.goodbyeAck:
		case <-c.done:
			select {
			case <-c.goodbyeAck:
			default:
				err = fmt.Errorf("tunnel: goodbye not acknowledged: %w", c.Err())
			}
		case <-ctx.Done():
			err = fmt.Errorf("tunnel: goodbye not acknowledged: %w", ctx.Err())
		}
	}
	c.Close()
	return err
}

// Done is closed when the session has ended.
func (c *ClientSession) Done() <-chan struct{} { return c.done }

// Err says why the session ended, or returns nil while it is live.
func (c *ClientSession) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the session at once and waits for its goroutines. Connections
// accepted from it are reset.
func (c *ClientSession) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.mux.Close()
	c.wg.Wait()
	return nil
}

// tunnelAddr is the net.Addr of a ClientSession.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "eco-tunnel" }
func (a tunnelAddr) String() string  { return "eco-tunnel/" + string(a) }
