// Package image builds eco's container images without a Docker daemon and
// without pulling a base image: each image is assembled, with
// go-containerregistry, from a base layer written here (/etc/passwd and
// /etc/group with the non-root user 65532, the build machine's CA
// bundle, /tmp) and a layer of static Go binaries cross-compiled with
// CGO_ENABLED=0. Every file has a fixed owner and modification time, so the
// same sources, CA bundle and Go toolchain give the same digests.
//
// Images are multi-platform OCI image indexes, written as OCI image
// layouts (WriteLayout) and pushed to a registry (Push). Recipe in eco.go
// builds eco-agent and eco-hub the way `make images` does.
// docs/decisions/0020-images-without-docker.md says why.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The non-root user every image runs as.
const (
	// UID is the numeric user and group of the images' user, as in
	// distroless' "nonroot" (install.AgentUID is the same number).
	UID = 65532
	// UserName is the name /etc/passwd gives UID.
	UserName = "nonroot"
	// User is the image config's User field: numeric, so that Kubernetes'
	// runAsNonRoot can verify it without reading /etc/passwd.
	User = "65532:65532"
	// HomeDir is UserName's home directory.
	HomeDir = "/home/nonroot"
	// CACertsPath is where the CA bundle lies in every image; Go's
	// crypto/x509 looks there on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// BinDir holds the binaries.
	BinDir = "/usr/local/bin"
)

// OCI annotation keys set as image labels and on the index.
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelLicenses = "org.opencontainers.image.licenses"
	// RefNameAnnotation names an image in an OCI layout's index.json.
	RefNameAnnotation = "org.opencontainers.image.ref.name"
)

// Config holds what every image of one build shares.
type Config struct {
	// Platforms are "os/arch" pairs, such as "linux/amd64". Required.
	Platforms []string
	// Source is the repository URL (org.opencontainers.image.source).
	// Empty means the label is not set.
	Source string
	// Revision is the source revision, a git commit
	// (org.opencontainers.image.revision). Empty: not set.
	Revision string
	// Version is the release, such as "v0.3.1"
	// (org.opencontainers.image.version). Required: it also tags the
	// images.
	Version string
	// Created is the images' creation time, in the config and on every
	// file. Use the commit's time for reproducible images; the zero value
	// means the Unix epoch.
	Created time.Time
	// CACertsPEM is the CA bundle put at CACertsPath, such as Debian's
	// /etc/ssl/certs/ca-certificates.crt. Required: without it the
	// binaries could not verify a publicly trusted hub or registry.
	CACertsPEM []byte
}

// Binary is one program in an image.
type Binary struct {
	// Name is the file name under BinDir, such as "eco-agent".
	Name string
	// Files maps each platform of Config.Platforms to the binary built
	// for it, a file on the build machine.
	Files map[string]string
}

// Spec describes one image.
type Spec struct {
	// Name is the image's name, such as "eco-agent": the last element of
	// the repository it is pushed to, and its title label.
	Name string
	// Binaries go into BinDir, mode 0755, owned by root.
	Binaries []Binary
	// Entrypoint is the image's entrypoint, such as
	// ["/usr/local/bin/eco-agent"]. Required.
	Entrypoint []string
	// Cmd is the default arguments. Empty means none.
	Cmd []string
	// Dirs are directories created owned by UID with mode 0700, such as
	// a data directory. Empty means none besides HomeDir and /tmp.
	Dirs []string
	// WorkingDir is the working directory. Empty means HomeDir.
	WorkingDir string
	// ExposedPorts such as "8443/tcp". Empty means none.
	ExposedPorts []string
}

// Build assembles spec's image for each of cfg's platforms into one OCI
// image index.
func Build(cfg Config, spec Spec) (v1.ImageIndex, error) {
	if len(cfg.Platforms) == 0 {
		return nil, errors.New("image: no platforms")
	}
	if cfg.Version == "" {
		return nil, errors.New("image: Config.Version is required")
	}
	if len(cfg.CACertsPEM) == 0 {
		return nil, errors.New("image: Config.CACertsPEM is required")
	}
	if spec.Name == "" || len(spec.Entrypoint) == 0 {
		return nil, errors.New("image: Spec.Name and Spec.Entrypoint are required")
	}
	created := cfg.Created.UTC().Truncate(time.Second)
	if cfg.Created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	labels := map[string]string{LabelTitle: spec.Name, LabelVersion: cfg.Version, LabelCreated: created.Format(time.RFC3339), LabelLicenses: "Apache-2.0"}
	if cfg.Source != "" {
		labels[LabelSource] = cfg.Source
	}
	if cfg.Revision != "" {
		labels[LabelRevision] = cfg.Revision
	}
	base, err := baseLayer(created, cfg.CACertsPEM, spec.Dirs)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range cfg.Platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("image: platform %q: %w", p, err)
		}
		bins, err := binaryLayer(created, p, spec.Binaries)
		if err != nil {
			return nil, err
		}
		img, err := assemble(created, labels, *plat, spec, base, bins)
		if err != nil {
			return nil, fmt.Errorf("image %s for %s: %w", spec.Name, p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	annotated, ok := mutate.Annotations(idx, labels).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("image: annotating the index did not give an index")
	}
	return annotated, nil
}

func assemble(created time.Time, labels map[string]string, plat v1.Platform, spec Spec, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var adds []mutate.Addendum
	for i, l := range layers {
		by := "eco image: base (passwd, group, CA certificates)"
		if i > 0 {
			by = "eco image: binaries"
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: by}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Author = "eco"
	wd := spec.WorkingDir
	if wd == "" {
		wd = HomeDir
	}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		WorkingDir: wd,
		Env:        []string{"PATH=" + BinDir, "SSL_CERT_FILE=" + CACertsPath, "HOME=" + HomeDir},
		Labels:     labels,
	}
	if len(spec.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// tarEntry is one file or directory of a layer.
type tarEntry struct {
	name string // without a leading slash
	mode int64
	uid  int
	dir  bool
	data []byte
}

// layer writes entries, in order, as a gzipped OCI layer with fixed times.
func layer(created time.Time, entries []tarEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: created, Format: tar.FormatPAX}
		if e.uid == UID {
			h.Uname, h.Gname = UserName, UserName
		} else {
			h.Uname, h.Gname = "root", "root"
		}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Passwd and Group are the images' /etc/passwd and /etc/group.
const (
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group = "root:x:0:\nnonroot:x:65532:\n"
)

func baseLayer(created time.Time, caPEM []byte, dirs []string) (v1.Layer, error) {
	entries := []tarEntry{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(Passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(Group)},
		{name: "etc/ssl", mode: 0o755, dir: true},
		{name: "etc/ssl/certs", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(CACertsPath, "/"), mode: 0o644, data: caPEM},
		{name: "home", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(HomeDir, "/"), mode: 0o700, uid: UID, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.name] = true
	}
	for _, d := range dirs {
		d = strings.TrimPrefix(path.Clean("/"+d), "/")
		if d == "" {
			return nil, fmt.Errorf("image: directory %q", d)
		}
		// Parents first, owned by root.
		parts := strings.Split(d, "/")
		for i := 1; i < len(parts); i++ {
			p := strings.Join(parts[:i], "/")
			if !seen[p] {
				seen[p] = true
				entries = append(entries, tarEntry{name: p, mode: 0o755, dir: true})
			}
		}
		if seen[d] {
			return nil, fmt.Errorf("image: directory %q given twice", d)
		}
		seen[d] = true
		entries = append(entries, tarEntry{name: d, mode: 0o700, uid: UID, dir: true})
	}
	return layer(created, entries)
}

func binaryLayer(created time.Time, platform string, bins []Binary) (v1.Layer, error) {
	if len(bins) == 0 {
		return nil, errors.New("image: no binaries")
	}
	entries := []tarEntry{{name: "usr", mode: 0o755, dir: true}, {name: "usr/local", mode: 0o755, dir: true}, {name: "usr/local/bin", mode: 0o755, dir: true}}
	bins = slices.Clone(bins)
	slices.SortFunc(bins, func(a, b Binary) int { return strings.Compare(a.Name, b.Name) })
	for _, b := range bins {
		if b.Name == "" || strings.Contains(b.Name, "/") {
			return nil, fmt.Errorf("image: binary name %q", b.Name)
		}
		file, ok := b.Files[platform]
		if !ok {
			return nil, fmt.Errorf("image: no %s binary for %s", b.Name, platform)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("image: reading %s: %w", b.Name, err)
		}
		entries = append(entries, tarEntry{name: strings.TrimPrefix(BinDir, "/") + "/" + b.Name, mode: 0o755, data: data})
	}
	return layer(created, entries)
}

// WriteLayout writes idx as an OCI image layout in dir, replacing what
// dir held, with ref as its ref name in index.json (a tag, such as the
// version).
func WriteLayout(dir string, idx v1.ImageIndex, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("image: clearing %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: writing layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefNameAnnotation: ref})); err != nil {
		return fmt.Errorf("image: writing layout %s: %w", dir, err)
	}
	return nil
}

// ReadLayout returns the image index WriteLayout wrote in dir, and its
// ref name.
func ReadLayout(dir string) (v1.ImageIndex, string, error) {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("image: reading layout %s: %w", dir, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, "", fmt.Errorf("image: reading layout %s: %w", dir, err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, "", fmt.Errorf("image: layout %s: want one image index, found %d manifests", dir, len(m.Manifests))
	}
	d := m.Manifests[0]
	idx, err := top.ImageIndex(d.Digest)
	if err != nil {
		return nil, "", fmt.Errorf("image: reading layout %s: %w", dir, err)
	}
	return idx, d.Annotations[RefNameAnnotation], nil
}

// PushConfig says where Push sends an image.
type PushConfig struct {
	// Repository is the image's repository, such as
	// "ghcr.io/eco-project/eco-agent". Required.
	Repository string
	// Tag, such as the version. Required.
	Tag string
	// Insecure allows plain HTTP, for a registry on loopback.
	Insecure bool
	// Keychain gives credentials. Nil means authn.DefaultKeychain (the
	// Docker config file and credential helpers; no daemon needed).
	Keychain authn.Keychain
}

// Push pushes idx to cfg's repository under cfg's tag and returns the
// pushed reference by digest (repository@sha256:...).
func Push(ctx context.Context, idx v1.ImageIndex, cfg PushConfig) (string, error) {
	var opts []name.Option
	if cfg.Insecure {
		opts = append(opts, name.Insecure)
	}
	tag, err := name.NewTag(cfg.Repository+":"+cfg.Tag, opts...)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	kc := cfg.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)); err != nil {
		return "", fmt.Errorf("image: pushing %s: %w", tag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}

// CreatedFromEpoch parses a SOURCE_DATE_EPOCH value (Unix seconds); empty
// means the zero time.
func CreatedFromEpoch(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("image: SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}
