package controllers

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// noDataGates holds every step: each gate has no data, as when the canary
// has not served minRequests yet.
type noDataGates struct{}

func (noDataGates) Validate(context.Context, *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	return nil, nil
}

func (noDataGates) Evaluate(_ context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *plan.GateRound {
	round := &plan.GateRound{}
	for _, g := range ro.Spec.Analysis.Gates {
		round.Gates = append(round.Gates, rolloutsv1.GateStatus{Name: g.Name, Verdict: rolloutsv1.VerdictNoData,
			Message: "canary served 0 of minRequests 50", LastEvaluatedAt: &metav1.Time{Time: now}})
		if round.Holding == nil {
			round.Holding = &plan.Problem{Reason: rolloutsv1.ReasonGateNoData, Message: `gate "` + g.Name + `" holds the step: no data`}
		}
	}
	return round
}

func withNoDataGates(r *ModelRolloutReconciler, _ ctrl.Manager) { r.Gates = noDataGates{} }

// rolloutEvent returns the latest event with the reason about the rollout,
// nil when there is none.
func rolloutEvent(ns, name, reason string) func() *eventsv1.Event {
	return func() *eventsv1.Event {
		list := &eventsv1.EventList{}
		Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
		var found *eventsv1.Event
		for i := range list.Items {
			e := &list.Items[i]
			if e.Regarding.Name == name && e.Regarding.Kind == "ModelRollout" && e.Reason == reason {
				found = e
			}
		}
		return found
	}
}

var _ = Describe("Overrides", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	It("skips a holding gate once, then promotes to 100% at once, recording each in status and an Event", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		rec := recordWeights(ns, "model-header-routing", "gpt4", "vllm-gpt4-v2")
		defer rec.stop()
		op = startOperator(withNoDataGates)

		ro := newRollout(ns, step(10, "1s"), step(25, "1s"), step(50, "1s"), step(100, "1h"))
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1s", Gates: []rolloutsv1.Gate{
			{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05), MinRequests: ptr.To[int64](50)}},
		}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		// The gate holds step 1 past its pause.
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }).Should(ContainSubstring(`gate "errors" holds`))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/4"))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		annotate(ns, "gpt4", map[string]string{
			rolloutsv1.AnnotationSkipGates:     "skip-1",
			rolloutsv1.AnnotationPromoteReason: "minRequests too high for night traffic",
			rolloutsv1.AnnotationRequestedBy:   "alice@example.com",
		})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}))
		// The routes are written before the status: the status follows.
		Eventually(func() string { return getRollout(ns, "gpt4").Status.LastHandledSkipGates }).Should(Equal("skip-1"))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Step).To(Equal("2/4"))
		Expect(got.Status.Overrides).To(HaveLen(1))
		o := got.Status.Overrides[0]
		Expect(o.Kind).To(Equal(rolloutsv1.OverrideSkipGates))
		Expect(o.Step).To(Equal("1/4"))
		Expect([]int32{o.FromWeight, o.ToWeight}).To(Equal([]int32{10, 25}))
		Expect(o.Reason).To(Equal("minRequests too high for night traffic"))
		Expect(o.RequestedBy).To(Equal("alice@example.com"))
		Expect(o.Message).To(ContainSubstring(`gate "errors" holds`))
		Eventually(rolloutEvent(ns, "gpt4", "GatesSkipped")).ShouldNot(BeNil())
		ev := rolloutEvent(ns, "gpt4", "GatesSkipped")()
		Expect(ev.Type).To(Equal(corev1.EventTypeNormal))
		Expect(ev.Note).To(HavePrefix(`Skip of the gates at step 1/4 requested by alice@example.com: "minRequests too high for night traffic": canary weight 10 -> 25 (step 2/4)`))

		// Once only: the gate holds step 2 as it held step 1.
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }).Should(MatchRegexp(`^Step 2/4: .*gate "errors" holds`))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}))

		annotate(ns, "gpt4", map[string]string{
			rolloutsv1.AnnotationPromoteFull:   "full-1",
			rolloutsv1.AnnotationPromoteReason: "v1 is down, all traffic to v2",
			rolloutsv1.AnnotationRequestedBy:   "bob",
		})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.LastHandledPromoteFull }).Should(Equal("full-1")) // the status follows the routes
		got = getRollout(ns, "gpt4")
		Expect(got.Status.Step).To(Equal("4/4"))
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing), "the last step bakes its pause and is gated as usual")
		Expect(got.Status.Overrides).To(HaveLen(2))
		o = got.Status.Overrides[1]
		Expect(o.Kind).To(Equal(rolloutsv1.OverridePromoteFull))
		Expect([]any{o.Step, o.FromWeight, o.ToWeight, o.Reason, o.RequestedBy}).To(Equal([]any{"2/4", int32(25), int32(100), "v1 is down, all traffic to v2", "bob"}))
		Expect(o.Message).To(ContainSubstring("step 3/4"), "the message names the step passed over")
		Eventually(rolloutEvent(ns, "gpt4", "PromotedFull")).ShouldNot(BeNil())
		Expect(rolloutEvent(ns, "gpt4", "PromotedFull")().Note).To(HavePrefix(`Full promote at step 2/4 requested by bob: "v1 is down, all traffic to v2": canary weight 25 -> 100 (step 4/4)`))
		Eventually(rec.seen).Should(Equal([]int32{0, 10, 25, 100}), "step 3 (50%) never reached the route")

		// A full promote at the last step has nowhere to go.
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationPromoteFull: "full-2"})
		Eventually(rolloutEvent(ns, "gpt4", "PromoteFullIgnored")).ShouldNot(BeNil())
		Expect(rolloutEvent(ns, "gpt4", "PromoteFullIgnored")().Type).To(Equal(corev1.EventTypeWarning))
		Expect(getRollout(ns, "gpt4").Status.Overrides).To(HaveLen(2))
	})

	It("ignores both overrides on a RolledBack rollout, with a Warning event", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "a1", rolloutsv1.AnnotationAbortReason: "bad outputs"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))

		annotate(ns, "gpt4", map[string]string{
			rolloutsv1.AnnotationPromoteFull:   "full-1",
			rolloutsv1.AnnotationSkipGates:     "skip-1",
			rolloutsv1.AnnotationPromoteReason: "ship it",
			rolloutsv1.AnnotationRequestedBy:   "carol",
		})
		Eventually(func() []string {
			st := getRollout(ns, "gpt4").Status
			return []string{st.LastHandledPromoteFull, st.LastHandledSkipGates}
		}).Should(Equal([]string{"full-1", "skip-1"}))
		Eventually(rolloutEvent(ns, "gpt4", "PromoteFullIgnored")).ShouldNot(BeNil())
		ev := rolloutEvent(ns, "gpt4", "PromoteFullIgnored")()
		Expect(ev.Type).To(Equal(corev1.EventTypeWarning))
		Expect(ev.Note).To(Equal(`Full promote requested by carol: "ship it" ignored: the rollout is RolledBack`))
		Eventually(rolloutEvent(ns, "gpt4", "SkipGatesIgnored")).ShouldNot(BeNil())
		Expect(rolloutEvent(ns, "gpt4", "SkipGatesIgnored")().Note).To(Equal(`Skip of the gates requested by carol: "ship it" ignored: the rollout is RolledBack`))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Overrides).To(BeEmpty())
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseRolledBack))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
	})
})
