package plan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func loadRoute(t testing.TB, file string) (*gatewayv1.HTTPRoute, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "controllers", "testdata", "routes", file))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	route := &gatewayv1.HTTPRoute{}
	if err := json.Unmarshal(doc, route); err != nil {
		t.Fatal(err)
	}
	route.Namespace = "ai"
	return route, doc
}

var (
	stableRef = rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v1", Port: ptr.To[int32](8000)}
	canaryRef = rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v2", Port: ptr.To[int32](8000)}
)

// stripWeights removes every backendRef weight and every canary backendRef,
// leaving what the controller must never change.
func stripWeights(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	for _, r := range spec["rules"].([]any) {
		rule := r.(map[string]any)
		refs, _ := rule["backendRefs"].([]any)
		kept := []any{}
		for _, b := range refs {
			ref := b.(map[string]any)
			delete(ref, "weight")
			if ref["name"] == canaryRef.Name {
				continue
			}
			kept = append(kept, ref)
		}
		rule["backendRefs"] = kept
	}
	return m
}

// weightsOf lists name=weight per rule.
func weightsOf(t *testing.T, doc []byte) [][]string {
	t.Helper()
	route := &gatewayv1.HTTPRoute{}
	if err := json.Unmarshal(doc, route); err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, rule := range route.Spec.Rules {
		var r []string
		for _, b := range rule.BackendRefs {
			w := "unset"
			if b.Weight != nil {
				w = itoa(*b.Weight)
			}
			r = append(r, string(b.Name)+"="+w)
		}
		out = append(out, r)
	}
	return out
}

func itoa(i int32) string { b, _ := json.Marshal(i); return string(b) }

func TestWeightOpsOnSeedRoutes(t *testing.T) {
	tests := []struct {
		file   string
		rules  []rolloutsv1.RuleName
		weight int32
		want   [][]string
	}{
		{
			file: "header-routing.yaml", weight: 10,
			want: [][]string{{"vllm-gpt4-v1=90", "vllm-gpt4-v2=10"}, {"tgi-claude=unset"}, {"vllm-mixtral=unset"}, {"vllm-gpt4-v1=90", "vllm-gpt4-v2=10"}},
		},
		{
			file: "header-routing.yaml", rules: []rolloutsv1.RuleName{"gpt4"}, weight: 25,
			want: [][]string{{"vllm-gpt4-v1=75", "vllm-gpt4-v2=25"}, {"tgi-claude=unset"}, {"vllm-mixtral=unset"}, {"vllm-gpt4-v1=unset"}},
		},
		{
			file: "path-routing.yaml", weight: 10,
			want: [][]string{{"vllm-gpt4-v1=90", "vllm-gpt4-v2=10"}, {"embeddings=unset"}, {"vllm-gpt4-v1=90", "vllm-gpt4-batch=20", "vllm-gpt4-v2=10"}},
		},
		{
			file: "combined-match.yaml", weight: 50,
			want: [][]string{{"vllm-gpt4-dedicated=unset"}, {"vllm-gpt4-v1=50", "vllm-gpt4-v2=50"}},
		},
		{
			file: "ab-test.yaml", weight: 25,
			want: [][]string{{"vllm-gpt4-v1=75", "vllm-gpt4-v2=25"}, {"vllm-gpt4-experiment=unset"}, {"vllm-gpt4-v1=75", "vllm-gpt4-v2=25"}},
		},
		{
			file: "ab-test.yaml", rules: []rolloutsv1.RuleName{"default"}, weight: 100,
			want: [][]string{{"vllm-gpt4-v1=unset"}, {"vllm-gpt4-experiment=unset"}, {"vllm-gpt4-v1=0", "vllm-gpt4-v2=100"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			route, doc := loadRoute(t, tc.file)
			rules, ps := ManagedRules(route, rolloutsv1.RouteTarget{Name: route.Name, Rules: tc.rules}, stableRef, "gpt4")
			if len(ps) != 0 {
				t.Fatalf("managedRules: %v", ps)
			}
			ops, _ := WeightOps(route, rules, Weights{Stable: stableRef, Canary: &canaryRef, CanaryWeight: tc.weight})
			patched := applyOps(t, doc, ops)
			if got := weightsOf(t, patched); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("weights:\n got %v\nwant %v", got, tc.want)
			}
			if !reflect.DeepEqual(stripWeights(t, patched), stripWeights(t, doc)) {
				t.Fatalf("the patch changed more than weights:\n%s", patched)
			}

			// Applying again is a no-op: the controller writes only on change.
			again := &gatewayv1.HTTPRoute{}
			if err := json.Unmarshal(patched, again); err != nil {
				t.Fatal(err)
			}
			if ops, _ := WeightOps(again, rules, Weights{Stable: stableRef, Canary: &canaryRef, CanaryWeight: tc.weight}); len(ops) != 0 {
				t.Fatalf("second pass wants more changes: %+v", ops)
			}
		})
	}
}

func TestManagedRulesProblems(t *testing.T) {
	route, _ := loadRoute(t, "header-routing.yaml")
	reasons := func(ps []Problem) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Reason)
		}
		return out
	}
	rules, ps := ManagedRules(route, rolloutsv1.RouteTarget{Rules: []rolloutsv1.RuleName{"gpt5"}}, stableRef, "gpt4")
	if len(rules) != 0 || !reflect.DeepEqual(reasons(ps), []string{rolloutsv1.ReasonRuleNotFound}) {
		t.Fatalf("missing rule: got %v %+v", rules, ps)
	}
	if _, ps := ManagedRules(route, rolloutsv1.RouteTarget{Rules: []rolloutsv1.RuleName{"claude"}}, stableRef, "gpt4"); !reflect.DeepEqual(reasons(ps), []string{rolloutsv1.ReasonStableNotReferenced}) {
		t.Fatalf("rule without stable: got %+v", ps)
	}
	// Partial: the named rule that resolves is still managed, the other is
	// reported.
	rules, ps = ManagedRules(route, rolloutsv1.RouteTarget{Rules: []rolloutsv1.RuleName{"gpt4", "gpt5"}}, stableRef, "gpt4")
	if !reflect.DeepEqual(rules, []int{0}) || !reflect.DeepEqual(reasons(ps), []string{rolloutsv1.ReasonRuleNotFound}) {
		t.Fatalf("partial: got %v %+v", rules, ps)
	}
	other := rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "nope", Port: ptr.To[int32](8000)}
	if _, ps := ManagedRules(route, rolloutsv1.RouteTarget{}, other, "gpt4"); !reflect.DeepEqual(reasons(ps), []string{rolloutsv1.ReasonStableNotReferenced}) {
		t.Fatalf("route without stable: got %+v", ps)
	}
	wrongPort := stableRef
	wrongPort.Port = ptr.To[int32](9000)
	if _, ps := ManagedRules(route, rolloutsv1.RouteTarget{}, wrongPort, "gpt4"); len(ps) == 0 {
		t.Fatal("a backendRef on another port must not count as the stable backend")
	}

	// A rule this rollout owns that no longer references the stable
	// backend is reported; the others stay managed.
	route.Annotations = map[string]string{rolloutsv1.AnnotationRuleOwners: `{"gpt4":"gpt4","health":"gpt4","claude":"other"}`}
	route.Spec.Rules[3].BackendRefs = route.Spec.Rules[3].BackendRefs[:0]
	rules, ps = ManagedRules(route, rolloutsv1.RouteTarget{}, stableRef, "gpt4")
	if !reflect.DeepEqual(rules, []int{0}) || len(ps) != 1 || !strings.Contains(ps[0].Message, "rule health of HTTPRoute model-header-routing, managed by this rollout, no longer references") {
		t.Fatalf("owned rule lost stable: got %v %+v", rules, ps)
	}
}

func TestRetireAndRollbackOps(t *testing.T) {
	route, doc := loadRoute(t, "ab-test.yaml")
	rules, _ := ManagedRules(route, rolloutsv1.RouteTarget{}, stableRef, "gpt4")

	// Retiring a canary before the next starts: the retired canary is
	// zeroed and the stable holds all traffic.
	ops, _ := WeightOps(route, rules, Weights{Stable: stableRef, HoldStable: true, Retire: []rolloutsv1.BackendRef{canaryRef}})
	patched := applyOps(t, doc, ops)
	want := [][]string{{"vllm-gpt4-v1=100"}, {"vllm-gpt4-experiment=unset"}, {"vllm-gpt4-v1=100", "vllm-gpt4-v2=0"}}
	if got := weightsOf(t, patched); !reflect.DeepEqual(got, want) {
		t.Fatalf("retire:\n got %v\nwant %v", got, want)
	}

	// A rollback holds the canary at 0 and the stable at 100, and never adds
	// a canary backendRef to rules that have none.
	ops, _ = WeightOps(route, rules, Weights{Stable: stableRef, Canary: &canaryRef, CanaryWeight: 0})
	patched = applyOps(t, doc, ops)
	if got := weightsOf(t, patched); !reflect.DeepEqual(got, want) {
		t.Fatalf("rollback:\n got %v\nwant %v", got, want)
	}

	// A canary on a new port retires the backendRef on the old one only.
	newPort := canaryRef
	newPort.Port = ptr.To[int32](8080)
	ops, _ = WeightOps(route, rules, Weights{Stable: stableRef, Canary: &newPort, CanaryWeight: 10, Retire: []rolloutsv1.BackendRef{canaryRef}})
	patched = applyOps(t, doc, ops)
	want = [][]string{{"vllm-gpt4-v1=90", "vllm-gpt4-v2=10"}, {"vllm-gpt4-experiment=unset"}, {"vllm-gpt4-v1=90", "vllm-gpt4-v2=0", "vllm-gpt4-v2=10"}}
	if got := weightsOf(t, patched); !reflect.DeepEqual(got, want) {
		t.Fatalf("port change:\n got %v\nwant %v", got, want)
	}
}

func TestIntentOf(t *testing.T) {
	st := &rolloutsv1.ModelRolloutStatus{}
	if IntentOf(st).Holds() {
		t.Fatal("an Idle status holds nothing")
	}
	st.Stable, st.Canary, st.Phase = &stableRef, &canaryRef, rolloutsv1.PhaseWaiting
	if IntentOf(st).Holds() {
		t.Fatal("a rollout before its first step holds nothing")
	}
	st.Retiring = []rolloutsv1.BackendRef{{Name: "vllm-gpt4-v0", Port: ptr.To[int32](8000)}}
	if w := IntentOf(st); w.Canary != nil || !w.HoldStable || len(w.Retire) != 1 {
		t.Fatalf("a retirement before the first step holds stable at 100: %+v", w)
	}
	st.CurrentStepIndex, st.CanaryWeight = ptr.To[int32](1), 25
	if w := IntentOf(st); w.Canary == nil || w.CanaryWeight != 25 || w.HoldStable || len(w.Retire) != 1 {
		t.Fatalf("a started step holds stable and canary: %+v", w)
	}
}

func TestOwnerOps(t *testing.T) {
	route, doc := loadRoute(t, "header-routing.yaml")
	route.Annotations = nil
	ops := OwnerOps(route, "gpt4", []int{0, 3}, "v1=75, v2=25")
	patched := applyOps(t, doc, ops)
	got := &gatewayv1.HTTPRoute{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	if owners := RuleOwners(got); !reflect.DeepEqual(owners, map[string]string{"gpt4": "gpt4", "health": "gpt4"}) {
		t.Fatalf("claim: %v", owners)
	}
	// The weights written ride in the same patch, on a route that had no
	// annotations at all.
	if w := AppliedWeights(got); !reflect.DeepEqual(w, map[string]string{"gpt4": "v1=75, v2=25"}) {
		t.Fatalf("applied weights: %v", w)
	}
	if len(OwnerOps(got, "gpt4", []int{0, 3}, "v1=75, v2=25")) != 0 {
		t.Fatal("claiming again must be a no-op")
	}
	if ops := OwnerOps(got, "gpt4", []int{0, 3}, "v1=50, v2=50"); len(ops) != 1 {
		t.Fatalf("new weights rewrite only the applied-weights annotation: %v", ops)
	}
	// Another rollout's entries survive a claim and a release.
	got.Annotations[rolloutsv1.AnnotationRuleOwners] = `{"claude":"claude","gpt4":"gpt4","health":"gpt4"}`
	got.Annotations[rolloutsv1.AnnotationAppliedWeights] = `{"claude":"c1=100","gpt4":"v1=75, v2=25"}`
	doc2, _ := json.Marshal(got)
	released := applyOps(t, doc2, OwnerOps(got, "gpt4", nil, ""))
	after := &gatewayv1.HTTPRoute{}
	if err := json.Unmarshal(released, after); err != nil {
		t.Fatal(err)
	}
	if owners := RuleOwners(after); !reflect.DeepEqual(owners, map[string]string{"claude": "claude"}) {
		t.Fatalf("release: %v", owners)
	}
	if w := AppliedWeights(after); !reflect.DeepEqual(w, map[string]string{"claude": "c1=100"}) {
		t.Fatalf("release of applied weights: %v", w)
	}
	// The last release removes the annotations.
	final := applyOps(t, released, OwnerOps(after, "claude", nil, ""))
	after = &gatewayv1.HTTPRoute{}
	if err := json.Unmarshal(final, after); err != nil {
		t.Fatal(err)
	}
	if _, ok := after.Annotations[rolloutsv1.AnnotationRuleOwners]; ok {
		t.Fatal("the annotation must go with its last entry")
	}
	if _, ok := after.Annotations[rolloutsv1.AnnotationAppliedWeights]; ok {
		t.Fatal("the applied-weights annotation must go with its last entry")
	}
	// Unnamed rules are keyed by index.
	unnamed, _ := loadRoute(t, "ab-test.yaml")
	unnamed.Spec.Rules[0].Name = nil
	if k := RuleKey(unnamed, 0); k != "#0" {
		t.Fatalf("unnamed rule key %q", k)
	}
}

func TestPatchBodyPinsResourceVersion(t *testing.T) {
	body, err := PatchBody("42", []PatchOp{{Op: "add", Path: "/spec/rules/0/backendRefs/0/weight", Value: int32(90)}})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"replace","path":"/metadata/resourceVersion","value":"42"},{"op":"add","path":"/spec/rules/0/backendRefs/0/weight","value":90}]`
	if string(body) != want {
		t.Fatalf("got %s", body)
	}
}

func applyOps(t *testing.T, doc []byte, ops []PatchOp) []byte {
	t.Helper()
	body, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(body)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHeaderRouteFor(t *testing.T) {
	user, _ := loadRoute(t, "header-routing.yaml")
	user.Spec.Hostnames = []gatewayv1.Hostname{"llm.example.com"}
	user.Labels["app.kubernetes.io/instance"] = "ai-gateway" // Argo CD's tracking label
	user.Annotations["argocd.argoproj.io/tracking-id"] = "ai:gateway.networking.k8s.io/HTTPRoute:ai/model-header-routing"
	// A filter on the gpt4 rule, and a rule without matches that also
	// references the stable backend.
	user.Spec.Rules[0].Filters = []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-served-by", Value: "gateway"}}}}}
	user.Spec.Rules[3].Matches = nil
	ro := testRollout()
	ro.UID = "uid-1"
	hr := &rolloutsv1.HeaderRouteStatus{Match: rolloutsv1.StepMatch{
		Headers:     []gatewayv1.HTTPHeaderMatch{{Name: "x-ab-test-group", Value: "canary"}},
		QueryParams: []gatewayv1.HTTPQueryParamMatch{{Name: "variant", Value: "b"}},
	}}
	got, skipped := headerRouteFor(ro, hr, canaryRef, ManagedRoute{Route: user, Rules: []int{0, 3}})
	if got == nil || len(skipped) != 0 {
		t.Fatalf("got %v, skipped %v", got, skipped)
	}
	expect(t, got.Name, "model-header-routing-gpt4-match")
	expect(t, got.Namespace, "ai")
	expect(t, len(got.Labels), 2)
	expect(t, got.Labels[rolloutsv1.LabelHeaderRouteOf], "gpt4")
	expect(t, len(got.Annotations), 0)
	expect(t, len(got.OwnerReferences), 1)
	or := got.OwnerReferences[0]
	expect(t, or.Kind+"/"+or.Name+"/"+string(or.UID), "ModelRollout/gpt4/uid-1")
	expect(t, *or.Controller, true)
	if !reflect.DeepEqual(got.Spec.ParentRefs, user.Spec.ParentRefs) || !reflect.DeepEqual(got.Spec.Hostnames, user.Spec.Hostnames) {
		t.Fatalf("parentRefs %v hostnames %v", got.Spec.ParentRefs, got.Spec.Hostnames)
	}
	expect(t, len(got.Spec.Rules), 2)
	gpt4 := got.Spec.Rules[0]
	expect(t, string(*gpt4.Name), "gpt4")
	if !reflect.DeepEqual(gpt4.Timeouts, user.Spec.Rules[0].Timeouts) || !reflect.DeepEqual(gpt4.Filters, user.Spec.Rules[0].Filters) {
		t.Fatalf("timeouts %v filters %v", gpt4.Timeouts, gpt4.Filters)
	}
	expect(t, len(gpt4.Matches), 1)
	m := gpt4.Matches[0]
	expect(t, *m.Path.Value, "/v1/chat/completions")
	expect(t, len(m.Headers), 2)
	expect(t, string(m.Headers[0].Name)+"="+m.Headers[0].Value, "x-model-id=gpt-4")
	expect(t, string(m.Headers[1].Name)+"="+m.Headers[1].Value, "x-ab-test-group=canary")
	expect(t, *m.Headers[1].Type, gatewayv1.HeaderMatchExact)
	expect(t, len(m.QueryParams), 1)
	expect(t, *m.QueryParams[0].Type, gatewayv1.QueryParamMatchExact)
	expect(t, len(gpt4.BackendRefs), 1)
	b := gpt4.BackendRefs[0]
	expect(t, string(b.Name), "vllm-gpt4-v2")
	expect(t, int32(*b.Port), int32(8000))
	expect(t, *b.Weight, int32(1))
	expect(t, string(*b.Kind), "Service")
	// A rule without matches matches every path: the header route's rule
	// is PathPrefix "/" with the step's match.
	health := got.Spec.Rules[1]
	expect(t, *health.Matches[0].Path.Value, "/")
	expect(t, len(health.Matches[0].Headers), 1)
	// The user's route is not changed.
	expect(t, len(user.Spec.Rules[0].Matches[0].Headers), 1)
	expect(t, len(user.Spec.Rules[0].BackendRefs), 1)
}

func TestHeaderRouteForLeavesOutMatchesThatTestTheSameHeader(t *testing.T) {
	user, _ := loadRoute(t, "header-routing.yaml")
	ro := testRollout()
	// The gpt4 rule tests x-model-id: a step matching on X-Model-Id (names
	// are case-insensitive) cannot narrow it.
	hr := &rolloutsv1.HeaderRouteStatus{Match: rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "X-Model-Id", Value: "gpt-4-canary"}}}}
	got, skipped := headerRouteFor(ro, hr, canaryRef, ManagedRoute{Route: user, Rules: []int{0}})
	if got != nil {
		t.Fatalf("got a route %v", got.Spec)
	}
	expect(t, strings.Join(skipped, ";"), `rule "gpt4" match 0 of HTTPRoute model-header-routing`)
	ro.Status.HeaderRoute = hr
	ro.Status.Canary = canaryRef.DeepCopy()
	want, p := DesiredHeaderRoutes(ro, &ro.Status, []ManagedRoute{{Route: user, Rules: []int{0}}})
	expect(t, len(want), 0)
	expect(t, p.Reason, rolloutsv1.ReasonNoMatchForHeaderRoute)
}

func TestHeaderRouteName(t *testing.T) {
	expect(t, headerRouteName("gpt4", "model-header-routing"), "model-header-routing-gpt4-match")
	long := headerRouteName(strings.Repeat("a", 200), strings.Repeat("b", 200))
	expect(t, len(long) <= 253, true)
	expect(t, long != headerRouteName(strings.Repeat("a", 200), strings.Repeat("b", 199)+"c"), true)
}
