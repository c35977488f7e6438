package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// gatesFrom passes every gate while the canary's weight is below from, and
// from then on only once open is set; until then they hold (no data).
type gatesFrom struct {
	from int32
	open *atomic.Bool
}

func (gatesFrom) Validate(context.Context, *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	return nil, nil
}

func (g gatesFrom) Evaluate(_ context.Context, ro *rolloutsv1.ModelRollout, now time.Time) *plan.GateRound {
	round := &plan.GateRound{}
	pass := ro.Status.CanaryWeight < g.from || g.open.Load()
	for _, gate := range ro.Spec.Analysis.Gates {
		gs := rolloutsv1.GateStatus{Name: gate.Name, Verdict: rolloutsv1.VerdictPass, LastEvaluatedAt: &metav1.Time{Time: now}}
		if !pass {
			gs.Verdict, gs.Message = rolloutsv1.VerdictNoData, "held by the test"
			round.Holding = &plan.Problem{Reason: rolloutsv1.ReasonGateNoData, Message: `gate "` + gate.Name + `" holds the step: no data`}
		}
		round.Gates = append(round.Gates, gs)
	}
	return round
}

func patchSteps(ns string, steps ...rolloutsv1.Step) {
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"steps": steps}})
	Expect(err).NotTo(HaveOccurred())
	patchRollout(ns, string(body))
}

var _ = Describe("Edits mid-rollout", func() {
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

	It("at 25%, steps 50/100: the route carries 50% only once 25% has baked its pause and gates, never 100% first", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		rec := recordWeights(ns, "model-header-routing", "gpt4", "vllm-gpt4-v2")
		defer rec.stop()
		open := &atomic.Bool{}
		op = startOperator(func(r *ModelRolloutReconciler, _ ctrl.Manager) { r.Gates = gatesFrom{from: 25, open: open} })

		ro := newRollout(ns, step(10, "1s"), step(25, "2s"), step(50, "1h"), step(75, "1h"), step(100, "1h"))
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1s", Gates: []rolloutsv1.Gate{
			{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05)}}}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		// 25% served its pause; its gates hold it.
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }, 60*time.Second).Should(ContainSubstring(`gate "errors" holds`))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("2/5"))

		patchSteps(ns, step(50, "1h"), step(100, "1h"))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("StepsChanged"))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("1/3"))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.StepWeights).To(Equal([]int32{25, 50, 100}))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(25))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4"), 3*time.Second).Should(
			Equal(map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}), "the gates still hold 25%")

		open.Store(true)
		Eventually(routeWeights(ns, "model-header-routing", "gpt4"), 60*time.Second).Should(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("1/2"))
		got = getRollout(ns, "gpt4")
		Expect(got.Status.StepWeights).To(Equal([]int32{50, 100}))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(50))
		n := len(got.Status.StepHistory)
		Expect(got.Status.StepHistory[n-1].Weight).To(BeEquivalentTo(50))
		Expect(got.Status.StepHistory[n-2].Weight).To(BeEquivalentTo(25))
		Consistently(rec.seen, 2*time.Second).Should(Equal([]int32{0, 10, 25, 50}), "never 100% before 50% has baked")
	})

	It("gates removed mid-step: the step they held advances", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator(withNoDataGates)
		ro := newRollout(ns, step(10, "1s"), step(100, "1h"))
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1s", Gates: []rolloutsv1.Gate{
			{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05)}}}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Message }, 60*time.Second).Should(ContainSubstring(`gate "errors" holds`))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		patchRollout(ns, `{"spec":{"analysis":null}}`)
		Eventually(routeWeights(ns, "model-header-routing", "gpt4"), 60*time.Second).Should(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }).Should(Equal("2/2"))
	})

	It("a route removed from spec.routes returns to stable and is released; one added gets the current weight", func() {
		createRoute(ns, "header-routing.yaml")
		raw, err := os.ReadFile(filepath.Join("testdata", "routes", "header-routing.yaml"))
		Expect(err).NotTo(HaveOccurred())
		second := &gatewayv1.HTTPRoute{}
		Expect(yaml.Unmarshal(raw, second)).To(Succeed())
		second.Name, second.Namespace = "second", ns
		Expect(k8sClient.Create(suiteCtx, second)).To(Succeed())
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator()

		ro := newRollout(ns, step(25, "1h"), step(100, "1h"))
		ro.Spec.Routes = append(ro.Spec.Routes, rolloutsv1.RouteTarget{Name: "second", Rules: []rolloutsv1.RuleName{"gpt4"}})
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		at25 := map[string]int32{"vllm-gpt4-v1": 75, "vllm-gpt4-v2": 25}
		Eventually(routeWeights(ns, "second", "gpt4")).Should(Equal(at25))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(at25))

		patchRollout(ns, `{"spec":{"routes":[{"name":"model-header-routing","rules":["gpt4"]}]}}`)
		Eventually(routeWeights(ns, "second", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		Eventually(func() map[string]string { return getRoute(ns, "second").Annotations }).ShouldNot(HaveKey(rolloutsv1.AnnotationRuleOwners))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("RouteReleased"))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(at25))
		Expect(getRollout(ns, "gpt4").Status.Step).To(Equal("1/2"))

		// Added back: it gets the weight in force.
		patchRollout(ns, `{"spec":{"routes":[{"name":"model-header-routing","rules":["gpt4"]},{"name":"second","rules":["gpt4"]}]}}`)
		Eventually(routeWeights(ns, "second", "gpt4")).Should(Equal(at25))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(at25))
	})
})

// rolloutStatusLog records every status the API server holds for the rollouts of
// a namespace, in order, through a watch.
type rolloutStatusLog struct {
	mu   sync.Mutex
	seen map[string][]rolloutsv1.ModelRolloutStatus
	stop func()
}

func logStatuses(ns string) *rolloutStatusLog {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(suiteCtx)
	w, err := wc.Watch(ctx, &rolloutsv1.ModelRolloutList{}, client.InNamespace(ns))
	Expect(err).NotTo(HaveOccurred())
	l := &rolloutStatusLog{seen: map[string][]rolloutsv1.ModelRolloutStatus{}, stop: cancel}
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			ro, ok := ev.Object.(*rolloutsv1.ModelRollout)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			l.mu.Lock()
			l.seen[ro.Name] = append(l.seen[ro.Name], *ro.Status.DeepCopy())
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *rolloutStatusLog) of(name string) []rolloutsv1.ModelRolloutStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]rolloutsv1.ModelRolloutStatus(nil), l.seen[name]...)
}

var _ = Describe("Status tells what the routes carry", func() {
	It("two rollouts on one rule created together: the loser never shows a step or a weight (10 rounds)", func() {
		op := startOperator()
		defer op.stop()
		for round := range 10 {
			ns := newNamespace()
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			log := logStatuses(ns)
			a := newRollout(ns, step(10, "1h"), step(100, "1h"))
			b := newRollout(ns, step(20, "1h"), step(100, "1h"))
			a.Name, b.Name = "a", "b"
			// One apply: created back to back.
			Expect(k8sClient.Create(suiteCtx, a)).To(Succeed())
			Expect(k8sClient.Create(suiteCtx, b)).To(Succeed())

			var winner, loser string
			Eventually(func() string {
				owners := plan.RuleOwners(getRoute(ns, "model-header-routing"))
				winner = owners["gpt4"]
				return winner
			}, 60*time.Second).ShouldNot(BeEmpty())
			loser = map[string]string{"a": "b", "b": "a"}[winner]
			want := map[string]map[string]int32{"a": {"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}, "b": {"vllm-gpt4-v1": 80, "vllm-gpt4-v2": 20}}[winner]
			Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(want))
			Eventually(func() string { return conditionReason(ns, loser, rolloutsv1.ConditionRoutesApplied) }, 60*time.Second).Should(Equal(rolloutsv1.ReasonRouteConflict))
			Eventually(func() string { return getRollout(ns, winner).Status.Step }).Should(Equal("1/2"))
			Expect(getRollout(ns, loser).Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
			// The loser's every status, as the API server held it.
			Consistently(func() []string {
				var claims []string
				for i, st := range log.of(loser) {
					if st.CurrentStepIndex != nil || st.Step != "" || st.CanaryWeight != 0 || st.StepStartedAt != nil {
						claims = append(claims, fmt.Sprintf("round %d, status %d: phase %s, step %q, weight %d", round, i, st.Phase, st.Step, st.CanaryWeight))
					}
				}
				return claims
			}, 2*time.Second).Should(BeEmpty(), "winner %s", winner)
			log.stop()
		}
	})
})
