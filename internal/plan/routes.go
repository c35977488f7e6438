package plan

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// managedRoute is a route found in the cache with the rules the rollout
// manages in it.
type ManagedRoute struct {
	Route *gatewayv1.HTTPRoute
	Rules []int
}

func DerefPort(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// readyEndpoints counts the ready, non-terminating endpoints that serve the
// Service port.
func ReadyEndpoints(slices []discoveryv1.EndpointSlice, port *corev1.ServicePort) int {
	n := 0
	for _, s := range slices {
		if !slicePortMatches(s, port) {
			continue
		}
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			terminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			if ready && !terminating {
				n++
			}
		}
	}
	return n
}

// slicePortMatches says whether an EndpointSlice carries the Service port:
// EndpointSlice ports are named after the Service port they serve.
func slicePortMatches(s discoveryv1.EndpointSlice, port *corev1.ServicePort) bool {
	if len(s.Ports) == 0 {
		return true
	}
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name == port.Name {
			return true
		}
	}
	return false
}

// patchOp is one RFC 6902 operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// weights is what every managed rule must carry. The decision derives it
// from status alone (intentOf), so a restarted controller, or a retry after
// a failed write, brings the routes to the same place.
type Weights struct {
	Stable rolloutsv1.BackendRef
	// Canary, when set, is held at CanaryWeight and the stable backend at
	// 100 - CanaryWeight. A rule without a canary backendRef gets one
	// appended when CanaryWeight > 0.
	Canary       *rolloutsv1.BackendRef
	CanaryWeight int32
	// HoldStable holds the stable backend at 100 while no canary is held: a
	// removed or replaced canary is being retired.
	HoldStable bool
	// Retire lists backends held at weight 0.
	Retire []rolloutsv1.BackendRef
	// Remove lists backends whose backendRefs are removed from the managed
	// rules (the old stable, at the finish of a rollout). A backendRef is
	// removed only from a rule that keeps another one, so that no rule is
	// ever left without a backend.
	Remove []rolloutsv1.BackendRef
}

// holds says whether the weights name anything to hold.
func (w Weights) Holds() bool {
	return w.Canary != nil || w.HoldStable || len(w.Retire) > 0 || len(w.Remove) > 0
}

// intentOf is what the routes must carry for a status: stable and canary
// once the first step has started (and while the rollout is Succeeded or
// RolledBack), every retiring backend at 0, and the stable at 100 while a
// retirement runs without a held canary.
func IntentOf(st *rolloutsv1.ModelRolloutStatus) Weights {
	if st.Stable == nil {
		return Weights{}
	}
	w := Weights{Stable: *st.Stable, Retire: st.Retiring, Remove: st.Removing}
	started := st.CurrentStepIndex != nil || st.Phase == rolloutsv1.PhaseSucceeded || st.Phase == rolloutsv1.PhaseRolledBack
	if st.Canary != nil && started {
		c := *st.Canary
		w.Canary = &c
		w.CanaryWeight = st.CanaryWeight
	} else if len(st.Retiring) > 0 || len(st.Removing) > 0 {
		w.HoldStable = true
	}
	return w
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
// route, the named rules or every rule that references the stable backend,
// and a problem for each rule it should manage but cannot: a named rule that
// is missing or no longer references the stable backend, or a rule this
// rollout owns (rule-owners annotation) that no longer does. The rules that
// resolve are returned even when others do not, so a rollback still reaches
// them.
func ManagedRules(route *gatewayv1.HTTPRoute, target rolloutsv1.RouteTarget, stable rolloutsv1.BackendRef, rollout string) ([]int, []Problem) {
	var idx []int
	var problems []Problem
	if len(target.Rules) > 0 {
		for _, want := range target.Rules {
			i := slices.IndexFunc(route.Spec.Rules, func(r gatewayv1.HTTPRouteRule) bool {
				return r.Name != nil && string(*r.Name) == string(want)
			})
			if i < 0 {
				problems = append(problems, Problem{Reason: rolloutsv1.ReasonRuleNotFound,
					Message: fmt.Sprintf("HTTPRoute %s has no rule named %q", route.Name, want)})
				continue
			}
			if !ruleReferences(route, route.Spec.Rules[i], stable) {
				problems = append(problems, Problem{Reason: rolloutsv1.ReasonStableNotReferenced,
					Message: fmt.Sprintf("rule %q of HTTPRoute %s does not reference the stable backend %s", want, route.Name, stable.String())})
				continue
			}
			idx = append(idx, i)
		}
		slices.Sort(idx)
		return idx, problems
	}
	keys := map[string]bool{}
	for i, rule := range route.Spec.Rules {
		if ruleReferences(route, rule, stable) {
			idx = append(idx, i)
			keys[RuleKey(route, i)] = true
		}
	}
	owned := []string{}
	for k, owner := range RuleOwners(route) {
		if owner == rollout && !keys[k] {
			owned = append(owned, k)
		}
	}
	slices.Sort(owned)
	for _, k := range owned {
		problems = append(problems, Problem{Reason: rolloutsv1.ReasonStableNotReferenced,
			Message: fmt.Sprintf("rule %s of HTTPRoute %s, managed by this rollout, no longer references the stable backend %s", k, route.Name, stable.String())})
	}
	if len(idx) == 0 && len(problems) == 0 {
		problems = append(problems, Problem{Reason: rolloutsv1.ReasonStableNotReferenced,
			Message: fmt.Sprintf("no rule of HTTPRoute %s references the stable backend %s", route.Name, stable.String())})
	}
	return idx, problems
}

// ruleLabel names a rule in messages: its name, or its index.
func RuleLabel(route *gatewayv1.HTTPRoute, i int) string {
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
func WeightOps(route *gatewayv1.HTTPRoute, rules []int, w Weights) ([]PatchOp, []string) {
	var ops []PatchOp
	var changes []string
	set := func(i, j int, want int32) {
		ref := route.Spec.Rules[i].BackendRefs[j]
		if ref.Weight != nil && *ref.Weight == want {
			return
		}
		ops = append(ops, PatchOp{Op: "add", Path: fmt.Sprintf("/spec/rules/%d/backendRefs/%d/weight", i, j), Value: want})
		changes = append(changes, fmt.Sprintf("%s %s %d -> %d", RuleLabel(route, i), ref.Name, refWeight(ref), want))
	}
	for _, i := range rules {
		rule := route.Spec.Rules[i]
		hasCanary := false
		var remove []int
		for j, ref := range rule.BackendRefs {
			switch {
			case slices.ContainsFunc(w.Remove, func(b rolloutsv1.BackendRef) bool {
				return refMatches(ref.BackendObjectReference, route.Namespace, b)
			}):
				remove = append(remove, j)
			case slices.ContainsFunc(w.Retire, func(b rolloutsv1.BackendRef) bool {
				return refMatches(ref.BackendObjectReference, route.Namespace, b)
			}):
				set(i, j, 0)
			case refMatches(ref.BackendObjectReference, route.Namespace, w.Stable):
				switch {
				case w.Canary != nil:
					set(i, j, 100-w.CanaryWeight)
				case w.HoldStable:
					set(i, j, 100)
				}
			case w.Canary != nil && refMatches(ref.BackendObjectReference, route.Namespace, *w.Canary):
				hasCanary = true
				set(i, j, w.CanaryWeight)
			}
		}
		if !hasCanary && w.Canary != nil && w.CanaryWeight > 0 {
			ops = append(ops, PatchOp{Op: "add", Path: fmt.Sprintf("/spec/rules/%d/backendRefs/-", i), Value: newBackendRef(*w.Canary, w.CanaryWeight)})
			changes = append(changes, fmt.Sprintf("%s %s added at %d", RuleLabel(route, i), w.Canary.Name, w.CanaryWeight))
		}
		if len(remove) > 0 && len(remove) < len(rule.BackendRefs) {
			// After the weight operations, which name positions before the
			// removal; from the last position down, so each index still
			// names the backendRef it was computed for.
			for k := len(remove) - 1; k >= 0; k-- {
				j := remove[k]
				ops = append(ops, PatchOp{Op: "remove", Path: fmt.Sprintf("/spec/rules/%d/backendRefs/%d", i, j)})
				changes = append(changes, fmt.Sprintf("%s %s removed", RuleLabel(route, i), rule.BackendRefs[j].Name))
			}
		}
	}
	return ops, changes
}

// ruleKey identifies a rule in the rule-owners annotation: its name, or
// "#<index>" when it has none.
func RuleKey(route *gatewayv1.HTTPRoute, i int) string {
	if n := route.Spec.Rules[i].Name; n != nil && *n != "" {
		return string(*n)
	}
	return "#" + strconv.Itoa(i)
}

// ruleOwners reads the rule-owners annotation of a route. A value that does
// not parse counts as no owners, and is rewritten by the next claim.
func RuleOwners(route *gatewayv1.HTTPRoute) map[string]string {
	return jsonAnnotation(route, rolloutsv1.AnnotationRuleOwners)
}

// ownerOps returns the operations that make the route's annotations say
// what rollout holds: the rule-owners annotation names it for the rules in
// claim and for no other rule, and the applied-weights annotation records
// the weights it writes (applied), or nothing of it when it claims no rule.
// No operations means the annotations are already right.
func OwnerOps(route *gatewayv1.HTTPRoute, rollout string, claim []int, applied string) []PatchOp {
	owners := map[string]string{}
	for k, v := range RuleOwners(route) {
		if v != rollout {
			owners[k] = v
		}
	}
	for _, i := range claim {
		owners[RuleKey(route, i)] = rollout
	}
	weights := AppliedWeights(route)
	delete(weights, rollout)
	if len(claim) > 0 && applied != "" {
		weights[rollout] = applied
	}
	return annotationOps(route, map[string]map[string]string{
		rolloutsv1.AnnotationRuleOwners:     owners,
		rolloutsv1.AnnotationAppliedWeights: weights,
	})
}

// appliedWeights reads the route's applied-weights annotation (rollout ->
// weights); unreadable is empty.
func AppliedWeights(route *gatewayv1.HTTPRoute) map[string]string {
	return jsonAnnotation(route, rolloutsv1.AnnotationAppliedWeights)
}

func jsonAnnotation(route *gatewayv1.HTTPRoute, key string) map[string]string {
	m := map[string]string{}
	raw := route.Annotations[key]
	if raw == "" {
		return m
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return map[string]string{}
	}
	return m
}

// annotationOps returns the operations that set each annotation to its map
// as JSON, or remove it when the map is empty.
func annotationOps(route *gatewayv1.HTTPRoute, want map[string]map[string]string) []PatchOp {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ops []PatchOp
	fresh := map[string]string{} // when the route has no annotations yet
	for _, key := range keys {
		raw, had := route.Annotations[key]
		path := "/metadata/annotations/" + strings.ReplaceAll(key, "/", "~1")
		if len(want[key]) == 0 {
			if had {
				ops = append(ops, PatchOp{Op: "remove", Path: path})
			}
			continue
		}
		body, _ := json.Marshal(want[key]) // map[string]string always marshals; keys sorted
		switch {
		case had && raw == string(body):
		case route.Annotations == nil:
			fresh[key] = string(body)
		default:
			ops = append(ops, PatchOp{Op: "add", Path: path, Value: string(body)})
		}
	}
	if len(fresh) > 0 {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: fresh})
	}
	return ops
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

// patchBody renders the operations with the resourceVersion they were
// computed from. The API server then applies them only to that version and
// answers 409 Conflict otherwise, which tells a stale copy (retry) apart
// from a rejected change (422 Invalid, 403 Forbidden from a policy).
func PatchBody(resourceVersion string, ops []PatchOp) ([]byte, error) {
	all := append([]PatchOp{{Op: "replace", Path: "/metadata/resourceVersion", Value: resourceVersion}}, ops...)
	return json.Marshal(all)
}

func DescribeChanges(changes []string) string {
	return strings.Join(changes, ", ")
}

// droppedWeights is what the rules of a route removed from spec.routes
// return to: all traffic on the stable backend of the status, the canary
// and every retiring backend at 0. Nothing when the status names no stable.
func DroppedWeights(st *rolloutsv1.ModelRolloutStatus) Weights {
	if st.Stable == nil {
		return Weights{}
	}
	retire := slices.Clone(st.Retiring)
	if st.Canary != nil && !SameRef(*st.Canary, *st.Stable) {
		retire = append(retire, *st.Canary)
	}
	if len(retire) == 0 {
		return Weights{}
	}
	return Weights{Stable: *st.Stable, HoldStable: true, Retire: retire}
}
