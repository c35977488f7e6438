package controllers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Routes are changed with RFC 6902 JSON patches that name only the weight of
// each managed backendRef (and, when a rule has no canary yet, append one
// backendRef). Every other field is left exactly as stored, including fields
// this controller's Gateway API types do not know. The first operation tests
// metadata.resourceVersion, so a patch computed from a stale copy fails
// instead of overwriting a concurrent edit.

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// weights is what a managed rule must carry.
type weights struct {
	Stable rolloutsv1.BackendRef
	Canary rolloutsv1.BackendRef
	// CanaryWeight in percent; the stable backend gets 100 - CanaryWeight.
	CanaryWeight int32
	// Retire lists backends to hold at weight 0.
	Retire []rolloutsv1.BackendRef
	// RetireOnly skips stable and canary and only retires.
	RetireOnly bool
}

// refMatches says whether an HTTPRoute backendRef names the backend.
func refMatches(ref gatewayv1.BackendObjectReference, routeNamespace string, b rolloutsv1.BackendRef) bool {
	group := ""
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	kind := "Service"
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	if group != b.Group || kind != string(b.KindOrDefault()) || string(ref.Name) != b.Name {
		return false
	}
	if ref.Namespace != nil && string(*ref.Namespace) != routeNamespace {
		return false
	}
	if ref.Port != nil && b.Port != nil && int32(*ref.Port) != *b.Port {
		return false
	}
	return true
}

func ruleReferences(route *gatewayv1.HTTPRoute, rule gatewayv1.HTTPRouteRule, b rolloutsv1.BackendRef) bool {
	return slices.ContainsFunc(rule.BackendRefs, func(r gatewayv1.HTTPBackendRef) bool {
		return refMatches(r.BackendObjectReference, route.Namespace, b)
	})
}

// managedRules returns the indexes of the rules the rollout manages in the
// route: the named rules, or every rule that references the stable backend.
func managedRules(route *gatewayv1.HTTPRoute, target rolloutsv1.RouteTarget, stable rolloutsv1.BackendRef) ([]int, *problem) {
	var idx []int
	if len(target.Rules) > 0 {
		for _, want := range target.Rules {
			i := slices.IndexFunc(route.Spec.Rules, func(r gatewayv1.HTTPRouteRule) bool {
				return r.Name != nil && string(*r.Name) == string(want)
			})
			if i < 0 {
				return nil, &problem{Reason: rolloutsv1.ReasonRuleNotFound,
					Message: fmt.Sprintf("HTTPRoute %s has no rule named %q", route.Name, want)}
			}
			if !ruleReferences(route, route.Spec.Rules[i], stable) {
				return nil, &problem{Reason: rolloutsv1.ReasonStableNotReferenced,
					Message: fmt.Sprintf("rule %q of HTTPRoute %s does not reference the stable backend %s", want, route.Name, stable.String())}
			}
			idx = append(idx, i)
		}
		slices.Sort(idx)
		return idx, nil
	}
	for i, rule := range route.Spec.Rules {
		if ruleReferences(route, rule, stable) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, &problem{Reason: rolloutsv1.ReasonStableNotReferenced,
			Message: fmt.Sprintf("no rule of HTTPRoute %s references the stable backend %s", route.Name, stable.String())}
	}
	return idx, nil
}

// ruleLabel names a rule in messages: its name, or its index.
func ruleLabel(route *gatewayv1.HTTPRoute, i int) string {
	if n := route.Spec.Rules[i].Name; n != nil && *n != "" {
		return fmt.Sprintf("rule %q", string(*n))
	}
	return fmt.Sprintf("rule %d", i)
}

func refWeight(r gatewayv1.HTTPBackendRef) int32 {
	if r.Weight == nil {
		return 1 // the Gateway API default
	}
	return *r.Weight
}

// weightOps returns the patch operations that bring the managed rules of the
// route to the wanted weights, and a description of each change. No
// operations means the route is already right.
func weightOps(route *gatewayv1.HTTPRoute, rules []int, w weights) ([]patchOp, []string) {
	var ops []patchOp
	var changes []string
	set := func(i, j int, want int32) {
		ref := route.Spec.Rules[i].BackendRefs[j]
		if ref.Weight != nil && *ref.Weight == want {
			return
		}
		ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("/spec/rules/%d/backendRefs/%d/weight", i, j), Value: want})
		changes = append(changes, fmt.Sprintf("%s %s %d -> %d", ruleLabel(route, i), ref.Name, refWeight(ref), want))
	}
	for _, i := range rules {
		rule := route.Spec.Rules[i]
		hasCanary := false
		for j, ref := range rule.BackendRefs {
			switch {
			case slices.ContainsFunc(w.Retire, func(b rolloutsv1.BackendRef) bool {
				return refMatches(ref.BackendObjectReference, route.Namespace, b)
			}):
				set(i, j, 0)
			case w.RetireOnly:
			case refMatches(ref.BackendObjectReference, route.Namespace, w.Stable):
				set(i, j, 100-w.CanaryWeight)
			case refMatches(ref.BackendObjectReference, route.Namespace, w.Canary):
				hasCanary = true
				set(i, j, w.CanaryWeight)
			}
		}
		if !hasCanary && !w.RetireOnly && w.CanaryWeight > 0 {
			ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("/spec/rules/%d/backendRefs/-", i), Value: newBackendRef(w.Canary, w.CanaryWeight)})
			changes = append(changes, fmt.Sprintf("%s %s added at %d", ruleLabel(route, i), w.Canary.Name, w.CanaryWeight))
		}
	}
	return ops, changes
}

// newBackendRef is the backendRef appended for a canary, with the defaults
// written out as the API server would store them.
func newBackendRef(b rolloutsv1.BackendRef, weight int32) map[string]any {
	ref := map[string]any{
		"group":  b.Group,
		"kind":   string(b.KindOrDefault()),
		"name":   b.Name,
		"weight": weight,
	}
	if b.Port != nil {
		ref["port"] = *b.Port
	}
	return ref
}

// canaryWeightOf reports the weight the canary has in the first managed rule
// of the route, or -1 when the rule has no canary backendRef.
func canaryWeightOf(route *gatewayv1.HTTPRoute, rules []int, canary rolloutsv1.BackendRef) int32 {
	for _, i := range rules {
		for _, ref := range route.Spec.Rules[i].BackendRefs {
			if refMatches(ref.BackendObjectReference, route.Namespace, canary) {
				return refWeight(ref)
			}
		}
	}
	return -1
}

// ruleCanaryWeights reports, for each managed rule, the canary weight when
// the stable backendRefs carry 100 minus it, or -1 otherwise. A rule without
// a canary backendRef has canary weight 0.
func ruleCanaryWeights(route *gatewayv1.HTTPRoute, rules []int, stable, canary rolloutsv1.BackendRef) []int32 {
	out := make([]int32, 0, len(rules))
	for _, i := range rules {
		c := int32(0)
		for _, ref := range route.Spec.Rules[i].BackendRefs {
			if refMatches(ref.BackendObjectReference, route.Namespace, canary) {
				c = refWeight(ref)
			}
		}
		for _, ref := range route.Spec.Rules[i].BackendRefs {
			if refMatches(ref.BackendObjectReference, route.Namespace, stable) && refWeight(ref) != 100-c {
				c = -1
			}
		}
		out = append(out, c)
	}
	return out
}

// patchBody renders the operations behind a resourceVersion test.
func patchBody(resourceVersion string, ops []patchOp) ([]byte, error) {
	all := append([]patchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: resourceVersion}}, ops...)
	return json.Marshal(all)
}

func describeChanges(changes []string) string {
	return strings.Join(changes, ", ")
}
