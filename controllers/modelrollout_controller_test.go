package controllers

import (
	"encoding/json"
	"io"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

var _ = Describe("ModelRollout controller", func() {
	var (
		ns string
		op *operator
	)

	BeforeEach(func() {
		ns = newNamespace()
	})
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	It("walks the route 10 -> 25 -> 50 -> 75 -> 100 and succeeds", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		rec := recordWeights(ns, "model-header-routing", "gpt4", "vllm-gpt4-v2")
		defer rec.stop()
		op = startOperator()

		ro := newRollout(ns, step(10, "1s"), step(25, "1s"), step(50, "1s"), step(75, "1s"), step(100, "1s"))
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(rec.seen).Should(Equal([]int32{0, 10, 25, 50, 75, 100}), "every step once, in order, no regression")
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))

		got := getRollout(ns, "gpt4")
		Expect(got.Status.Step).To(Equal("5/5"))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(100))
		Expect(got.Status.StepHistory).To(HaveLen(5))
		for i, h := range got.Status.StepHistory {
			Expect(h.Weight).To(Equal(ro.Spec.Steps[i].Weight))
			Expect(h.EndedAt).NotTo(BeNil())
			Expect(h.EndedAt.Sub(h.StartedAt.Time)).To(BeNumerically(">=", time.Second-time.Millisecond), "a step never ends before its pause")
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, rolloutsv1.ConditionReady)
		Expect(ready).NotTo(BeNil())
		Expect(ready.Status).To(BeEquivalentTo("True"))
		Expect(meta.FindStatusCondition(got.Status.Conditions, rolloutsv1.ConditionReconciling)).To(BeNil())
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		// One Event per transition: five steps, then Succeeded; the start
		// of the rollout rides on its first step's Event.
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElements("StepStarted", "Succeeded"))
		Expect(eventReasons(ns, "gpt4")()).NotTo(ContainElement("RolloutStarted"))
		// The route records, in the patch that wrote them, the weights the
		// rollout wrote last.
		Expect(getRoute(ns, "model-header-routing").Annotations).To(HaveKeyWithValue(rolloutsv1.AnnotationAppliedWeights,
			`{"gpt4":"Service/vllm-gpt4-v1:8000=0, Service/vllm-gpt4-v2:8000=100"}`))
		Expect(eventReasons(ns, "gpt4")()).NotTo(ContainElement("WeightDriftCorrected"), "the rollout's own steps are not drift")
	})

	// The cache drops kubectl's last-applied annotation: a route whose only
	// annotation it was must still get the operator's keys added beside it,
	// never a new annotations map in its place.
	It("keeps kubectl's last-applied annotation of a route applied with kubectl", func() {
		kubectl := func(args ...string) {
			_, stderr, err := testEnv.ControlPlane.KubeCtl().Run(append([]string{"-n", ns}, args...)...)
			msg, _ := io.ReadAll(stderr)
			Expect(err).NotTo(HaveOccurred(), "kubectl %v: %s", args, msg)
		}
		kubectl("apply", "-f", filepath.Join("testdata", "routes", "header-routing.yaml"))
		// Only kubectl's annotation left on it.
		kubectl("annotate", "httproute", "model-header-routing", "team.example.com/owner-")
		Expect(getRoute(ns, "model-header-routing").Annotations).To(HaveLen(1))
		applied := getRoute(ns, "model-header-routing").Annotations[corev1.LastAppliedConfigAnnotation]
		Expect(applied).NotTo(BeEmpty())
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(25, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(25)))
		Expect(getRoute(ns, "model-header-routing").Annotations).To(And(
			HaveKeyWithValue(corev1.LastAppliedConfigAnnotation, applied),
			HaveKey(rolloutsv1.AnnotationRuleOwners), HaveKey(rolloutsv1.AnnotationAppliedWeights)))
	})

	It("changes nothing in the route but the managed weights", func() {
		before := createRoute(ns, "header-routing.yaml")
		before = getRoute(ns, before.Name)
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()

		ro := newRollout(ns, step(25, "1h"), step(100, "1h"))
		ro.Spec.Routes[0].Rules = nil // every rule that references the stable backend
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}))
		Eventually(routeWeights(ns, "model-header-routing", "health")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}))

		after := getRoute(ns, before.Name)
		Expect(after.Annotations).To(HaveKeyWithValue(rolloutsv1.AnnotationRuleOwners, `{"gpt4":"gpt4","health":"gpt4"}`))
		Expect(after.Annotations).To(HaveKeyWithValue(rolloutsv1.AnnotationAppliedWeights, `{"gpt4":"Service/vllm-gpt4-v1:8000=75, Service/vllm-gpt4-v2:8000=25"}`))
		delete(after.Annotations, rolloutsv1.AnnotationRuleOwners)
		delete(after.Annotations, rolloutsv1.AnnotationAppliedWeights)
		Expect(stripRoute(after)).To(Equal(stripRoute(before)), "matches, filters, timeouts, rule names, other backends, labels and annotations are untouched")
		Expect(after.Annotations).To(Equal(before.Annotations))
		Expect(after.Labels).To(Equal(before.Labels))
		Expect(ruleWeights(after, "claude")).To(Equal(map[string]int32{"tgi-claude": 1}))
		Expect(after.Spec.Rules[1].BackendRefs[0].Weight).To(Equal(before.Spec.Rules[1].BackendRefs[0].Weight))
		for _, mf := range after.ManagedFields {
			if mf.Operation == "Update" && mf.Manager == FieldOwner {
				return
			}
		}
		Fail("the route's managedFields do not name the modelrollout-controller field manager")
	})

	It("puts back a weight changed by someone else and records a Warning", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		// An outside edit, as a GitOps sync or a person would make it.
		route := getRoute(ns, "model-header-routing")
		route.Spec.Rules[0].BackendRefs[0].Weight = ptr.To[int32](100)
		route.Spec.Rules[0].BackendRefs[1].Weight = ptr.To[int32](0)
		Expect(k8sClient.Update(suiteCtx, route)).To(Succeed())

		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("WeightDriftCorrected"))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/2"), "an outside edit never moves the rollout's idea of its step")
	})

	It("resumes the same step after a restart, without skipping or repeating one", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		rec := recordWeights(ns, "model-header-routing", "gpt4", "vllm-gpt4-v2")
		defer rec.stop()
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "3s"), step(50, "1h"), step(100, "1h")))).To(Succeed())
		// The status starts the step's clock in the write before the route
		// patch; the step has served once the route carries it.
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(func() *rolloutsv1.MicroTime { return getRollout(ns, "gpt4").Status.StepStartedAt }).ShouldNot(BeNil())
		op.stop()
		op = nil
		// Read once nothing writes any more.
		first := getRollout(ns, "gpt4").Status.StepStartedAt.Time

		// The pause ends while no controller runs.
		Eventually(func() bool { return time.Now().After(first.Add(3 * time.Second)) }).Should(BeTrue())
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/3"))

		op = startOperator()
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("2/3"))
		Consistently(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("2/3"))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.StepHistory).To(HaveLen(2))
		Expect(got.Status.StepHistory[0].StartedAt.Time).To(BeTemporally("==", first), "the first step was not restarted")
		Eventually(rec.seen).Should(Equal([]int32{0, 10, 50}))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
	})

	It("waits for a missing route and canary, changing nothing, then recovers by itself", func() {
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionRoutesResolved) }).Should(Equal(rolloutsv1.ReasonRouteNotFound))
		Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))

		createRoute(ns, "header-routing.yaml")
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonBackendNotFound))
		createBackend(ns, "vllm-gpt4-v2", false)
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonNoReadyEndpoints))
		Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring("no ready endpoints"))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}), "no traffic moves while waiting")

		setEndpoints(ns, "vllm-gpt4-v2", true)
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(func(g Gomega) { g.Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing)) }).Should(Succeed()) // the status follows the routes
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionCanaryAvailable)).To(Equal(rolloutsv1.ReasonAvailable))
	})

	It("runs two rollouts on two rules of one route without disturbing each other", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createBackend(ns, "vllm-mixtral-v2", true)
		op = startOperator()

		gpt := newRollout(ns, step(10, "1s"), step(50, "1s"), step(100, "1h"))
		mixtral := newRollout(ns, step(20, "1s"), step(40, "1s"), step(60, "1s"), step(100, "1s"))
		mixtral.Name = "mixtral"
		mixtral.Spec.Routes[0].Rules = []rolloutsv1.RuleName{"mixtral"}
		mixtral.Spec.Stable.Name = "vllm-mixtral"
		mixtral.Spec.Canary.Name = "vllm-mixtral-v2"
		Expect(k8sClient.Create(suiteCtx, gpt)).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, mixtral)).To(Succeed())

		Eventually(phaseOf(ns, "mixtral")).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("3/3"))
		route := getRoute(ns, "model-header-routing")
		Expect(ruleWeights(route, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Expect(ruleWeights(route, "mixtral")).To(Equal(map[string]int32{"vllm-mixtral": 0, "vllm-mixtral-v2": 100}))
		Expect(ruleWeights(route, "claude")).To(Equal(map[string]int32{"tgi-claude": 1}))
		Expect(ruleWeights(route, "health")).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}), "the gpt4 rollout manages only its named rule")
	})

	It("rolls back on abort, holds, and retries from step 1", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, ""), step(50, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationPromote: "p1"})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))

		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "t1", rolloutsv1.AnnotationAbortReason: "bad outputs"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonAborted))
		Expect(got.Status.Rollback.Message).To(Equal("bad outputs"))
		Expect(got.Status.Rollback.FromWeight).To(BeEquivalentTo(50))
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled)).To(Equal(rolloutsv1.ReasonAborted))
		Consistently(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))

		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationRetry: "r1"})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		got = getRollout(ns, "gpt4")
		Expect(got.Status.LastHandledRetry).To(Equal("r1"))
		Expect(got.Status.Step).To(Equal("1/3"))
		Expect(got.Status.Rollback).To(BeNil())
	})

	It("starts over when the canary changes, taking the old canary out of traffic", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createBackend(ns, "vllm-gpt4-v3", true)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(30, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(30)))

		ro := getRollout(ns, "gpt4")
		Expect(k8sClient.Patch(suiteCtx, ro, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"canary":{"name":"vllm-gpt4-v3"}}}`)))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 70, "vllm-gpt4-v2": 0, "vllm-gpt4-v3": 30}))
		Eventually(func(g Gomega) {
			g.Expect(getRollout(ns, "gpt4").Status.Revision).To(Equal("Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v3:8000"))
		}).Should(Succeed()) // the status follows the routes
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("CanaryReplaced"))
	})

	It("holds while paused and waits for a promote on a step without pause", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		ro := newRollout(ns, step(10, ""), step(100, "1h"))
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		// The status that starts the step (and pauses it) goes out just
		// after the route patch.
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationPromote: "p1"})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Eventually(func(g Gomega) { g.Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing)) }).Should(Succeed()) // the status follows the routes

		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationPaused: "true"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
	})
})

func conditionReason(ns, name, t string) string {
	c := meta.FindStatusCondition(getRollout(ns, name).Status.Conditions, t)
	if c == nil {
		return ""
	}
	return c.Reason
}

// stripRoute returns the route's spec and metadata with the parts the
// controller may change removed: backendRef weights, the canary backendRefs
// it appends, and the server's bookkeeping.
func stripRoute(route *gatewayv1.HTTPRoute) map[string]any {
	r := route.DeepCopy()
	r.ManagedFields = nil
	r.ResourceVersion = ""
	r.Generation = 0
	// The operator's only metadata: which rollout owns which rule, and the
	// weights each rollout wrote last.
	delete(r.Annotations, rolloutsv1.AnnotationRuleOwners)
	delete(r.Annotations, rolloutsv1.AnnotationAppliedWeights)
	for i := range r.Spec.Rules {
		var kept []gatewayv1.HTTPBackendRef
		for _, b := range r.Spec.Rules[i].BackendRefs {
			if string(b.Name) == "vllm-gpt4-v2" {
				continue
			}
			b.Weight = nil
			kept = append(kept, b)
		}
		r.Spec.Rules[i].BackendRefs = kept
	}
	raw, err := json.Marshal(struct {
		Meta any `json:"metadata"`
		Spec any `json:"spec"`
	}{r.ObjectMeta, r.Spec})
	Expect(err).NotTo(HaveOccurred())
	var m map[string]any
	Expect(json.Unmarshal(raw, &m)).To(Succeed())
	return m
}
