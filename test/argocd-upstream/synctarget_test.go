package argocdupstream

// The sync target of RespectIgnoreDifferences=true, as Argo CD v3.3.9
// computes it. The three functions below are copied verbatim from
// github.com/argoproj/argo-cd/v3/controller/sync.go, where they are
// unexported; TestSyncTargetCodeIsArgoCDs fails when they differ from the
// pinned module's source. comparisonResult holds only the two fields they
// read, with Argo CD's own types.

import (
	"context"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/argoproj/argo-cd/v3/util/argo/diff"
	"github.com/argoproj/gitops-engine/pkg/sync"
	jsonpatch "github.com/evanphx/json-patch"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/scheme"
)

type comparisonResult struct {
	reconciliationResult sync.ReconciliationResult
	diffConfig           diff.DiffConfig
}

// normalizeTargetResources modifies target resources to ensure ignored fields are not touched during synchronization:
//   - applies normalization to the target resources based on the live resources
//   - copies ignored fields from the matching live resources: apply normalizer to the live resource,
//     calculates the patch performed by normalizer and applies the patch to the target resource
func normalizeTargetResources(cr *comparisonResult) ([]*unstructured.Unstructured, error) {
	// normalize live and target resources
	normalized, err := diff.Normalize(cr.reconciliationResult.Live, cr.reconciliationResult.Target, cr.diffConfig)
	if err != nil {
		return nil, err
	}
	patchedTargets := []*unstructured.Unstructured{}
	for idx, live := range cr.reconciliationResult.Live {
		normalizedTarget := normalized.Targets[idx]
		if normalizedTarget == nil {
			patchedTargets = append(patchedTargets, nil)
			continue
		}
		originalTarget := cr.reconciliationResult.Target[idx]
		if live == nil {
			patchedTargets = append(patchedTargets, originalTarget)
			continue
		}

		var lookupPatchMeta *strategicpatch.PatchMetaFromStruct
		versionedObject, err := scheme.Scheme.New(normalizedTarget.GroupVersionKind())
		if err == nil {
			meta, err := strategicpatch.NewPatchMetaFromStruct(versionedObject)
			if err != nil {
				return nil, err
			}
			lookupPatchMeta = &meta
		}

		livePatch, err := getMergePatch(normalized.Lives[idx], live, lookupPatchMeta)
		if err != nil {
			return nil, err
		}

		normalizedTarget, err = applyMergePatch(normalizedTarget, livePatch, versionedObject)
		if err != nil {
			return nil, err
		}

		patchedTargets = append(patchedTargets, normalizedTarget)
	}
	return patchedTargets, nil
}

// getMergePatch calculates and returns the patch between the original and the
// modified unstructures.
func getMergePatch(original, modified *unstructured.Unstructured, lookupPatchMeta *strategicpatch.PatchMetaFromStruct) ([]byte, error) {
	originalJSON, err := original.MarshalJSON()
	if err != nil {
		return nil, err
	}
	modifiedJSON, err := modified.MarshalJSON()
	if err != nil {
		return nil, err
	}
	if lookupPatchMeta != nil {
		return strategicpatch.CreateThreeWayMergePatch(modifiedJSON, modifiedJSON, originalJSON, lookupPatchMeta, true)
	}

	return jsonpatch.CreateMergePatch(originalJSON, modifiedJSON)
}

// applyMergePatch will apply the given patch in the obj and return the patched
// unstructure.
func applyMergePatch(obj *unstructured.Unstructured, patch []byte, versionedObject any) (*unstructured.Unstructured, error) {
	originalJSON, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var patchedJSON []byte
	if versionedObject == nil {
		patchedJSON, err = jsonpatch.MergePatch(originalJSON, patch)
	} else {
		patchedJSON, err = strategicpatch.StrategicMergePatch(originalJSON, patch, versionedObject)
	}
	if err != nil {
		return nil, err
	}

	patchedObj := &unstructured.Unstructured{}
	_, _, err = unstructured.UnstructuredJSONScheme.Decode(patchedJSON, nil, patchedObj)
	if err != nil {
		return nil, err
	}
	return patchedObj, nil
}

// TestSyncTargetCodeIsArgoCDs compares the three functions above with their
// source in the pinned argo-cd module, and the imports they use.
func TestSyncTargetCodeIsArgoCDs(t *testing.T) {
	out, err := exec.CommandContext(context.Background(), "go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-cd/v3").Output()
	if err != nil {
		t.Fatalf("locate the argo-cd module: %v", err)
	}
	upstream := funcSources(t, filepath.Join(strings.TrimSpace(string(out)), "controller", "sync.go"))
	ours := funcSources(t, "synctarget_test.go")
	for _, name := range []string{"normalizeTargetResources", "getMergePatch", "applyMergePatch"} {
		if upstream[name] == "" {
			t.Errorf("argo-cd's controller/sync.go has no func %s", name)
			continue
		}
		if ours[name] != upstream[name] {
			t.Errorf("func %s differs from argo-cd's controller/sync.go:\n--- argo-cd\n%s\n--- here\n%s", name, upstream[name], ours[name])
		}
	}
	// The same packages behind the names the functions use.
	upImports, ourImports := importsOf(t, filepath.Join(strings.TrimSpace(string(out)), "controller", "sync.go")), importsOf(t, "synctarget_test.go")
	for _, name := range []string{"diff", "jsonpatch", "strategicpatch", "scheme", "unstructured"} {
		if upImports[name] == "" || upImports[name] != ourImports[name] {
			t.Errorf("%s is %q in argo-cd's controller/sync.go, %q here", name, upImports[name], ourImports[name])
		}
	}
}

// funcSources returns the printed source of each top-level function of a
// file, by name, comments left out.
func funcSources(t *testing.T, path string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv != nil {
			continue
		}
		var b strings.Builder
		if err := printer.Fprint(&b, fset, fd); err != nil {
			t.Fatal(err)
		}
		out[fd.Name.Name] = b.String()
	}
	return out
}

// importsOf maps the names a file's imports are used by to their paths.
func importsOf(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, imp := range f.Imports {
		p := strings.Trim(imp.Path.Value, `"`)
		name := filepath.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		out[name] = p
	}
	return out
}
