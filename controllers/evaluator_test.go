package controllers

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

var _ = Describe("Gate rounds off the reconcile workers", func() {
	var op *operator
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	// A Prometheus that never answers, with a query timeout of an hour:
	// evaluated on the workers, four such rollouts would hold all four
	// workers for an hour.
	It("lets other rollouts step and abort while a Prometheus hangs for some", func() {
		var queries atomic.Int32
		release := make(chan struct{})
		hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			queries.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			http.Error(w, "gone", http.StatusServiceUnavailable)
		}))
		DeferCleanup(func() {
			close(release)
			hanging.Close()
		})
		op = startOperator(func(r *ModelRolloutReconciler, mgr ctrl.Manager) {
			r.MaxConcurrentReconciles = 2
			r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(8), Egress: loopbackEgress}
		})

		var gated []string
		for i := range 6 {
			ns := newNamespace()
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v2", true)
			ro := newRollout(ns, step(10, "1s"), step(100, "1h"))
			ro.Spec.Analysis = &rolloutsv1.Analysis{
				Interval:   "1s",
				Prometheus: &rolloutsv1.PrometheusSource{Address: hanging.URL, Timeout: "1h"},
				Gates:      []rolloutsv1.Gate{{Name: "errors", GateSpec: rolloutsv1.GateSpec{Query: fmt.Sprintf("vector(%d)", i), Max: ptr.To(100.0)}}},
			}
			Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
			gated = append(gated, ns)
		}
		Eventually(queries.Load).Should(BeNumerically(">=", 6), "every gated rollout is waiting on Prometheus")

		plain := newNamespace()
		createRoute(plain, "header-routing.yaml")
		createBackend(plain, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, newRollout(plain, step(10, "1s"), step(50, "1s"), step(100, "1s")))).To(Succeed())
		Eventually(phaseOf(plain, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded), "a rollout without gates is not held by the others' queries")

		annotate(gated[0], "gpt4", map[string]string{rolloutsv1.AnnotationAbort: "now"})
		Eventually(phaseOf(gated[0], "gpt4")).Should(Equal(rolloutsv1.PhaseRolledBack))
		Eventually(routeWeights(gated[0], "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}))
		for _, ns := range gated[1:] {
			got := getRollout(ns, "gpt4")
			Expect(got.Status.Step).To(Equal("1/2"), "a rollout whose Prometheus does not answer does not advance")
			Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		}
	})
})
