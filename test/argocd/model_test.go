package argocd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/itchyny/gojq"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"
)

// lastAppliedKey is where `kubectl apply` (Argo CD's default sync) keeps the
// configuration it applied last.
const lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"

// ignoreEntry is one element of an Application's spec.ignoreDifferences.
type ignoreEntry struct {
	Group, Kind, Name, Namespace string
	JQPathExpressions            []string
	JSONPointers                 []string
}

// matches tells whether the entry applies to obj: group and kind match (Argo
// CD allows globs there; these entries use exact values or "*"), name and
// namespace are empty or equal.
func (e ignoreEntry) matches(obj map[string]any) bool {
	apiVersion, _ := obj["apiVersion"].(string)
	group := ""
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		group = apiVersion[:i]
	}
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	glob := func(pattern, s string) bool {
		ok, err := path.Match(pattern, s)
		return err == nil && ok
	}
	return glob(e.Group, group) && glob(e.Kind, kind) &&
		(e.Name == "" || e.Name == name) && (e.Namespace == "" || e.Namespace == ns)
}

// normalizer is the ignoreDifferences of one Application.
type normalizer []ignoreEntry

// normalize returns a copy of obj without the ignored fields. A pointer
// that does not resolve, or an expression that fails, is skipped, as Argo
// CD does; empty objects and arrays left behind are pruned when any entry
// applied.
func (n normalizer) normalize(t testing.TB, obj map[string]any) map[string]any {
	t.Helper()
	out := deepCopy(t, obj)
	if out == nil {
		return nil
	}
	applied := false
	for _, e := range n {
		if !e.matches(out) {
			continue
		}
		applied = true
		for _, p := range e.JSONPointers {
			ops, err := json.Marshal([]map[string]string{{"op": "remove", "path": p}})
			if err != nil {
				t.Fatal(err)
			}
			patch, err := jsonpatch.DecodePatch(ops)
			if err != nil {
				t.Fatalf("json pointer %q: %v", p, err)
			}
			doc, err := patch.Apply(toJSON(t, out))
			if err != nil {
				continue // e.g. a position the object does not have
			}
			out = fromJSON(t, doc)
		}
		for _, expr := range e.JQPathExpressions {
			q, err := gojq.Parse("del(" + expr + ")")
			if err != nil {
				t.Fatalf("jq path %q: %v", expr, err)
			}
			code, err := gojq.Compile(q)
			if err != nil {
				t.Fatalf("jq path %q: %v", expr, err)
			}
			iter := code.Run(out)
			v, ok := iter.Next()
			if !ok {
				continue
			}
			if _, isErr := v.(error); isErr {
				continue
			}
			if _, more := iter.Next(); more {
				continue // Argo CD rejects an expression with several results
			}
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			out = fromJSON(t, toJSON(t, m))
		}
	}
	if applied {
		pruneEmpty(out)
	}
	return out
}

// pruneEmpty removes empty objects and arrays, and empty objects inside
// arrays, as Argo CD does after normalizing.
func pruneEmpty(obj map[string]any) {
	for k, v := range obj {
		switch x := v.(type) {
		case map[string]any:
			pruneEmpty(x)
			if len(x) == 0 {
				delete(obj, k)
			}
		case []any:
			kept := make([]any, 0, len(x))
			for _, item := range x {
				if m, ok := item.(map[string]any); ok {
					pruneEmpty(m)
					if len(m) == 0 {
						continue
					}
				}
				kept = append(kept, item)
			}
			if len(kept) == 0 {
				delete(obj, k)
			} else {
				obj[k] = kept
			}
		}
	}
}

// comparison is Argo CD's verdict on one resource.
type comparison struct {
	OutOfSync bool
	// PredictedLive and Live are what Argo CD's diff view shows (normalized).
	PredictedLive, Live string
}

func (c comparison) String() string {
	if !c.OutOfSync {
		return "Synced"
	}
	return fmt.Sprintf("OutOfSync:\n  live:      %s\n  predicted: %s", c.Live, c.PredictedLive)
}

// compare compares the Git manifest with the live object the way Argo CD's
// default (client-side apply) diff does for a custom resource: normalize all
// three, drop from live what the last-applied configuration lacks (the
// server's defaults, the operator's annotation, status...), compute the
// three-way JSON merge patch and report OutOfSync when it would change live.
// Without a last-applied configuration, Git stands in for it.
func (n normalizer) compare(t testing.TB, git, live map[string]any) comparison {
	t.Helper()
	config := n.normalize(t, stripForDiff(t, git))
	liveN := n.normalize(t, stripForDiff(t, live))
	orig := config
	if raw := annotation(live, lastAppliedKey); raw != "" {
		orig = n.normalize(t, stripForDiff(t, fromJSON(t, []byte(raw))))
	}
	orig, config = withoutNamespace(t, orig), withoutNamespace(t, config)
	trimmed := removeMapFields(orig, liveN)
	patch, err := jsonmergepatch.CreateThreeWayJSONMergePatch(toJSON(t, orig), toJSON(t, config), toJSON(t, trimmed))
	if err != nil {
		t.Fatalf("three-way merge patch: %v", err)
	}
	liveJSON := toJSON(t, liveN)
	predicted, err := jsonpatch.MergePatch(liveJSON, patch)
	if err != nil {
		t.Fatalf("apply the merge patch: %v", err)
	}
	predicted = toJSON(t, fromJSON(t, predicted)) // canonical key order
	return comparison{OutOfSync: !bytes.Equal(predicted, liveJSON), PredictedLive: string(predicted), Live: string(liveJSON)}
}

// syncTarget is what a sync applies with RespectIgnoreDifferences=true: the
// normalized Git manifest, patched with the merge patch that turns the
// normalized live object (without status) back into the live object, so the
// ignored live values are carried over. For an HTTPRoute the lists have no
// merge key (atomic lists), so the strategic merge patch Argo CD computes
// from the CRD schema replaces them whole, like this JSON merge patch.
func (n normalizer) syncTarget(t testing.TB, git, live map[string]any) map[string]any {
	t.Helper()
	liveNoStatus := withoutServerFields(t, live)
	delete(liveNoStatus, "status")
	patch, err := jsonpatch.CreateMergePatch(toJSON(t, n.normalize(t, liveNoStatus)), toJSON(t, liveNoStatus))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonpatch.MergePatch(toJSON(t, n.normalize(t, git)), patch)
	if err != nil {
		t.Fatal(err)
	}
	return fromJSON(t, out)
}

// withoutServerFields drops the metadata only the API server writes, which
// neither Argo CD's sync nor kubectl apply sends.
func withoutServerFields(t testing.TB, obj map[string]any) map[string]any {
	out := deepCopy(t, obj)
	if meta, ok := out["metadata"].(map[string]any); ok {
		for _, k := range []string{"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"} {
			delete(meta, k)
		}
		if a, ok := meta["annotations"].(map[string]any); ok {
			delete(a, lastAppliedKey)
		}
	}
	return out
}

// stripForDiff drops what Argo CD's diff never compares for these objects.
func stripForDiff(t testing.TB, obj map[string]any) map[string]any {
	out := deepCopy(t, obj)
	if meta, ok := out["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	return out
}

// withoutNamespace drops metadata.namespace and an empty annotation map, as
// Argo CD does for the Git and last-applied objects.
func withoutNamespace(t testing.TB, obj map[string]any) map[string]any {
	out := deepCopy(t, obj)
	if meta, ok := out["metadata"].(map[string]any); ok {
		delete(meta, "namespace")
		if a, ok := meta["annotations"].(map[string]any); ok && len(a) == 0 {
			delete(meta, "annotations")
		}
		if meta["annotations"] == nil {
			delete(meta, "annotations")
		}
	}
	return out
}

// removeMapFields keeps only the fields of live that config also has,
// recursing into objects and, element by element, into arrays; live array
// elements past the end of config's are kept, so they show in the diff.
func removeMapFields(config, live map[string]any) map[string]any {
	out := map[string]any{}
	for k, c := range config {
		l, ok := live[k]
		if !ok {
			continue
		}
		out[k] = removeFields(c, l)
	}
	return out
}

func removeFields(config, live any) any {
	switch c := config.(type) {
	case map[string]any:
		if l, ok := live.(map[string]any); ok {
			return removeMapFields(c, l)
		}
	case []any:
		if l, ok := live.([]any); ok {
			out := make([]any, 0, len(l))
			for i, item := range l {
				if i < len(c) && item != nil {
					item = removeFields(c[i], item)
				}
				out = append(out, item)
			}
			return out
		}
	}
	return live
}

// applyPatch returns the merge patch `kubectl apply` sends to bring live to
// manifest (client-side apply of a custom resource), recording manifest as
// the new last-applied configuration.
func applyPatch(t testing.TB, manifest, live map[string]any) []byte {
	t.Helper()
	modified := withLastApplied(t, manifest)
	original := []byte("{}")
	if raw := annotation(live, lastAppliedKey); raw != "" {
		original = []byte(raw)
	}
	patch, err := jsonmergepatch.CreateThreeWayJSONMergePatch(original, toJSON(t, modified), toJSON(t, live))
	if err != nil {
		t.Fatalf("kubectl apply patch: %v", err)
	}
	return patch
}

// withLastApplied returns manifest with the last-applied annotation kubectl
// apply writes: the manifest itself, without that annotation.
func withLastApplied(t testing.TB, manifest map[string]any) map[string]any {
	t.Helper()
	clean := deepCopy(t, manifest)
	meta := clean["metadata"].(map[string]any)
	if a, ok := meta["annotations"].(map[string]any); ok {
		delete(a, lastAppliedKey)
		if len(a) == 0 {
			delete(meta, "annotations")
		}
	}
	out := deepCopy(t, clean)
	meta = out["metadata"].(map[string]any)
	a, _ := meta["annotations"].(map[string]any)
	if a == nil {
		a = map[string]any{}
	}
	a[lastAppliedKey] = string(toJSON(t, clean))
	meta["annotations"] = a
	return out
}

func annotation(obj map[string]any, key string) string {
	meta, _ := obj["metadata"].(map[string]any)
	a, _ := meta["annotations"].(map[string]any)
	s, _ := a[key].(string)
	return s
}

func toJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fromJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func deepCopy(t testing.TB, m map[string]any) map[string]any {
	t.Helper()
	if m == nil {
		return nil
	}
	return fromJSON(t, toJSON(t, m))
}
