// Package hubapps wires eco's application features into a hub: the App
// Catalog (package catalog) with the add-on charts built in as the
// repository "eco-addons", the Helm service (package apps) installing
// catalog charts, and the managed add-ons (package addons) — mounted on
// the hub's API, with their metrics in the hub's registry, run and stopped
// together. cmd/eco-hub, the demo and the tests use it.
package hubapps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/eco-project/eco/addons"
	"github.com/eco-project/eco/apps"
	"github.com/eco-project/eco/catalog"
	"github.com/eco-project/eco/catalog/chartrepo"
	"github.com/eco-project/eco/hub"
)

// Config configures the features.
type Config struct {
	// Hub is the hub to mount on. Required.
	Hub *hub.Hub
	// Logger receives the features' logs. Nil discards them.
	Logger *slog.Logger
	// AddonRepository is the App Catalog repository the add-ons' charts
	// come from. Empty means "eco-addons", the repository built into the
	// hub (chartrepo.AddonRepository), which is there whatever this says.
	AddonRepository string
	// GeneratedCharts are the generated add-on chart archives the
	// built-in repository serves beside the embedded ones
	// (chartrepo.AddonCharts). Nil means those compiled into this binary
	// (chartrepo.Generated: none unless go generate ran before the
	// build; the catalog then warns at start and names what is missing).
	GeneratedCharts fs.FS
	// Addons overrides the curated list (tests, the demo). Nil means
	// addons.Defaults(AddonRepository).
	Addons []addons.Addon
	// CatalogRefresh, OperationTimeout, AddonResync and AddonHealthTimeout
	// are passed on; zero means each package's default.
	CatalogRefresh     time.Duration
	OperationTimeout   time.Duration
	RecoverInterval    time.Duration
	AddonResync        time.Duration
	AddonHealthTimeout time.Duration
	AddonRecheck       time.Duration
}

// Features are the running features.
type Features struct {
	Catalog *catalog.Catalog
	Apps    *apps.Service
	Addons  *addons.Manager

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start creates the features, mounts their API on the hub and runs them
// until Close.
func Start(ctx context.Context, cfg Config) (*Features, error) {
	if cfg.Hub == nil {
		return nil, errors.New("hubapps: Config.Hub is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AddonRepository == "" {
		cfg.AddonRepository = chartrepo.AddonRepository
	}
	if cfg.GeneratedCharts == nil {
		cfg.GeneratedCharts = chartrepo.Generated()
	}
	builtIn, missing, err := chartrepo.AddonCharts(cfg.GeneratedCharts)
	if err != nil {
		return nil, fmt.Errorf("hubapps: the built-in add-on charts: %w", err)
	}
	if cfg.Addons == nil {
		cfg.Addons = addons.Defaults(cfg.AddonRepository)
	}
	reg := cfg.Hub.Registerer()
	cat, err := catalog.New(ctx, catalog.Config{Hub: cfg.Hub, Logger: cfg.Logger.With("component", "catalog"), RefreshInterval: cfg.CatalogRefresh, Registerer: reg,
		BuiltIn: []catalog.BuiltInRepository{{Name: chartrepo.AddonRepository, Charts: builtIn, Missing: missing}}})
	if err != nil {
		return nil, err
	}
	svc, err := apps.New(apps.Config{Hub: cfg.Hub, Logger: cfg.Logger.With("component", "apps"), Charts: cat, Timeout: cfg.OperationTimeout,
		RecoverInterval: cfg.RecoverInterval, Registerer: reg})
	if err != nil {
		return nil, err
	}
	mgr, err := addons.New(ctx, addons.Config{Hub: cfg.Hub, Apps: svc, Addons: cfg.Addons, Logger: cfg.Logger.With("component", "addons"),
		ResyncInterval: cfg.AddonResync, HealthTimeout: cfg.AddonHealthTimeout, RecheckInterval: cfg.AddonRecheck, Registerer: reg})
	if err != nil {
		return nil, err
	}
	cat.Mount(cfg.Hub)
	svc.Mount(cfg.Hub)
	mgr.Mount(cfg.Hub)
	f := &Features{Catalog: cat, Apps: svc, Addons: mgr}
	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, run := range []func(context.Context) error{cat.Run, svc.Run, mgr.Run} {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			run(runCtx)
		}()
	}
	return f, nil
}

// Close stops the features and waits for them: the add-ons first, then
// the Helm service (an operation cut off is recovered at the next start)
// and the catalog.
func (f *Features) Close() error {
	f.cancel()
	f.wg.Wait()
	return errors.Join(f.Apps.Close(), f.Catalog.Close())
}
