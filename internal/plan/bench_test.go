package plan

import (
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// BenchmarkPlan measures one decision for a rollout in the middle of a
// gated step, against a deep copy of the same object as the baseline: the
// "copy-ratio" metric says how many object copies one decision costs.
func BenchmarkPlan(b *testing.B) {
	ro := withGates(atStep(testRollout(), 1, 10*time.Minute))
	ro.Spec.Analysis.Gates = append(ro.Spec.Analysis.Gates,
		rolloutsv1.Gate{Name: "latency", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-e2e-latency-p99", Max: ptr.To(30.0)}},
		rolloutsv1.Gate{Name: "ttft", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-ttft-p99", Max: ptr.To(2.0)}})
	for _, g := range ro.Spec.Analysis.Gates {
		gs := rolloutsv1.GateStatus{Name: g.Name, Verdict: rolloutsv1.VerdictPass, LastEvaluatedAt: mt(t0.Add(-30 * time.Second))}
		for range 10 {
			gs.History = append(gs.History, rolloutsv1.GateMeasurement{At: *mt(t0), Value: "0.01", Verdict: rolloutsv1.VerdictPass})
		}
		ro.Status.Gates = append(ro.Status.Gates, gs)
	}
	obs := Observation{Now: t0, Found: routesAt(50, 50)}

	copyStart := time.Now()
	const copies = 2000
	for range copies {
		_ = ro.DeepCopy()
	}
	perCopy := time.Since(copyStart) / copies

	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Plan(ro, obs)
	}
	b.StopTimer()
	perPlan := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perPlan)/float64(perCopy), "copy-ratio")
}

// BenchmarkWeightOps measures computing the patch for the seed's header
// routing route, and reports how many bytes the patch sends compared with
// the whole route: the JSON patch names only weights.
func BenchmarkWeightOps(b *testing.B) {
	route, doc := loadRoute(b, "header-routing.yaml")
	rules, _ := ManagedRules(route, rolloutsv1.RouteTarget{}, stableRef, "gpt4")
	w := Weights{Stable: stableRef, Canary: &canaryRef, CanaryWeight: 25}
	ops, _ := WeightOps(route, rules, w)
	body, err := PatchBody(route.ResourceVersion, ops)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		WeightOps(route, rules, w)
	}
	b.ReportMetric(float64(len(body))/float64(len(doc)), "patch/route-bytes")
}
