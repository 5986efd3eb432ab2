package hub_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
	"github.com/eco-project/eco/tunnel"
)

// servedHub is one run of eco-hub: a Hub served over TLS on loopback the
// way cmd/eco-hub serves it, with the config from Hub.TLSConfig.
type servedHub struct {
	t      *testing.T
	hub    *hub.Hub
	srv    *http.Server
	url    string
	served chan error
}

func serveHub(t *testing.T, st store.Store, ident hub.TLSIdentity, secret []byte) *servedHub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	h, err := hub.New(hub.Config{
		Store:       st,
		ExternalURL: url,
		CAPEM:       ident.CAPEM,
		SecretKey:   secret,
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	s := &servedHub{t: t, hub: h, url: url, served: make(chan error, 1), srv: &http.Server{
		Handler:   h,
		TLSConfig: h.TLSConfig(&tls.Config{Certificates: []tls.Certificate{ident.Certificate}, MinVersion: tls.VersionTLS12}),
	}}
	go func() { s.served <- s.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(s.stop)
	return s
}

// stop ends the run: the server, then the hub.
func (s *servedHub) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Close()
	if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
		s.t.Errorf("ServeTLS: %v", err)
	}
	s.hub.Close()
	s.srv = nil
}

// connect imports a cluster into s and connects its agent with cache,
// returning whether the tunnel's TLS session was resumed.
func (s *servedHub) connect(t *testing.T, name string, roots *x509.CertPool, cache tls.ClientSessionCache) bool {
	t.Helper()
	c, err := s.hub.ImportCluster(t.Context(), hub.ImportRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	is := newIssuer(t, clusterIssuer)
	sess, err := tunnel.Dial(t.Context(), tunnel.ClientConfig{
		URL:          "wss" + strings.TrimPrefix(s.url, "https") + hub.TunnelPath,
		ClusterID:    c.ID,
		Token:        (&env{t: t, hub: s.hub}).credential(c.ID),
		TLSConfig:    &tls.Config{RootCAs: roots},
		SessionCache: cache,
		Hello: tunnel.Hello{AgentVersion: "test", KubernetesVersion: "v1.34.4", Fingerprint: "fp-" + name,
			IdentityToken: is.token(t, s.url, nil)},
	})
	if err != nil {
		t.Fatalf("agent of %s: %v", name, err)
	}
	defer sess.Close()
	// The hub pins the cluster's keys through the new session.
	srv := &http.Server{Handler: apiServer(is, nil)}
	go srv.Serve(sess)
	defer srv.Close()
	return sess.TLS().DidResume
}

// TestTLSResumptionAcrossHubRestart: an agent reconnecting to a restarted
// hub resumes its TLS session when the hub kept its secret key, and makes
// a full handshake (and still connects) when the key changed.
func TestTLSResumptionAcrossHubRestart(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	for _, tc := range []struct {
		name   string
		secret []byte // of the restarted hub
		want   bool
	}{
		{"same secret key", secret, true},
		{"new secret key", []byte(strings.Repeat("n", 32)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := sqlite.Open(t.Context(), t.TempDir()+"/eco.db", store.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			ident, err := hub.LoadOrCreateTLS(t.TempDir(), []string{"127.0.0.1"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(ident.CAPEM)
			cache := tls.NewLRUClientSessionCache(1) // the agent's, kept across reconnects

			first := serveHub(t, st, ident, secret)
			if first.connect(t, "before", roots, cache) {
				t.Fatal("first connection resumed a session")
			}
			first.stop()

			restarted := serveHub(t, st, ident, tc.secret)
			if got := restarted.connect(t, "after", roots, cache); got != tc.want {
				t.Errorf("after the restart: DidResume = %v, want %v", got, tc.want)
			}
		})
	}
}
