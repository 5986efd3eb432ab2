// Package localeco runs eco end to end on one machine, for the demo and
// the end-to-end tests: a hub on loopback TLS with a SQLite store, clusters
// imported through its API, their install YAML applied with real kubectl
// to a real local cluster (package localcluster), and the agent given
// exactly what its pod would have — the install Secret's files and a real
// ServiceAccount token from the TokenRequest API, refreshed as the kubelet
// refreshes it.
package localeco

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eco-project/eco/hub"
	"github.com/eco-project/eco/store"
	"github.com/eco-project/eco/store/sqlite"
)

// HubConfig configures a local hub.
type HubConfig struct {
	// Dir keeps the hub's store, TLS identity and secret key, so a hub
	// restarted on the same Dir is the same hub. Required.
	Dir string
	// Addr is the listen address. Empty means 127.0.0.1 on a free port.
	Addr string
	// HeartbeatInterval is passed to the hub. Zero means its default.
	HeartbeatInterval time.Duration
	// UserPrefix is the hub's Config.UserPrefix; nil means
	// hub.DefaultUserPrefix, as for eco-hub.
	UserPrefix *string
	// CredentialGrace is the hub's Config.CredentialGrace. Zero means
	// its default.
	CredentialGrace time.Duration
	// Logger receives the hub's logs. Nil discards them.
	Logger *slog.Logger
	// Mount, if set, is called before serving, e.g. to mount the web UI.
	Mount func(*hub.Hub) error
	// Configure, if set, changes the hub's Config before it starts (e.g.
	// its cloud providers).
	Configure func(*hub.Config)
}

// Hub is a running local hub.
type Hub struct {
	*hub.Hub
	// URL is the hub's https URL.
	URL string
	// AdminToken is the admin API token, created at the first start in
	// Dir and kept in Dir/admin.token.
	AdminToken string
	// CAPEM is the hub's CA.
	CAPEM []byte

	cfg    HubConfig
	store  store.Store
	srv    *http.Server
	served chan struct{}
	client *http.Client
}

// StartHub starts a hub serving HTTPS on loopback.
func StartHub(ctx context.Context, cfg HubConfig) (*Hub, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localeco: HubConfig.Dir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("localeco: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("localeco: listening: %w", err)
	}
	h := &Hub{cfg: cfg, URL: "https://" + ln.Addr().String(), served: make(chan struct{})}
	h.cfg.Addr = ln.Addr().String()
	ok := false
	defer func() {
		if !ok {
			ln.Close()
			h.closeParts()
		}
	}()
	ident, err := hub.LoadOrCreateTLS(filepath.Join(cfg.Dir, "tls"), []string{"127.0.0.1", "localhost"}, time.Now())
	if err != nil {
		return nil, err
	}
	h.CAPEM = ident.CAPEM
	key, err := hub.LoadOrCreateSecretKey(filepath.Join(cfg.Dir, "secret.key"))
	if err != nil {
		return nil, err
	}
	if h.store, err = sqlite.Open(ctx, filepath.Join(cfg.Dir, "eco.db"), store.Config{Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("localeco: opening store: %w", err)
	}
	prefix := hub.DefaultUserPrefix
	if cfg.UserPrefix != nil {
		prefix = *cfg.UserPrefix
	}
	hcfg := hub.Config{
		UserPrefix:        prefix,
		Store:             h.store,
		ExternalURL:       h.URL,
		CAPEM:             ident.CAPEM,
		SecretKey:         key,
		HeartbeatInterval: cfg.HeartbeatInterval,
		CredentialGrace:   cfg.CredentialGrace,
		Logger:            cfg.Logger,
	}
	if cfg.Configure != nil {
		cfg.Configure(&hcfg)
	}
	if h.Hub, err = hub.New(hcfg); err != nil {
		return nil, err
	}
	if cfg.Mount != nil {
		if err := cfg.Mount(h.Hub); err != nil {
			return nil, err
		}
	}
	tokenFile := filepath.Join(cfg.Dir, "admin.token")
	secret, err := h.Bootstrap(ctx)
	if err != nil {
		return nil, err
	}
	if secret != "" {
		if err := os.WriteFile(tokenFile, []byte(secret), 0o600); err != nil {
			return nil, fmt.Errorf("localeco: %w", err)
		}
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("localeco: reading the admin token: %w", err)
	}
	h.AdminToken = strings.TrimSpace(string(tok))

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ident.CAPEM)
	h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: time.Minute}
	h.srv = &http.Server{
		Handler:           h.Hub,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{ident.Certificate}},
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(h.served)
		_ = h.srv.ServeTLS(ln, "", "")
	}()
	ok = true
	return h, nil
}

// Close stops serving, ends every tunnel and closes the store.
func (h *Hub) Close() error {
	var err error
	if h.srv != nil {
		err = h.srv.Close()
		<-h.served
	}
	h.client.CloseIdleConnections()
	return errors.Join(err, h.closeParts())
}

func (h *Hub) closeParts() error {
	var errs []error
	if h.Hub != nil {
		errs = append(errs, h.Hub.Close())
	}
	if h.store != nil {
		errs = append(errs, h.store.Close())
	}
	return errors.Join(errs...)
}

// Restart stops the hub and starts it again on the same address and
// directory, as an operator restarting eco-hub would.
func (h *Hub) Restart(ctx context.Context) (*Hub, error) {
	if err := h.Close(); err != nil {
		return nil, err
	}
	var next *Hub
	var err error
	// The port may linger for a moment after close.
	for range 50 {
		if next, err = StartHub(ctx, h.cfg); err == nil {
			return next, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// Client returns an HTTP client that trusts the hub's CA.
func (h *Hub) Client() *http.Client { return h.client }

// Do calls the hub API with token (the admin token if empty), sending in
// as JSON when not nil and decoding a 2xx answer into out when not nil.
func (h *Hub) Do(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL+path, body)
	if err != nil {
		return err
	}
	if token == "" {
		token = h.AdminToken
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return &APIError{Code: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

// APIError is a non-2xx answer from the hub API.
type APIError struct {
	Code int
	Body string
}

func (e *APIError) Error() string { return fmt.Sprintf("hub answered %d: %s", e.Code, e.Body) }

// Import creates a generic cluster named name.
func (h *Hub) Import(ctx context.Context, name string) (hub.ClusterJSON, error) {
	var c hub.ClusterJSON
	err := h.Do(ctx, http.MethodPost, "/api/v1/clusters", "", map[string]string{"name": name, "provider": "generic", "region": "local"}, &c)
	return c, err
}

// Status returns cluster id's operator status.
func (h *Hub) Status(ctx context.Context, id string) (hub.StatusJSON, error) {
	var st hub.StatusJSON
	err := h.Do(ctx, http.MethodGet, "/api/v1/clusters/"+id+"/status", "", nil, &st)
	return st, err
}

// WaitState waits until cluster id's operator state is want.
func (h *Hub) WaitState(ctx context.Context, id string, want store.State, timeout time.Duration) (hub.StatusJSON, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st hub.StatusJSON
	var err error
	for {
		st, err = h.Status(ctx, id)
		if err == nil && st.State == string(want) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("cluster %s is %s (%s), not %s, after %s (last error: %v)", id, st.State, st.Reason, want, timeout, err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// WriteKubeconfig writes a kubeconfig through the hub for cluster id, as
// the user of token (the admin token if empty): the hub mints it a token
// for that cluster alone that expires (hub.DefaultKubeconfigTTL).
func (h *Hub) WriteKubeconfig(ctx context.Context, id, token, path string) error {
	var data []byte
	if err := h.Do(ctx, http.MethodGet, "/api/v1/clusters/"+id+"/kubeconfig", token, nil, &data); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
