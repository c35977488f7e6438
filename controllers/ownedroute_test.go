package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Routes another controller generates (Envoy AI Gateway's AIGatewayRoute,
// KServe's LLMInferenceService, Knative) carry a controller ownerReference
// and are rewritten whole by it: the operator never patches them. The API
// server accepts ownerReferences to kinds it does not serve, so no AI
// gateway CRD is needed here; nothing garbage-collects in envtest either.
var _ = Describe("A managed route another controller owns", func() {
	const route = "model-header-routing"
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
	})
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	aiGatewayOwner := metav1.OwnerReference{APIVersion: "aigateway.envoyproxy.io/v1alpha1", Kind: "AIGatewayRoute",
		Name: "gpt4-ai", UID: "7c0e1a52-4b0c-4a38-9d36-1f1f4a1e0d11", Controller: ptr.To(true)}

	// setOwners sets the route's ownerReferences, as the owning controller
	// (or a person with kubectl) would.
	setOwners := func(owners ...metav1.OwnerReference) {
		r := getRoute(ns, route)
		base := r.DeepCopy()
		r.OwnerReferences = owners
		Expect(k8sClient.Patch(suiteCtx, r, client.MergeFrom(base))).To(Succeed())
	}
	// removeOwners is `kubectl patch httproute --type json -p
	// '[{"op":"remove","path":"/metadata/ownerReferences"}]'`.
	removeOwners := func() {
		patch := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/ownerReferences"}]`))
		Expect(k8sClient.Patch(suiteCtx, getRoute(ns, route), patch)).To(Succeed())
	}
	ownedText := func() string { return conditionText(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)() }
	stepIndex := func() *int32 { return getRollout(ns, "gpt4").Status.CurrentStepIndex }

	It("is never patched: the rollout waits naming the owner, and starts once the ownerReference is removed", func() {
		setOwners(aiGatewayOwner)
		before := getRoute(ns, route)
		op = startOperator()

		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(ownedText).Should(Equal(rolloutsv1.ReasonRouteOwnedByController + ": HTTPRoute " + ns + "/" + route +
			" is managed by AIGatewayRoute " + ns + "/gpt4-ai (its controller): the operator does not patch routes another controller rewrites; target the AIGatewayRoute's own weights instead"))
		ro := getRollout(ns, "gpt4")
		Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(conditionOf(ns, "gpt4", rolloutsv1.ConditionReady)()).To(HaveField("Status", metav1.ConditionFalse))
		Expect(ro.Status.CanaryWeight).To(BeZero(), "the status claims no weight the route does not carry")
		Expect(ro.Status.CurrentStepIndex).To(BeNil())
		Expect(eventReasons(ns, "gpt4")()).To(ContainElement(rolloutsv1.ReasonRouteOwnedByController))
		after := getRoute(ns, route)
		Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "the route was not written")
		Expect(ruleWeights(after, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}))

		// The platform hands the route over: the rollout starts.
		removeOwners()
		Eventually(routeWeights(ns, route, "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(HaveField("Reason", rolloutsv1.ReasonApplied))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseProgressing))
	})

	It("stops writing at once when the ownerReference appears mid-rollout, and goes on from the same step once it is removed", func() {
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "5s"), step(50, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, route, "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))

		setOwners(aiGatewayOwner)
		Eventually(ownedText).Should(And(HavePrefix(rolloutsv1.ReasonRouteOwnedByController), ContainSubstring("AIGatewayRoute "+ns+"/gpt4-ai")))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }).Should(ContainSubstring("Writes stopped at step 1/3 (canary weight 10)"))
		Expect(phaseOf(ns, "gpt4")()).To(Equal(rolloutsv1.PhaseWaiting))
		rv := getRoute(ns, route).ResourceVersion
		// Past the step's pause: the step would advance to 50 were the
		// route the rollout's to write.
		Consistently(func(g Gomega) {
			r := getRoute(ns, route)
			g.Expect(r.ResourceVersion).To(Equal(rv), "no write to the owned route")
			g.Expect(ruleWeights(r, "gpt4")).To(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
			g.Expect(stepIndex()).To(HaveValue(BeEquivalentTo(0)))
			g.Expect(getRollout(ns, "gpt4").Status.CanaryWeight).To(BeEquivalentTo(10))
		}).WithTimeout(7 * time.Second).Should(Succeed())

		// Handed back: the same step bakes its full pause again, then the
		// next step's weight is written.
		removeOwners()
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(HaveField("Reason", rolloutsv1.ReasonApplied))
		Expect(stepIndex()).To(HaveValue(BeEquivalentTo(0)), "no step skipped")
		Eventually(routeWeights(ns, route, "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(50)))
		Expect(stepIndex()).To(HaveValue(BeEquivalentTo(1)))
	})

	It("is managed as usual when its owner is not its controller", func() {
		// Argo CD, Helm-like tools and plain garbage-collection owners set
		// controller: false; they do not rewrite the weights.
		setOwners(metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Application", Name: "ml-platform",
			UID: "0b6f1f0e-2f0c-4bd4-9b0c-9d3c4a7d2e55", Controller: ptr.To(false)})
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, route, "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(HaveField("Reason", rolloutsv1.ReasonApplied))
		Expect(getRoute(ns, route).OwnerReferences).To(HaveLen(1), "the owner is left alone")
	})

	It("is managed as usual when its controller is this rollout", func() {
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		setOwners(metav1.OwnerReference{APIVersion: rolloutsv1.GroupVersion.String(), Kind: "ModelRollout", Name: ro.Name, UID: ro.UID, Controller: ptr.To(true)})
		op = startOperator()
		Eventually(routeWeights(ns, route, "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionRoutesApplied)).Should(HaveField("Reason", rolloutsv1.ReasonApplied))
	})

	It("does not hold the deletion of the rollout: the route is left to its controller", func() {
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, route, "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		setOwners(aiGatewayOwner)
		Eventually(ownedText).Should(HavePrefix(rolloutsv1.ReasonRouteOwnedByController))
		rv := getRoute(ns, route).ResourceVersion

		Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
		Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
		// Not patched, as for a missing route: the weights are the owning
		// controller's to set (here nobody rewrites them).
		r := getRoute(ns, route)
		Expect(r.ResourceVersion).To(Equal(rv), "the finalizer did not write the owned route")
		Expect(ruleWeights(r, "gpt4")).To(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(func() []string {
			list := &eventsv1.EventList{}
			Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
			var notes []string
			for _, e := range list.Items {
				notes = append(notes, e.Note)
			}
			return notes
		}).Should(ContainElement(ContainSubstring("The rollout was deleted: its weights in this route are not returned to stable but left to that controller")))
	})
})
