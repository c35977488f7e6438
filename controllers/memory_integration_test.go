package controllers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/analysis"
	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// memoryRollouts is how many rollouts the bounded-memory spec creates and
// deletes.
const memoryRollouts = 1000

// startOperatorWithoutElection is startOperator without leader election:
// a thousand rollouts created at once on a shared two-core machine can
// delay a Lease renewal past startOperator's 3 s deadline.
// It watches only the rollouts in namespace ns, so the rollouts earlier
// specs left in other namespaces keep nothing of theirs in its memory.
func startOperatorWithoutElection(ns string, opts ...func(*ModelRolloutReconciler, ctrl.Manager)) *operator {
	mgr, err := ctrl.NewManager(operatorCfg, ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{DefaultTransform: CacheTransform(), ByObject: map[client.Object]cache.ByObject{
			&rolloutsv1.ModelRollout{}: {Namespaces: map[string]cache.Config{ns: {}}},
		}},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             ctrlConfigSkipNameValidation(),
	})
	Expect(err).NotTo(HaveOccurred())
	r := &ModelRolloutReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("modelrollout-controller")}
	for _, o := range opts {
		o(r, mgr)
	}
	ctx, cancel := context.WithCancel(suiteCtx)
	Expect(r.SetupWithManager(ctx, mgr)).To(Succeed())
	op := &operator{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(op.done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return op
}

// forEach runs f for 0..n-1 on 8 goroutines.
func forEach(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int32{}
	for range 8 {
		wg.Go(func() {
			defer GinkgoRecover()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

var _ = Describe("Bounded memory", func() {
	It("returns every in-memory map to empty once its rollouts are deleted", func() {
		// Every tenth rollout has a web gate that never answers (its round
		// is in flight when the rollout goes), every tenth (offset 5) one
		// that answers at once (its gate series exist), and every fifth an
		// OnTransition webhook.
		var hanging, cancelled atomic.Int32
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hanging.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			cancelled.Add(1)
		}))
		DeferCleanup(slow.Close)
		fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"score": 1}`))
		}))
		DeferCleanup(fast.Close)
		var notified atomic.Int32
		hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { notified.Add(1) }))
		DeferCleanup(hooks.Close)

		ns := newNamespace()
		var rec *ModelRolloutReconciler
		op := startOperatorWithoutElection(ns, withLoopbackEgress, func(r *ModelRolloutReconciler, mgr ctrl.Manager) {
			r.Metrics = NewMetrics(prometheus.NewRegistry())
			// Every slow gate's round is to be in flight at once, in one
			// namespace: the pool and the namespace's fair share are sized
			// for all of them (the caps have their own specs).
			r.GateConcurrency = memoryRollouts
			r.Shares.GateConcurrencyPerNamespace = memoryRollouts
			r.Gates = &PrometheusGates{Secrets: mgr.GetAPIReader(), Clients: analysis.NewClientCache(8), Metrics: r.Metrics,
				Egress: egress.MustNew(nil, []string{"127.0.0.0/8"})}
			rec = r
		})
		DeferCleanup(op.stop)

		fastClient := func() client.Client {
			c := rest.CopyConfig(cfg)
			c.QPS = -1
			cl, err := client.New(c, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			return cl
		}()
		createBackend(ns, "vllm-gpt4-v1", true)
		createBackend(ns, "vllm-gpt4-v2", true)
		start := time.Now()
		forEach(memoryRollouts, func(i int) {
			name := fmt.Sprintf("m%04d", i)
			route := &gatewayv1.HTTPRoute{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: gatewayv1.HTTPRouteSpec{
					CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "ai-inference-gateway"}}},
					Rules: []gatewayv1.HTTPRouteRule{{Name: ptr.To[gatewayv1.SectionName]("gpt4"), BackendRefs: []gatewayv1.HTTPBackendRef{{
						BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "vllm-gpt4-v1", Port: ptr.To[gatewayv1.PortNumber](8000)}},
					}}}},
				},
			}
			Expect(fastClient.Create(suiteCtx, route)).To(Succeed())
			ro := newRollout(ns, step(10, "1h"), step(100, ""))
			ro.Name = name
			ro.Spec.Routes[0].Name = name
			gate := func(url string) *rolloutsv1.Analysis {
				return &rolloutsv1.Analysis{Interval: "10s", Gates: []rolloutsv1.Gate{{Name: "quality", GateSpec: rolloutsv1.GateSpec{
					Min: ptr.To(0.5), Web: &rolloutsv1.WebGate{URL: url, JSONPath: "$.score", Timeout: "60s"}}}}}
			}
			switch i % 10 {
			case 0:
				ro.Spec.Analysis = gate(slow.URL)
			case 5:
				ro.Spec.Analysis = gate(fast.URL)
			}
			if i%5 == 0 {
				ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "chat", Type: rolloutsv1.WebhookOnTransition, URL: hooks.URL}}
			}
			Expect(fastClient.Create(suiteCtx, ro)).To(Succeed())
		})
		GinkgoWriter.Printf("created %d rollouts and routes in %s\n", memoryRollouts, time.Since(start))

		By("every rollout reaches its first step; the gated ones wait on their round")
		Eventually(func(g Gomega) {
			list := &rolloutsv1.ModelRolloutList{}
			g.Expect(fastClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
			at := 0
			for _, ro := range list.Items {
				if ro.Status.CanaryWeight == 10 && ro.Status.Phase == rolloutsv1.PhaseProgressing {
					at++
				}
			}
			g.Expect(at).To(Equal(memoryRollouts))
		}).WithTimeout(10 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		Eventually(hanging.Load).WithTimeout(5*time.Minute).Should(BeNumerically(">=", memoryRollouts/10), "every slow gate's round is in flight")
		Eventually(notified.Load).WithTimeout(5*time.Minute).Should(BeNumerically(">=", memoryRollouts/5), "every webhook heard of the rollout's start")
		// The slow gates' series appear too, once a round reaches its 60 s
		// timeout.
		Eventually(func() int { return rec.memorySizes()["metrics.gates"] }).WithTimeout(5*time.Minute).Should(BeNumerically(">=", memoryRollouts/10), "the fast gates' series")
		sizes := rec.memorySizes()
		GinkgoWriter.Printf("after %s, with %d rollouts: %v\n", time.Since(start), memoryRollouts, sizes)
		// At most memoryRollouts/10: a slow round that reached its 60 s
		// timeout before this line is no longer in flight.
		Expect(sizes["gates.inflight"]).To(BeNumerically(">", 0), "the slow gates' rounds")

		By("deleting every rollout")
		start = time.Now()
		forEach(memoryRollouts, func(i int) {
			ro := &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("m%04d", i), Namespace: ns}}
			Expect(fastClient.Delete(suiteCtx, ro)).To(Succeed())
		})
		Eventually(func(g Gomega) {
			list := &rolloutsv1.ModelRolloutList{}
			g.Expect(fastClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
		}).WithTimeout(10 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		GinkgoWriter.Printf("deleted %d rollouts in %s\n", memoryRollouts, time.Since(start))
		Eventually(func(g Gomega) {
			for k, v := range rec.memorySizes() {
				g.Expect(v).To(BeZero(), k)
			}
		}).WithTimeout(5*time.Minute).WithPolling(time.Second).Should(Succeed(), "every map returns to empty")
		Eventually(func() int32 { return hanging.Load() - cancelled.Load() }).Should(BeZero(), "every deleted rollout's gate round was cancelled")
		routes := &gatewayv1.HTTPRouteList{}
		Expect(fastClient.List(suiteCtx, routes, client.InNamespace(ns))).To(Succeed())
		for _, rt := range routes.Items {
			Expect(ruleWeights(&rt, "gpt4")).To(Equal(map[string]int32{"vllm-gpt4-v1": 100, "vllm-gpt4-v2": 0}), "route %s: the deletion returned the canary's traffic", rt.Name)
		}
	})
})
