package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"

	"k8s.io/client-go/rest"
)

// Forwarder is the http.Handler the agent serves on the tunnel: it sends
// each request the hub opened a stream for to the cluster's API server,
// authenticated as the agent's ServiceAccount and carrying the hub's
// impersonation headers, and streams the answer back unchanged (watches,
// chunked lists, protobuf, and protocol upgrades for exec, attach and
// port-forward over SPDY or WebSocket).
type Forwarder struct {
	kube *kubeTransport
	// proxy uses a transport that may negotiate HTTP/2 with the API
	// server; upgradeProxy one limited to HTTP/1.1, which upgrades need.
	proxy, upgradeProxy *httputil.ReverseProxy
	logger              *slog.Logger
	// onError, if not nil, is called when a request could not be
	// forwarded: refused for lack of impersonation (ErrNoImpersonation)
	// or failed on the way to the API server.
	onError func(error)
}

// NewForwarder returns a Forwarder for the API server cfg describes.
// cfg's credentials authenticate every request (a BearerTokenFile, such as
// a ServiceAccount token, is re-read as soon as it changes); a client's own
// Authorization header never reaches the API server. cfg's proxy settings
// and impersonation are ignored: the Forwarder dials the API server
// directly and impersonates exactly whom each request names. If logger is
// nil, logs are discarded. Call CloseIdleConnections when done.
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
	f.proxy = f.reverseProxy(k.rt2)
	f.upgradeProxy = f.reverseProxy(k.rt1)
	return f
}

// CloseIdleConnections closes the Forwarder's idle connections to the API
// server.
func (f *Forwarder) CloseIdleConnections() { f.kube.closeIdle() }

func (f *Forwarder) reverseProxy(rt http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(f.kube.host)
			pr.Out.Host = f.kube.host.Host
			// The agent's own credentials are added by the transport.
			pr.Out.Header.Del("Authorization")
			// X-Forwarded-For from SetXForwarded would name the hub's
			// stream, which means nothing to the API server.
		},
		Transport:     rt,
		FlushInterval: -1, // watches and log streams: flush every write
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				// The hub went away (a cancelled watch, a closed
				// session): nothing failed on the cluster's side.
				f.logger.Debug("request ended by the hub", "method", r.Method, "path", r.URL.Path, "err", err)
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			f.logger.Warn("forwarding to API server", "method", r.Method, "path", r.URL.Path, "err", err)
			if f.onError != nil {
				f.onError(err)
			}
			writeStatus(w, http.StatusBadGateway, "eco-agent cannot reach the API server: "+err.Error())
		},
		ErrorLog: slog.NewLogLogger(f.logger.Handler(), slog.LevelWarn),
	}
}

// ErrNoImpersonation is why the forwarder refuses a request: every request
// through the tunnel must act as a hub identity, never as the agent.
var ErrNoImpersonation = errors.New("request carries no Impersonate-User header")

// ErrReservedUser is why the forwarder refuses to impersonate a user name
// in Kubernetes' reserved "system:" namespace. RBAC cannot limit which users
// the agent may impersonate, and such users (system:kube-controller-manager,
// system:serviceaccount:…) hold powers no hub user should borrow.
var ErrReservedUser = errors.New(`request impersonates a reserved "system:" user`)

// ServeHTTP forwards r. It refuses (403 Forbidden, as a Kubernetes Status)
// a request that names no user to impersonate or a "system:" user.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := checkImpersonation(r.Header); err != nil {
		if f.onError != nil {
			f.onError(err)
		}
		writeStatus(w, http.StatusForbidden, "eco-agent: "+err.Error())
		return
	}
	if isUpgrade(r) {
		f.upgradeProxy.ServeHTTP(w, r)
		return
	}
	f.proxy.ServeHTTP(w, r)
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

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// writeStatus answers with a Kubernetes Status object, which kubectl and
// client-go show as a readable error.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	reason := "InternalError"
	switch code {
	case http.StatusForbidden:
		reason = "Forbidden"
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		reason = "ServiceUnavailable"
	case http.StatusUnauthorized:
		reason = "Unauthorized"
	}
	fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`+"\n", msg, reason, code)
}
