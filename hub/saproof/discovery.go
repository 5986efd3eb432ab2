package saproof

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults of DiscoveryConfig.
const (
	DefaultKeysTTL      = time.Hour
	DefaultMinRefetch   = 30 * time.Second
	DefaultFetchTimeout = 5 * time.Second
	// MaxDiscoveryLen bounds an OIDC discovery document, in bytes.
	MaxDiscoveryLen = 64 << 10
	// MaxIssuerLen bounds an issuer URL, in bytes.
	MaxIssuerLen = 1024
	// WellKnownPath is appended to an issuer for its discovery document.
	WellKnownPath = "/.well-known/openid-configuration"
)

// ValidateIssuer checks an issuer URL an administrator configures: an
// absolute https URL (http if allowHTTP, for tests) without query or
// fragment, at most MaxIssuerLen bytes.
func ValidateIssuer(issuer string, allowHTTP bool) error {
	if len(issuer) > MaxIssuerLen {
		return fmt.Errorf("issuer is longer than %d bytes", MaxIssuerLen)
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer %q: %w", issuer, err)
	}
	if u.Scheme != "https" && !(allowHTTP && u.Scheme == "http") {
		return fmt.Errorf("issuer %q must be an https URL", issuer)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("issuer %q must be an https URL with a host and without user, query or fragment", issuer)
	}
	return nil
}

// DiscoveryConfig configures a Discovery. The zero value of every field
// means the default documented on it.
type DiscoveryConfig struct {
	// Client fetches documents (its CheckRedirect is replaced: at most 3
	// redirects, https only). If nil, an http.Client with
	// http.DefaultTransport.
	Client *http.Client
	// KeysTTL is how long fetched keys are used before they are fetched
	// again. If zero, DefaultKeysTTL (1 h).
	KeysTTL time.Duration
	// MinRefetch spaces fetches of one issuer, so tokens with unknown
	// key IDs cannot make the hub hammer it. If zero, DefaultMinRefetch
	// (30 s).
	MinRefetch time.Duration
	// FetchTimeout bounds one fetch (discovery and JWKS). If zero,
	// DefaultFetchTimeout (5 s).
	FetchTimeout time.Duration
	// AllowHTTP accepts http:// issuers and JWKS URIs; for tests only.
	AllowHTTP bool
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Discovery fetches and caches the signing keys of OIDC issuers (EKS, AKS
// and GKE publish their clusters' service-account issuers): the discovery
// document at ISSUER/.well-known/openid-configuration, then its jwks_uri.
// It is safe for concurrent use; concurrent fetches of one issuer are
// made once.
type Discovery struct {
	cfg DiscoveryConfig

	mu      sync.Mutex
	entries map[string]*discoveryEntry
}

type discoveryEntry struct {
	keys      *jose.JSONWebKeySet // last good keys, nil if none
	fetched   time.Time           // when keys were fetched
	attempted time.Time           // the last fetch attempt
	err       error               // the last attempt's error
	inflight  chan struct{}       // closed when the running fetch ends; nil if none
}

// NewDiscovery returns a Discovery with cfg's defaults applied.
func NewDiscovery(cfg DiscoveryConfig) *Discovery {
	if cfg.KeysTTL <= 0 {
		cfg.KeysTTL = DefaultKeysTTL
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = DefaultMinRefetch
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	// Follow at most 3 redirects, never to plain http.
	c := *cfg.Client
	allowHTTP := cfg.AllowHTTP
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("more than 3 redirects")
		}
		if req.URL.Scheme != "https" && !allowHTTP {
			return fmt.Errorf("redirect to %s is not https", req.URL.Redacted())
		}
		return nil
	}
	cfg.Client = &c
	return &Discovery{cfg: cfg, entries: map[string]*discoveryEntry{}}
}

// Keys returns the signing keys of issuer. Cached keys serve while they are
// younger than KeysTTL and, if kid is not empty, hold kid; otherwise they
// are fetched again, at most once per MinRefetch. When a fetch fails, keys
// fetched before still serve (an issuer's brief outage must not lock every
// agent out) and the error is returned only if there are none.
func (d *Discovery) Keys(ctx context.Context, issuer, kid string) (*jose.JSONWebKeySet, error) {
	for {
		d.mu.Lock()
		e := d.entries[issuer]
		if e == nil {
			e = &discoveryEntry{}
			d.entries[issuer] = e
		}
		now := d.cfg.Now()
		fresh := e.keys != nil && now.Sub(e.fetched) < d.cfg.KeysTTL && (kid == "" || len(e.keys.Key(kid)) > 0)
		recent := !e.attempted.IsZero() && now.Sub(e.attempted) < d.cfg.MinRefetch
		if fresh || (recent && e.inflight == nil) {
			keys, err := e.keys, e.err
			d.mu.Unlock()
			if keys != nil {
				return keys, nil
			}
			return nil, err
		}
		if wait := e.inflight; wait != nil {
			d.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		e.inflight = done
		e.attempted = now
		d.mu.Unlock()

		keys, err := d.fetch(ctx, issuer)

		d.mu.Lock()
		e.inflight = nil
		e.err = err
		if err == nil {
			e.keys, e.fetched = keys, d.cfg.Now()
		}
		keys = e.keys
		d.mu.Unlock()
		close(done)
		if keys != nil {
			return keys, nil
		}
		return nil, err
	}
}

// Forget drops what is cached for issuer.
func (d *Discovery) Forget(issuer string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.entries[issuer]; e != nil && e.inflight == nil {
		delete(d.entries, issuer)
	}
}

func (d *Discovery) fetch(ctx context.Context, issuer string) (*jose.JSONWebKeySet, error) {
	if err := ValidateIssuer(issuer, d.cfg.AllowHTTP); err != nil {
		return nil, &Error{Reason: ReasonKeys, Detail: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.FetchTimeout)
	defer cancel()
	body, err := d.get(ctx, strings.TrimSuffix(issuer, "/")+WellKnownPath, MaxDiscoveryLen)
	if err != nil {
		return nil, fail(ReasonKeys, "issuer discovery: %v", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fail(ReasonKeys, "issuer discovery document: %v", err)
	}
	if doc.Issuer != issuer {
		return nil, fail(ReasonKeys, "issuer discovery names issuer %q, not %q", doc.Issuer, issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(d.cfg.AllowHTTP && u.Scheme == "http")) {
		return nil, fail(ReasonKeys, "issuer discovery: jwks_uri %q is not an https URL", doc.JWKSURI)
	}
	body, err = d.get(ctx, u.String(), MaxJWKSLen)
	if err != nil {
		return nil, fail(ReasonKeys, "issuer JWKS: %v", err)
	}
	return ParseJWKS(body)
}

// get fetches url, reading at most limit bytes of a 200 answer.
func (d *Discovery) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: more than %d bytes", u, limit)
	}
	return b, nil
}
