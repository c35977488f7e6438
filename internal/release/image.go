package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The files of the image built from scratch. Nothing else is in it: no
// shell, no package manager, no libc (the manager is static).
const (
	// Entrypoint is the manager binary, where kubebuilder puts it.
	Entrypoint = "/manager"
	// CACertsPath is where Go's crypto/x509 looks first on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// NonRoot is the user and group the manager runs as, distroless's
	// "nonroot"; the chart and kustomize run the pod as this user.
	NonRoot = 65532
)

// DefaultCACerts is the CA bundle of Debian's ca-certificates package.
const DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"

const passwd = `root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
`

const group = `root:x:0:
nonroot:x:65532:
`

// ImageOptions describe the manager's image.
type ImageOptions struct {
	// Ref is the image reference, e.g. ghcr.io/modelrollout/modelrollout:0.1.0.
	Ref string
	// Version is org.opencontainers.image.version (the release version).
	Version string
	Build   Build
	// Licenses is org.opencontainers.image.licenses (an SPDX expression).
	Licenses string
	// Binaries are the manager binaries, one per platform of the index.
	Binaries map[Platform]string
	// CACerts is the PEM bundle copied to CACertsPath (scratch base only).
	CACerts string
	// Base, when set, is a base image pulled from a registry (e.g.
	// gcr.io/distroless/static:nonroot) instead of the base built from
	// scratch. BaseOptions are passed to the pull (auth, transport).
	Base        string
	BaseOptions []remote.Option
}

// Labels are the OCI labels (and manifest annotations) of the image.
func (o ImageOptions) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.url":      Source,
		"org.opencontainers.image.title":    "modelrollout",
		"org.opencontainers.image.revision": o.Build.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.licenses": o.Licenses,
		"org.opencontainers.image.created":  o.Build.Created.Format(time.RFC3339),
	}
}

// BuildImage builds the multi-platform image index of the manager.
func BuildImage(o ImageOptions) (v1.ImageIndex, error) {
	if _, err := name.ParseReference(o.Ref); err != nil {
		return nil, fmt.Errorf("image reference: %w", err)
	}
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("no manager binaries")
	}
	var scratch v1.Layer
	if o.Base == "" {
		certs, err := os.ReadFile(o.CACerts)
		if err != nil {
			return nil, fmt.Errorf("CA certificates (install Debian's ca-certificates, or pass another PEM bundle): %w", err)
		}
		scratch, err = layer(o.Build.Created, []file{
			{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
			{name: "etc/group", mode: 0o644, data: []byte(group)},
			{name: CACertsPath[1:], mode: 0o644, data: certs},
		})
		if err != nil {
			return nil, err
		}
	}
	platforms := make([]Platform, 0, len(o.Binaries))
	for p := range o.Binaries {
		platforms = append(platforms, p)
	}
	sort.Slice(platforms, func(i, j int) bool { return platforms[i].String() < platforms[j].String() })

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		img, err := o.image(p, scratch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return mutate.Annotations(idx, o.Labels()).(v1.ImageIndex), nil
}

// image builds one platform's image: the base (built from scratch, or
// pulled), then a layer holding only the manager.
func (o ImageOptions) image(p Platform, scratch v1.Layer) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binaries[p])
	if err != nil {
		return nil, err
	}
	manager, err := layer(o.Build.Created, []file{{name: Entrypoint[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}

	var base v1.Image
	var env []string
	if o.Base == "" {
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		base, err = mutate.Append(base, mutate.Addendum{Layer: scratch, History: v1.History{
			CreatedBy: "modelrollout release: /etc/passwd, /etc/group (nonroot 65532), " + CACertsPath,
			Created:   v1.Time{Time: o.Build.Created},
		}})
		if err != nil {
			return nil, err
		}
		env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CACertsPath}
	} else {
		ref, err := name.ParseReference(o.Base)
		if err != nil {
			return nil, fmt.Errorf("base image: %w", err)
		}
		opts := append([]remote.Option{remote.WithPlatform(v1.Platform{OS: p.OS, Architecture: p.Arch})}, o.BaseOptions...)
		if base, err = remote.Image(ref, opts...); err != nil {
			return nil, fmt.Errorf("pull the base image %s: %w", o.Base, err)
		}
		cf, err := base.ConfigFile()
		if err != nil {
			return nil, err
		}
		if cf.OS != p.OS || cf.Architecture != p.Arch {
			return nil, fmt.Errorf("base image %s has no %s image (got %s/%s)", o.Base, p, cf.OS, cf.Architecture)
		}
		env = cf.Config.Env
	}

	img, err := mutate.Append(base, mutate.Addendum{Layer: manager, History: v1.History{
		CreatedBy: "modelrollout release: " + Entrypoint + " " + o.Build.Describe,
		Created:   v1.Time{Time: o.Build.Created},
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	cf.Created = v1.Time{Time: o.Build.Created}
	cf.Author = Source
	labels := map[string]string{}
	for k, v := range cf.Config.Labels {
		labels[k] = v
	}
	for k, v := range o.Labels() {
		labels[k] = v
	}
	cf.Config.Labels = labels
	cf.Config.Env = env
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, o.Labels()).(v1.Image), nil
}

type file struct {
	name string
	mode int64
	data []byte
}

// layer makes a gzipped layer of files owned by root, with their parent
// directories, all stamped with the same time.
func layer(created time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// ImageFiles are what WriteImage writes under its directory.
type ImageFiles struct {
	// Layout is an OCI image layout holding the index (crane push, skopeo,
	// podman, containerd).
	Layout string
	// Tarballs are `docker load` tarballs, one per platform (docker load
	// takes one image per tag).
	Tarballs map[Platform]string
}

// WriteImage writes the index as an OCI layout in dir/oci and as one
// `docker load` tarball per platform, dir/docker-<os>-<arch>.tar, tagged
// ref. It replaces what a previous build left there.
func WriteImage(idx v1.ImageIndex, ref, dir string) (ImageFiles, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ImageFiles{}, err
	}
	tag, ok := r.(name.Tag)
	if !ok {
		return ImageFiles{}, fmt.Errorf("image reference %s: want a tag, not a digest", ref)
	}
	files := ImageFiles{Layout: filepath.Join(dir, "oci"), Tarballs: map[Platform]string{}}
	if err := os.RemoveAll(files.Layout); err != nil {
		return files, err
	}
	lp, err := layout.Write(files.Layout, empty.Index)
	if err != nil {
		return files, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.Name(),
	})); err != nil {
		return files, fmt.Errorf("write the OCI layout: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return files, err
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return files, err
		}
		p := Platform{OS: desc.Platform.OS, Arch: desc.Platform.Architecture}
		file := filepath.Join(dir, "docker-"+p.OS+"-"+p.Arch+".tar")
		if err := tarball.WriteToFile(file, tag, img); err != nil {
			return files, fmt.Errorf("write %s: %w", file, err)
		}
		files.Tarballs[p] = file
	}
	return files, nil
}

// PushImage pushes the index to its reference (auth from the Docker config,
// as `crane` and `docker` use).
func PushImage(idx v1.ImageIndex, ref string, opts ...remote.Option) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.WriteIndex(r, idx, opts...)
}
