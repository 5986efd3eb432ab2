package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/goleak"

	"github.com/eco-project/eco/image"
)

const (
	testVersion  = "v0.0.0-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	testSource   = "https://github.com/eco-project/eco"
	testRegistry = "registry.test/eco"
)

var testCreated = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// built is one build of eco's images shared by the tests (a cold
// cross-compile of three binaries for two platforms takes minutes).
var built struct {
	once sync.Once
	res  *image.EcoResult
	dir  string
	err  error
}

func ecoConfig(t *testing.T, out string) image.EcoConfig {
	t.Helper()
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Skipf("no Debian CA bundle (apt-get install ca-certificates): %v", err)
	}
	mod, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return image.EcoConfig{
		Config: image.Config{
			Platforms:  image.DefaultPlatforms(),
			Source:     testSource,
			Revision:   testRevision,
			Version:    testVersion,
			Created:    testCreated,
			CACertsPEM: ca,
		},
		ModuleDir: mod,
		OutDir:    out,
		Registry:  testRegistry,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// ecoImages builds eco's images once per test binary.
func ecoImages(t *testing.T) (*image.EcoResult, image.EcoConfig) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds eco's binaries for two platforms")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "eco-images-")
		if built.err != nil {
			return
		}
		built.res, built.err = image.Eco(context.Background(), ecoConfig(t, built.dir))
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.res, ecoConfig(t, built.dir)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/eco-project/eco/localcluster.(*process).start.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestPushPull pushes both images to a real registry (go-containerregistry's
// registry on loopback), pulls them back by tag and checks what each
// platform's image holds and says.
func TestPushPull(t *testing.T) {
	res, cfg := ecoImages(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	defer srv.Close()
	reg := strings.TrimPrefix(srv.URL, "http://")
	ctx := t.Context()

	// Push from the layouts on disk, as `make push` does.
	for _, n := range []string{image.AgentImage, image.HubImage} {
		idx, tag, err := image.ReadLayout(filepath.Join(cfg.OutDir, n))
		if err != nil {
			t.Fatal(err)
		}
		if tag != testVersion {
			t.Errorf("%s layout ref name = %q, want %q", n, tag, testVersion)
		}
		pc := image.PushConfig{Repository: reg + "/eco/" + n, Tag: tag, Insecure: true}
		if _, err := image.Push(ctx, idx, pc); err != nil {
			t.Fatal(err)
		}
		// SBOM files as Eco writes them (their content is cyclonedx-gomod's,
		// tested in TestSBOM; here, any bytes) go along as referrers.
		sbomDir := t.TempDir()
		for _, p := range image.DefaultPlatforms() {
			for _, b := range []string{"eco-agent", "eco-hub", "ecoctl"} {
				f := image.SBOMPath(sbomDir, b, p)
				os.MkdirAll(filepath.Dir(f), 0o755)
				os.WriteFile(f, []byte(`{"bomFormat":"CycloneDX","name":"`+b+` `+p+`"}`), 0o644)
			}
		}
		count, err := image.PushSBOMs(ctx, idx, n, sbomDir, pc)
		if err != nil {
			t.Fatal(err)
		}
		if want := 2 * len(map[string][]string{image.AgentImage: {"eco-agent"}, image.HubImage: {"eco-hub", "ecoctl"}}[n]); count != want {
			t.Errorf("%s: %d SBOMs attached, want %d", n, count, want)
		}
	}

	for _, tc := range []struct {
		name       string
		digest     v1.Hash
		entrypoint string
		bins       []string
		dataDir    string
	}{
		{image.AgentImage, res.AgentDigest, image.AgentEntrypoint, []string{"eco-agent"}, ""},
		{image.HubImage, res.HubDigest, image.HubEntrypoint, []string{"eco-hub", "ecoctl"}, image.HubDataDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := name.NewTag(reg+"/eco/"+tc.name+":"+testVersion, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := remote.Index(ref, remote.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := idx.Digest(); d != tc.digest {
				t.Errorf("pulled index digest %s, built %s", d, tc.digest)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var plats []string
			for _, m := range im.Manifests {
				plats = append(plats, m.Platform.String())
			}
			if !slices.Equal(plats, image.DefaultPlatforms()) {
				t.Errorf("platforms %v, want %v", plats, image.DefaultPlatforms())
			}
			if im.Annotations[image.LabelRevision] != testRevision {
				t.Errorf("index annotations %v lack the revision", im.Annotations)
			}
			for _, m := range im.Manifests {
				img, err := idx.Image(m.Digest)
				if err != nil {
					t.Fatal(err)
				}
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if got := cf.OS + "/" + cf.Architecture; got != m.Platform.String() {
					t.Errorf("config platform %s in manifest for %s", got, m.Platform)
				}
				if cf.Config.User != "65532:65532" {
					t.Errorf("user %q", cf.Config.User)
				}
				if !slices.Equal(cf.Config.Entrypoint, []string{tc.entrypoint}) {
					t.Errorf("entrypoint %v", cf.Config.Entrypoint)
				}
				for k, want := range map[string]string{image.LabelSource: testSource, image.LabelRevision: testRevision, image.LabelVersion: testVersion} {
					if cf.Config.Labels[k] != want {
						t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], want)
					}
				}
				if !cf.Created.Time.Equal(testCreated) {
					t.Errorf("created %v, want %v", cf.Created.Time, testCreated)
				}
				if man, err := img.Manifest(); err == nil {
					var size int64
					for _, l := range man.Layers {
						size += l.Size
					}
					t.Logf("%s %s: %s, layers %d bytes compressed", tc.name, m.Platform, m.Digest, size)
				}
				// The SBOMs attached to this platform's image.
				refs, err := remote.Referrers(ref.Context().Digest(m.Digest.String()), remote.WithContext(ctx), remote.WithFilter("artifactType", image.SBOMArtifactType))
				if err != nil {
					t.Fatal(err)
				}
				rm, _ := refs.IndexManifest()
				if len(rm.Manifests) != len(tc.bins) {
					t.Errorf("%s %s: %d SBOM referrers, want %d", tc.name, m.Platform, len(rm.Manifests), len(tc.bins))
				}
				for _, r := range rm.Manifests {
					art, err := remote.Image(ref.Context().Digest(r.Digest.String()), remote.WithContext(ctx))
					if err != nil {
						t.Fatal(err)
					}
					ls, _ := art.Layers()
					rc, err := ls[0].Compressed()
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(rc)
					rc.Close()
					if !strings.Contains(string(body), m.Platform.String()) {
						t.Errorf("SBOM for %s is %s", m.Platform, body)
					}
				}
				files := rootfs(t, img)
				checkFile(t, files, "etc/passwd", 0, 0o644, "nonroot:x:65532:65532:")
				checkFile(t, files, "etc/group", 0, 0o644, "nonroot:x:65532:")
				checkFile(t, files, "etc/ssl/certs/ca-certificates.crt", 0, 0o644, string(cfg.CACertsPEM))
				checkFile(t, files, "home/nonroot/", image.UID, 0o700, "")
				checkFile(t, files, "tmp/", 0, 0o1777, "")
				for _, b := range tc.bins {
					h := checkFile(t, files, "usr/local/bin/"+b, 0, 0o755, "\x7fELF")
					if h != nil && !h.ModTime.Equal(testCreated) {
						t.Errorf("%s mtime %v, want %v", b, h.ModTime, testCreated)
					}
				}
				if tc.dataDir != "" {
					checkFile(t, files, strings.TrimPrefix(tc.dataDir, "/")+"/", image.UID, 0o700, "")
				}
			}
		})
	}

	// The hub in the hub image names the agent image by digest.
	hubBin, err := os.ReadFile(res.Binaries["eco-hub"]["linux/amd64"])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(hubBin, []byte(res.AgentDigest.String())) || !bytes.Contains(hubBin, []byte(testRegistry+"/eco-agent")) {
		t.Errorf("eco-hub is not linked with the agent image %s", res.AgentRef)
	}
}

type file struct {
	hdr  *tar.Header
	data []byte
}

// rootfs reads img's flattened filesystem, small files' content included.
func rootfs(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]file{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = file{h, data}
	}
}

// checkFile checks path's owner and mode, and that it holds prefix.
func checkFile(t *testing.T, files map[string]file, path string, uid int, mode int64, prefix string) *tar.Header {
	t.Helper()
	f, ok := files[strings.TrimSuffix(path, "/")]
	if !ok {
		t.Errorf("no %s in the image", path)
		return nil
	}
	if f.hdr.Uid != uid || f.hdr.Gid != uid {
		t.Errorf("%s owned by %d:%d, want %d:%d", path, f.hdr.Uid, f.hdr.Gid, uid, uid)
	}
	if f.hdr.Mode&0o7777 != mode {
		t.Errorf("%s mode %o, want %o", path, f.hdr.Mode, mode)
	}
	if !strings.Contains(string(f.data), prefix) {
		t.Errorf("%s holds %q…, want it to hold %q", path, f.data[:min(len(f.data), 40)], prefix)
	}
	return f.hdr
}

// TestReproducible builds the images a second time, from a fresh output
// directory: the digests must be the same.
func TestReproducible(t *testing.T) {
	res, _ := ecoImages(t)
	again, err := image.Eco(t.Context(), ecoConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if again.AgentDigest != res.AgentDigest || again.HubDigest != res.HubDigest {
		t.Errorf("second build: agent %s hub %s; first: agent %s hub %s", again.AgentDigest, again.HubDigest, res.AgentDigest, res.HubDigest)
	}
}

// TestBuild checks Build itself on a small binary: same inputs, same
// digest; a changed input, a changed digest; bad input, a clear error.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	plat := runtime.GOOS + "/" + runtime.GOARCH
	cfg := image.Config{Platforms: []string{plat}, Version: "v1", Created: testCreated, CACertsPEM: []byte("ca")}
	spec := image.Spec{Name: "hello", Binaries: []image.Binary{{Name: "hello", Files: map[string]string{plat: bin}}}, Entrypoint: []string{"/usr/local/bin/hello"}}
	digest := func(cfg image.Config, spec image.Spec) v1.Hash {
		t.Helper()
		idx, err := image.Build(cfg, spec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := digest(cfg, spec)
	if again := digest(cfg, spec); again != first {
		t.Errorf("same inputs gave %s then %s", first, again)
	}
	later := cfg
	later.Created = testCreated.Add(time.Second)
	if d := digest(later, spec); d == first {
		t.Error("another creation time gave the same digest")
	}
	// Through a layout and back, the digest holds.
	idx, err := image.Build(cfg, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteLayout(filepath.Join(dir, "layout"), idx, "v1"); err != nil {
		t.Fatal(err)
	}
	back, ref, err := image.ReadLayout(filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d != first || ref != "v1" {
		t.Errorf("layout gave %s %q, want %s v1", d, ref, first)
	}

	for _, tc := range []struct {
		name string
		cfg  func(*image.Config, *image.Spec)
		want string
	}{
		{"no platforms", func(c *image.Config, s *image.Spec) { c.Platforms = nil }, "no platforms"},
		{"no version", func(c *image.Config, s *image.Spec) { c.Version = "" }, "Version is required"},
		{"no CA bundle", func(c *image.Config, s *image.Spec) { c.CACertsPEM = nil }, "CACertsPEM is required"},
		{"bad platform", func(c *image.Config, s *image.Spec) { c.Platforms = []string{"linux/amd64/x/y"} }, "platform"},
		{"binary missing for a platform", func(c *image.Config, s *image.Spec) { c.Platforms = []string{plat, "linux/s390x"} }, "no hello binary for linux/s390x"},
		{"binary file missing", func(c *image.Config, s *image.Spec) {
			s.Binaries = []image.Binary{{Name: "hello", Files: map[string]string{plat: filepath.Join(dir, "nope")}}}
		}, "reading hello"},
		{"no entrypoint", func(c *image.Config, s *image.Spec) { s.Entrypoint = nil }, "Entrypoint are required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := cfg, spec
			tc.cfg(&c, &s)
			_, err := image.Build(c, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}

	if _, _, err := image.ReadLayout(filepath.Join(dir, "none")); err == nil {
		t.Error("reading a missing layout succeeded")
	}
}

// TestSBOM writes a CycloneDX SBOM of the agent binary with cyclonedx-gomod
// and checks it lists client-go at the version linked into the binary.
func TestSBOM(t *testing.T) {
	res, _ := ecoImages(t)
	bin := res.Binaries["eco-agent"]["linux/amd64"]
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, d := range info.Deps {
		if d.Path == "k8s.io/client-go" {
			want = "pkg:golang/k8s.io/client-go@" + d.Version
		}
	}
	if want == "" {
		t.Fatal("eco-agent links no client-go")
	}
	out := filepath.Join(t.TempDir(), "agent.cdx.json")
	mod, _ := filepath.Abs("..")
	cmd := []string{"go", "run", "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0"}
	if err := image.SBOM(t.Context(), image.SBOMConfig{Command: cmd, Binary: bin, Version: testVersion, Output: out, Dir: mod}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Purl string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range bom.Components {
		found = found || strings.HasPrefix(c.Purl, want)
	}
	if bom.BOMFormat != "CycloneDX" || !found {
		t.Errorf("SBOM (%s, %d components) does not list %s", bom.BOMFormat, len(bom.Components), want)
	}
	if err := image.SBOM(t.Context(), image.SBOMConfig{Command: cmd, Binary: filepath.Join(t.TempDir(), "none"), Version: "v1", Output: out, Dir: mod}); err == nil {
		t.Error("an SBOM of a missing binary succeeded")
	}
}
