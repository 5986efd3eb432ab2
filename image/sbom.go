package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of an SBOM attached to an image as an OCI 1.1 artifact.
const (
	// SBOMArtifactType is the artifactType of an SBOM manifest, and the
	// media type of its one layer.
	SBOMArtifactType = "application/vnd.cyclonedx+json"
)

// rawManifest is a manifest pushed as is.
type rawManifest struct {
	data []byte
	mt   types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.data, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// PushSBOM attaches the CycloneDX file sbom to the image subject (a
// reference by digest, such as one platform's manifest in a pushed
// index) as an OCI 1.1 artifact: a manifest whose subject is the image
// and whose artifactType is SBOMArtifactType, found with the registry's
// Referrers API (or the fallback tag go-containerregistry maintains for
// registries without it). It returns the artifact's digest.
func PushSBOM(ctx context.Context, subject name.Digest, sbom string, cfg PushConfig) (v1.Hash, error) {
	data, err := os.ReadFile(sbom)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image: SBOM: %w", err)
	}
	kc := cfg.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	subDesc, err := remote.Head(subject, opts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image: SBOM subject %s: %w", subject, err)
	}
	repo := subject.Context()
	// The config is "{}" with the artifact type as its media type:
	// registries that read the artifact type from the config (older
	// OCI 1.1 drafts, go-containerregistry's registry) and those that
	// read artifactType agree.
	config := static.NewLayer([]byte("{}"), SBOMArtifactType)
	layer := static.NewLayer(data, SBOMArtifactType)
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("image: pushing SBOM to %s: %w", repo, err)
		}
	}
	desc := func(l v1.Layer, mt types.MediaType, ann map[string]string) (v1.Descriptor, error) {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		sz, err := l.Size()
		return v1.Descriptor{MediaType: mt, Digest: d, Size: sz, Annotations: ann}, err
	}
	cd, err := desc(config, SBOMArtifactType, nil)
	if err != nil {
		return v1.Hash{}, err
	}
	ld, err := desc(layer, SBOMArtifactType, map[string]string{"org.opencontainers.image.title": filepath.Base(sbom)})
	if err != nil {
		return v1.Hash{}, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  SBOMArtifactType,
		Config:        cd,
		Layers:        []v1.Descriptor{ld},
		Subject:       &v1.Descriptor{MediaType: subDesc.MediaType, Digest: subDesc.Digest, Size: subDesc.Size},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Put(repo.Digest(h.String()), rawManifest{raw, types.OCIManifestSchema1}, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("image: pushing the SBOM manifest to %s: %w", repo, err)
	}
	return h, nil
}

// binariesOf names the binaries whose SBOMs belong to image name.
func binariesOf(image string) []string {
	switch image {
	case AgentImage:
		return []string{"eco-agent"}
	case HubImage:
		return []string{"eco-hub", "ecoctl"}
	}
	return nil
}

// SBOMPath is where Eco writes the SBOM of binary for platform p
// ("linux/amd64") under OutDir.
func SBOMPath(outDir, binary, p string) string {
	return filepath.Join(outDir, "sbom", binary+"_"+strings.ReplaceAll(p, "/", "_")+".cdx.json")
}

// PushSBOMs attaches, to each platform's image of the pushed index idx in
// repository, the SBOMs Eco wrote in outDir for that image's binaries
// (see PushSBOM). Missing SBOM files (images built without
// EcoConfig.SBOMCommand) are skipped. It returns how many it attached.
func PushSBOMs(ctx context.Context, idx v1.ImageIndex, imageName, outDir string, cfg PushConfig) (int, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return 0, err
	}
	var opts []name.Option
	if cfg.Insecure {
		opts = append(opts, name.Insecure)
	}
	n := 0
	for _, m := range im.Manifests {
		if m.Platform == nil {
			continue
		}
		subject, err := name.NewDigest(cfg.Repository+"@"+m.Digest.String(), opts...)
		if err != nil {
			return n, fmt.Errorf("image: %w", err)
		}
		for _, bin := range binariesOf(imageName) {
			file := SBOMPath(outDir, bin, m.Platform.String())
			if _, err := os.Stat(file); err != nil {
				continue
			}
			if _, err := PushSBOM(ctx, subject, file, cfg); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
