package controllers

import (
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/equality"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// countReasons counts the rollout's Events with the reason.
func countReasons(ns, name, reason string) func() int {
	return func() int {
		n := 0
		for _, r := range eventReasons(ns, name)() {
			if r == reason {
				n++
			}
		}
		return n
	}
}

var _ = Describe("Finishing a rollout", func() {
	var ns string
	var op *operator
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	It("removes the old stable's backendRef from the managed rules only, goes Idle with the new stable, and takes the next canary", func() {
		before := createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createBackend(ns, "vllm-gpt4-v3", true)
		var writes *routeWriteCounter
		op = startOperator(withRouteWriteCounter(&writes))
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(50, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))

		// The finish: what `kubectl modelrollout finish` and the Git change
		// both do to the rollout.
		mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{
			"stable": map[string]any{"name": "vllm-gpt4-v2", "port": 8000}, "canary": nil}})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseIdle))
		ro := getRollout(ns, "gpt4")
		Expect(ro.Status.Removing).To(BeEmpty())
		Expect(ro.Status.Retiring).To(BeEmpty())

		after := getRoute(ns, "model-header-routing")
		Expect(ruleWeights(after, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v2": 100}), "Idle only once the old stable's backendRef is gone")
		// Nothing else of the route changed: the managed rule keeps its
		// matches, filters and timeouts, the unmanaged "health" rule still
		// sends to vllm-gpt4-v1, and the operator's annotations are gone.
		for i, r := range after.Spec.Rules {
			want := before.Spec.Rules[i]
			if string(*r.Name) == "gpt4" {
				Expect(r.Matches).To(Equal(want.Matches))
				Expect(r.Filters).To(Equal(want.Filters))
				Expect(r.Timeouts).To(Equal(want.Timeouts))
				Expect(r.BackendRefs).To(HaveLen(1))
				Expect(string(r.BackendRefs[0].Name)).To(Equal("vllm-gpt4-v2"))
				continue
			}
			Expect(equality.Semantic.DeepEqual(r.BackendRefs, want.BackendRefs)).To(BeTrue(), "rule %s untouched", string(*r.Name))
		}
		Expect(slices.ContainsFunc(after.Spec.Rules, func(r gatewayv1.HTTPRouteRule) bool {
			return string(*r.Name) == "health" && string(r.BackendRefs[0].Name) == "vllm-gpt4-v1"
		})).To(BeTrue())
		Expect(after.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationRuleOwners))
		Expect(after.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationAppliedWeights))
		Expect(after.Annotations).To(HaveKeyWithValue("team.example.com/owner", "ml-platform"))

		// One Event for the finish, none for the Idle that follows, and no
		// further writes once Idle.
		Eventually(countReasons(ns, "gpt4", "Finished")).Should(Equal(1))
		written := writes.patches.Load()
		Consistently(func() int32 { return writes.patches.Load() }, 2*time.Second).Should(Equal(written))
		Expect(countReasons(ns, "gpt4", "Finished")()).To(Equal(1))
		Expect(countReasons(ns, "gpt4", "Idle")()).To(Equal(0))

		// Ready for the next canary: it starts from the new stable.
		mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{"canary": map[string]any{"name": "vllm-gpt4-v3", "port": 8000}}})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v2": 50, "vllm-gpt4-v3": 50}))
		Expect(getRollout(ns, "gpt4").Status.Stable.Name).To(Equal("vllm-gpt4-v2"))
	})

	It("finishes a rollout whose old stable was already removed by hand without touching the route", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(100, "1s")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
		route := getRoute(ns, "model-header-routing")
		for i, r := range route.Spec.Rules {
			if string(*r.Name) == "gpt4" {
				route.Spec.Rules[i].BackendRefs = slices.DeleteFunc(r.BackendRefs, func(b gatewayv1.HTTPBackendRef) bool { return b.Name == "vllm-gpt4-v1" })
			}
		}
		Expect(k8sClient.Update(suiteCtx, route)).To(Succeed())
		mergePatchRollout(ns, "gpt4", map[string]any{"spec": map[string]any{
			"stable": map[string]any{"name": "vllm-gpt4-v2", "port": 8000}, "canary": nil}})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseIdle))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v2": 100}))
		Eventually(countReasons(ns, "gpt4", "Finished")).Should(Equal(1))
	})
})
