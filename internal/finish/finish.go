// Package finish computes the change that finishes a rollout in an HTTPRoute
// manifest: the old stable's backendRefs removed from the managed rules and
// the new stable at weight 100. The operator makes the same change on the
// live route (controllers: status.removing); the kubectl plugin prints it
// for Git (`kubectl modelrollout finish --print`), and test/argocd-upstream checks
// that the two agree.
package finish

import (
	"fmt"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Route returns a copy of route, an HTTPRoute as unstructured content, with
// the backendRefs of oldStable removed from every managed rule and the
// backendRefs of newStable there at weight 100. The managed rules are the
// rules named in rules or, when rules is empty, every rule that references
// newStable; a rule keeps at least one backendRef. Everything else (other
// rules, matches, filters, timeouts, other backends) is left as it is. It
// also returns a description of each change.
func Route(route map[string]any, rules []rolloutsv1.RuleName, oldStable, newStable rolloutsv1.BackendRef) (map[string]any, []string) {
	out := deepCopy(route).(map[string]any)
	ns, _ := nested(out, "metadata")["namespace"].(string)
	spec := nested(out, "spec")
	list, _ := spec["rules"].([]any)
	var changes []string
	for i, r := range list {
		rule, ok := r.(map[string]any)
		if !ok {
			continue
		}
		name, _ := rule["name"].(string)
		refs, _ := rule["backendRefs"].([]any)
		if !managed(name, refs, ns, rules, newStable) {
			continue
		}
		label := fmt.Sprintf("rule %d", i)
		if name != "" {
			label = fmt.Sprintf("rule %q", name)
		}
		kept := make([]any, 0, len(refs))
		var removed []string
		for _, ref := range refs {
			m, _ := ref.(map[string]any)
			if m != nil && matches(m, ns, oldStable) {
				removed = append(removed, fmt.Sprintf("%s: backendRef %s removed", label, oldStable.String()))
				continue
			}
			kept = append(kept, ref)
		}
		if len(kept) == 0 {
			kept = refs
		} else {
			changes = append(changes, removed...)
		}
		for _, ref := range kept {
			if m, _ := ref.(map[string]any); m != nil && matches(m, ns, newStable) && weightOf(m) != 100 {
				m["weight"] = int64(100)
				changes = append(changes, fmt.Sprintf("%s: backendRef %s at weight 100", label, newStable.String()))
			}
		}
		rule["backendRefs"] = kept
	}
	return out, changes
}

func managed(name string, refs []any, ns string, rules []rolloutsv1.RuleName, stable rolloutsv1.BackendRef) bool {
	if len(rules) > 0 {
		found := false
		for _, r := range rules {
			found = found || string(r) == name
		}
		if !found {
			return false
		}
	}
	for _, ref := range refs {
		if m, _ := ref.(map[string]any); m != nil && matches(m, ns, stable) {
			return true
		}
	}
	return false
}

// matches says whether a backendRef names the backend, with the Gateway API
// defaults (core group, kind Service, the route's namespace); a backendRef
// without a port matches any port.
func matches(ref map[string]any, routeNamespace string, b rolloutsv1.BackendRef) bool {
	group, _ := ref["group"].(string)
	kind, _ := ref["kind"].(string)
	if kind == "" {
		kind = "Service"
	}
	name, _ := ref["name"].(string)
	if group != b.Group || kind != string(b.KindOrDefault()) || name != b.Name {
		return false
	}
	if ns, _ := ref["namespace"].(string); ns != "" && ns != routeNamespace {
		return false
	}
	if p, ok := number(ref["port"]); ok && b.Port != nil && p != int64(*b.Port) {
		return false
	}
	return true
}

func weightOf(ref map[string]any) int64 {
	if w, ok := number(ref["weight"]); ok {
		return w
	}
	return 1
}

func number(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case float64:
		return int64(x), true
	}
	return 0, false
}

func nested(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	if v == nil {
		v = map[string]any{}
		m[key] = v
	}
	return v
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
