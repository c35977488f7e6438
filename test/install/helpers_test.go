package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// repoRoot is the module root, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "modelrollout") }

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
	helmOut  string
)

// networkErrors are the signs of a build that failed for lack of network
// access to the Go module proxy.
var networkErrors = []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "TLS handshake timeout", "network is unreachable", "proxyconnect"}

// helm returns the path of the helm CLI, building it with
// test/scripts/helm.sh on first use (cached in bin/helm/<version>/). It
// skips the test only when the build failed for lack of network.
func helm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "test", "scripts", "helm.sh"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		helmErr = cmd.Run()
		helmOut = stderr.String()
		helmPath = strings.TrimSpace(stdout.String())
	})
	if helmErr != nil {
		for _, s := range networkErrors {
			if strings.Contains(helmOut, s) {
				t.Skipf("skipping: building helm from the Go module proxy failed for lack of network (%s):\n%s", s, tail(helmOut, 2000))
			}
		}
		t.Fatalf("test/scripts/helm.sh failed: %v\n%s", helmErr, tail(helmOut, 4000))
	}
	return helmPath
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// run runs a command and returns its stdout; it fails the test with stderr.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out
}

func runErr(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w\n%s%s", err, stderr.String(), stdout.String())
	}
	return stdout.Bytes(), nil
}

// releaseNamespace is where the tests install the chart.
const releaseNamespace = "modelrollout-system"

// template renders the chart with `helm template`, CRDs included, and the
// given extra arguments (e.g. --set a=b).
func template(t testing.TB, args ...string) []byte {
	t.Helper()
	base := []string{"template", "mr", chartDir(t), "--namespace", releaseNamespace, "--include-crds"}
	return run(t, helm(t), append(base, args...)...)
}

// decode splits a multi-document YAML stream into objects, skipping empty
// documents.
func decode(t testing.TB, stream []byte) []*unstructured.Unstructured {
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
			t.Fatalf("decode rendered manifests: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		out = append(out, u)
	}
	return out
}

// find returns the objects of a kind.
func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// only returns the single object of a kind, failing otherwise.
func only(t testing.TB, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := find(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(found))
	}
	return found[0]
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// updateGenerated says whether sync tests rewrite the copies instead of
// failing.
func updateGenerated() bool { return os.Getenv("UPDATE_GENERATED") != "" }
