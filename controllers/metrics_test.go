package controllers

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	ctrl "sigs.k8s.io/controller-runtime"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/test/promharness"
)

// suiteMetrics is registered once with the controller-runtime registry,
// which the manager's metrics endpoint serves.
var suiteMetrics *Metrics

func withMetrics(r *ModelRolloutReconciler, _ ctrl.Manager) {
	if suiteMetrics == nil {
		suiteMetrics = DefaultMetrics()
	}
	r.Metrics = suiteMetrics
}

// scrape reads the value of one series from a metrics endpoint, or -1.
func scrape(url, name string, labels map[string]string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	Expect(err).NotTo(HaveOccurred())
	mf, ok := families[name]
	if !ok {
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

var _ = Describe("Operator metrics", func() {
	It("exports phase, weight, step, transitions and rollbacks on /metrics", func() {
		ns := newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createBackend(ns, "vllm-mixtral-v2", true)
		port, err := promharness.FreePort()
		Expect(err).NotTo(HaveOccurred())
		op := startOperatorOn(fmt.Sprintf("127.0.0.1:%d", port), withMetrics)
		DeferCleanup(op.stop)
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)

		moved := newRollout(ns, step(10, "1s"), step(100, "1s"))
		Expect(k8sClient.Create(suiteCtx, moved)).To(Succeed())
		back := newRollout(ns, step(20, "1h"), step(100, "1h"))
		back.Name = "mixtral"
		back.Spec.Routes[0].Rules = []rolloutsv1.RuleName{"mixtral"}
		back.Spec.Stable.Name = "vllm-mixtral"
		back.Spec.Canary.Name = "vllm-mixtral-v2"
		Expect(k8sClient.Create(suiteCtx, back)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(func() int32 { return getRollout(ns, "mixtral").Status.CanaryWeight }).Should(BeEquivalentTo(20))
		annotate(ns, "mixtral", map[string]string{rolloutsv1.AnnotationAbort: "t1", rolloutsv1.AnnotationAbortReason: "bad outputs"})
		Eventually(phaseOf(ns, "mixtral")).Should(Equal(rolloutsv1.PhaseRolledBack))

		gpt := map[string]string{"namespace": ns, "name": "gpt4"}
		mix := map[string]string{"namespace": ns, "name": "mixtral"}
		with := func(l map[string]string, k, v string) map[string]string {
			out := map[string]string{k: v}
			for a, b := range l {
				out[a] = b
			}
			return out
		}
		Eventually(func() float64 { return scrape(url, "modelrollout_phase", with(gpt, "phase", "Succeeded")) }).Should(Equal(1.0))
		Expect(scrape(url, "modelrollout_phase", with(gpt, "phase", "Progressing"))).To(Equal(0.0))
		Expect(scrape(url, "modelrollout_canary_weight", gpt)).To(Equal(100.0))
		Expect(scrape(url, "modelrollout_step", gpt)).To(Equal(2.0))
		Expect(scrape(url, "modelrollout_step_transitions_total", with(gpt, "weight", "10"))).To(Equal(1.0))
		Expect(scrape(url, "modelrollout_step_transitions_total", with(gpt, "weight", "100"))).To(Equal(1.0))

		Eventually(func() float64 { return scrape(url, "modelrollout_phase", with(mix, "phase", "RolledBack")) }).Should(Equal(1.0))
		Expect(scrape(url, "modelrollout_canary_weight", mix)).To(Equal(0.0))
		Expect(scrape(url, "modelrollout_rollbacks_total", with(mix, "reason", rolloutsv1.ReasonAborted))).To(Equal(1.0))
		Expect(scrape(url, "controller_runtime_reconcile_total", map[string]string{"controller": "modelrollout", "result": "success"})).To(BeNumerically(">", 0))

		// A deleted rollout's series go away.
		Expect(k8sClient.Delete(suiteCtx, getRollout(ns, "mixtral"))).To(Succeed())
		Eventually(func() float64 { return scrape(url, "modelrollout_canary_weight", mix) }).Should(Equal(-1.0))
	})
})
