package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// strictTemplate counts no data as a failure and rolls back on the third
// failure in a row. Its query selects a series no one exports: no data.
func strictTemplate(ns string) *rolloutsv1.GateTemplate {
	return &rolloutsv1.GateTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: ns},
		Spec: rolloutsv1.GateTemplateSpec{Gate: rolloutsv1.GateSpec{
			Query:        `modelrollout_test_no_such_series{namespace="{{ .Namespace }}"}`,
			Max:          ptr.To(0.5),
			NoData:       rolloutsv1.NoDataFail,
			FailureLimit: 3,
		}},
	}
}

var _ = Describe("Gate policies overriding a template's", func() {
	It("follows the template's noData: Fail and failureLimit 3, and a gate's Hold and 1 instead where it sets them", func() {
		nsA, nsB := newNamespace(), newNamespace()
		prom := prometheusFor(nsA)
		for _, ns := range []string{nsA, nsB} {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			Expect(k8sClient.Create(suiteCtx, strictTemplate(ns))).To(Succeed())
		}
		op := startOperator(withTemplateGates)
		DeferCleanup(op.stop)

		ref := rolloutsv1.GateTemplateRef{Name: "strict"}
		a := templatedRollout(nsA, prom.URL(), ref, nil, step(10, "1h"), step(100, "1h"))
		a.Spec.Analysis.Interval = "1s"
		Expect(k8sClient.Create(suiteCtx, a)).To(Succeed())
		b := templatedRollout(nsB, prom.URL(), ref, nil, step(10, "1h"), step(100, "1h"))
		b.Spec.Analysis.Interval = "1s"
		b.Spec.Analysis.Gates[0].NoData = rolloutsv1.NoDataHold
		b.Spec.Analysis.Gates[0].FailureLimit = 1
		Expect(k8sClient.Create(suiteCtx, b)).To(Succeed())

		// The API server keeps what each gate says: no default is written
		// into A's gate to override its template.
		stored := getRollout(nsA, "gpt4").Spec.Analysis.Gates[0]
		Expect(stored.NoData).To(BeEmpty())
		Expect(stored.FailureLimit).To(BeZero())

		gate := func(ns string) func() rolloutsv1.GateStatus {
			return func() rolloutsv1.GateStatus {
				if gs := getRollout(ns, "gpt4").Status.Gates; len(gs) == 1 {
					return gs[0]
				}
				return rolloutsv1.GateStatus{}
			}
		}

		// A takes the template's policies: no data fails, three times.
		Eventually(phaseOf(nsA, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(nsA, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonGateFailed))
		Expect(got.Status.Rollback.Message).To(ContainSubstring("failureLimit 3"))
		Expect(gate(nsA)()).To(And(HaveField("NoData", rolloutsv1.NoDataFail), HaveField("FailureLimit", BeEquivalentTo(3)),
			HaveField("ConsecutiveFailures", BeEquivalentTo(3))))

		// B's Hold overrides the template's Fail: more evaluations without
		// data than the template's three failures, and it still holds.
		Eventually(gate(nsB), 2*time.Minute).Should(And(
			HaveField("Verdict", rolloutsv1.VerdictNoData), HaveField("NoData", rolloutsv1.NoDataHold), HaveField("FailureLimit", BeEquivalentTo(1)),
			HaveField("ConsecutiveInconclusive", BeNumerically(">=", 4)), HaveField("ConsecutiveFailures", BeZero())))
		Expect(getRollout(nsB, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		Expect(routeWeights(nsB, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))

		// B's failureLimit 1 overrides the template's 3: the first failure
		// rolls back.
		tmpl := &rolloutsv1.GateTemplate{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: nsB, Name: "strict"}, tmpl)).To(Succeed())
		tmpl.Spec.Gate.Query = "vector(0.9)"
		Expect(k8sClient.Update(suiteCtx, tmpl)).To(Succeed())
		Eventually(phaseOf(nsB, "gpt4"), 2*time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		got = getRollout(nsB, "gpt4")
		Expect(got.Status.Rollback.Message).To(ContainSubstring(`gate "errors" value 0.9 outside <= 0.5`))
		Expect(got.Status.Rollback.Message).NotTo(ContainSubstring("failureLimit"))
		Expect(gate(nsB)()).To(And(HaveField("Verdict", rolloutsv1.VerdictFail), HaveField("ConsecutiveFailures", BeEquivalentTo(1)),
			HaveField("FailureLimit", BeEquivalentTo(1))))
		Eventually(routeWeights(nsB, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
	})

	DescribeTable("admission still rejects bad policies on gates and templates",
		func(template bool, field string, value any, message string) {
			ns := newNamespace()
			var err error
			if template {
				u := gateTemplateFrom("GateTemplate", func(s map[string]any) { templateGateOf(s)[field] = value })
				u.SetNamespace(ns)
				err = k8sClient.Create(suiteCtx, u, client.DryRunAll)
			} else {
				u := rolloutFrom(func(s map[string]any) { refGate(s)[field] = value })
				u.SetNamespace(ns)
				err = k8sClient.Create(suiteCtx, u, client.DryRunAll)
			}
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("gate noData unknown", false, "noData", "Ignore", `Unsupported value: "Ignore"`),
		Entry("gate failureLimit 0", false, "failureLimit", 0, "should be greater than or equal to 1"),
		Entry("gate failureLimit 101", false, "failureLimit", 101, "should be less than or equal to 100"),
		Entry("template noData unknown", true, "noData", "Never", `Unsupported value: "Never"`),
		Entry("template failureLimit 0", true, "failureLimit", 0, "should be greater than or equal to 1"),
	)
})
