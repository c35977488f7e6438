package release_test

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"sigs.k8s.io/yaml"

	"github.com/modelrollout/modelrollout/internal/release"
)

type builtImage struct {
	opts  release.ImageOptions
	files release.ImageFiles
}

var (
	imageOnce sync.Once
	image     builtImage
	imageErr  error
)

// buildImage builds the manager's image as `make image VERSION=<version>`
// does, once.
func buildImage(t *testing.T) builtImage {
	t.Helper()
	b := sourceBuild(t)
	ref := chart(t).Repository + ":" + version
	imageOnce.Do(func() {
		image.opts = release.ImageOptions{Ref: ref, Version: version, Build: b, Licenses: "NOASSERTION", CACerts: release.DefaultCACerts}
		imageErr = timed(t, "build the manager for "+platformList(imagePlatforms()), func() (err error) {
			image.opts.Binaries, err = release.GoBuildAll(t.Context(), root, "./cmd/manager", "manager", filepath.Join(tmp, "manager"), b.Describe, imagePlatforms())
			return err
		})
		if imageErr != nil {
			return
		}
		imageErr = timed(t, "assemble and write the image", func() error {
			idx, err := release.BuildImage(image.opts)
			if err != nil {
				return err
			}
			image.files, err = release.WriteImage(idx, ref, filepath.Join(tmp, "image"))
			return err
		})
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return image
}

func platformList(ps []release.Platform) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// readIndex reads the image index back from the OCI layout.
func readIndex(t *testing.T, dir string) (v1.ImageIndex, v1.Descriptor) {
	t.Helper()
	lp, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lp.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		t.Fatalf("the layout's index.json should hold one image index, got %+v", m.Manifests)
	}
	idx, err := lp.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx, m.Manifests[0]
}

// layerFiles lists the entries of an image's flattened filesystem, with
// their headers and the content of regular files.
func layerFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	files, _ := layerContent(t, img)
	return files
}

func layerContent(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	headers, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")
		headers[n] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[n] = b
		}
	}
	return headers, data
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestImage reads the built image back and checks what runs: platforms,
// user, entrypoint, labels, and that the filesystem holds the manager, the
// CA certificates, /etc/passwd and /etc/group, and nothing else.
func TestImage(t *testing.T) {
	built := buildImage(t)
	b := sourceBuild(t)
	idx, desc := readIndex(t, built.files.Layout)
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != version {
		t.Errorf("the layout names the index %q, want the tag %s", got, version)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != built.opts.Ref {
		t.Errorf("io.containerd.image.name %q, want %s", got, built.opts.Ref)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", m.MediaType)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.source":   release.Source,
		"org.opencontainers.image.revision": b.Revision,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.licenses": "NOASSERTION",
	}
	if len(b.Revision) != 40 {
		t.Errorf("revision %q is not a commit hash", b.Revision)
	}
	for k, v := range wantLabels {
		if m.Annotations[k] != v {
			t.Errorf("index annotation %s=%q, want %q", k, m.Annotations[k], v)
		}
	}

	var platforms []string
	certs, err := os.ReadFile(release.DefaultCACerts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		p := d.Platform.OS + "/" + d.Platform.Architecture
		platforms = append(platforms, p)
		t.Run(p, func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != d.Platform.OS || cf.Architecture != d.Platform.Architecture {
				t.Errorf("config says %s/%s", cf.OS, cf.Architecture)
			}
			if cf.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", cf.Config.User)
			}
			if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/manager" || len(cf.Config.Cmd) != 0 {
				t.Errorf("entrypoint %q cmd %q, want [/manager] and no cmd", cf.Config.Entrypoint, cf.Config.Cmd)
			}
			for k, v := range wantLabels {
				if cf.Config.Labels[k] != v {
					t.Errorf("label %s=%q, want %q", k, cf.Config.Labels[k], v)
				}
			}
			if !cf.Created.Equal(b.Created) {
				t.Errorf("created %s, want the commit time %s", cf.Created, b.Created)
			}

			headers, data := layerContent(t, img)
			var regular []string
			for n, h := range headers {
				switch h.Typeflag {
				case tar.TypeDir:
				case tar.TypeReg:
					regular = append(regular, n)
					if h.Uid != 0 || h.Gid != 0 {
						t.Errorf("%s is owned by %d:%d, want root (read-only to the manager)", n, h.Uid, h.Gid)
					}
				default:
					t.Errorf("unexpected entry %s (type %c)", n, h.Typeflag)
				}
			}
			sort.Strings(regular)
			want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "manager"}
			if strings.Join(regular, " ") != strings.Join(want, " ") {
				t.Errorf("files %q, want exactly %q", regular, want)
			}
			if !strings.Contains(string(data["etc/passwd"]), "\nnonroot:x:65532:65532:") || !strings.Contains(string(data["etc/group"]), "\nnonroot:x:65532:") {
				t.Errorf("no nonroot 65532 in /etc/passwd or /etc/group:\n%s\n%s", data["etc/passwd"], data["etc/group"])
			}
			if !bytes.Equal(data["etc/ssl/certs/ca-certificates.crt"], certs) || !x509.NewCertPool().AppendCertsFromPEM(certs) {
				t.Error("the CA bundle is not the build machine's PEM bundle")
			}
			if headers["manager"].Mode&0o111 == 0 {
				t.Errorf("/manager mode %o is not executable", headers["manager"].Mode)
			}
			bin, err := elf.NewFile(bytes.NewReader(data["manager"]))
			if err != nil {
				t.Fatalf("/manager is not an ELF binary: %v", err)
			}
			if bin.Machine != elfMachine[d.Platform.Architecture] {
				t.Errorf("/manager is built for %s", bin.Machine)
			}
			for _, prog := range bin.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Error("/manager is dynamically linked (it has an interpreter); the image has no libc")
				}
			}

			// The docker load tarball of this platform holds the same image.
			tag, err := name.NewTag(built.opts.Ref)
			if err != nil {
				t.Fatal(err)
			}
			file := built.files.Tarballs[release.Platform{OS: d.Platform.OS, Arch: d.Platform.Architecture}]
			loaded, err := tarball.ImageFromPath(file, &tag)
			if err != nil {
				t.Fatalf("read the docker load tarball %s as %s: %v", file, tag, err)
			}
			c1, _ := img.ConfigName()
			c2, _ := loaded.ConfigName()
			if c1 != c2 {
				t.Errorf("the docker load tarball's config %s differs from the layout's %s", c2, c1)
			}
			l1, _ := img.Layers()
			l2, _ := loaded.Layers()
			if len(l1) != len(l2) {
				t.Fatalf("the docker load tarball has %d layers, the layout %d", len(l2), len(l1))
			}
			for i := range l1 {
				a, _ := l1[i].DiffID()
				b, _ := l2[i].DiffID()
				if a != b {
					t.Errorf("layer %d differs between the tarball (%s) and the layout (%s)", i, b, a)
				}
			}
		})
	}
	sort.Strings(platforms)
	var want []string
	for _, p := range imagePlatforms() {
		want = append(want, p.String())
	}
	sort.Strings(want)
	if strings.Join(platforms, " ") != strings.Join(want, " ") {
		t.Errorf("platforms %q, want %q", platforms, want)
	}
}

// TestImageOnPulledBase builds the image on a base pulled from a registry,
// the switch to gcr.io/distroless/static:nonroot (make image
// BASE_IMAGE=...), against an in-process registry holding a stand-in base;
// then pushes the result (make image-push) and reads it back.
func TestImageOnPulledBase(t *testing.T) {
	built := buildImage(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	u, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host

	// The stand-in base: a marker file, distroless's environment and user.
	baseEnv := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	baseIdx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range imagePlatforms() {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		marker := []byte("base " + p.String())
		if err := tw.WriteHeader(&tar.Header{Name: "etc/base-marker", Mode: 0o644, Size: int64(len(marker))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(marker)
		_ = tw.Close()
		raw := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = p.OS, p.Arch
		cf.Config.Env, cf.Config.User = baseEnv, "65532"
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		baseIdx = mutate.AppendManifests(baseIdx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}}})
	}
	base := host + "/distroless/static:nonroot"
	if err := release.PushImage(baseIdx, base); err != nil {
		t.Fatal(err)
	}

	opts := built.opts
	opts.Base = base
	opts.CACerts = ""
	opts.Ref = host + "/modelrollout/modelrollout:" + version
	idx, err := release.BuildImage(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := release.PushImage(idx, opts.Ref); err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Index(mustRef(t, opts.Ref))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := pushed.Digest()
	if d1 != d2 {
		t.Errorf("pushed index %s, built %s", d2, d1)
	}
	m, err := pushed.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != len(imagePlatforms()) {
		t.Fatalf("%d manifests, want %d", len(m.Manifests), len(imagePlatforms()))
	}
	for _, d := range m.Manifests {
		img, err := pushed.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/manager" || cf.Config.Labels["org.opencontainers.image.version"] != version {
			t.Errorf("%s: user %q entrypoint %q labels %v", d.Platform, cf.Config.User, cf.Config.Entrypoint, cf.Config.Labels)
		}
		if strings.Join(cf.Config.Env, " ") != strings.Join(baseEnv, " ") {
			t.Errorf("%s: env %q, want the base's %q", d.Platform, cf.Config.Env, baseEnv)
		}
		files := layerFiles(t, img)
		if files["etc/base-marker"] == nil || files["manager"] == nil {
			t.Errorf("%s: files %v, want the base's marker and /manager", d.Platform, keys(files))
		}
		if files["etc/passwd"] != nil {
			t.Errorf("%s: the scratch base's /etc/passwd is in an image on a pulled base", d.Platform)
		}
	}

	// A base without the platform is refused, not silently mismatched.
	opts.Base = host + "/missing/base:nonroot"
	if _, err := release.BuildImage(opts); err == nil {
		t.Error("building on a base that does not exist succeeded")
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestImageReferencesAgree checks that the chart, kustomize and `make
// image` name one image: the chart's image.repository and appVersion, and
// config/manager's images transformer.
func TestImageReferencesAgree(t *testing.T) {
	c := chart(t)
	raw, err := os.ReadFile(filepath.Join(root, "config", "manager", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Images []struct{ Name, NewName, NewTag string }
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Images) != 1 {
		t.Fatalf("config/manager/kustomization.yaml: %d images, want 1", len(k.Images))
	}
	if got := k.Images[0].NewName + ":" + k.Images[0].NewTag; got != c.Image() {
		t.Errorf("kustomize installs %s, the chart %s", got, c.Image())
	}
	var meta struct{ Version, AppVersion string }
	raw, err = os.ReadFile(filepath.Join(root, "charts", "modelrollout", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Version != meta.AppVersion {
		t.Errorf("chart version %s and appVersion %s differ; make release sets both to VERSION", meta.Version, meta.AppVersion)
	}
	// make image's default: cmd/release image-ref.
	cmd := exec.Command("go", "run", "./cmd/release", "image-ref")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./cmd/release image-ref: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != c.Image() {
		t.Errorf("make image builds %s by default, the chart installs %s", got, c.Image())
	}
}
