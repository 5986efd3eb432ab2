package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eco-project/eco/seal"
	"github.com/eco-project/eco/store"
)

// Store is what the cloud feature keeps and reads; a store.Store is one.
type Store interface {
	CreateCloudAccount(ctx context.Context, a store.NewCloudAccount) (store.CloudAccount, error)
	GetCloudAccount(ctx context.Context, id string) (store.CloudAccount, error)
	ListCloudAccounts(ctx context.Context) ([]store.CloudAccount, error)
	ResealCloudAccount(ctx context.Context, id string, sealed []byte) error
	DeleteCloudAccount(ctx context.Context, id string) error
	LinkCloudCluster(ctx context.Context, l store.CloudLink) error
	CloudLinks(ctx context.Context, accountID string) ([]store.CloudLink, error)
	CloudLinkByRef(ctx context.Context, ref string) (store.CloudLink, error)
	GetCluster(ctx context.Context, id string) (store.Cluster, error)
	SetCloudHealth(ctx context.Context, id, health string) error
	NoteStatus(ctx context.Context, id, note string) error
}

// Clusters imports and removes clusters on the hub (the hub's own
// ImportCluster and DeleteCluster, with their credentials, events and
// logs).
type Clusters interface {
	ImportCluster(ctx context.Context, c ImportedCluster) (store.Cluster, error)
	DeleteCluster(ctx context.Context, id string) error
}

// ImportedCluster is what the Service asks Clusters to import.
type ImportedCluster struct {
	Name     string
	Provider store.Provider
	Region   string
	CloudRef string
}

// Config configures a Service.
type Config struct {
	// Store keeps accounts and links, and takes the health. Required.
	Store Store
	// Clusters imports clusters. Required.
	Clusters Clusters
	// Providers are the clouds enabled on this hub, by provider (eks, aks,
	// gke). A provider missing here refuses accounts.
	Providers map[store.Provider]Provider
	// Sealer seals account credentials: the hub's. Required.
	Sealer *seal.Sealer
	// Interval is how often the health of a steady cluster is polled.
	// Zero means DefaultInterval.
	Interval time.Duration
	// FastInterval is how often it is polled while a cluster of the scope
	// is in a transition (Provisioning, Updating, Deleting). Zero means
	// DefaultFastInterval.
	FastInterval time.Duration
	// MaxBackoff bounds the interval when the provider throttles (it
	// doubles with each throttled poll). Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// CallTimeout bounds one poll of one scope. Zero means 1 minute.
	CallTimeout time.Duration
	// Registerer receives the metrics. Nil means none are registered.
	Registerer prometheus.Registerer
	// Logger receives structured logs; credentials never reach it. Nil
	// discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Jitter returns a random factor in [0.8, 1.2) spreading polls. Nil
	// means math/rand/v2.
	Jitter func() float64
}

// Defaults of Config.
const (
	DefaultInterval     = 2 * time.Minute
	DefaultFastInterval = 15 * time.Second
	DefaultMaxBackoff   = 15 * time.Minute
)

// Service holds cloud accounts, discovers and imports their clusters, and
// polls their health (Run).
type Service struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	kick    chan struct{}

	mu sync.Mutex // guards importing
	// importing holds cloud references being imported now, so two
	// requests importing the same cluster at once cannot both pass the
	// check before either links it.
	importing map[string]bool
}

// New checks cfg and returns a Service; call Run to poll.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Clusters == nil || cfg.Sealer == nil {
		return nil, errors.New("cloud: Store, Clusters and Sealer are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.FastInterval <= 0 {
		cfg.FastInterval = DefaultFastInterval
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = defaultJitter
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger, metrics: m, kick: make(chan struct{}, 1), importing: map[string]bool{}}, nil
}

// Enabled lists the providers this hub has, sorted.
func (s *Service) Enabled() []store.Provider {
	var ps []store.Provider
	for p := range s.cfg.Providers {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// NewAccount is the input to CreateAccount.
type NewAccount struct {
	Name        string
	Provider    store.Provider
	Scopes      []string
	Credentials Credentials
}

// AccountInfo is an account as the API shows it: never its credentials.
type AccountInfo struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Provider  store.Provider `json:"provider"`
	Scopes    []string       `json:"scopes"`
	CreatedAt time.Time      `json:"createdAt"`
	// Clusters is how many clusters were imported from it.
	Clusters int `json:"clusters"`
}

func (s *Service) provider(p store.Provider) (Provider, error) {
	pr, ok := s.cfg.Providers[p]
	if !ok {
		return nil, fmt.Errorf("%w: provider %q is not enabled on this hub (enabled: %v)", store.ErrInvalid, p, s.Enabled())
	}
	return pr, nil
}

// checkCredentials reports the first missing credential field of a.
func checkCredentials(p store.Provider, c Credentials) error {
	missing := func(what string) error { return fmt.Errorf("%w: %s is required", store.ErrInvalid, what) }
	switch p {
	case store.ProviderEKS:
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return missing("an access key ID and secret access key")
		}
		if c.ExternalID != "" && c.RoleARN == "" {
			return fmt.Errorf("%w: an external ID goes with a role ARN", store.ErrInvalid)
		}
	case store.ProviderAKS:
		if c.TenantID == "" || c.ClientID == "" {
			return missing("a tenant ID and client ID")
		}
		if (c.ClientSecret == "") == (c.ClientCertificate == "") {
			return fmt.Errorf("%w: give a client secret or a client certificate, not both", store.ErrInvalid)
		}
	case store.ProviderGKE:
		if c.ServiceAccountKey == "" {
			return missing("a service-account JSON key")
		}
	}
	return nil
}

// aad binds a sealed blob to its account.
func aad(p store.Provider, name string) []byte {
	return []byte(string(p) + "\x00" + name)
}

// sealPurpose is what cloud account credentials are sealed for (the
// hub's Sealer derives a key of their own from it); the account's
// provider and name are the associated data, so a sealed blob cannot be
// moved to another account.
const sealPurpose = "cloud/account"

// ErrUnseal reports that no key of the hub opens an account's sealed
// credentials: sealed under a key the hub no longer has, or tampered with.
var ErrUnseal = seal.ErrUnseal

// CreateAccount validates the account's credentials with a real call to
// its provider, then stores them sealed. Rejected credentials are
// store.ErrInvalid wrapping ErrCredentialsRejected.
func (s *Service) CreateAccount(ctx context.Context, na NewAccount) (AccountInfo, error) {
	pr, err := s.provider(na.Provider)
	if err != nil {
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w", err)
	}
	if err := (store.NewCloudAccount{Name: na.Name, Provider: na.Provider, Scopes: na.Scopes, Sealed: []byte{0}}).Validate(); err != nil {
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w", err)
	}
	if (na.Provider == store.ProviderAKS || na.Provider == store.ProviderGKE) && len(na.Scopes) != 1 {
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w: an %s account has exactly one %s", store.ErrInvalid, na.Provider, scopeName(na.Provider))
	}
	if err := checkCredentials(na.Provider, na.Credentials); err != nil {
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w", err)
	}
	acct := Account{Name: na.Name, Provider: na.Provider, Scopes: na.Scopes, Credentials: na.Credentials}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	if err := pr.Validate(vctx, acct); err != nil {
		s.log.Info("cloud account refused: its credentials do not validate", "provider", na.Provider, "account", na.Name, "err", err)
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w: validating its credentials with %s: %w", store.ErrInvalid, na.Provider, err)
	}
	plain, err := json.Marshal(na.Credentials)
	if err != nil {
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w", err)
	}
	sealed, err := s.cfg.Sealer.Seal(sealPurpose, plain, aad(na.Provider, na.Name))
	if err != nil {
		return AccountInfo{}, fmt.Errorf("creating cloud account: %w", err)
	}
	a, err := s.cfg.Store.CreateCloudAccount(ctx, store.NewCloudAccount{
		Name: na.Name, Provider: na.Provider, Scopes: na.Scopes, Sealed: sealed,
	})
	if err != nil {
		return AccountInfo{}, err
	}
	s.log.Info("cloud account created", "account", a.ID, "name", a.Name, "provider", a.Provider, "scopes", a.Scopes)
	return AccountInfo{ID: a.ID, Name: a.Name, Provider: a.Provider, Scopes: a.Scopes, CreatedAt: a.CreatedAt}, nil
}

func scopeName(p store.Provider) string {
	switch p {
	case store.ProviderAKS:
		return "subscription"
	case store.ProviderGKE:
		return "project"
	}
	return "region"
}

// Accounts lists the accounts, without credentials.
func (s *Service) Accounts(ctx context.Context) ([]AccountInfo, error) {
	as, err := s.cfg.Store.ListCloudAccounts(ctx)
	if err != nil {
		return nil, err
	}
	links, err := s.cfg.Store.CloudLinks(ctx, "")
	if err != nil {
		return nil, err
	}
	n := map[string]int{}
	for _, l := range links {
		n[l.AccountID]++
	}
	out := make([]AccountInfo, 0, len(as))
	for _, a := range as {
		out = append(out, AccountInfo{ID: a.ID, Name: a.Name, Provider: a.Provider, Scopes: a.Scopes, CreatedAt: a.CreatedAt, Clusters: n[a.ID]})
	}
	return out, nil
}

// DeleteAccount deletes an account no imported cluster uses.
func (s *Service) DeleteAccount(ctx context.Context, id string) error {
	if err := s.cfg.Store.DeleteCloudAccount(ctx, id); err != nil {
		return err
	}
	s.log.Info("cloud account deleted", "account", id)
	return nil
}

// open reads account id with its credentials, sealing them again under the
// current key if a previous one opened them.
func (s *Service) open(ctx context.Context, id string) (Account, error) {
	sa, err := s.cfg.Store.GetCloudAccount(ctx, id)
	if err != nil {
		return Account{}, err
	}
	return s.openStored(ctx, sa)
}

func (s *Service) openStored(ctx context.Context, sa store.CloudAccount) (Account, error) {
	plain, previous, err := s.cfg.Sealer.Open(sealPurpose, sa.Sealed, aad(sa.Provider, sa.Name))
	if err != nil {
		return Account{}, fmt.Errorf("cloud account %s: %w", sa.ID, err)
	}
	a := Account{ID: sa.ID, Name: sa.Name, Provider: sa.Provider, Scopes: sa.Scopes}
	if err := json.Unmarshal(plain, &a.Credentials); err != nil {
		return Account{}, fmt.Errorf("cloud account %s: reading its credentials: %w", sa.ID, err)
	}
	if previous {
		resealed, err := s.cfg.Sealer.Seal(sealPurpose, plain, aad(sa.Provider, sa.Name))
		if err == nil {
			err = s.cfg.Store.ResealCloudAccount(ctx, sa.ID, resealed)
		}
		if err != nil {
			s.log.Warn("cannot seal a cloud account under the current key", "account", sa.ID, "err", err)
		} else {
			s.log.Info("cloud account sealed under the hub's current secret key", "account", sa.ID)
		}
	}
	return a, nil
}

// Reseal seals every account still under a previous secret key under the
// current one; after it, the previous key is no longer needed for them.
// It returns how many it sealed again.
func (s *Service) Reseal(ctx context.Context) (int, error) {
	as, err := s.cfg.Store.ListCloudAccounts(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, sa := range as {
		_, previous, err := s.cfg.Sealer.Open(sealPurpose, sa.Sealed, aad(sa.Provider, sa.Name))
		if err != nil {
			errs = append(errs, fmt.Errorf("cloud account %s: %w", sa.ID, err))
			continue
		}
		if previous {
			if _, err := s.openStored(ctx, sa); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// Discovered is a cluster found by Discover.
type Discovered struct {
	Cluster
	Health string `json:"health"`
	// Importable is false for clusters being created or deleted, or
	// already imported; NotImportable says why.
	Importable    bool   `json:"importable"`
	NotImportable string `json:"notImportable,omitempty"`
	// ImportedAs is the hub's cluster ID if it was imported already.
	ImportedAs string `json:"importedAs,omitempty"`
}

// Discover lists the clusters account id sees in scopes (all of the
// account's when empty), one provider list per scope.
func (s *Service) Discover(ctx context.Context, id string, scopes []string) ([]Discovered, error) {
	a, err := s.open(ctx, id)
	if err != nil {
		return nil, err
	}
	pr, err := s.provider(a.Provider)
	if err != nil {
		return nil, err
	}
	if len(scopes) == 0 {
		scopes = a.Scopes
	}
	for _, sc := range scopes {
		if !slices.Contains(a.Scopes, sc) {
			return nil, fmt.Errorf("%w: %s %q is not one of the account's (%s)", store.ErrInvalid, scopeName(a.Provider), sc, strings.Join(a.Scopes, ", "))
		}
	}
	var out []Discovered
	for _, sc := range scopes {
		cs, err := pr.Discover(ctx, a, sc)
		s.metrics.call(a.Provider, "discover", err)
		if err != nil {
			return nil, fmt.Errorf("listing the clusters of %s %q: %w", scopeName(a.Provider), sc, err)
		}
		for _, c := range cs {
			d := Discovered{Cluster: c, Health: c.Health.String()}
			d.Importable, d.NotImportable = c.Importable()
			if l, err := s.cfg.Store.CloudLinkByRef(ctx, c.Ref); err == nil {
				d.Importable, d.NotImportable, d.ImportedAs = false, "already imported as "+l.ClusterID, l.ClusterID
			} else if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// ImportItem is one cluster to import: its scope and cloud reference as
// Discover listed them, and optionally its name on the hub (default: its
// cloud name, made a DNS label).
type ImportItem struct {
	Scope string `json:"scope"`
	Ref   string `json:"ref"`
	Name  string `json:"name,omitempty"`
}

// ImportResult is the outcome of one ImportItem: the cluster, or why not.
type ImportResult struct {
	Ref       string `json:"ref"`
	ClusterID string `json:"clusterId,omitempty"`
	Name      string `json:"name,omitempty"`
	Error     string `json:"error,omitempty"`
	// Conflict is true when the error is that it was imported already.
	Conflict bool `json:"conflict,omitempty"`
	// Private is true when its API server has no public endpoint: the
	// hub cannot install ECO itself, the install YAML is applied from
	// inside its network.
	Private bool `json:"private,omitempty"`
}

// Import imports items from account id in one step. What is imported
// comes from the cloud (listed again now), not from the caller: a ref the
// account does not see is refused. Each item succeeds or fails on its
// own; a cluster already imported is refused with Conflict.
func (s *Service) Import(ctx context.Context, id string, items []ImportItem) ([]ImportResult, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: nothing to import", store.ErrInvalid)
	}
	a, err := s.open(ctx, id)
	if err != nil {
		return nil, err
	}
	pr, err := s.provider(a.Provider)
	if err != nil {
		return nil, err
	}
	listed := map[string]map[string]Cluster{} // scope → ref → cluster
	results := make([]ImportResult, len(items))
	for i, it := range items {
		r := &results[i]
		r.Ref = it.Ref
		if !slices.Contains(a.Scopes, it.Scope) {
			r.Error = fmt.Sprintf("%s %q is not one of the account's", scopeName(a.Provider), it.Scope)
			continue
		}
		if listed[it.Scope] == nil {
			cs, err := pr.Discover(ctx, a, it.Scope)
			s.metrics.call(a.Provider, "discover", err)
			if err != nil {
				return nil, fmt.Errorf("listing the clusters of %s %q: %w", scopeName(a.Provider), it.Scope, err)
			}
			listed[it.Scope] = map[string]Cluster{}
			for _, c := range cs {
				listed[it.Scope][c.Ref] = c
			}
		}
		c, ok := listed[it.Scope][it.Ref]
		if !ok {
			r.Error = fmt.Sprintf("the account sees no cluster %q in %s %q", it.Ref, scopeName(a.Provider), it.Scope)
			continue
		}
		if ok, why := c.Importable(); !ok {
			r.Error = "not importable: " + why
			continue
		}
		cl, err := s.importOne(ctx, a, c, it.Name)
		if err != nil {
			r.Error = err.Error()
			r.Conflict = errors.Is(err, store.ErrConflict)
			continue
		}
		r.ClusterID, r.Name, r.Private = cl.ID, cl.Name, c.Private
	}
	s.PollNow()
	return results, nil
}

func (s *Service) importOne(ctx context.Context, a Account, c Cluster, name string) (store.Cluster, error) {
	s.mu.Lock()
	if s.importing[c.Ref] {
		s.mu.Unlock()
		return store.Cluster{}, fmt.Errorf("%s is being imported now: %w", c.Ref, store.ErrConflict)
	}
	s.importing[c.Ref] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.importing, c.Ref)
		s.mu.Unlock()
	}()
	if l, err := s.cfg.Store.CloudLinkByRef(ctx, c.Ref); err == nil {
		return store.Cluster{}, fmt.Errorf("%s is already imported as cluster %s: %w", c.Ref, l.ClusterID, store.ErrConflict)
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Cluster{}, err
	}
	explicit := name != ""
	if !explicit {
		name = DNSLabel(c.Name)
	}
	ic := ImportedCluster{Name: name, Provider: a.Provider, Region: c.Region, CloudRef: c.Ref}
	cl, err := s.cfg.Clusters.ImportCluster(ctx, ic)
	if errors.Is(err, store.ErrConflict) && !explicit {
		// The same name in another region or subscription: say where.
		ic.Name = DNSLabel(c.Name + "-" + c.Region)
		cl, err = s.cfg.Clusters.ImportCluster(ctx, ic)
	}
	if err != nil {
		return store.Cluster{}, err
	}
	if err := s.cfg.Store.LinkCloudCluster(ctx, store.CloudLink{ClusterID: cl.ID, AccountID: a.ID, Scope: c.Scope, CloudRef: c.Ref, Version: c.Version}); err != nil {
		if derr := s.cfg.Clusters.DeleteCluster(context.WithoutCancel(ctx), cl.ID); derr != nil {
			s.log.Error("cannot remove a cluster whose cloud link failed", "cluster", cl.ID, "err", derr)
		}
		return store.Cluster{}, err
	}
	if err := s.setHealth(ctx, cl.ID, "", c.Health); err != nil {
		s.log.Warn("cannot record cloud health", "cluster", cl.ID, "err", err)
	}
	s.log.Info("cloud cluster imported", "cluster", cl.ID, "name", cl.Name, "account", a.ID, "ref", c.Ref, "version", c.Version)
	return cl, nil
}

// DNSLabel makes a cloud name a hub cluster name: lowercase letters,
// digits and '-', at most 63, starting and ending with a letter or digit.
func DNSLabel(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > store.MaxClusterNameLen {
		out = out[:store.MaxClusterNameLen]
	}
	out = strings.Trim(out, "-")
	if out == "" {
		out = "cluster"
	}
	return out
}
