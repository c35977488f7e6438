package controllers

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
	"github.com/modelrollout/modelrollout/test/vllmsim"
)

// prometheusForNamespaces starts Prometheus scraping simulators of several
// namespaces, each labelled with its Service name and namespace.
func prometheusForNamespaces(sims map[*vllmsim.Server]string) *promharness.Prometheus {
	if err := promharness.Available(); err != nil {
		Fail(err.Error())
	}
	var targets []promharness.Target
	for s, ns := range sims {
		targets = append(targets, promharness.Target{Job: "vllm", Addr: s.Addr(),
			Labels: map[string]string{"service": s.Config().Name, "namespace": ns}})
	}
	ctx, cancel := context.WithTimeout(suiteCtx, 2*time.Minute)
	defer cancel()
	p, err := promharness.StartPrometheus(ctx, promharness.PrometheusOptions{Targets: targets, LogWriter: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(p.Close)
	Expect(p.WaitForTargetsUp(ctx)).To(Succeed())
	return p
}

func withQueryTenancy(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(16), QueryTenancy: analysis.QueryTenancyNamespace, Egress: loopbackEgress}
}

var _ = Describe("Query tenancy against a real Prometheus", func() {
	It("refuses a query that selects another namespace, and confines one that selects its own", func() {
		a, b := newNamespace(), newNamespace()
		createRoute(a, "header-routing.yaml")
		createBackend(a, "vllm-gpt4-v2", true)
		stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
		other := simulator("vllm-other", nil) // namespace b's model server
		load(stable, canary)
		prom := prometheusForNamespaces(map[*vllmsim.Server]string{stable: a, canary: a, other: b})
		op := startOperator(withQueryTenancy)
		DeferCleanup(op.stop)

		// Reading b's series from a is refused before any traffic moves.
		ro := gatedRollout(a, prom.URL(), step(10, "1h"), step(100, "1h"))
		ro.Spec.Analysis.Gates = append(ro.Spec.Analysis.Gates, rolloutsv1.Gate{Name: "targets",
			GateSpec: rolloutsv1.GateSpec{Query: fmt.Sprintf(`count(up{namespace=%q})`, b), Min: ptr.To(2.0), Max: ptr.To(2.0)}})
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return conditionReason(a, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidConfig))
		got := getRollout(a, "gpt4")
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(ContainSubstring(
			fmt.Sprintf(`gate "targets": query tenancy: selector up{namespace=%q} names namespace %q; with --query-tenancy=namespace a rollout's queries read only its own namespace %q`, b, b, a)))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(0))
		Expect(routeWeights(a, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}))

		// A query without a namespace runs with a's matcher added: it counts
		// a's two targets, not b's as well (3 would fail the gate).
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := getRollout(a, "gpt4")
			cur.Spec.Analysis.Gates[2].Query = `count(up{job="vllm"})`
			return k8sClient.Update(suiteCtx, cur)
		})).To(Succeed())
		Eventually(routeWeights(a, "model-header-routing", "gpt4"), 2*time.Minute).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		gateOf := func(name string) func() rolloutsv1.GateStatus {
			return func() rolloutsv1.GateStatus {
				for _, g := range getRollout(a, "gpt4").Status.Gates {
					if g.Name == name {
						return g
					}
				}
				return rolloutsv1.GateStatus{}
			}
		}
		Eventually(func() rolloutsv1.GateVerdict { return gateOf("targets")().Verdict }, 2*time.Minute).Should(Equal(rolloutsv1.VerdictPass))
		targets := gateOf("targets")()
		Expect(targets.Value).To(Equal("2"), targets.Message)
		Expect(targets.Query).To(Equal(fmt.Sprintf(`count(up{job="vllm",namespace=%q})`, a)))
		Expect(targets.Tenancy).To(Equal(fmt.Sprintf(`enforced: namespace=%q`, a)))
		errs := gateOf("errors")()
		Expect(errs.Tenancy).To(Equal("exempt: preset"))
		Expect(errs.Query).To(BeEmpty())
		Expect(getRollout(a, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
	})
})
