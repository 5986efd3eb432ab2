package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/hub/audit"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/tunnel"
)

// RequestIDExtra is the impersonated user extra carrying the hub's request
// ID, so the cluster's own audit log can be joined with the hub's. The
// install YAML allows the agent to impersonate it.
const RequestIDExtra = "eco.dev/request-id"

// kubeProxy serves /clusters/{id}/k8s/...: it authenticates the hub user,
// replaces every client-supplied credential and impersonation header with
// impersonation of that user, and streams the request through the
// cluster's tunnel to its agent, which forwards it to the API server.
type kubeProxy struct {
	h         *Hub
	transport *tunnel.Transport
	// rp proxies requests that end (get, list, create, …); rpStream
	// those that stream for as long as the client stays (watch, logs -f,
	// exec): the same proxy with a smaller copy buffer, which hands the
	// body of a streaming response to pumpStream (streamBufs lends its
	// buffers) and keeps upgrades (exec) to itself.
	rp, rpStream *httputil.ReverseProxy
	streamBufs   *copyBuffers
	// pumps are the streams handed off to hijackedPumps; hangups tells
	// them when their clients speak or leave (nil: each reads its own).
	pumps   pumpSet
	hangups *hangups
	// reviewTransport sends the hub's own access reviews (kubectl --as).
	reviewTransport http.RoundTripper
	// access counts the outcomes of the access checks (proxyaccess.go).
	access *prometheus.CounterVec
	// requestIDHeader is the impersonation header carrying the
	// RequestIDExtra, in canonical form.
	requestIDHeader string
	// caps bound the requests in flight per user and per cluster.
	caps *streamCaps
	// retrying is transport with a retry of requests the agent refused
	// unread: what both the proxy and hub features' clients send through.
	retrying http.RoundTripper
}

func newKubeProxy(h *Hub) (*kubeProxy, error) {
	p := &kubeProxy{h: h, requestIDHeader: http.CanonicalHeaderKey("Impersonate-Extra-" + url.PathEscape(RequestIDExtra)), caps: newStreamCaps(h.cfg.Limits)}
	// URLs are http://CLUSTER-ID/...; the tunnel picks the cluster by
	// host. The stream itself is inside the agent's TLS WebSocket.
	var err error
	p.transport, err = tunnel.NewTransport(tunnel.TransportConfig{
		Dial:           h.tunnels.DialAddr,
		MaxIdlePerHost: 256,
		// Below kube-apiserver's own 90 s idle timeout for HTTP/1.1
		// connections: the agent gives every stream its own connection to
		// the API server, and a stream reused just as that connection
		// closed would fail a request with a body.
		IdleTimeout: 60 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy transport: %w", err)
	}
	p.retrying = tunnel.RetryRefused(p.transport)
	p.rp = &httputil.ReverseProxy{
		Rewrite: p.rewrite,
		// A burst of new streams beyond the agent's accept backlog is
		// refused unread; such requests are sent again.
		Transport: p.retrying,
		// Streaming responses (no Content-Length: watches, chunked lists,
		// logs -f) are flushed after every write regardless. A response
		// of known length is not: with -1 the proxy flushed its head from
		// a timer goroutine and then the body, two writes to the client
		// for every small GET instead of one.
		FlushInterval: 0,
		ErrorHandler:  p.errorHandler,
		// The agent's own 502/503 of a Failing cluster names eco's state.
		ModifyResponse: p.explainFailing,
		// What the proxy reports itself (a response body that failed
		// mid-copy) goes to the hub's structured log.
		ErrorLog:   slog.NewLogLogger(h.logger.With("component", "proxy").Handler(), slog.LevelWarn),
		BufferPool: &copyBuffers{size: copyBuf},
	}
	p.reviewTransport = tunnel.RetryRefused(p.transport)
	if p.access, err = newAccessCounter(h.registry); err != nil {
		return nil, err
	}
	stream := *p.rp
	stream.BufferPool = &copyBuffers{size: streamCopyBuf}
	stream.ModifyResponse = func(resp *http.Response) error {
		if err := p.explainFailing(resp); err != nil {
			return err
		}
		return p.takeStreamBody(resp)
	}
	p.rpStream = &stream
	p.streamBufs = &copyBuffers{size: streamCopyBuf}
	if p.hangups, err = newHangups(); err != nil {
		h.logger.Warn("proxy: no epoll instance; each handed-off watch reads its client itself", "err", err)
	}
	return p, nil
}

// Copy buffer sizes. ReverseProxy writes the client what one read of the
// response body returns, at most a buffer: a download through a 32 KiB
// buffer cost a write system call per 32 KiB, and moved 20–25 % fewer
// bytes per second than through a 256 KiB one (docs/benchmarks.md). A
// stream holds its buffer for as long as it lasts, thousands of watches
// at once, so it gets 16 KiB: more than most watch events, and a larger
// one is written in pieces (decision 0007).
const (
	copyBuf       = 256 << 10
	streamCopyBuf = 16 << 10
)

// copyBuffers lends the proxy its response copy buffers of one size.
// Without a pool, ReverseProxy allocates and zeroes 32 KiB for every
// response: a small GET then paid more for the buffer and the garbage
// collections it caused than for its own bytes.
type copyBuffers struct {
	size int
	pool sync.Pool
}

func (b *copyBuffers) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, b.size)
}

func (b *copyBuffers) Put(buf []byte) {
	if cap(buf) != b.size {
		return
	}
	buf = buf[:b.size]
	b.pool.Put(&buf)
}

func (p *kubeProxy) close() {
	if p.hangups != nil {
		p.hangups.close()
	}
	p.pumps.closeAll()
	p.transport.CloseIdleConnections()
}

// waitReadCloser is a tunnel response body that can wait for data
// without a buffer (tunnel.Transport's).
type waitReadCloser interface {
	io.ReadCloser
	WaitReadable(context.Context) error
}

// takeStreamBody is the streaming proxy's ModifyResponse: it takes a
// streaming response's body (a watch, logs -f) out of ReverseProxy, which
// then writes only the head, and leaves it to pumpStream. ReverseProxy
// holds a copy buffer for as long as a body lasts; a hub serving Argo CD
// holds thousands of watches, quiet most of the time, and pumpStream
// borrows a buffer only while one has data. Upgrades (101) and responses
// with trailers stay with ReverseProxy.
func (p *kubeProxy) takeStreamBody(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols || len(resp.Trailer) > 0 || resp.ContentLength >= 0 {
		return nil
	}
	target, _ := resp.Request.Context().Value(proxyTargetKey{}).(*proxyTarget)
	body, ok := resp.Body.(waitReadCloser)
	if target == nil || !ok {
		return nil
	}
	target.streamBody, target.streamResp = body, resp
	resp.Body = http.NoBody
	if target.handOff {
		resp.Header.Set("Connection", "close")
	}
	return nil
}

// pumpStream copies a streaming response body taken by takeStreamBody to
// w, flushing every piece: it waits for data holding no buffer, then
// borrows one for a read. It ends when the body does, the client leaves
// (ctx) or a write fails, and closes the body. It returns false if the
// body failed while the client was still there, so the response must be
// aborted. (An HTTP/2 stream is copied by streamTail instead.)
func (p *kubeProxy) pumpStream(ctx context.Context, w http.ResponseWriter, body waitReadCloser, cluster, reqID string) bool {
	defer body.Close()
	if flush(w) != nil {
		return true
	}
	for {
		if body.WaitReadable(ctx) != nil {
			return true // the client left: the deferred Close ends the stream
		}
		if more, ok := p.copyReadable(ctx, w, body, cluster, reqID); !more {
			return ok
		}
	}
}

// copyReadable copies what one Read of body returns to w and flushes it.
// It says whether to go on and, once not, whether the response ended well
// (false: the body failed while the client was still there).
func (p *kubeProxy) copyReadable(ctx context.Context, w http.ResponseWriter, body waitReadCloser, cluster, reqID string) (more, ok bool) {
	buf := p.streamBufs.Get()
	n, err := body.Read(buf)
	var werr error
	if n > 0 {
		if _, werr = w.Write(buf[:n]); werr == nil {
			werr = flush(w)
		}
	}
	p.streamBufs.Put(buf)
	switch {
	case werr != nil:
		return false, true // the client is gone
	case err == io.EOF:
		return false, true
	case err != nil:
		if ctx.Err() != nil {
			return false, true
		}
		p.h.logger.Warn("proxy: streaming response cut short", "cluster", cluster, "request_id", reqID, "err", err)
		return false, false
	}
	return true, true
}

// flush flushes w to the client, as http.ResponseController does, without
// allocating a controller for net/http's own writers.
func flush(w http.ResponseWriter) error {
	if f, ok := w.(interface{ FlushError() error }); ok {
		return f.FlushError()
	}
	return http.NewResponseController(w).Flush()
}

type proxyTarget struct {
	cluster   string
	path      string
	requestID string
	// unknown is set when the hub does not know the cluster: its ID is
	// then no metric label.
	unknown bool
	// body is the incoming request's body, which the proxy wraps.
	body io.Reader
	// streamBody is a streaming response's body, taken from ReverseProxy
	// after it wrote the head, for pumpStream or a hijackedPump to copy;
	// handOff says the client's HTTP/1.1 connection may be handed to a
	// hijackedPump (its response then says Connection: close).
	streamBody waitReadCloser
	handOff    bool
	// streamResp is the response streamBody came with: net/http's
	// chunked reader under it keeps it (for trailers) as long as the
	// stream lasts.
	streamResp *http.Response
	// user and groups are the hub user's Kubernetes identity in the
	// cluster; as, if set, is whom the cluster allowed it to impersonate.
	user   string
	groups []string
	as     *impersonation
}

type proxyTargetKey struct{}

// streamTailKey keys the *streamTail Hub.ServeHTTP lends an HTTP/2
// streaming request.
type streamTailKey struct{}

// streamTail is a streaming response's body (a watch, logs -f) over
// HTTP/2, copied from the top of the handler's stack rather than from
// kubeProxy.ServeHTTP's. net/http keeps an HTTP/2 stream's handler
// goroutine for as long as the stream lasts, and the garbage collector
// shrinks a parked goroutine's stack only while what it uses (plus an
// 800-byte guard) is under a quarter of it: a watch parked under the
// mux, the authentication and the proxy kept 8 KiB, one parked on a
// channel right under Hub.ServeHTTP keeps 4 (decision 0022).
// Hub.ServeHTTP lends an empty tail in the request's context;
// kubeProxy.ServeHTTP fills it and returns, and Hub.ServeHTTP calls pump.
type streamTail struct {
	p       *kubeProxy
	ctx     context.Context // the client's request's: it ends when the client leaves
	w       http.ResponseWriter
	body    waitReadCloser
	cluster string
	reqID   string
	// done reports the exchange's end and releases its caps.
	done func()

	// What start sets up: the body, and ctx when it ends, signal wake;
	// stop withdraws both.
	notifier readNotifier
	wake     chan struct{}
	stop     func()
	failed   bool
}

// readNotifier is a body that can signal a channel of the tail's own when
// it may have become readable (tunnel's, from a mux stream).
type readNotifier interface {
	Readable() bool
	NotifyReadable(f func()) (stop func(), ok bool)
}

// pump copies the tail's body to the client and reports the end; it
// panics with http.ErrAbortHandler, on the handler's goroutine, if the
// body failed while the client was still there. Its frame holds only t:
// the goroutine parks here, in <-t.wake, with Hub.ServeHTTP and net/http's
// three frames under it. That is just small enough: parked in a select on
// wake and ctx.Done() instead, it kept 8 KiB.
func (t *streamTail) pump() {
	if t.start() {
		for t.copyReadable() {
			<-t.wake
		}
	}
	t.finish()
}

// start flushes the head and has the body and the client's leaving
// signal t.wake. It returns false if the stream is over already, or if
// the body cannot signal: it was then copied by pumpStream.
func (t *streamTail) start() bool {
	if flush(t.w) != nil {
		return false
	}
	n, ok := t.body.(readNotifier)
	if !ok {
		t.failed = !t.p.pumpStream(t.ctx, t.w, t.body, t.cluster, t.reqID)
		return false
	}
	t.wake = make(chan struct{}, 1)
	wake := func() { signal(t.wake) }
	stopBody, ok := n.NotifyReadable(wake)
	if !ok {
		t.failed = !t.p.pumpStream(t.ctx, t.w, t.body, t.cluster, t.reqID)
		return false
	}
	stopCtx := context.AfterFunc(t.ctx, wake)
	t.notifier = n
	t.stop = func() {
		stopBody()
		stopCtx()
	}
	return true
}

// copyReadable copies what the body has until it has no more without
// waiting; it returns true to wait for t.wake, false once the stream is
// over.
func (t *streamTail) copyReadable() bool {
	for t.notifier.Readable() {
		more, ok := t.p.copyReadable(t.ctx, t.w, t.body, t.cluster, t.reqID)
		if !more {
			t.failed = !ok
			return false
		}
	}
	return t.ctx.Err() == nil // else the client left
}

// finish ends the body and the signals, reports the exchange's end, and
// aborts the response if the body failed.
func (t *streamTail) finish() {
	if t.stop != nil {
		t.stop()
	}
	t.body.Close()
	t.done()
	if t.failed {
		panic(http.ErrAbortHandler)
	}
}

// signal wakes whoever waits on c (cap 1) without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ServeHTTP handles one proxied request; the caller has authenticated it.
func (p *kubeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ident, _ := identityFrom(r.Context())
	// The hub's own request ID, never the client's: the client's
	// X-Request-Id, bounded and sanitised, is only logged beside it.
	reqID := uuid.NewString()
	clientReqID := sanitizeRequestID(r.Header.Get("X-Request-Id"))
	w.Header().Set("X-Request-Id", reqID)
	verb := kubeVerb(r)
	// An ID that cannot be a cluster's is answered at once: it never
	// reaches the tunnel, the store or a metric label.
	if !store.ValidID(store.ClusterIDPrefix, id) {
		p.h.metrics.proxyDuration.WithLabelValues(clusterLabelOther, verb, "404").Observe(0)
		writeKubeStatus(w, http.StatusNotFound, "NotFound", "eco: no such cluster in this hub")
		return
	}
	// The hot path asks the store nothing: a cluster with a tunnel
	// exists (deleting it closes the tunnel), and one without a tunnel
	// fails the dial, where errorHandler explains why.
	rest := strings.TrimPrefix(r.URL.Path, ProxyPrefix+id+ProxySuffix)
	if rest == "" {
		rest = "/"
	}
	long := streams(r, verb)
	release, refused := p.caps.acquire(ident.Name, id, long)
	if refused != "" {
		p.h.metrics.proxyRefused.WithLabelValues(refused).Inc()
		// Debug, not Warn: a client retrying past a cap must not flood
		// the log; eco_hub_proxy_refused_total counts refusals.
		p.h.logger.Debug("proxy request refused over a cap", "cluster", id, "user", ident.Name, "cap", refused, "verb", verb, "request_id", reqID, "client_request_id", clientReqID)
		who := "user " + ident.Name
		if refused == capClusterStreams || refused == capClusterWatches {
			who = "cluster " + id
		}
		tooMany(w, p.caps.limits.RetryAfter, refused, who)
		return
	}
	handedOff := false // to a hijackedPump, which releases the caps
	defer func() {
		if !handedOff {
			release()
		}
	}()
	target := &proxyTarget{cluster: id, path: rest, requestID: reqID, body: r.Body}

	if !p.authorize(w, r, target, verb) {
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	ctx := r.Context()
	// A stream over HTTP/1.1 may outlive this handler (a hijackedPump
	// takes the client's connection), so the request to the agent gets a
	// context of its own, cancelled if the client leaves while this
	// handler still serves it.
	var (
		cancel   context.CancelFunc
		stopLink func() bool
	)
	if long && r.ProtoMajor == 1 && r.ProtoMinor == 1 {
		ctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
		stopLink = context.AfterFunc(r.Context(), cancel)
		target.handOff = true
		defer func() {
			if !handedOff {
				stopLink()
				cancel()
			}
		}()
	}
	if long {
		ctx = tunnel.WithLongLived(ctx)
	}
	// One request copy carries both the target, for rewrite, and the
	// trace that tells rec which tunnel stream the response comes from;
	// the outgoing request inherits the context.
	ctx = context.WithValue(ctx, proxyTargetKey{}, target)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if st, ok := info.Conn.(*tunnel.Stream); ok {
				rec.upstream.Store(st)
			}
		},
	})
	r = r.WithContext(ctx)
	rp := p.rp
	if long {
		rp = p.rpStream
	}
	p.h.metrics.proxyInFlight.Inc()
	// The exchange's end, reported however the handler ends — also when
	// it panics to abort a response cut short — unless a pump took the
	// exchange over and reports it itself.
	defer func() {
		if handedOff {
			return
		}
		p.h.metrics.proxyInFlight.Dec()
		label := id
		if target.unknown {
			label = clusterLabelOther
		}
		p.h.metrics.proxyDuration.WithLabelValues(label, verb, strconv.Itoa(rec.code)).Observe(time.Since(start).Seconds())
		if p.h.cfg.AuditReads || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			p.h.auditKube(r, "proxy", ident, id, rest, rec.code, reqID, clientReqID)
		}
		if p.h.logger.Enabled(ctx, slog.LevelDebug) { // else the arguments alone cost allocations
			p.h.logger.Debug("proxied", "cluster", id, "user", ident.Name, "verb", verb, "path", rest, "code", rec.code, "request_id", reqID, "client_request_id", clientReqID, "duration", time.Since(start))
		}
	}()
	if long && r.ProtoMajor == 2 {
		// The handler of an HTTP/2 stream stays for as long as the
		// stream does, and a goroutine's stack stays as large as it
		// once grew: ReverseProxy and the transport run on a goroutine
		// of their own that ends once the head is written, so the
		// handler waits out the body with the small stack it has.
		done := make(chan struct{})
		var panicked any
		go func() {
			defer close(done)
			defer func() { panicked = recover() }()
			rp.ServeHTTP(rec, r)
		}()
		<-done
		if panicked != nil {
			panic(panicked) // http.ErrAbortHandler, on the handler's goroutine
		}
	} else {
		rp.ServeHTTP(rec, r)
	}
	if resp := target.streamResp; resp != nil {
		// ReverseProxy wrote the head from it and is done with it; all
		// the stream still reads of it is its Trailer. Its headers and
		// the outgoing request (with its own copies of the client's
		// headers, URL and context) would otherwise stay for as long
		// as the watch does.
		resp.Header, resp.Request, target.streamResp = nil, nil, nil
	}
	if body := target.streamBody; body != nil {
		if cancel != nil {
			// What the pump's end reports holds none of this exchange's
			// objects (the request, rec and through it the connection's
			// buffers), only values: they are the point of handing off.
			code, user := rec.code, ident.Name
			done := func() {
				p.h.metrics.proxyInFlight.Dec()
				p.h.metrics.proxyDuration.WithLabelValues(id, verb, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
				if p.h.logger.Enabled(context.Background(), slog.LevelDebug) {
					p.h.logger.Debug("proxied", "cluster", id, "user", user, "verb", verb, "path", rest, "code", code, "request_id", reqID, "client_request_id", clientReqID, "duration", time.Since(start))
				}
				release()
			}
			if p.handOff(ctx, rec, body, stopLink, cancel, done, id, reqID) {
				handedOff = true
				// A stream's audit event is written when it starts.
				if p.h.cfg.AuditReads {
					p.h.auditKube(r, "proxy", ident, id, rest, code, reqID, clientReqID)
				}
				rec.detach()
				return
			}
		}
		if tail, _ := r.Context().Value(streamTailKey{}).(*streamTail); tail != nil && r.ProtoMajor == 2 {
			// Hub.ServeHTTP copies the body once this handler's frames
			// are gone: see streamTail.
			code, user := rec.code, ident.Name
			*tail = streamTail{p: p, ctx: r.Context(), w: w, body: body, cluster: id, reqID: reqID, done: func() {
				p.h.metrics.proxyInFlight.Dec()
				p.h.metrics.proxyDuration.WithLabelValues(id, verb, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
				if p.h.logger.Enabled(context.Background(), slog.LevelDebug) {
					p.h.logger.Debug("proxied", "cluster", id, "user", user, "verb", verb, "path", rest, "code", code, "request_id", reqID, "client_request_id", clientReqID, "duration", time.Since(start))
				}
				release()
			}}
			handedOff = true
			if p.h.cfg.AuditReads {
				p.h.auditKube(r, "proxy", ident, id, rest, code, reqID, clientReqID)
			}
			return
		}
		// The client's writer itself, not rec: rec skips a flush while
		// more of the response waits on the stream, and a chunked body
		// may then block reading the next chunk's head with the last
		// event unsent.
		if !p.pumpStream(ctx, w, body, id, reqID) {
			// As ReverseProxy does: the client must see the response
			// fail, not end.
			panic(http.ErrAbortHandler)
		}
	}
}

// sanitizeRequestID returns what may be logged of a client's request ID:
// at most maxClientRequestID bytes of letters, digits and ._:/- , other
// bytes replaced by '_'.
func sanitizeRequestID(s string) string {
	if len(s) > maxClientRequestID {
		s = s[:maxClientRequestID]
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '/', c == '-':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// auditKube records a request to cluster's API server — proxied, or a hub
// feature's — in the audit log when it may change the cluster, or always
// with Config.AuditReads. path is the API path in the cluster. Callers
// check the method first, so a GET costs nothing here by default.
func (h *Hub) auditKube(r *http.Request, source string, ident Identity, cluster, path string, code int, reqID, clientReqID string) {
	k := audit.ParseKubeRequest(r.Method, path, r.URL.Query(), r.Header.Get("Upgrade") != "")
	if !k.Mutates() && !h.cfg.AuditReads {
		return
	}
	h.audit.Record(store.AuditEvent{
		User: ident.Name, TokenID: ident.TokenID, Source: source, Verb: k.Verb, ClusterID: cluster,
		APIGroup: k.APIGroup, Resource: k.Resource, Subresource: k.Subresource, Namespace: k.Namespace,
		Name: k.Name, Path: path, Code: code, RequestID: reqID, ClientRequestID: clientReqID,
		RemoteAddr: r.RemoteAddr,
	})
}

// rewrite builds the outgoing request: the hub user's identity (or whom
// the cluster allowed it to impersonate, see authorize) replaces whatever
// the client sent.
func (p *kubeProxy) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(proxyTargetKey{}).(*proxyTarget)
	pr.Out.URL = &url.URL{Scheme: "http", Host: t.cluster, Path: t.path, RawQuery: pr.In.URL.RawQuery}
	pr.Out.Host = t.cluster
	for k := range pr.Out.Header {
		if isImpersonateHeader(k) {
			delete(pr.Out.Header, k)
		}
	}
	// No request trailers are forwarded: the Kubernetes API uses none,
	// and they arrive only after the checks above (net/http fills them in
	// as the body ends, whatever was deleted from the map before).
	pr.Out.Trailer = nil
	pr.Out.Header.Del("Authorization")
	pr.Out.Header.Del("Cookie")
	if t.as != nil {
		t.as.setHeaders(pr.Out.Header)
	} else {
		pr.Out.Header.Set("Impersonate-User", t.user)
		for _, g := range t.groups {
			pr.Out.Header.Add("Impersonate-Group", g)
		}
	}
	pr.Out.Header[p.requestIDHeader] = []string{t.requestID}
	// The cluster's audit log records the hub's request ID as its audit
	// ID; the client's own never reaches the cluster.
	pr.Out.Header.Del("X-Request-Id")
	pr.Out.Header["Audit-Id"] = []string{t.requestID}
}

// impersonatePrefix starts every impersonation header.
const impersonatePrefix = "Impersonate-"

func (p *kubeProxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t, _ := r.Context().Value(proxyTargetKey{}).(*proxyTarget)
	if t == nil {
		t = &proxyTarget{}
	}
	if bodyExpired(t.body) {
		// The server cancelled the request when its body read failed.
		writeKubeStatus(w, http.StatusRequestTimeout, "Timeout", "eco: the request body did not arrive in time")
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	if errors.Is(err, tunnel.ErrNoSession) {
		if !p.notConnected(w, r, t.cluster) {
			t.unknown = true
		}
		return
	}
	p.h.logger.Warn("proxying to cluster", "cluster", t.cluster, "path", t.path, "err", err)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		writeKubeStatus(w, http.StatusGatewayTimeout, "Timeout", "eco: the cluster's agent did not answer in time")
		return
	}
	writeKubeStatus(w, http.StatusBadGateway, "ServiceUnavailable", "eco: tunnel to cluster "+t.cluster+" failed: "+err.Error())
}

// explainFailing rewrites what the agent answers itself when it cannot
// serve a request (502/503: it cannot reach its API server) while the hub
// holds its cluster Failing: the Status then names eco's state and
// reason, as it does for a cluster without a tunnel, so that kubectl and
// Argo CD's UI say why. Other responses, and a cluster in any other
// state (an API server's own 503), pass unchanged.
func (p *kubeProxy) explainFailing(resp *http.Response) error {
	if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
		return nil
	}
	target, _ := resp.Request.Context().Value(proxyTargetKey{}).(*proxyTarget)
	if target == nil {
		return nil
	}
	c, err := p.h.store.GetCluster(resp.Request.Context(), target.cluster)
	if err != nil || c.Status.State != store.StateFailing {
		return nil
	}
	var said struct {
		Message string `json:"message"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAgentStatus))
	resp.Body.Close()
	_ = json.Unmarshal(body, &said)
	msg := notConnectedMessage(c)
	if said.Message != "" && said.Message != c.Status.Reason {
		msg += " (" + said.Message + ")"
	}
	out, err := json.Marshal(kubeStatus(resp.StatusCode, "ServiceUnavailable", msg))
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.TransferEncoding = nil
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// maxAgentStatus bounds what explainFailing reads of the agent's answer.
const maxAgentStatus = 16 << 10

// notConnected answers a request for a cluster without a tunnel: 404 if
// the hub does not know it, else 503 with its ECO status and reason. It
// reports whether the store confirmed the cluster is imported.
func (p *kubeProxy) notConnected(w http.ResponseWriter, r *http.Request, id string) bool {
	c, err := p.h.store.GetCluster(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeKubeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("eco: cluster %q is not imported in this hub", id))
		return false
	case err != nil:
		writeKubeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", fmt.Sprintf("eco: cluster %s is not connected", id))
		return false // not known to be imported
	default:
		writeKubeStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", notConnectedMessage(c))
		return true
	}
}

func notConnectedMessage(c store.Cluster) string {
	msg := fmt.Sprintf("eco: cluster %s (%s) is not reachable: ECO is %s", c.Name, c.ID, c.Status.State)
	if c.Status.Reason != "" {
		msg += ": " + c.Status.Reason
	}
	if c.Status.State == store.StateNotInstalled {
		msg += "; apply its install YAML with kubectl"
	}
	return msg
}

// kubeVerb approximates the Kubernetes verb of r for metrics: one of a
// fixed set, "other" for any other method.
func kubeVerb(r *http.Request) string {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		if q.Get("watch") == "true" || q.Get("watch") == "1" {
			return "watch"
		}
		if r.Header.Get("Upgrade") != "" {
			return "connect"
		}
		return "get"
	case http.MethodPost:
		if r.Header.Get("Upgrade") != "" {
			return "connect"
		}
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	case http.MethodHead:
		return "head"
	case http.MethodOptions:
		return "options"
	}
	return verbLabelOther
}

// streams reports whether a request's response lasts as long as the
// client wants: a watch, a protocol upgrade (exec, attach, port-forward)
// or followed logs.
func streams(r *http.Request, verb string) bool {
	return verb == "watch" || verb == "connect" ||
		(verb == "get" && strings.Contains(r.URL.RawQuery, "follow=") && r.URL.Query().Get("follow") == "true")
}

// statusRecorder records the response code, passing Flush and Hijack
// through so streaming and upgrades work.
type statusRecorder struct {
	http.ResponseWriter
	code int
	// upstream is the tunnel stream the response comes from, once known.
	upstream atomic.Pointer[tunnel.Stream]
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// detach drops the recorder's hold on the client's connection once it was
// handed off (the request's trace still refers to the recorder).
func (s *statusRecorder) detach() { s.ResponseWriter = nil }

// FlushError flushes the response to the client unless more of it has
// already arrived on the tunnel stream: the proxy flushes after every
// write (watches must not wait), and on a bulk response that cost a write
// syscall per 32 KiB copied. Skipping is safe because bytes already on the
// stream are read at once, and the next write flushes.
func (s *statusRecorder) FlushError() error {
	if st := s.upstream.Load(); st != nil && st.Buffered() > 0 {
		return nil
	}
	return http.NewResponseController(s.ResponseWriter).Flush()
}
