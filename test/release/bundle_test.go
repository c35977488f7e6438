package release_test

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/modelrollout/modelrollout/internal/release"
)

var (
	bundleOnce sync.Once
	bundle     release.Bundle
	bundleErr  error
	helmBin    string
)

// buildBundle writes the release bundle as `make release VERSION=<version>`
// does, once.
func buildBundle(t *testing.T) release.Bundle {
	t.Helper()
	b := sourceBuild(t)
	c := chart(t)
	kc := kubectl(t)
	bundleOnce.Do(func() {
		bundleErr = timed(t, "build helm (test/scripts/helm.sh, cached in bin/)", func() (err error) {
			helmBin, err = toolErr("helm.sh")
			return err
		})
		if bundleErr != nil {
			return
		}
		var plugins map[release.Platform]string
		bundleErr = timed(t, "build the plugin for "+platformList(pluginPlatforms()), func() (err error) {
			plugins, err = release.GoBuildAll(t.Context(), root, "./cmd/"+release.PluginName, release.PluginName, filepath.Join(tmp, "plugin"), b.Describe, pluginPlatforms())
			return err
		})
		if bundleErr != nil {
			return
		}
		bundleErr = timed(t, "write the bundle", func() (err error) {
			bundle, err = release.WriteBundle(t.Context(), release.BundleOptions{
				Root: root, Version: version, Build: b, Out: filepath.Join(tmp, "dist"), Repository: c.Repository,
				Kubectl: kc, Helm: helmBin, Plugins: plugins, DownloadURL: release.DefaultDownloadURL(version),
			})
			return err
		})
	})
	if bundleErr != nil {
		t.Fatal(bundleErr)
	}
	return bundle
}

func distDir(b release.Bundle) string { return filepath.Dir(b.Install) }

// TestBundleFiles checks the bundle's file list and checksums.txt.
func TestBundleFiles(t *testing.T) {
	b := buildBundle(t)
	dir := distDir(b)
	want := []string{"checksums.txt", "install.yaml", "modelrollout-" + version + ".tgz", "modelrollout.yaml"}
	for _, p := range pluginPlatforms() {
		want = append(want, release.ArchiveName(version, p))
	}
	sort.Strings(want)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("dist holds %q, want %q", got, want)
	}

	sums := checksums(t, b.Checksums)
	for _, f := range want {
		if f == release.ChecksumsFile {
			continue
		}
		if sums[f] == "" {
			t.Errorf("checksums.txt does not list %s", f)
			continue
		}
		if got := sha256Of(t, filepath.Join(dir, f)); got != sums[f] {
			t.Errorf("%s: sha256 %s, checksums.txt says %s", f, got, sums[f])
		}
	}
	if len(sums) != len(want)-1 {
		t.Errorf("checksums.txt lists %d files, want %d", len(sums), len(want)-1)
	}
	// The way users check it.
	if sha, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(sha, "--check", "--strict", release.ChecksumsFile)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum --check: %v\n%s", err, out)
		}
	}
}

func checksums(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("checksums.txt: malformed line %q", sc.Text())
		}
		sums[name] = sum
	}
	return sums
}

func sha256Of(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:])
}

// archiveEntries reads a plugin archive (tar.gz or zip).
func archiveEntries(t *testing.T, file string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if strings.HasSuffix(file, ".zip") {
		zr, err := zip.OpenReader(file)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[f.Name] = b
		}
		return out
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Name == release.PluginName && h.Mode&0o111 == 0 {
			t.Errorf("%s: %s is not executable (mode %o)", filepath.Base(file), h.Name, h.Mode)
		}
		out[h.Name] = b
	}
	return out
}

// binaryPlatform reads the OS and architecture a binary was built for.
func binaryPlatform(b []byte) (release.Platform, error) {
	r := bytes.NewReader(b)
	if f, err := elf.NewFile(r); err == nil {
		switch f.Machine {
		case elf.EM_X86_64:
			return release.Platform{OS: "linux", Arch: "amd64"}, nil
		case elf.EM_AARCH64:
			return release.Platform{OS: "linux", Arch: "arm64"}, nil
		}
		return release.Platform{}, errors.New("ELF for " + f.Machine.String())
	}
	if f, err := macho.NewFile(r); err == nil {
		switch f.Cpu {
		case macho.CpuAmd64:
			return release.Platform{OS: "darwin", Arch: "amd64"}, nil
		case macho.CpuArm64:
			return release.Platform{OS: "darwin", Arch: "arm64"}, nil
		}
		return release.Platform{}, errors.New("Mach-O for " + f.Cpu.String())
	}
	if f, err := pe.NewFile(r); err == nil {
		if f.Machine == pe.IMAGE_FILE_MACHINE_AMD64 {
			return release.Platform{OS: "windows", Arch: "amd64"}, nil
		}
		return release.Platform{}, errors.New("PE for another machine")
	}
	return release.Platform{}, errors.New("not an executable")
}

// TestBundlePluginArchives checks that each archive holds the plugin built
// for its platform, next to the plugin's README.
func TestBundlePluginArchives(t *testing.T) {
	b := buildBundle(t)
	for _, p := range pluginPlatforms() {
		t.Run(p.String(), func(t *testing.T) {
			file := b.Archives[p]
			if filepath.Base(file) != release.ArchiveName(version, p) {
				t.Fatalf("archive %s, want %s", file, release.ArchiveName(version, p))
			}
			entries := archiveEntries(t, file)
			bin := release.PluginName
			if p.OS == "windows" {
				bin += ".exe"
			}
			want := []string{"README.md", bin}
			if _, err := os.Stat(filepath.Join(root, "LICENSE")); err == nil {
				want = append(want, "LICENSE")
			}
			sort.Strings(want)
			if got := keys(entries); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("archive holds %q, want %q", got, want)
			}
			got, err := binaryPlatform(entries[bin])
			if err != nil || got != p {
				t.Errorf("%s is built for %v (%v), want %s", bin, got, err, p)
			}
		})
	}
}

// TestBundleKrewManifest validates modelrollout.yaml with krew's own code,
// the validator the krew-index repository runs on submissions, then
// installs every platform's archive with krew, which checks the archive's
// sha256 against the manifest.
func TestBundleKrewManifest(t *testing.T) {
	b := buildBundle(t)
	krewDir := tool(t, "krew.sh")

	// The manifest's URIs and sha256 match the archives and checksums.txt.
	raw, err := os.ReadFile(b.Krew)
	if err != nil {
		t.Fatal(err)
	}
	var m release.KrewPlugin
	if err := yaml.UnmarshalStrict(raw, &m); err != nil {
		t.Fatal(err)
	}
	sums := checksums(t, b.Checksums)
	if m.Spec.Version != "v"+version || len(m.Spec.Platforms) != len(pluginPlatforms()) {
		t.Fatalf("version %s with %d platforms, want v%s with %d", m.Spec.Version, len(m.Spec.Platforms), version, len(pluginPlatforms()))
	}
	for _, p := range m.Spec.Platforms {
		archive := filepath.Base(p.URI)
		if p.URI != release.DefaultDownloadURL(version)+"/"+archive {
			t.Errorf("URI %s is not in the release's downloads", p.URI)
		}
		if p.Sha256 != sums[archive] || p.Sha256 != sha256Of(t, filepath.Join(distDir(b), archive)) {
			t.Errorf("%s: the manifest says sha256 %s, checksums.txt %s", archive, p.Sha256, sums[archive])
		}
		want := release.ArchiveName(version, release.Platform{OS: p.Selector.MatchLabels["os"], Arch: p.Selector.MatchLabels["arch"]})
		if archive != want {
			t.Errorf("platform %v downloads %s, want %s", p.Selector.MatchLabels, archive, want)
		}
	}

	// krew's validation: structure, name, semver, selectors, platform
	// coverage and overlaps. (-skip-install: its install step downloads
	// the URIs; the installs below use the local archives instead.)
	out, err := runErr(nil, filepath.Join(krewDir, "validate-krew-manifest"), "-manifest", b.Krew, "-skip-install")
	if err != nil {
		t.Fatalf("krew rejects modelrollout.yaml: %v", err)
	}
	t.Logf("validate-krew-manifest: %s", strings.TrimSpace(out))

	krew := filepath.Join(krewDir, "krew")
	install := func(p release.Platform, archive string) (string, error) {
		krewRoot := t.TempDir()
		env := []string{"KREW_ROOT=" + krewRoot, "KREW_OS=" + p.OS, "KREW_ARCH=" + p.Arch, "HOME=" + t.TempDir()}
		return krewRoot, func() error {
			_, err := runErr(env, krew, "install", "--manifest="+b.Krew, "--archive="+archive)
			return err
		}()
	}
	for _, p := range pluginPlatforms() {
		t.Run("krew install "+p.String(), func(t *testing.T) {
			krewRoot, err := install(p, b.Archives[p])
			if err != nil {
				t.Fatal(err)
			}
			bin := release.PluginName
			if p.OS == "windows" {
				bin += ".exe"
			}
			installed := filepath.Join(krewRoot, "store", release.KrewPluginName, "v"+version, bin)
			raw, err := os.ReadFile(installed)
			if err != nil {
				t.Fatalf("krew did not install the plugin: %v", err)
			}
			if got, err := binaryPlatform(raw); err != nil || got != p {
				t.Errorf("krew installed a binary for %v (%v), want %s", got, err, p)
			}
			if p.OS == "linux" && p.Arch == runtime.GOARCH {
				help := run(t, nil, filepath.Join(krewRoot, "bin", release.PluginName), "--help")
				if !strings.Contains(help, "promote") {
					t.Errorf("kubectl-modelrollout --help:\n%s", help)
				}
			}
		})
	}
	// krew refuses an archive whose sha256 is not the manifest's: the
	// host's archive with one byte more.
	raw, err = os.ReadFile(b.Archives[hostPlatform])
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), filepath.Base(b.Archives[hostPlatform]))
	if err := os.WriteFile(tampered, append(raw, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := install(hostPlatform, tampered); err == nil || !strings.Contains(err.Error(), "checksum does not match") {
		t.Errorf("krew installed an archive whose sha256 is not the manifest's: %v", err)
	}
}

// TestBundleChart checks the packaged chart: helm lints it, and it installs
// the release's image.
func TestBundleChart(t *testing.T) {
	b := buildBundle(t)
	run(t, nil, helmBin, "lint", b.Chart)
	var meta struct{ Name, Version, AppVersion string }
	if err := yaml.Unmarshal([]byte(run(t, nil, helmBin, "show", "chart", b.Chart)), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Name != "modelrollout" || meta.Version != version || meta.AppVersion != version {
		t.Errorf("chart %s version %s appVersion %s, want modelrollout %s", meta.Name, meta.Version, meta.AppVersion, version)
	}
	objs := decode(t, []byte(run(t, nil, helmBin, "template", "mr", b.Chart, "--namespace", "modelrollout-system")))
	images := deploymentImages(t, objs)
	if want := chart(t).Repository + ":" + version; len(images) != 1 || images[0] != want {
		t.Errorf("the packaged chart runs %q, want %s", images, want)
	}
}

func decode(t *testing.T, stream []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	return out
}

func deploymentImages(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var images []string
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			img, _ := c.(map[string]any)["image"].(string)
			images = append(images, img)
		}
	}
	return images
}
