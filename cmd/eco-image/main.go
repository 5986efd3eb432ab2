// Command eco-image builds eco's container images without a Docker daemon
// (package image) and pushes them.
//
//	eco-image build --version=v0.3.1 --revision=$(git rev-parse HEAD) --out=bin/images
//	eco-image push --registry=ghcr.io/eco-project --out=bin/images
//
// `make images` and `make push REGISTRY=...` run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/eco-project/eco/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "eco-image:", err)
		os.Exit(1)
	}
}

const usage = `usage: eco-image build|push [flags]

build  cross-compiles eco-agent, eco-hub and ecoctl and writes the
       eco-agent and eco-hub images as OCI image layouts in OUT
push   pushes the layouts in OUT to REGISTRY/eco-agent and REGISTRY/eco-hub,
       tagged with the version they were built with, and attaches the SBOMs
       in OUT/sbom to each platform's image (OCI referrers)

Run "eco-image build -h" or "eco-image push -h" for flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	switch args[0] {
	case "build":
		return build(ctx, args[1:], stdout, stderr, logger)
	case "push":
		return push(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func build(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("eco-image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       image.EcoConfig
		platforms string
		caFile    string
		epoch     string
		sbomTool  string
	)
	fs.StringVar(&cfg.OutDir, "out", "bin/images", "`directory` for binaries and OCI image layouts")
	fs.StringVar(&cfg.ModuleDir, "module-dir", ".", "the eco module's root")
	fs.StringVar(&cfg.Version, "version", "", "release version, the images' tag and version label (required)")
	fs.StringVar(&cfg.Revision, "revision", "", "source revision (git commit) for the revision label")
	fs.StringVar(&cfg.Source, "source", "https://github.com/eco-project/eco", "source repository URL for the source label")
	fs.StringVar(&cfg.Registry, "registry", image.DefaultRegistry, "registry and namespace the images will be pushed to; the hub is linked with REGISTRY/eco-agent as its agent image")
	fs.StringVar(&platforms, "platforms", strings.Join(image.DefaultPlatforms(), ","), "comma-separated os/arch list")
	fs.StringVar(&caFile, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to put in the images (Debian's ca-certificates)")
	fs.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "creation time in Unix seconds, e.g. the commit time, for reproducible images ($SOURCE_DATE_EPOCH; default 0)")
	fs.StringVar(&sbomTool, "sbom-tool", "", "cyclonedx-gomod command, e.g. \"go run github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0\": write a CycloneDX SBOM of every binary to OUT/sbom (default: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.SBOMCommand = strings.Fields(sbomTool)
	if cfg.Version == "" {
		return errors.New("build: --version is required")
	}
	cfg.Platforms = strings.Split(platforms, ",")
	var err error
	if cfg.Created, err = image.CreatedFromEpoch(epoch); err != nil {
		return err
	}
	if cfg.CACertsPEM, err = os.ReadFile(caFile); err != nil {
		return fmt.Errorf("--ca-certs: %w (on Debian: apt-get install ca-certificates)", err)
	}
	if err := generatedCharts(cfg.ModuleDir); err != nil {
		return err
	}
	cfg.Logger = logger
	res, err := image.Eco(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\t%s\t%s\n", image.AgentImage, res.AgentDigest, filepath.Join(cfg.OutDir, image.AgentImage))
	fmt.Fprintf(stdout, "%s\t%s\t%s\n", image.HubImage, res.HubDigest, filepath.Join(cfg.OutDir, image.HubImage))
	fmt.Fprintf(stdout, "the hub's install YAMLs name %s\n", res.AgentRef)
	for _, f := range res.SBOMs {
		fmt.Fprintf(stdout, "SBOM %s\n", f)
	}
	return nil
}

// generatedCharts refuses to build a hub image without the generated
// add-on chart (the hub's built-in eco-addons would lack metrics-server):
// `make images` generates it first.
func generatedCharts(moduleDir string) error {
	found, _ := filepath.Glob(filepath.Join(moduleDir, "catalog", "chartrepo", "builtin", "metrics-server-*.tgz"))
	if len(found) == 0 {
		return fmt.Errorf("build: the hub's generated add-on chart (catalog/chartrepo/builtin/metrics-server-*.tgz) is missing in %s: run go generate ./catalog/chartrepo first (make images does)", moduleDir)
	}
	return nil
}

func push(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eco-image push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out, registry string
		insecure      bool
	)
	fs.StringVar(&out, "out", "bin/images", "`directory` eco-image build wrote")
	fs.StringVar(&registry, "registry", "", "registry and namespace, such as ghcr.io/eco-project (required; the one given to build, or the hub's default agent repository will not match)")
	fs.BoolVar(&insecure, "insecure", false, "allow plain HTTP (a registry on loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if registry == "" {
		return errors.New("push: --registry is required")
	}
	// The agent first: the hub names it.
	for _, name := range []string{image.AgentImage, image.HubImage} {
		idx, tag, err := image.ReadLayout(filepath.Join(out, name))
		if err != nil {
			return fmt.Errorf("push: %w (run eco-image build first)", err)
		}
		pc := image.PushConfig{Repository: registry + "/" + name, Tag: tag, Insecure: insecure}
		ref, err := image.Push(ctx, idx, pc)
		if err != nil {
			return err
		}
		n, err := image.PushSBOMs(ctx, idx, name, out, pc)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s (%d SBOMs attached)\n", ref, n)
	}
	return nil
}
