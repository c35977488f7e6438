package plan

import (
	"encoding/json"
	"testing"

	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// succeededThenFinished is a Succeeded rollout whose spec names the canary
// as stable, without a canary: the Git change of the finish.
func succeededThenFinished() *rolloutsv1.ModelRollout {
	ro := atStep(testRollout(), 2, 5*60*60*1e9)
	ro.Status.Phase = rolloutsv1.PhaseSucceeded
	ro.Status.CanaryWeight = 100
	ro.Status.Stable = ro.Spec.Stable.DeepCopy()
	ro.Spec.Stable = *ro.Spec.Canary
	ro.Spec.Canary = nil
	return ro
}

func TestPlanFinish(t *testing.T) {
	// The route still lists the old stable at 0: it is to be removed.
	ro := succeededThenFinished()
	d := Plan(ro, Observation{Found: routesAt(100)})
	expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
	expect(t, len(d.Status.Removing), 1)
	expect(t, d.Status.Removing[0].Name, "vllm-gpt4-v1")
	expect(t, len(d.Routes.Remove), 1)
	expect(t, d.Routes.Stable.Name, "vllm-gpt4-v2")
	expect(t, d.Routes.HoldStable, true)
	expect(t, hasEvent(d, "Finished"), true)
	expect(t, len(d.Events), 1)

	// Once the route shows it, Idle, quietly.
	next := ro.DeepCopy()
	next.Status = d.Status
	gone := routesAt(100)
	gone[0].Route.Spec.Rules[0].BackendRefs = gone[0].Route.Spec.Rules[0].BackendRefs[1:]
	d = Plan(next, Observation{Found: gone})
	expect(t, d.Status.Phase, rolloutsv1.PhaseIdle)
	expect(t, len(d.Status.Removing), 0)
	expect(t, d.Routes.Holds(), false)
	expect(t, len(d.Events), 0)

	// A canary that does not hold all traffic is not a finish: the old
	// stable is retired (held at 0), not removed.
	mid := succeededThenFinished()
	mid.Status.Phase = rolloutsv1.PhaseProgressing
	mid.Status.CanaryWeight = 50
	d = Plan(mid, Observation{Found: routesAt(50)})
	expect(t, len(d.Status.Removing), 0)
	expect(t, len(d.Status.Retiring), 1)
	expect(t, hasEvent(d, "Finished"), false)
}

func TestWeightOpsRemove(t *testing.T) {
	route := &gatewayv1.HTTPRoute{}
	route.Namespace = "ai"
	route.Spec.Rules = []gatewayv1.HTTPRouteRule{
		{BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("vllm-gpt4-v1", 0), backendRef("vllm-gpt4-v2", 90), backendRef("other", 10)}},
		{BackendRefs: []gatewayv1.HTTPBackendRef{backendRef("vllm-gpt4-v1", 1)}},
	}
	w := Weights{Stable: rolloutsv1.BackendRef{Name: "vllm-gpt4-v2", Port: ptr.To[int32](8000)}, HoldStable: true,
		Remove: []rolloutsv1.BackendRef{{Name: "vllm-gpt4-v1", Port: ptr.To[int32](8000)}}}
	ops, _ := WeightOps(route, []int{0, 1}, w)
	got, _ := json.Marshal(ops)
	// The weight first, at the positions before the removal; rule 1 would
	// be left without a backend and keeps its only one; "other" is not
	// touched.
	want := `[{"op":"add","path":"/spec/rules/0/backendRefs/1/weight","value":100},{"op":"remove","path":"/spec/rules/0/backendRefs/0"}]`
	expect(t, string(got), want)
}
