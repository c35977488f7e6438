package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// These specs run prompt gates against vLLM simulators on loopback, which
// the operator's egress policy lets through only because the spec allows
// 127.0.0.0/8 (in a cluster, the canary Service's address is in the
// cluster's networks).

// withPromptGates is withPrometheusGates with an egress policy that allows
// loopback.
func withPromptGates(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(16),
		Egress: egress.MustNew(nil, []string{"127.0.0.0/8"})}
}

// capitalPrompts are prompts the simulator answers correctly ("The quick
// brown fox ..."), unless told to answer wrongly.
func capitalPrompts() []rolloutsv1.PromptCase {
	return []rolloutsv1.PromptCase{
		{Prompt: "Name a quick animal.", Expect: rolloutsv1.PromptExpectation{Contains: "quick brown fox"}, MaxLatency: "5s"},
		{Prompt: "Start your answer with 'The'.", Expect: rolloutsv1.PromptExpectation{Regex: `^The\b`}, MaxLatency: "5s"},
		{Prompt: "What jumps?", Expect: rolloutsv1.PromptExpectation{Regex: `(?i)fox`}, MaxLatency: "5s"},
	}
}

func promptGate(canary *vllmsim.Server) rolloutsv1.Gate {
	return rolloutsv1.Gate{Name: "answers", GateSpec: rolloutsv1.GateSpec{Min: ptr.To(1.0), FailureLimit: 1, NoData: rolloutsv1.NoDataHold,
		Prompt: &rolloutsv1.PromptGate{URL: canary.URL(), Prompts: capitalPrompts(), Concurrency: 2, Timeout: "20s"}}}
}

var _ = Describe("Prompt gates", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
	})

	It("catches a fast, error-free canary that answers wrongly before it gets any traffic", func() {
		stable := simulator("vllm-gpt4-v1", nil)
		canary := simulator("vllm-gpt4-v2", func(c *vllmsim.Config) { c.Answer = vllmsim.WrongAnswer })
		load(stable, canary)
		prom := prometheusFor(ns, stable, canary)

		ro := gatedRollout(ns, prom.URL(), step(10, "2s"), step(100, "2s"))
		ro.Spec.Analysis.Gates = append(ro.Spec.Analysis.Gates, promptGate(canary))

		// By every metric the canary is healthy: its PromQL gates pass
		// against the real Prometheus.
		q, err := analysis.NewClientCache(4).Get(analysis.ClientConfig{Address: prom.URL()})
		Expect(err).NotTo(HaveOccurred())
		probe := ro.DeepCopy()
		probe.Status.CanaryWeight = 10
		for _, gate := range ro.Spec.Analysis.Gates[:2] {
			Eventually(func() rolloutsv1.GateVerdict {
				rendered, err := analysis.RenderGate(gate, gateVars(probe, time.Now()))
				Expect(err).NotTo(HaveOccurred())
				return analysis.EvaluateGate(suiteCtx, q, gate, rendered, time.Now()).Verdict
			}, time.Minute).Should(Equal(rolloutsv1.VerdictPass), gate.Name)
		}

		rec := recordWeights(ns, "model-header-routing", "gpt4", "vllm-gpt4-v2")
		DeferCleanup(rec.stop)
		op := startOperator(withPromptGates)
		DeferCleanup(op.stop)
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(got.Status.Rollback.Message).To(HavePrefix(`canary failed its pre-traffic checks, before any user traffic: gate "answers" value 0 outside >= 1: 0 of 3 prompts passed`))
		Expect(got.Status.Rollback.Message).To(ContainSubstring(`prompt 1: answer does not contain "quick brown fox": "I am sorry, but I cannot help with that request." (and 2 more)`))
		Expect(got.Status.Rollback.FromWeight).To(BeEquivalentTo(0))
		Expect(got.Status.StepHistory).To(BeEmpty(), "no step started")
		Expect(got.Status.CurrentStepIndex).To(BeNil())
		var answers *rolloutsv1.GateStatus
		for i := range got.Status.Gates {
			if got.Status.Gates[i].Name == "answers" {
				answers = &got.Status.Gates[i]
			}
		}
		Expect(answers).NotTo(BeNil())
		Expect(answers.Verdict).To(Equal(rolloutsv1.VerdictFail))
		Expect(answers.Value).To(Equal("0"))
		Expect(answers.History).To(HaveLen(1))
		Expect(answers.History[0].Weight).To(BeEquivalentTo(0))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElement("RolledBack"))
		Expect(eventReasons(ns, "gpt4")()).NotTo(ContainElement("StepStarted"))
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled)).To(Equal(rolloutsv1.ReasonGateFailed))

		// The route never gave the canary any weight.
		Consistently(func() int32 { return routeWeights(ns, "model-header-routing", "gpt4")()["vllm-gpt4-v2"] }).Should(BeZero())
		Expect(rec.seen()).To(HaveEach(BeEquivalentTo(0)), "canary weights the route went through: %s", rec)
	})

	It("starts step 1 once a correct canary passed, with stable's pass rate beside it", func() {
		stable := simulator("vllm-gpt4-v1", nil)
		canary := simulator("vllm-gpt4-v2", nil)
		// No Prometheus: a rollout whose only gate is a prompt gate needs none.
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		gate := promptGate(canary)
		gate.Prompt.CompareStable = true
		gate.Prompt.StableURL = stable.URL()
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "2s", Gates: []rolloutsv1.Gate{gate}}

		op := startOperator(withPromptGates)
		DeferCleanup(op.stop)
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }, time.Minute).Should(Equal("1/2"))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Gates).To(HaveLen(1))
		Expect(got.Status.Gates[0].Verdict).To(Equal(rolloutsv1.VerdictPass), got.Status.Gates[0].Message)
		Expect(got.Status.Gates[0].Value).To(Equal("1"))
		Expect(got.Status.Gates[0].StableValue).To(Equal("1"))
		Expect(got.Status.Gates[0].Message).To(Equal("3 of 3 prompts passed (1), within >= 1; stable 3 of 3 (1)"))
		Expect(got.Status.Gates[0].History[0].Weight).To(BeEquivalentTo(0))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElements("PreTrafficChecksPassed", "StepStarted"))
		// The gate runs before the first step only (everyStep unset): the
		// step holds for its pause without evaluating it again.
		Consistently(func() int { return len(getRollout(ns, "gpt4").Status.Gates[0].History) }, 5*time.Second).Should(Equal(1))
	})

	It("with everyStep, judges the canary again at every step and rolls it back once it answers wrongly", func() {
		canary := simulator("vllm-gpt4-v2", nil)
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		gate := promptGate(canary)
		gate.EveryStep = ptr.To(true)
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1s", Gates: []rolloutsv1.Gate{gate}}

		op := startOperator(withPromptGates)
		DeferCleanup(op.stop)
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		// Judged at weight 0 before step 1, then at weight 10.
		Eventually(func() []int32 {
			var ws []int32
			for _, gs := range getRollout(ns, "gpt4").Status.Gates {
				for _, m := range gs.History {
					ws = append(ws, m.Weight)
				}
			}
			return ws
		}, time.Minute).Should(ContainElements(int32(0), int32(10)))
		Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))

		Expect(canary.UpdateConfig(func(c *vllmsim.Config) { c.Answer = vllmsim.InvalidJSONAnswer })).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.FromWeight).To(BeEquivalentTo(10))
		Expect(got.Status.Rollback.Message).To(HavePrefix(`gate "answers" value 0 outside >= 1: 0 of 3 prompts passed`))
		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
	})

	It("waits with a clear message for a missing prompts ConfigMap, then reads it", func() {
		canary := simulator("vllm-gpt4-v2", nil)
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		gate := promptGate(canary)
		gate.Prompt.Prompts = nil
		gate.Prompt.PromptsFrom = &rolloutsv1.ConfigMapKeyRef{Name: "evals", Key: "prompts.yaml"}
		ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "2s", Gates: []rolloutsv1.Gate{gate}}

		op := startOperator(withPromptGates)
		DeferCleanup(op.stop)
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidConfig))
		got := getRollout(ns, "gpt4")
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(Equal(`gate "answers": prompts ConfigMap evals not found in namespace ` + ns))
		Expect(got.Status.CurrentStepIndex).To(BeNil())

		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "evals", Namespace: ns}, Data: map[string]string{
			"other": "x",
		}}
		Expect(k8sClient.Create(suiteCtx, cm)).To(Succeed())
		Eventually(func() string { return conditionMessage(getRollout(ns, "gpt4"), rolloutsv1.ConditionStalled) }).Should(Equal(`gate "answers": prompts ConfigMap evals has no key "prompts.yaml"`))

		cm.Data = map[string]string{"prompts.yaml": `
- prompt: Name a quick animal.
  expect: {contains: quick brown fox}
- prompt: What jumps?
  expect: {regex: '(?i)fox'}
  maxTokens: 8
`}
		Expect(k8sClient.Update(suiteCtx, cm)).To(Succeed())
		Eventually(func() string { return getRollout(ns, "gpt4").Status.Step }, time.Minute).Should(Equal("1/2"))
		Expect(getRollout(ns, "gpt4").Status.Gates[0].Message).To(HavePrefix("2 of 2 prompts passed"))
	})
})
