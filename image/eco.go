package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Names of eco's images, and where their binaries lie in them.
const (
	AgentImage = "eco-agent"
	HubImage   = "eco-hub"
	// AgentEntrypoint is the agent image's entrypoint.
	AgentEntrypoint = BinDir + "/eco-agent"
	// HubEntrypoint is the hub image's entrypoint.
	HubEntrypoint = BinDir + "/eco-hub"
	// HubDataDir is the hub image's data directory (the hub's
	// --data-dir), owned by UID; the Helm chart mounts a volume there.
	HubDataDir = "/var/lib/eco-hub"
	// HubPort is the port the hub image listens on.
	HubPort = 8443
)

// DefaultPlatforms are the platforms `make images` builds.
func DefaultPlatforms() []string { return []string{"linux/amd64", "linux/arm64"} }

// DefaultRegistry is the registry and namespace eco's release images are
// pushed to; the hub's default agent image repository is
// DefaultRegistry + "/eco-agent".
const DefaultRegistry = "ghcr.io/eco-project"

// Link-time variables of cmd/eco-hub that pin the agent image (see
// docs/install.md, "Which agent image").
const (
	hubAgentRepositoryVar = "main.agentRepository"
	hubAgentDigestVar     = "main.agentDigest"
	versionVar            = "main.version"
)

// EcoConfig configures Eco.
type EcoConfig struct {
	Config
	// ModuleDir is the eco module's root, where `go build` runs.
	// Required.
	ModuleDir string
	// OutDir receives the binaries (OutDir/bin/OS_ARCH/) and the OCI image
	// layouts (OutDir/eco-agent, OutDir/eco-hub). Required.
	OutDir string
	// Registry is where the images will be pushed, such as
	// "ghcr.io/eco-project": the hub binary is linked with
	// Registry/eco-agent as its default agent repository. Empty means
	// DefaultRegistry.
	Registry string
	// Go is the go command. Empty means "go" from PATH.
	Go string
	// SBOMCommand runs cyclonedx-gomod (see SBOMConfig.Command): Eco then
	// writes a CycloneDX SBOM of every binary to OutDir/sbom. Empty means
	// none.
	SBOMCommand []string
	// Logger receives progress. Nil discards it.
	Logger *slog.Logger
}

// EcoResult is what Eco built.
type EcoResult struct {
	// Agent and Hub are the image indexes.
	Agent, Hub v1.ImageIndex
	// AgentDigest and HubDigest are the indexes' digests.
	AgentDigest, HubDigest v1.Hash
	// AgentRef is the agent image the hub's install YAMLs name:
	// Registry/eco-agent:Version@AgentDigest.
	AgentRef string
	// Binaries maps "eco-agent", "eco-hub" and "ecoctl" to their files
	// by platform.
	Binaries map[string]map[string]string
	// SBOMs are the SBOM files written, when EcoConfig.SBOMCommand is set.
	SBOMs []string
}

// Eco builds eco's two images: eco-agent, then eco-hub with eco-hub linked
// to that agent image by digest (so the hub's version decides its agents'
// version) and ecoctl beside it. It writes both as OCI image layouts in
// cfg.OutDir.
func Eco(ctx context.Context, cfg EcoConfig) (*EcoResult, error) {
	if cfg.ModuleDir == "" || cfg.OutDir == "" {
		return nil, errors.New("image: EcoConfig.ModuleDir and OutDir are required")
	}
	if cfg.Registry == "" {
		cfg.Registry = DefaultRegistry
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	res := &EcoResult{Binaries: map[string]map[string]string{}}
	version := []string{versionVar + "=" + cfg.Version}
	if err := buildAll(ctx, cfg, res, "eco-agent", "./cmd/eco-agent", version); err != nil {
		return nil, err
	}
	var err error
	if res.Agent, err = Build(cfg.Config, Spec{
		Name:       AgentImage,
		Binaries:   []Binary{{Name: "eco-agent", Files: res.Binaries["eco-agent"]}},
		Entrypoint: []string{AgentEntrypoint},
	}); err != nil {
		return nil, err
	}
	if res.AgentDigest, err = res.Agent.Digest(); err != nil {
		return nil, err
	}
	repo := cfg.Registry + "/" + AgentImage
	res.AgentRef = repo + ":" + cfg.Version + "@" + res.AgentDigest.String()

	hubVars := append(version, hubAgentRepositoryVar+"="+repo, hubAgentDigestVar+"="+res.AgentDigest.String())
	if err := buildAll(ctx, cfg, res, "eco-hub", "./cmd/eco-hub", hubVars); err != nil {
		return nil, err
	}
	if err := buildAll(ctx, cfg, res, "ecoctl", "./cmd/ecoctl", version); err != nil {
		return nil, err
	}
	if res.Hub, err = Build(cfg.Config, Spec{
		Name: HubImage,
		Binaries: []Binary{
			{Name: "eco-hub", Files: res.Binaries["eco-hub"]},
			{Name: "ecoctl", Files: res.Binaries["ecoctl"]},
		},
		Entrypoint:   []string{HubEntrypoint},
		Cmd:          []string{"--data-dir=" + HubDataDir},
		Dirs:         []string{HubDataDir},
		WorkingDir:   HubDataDir,
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", HubPort)},
	}); err != nil {
		return nil, err
	}
	if res.HubDigest, err = res.Hub.Digest(); err != nil {
		return nil, err
	}
	for name, idx := range map[string]v1.ImageIndex{AgentImage: res.Agent, HubImage: res.Hub} {
		if err := WriteLayout(filepath.Join(cfg.OutDir, name), idx, cfg.Version); err != nil {
			return nil, err
		}
	}
	if err := sboms(ctx, cfg, res); err != nil {
		return nil, err
	}
	cfg.Logger.Info("images built", "agent", res.AgentDigest.String(), "hub", res.HubDigest.String(), "sboms", len(res.SBOMs))
	return res, nil
}

func buildAll(ctx context.Context, cfg EcoConfig, res *EcoResult, name, pkg string, vars []string) error {
	res.Binaries[name] = map[string]string{}
	for _, p := range cfg.Platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok {
			return fmt.Errorf("image: platform %q is not os/arch", p)
		}
		out := filepath.Join(cfg.OutDir, "bin", goos+"_"+goarch, name)
		cfg.Logger.Info("building", "binary", name, "platform", p)
		if err := GoBuild(ctx, GoBuildConfig{Go: cfg.Go, Dir: cfg.ModuleDir, Package: pkg, Output: out, GOOS: goos, GOARCH: goarch, Vars: vars}); err != nil {
			return err
		}
		res.Binaries[name][p] = out
	}
	return nil
}

// GoBuildConfig is one `go build` of a static binary.
type GoBuildConfig struct {
	// Go is the go command. Empty means "go".
	Go string
	// Dir is the module directory go runs in. Required.
	Dir string
	// Package such as "./cmd/eco-agent". Required.
	Package string
	// Output is the binary's path. Required.
	Output string
	// GOOS and GOARCH are the target. Required.
	GOOS, GOARCH string
	// Vars are -X assignments, "importpath.name=value".
	Vars []string
}

// GoBuild builds a static, reproducible binary: CGO_ENABLED=0, -trimpath
// (no build machine paths), -buildvcs=false (the revision is a label and
// a -X variable instead, so a dirty tree does not change the binary),
// stripped (-s -w).
func GoBuild(ctx context.Context, c GoBuildConfig) error {
	if c.Go == "" {
		c.Go = "go"
	}
	ldflags := []string{"-s", "-w"}
	for _, v := range c.Vars {
		ldflags = append(ldflags, "-X", v)
	}
	cmd := exec.CommandContext(ctx, c.Go, "build", "-trimpath", "-buildvcs=false",
		"-ldflags="+strings.Join(ldflags, " "), "-o", c.Output, c.Package)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+c.GOOS, "GOARCH="+c.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image: go build %s for %s/%s: %w\n%s", c.Package, c.GOOS, c.GOARCH, err, stderr.String())
	}
	return nil
}

// SBOMConfig is one SBOM of one binary, made by cyclonedx-gomod from the
// module list Go links into every binary.
type SBOMConfig struct {
	// Command runs cyclonedx-gomod, such as ["go", "run",
	// "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0"].
	// Required.
	Command []string
	// Binary is the Go binary. Required.
	Binary string
	// Version is the main module's version. Required.
	Version string
	// Output is the CycloneDX JSON file written. Required.
	Output string
	// Dir is where Command runs. Empty means the current directory.
	Dir string
}

// SBOM writes a CycloneDX SBOM (JSON) of c.Binary: its main module and
// every module linked into it, with versions and checksums.
func SBOM(ctx context.Context, c SBOMConfig) error {
	if len(c.Command) == 0 || c.Binary == "" || c.Version == "" || c.Output == "" {
		return errors.New("image: SBOMConfig.Command, Binary, Version and Output are required")
	}
	if err := os.MkdirAll(filepath.Dir(c.Output), 0o755); err != nil {
		return fmt.Errorf("image: SBOM: %w", err)
	}
	args := append(append([]string{}, c.Command[1:]...), "bin", "-json", "-output", c.Output, "-version", c.Version, c.Binary)
	cmd := exec.CommandContext(ctx, c.Command[0], args...)
	cmd.Dir = c.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("image: SBOM of %s: %w\n%s", c.Binary, err, out.String())
	}
	return nil
}

// sboms writes one SBOM per binary and platform in OutDir/sbom.
func sboms(ctx context.Context, cfg EcoConfig, res *EcoResult) error {
	if len(cfg.SBOMCommand) == 0 {
		return nil
	}
	for name, files := range res.Binaries {
		for plat, file := range files {
			out := SBOMPath(cfg.OutDir, name, plat)
			if err := SBOM(ctx, SBOMConfig{Command: cfg.SBOMCommand, Binary: file, Version: cfg.Version, Output: out, Dir: cfg.ModuleDir}); err != nil {
				return err
			}
			res.SBOMs = append(res.SBOMs, out)
		}
	}
	slices.Sort(res.SBOMs)
	return nil
}
