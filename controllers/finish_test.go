package controllers

import (
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

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
		Eventually(func(g Gomega) { g.Expect(getRollout(ns, "gpt4").Status.Stable).To(HaveField("Name", "vllm-gpt4-v2")) }).Should(Succeed()) // the status follows the routes
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

var _ = Describe("Workload handoff without its opt-in RBAC", func() {
	var ns string
	var op *operator
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	It("reports WorkloadHandoff=False with the fix, one Warning, and stays Succeeded", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		labels := map[string]string{"app": "vllm-gpt4-v1"}
		Expect(k8sClient.Create(suiteCtx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "vllm-gpt4-v1", Namespace: ns},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai:v0.11.0"}}}}},
		})).To(Succeed())
		// The operator runs under the generated role only (operatorIdentity).
		op = startOperator()
		ro := newRollout(ns, step(100, "1s"))
		ro.Spec.Stable.WorkloadRef = &rolloutsv1.WorkloadRef{Name: "vllm-gpt4-v1"}
		ro.Spec.Canary.WorkloadRef = &rolloutsv1.WorkloadRef{Name: "vllm-gpt4-v2"}
		ro.Spec.ScaleDownDelay = durationOf("1s")
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))

		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionWorkloadHandoff)).Should(And(Not(BeNil()),
			HaveField("Reason", rolloutsv1.ReasonWorkloadHandoffForbidden),
			HaveField("Message", And(ContainSubstring("ScaleDown of Deployment.apps/vllm-gpt4-v1 (old stable vllm-gpt4-v1 after success) not done"),
				ContainSubstring("config/rbac/workload-handoff"), ContainSubstring("workloadHandoff.enabled=true")))))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseSucceeded))
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, rolloutsv1.ConditionReady)).To(BeTrue())
		Expect(got.Status.Workloads).To(HaveLen(1), "kept, to be tried again")
		// The Warning is recorded after the status that carries the
		// condition, and sent in the background: wait for it, then make
		// sure no second one follows.
		Eventually(countReasons(ns, "gpt4", rolloutsv1.ReasonWorkloadHandoffForbidden)).Should(Equal(1))
		Consistently(countReasons(ns, "gpt4", rolloutsv1.ReasonWorkloadHandoffForbidden), 2*time.Second).Should(Equal(1))

		d := &appsv1.Deployment{}
		Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "vllm-gpt4-v1"}, d)).To(Succeed())
		Expect(*d.Spec.Replicas).To(Equal(int32(3)))
		Expect(d.Annotations).NotTo(HaveKey(rolloutsv1.AnnotationReplicasBeforeScaleDown))
	})
})
