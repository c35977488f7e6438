package controllers

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// withQueryTenancy is withTemplateGates with --query-tenancy=namespace.
// twoTenants makes namespace a, with the route, the canary's backend and
// the simulators of its stable and canary (under load when loaded), and
// namespace b, with a model server of its own, and starts Prometheus
// scraping all three.
func twoTenants(loaded bool) (a, b string, prom *promharness.Prometheus) {
	a, b = newNamespace(), newNamespace()
	createRoute(a, "header-routing.yaml")
	createBackend(a, "vllm-gpt4-v2", true)
	stable, canary := simulator("vllm-gpt4-v1", nil), simulator("vllm-gpt4-v2", nil)
	other := simulator("vllm-other", nil) // namespace b's model server
	if loaded {
		load(stable, canary)
	}
	return a, b, prometheusForNamespaces(map[*vllmsim.Server]string{stable: a, canary: a, other: b})
}

func withQueryTenancy(r *ModelRolloutReconciler, mgr ctrl.Manager) {
	r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Templates: mgr.GetClient(), Clients: analysis.NewClientCache(16),
		QueryTenancy: analysis.QueryTenancyNamespace, Egress: loopbackEgress}
}

// gateStatusOf reads the status of one gate of a rollout; empty until the
// gate has been evaluated.
func gateStatusOf(ns, rollout, gate string) func() rolloutsv1.GateStatus {
	return func() rolloutsv1.GateStatus {
		for _, g := range getRollout(ns, rollout).Status.Gates {
			if g.Name == gate {
				return g
			}
		}
		return rolloutsv1.GateStatus{}
	}
}

var _ = Describe("Query tenancy against a real Prometheus", func() {
	It("refuses a query that selects another namespace, and confines one that selects its own", func() {
		a, b, prom := twoTenants(true)
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
		gateOf := func(name string) func() rolloutsv1.GateStatus { return gateStatusOf(a, "gpt4", name) }
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

	It("refuses a namespaced GateTemplate that selects another namespace, and confines one that selects none", func() {
		a, b, prom := twoTenants(false)
		// The team's template counts b's targets: its author is the
		// rollout's, so tenancy applies as to an inline gate.
		tmpl := &rolloutsv1.GateTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "targets", Namespace: a},
			Spec: rolloutsv1.GateTemplateSpec{Gate: rolloutsv1.GateSpec{
				Query: fmt.Sprintf(`count(up{namespace=%q})`, b), Min: ptr.To(2.0), Max: ptr.To(2.0)}},
		}
		Expect(k8sClient.Create(suiteCtx, tmpl)).To(Succeed())
		op := startOperator(withQueryTenancy)
		DeferCleanup(op.stop)

		Expect(k8sClient.Create(suiteCtx, templatedRollout(a, prom.URL(), rolloutsv1.GateTemplateRef{Name: "targets"}, nil,
			step(10, "1h"), step(100, "1h")))).To(Succeed())
		Eventually(func() string { return conditionReason(a, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidConfig))
		got := getRollout(a, "gpt4")
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(ContainSubstring(
			fmt.Sprintf(`gate "errors" (GateTemplate/targets): query tenancy: selector up{namespace=%q} names namespace %q; with --query-tenancy=namespace a rollout's queries read only its own namespace %q`, b, b, a)))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(0))
		Expect(routeWeights(a, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}))

		// The template without a namespace runs with a's matcher added: it
		// counts a's two targets, not b's as well (3 would fail the gate).
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(tmpl), tmpl); err != nil {
				return err
			}
			tmpl.Spec.Gate.Query = `count(up{job="vllm"})`
			return k8sClient.Update(suiteCtx, tmpl)
		})).To(Succeed())
		Eventually(routeWeights(a, "model-header-routing", "gpt4"), 2*time.Minute).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(gateStatusOf(a, "gpt4", "errors"), 2*time.Minute).Should(And(
			HaveField("Verdict", rolloutsv1.VerdictPass), HaveField("Value", "2"),
			HaveField("Query", fmt.Sprintf(`count(up{job="vllm",namespace=%q})`, a)),
			HaveField("Tenancy", fmt.Sprintf(`enforced: namespace=%q`, a)),
			HaveField("Template", "GateTemplate/targets"), HaveField("TemplateGeneration", BeEquivalentTo(2))))
		Expect(getRollout(a, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
	})

	It("runs a ClusterGateTemplate and a preset as written, and says they are exempt", func() {
		a, b, prom := twoTenants(true)
		// The cluster admin's template reads both namespaces, by a regular
		// expression that an inline gate or a GateTemplate may not use.
		name := "targets-" + a
		Expect(k8sClient.Create(suiteCtx, &rolloutsv1.ClusterGateTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: rolloutsv1.GateTemplateSpec{Gate: rolloutsv1.GateSpec{
				Query: fmt.Sprintf(`count(up{namespace=~"%s|%s"})`, a, b), Min: ptr.To(3.0), Max: ptr.To(3.0)}},
		})).To(Succeed())
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, &rolloutsv1.ClusterGateTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
		})
		op := startOperator(withQueryTenancy)
		DeferCleanup(op.stop)

		ro := gatedRollout(a, prom.URL(), step(10, "1h"), step(100, "1h"))
		ro.Spec.Analysis.Gates = append(ro.Spec.Analysis.Gates, rolloutsv1.Gate{Name: "targets",
			TemplateRef: &rolloutsv1.GateTemplateRef{Kind: rolloutsv1.GateTemplateKindCluster, Name: name}})
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(routeWeights(a, "model-header-routing", "gpt4"), 2*time.Minute).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		// Three targets: a's two and b's one. Status shows no query for an
		// exempt gate, which runs as written.
		Eventually(gateStatusOf(a, "gpt4", "targets"), 2*time.Minute).Should(And(
			HaveField("Verdict", rolloutsv1.VerdictPass), HaveField("Value", "3"),
			HaveField("Tenancy", "exempt: cluster template"), HaveField("Query", ""),
			HaveField("Template", "ClusterGateTemplate/"+name)))
		Eventually(gateStatusOf(a, "gpt4", "errors"), 2*time.Minute).Should(And(
			HaveField("Verdict", rolloutsv1.VerdictPass), HaveField("Tenancy", "exempt: preset"), HaveField("Query", "")))
		Expect(getRollout(a, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
	})

	It("refuses an inline gate that matches namespaces by regular expression", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op := startOperator(withQueryTenancy)
		DeferCleanup(op.stop)

		// The query is refused before Prometheus is asked: none runs here.
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		ro.Spec.Analysis = &rolloutsv1.Analysis{
			Interval:   "2s",
			Prometheus: &rolloutsv1.PrometheusSource{Address: "http://127.0.0.1:9"},
			Gates: []rolloutsv1.Gate{{Name: "targets",
				GateSpec: rolloutsv1.GateSpec{Query: `count(up{namespace=~".+"})`, Min: ptr.To(1.0)}}},
		}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionStalled) }).Should(Equal(rolloutsv1.ReasonInvalidConfig))
		got := getRollout(ns, "gpt4")
		Expect(conditionMessage(got, rolloutsv1.ConditionStalled)).To(ContainSubstring(fmt.Sprintf(
			`gate "targets": query tenancy: selector up{namespace=~".+"} matches namespaces with =~ ".+"; with --query-tenancy=namespace a rollout's queries read only its own namespace %q: drop the namespace matcher, the operator adds namespace=%q`, ns, ns)))
		Expect(got.Status.CanaryWeight).To(BeEquivalentTo(0))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
	})
})
