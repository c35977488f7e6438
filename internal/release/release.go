// Package release builds what a ModelRollout release ships: the manager's
// container image (built with go-containerregistry, without a Docker daemon
// or a base image pull) and the release bundle in dist/ (install.yaml, the
// packaged chart, the kubectl plugin archives, checksums.txt and the krew
// manifest). `make image` and `make release` run it through cmd/release;
// the tests in test/release call it directly.
package release

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Source is the project's repository, the image's
// org.opencontainers.image.source and the krew manifest's homepage.
const Source = "https://github.com/modelrollout/modelrollout"

// Platform is a GOOS/GOARCH pair.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatform parses "linux/amd64".
func ParsePlatform(s string) (Platform, error) {
	os, arch, ok := strings.Cut(s, "/")
	if !ok || os == "" || arch == "" || strings.Contains(arch, "/") {
		return Platform{}, fmt.Errorf("platform %q: want os/arch, e.g. linux/amd64", s)
	}
	return Platform{OS: os, Arch: arch}, nil
}

// ImagePlatforms are the platforms of the manager's image index.
var ImagePlatforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}}

// PluginPlatforms are the platforms the kubectl plugin is released for.
var PluginPlatforms = []Platform{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"},
}

// Build identifies the source a release is built from.
type Build struct {
	// Describe is `git describe --tags --always --dirty`, stamped into the
	// binaries.
	Describe string
	// Revision is the full commit hash (org.opencontainers.image.revision).
	Revision string
	// Created is the commit time, or SOURCE_DATE_EPOCH when set: the
	// timestamp of the image and of every file in the layers and archives,
	// so that a build of the same commit gives the same bytes.
	Created time.Time
}

// GitBuild reads the Build of the checkout at root.
func GitBuild(ctx context.Context, root string) (Build, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", root}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	var b Build
	var err error
	if b.Describe, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
		return b, err
	}
	if b.Revision, err = git("rev-parse", "HEAD"); err != nil {
		return b, err
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct"); err != nil {
			return b, err
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return b, fmt.Errorf("commit time %q: %w", epoch, err)
	}
	b.Created = time.Unix(sec, 0).UTC()
	return b, nil
}

// Chart is what the release reads from charts/modelrollout: the chart's
// appVersion and image repository are the default version and image of
// `make image` and `make release`, so that the chart, kustomize
// (config/manager) and the built image name the same reference.
type Chart struct {
	AppVersion string
	Repository string
}

// Image is the image reference the chart installs by default.
func (c Chart) Image() string { return c.Repository + ":" + c.AppVersion }

// ReadChart reads charts/modelrollout/Chart.yaml and values.yaml.
func ReadChart(root string) (Chart, error) {
	dir := filepath.Join(root, "charts", "modelrollout")
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
		} `json:"image"`
	}
	for file, into := range map[string]any{"Chart.yaml": &meta, "values.yaml": &values} {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return Chart{}, err
		}
		if err := yaml.Unmarshal(raw, into); err != nil {
			return Chart{}, fmt.Errorf("%s: %w", file, err)
		}
	}
	c := Chart{AppVersion: meta.AppVersion, Repository: values.Image.Repository}
	if c.AppVersion == "" || c.Repository == "" {
		return c, fmt.Errorf("%s: appVersion (Chart.yaml) and image.repository (values.yaml) must be set", dir)
	}
	return c, nil
}

var semver = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// CheckVersion accepts a semantic version without a leading v (x.y.z), as
// Helm and krew need.
func CheckVersion(v string) error {
	if !semver.MatchString(v) {
		return fmt.Errorf("version %q: want a semantic version x.y.z (without a leading v)", v)
	}
	return nil
}

// GoBuild compiles the main package pkg (e.g. ./cmd/manager) of the module
// at root for a platform into out: a static binary (CGO off), without local
// paths (-trimpath) or symbol tables, with main.version stamped.
func GoBuild(ctx context.Context, root, pkg, out string, p Platform, version string) error {
	ldflags := "-s -w -X main.version=" + version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, p, err, stderr.String())
	}
	return nil
}

// GoBuildAll compiles pkg for every platform, one after the other (a
// parallel build only makes a small machine thrash), into
// dir/<os>-<arch>/<name>[.exe].
func GoBuildAll(ctx context.Context, root, pkg, name, dir, version string, platforms []Platform) (map[Platform]string, error) {
	out := map[Platform]string{}
	for _, p := range platforms {
		file := filepath.Join(dir, p.OS+"-"+p.Arch, name+exe(p))
		if err := GoBuild(ctx, root, pkg, file, p, version); err != nil {
			return nil, err
		}
		out[p] = file
	}
	return out, nil
}

func exe(p Platform) string {
	if p.OS == "windows" {
		return ".exe"
	}
	return ""
}
