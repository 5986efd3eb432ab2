package agent

import (
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/eco-project/eco/tunnel"
)

func TestTunnelURL(t *testing.T) {
	for _, tc := range []struct{ hub, path, want, err string }{
		{"https://eco.example.com", "", "wss://eco.example.com/api/v1/tunnel", ""},
		{"https://eco.example.com/", "", "wss://eco.example.com/api/v1/tunnel", ""},
		{"https://example.com/eco", "", "wss://example.com/eco/api/v1/tunnel", ""},
		{"https://example.com:8443/eco/", "/t", "wss://example.com:8443/eco/t", ""},
		{"http://127.0.0.1:8080", "", "ws://127.0.0.1:8080/api/v1/tunnel", ""},
		{"", "", "", "required"},
		{"ftp://example.com", "", "", "scheme"},
		{"https://", "", "", "no host"},
		{"eco.example.com", "", "", "scheme"},
	} {
		got, err := tunnelURL(tc.hub, tc.path)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("tunnelURL(%q) error = %v, want one mentioning %q", tc.hub, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("tunnelURL(%q, %q) = %q, %v; want %q", tc.hub, tc.path, got, err, tc.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{HubCAPEM: []byte("not PEM")})
	if err == nil {
		t.Fatal("New(empty Config) succeeded")
	}
	for _, want := range []string{"cluster ID", "token", "namespace", "RESTConfig", "hub URL", "hub CA"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	a, err := New(Config{HubURL: "https://hub", ClusterID: "c", Token: "t", Namespace: "ns",
		RESTConfig: &rest.Config{Host: "https://127.0.0.1:6443"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.CheckInterval != DefaultCheckInterval || a.cfg.HealthAddr != ":8081" || a.cfg.Version != "dev" ||
		a.cfg.BackoffInitial != tunnel.DefaultBackoffInitial || a.cfg.BackoffMax != tunnel.DefaultBackoffMax ||
		a.tlsConfig != nil || a.tunnelURL != "wss://hub/api/v1/tunnel" {
		t.Errorf("defaults not applied: %+v", a.cfg)
	}
}

// TestClientConfigProxyRootCAs: the proxy's roots reach the tunnel's
// configuration, apart from the hub's.
func TestClientConfigProxyRootCAs(t *testing.T) {
	roots := x509.NewCertPool()
	a, err := New(Config{HubURL: "https://hub", ClusterID: "c", Token: "t", Namespace: "ns",
		RESTConfig: &rest.Config{Host: "https://127.0.0.1:6443"}, ProxyRootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	cc := a.clientConfig(tunnel.Hello{})
	if cc.ProxyRootCAs != roots {
		t.Errorf("tunnel ProxyRootCAs = %p, want the Config's %p", cc.ProxyRootCAs, roots)
	}
	if cc.TLSConfig != nil {
		t.Errorf("tunnel TLSConfig = %+v, want nil (the system roots for the hub)", cc.TLSConfig)
	}
}

func TestCheckImpersonation(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want error
	}{
		{"none", http.Header{}, ErrNoImpersonation},
		{"empty", http.Header{"Impersonate-User": {""}}, ErrNoImpersonation},
		{"groups only", http.Header{"Impersonate-Group": {"eco:admins"}}, ErrNoImpersonation},
		{"user", http.Header{"Impersonate-User": {"alice"}, "Impersonate-Group": {"eco:admins"}}, nil},
		{"system user", http.Header{"Impersonate-User": {"system:admin"}}, ErrReservedUser},
		{"second system user", http.Header{"Impersonate-User": {"alice", "system:kube-scheduler"}}, ErrReservedUser},
	} {
		if err := checkImpersonation(tc.h); !errors.Is(err, tc.want) {
			t.Errorf("%s: checkImpersonation = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestFileTokenFollowsRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	ft := &fileToken{path: path}
	if _, err := ft.get(); err == nil {
		t.Fatal("get on a missing file succeeded")
	}
	write := func(s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("one\n")
	if tok, err := ft.get(); err != nil || tok != "one" {
		t.Fatalf("get = %q, %v", tok, err)
	}
	write("two") // same size class, new inode: read again at once
	if tok, _ := ft.get(); tok != "two" {
		t.Errorf("after rotation get = %q, want two", tok)
	}
	// Rewritten in place with the same size and a restored mtime: the
	// cache would be fooled only if all three matched.
	fi, _ := os.Stat(path)
	if err := os.WriteFile(path, []byte("six"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, time.Now(), fi.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if tok, _ := ft.get(); tok != "six" {
		t.Errorf("after in-place rewrite get = %q, want six", tok)
	}
	// Removed or emptied mid-rotation: keep the last good token.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if tok, err := ft.get(); err != nil || tok != "six" {
		t.Errorf("with the file gone get = %q, %v; want the last token", tok, err)
	}
	write("  ")
	if tok, err := ft.get(); err != nil || tok != "six" {
		t.Errorf("with an empty file get = %q, %v; want the last token", tok, err)
	}
}

func TestStatusError(t *testing.T) {
	err := statusError(404, "GET", "/api/v1/namespaces/x",
		[]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"namespaces \"x\" not found","reason":"NotFound","code":404}`))
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `"x" not found`) {
		t.Errorf("Status body: %v", err)
	}
	err = statusError(403, "DELETE", "/apis/x", []byte("forbidden by a proxy"))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "forbidden by a proxy") {
		t.Errorf("plain body: %v", err)
	}
	err = statusError(401, "GET", "/version", nil)
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("empty body: %v", err)
	}
	if r := reachReason("https://k", err); !strings.HasPrefix(r, "the API server at https://k does not accept the agent's ServiceAccount token") {
		t.Errorf("reachReason(401) = %q", r)
	}
	if r := reachReason("https://k", errors.New("dial tcp: refused")); r != "cannot reach the API server at https://k: dial tcp: refused" {
		t.Errorf("reachReason(network) = %q", r)
	}
}

func TestResourcePath(t *testing.T) {
	for _, tc := range []struct {
		gvr  schema.GroupVersionResource
		name string
		want string
	}{
		{schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "eco-system", "/api/v1/namespaces/eco-system"},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, "eco:admins",
			"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/eco:admins"},
	} {
		if got := resourcePath(tc.gvr, tc.name); got != tc.want {
			t.Errorf("resourcePath = %q, want %q", got, tc.want)
		}
	}
}

func TestRejectDelayIsCapped(t *testing.T) {
	a := &Agent{cfg: Config{BackoffMax: 30 * time.Second}}
	for range 1000 {
		if d := a.rejectDelay(); d < 15*time.Second || d > 30*time.Second {
			t.Fatalf("rejectDelay = %v, want within [15s, 30s]", d)
		}
	}
}

// TestAuthorization: the Authorization header the agent's credentials put
// on a forwarded request, whatever the kind of credential; where a bearer
// token takes the shortcut, the wrappers client-go runs agree with it.
func TestAuthorization(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  rest.Config
		want string
	}{
		{"static token", rest.Config{BearerToken: "static"}, "Bearer static"},
		{"token file", rest.Config{BearerTokenFile: tokenFile}, "Bearer from-file"},
		{"basic auth", rest.Config{Username: "u", Password: "p"}, "Basic dTpw"},
		{"none (a client certificate, or nothing)", rest.Config{}, ""},
		{"impersonation ignored", rest.Config{BearerToken: "static", Impersonate: rest.ImpersonationConfig{UserName: "x"}}, "Bearer static"},
		{"wrapped transport", rest.Config{BearerToken: "static", WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				r.Header.Set("Authorization", "Bearer wrapped")
				return rt.RoundTrip(r)
			})
		}}, "Bearer wrapped"},
	} {
		cfg := tc.cfg
		cfg.Host = "https://127.0.0.1:6443"
		k, err := newKubeTransport(&cfg, "test")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got, err := k.authorization(); err != nil || got != tc.want {
			t.Errorf("%s: authorization() = %q, %v; want %q", tc.name, got, err, tc.want)
		}
		if k.bearer != nil {
			k.bearer = nil // the wrappers, as for any other credential
			if got, err := k.authorization(); err != nil || got != tc.want {
				t.Errorf("%s: through the wrappers, authorization() = %q, %v; want %q", tc.name, got, err, tc.want)
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestKubeTransportAddress(t *testing.T) {
	for _, tc := range []struct{ host, addr, err string }{
		{"https://10.0.0.1", "10.0.0.1:443", ""},
		{"10.0.0.1:6443", "10.0.0.1:6443", ""},
		{"http://127.0.0.1", "127.0.0.1:80", ""},
		{"https://[::1]:6443/prefix", "[::1]:6443", ""},
		{"ftp://x", "", "scheme"},
		{"https://", "", "no host"},
	} {
		k, err := newKubeTransport(&rest.Config{Host: tc.host}, "test")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one mentioning %q", tc.host, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.host, err)
			continue
		}
		if k.addr != tc.addr || (k.tls == nil) != strings.HasPrefix(tc.host, "http://") {
			t.Errorf("%q: addr %q, TLS %v; want %q", tc.host, k.addr, k.tls != nil, tc.addr)
		}
	}
}
