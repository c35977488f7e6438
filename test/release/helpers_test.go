package release_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/modelrollout/modelrollout/internal/release"
)

// The tests build a release once, into a temporary directory shared by the
// tests of this package: the image and the bundle, each on first use, so a
// single test builds only what it reads.
//
// Platforms: a release cross-builds the manager for two platforms (`make
// image`) and the plugin for five (`make release`). Cross-building took most
// of this package's cold time (about 17 of a cold `make test`'s minutes), so
// by default (`make test`) the tests build this machine's platform only and
// check the image's and the bundle's shape, names, checksums and manifests
// for it; with RELEASE_TEST_PLATFORMS=all (`make test-release`) they build
// and check every released platform.

// version is the release version the tests build, not the chart's own, so
// that a default left in place shows.
const version = "1.2.3-rc.1"

var (
	root = func() string {
		_, file, _, _ := runtime.Caller(0)
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	}()
	tmp string
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	var err error
	if tmp, err = os.MkdirTemp("", "modelrollout-release-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stopAPIServer()
	_ = os.RemoveAll(tmp)
	os.Exit(code)
}

// allPlatforms says whether the tests build every released platform.
var allPlatforms = os.Getenv("RELEASE_TEST_PLATFORMS") == "all"

// hostPlatform is this machine's platform.
var hostPlatform = release.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}

// pluginPlatforms are the platforms the tests build the plugin for.
func pluginPlatforms() []release.Platform {
	if allPlatforms {
		return release.PluginPlatforms
	}
	return []release.Platform{hostPlatform}
}

// imagePlatforms are the platforms of the image the tests build: linux on
// this machine's architecture, unless every platform is asked for.
func imagePlatforms() []release.Platform {
	if allPlatforms {
		return release.ImagePlatforms
	}
	return []release.Platform{{OS: "linux", Arch: runtime.GOARCH}}
}

var (
	buildOnce sync.Once
	gitBuild  release.Build
	buildErr  error
)

func sourceBuild(t *testing.T) release.Build {
	t.Helper()
	buildOnce.Do(func() { gitBuild, buildErr = release.GitBuild(context.Background(), root) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return gitBuild
}

func chart(t *testing.T) release.Chart {
	t.Helper()
	c, err := release.ReadChart(root)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// timed logs how long a build step took.
func timed(t *testing.T, what string, f func() error) error {
	t.Helper()
	start := time.Now()
	err := f()
	t.Logf("%s: %s", what, time.Since(start).Round(100*time.Millisecond))
	return err
}

// tool builds a CLI with one of the project's scripts (test/scripts/*.sh
// print the cached binary's path or directory).
func tool(t *testing.T, script string) string {
	t.Helper()
	out, err := toolErr(script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func toolErr(script string) (string, error) {
	cmd := exec.Command("bash", filepath.Join(root, "test", "scripts", script))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("test/scripts/%s: %w\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// run runs a command and returns its stdout, failing the test with its
// output.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

func kubectl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not on PATH: `make test-deps` installs it (test/scripts/install-deps.sh)")
	}
	return p
}

// The test API server, started on first use and shared.
var (
	apiOnce    sync.Once
	apiEnv     *envtest.Environment
	kubeconfig string
	apiErr     error
)

func apiServer(t *testing.T) (*envtest.Environment, string) {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd into bin/control-plane")
	}
	apiOnce.Do(func() {
		var gw []byte
		if gw, apiErr = exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output(); apiErr != nil {
			apiErr = fmt.Errorf("locate the gateway-api module: %w", apiErr)
			return
		}
		env := &envtest.Environment{
			CRDDirectoryPaths: []string{
				filepath.Join(root, "config", "crd", "bases"),
				filepath.Join(strings.TrimSpace(string(gw)), "config", "crd", "standard"),
			},
			ErrorIfCRDPathMissing: true,
		}
		if _, apiErr = env.Start(); apiErr != nil {
			return
		}
		apiEnv = env
		var admin *envtest.AuthenticatedUser
		if admin, apiErr = env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil); apiErr != nil {
			return
		}
		var raw []byte
		if raw, apiErr = admin.KubeConfig(); apiErr != nil {
			return
		}
		kubeconfig = filepath.Join(tmp, "kubeconfig")
		apiErr = os.WriteFile(kubeconfig, raw, 0o600)
	})
	if apiErr != nil {
		t.Fatalf("start the test API server: %v", apiErr)
	}
	return apiEnv, kubeconfig
}

func stopAPIServer() {
	if apiEnv != nil {
		if err := apiEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop the test API server:", err)
		}
	}
}
