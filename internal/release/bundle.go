package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// PluginName is the kubectl plugin's binary name; krew calls the plugin
// "modelrollout".
const PluginName = "kubectl-modelrollout"

// BundleOptions describe a release bundle.
type BundleOptions struct {
	// Root is the module root.
	Root string
	// Version is the release version, x.y.z.
	Version string
	Build   Build
	// Out is the directory written (dist/); its previous content is removed.
	Out string
	// Repository is the manager's image repository; install.yaml and the
	// chart install Repository:Version.
	Repository string
	// Kubectl and Helm are the CLIs rendering config/default and packaging
	// charts/modelrollout.
	Kubectl, Helm string
	// Plugins are the kubectl plugin binaries, one per platform.
	Plugins map[Platform]string
	// DownloadURL is where the archives are published; the krew manifest's
	// URIs are DownloadURL/<archive>.
	DownloadURL string
}

// DefaultDownloadURL is where GitHub serves a release's assets.
func DefaultDownloadURL(version string) string {
	return Source + "/releases/download/v" + version
}

// Bundle is what WriteBundle wrote, as paths under Out.
type Bundle struct {
	Install, Chart, Checksums, Krew string
	Archives                        map[Platform]string
}

// WriteBundle writes the release bundle.
func WriteBundle(ctx context.Context, o BundleOptions) (Bundle, error) {
	b := Bundle{Archives: map[Platform]string{}}
	if err := CheckVersion(o.Version); err != nil {
		return b, err
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return b, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return b, err
	}
	var err error
	if b.Install, err = writeInstall(ctx, o); err != nil {
		return b, fmt.Errorf("install.yaml: %w", err)
	}
	if b.Chart, err = packageChart(ctx, o); err != nil {
		return b, fmt.Errorf("chart: %w", err)
	}
	platforms := make([]Platform, 0, len(o.Plugins))
	for p := range o.Plugins {
		platforms = append(platforms, p)
	}
	sort.Slice(platforms, func(i, j int) bool { return platforms[i].String() < platforms[j].String() })
	var krew []KrewPlatform
	for _, p := range platforms {
		file, err := writeArchive(o, p)
		if err != nil {
			return b, fmt.Errorf("plugin archive for %s: %w", p, err)
		}
		b.Archives[p] = file
		sum, err := sha256File(file)
		if err != nil {
			return b, err
		}
		krew = append(krew, KrewPlatform{
			Selector: KrewSelector{MatchLabels: map[string]string{"os": p.OS, "arch": p.Arch}},
			URI:      strings.TrimSuffix(o.DownloadURL, "/") + "/" + filepath.Base(file),
			Sha256:   sum,
			Bin:      PluginName + exe(p),
			Files:    archiveFiles(o.Root, p),
		})
	}
	manifest, err := yaml.Marshal(NewKrewPlugin(o.Version, krew))
	if err != nil {
		return b, err
	}
	b.Krew = filepath.Join(o.Out, KrewPluginName+".yaml")
	if err := os.WriteFile(b.Krew, manifest, 0o644); err != nil {
		return b, err
	}
	if b.Checksums, err = writeChecksums(o.Out); err != nil {
		return b, err
	}
	return b, nil
}

// writeInstall renders config/default with the release's image: a copy of
// config/ with an overlay setting the image, through `kubectl kustomize`.
func writeInstall(ctx context.Context, o BundleOptions) (string, error) {
	tmp, err := os.MkdirTemp("", "modelrollout-install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(filepath.Join(tmp, "config"), os.DirFS(filepath.Join(o.Root, "config"))); err != nil {
		return "", err
	}
	chart, err := ReadChart(o.Root)
	if err != nil {
		return "", err
	}
	image := o.Repository + ":" + o.Version
	overlay := fmt.Sprintf("resources:\n- ../config/default\nimages:\n- name: %s\n  newName: %s\n  newTag: %q\n", chart.Repository, o.Repository, o.Version)
	if err := os.MkdirAll(filepath.Join(tmp, "release"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "release", "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, o.Kubectl, "kustomize", filepath.Join(tmp, "release"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	rendered, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubectl kustomize: %w: %s", err, stderr.String())
	}
	// Every container must run the release's image: a name the overlay
	// did not match would ship a stale one.
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	deployments := 0
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", err
		}
		if u.GetKind() != "Deployment" {
			continue
		}
		deployments++
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			if got, _ := c.(map[string]any)["image"].(string); got != image {
				return "", fmt.Errorf("Deployment %s runs %q, not %s: does config/manager/kustomization.yaml still name %s?", u.GetName(), got, image, chart.Repository)
			}
		}
	}
	if deployments == 0 {
		return "", fmt.Errorf("config/default renders no Deployment")
	}
	header := fmt.Sprintf("# ModelRollout %s: CRDs, RBAC, the manager (%s) and its Service, in\n"+
		"# namespace modelrollout-system. Rendered from config/default.\n"+
		"#   kubectl apply --server-side -f install.yaml\n", o.Version, image)
	file := filepath.Join(o.Out, "install.yaml")
	return file, os.WriteFile(file, append([]byte(header), rendered...), 0o644)
}

// packageChart runs `helm package` with the release's version as the
// chart's version and appVersion, which the chart's image tag defaults to.
func packageChart(ctx context.Context, o BundleOptions) (string, error) {
	chart, err := ReadChart(o.Root)
	if err != nil {
		return "", err
	}
	if chart.Repository != o.Repository {
		return "", fmt.Errorf("the chart installs %s (values.yaml image.repository), not %s", chart.Repository, o.Repository)
	}
	cmd := exec.CommandContext(ctx, o.Helm, "package", filepath.Join(o.Root, "charts", "modelrollout"),
		"--version", o.Version, "--app-version", o.Version, "--destination", o.Out)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("helm package: %w: %s", err, out)
	}
	file := filepath.Join(o.Out, "modelrollout-"+o.Version+".tgz")
	if _, err := os.Stat(file); err != nil {
		return "", fmt.Errorf("helm package did not write %s: %w", file, err)
	}
	return file, nil
}

// ArchiveName is the name of a plugin archive: tar.gz, or zip on Windows.
func ArchiveName(version string, p Platform) string {
	ext := ".tar.gz"
	if p.OS == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("%s_v%s_%s_%s%s", PluginName, version, p.OS, p.Arch, ext)
}

// archiveContent lists what a plugin archive holds besides the binary:
// the plugin's README and, when the repository has one, its LICENSE.
func archiveContent(root string) map[string]string {
	content := map[string]string{"README.md": filepath.Join(root, "cmd", PluginName, "README.md")}
	if _, err := os.Stat(filepath.Join(root, "LICENSE")); err == nil {
		content["LICENSE"] = filepath.Join(root, "LICENSE")
	}
	return content
}

// archiveFiles are the krew `files` of a platform: everything in the
// archive, copied to the plugin's directory.
func archiveFiles(root string, p Platform) []KrewFile {
	files := []KrewFile{{From: PluginName + exe(p), To: "."}}
	names := make([]string, 0)
	for name := range archiveContent(root) {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		files = append(files, KrewFile{From: name, To: "."})
	}
	return files
}

func writeArchive(o BundleOptions, p Platform) (string, error) {
	type entry struct {
		name string
		mode int64
		data []byte
	}
	bin, err := os.ReadFile(o.Plugins[p])
	if err != nil {
		return "", err
	}
	entries := []entry{{PluginName + exe(p), 0o755, bin}}
	content := archiveContent(o.Root)
	names := make([]string, 0, len(content))
	for name := range content {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(content[name])
		if err != nil {
			return "", err
		}
		entries = append(entries, entry{name, 0o644, data})
	}

	var buf bytes.Buffer
	mtime := o.Build.Created
	if p.OS == "windows" {
		zw := zip.NewWriter(&buf)
		for _, e := range entries {
			h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
			h.SetMode(fs.FileMode(e.mode))
			w, err := zw.CreateHeader(h)
			if err != nil {
				return "", err
			}
			if _, err := w.Write(e.data); err != nil {
				return "", err
			}
		}
		if err := zw.Close(); err != nil {
			return "", err
		}
	} else {
		gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		gz.ModTime = time.Time{}
		tw := tar.NewWriter(gz)
		for _, e := range entries {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(e.data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
				return "", err
			}
			if _, err := tw.Write(e.data); err != nil {
				return "", err
			}
		}
		if err := tw.Close(); err != nil {
			return "", err
		}
		if err := gz.Close(); err != nil {
			return "", err
		}
	}
	file := filepath.Join(o.Out, ArchiveName(o.Version, p))
	return file, os.WriteFile(file, buf.Bytes(), 0o644)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ChecksumsFile lists the sha256 of every other file of the bundle, in
// the format of `sha256sum` (verify with `sha256sum -c checksums.txt`).
const ChecksumsFile = "checksums.txt"

func writeChecksums(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, e := range entries {
		if e.IsDir() || e.Name() == ChecksumsFile {
			continue
		}
		sum, err := sha256File(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&out, "%s  %s\n", sum, e.Name())
	}
	file := filepath.Join(dir, ChecksumsFile)
	return file, os.WriteFile(file, []byte(out.String()), 0o644)
}
