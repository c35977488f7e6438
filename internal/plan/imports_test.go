package plan

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// allowedImports is everything the planner may import: the standard
// library's pure packages, the API types and their helpers. A client, an
// HTTP stack, a clock or the file system would let a decision depend on
// something other than its inputs.
var allowedImports = []string{
	"encoding/json", "fmt", "hash/fnv", "math", "slices", "sort", "strconv", "strings", "time",
	"github.com/modelrollout/modelrollout/api/v1alpha1",
	"k8s.io/api/core/v1",
	"k8s.io/api/discovery/v1",
	"k8s.io/apimachinery/pkg/api/equality",
	"k8s.io/apimachinery/pkg/api/meta",
	"k8s.io/apimachinery/pkg/apis/meta/v1",
	"k8s.io/utils/ptr",
	"sigs.k8s.io/gateway-api/apis/v1",
}

// TestPlannerImportsNoClient fails when a file of the planner imports a
// package outside allowedImports.
func TestPlannerImportsNoClient(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := 0
	for _, fn := range files {
		if strings.HasSuffix(fn, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, fn, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			seen++
			if !slices.Contains(allowedImports, path) {
				t.Errorf("%s imports %s: the planner decides from its inputs alone; observe in controllers and pass the result in", fn, path)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no imports read")
	}
}

// TestPlannerReachesNoClient fails when the planner depends, through any
// package, on a Kubernetes client.
func TestPlannerReachesNoClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/modelrollout/modelrollout/api/v1alpha1") {
		t.Fatalf("go list -deps did not list the API package: %v", deps)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "k8s.io/client-go/") || strings.HasPrefix(d, "sigs.k8s.io/controller-runtime/pkg/client") ||
			strings.HasPrefix(d, "github.com/modelrollout/modelrollout/controllers") || strings.HasPrefix(d, "github.com/modelrollout/modelrollout/analysis") {
			t.Errorf("the planner depends on %s", d)
		}
	}
}
