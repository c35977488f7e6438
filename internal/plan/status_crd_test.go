package plan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// copiedFromSpec are the status strings that are copies of spec fields with
// the same bound (backend and workload references, route names, header
// matches) or the operator's own constants (condition types and reasons).
// Cutting them would change what they identify; the API server's validation
// of spec already bounds them.
var copiedFromSpec = []string{
	"status.stable.", "status.canary.", "status.retiring[].", "status.removing[].",
	"status.headerRoute.", "status.workloads[].workloadRef.", "status.stepPause",
	"status.conditions[].type", "status.conditions[].reason",
}

// TestClampStatusCoversTheCRD fills every string of a status, at any depth,
// far over any bound, clamps it, and checks each one against the maxLength
// of the CRD: a new status string without its cut fails here, not at the
// API server in the middle of a rollback.
func TestClampStatusCoversTheCRD(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "rollouts.modelrollout.io_modelrollouts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	bounds := map[string]int64{}
	var walk func(s apiextensionsv1.JSONSchemaProps, path string)
	walk = func(s apiextensionsv1.JSONSchemaProps, path string) {
		switch s.Type {
		case "object":
			for k, v := range s.Properties {
				walk(v, path+"."+k)
			}
		case "array":
			if s.Items != nil && s.Items.Schema != nil {
				walk(*s.Items.Schema, path+"[]")
			}
		case "string":
			if s.MaxLength != nil {
				bounds[path] = *s.MaxLength
			}
		}
	}
	walk(crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"], "status")
	if len(bounds) < 20 {
		t.Fatalf("only %d bounded strings found in the CRD", len(bounds))
	}

	st := rolloutsv1.ModelRolloutStatus{}
	fill(reflect.ValueOf(&st).Elem(), strings.Repeat("é", 40000))
	ClampStatus(&st)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var check func(v any, path string)
	check = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				check(e, path+"."+k)
			}
		case []any:
			for _, e := range x {
				check(e, path+"[]")
			}
		case string:
			max, ok := bounds[path]
			if !ok {
				return
			}
			seen[path] = true
			for _, p := range copiedFromSpec {
				if strings.HasPrefix(path, p) {
					return
				}
			}
			if n := utf8.RuneCountInString(x); int64(n) > max {
				t.Errorf("%s: %d characters after clampStatus, the CRD allows %d", path, n, max)
			}
		}
	}
	check(doc, "status")
	for p := range bounds {
		if !seen[p] {
			t.Errorf("%s is bounded in the CRD but the filled status has no such string", p)
		}
	}
}

// fill sets every string reachable from v to s, allocating pointers and
// giving every slice one element.
func fill(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Pointer:
		if v.Type().Elem().PkgPath() == "time" || v.Type().Elem().Name() == "Time" {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), s)
	case reflect.Struct:
		if v.Type().Name() == "Time" {
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), s)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), s)
	}
}
