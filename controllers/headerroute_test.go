package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// headerRouteOf is the name of the header route of the gpt4 rollout on the
// seed's header-routing route.
const headerRouteOfGPT4 = "model-header-routing-gpt4-match"

// darkLaunch is a step that sends only the requests with
// x-ab-test-group: canary to the canary, and waits for a promote.
func darkLaunch() rolloutsv1.Step {
	return rolloutsv1.Step{Weight: 0, Match: &rolloutsv1.StepMatch{
		Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-ab-test-group", Value: "canary"}},
	}}
}

func withPause(s rolloutsv1.Step, pause string) rolloutsv1.Step {
	s.Pause = durationOf(pause)
	return s
}

func withWeight(s rolloutsv1.Step, weight int32) rolloutsv1.Step {
	s.Weight = weight
	return s
}

// ownedRoute reads a header route; nil when it does not exist.
func ownedRoute(ns, name string) func() *gatewayv1.HTTPRoute {
	return func() *gatewayv1.HTTPRoute {
		route := &gatewayv1.HTTPRoute{}
		err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, route)
		if apierrors.IsNotFound(err) {
			return nil
		}
		Expect(err).NotTo(HaveOccurred())
		return route
	}
}

// expectHeaderRoute checks that the header route is what item 1 of the
// design says: the rollout's child, the user's parentRefs, the managed
// rule's matches each with the step's header, its filters and timeouts, and
// the canary as the only backend.
func expectHeaderRoute(ns string, route *gatewayv1.HTTPRoute) {
	ro := getRollout(ns, "gpt4")
	user := getRoute(ns, "model-header-routing")
	Expect(metav1.IsControlledBy(route, ro)).To(BeTrue(), "ownerReferences %v", route.OwnerReferences)
	Expect(route.Labels).To(Equal(map[string]string{
		rolloutsv1.LabelHeaderRouteOf: "gpt4", "app.kubernetes.io/managed-by": "modelrollout"}),
		"no label of the user's route, Argo CD's tracking label least of all")
	Expect(route.Annotations).NotTo(HaveKey("argocd.argoproj.io/tracking-id"))
	Expect(route.Spec.ParentRefs).To(Equal(user.Spec.ParentRefs))
	Expect(route.Spec.Rules).To(HaveLen(1))
	rule, src := route.Spec.Rules[0], user.Spec.Rules[0]
	Expect(string(*rule.Name)).To(Equal("gpt4"))
	Expect(rule.Timeouts).To(Equal(src.Timeouts))
	Expect(rule.Filters).To(Equal(src.Filters))
	Expect(rule.Matches).To(HaveLen(len(src.Matches)))
	for i, m := range rule.Matches {
		want := src.Matches[i].DeepCopy()
		want.Headers = append(want.Headers, gatewayv1.HTTPHeaderMatch{Type: ptr.To(gatewayv1.HeaderMatchExact), Name: "x-ab-test-group", Value: "canary"})
		Expect(m).To(Equal(*want))
	}
	Expect(rule.BackendRefs).To(HaveLen(1))
	b := rule.BackendRefs[0]
	Expect(string(b.Name)).To(Equal("vllm-gpt4-v2"))
	Expect(b.Port).To(HaveValue(BeEquivalentTo(8000)))
	Expect(b.Weight).To(HaveValue(BeEquivalentTo(1)))
}

var _ = Describe("Header-routed steps", func() {
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

	It("owns a header route during a dark launch, restores it, recreates it after a restart, and deletes it when the next step starts", func() {
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, darkLaunch(), step(10, "1h"), step(100, "1h")))).To(Succeed())

		Eventually(ownedRoute(ns, headerRouteOfGPT4)).ShouldNot(BeNil())
		first := ownedRoute(ns, headerRouteOfGPT4)()
		expectHeaderRoute(ns, first)
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		ro := getRollout(ns, "gpt4")
		Expect(ro.Status.HeaderRoute).NotTo(BeNil())
		Expect(ro.Status.HeaderRoute.Routes).To(Equal([]string{headerRouteOfGPT4}))
		Expect(ro.Status.HeaderRoute.Match.Headers).To(HaveLen(1))
		Expect(ro.Status.CanaryWeight).To(BeEquivalentTo(0))
		Expect(ro.Status.StepStartedAt).NotTo(BeNil())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionHeaderRouted)).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(ro.Status.Message).To(ContainSubstring("every request with header x-ab-test-group=canary"))
		// The user's route keeps the canary out of its weights.
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100}))

		By("restoring an edit of the header route, its label included")
		edited := ownedRoute(ns, headerRouteOfGPT4)()
		edited.Spec.Rules[0].Matches[0].Headers[1].Value = "everyone"
		edited.Spec.Rules[0].BackendRefs[0].Weight = ptr.To[int32](0)
		delete(edited.Labels, rolloutsv1.LabelHeaderRouteOf) // still the rollout's: its ownerReference says so
		Expect(k8sClient.Update(suiteCtx, edited, client.FieldOwner("someone"))).To(Succeed())
		Eventually(func() string {
			return ownedRoute(ns, headerRouteOfGPT4)().Spec.Rules[0].Matches[0].Headers[1].Value
		}).Should(Equal("canary"))
		expectHeaderRoute(ns, ownedRoute(ns, headerRouteOfGPT4)())
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("HeaderRouteRestored"))

		By("recreating a header route deleted by hand")
		Expect(k8sClient.Delete(suiteCtx, first)).To(Succeed())
		Eventually(func() types.UID {
			if r := ownedRoute(ns, headerRouteOfGPT4)(); r != nil {
				return r.UID
			}
			return ""
		}).ShouldNot(Or(BeEmpty(), Equal(first.UID)))

		By("recreating it after a restart, from status alone")
		op.stop()
		op = nil
		Expect(k8sClient.Delete(suiteCtx, ownedRoute(ns, headerRouteOfGPT4)())).To(Succeed())
		Eventually(ownedRoute(ns, headerRouteOfGPT4)).Should(BeNil())
		op = startOperator()
		Eventually(ownedRoute(ns, headerRouteOfGPT4)).ShouldNot(BeNil())
		expectHeaderRoute(ns, ownedRoute(ns, headerRouteOfGPT4)())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionHeaderRouted)).Should(HaveField("Status", metav1.ConditionTrue))

		By("deleting it when the next step, without a match, starts")
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationPromote: "p1"})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(ownedRoute(ns, headerRouteOfGPT4)).Should(BeNil())
		Eventually(func() *rolloutsv1.HeaderRouteStatus { return getRollout(ns, "gpt4").Status.HeaderRoute }).Should(BeNil())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionHeaderRouted)).Should(BeNil())
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("HeaderRouteRemoved")) // Events are sent in the background
	})

	It("deletes the header route on abort", func() {
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, darkLaunch(), step(100, "1h")))).To(Succeed())
		Eventually(ownedRoute(ns, headerRouteOfGPT4)).ShouldNot(BeNil())
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "a1", rolloutsv1.AnnotationAbortReason: "bad answers"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(ownedRoute(ns, headerRouteOfGPT4)).Should(BeNil())
		Expect(getRollout(ns, "gpt4").Status.HeaderRoute).To(BeNil())
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100}))
	})

	It("deletes the header route when the rollout is deleted", func() {
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, darkLaunch(), step(100, "1h")))).To(Succeed())
		Eventually(ownedRoute(ns, headerRouteOfGPT4)).ShouldNot(BeNil())
		Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "gpt4"))).To(Succeed())
		Eventually(rolloutGone(ns, "gpt4")).Should(BeTrue())
		// envtest runs no garbage collector: the finalizer deleted it.
		Expect(ownedRoute(ns, headerRouteOfGPT4)()).To(BeNil())
	})

	It("leaves a route of the same name that it does not own alone, and says so", func() {
		theirs := getRoute(ns, "model-header-routing").DeepCopy()
		theirs.ObjectMeta = metav1.ObjectMeta{Name: headerRouteOfGPT4, Namespace: ns}
		theirs.Spec.Rules = theirs.Spec.Rules[1:2]
		Expect(k8sClient.Create(suiteCtx, theirs)).To(Succeed())
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, darkLaunch(), step(100, "1h")))).To(Succeed())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionHeaderRouted)).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", rolloutsv1.ReasonHeaderRouteConflict),
			HaveField("Message", ContainSubstring("rename or delete it"))))
		Consistently(func() int64 { return ownedRoute(ns, headerRouteOfGPT4)().Generation }).Should(Equal(theirs.Generation))
		ro := getRollout(ns, "gpt4")
		Expect(ro.Status.StepStartedAt).To(BeNil(), "the step does not bake without its header route")
		Expect(ro.Status.WaitingSince).NotTo(BeNil(), "the progress deadline runs")
		Expect(ro.Status.Message).To(ContainSubstring("is not this rollout's header route"))
	})
})
