package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/install"
)

// Forwarder passes the requests the hub sends through the tunnel on to the
// cluster's API server, authenticated as the agent's ServiceAccount and
// carrying the hub's impersonation headers, and passes the answers back.
//
// It is a pass-through, not a reverse proxy: the hub has already parsed
// each request (authentication, impersonation), so the Forwarder reads only
// request heads from a stream. It refuses a request that impersonates no
// one or a "system:" user, puts its own credentials and the API server's
// Host on the others, and writes them, bodies as framed by the hub, to a
// connection to the API server that belongs to the stream. The API server's
// responses are copied back to the stream as bytes, never parsed, so
// watches, chunked lists and protobuf pass unchanged, each write as soon as
// it arrives. A protocol upgrade (exec, attach and port-forward over SPDY
// or WebSocket) gets a connection of its own, whose response head is read:
// after a 101 Switching Protocols the stream and the connection are joined
// both ways; any other answer is passed on with Connection: close and ends
// the stream.
type Forwarder struct {
	kube   *kubeTransport
	logger *slog.Logger
	// onError, if not nil, is called when a request could not be
	// forwarded: refused (ErrNoImpersonation, ErrReservedUser) or failed on
	// the way to the API server.
	onError func(error)
	// onRequest, if not nil, is called for every request read.
	onRequest func()
	// maxStreams, if positive, caps the connections Serve serves at
	// once; onRefused, if not nil, is called for each one refused.
	maxStreams int
	onRefused  func()
	active     atomic.Int64

	// Pools: stream readers (*bufio.Reader), request writers
	// (*bufio.Writer) and copy buffers (*[]byte, small and big).
	readers, writers, small, big sync.Pool
}

// Sizes and timeouts of the Forwarder.
const (
	// firstRequestTimeout bounds the wait for a stream's first request
	// head: the hub writes it as soon as it opens the stream.
	firstRequestTimeout = 30 * time.Second
	// smallCopyBuf is the buffer a copy waits in; bigCopyBuf the one it
	// uses while data streams in.
	smallCopyBuf = 4 << 10
	bigCopyBuf   = 64 << 10
	// requestWriteBuf buffers a request on its way to the API server: one
	// full TLS record.
	requestWriteBuf = 16 << 10
	// maxResponseHead bounds the response head read for an upgrade.
	maxResponseHead = 1 << 20
	// maxDiscard bounds the request body read and dropped before a
	// refusal.
	maxDiscard = 256 << 10
)

// NewForwarder returns a Forwarder for the API server cfg describes.
// cfg's credentials authenticate every request (a BearerTokenFile, such as
// a ServiceAccount token, is re-read as soon as it changes; a client
// certificate goes into the TLS handshake); a client's own Authorization
// header never reaches the API server. cfg's proxy settings and
// impersonation are ignored: the Forwarder dials the API server directly
// and impersonates exactly whom each request names. If logger is nil, logs
// are discarded.
func NewForwarder(cfg *rest.Config, logger *slog.Logger) (*Forwarder, error) {
	k, err := newKubeTransport(cfg, "eco-agent")
	if err != nil {
		return nil, err
	}
	return newForwarder(k, logger), nil
}

func newForwarder(k *kubeTransport, logger *slog.Logger) *Forwarder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{kube: k, logger: logger}
	f.readers.New = func() any { return bufio.NewReader(nil) }
	f.writers.New = func() any { return bufio.NewWriterSize(nil, requestWriteBuf) }
	f.small.New = func() any { b := make([]byte, smallCopyBuf); return &b }
	f.big.New = func() any { b := make([]byte, bigCopyBuf); return &b }
	return f
}

// ErrNoImpersonation is why the forwarder refuses a request: every request
// through the tunnel must act as a hub identity, never as the agent.
var ErrNoImpersonation = errors.New("request carries no Impersonate-User header")

// ErrReservedUser is why the forwarder refuses to impersonate a user name
// in Kubernetes' reserved "system:" namespace. RBAC cannot limit which users
// the agent may impersonate, and such users (system:kube-controller-manager,
// system:serviceaccount:…) hold powers no hub user should borrow.
var ErrReservedUser = errors.New(`request impersonates a reserved "system:" user`)

// Serve forwards the requests of every connection ln accepts (the streams
// of a tunnel session; see ServeConn) until ctx ends or Accept fails. When
// ctx ends it closes ln and every connection. It returns once every
// connection it accepted has ended: nil if ctx ended, else the Accept error.
// Closing ln alone does not end the connections already accepted.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting a stream: %w", err)
		}
		if f.maxStreams > 0 && f.active.Load() >= int64(f.maxStreams) {
			if f.onRefused != nil {
				f.onRefused()
			}
			wg.Go(func() { f.refuse(c) })
			continue
		}
		f.active.Add(1)
		wg.Go(func() {
			defer f.active.Add(-1)
			f.ServeConn(ctx, c)
		})
	}
}

// refuseTimeout bounds the wait for the head of a request refused over
// the stream cap.
const refuseTimeout = 10 * time.Second

// refuse answers the request on c with 429 Too Many Requests and
// Retry-After, holding no API server connection, and closes c. It reads
// the request head first (and a little of its body) so the hub reads the
// answer rather than a reset.
func (f *Forwarder) refuse(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(refuseTimeout))
	br := f.readers.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() { br.Reset(nil); f.readers.Put(br) }()
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	discardBody(req)
	msg := fmt.Sprintf("eco-agent: %d streams are open, the agent's cap; retry later", f.maxStreams)
	resp := statusResponseWith(http.StatusTooManyRequests, msg, "Retry-After: 1\r\n")
	if _, err := c.Write(resp); err == nil {
		closeWrite(c)
	}
	// Debug: eco_agent_streams_refused_total counts them without a log
	// line each.
	f.logger.Debug("refused a stream over the cap", "max_streams", f.maxStreams, "method", req.Method, "path", req.URL.Path)
}

// ServeConn forwards the HTTP/1.1 requests read from c, one after the
// other, until c or its API server connection ends or ctx ends; then it
// closes both. A request without Impersonate-User, or impersonating a
// "system:" user, is refused with 403 Forbidden as a Kubernetes Status, and
// an API server it cannot reach is answered with 502 Bad Gateway; either
// answer carries Connection: close and ends c.
func (f *Forwarder) ServeConn(ctx context.Context, c net.Conn) {
	s := &stream{f: f, conn: c}
	s.serve(ctx)
}

// stream is one connection from the hub and the API server connection its
// requests go to.
type stream struct {
	f    *Forwarder
	conn net.Conn
	br   *bufio.Reader  // on conn, pooled
	wg   sync.WaitGroup // copyResponses

	mu      sync.Mutex // guards the fields below
	closed  bool
	backend *backendConn
}

// backendConn is a connection to the API server.
type backendConn struct {
	net.Conn
	// retired is set when the connection is closed on purpose to make
	// way for an upgrade's own: its end must not end the stream.
	retired bool
	// done is closed when copyResponses stopped reading the connection.
	done chan struct{}
}

func (s *stream) serve(ctx context.Context) {
	s.br = s.f.readers.Get().(*bufio.Reader)
	s.br.Reset(s.conn)
	stop := context.AfterFunc(ctx, s.close)
	defer func() {
		stop()
		s.close()
		s.wg.Wait()
		s.br.Reset(nil)
		s.f.readers.Put(s.br)
	}()
	if !s.setReadDeadline(time.Now().Add(firstRequestTimeout)) {
		return
	}
	for first := true; ; first = false {
		req, err := http.ReadRequest(s.br)
		if err != nil {
			s.readFailed(err)
			return
		}
		if first && !s.setReadDeadline(time.Time{}) {
			return
		}
		if !s.forward(ctx, req) {
			return
		}
	}
}

// readFailed ends the stream after a failed read of a request head: quietly
// if the hub closed the stream (or it timed out, or s was closed), with
// 400 Bad Request if what the hub sent is not a request.
func (s *stream) readFailed(err error) {
	var ne net.Error
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne) || s.isClosed() {
		s.f.logger.Debug("stream ended", "err", err)
		return
	}
	s.f.logger.Warn("reading a request from the hub", "err", err)
	s.reply(http.StatusBadRequest, "eco-agent: reading the request: "+err.Error())
}

// forward handles one request and reports whether the stream may carry
// another.
func (s *stream) forward(ctx context.Context, req *http.Request) bool {
	f := s.f
	if f.onRequest != nil {
		f.onRequest()
	}
	if err := checkImpersonation(req.Header); err != nil && !isIdentityKeysRequest(req) {
		f.logger.Debug("refused", "method", req.Method, "path", req.URL.Path, "err", err)
		if f.onError != nil {
			f.onError(err)
		}
		discardBody(req)
		s.reply(http.StatusForbidden, "eco-agent: "+err.Error())
		return false
	}
	if err := f.prepare(req); err != nil {
		s.unreachable(ctx, req, err)
		return false
	}
	if isUpgrade(req.Header) {
		s.upgrade(ctx, req)
		return false
	}
	be, err := s.connect(ctx)
	if err != nil {
		s.unreachable(ctx, req, err)
		return false
	}
	if err := f.writeRequest(be, req); err != nil {
		// The API server closed the connection (copyResponses ends the
		// stream), or the hub's request body failed.
		f.logger.Debug("writing the request to the API server", "method", req.Method, "path", req.URL.Path, "err", err)
		return false
	}
	return true
}

// prepare turns the hub's request into the API server's: the agent's
// credentials replace the hub's, and Host and path are the API server's.
func (f *Forwarder) prepare(req *http.Request) error {
	auth, err := f.kube.authorization()
	if err != nil {
		return err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	} else {
		req.Header.Del("Authorization")
	}
	host := f.kube.host
	req.Host = host.Host
	if prefix := strings.TrimSuffix(host.Path, "/"); prefix != "" {
		// An API server behind a path (https://proxy/k8s/clusters/x).
		req.URL.Path = prefix + req.URL.Path
		if req.URL.RawPath != "" {
			req.URL.RawPath = strings.TrimSuffix(host.EscapedPath(), "/") + req.URL.RawPath
		}
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", f.kube.userAgent) // else Write adds Go's
	}
	return nil
}

// writeRequest writes req, with its body as the hub framed it, through a
// pooled buffer. A body is not buffered whole: Write flushes the head
// before it reads the body (so "Expect: 100-continue" works: the API
// server's 100 Continue goes back to the hub like any response bytes) and
// flushes every chunk of a chunked body.
func (f *Forwarder) writeRequest(w io.Writer, req *http.Request) error {
	bw := f.writers.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		f.writers.Put(bw)
	}()
	if err := req.Write(bw); err != nil {
		return err
	}
	return bw.Flush()
}

// connect returns the stream's API server connection, dialing it for the
// stream's first request, and starts copying what the API server sends.
func (s *stream) connect(ctx context.Context) (*backendConn, error) {
	s.mu.Lock()
	be := s.backend
	s.mu.Unlock()
	if be != nil {
		return be, nil
	}
	be, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.wg.Go(func() {
		defer close(be.done)
		s.copyResponses(be)
	})
	return be, nil
}

// dial connects to the API server and makes the connection the stream's.
func (s *stream) dial(ctx context.Context) (*backendConn, error) {
	c, err := s.f.kube.dial(ctx)
	if err != nil {
		return nil, err
	}
	be := &backendConn{Conn: c, done: make(chan struct{})}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.backend = be
	}
	s.mu.Unlock()
	if closed {
		c.Close()
		return nil, fmt.Errorf("the stream was closed: %w", net.ErrClosed)
	}
	return be, nil
}

// copyResponses copies what the API server sends on be to the stream until
// either ends, then ends the stream, unless be was retired: the hub must
// not send another request on a stream whose API server connection is gone.
func (s *stream) copyResponses(be *backendConn) {
	_, err := s.f.copy(s.conn, be)
	s.mu.Lock()
	retired := be.retired
	s.mu.Unlock()
	if retired {
		return
	}
	if err != nil && !s.isClosed() {
		s.f.logger.Debug("copying from the API server", "err", err)
	}
	s.close()
}

// unreachable answers a request that could not reach the API server with
// 502 Bad Gateway, unless ctx ended (the hub or the agent went away, and
// nothing failed on the cluster's side).
func (s *stream) unreachable(ctx context.Context, req *http.Request, err error) {
	if ctx.Err() != nil || s.isClosed() {
		s.f.logger.Debug("request ended by the hub", "method", req.Method, "path", req.URL.Path, "err", err)
		return
	}
	s.f.logger.Warn("forwarding to API server", "method", req.Method, "path", req.URL.Path, "err", err)
	if s.f.onError != nil {
		s.f.onError(err)
	}
	discardBody(req)
	s.reply(http.StatusBadGateway, "eco-agent cannot reach the API server: "+err.Error())
}

// reply answers with a Kubernetes Status, which kubectl and client-go show
// as a readable error, and ends the stream's writing half: what follows on
// the stream is no longer read.
func (s *stream) reply(code int, msg string) {
	if _, err := s.conn.Write(statusResponse(code, msg)); err != nil {
		s.f.logger.Debug("answering the hub", "code", code, "err", err)
	}
	closeWrite(s.conn)
}

// discardBody reads what remains of a request body the API server will not
// get, up to maxDiscard, so that closing the stream does not reset it (a
// reset may drop the answer before the hub reads it). A body the hub sends
// only after a 100 Continue is not waited for.
func discardBody(req *http.Request) {
	if req.Body == nil || req.Body == http.NoBody || strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		return
	}
	io.CopyN(io.Discard, req.Body, maxDiscard)
}

// close ends the stream and its API server connection. Closing a tunnel
// stream may end only its writing half, so an expired read deadline wakes
// up a read of it.
func (s *stream) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	be := s.backend
	s.conn.SetReadDeadline(time.Now())
	s.mu.Unlock()
	s.conn.Close()
	if be != nil {
		be.Close()
	}
}

func (s *stream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// setReadDeadline sets the stream's read deadline and reports true, unless
// the stream is closed: then close's deadline, which wakes the reader up,
// stays.
func (s *stream) setReadDeadline(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conn.SetReadDeadline(t)
	return true
}

// closeWrite ends c's writing half: CloseWrite of a TCP or TLS connection
// or of a stream that has it, else Close (a yamux stream's Close only
// half-closes it).
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func checkImpersonation(h http.Header) error {
	users := h.Values("Impersonate-User")
	if len(users) == 0 || users[0] == "" {
		return ErrNoImpersonation
	}
	for _, u := range users {
		if strings.HasPrefix(u, "system:") {
			return ErrReservedUser
		}
	}
	return nil
}

// isIdentityKeysRequest reports whether req is the one kind of request the
// agent sends as itself: a plain GET of its API server's service-account
// issuer keys or discovery document (public documents the default
// system:service-account-issuer-discovery binding lets every
// ServiceAccount read), without query, body or any Impersonate-* header.
// The hub fetches the keys this way to check the agent's identity token.
func isIdentityKeysRequest(req *http.Request) bool {
	if req.Method != http.MethodGet || req.URL.RawQuery != "" || req.URL.RawPath != "" ||
		(req.URL.Path != install.IdentityKeysPath && req.URL.Path != install.IdentityDiscoveryPath) ||
		req.ContentLength != 0 || len(req.TransferEncoding) > 0 || isUpgrade(req.Header) {
		return false
	}
	for k := range req.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "Impersonate-") {
			return false
		}
	}
	return true
}

// isUpgrade reports whether a request asks for a protocol upgrade
// (Connection: Upgrade).
func isUpgrade(h http.Header) bool {
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// statusResponse is a complete HTTP/1.1 response carrying a Kubernetes
// Status, with Connection: close.
func statusResponse(code int, msg string) []byte { return statusResponseWith(code, msg, "") }

// statusResponseWith is statusResponse with extra header lines, each
// ending in CRLF.
func statusResponseWith(code int, msg, extra string) []byte {
	reason := "InternalError"
	switch code {
	case http.StatusForbidden:
		reason = "Forbidden"
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		reason = "ServiceUnavailable"
	case http.StatusUnauthorized:
		reason = "Unauthorized"
	case http.StatusBadRequest:
		reason = "BadRequest"
	case http.StatusTooManyRequests:
		reason = "TooManyRequests"
	}
	body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`+"\n", msg, reason, code)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s",
		code, http.StatusText(code), len(body), extra, body)
}
