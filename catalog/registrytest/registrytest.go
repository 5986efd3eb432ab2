// Package registrytest runs a real OCI registry in-process for tests —
// distribution's, the reference implementation — on TLS from its own CA,
// with htpasswd basic auth and in-memory storage, and pushes to it Helm
// charts (with Helm's registry client, as helm push does) and images that
// are not charts. Distribution logs every request through logrus's
// standard logger: a test package that wants quiet sets its output in
// TestMain.
package registrytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // the auth the registry is configured with
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // its storage
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
	"helm.sh/helm/v4/pkg/registry"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Config configures a Registry.
type Config struct {
	// User and Password are the registry's one account (htpasswd basic
	// auth). An empty User: no auth, anyone may push and pull.
	User, Password string
	// Token, if set, is a bearer token the registry requires instead of
	// its own auth, as a registry behind a gateway that takes static
	// tokens does: a request without it is 401 with a Bearer challenge.
	Token string
	// Wrap, if set, wraps the registry's handler: a registry that answers
	// part of the API its own way.
	Wrap func(http.Handler) http.Handler
}

// Registry is a running registry.
type Registry struct {
	// Host is its host:port, as an OCI reference starts.
	Host string
	// CAPEM is the CA its TLS certificate is from (PEM).
	CAPEM string

	cfg Config
	srv *httptest.Server
}

// Start runs a registry until tb's end.
func Start(tb testing.TB, cfg Config) *Registry {
	tb.Helper()
	rc := &configuration.Configuration{}
	rc.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	rc.HTTP.Secret = "eco-registrytest"
	rc.Catalog.MaxEntries = 1000 // distribution's default, which only its configuration parser sets
	if cfg.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.Password), bcrypt.MinCost)
		if err != nil {
			tb.Fatal(err)
		}
		htpasswd := filepath.Join(tb.TempDir(), "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(cfg.User+":"+string(hash)+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
		rc.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "eco-registrytest", "path": htpasswd}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	var h http.Handler = handlers.NewApp(ctx, rc)
	if cfg.Token != "" {
		h = bearer(cfg.Token, h)
	}
	if cfg.Wrap != nil {
		h = cfg.Wrap(h)
	}
	srv := httptest.NewTLSServer(h)
	tb.Cleanup(srv.Close)
	return &Registry{Host: strings.TrimPrefix(srv.URL, "https://"), CAPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})), cfg: cfg, srv: srv}
}

// bearer lets through requests with token only.
func bearer(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer realm="https://`+r.Host+`/token",service="eco-registrytest"`)
			Error(w, http.StatusUnauthorized, "UNAUTHORIZED", "a bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Error answers as a registry does when it refuses a request: status
// code and an error of code (UNAUTHORIZED, UNSUPPORTED, DENIED, …).
func Error(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
}

// authorizer is an oras client with the registry's credentials.
func (r *Registry) authorizer() *auth.Client {
	client := &auth.Client{Client: r.HTTPClient(), Cache: auth.NewCache()}
	switch {
	case r.cfg.Token != "":
		client.Credential = auth.StaticCredential(r.Host, auth.Credential{AccessToken: r.cfg.Token})
	case r.cfg.User != "":
		client.Credential = auth.StaticCredential(r.Host, auth.Credential{Username: r.cfg.User, Password: r.cfg.Password})
	}
	return client
}

// HTTPClient is a client that trusts the registry's CA.
func (r *Registry) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(r.srv.Certificate())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// PushChart pushes chart archive (a packaged chart's .tgz) as path:tag —
// path the repository under the host, its last part the chart's name —
// with Helm's registry client, as helm push does.
func (r *Registry) PushChart(tb testing.TB, path, tag string, archive []byte) {
	tb.Helper()
	rc, err := registry.NewClient(registry.ClientOptHTTPClient(r.HTTPClient()), registry.ClientOptAuthorizer(*r.authorizer()),
		registry.ClientOptCredentialsFile(filepath.Join(tb.TempDir(), "credentials.json")))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := rc.Push(archive, r.Host+"/"+path+":"+tag); err != nil {
		tb.Fatalf("pushing %s:%s: %v", path, tag, err)
	}
}

// PushImage pushes a small container image — an OCI image manifest, an
// image config and one layer — as path:tag: something else than a chart.
func (r *Registry) PushImage(tb testing.TB, path, tag string) {
	tb.Helper()
	ctx := context.Background()
	repo, err := remote.NewRepository(r.Host + "/" + path)
	if err != nil {
		tb.Fatal(err)
	}
	repo.Client = r.authorizer()
	layer := []byte("not a chart: " + path + ":" + tag + "\n")
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layerDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayer, layer)
	configDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, config)
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{layerDesc, layer}, {configDesc, config}} {
		if err := repo.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
			tb.Fatalf("pushing a blob of %s: %v", path, err)
		}
	}
	manifest, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "", oras.PackManifestOptions{Layers: []ocispec.Descriptor{layerDesc}, ConfigDescriptor: &configDesc})
	if err != nil {
		tb.Fatalf("pushing the manifest of %s: %v", path, err)
	}
	if err := repo.Tag(ctx, manifest, tag); err != nil {
		tb.Fatalf("tagging %s:%s: %v", path, tag, err)
	}
}
