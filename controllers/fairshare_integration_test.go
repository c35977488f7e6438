package controllers

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	ctrl "sigs.k8s.io/controller-runtime"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// blockingHooks is a webhook receiver that counts the calls it got, per
// path, and answers none of them until the test ends.
type blockingHooks struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newBlockingHooks() *blockingHooks {
	h := &blockingHooks{calls: map[string]int{}}
	release := make(chan struct{})
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.calls[r.URL.Path]++
		h.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/slow") {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	DeferCleanup(h.Close)
	DeferCleanup(func() { close(release) }) // runs first: unblocks the calls
	return h
}

// got is the number of calls whose path starts with prefix.
func (h *blockingHooks) got(prefix string) func() int {
	return func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for p, c := range h.calls {
			if strings.HasPrefix(p, prefix) {
				n += c
			}
		}
		return n
	}
}

var _ = Describe("Fair shares of the webhook pool", func() {
	It("answers a namespace's webhook while another namespace's slow webhooks fill their share", func() {
		hooks := newBlockingHooks()
		reg := prometheus.NewRegistry()
		metrics := NewMetrics(reg)
		// A pool of 4 webhook slots, at most 2 per namespace. Without the
		// cap, a's six slow calls would take all four slots and b's call
		// would wait for one of them (10 minutes).
		op := startOperator(withLoopbackEgress, func(r *ModelRolloutReconciler, _ ctrl.Manager) {
			r.Metrics = metrics
			r.Shares = FairShares{WebhookConcurrency: 4, WebhookConcurrencyPerNamespace: 2}
		})
		DeferCleanup(op.stop)

		a, b := newNamespace(), newNamespace()
		for _, ns := range []string{a, b} {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v1", true)
			createBackend(ns, "vllm-gpt4-v2", true)
		}
		slow := newRollout(a, step(10, "1h"), step(100, "1h"))
		for i := range 6 {
			slow.Spec.Webhooks = append(slow.Spec.Webhooks, rolloutsv1.Webhook{Name: fmt.Sprintf("slow-%d", i),
				Type: rolloutsv1.WebhookPreRollout, URL: fmt.Sprintf("%s/slow/%d", hooks.URL, i), Timeout: "10m"})
		}
		Expect(k8sClient.Create(suiteCtx, slow)).To(Succeed())

		// a's calls are blocked in the receiver, and more of them wait for a
		// slot: the queue-depth series says so.
		Eventually(hooks.got("/slow"), "60s").Should(BeNumerically(">=", 2))
		depthOf := func(ns string) func() float64 {
			return func() float64 { return testutil.ToFloat64(metrics.QueueDepth.WithLabelValues(poolWebhooks, ns)) }
		}
		Eventually(depthOf(a), "60s").Should(BeNumerically(">", 0))

		fast := newRollout(b, step(10, "1h"), step(100, "1h"))
		fast.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "fast", Type: rolloutsv1.WebhookPreRollout, URL: hooks.URL + "/fast", Timeout: "10m"}}
		Expect(k8sClient.Create(suiteCtx, fast)).To(Succeed())

		// b's call reaches the receiver, and passes, while every call of a
		// is still blocked.
		Eventually(hooks.got("/fast"), "60s").Should(BeNumerically(">=", 1))
		Eventually(routeWeights(b, "model-header-routing", "gpt4"), "60s").Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Expect(hooks.got("/slow")()).To(Equal(2), "a got no slot beyond its share")
		Expect(depthOf(a)()).To(Equal(4.0), "a's other four calls wait")
		// The routes are written before the status: the status follows.
		Eventually(func() rolloutsv1.WebhookState { return webhookEntry(b, "gpt4", "fast").State }).Should(Equal(rolloutsv1.WebhookPassed))
		Expect(getRollout(a, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(testutil.CollectAndCount(metrics.QueueDepth)).To(Equal(1), "only a has calls waiting: b's series is gone")
	})

	It("answers a namespace's first webhook at once while four namespaces' slow webhooks fill the whole pool", func() {
		hooks := newBlockingHooks()
		reg := prometheus.NewRegistry()
		metrics := NewMetrics(reg)
		// The attack at the defaults: a pool of 32 webhook slots, 8
		// per namespace, and four namespaces with eight 10-minute webhooks
		// each. Without the first-slot rule, the fifth namespace's call
		// would wait for one of theirs to end (10 minutes).
		var rec *ModelRolloutReconciler
		op := startOperator(withLoopbackEgress, func(r *ModelRolloutReconciler, _ ctrl.Manager) {
			r.Metrics = metrics
			rec = r
		})
		DeferCleanup(op.stop)

		attackers := []string{newNamespace(), newNamespace(), newNamespace(), newNamespace()}
		victim := newNamespace()
		for _, ns := range append([]string{victim}, attackers...) {
			createRoute(ns, "header-routing.yaml")
			createBackend(ns, "vllm-gpt4-v1", true)
			createBackend(ns, "vllm-gpt4-v2", true)
		}
		for _, ns := range attackers {
			slow := newRollout(ns, step(10, "1h"), step(100, "1h"))
			for i := range DefaultWebhookConcurrencyPerNamespace {
				slow.Spec.Webhooks = append(slow.Spec.Webhooks, rolloutsv1.Webhook{Name: fmt.Sprintf("slow-%d", i),
					Type: rolloutsv1.WebhookPreRollout, URL: fmt.Sprintf("%s/slow/%s/%d", hooks.URL, ns, i), Timeout: "10m"})
			}
			Expect(k8sClient.Create(suiteCtx, slow)).To(Succeed())
		}

		// All 32 slow calls are blocked in the receiver: the pool is full.
		Eventually(hooks.got("/slow"), "60s").Should(Equal(DefaultWebhookConcurrency))
		Eventually(rec.hooks.slots.inUse, "60s").Should(Equal(DefaultWebhookConcurrency))

		fast := newRollout(victim, step(10, "1h"), step(100, "1h"))
		fast.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "fast", Type: rolloutsv1.WebhookPreRollout, URL: hooks.URL + "/fast", Timeout: "10m"}}
		Expect(k8sClient.Create(suiteCtx, fast)).To(Succeed())

		// The victim's call reaches the receiver within seconds, not when a
		// slow call ends, and passes while every slow call is still blocked.
		Eventually(hooks.got("/fast"), "10s").Should(BeNumerically(">=", 1))
		Eventually(routeWeights(victim, "model-header-routing", "gpt4"), "60s").Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(func() rolloutsv1.WebhookState { return webhookEntry(victim, "gpt4", "fast").State }).Should(Equal(rolloutsv1.WebhookPassed)) // the status follows the routes
		Expect(hooks.got("/slow")()).To(Equal(DefaultWebhookConcurrency), "no slow call ended")
		for _, ns := range attackers {
			Expect(getRollout(ns, "gpt4").Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		}
		// Its slot, the one over the pool's size, is back, and nobody's
		// call waited for one: no queue-depth series.
		Eventually(rec.hooks.slots.inUse, "10s").Should(Equal(DefaultWebhookConcurrency))
		Expect(testutil.CollectAndCount(metrics.QueueDepth)).To(Equal(0))
	})
})
