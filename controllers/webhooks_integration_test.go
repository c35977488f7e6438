package controllers

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/modelrollout/modelrollout/analysis/egress"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// hookServer is a webhook receiver whose answer the test sets.
type hookServer struct {
	*httptest.Server
	code atomic.Int32
	mu   sync.Mutex
	got  []WebhookPayload
	auth []string
}

func newHookServer(code int) *hookServer {
	h := &hookServer{}
	h.code.Store(int32(code))
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p WebhookPayload
		Expect(json.Unmarshal(body, &p)).To(Succeed(), "payload %s", body)
		h.mu.Lock()
		h.got = append(h.got, p)
		h.auth = append(h.auth, r.Header.Get("Authorization"))
		h.mu.Unlock()
		w.WriteHeader(int(h.code.Load()))
		_, _ = w.Write([]byte("answer from the test receiver\n\x1b[31m"))
	}))
	DeferCleanup(h.Close)
	return h
}

func (h *hookServer) payloads() []WebhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]WebhookPayload(nil), h.got...)
}

func (h *hookServer) calls() int { return len(h.payloads()) }

// withLoopbackEgress lets webhooks reach the test's servers on loopback.
func withLoopbackEgress(r *ModelRolloutReconciler, _ ctrl.Manager) {
	r.Egress = egress.MustNew(nil, []string{"127.0.0.0/8"})
}

func webhookEntry(ns, name, hook string) rolloutsv1.WebhookStatus {
	for _, w := range getRollout(ns, name).Status.Webhooks {
		if w.Name == hook {
			return w
		}
	}
	return rolloutsv1.WebhookStatus{}
}

var _ = Describe("Lifecycle webhooks", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v1", true)
		createBackend(ns, "vllm-gpt4-v2", true)
	})

	It("holds the start until a PreRollout webhook answers 2xx, with a bearer token from a Secret", func() {
		hook := newHookServer(http.StatusAccepted)
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hook-auth", Namespace: ns},
			Data: map[string][]byte{"token": []byte("s3cret")}})).To(Succeed())
		op := startOperator(withLoopbackEgress)
		DeferCleanup(op.stop)

		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "eval", Type: rolloutsv1.WebhookPreRollout, URL: hook.URL + "/run",
			AuthSecretRef: &rolloutsv1.LocalObjectReference{Name: "hook-auth"}, Metadata: map[string]string{"suite": "golden-v3"}}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		// 202: still running. The rollout waits, says why, and moves nothing.
		Eventually(hook.calls).Should(BeNumerically(">=", 2), "a 202 is asked again")
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(got.Status.CurrentStepIndex).To(BeNil())
		Expect(conditionMessage(got, rolloutsv1.ConditionWebhooksPassing)).To(ContainSubstring(`waiting for PreRollout webhook "eval"`))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 1}))
		Expect(webhookEntry(ns, "gpt4", "eval").ConsecutiveFailures).To(BeZero(), "a 202 is no failure")

		p := hook.payloads()[0]
		Expect(p.Type).To(Equal(rolloutsv1.WebhookPreRollout))
		Expect(p.Rollout).To(Equal("gpt4"))
		Expect(p.Namespace).To(Equal(ns))
		Expect(p.Canary).To(Equal("Service/vllm-gpt4-v2:8000"))
		Expect(p.Metadata).To(Equal(map[string]string{"suite": "golden-v3"}))
		Expect(hook.auth[0]).To(Equal("Bearer s3cret"))

		hook.code.Store(http.StatusOK)
		Eventually(routeWeights(ns, "model-header-routing", "gpt4"), time.Minute).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
		Eventually(func() string { return conditionReason(ns, "gpt4", rolloutsv1.ConditionWebhooksPassing) }).Should(Equal(rolloutsv1.ReasonWebhooksPassed))
		Expect(webhookEntry(ns, "gpt4", "eval").State).To(Equal(rolloutsv1.WebhookPassed))
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElements("WebhookPending", "WebhookPassed"))
		calls := hook.calls()
		Consistently(hook.calls, 3*time.Second).Should(Equal(calls), "a passed webhook is not called again")
	})

	It("rolls back, before any traffic moved, when a PreRollout webhook keeps failing", func() {
		hook := newHookServer(http.StatusUnprocessableEntity)
		op := startOperator(withLoopbackEgress)
		DeferCleanup(op.stop)
		weights := recordWeights(ns, "model-header-routing", "gpt4", "vllm-gpt4-v2")

		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "eval", Type: rolloutsv1.WebhookPreRollout, URL: hook.URL, FailureLimit: ptr.To[int32](2)}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Rollback.Reason).To(Equal(rolloutsv1.ReasonWebhookFailed))
		Expect(got.Status.Rollback.Message).To(ContainSubstring(`PreRollout webhook "eval" failed 2 times in a row: HTTP 422: answer from the test receiver ?`))
		Expect(got.Status.Rollback.FromWeight).To(BeZero())
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionWebhooksPassing)).To(Equal(rolloutsv1.ReasonWebhookFailed))
		Expect(hook.calls()).To(Equal(2))
		Expect(weights.seen()).NotTo(ContainElement(BeNumerically(">", 0)), "the canary never had traffic: %s", weights)
		Eventually(eventReasons(ns, "gpt4")).Should(ContainElements("WebhookFailed", "RolledBack"))

		// A retry calls it afresh; now it passes and the first step starts.
		hook.code.Store(http.StatusOK)
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationRetry: "1"})
		Eventually(routeWeights(ns, "model-header-routing", "gpt4"), time.Minute).Should(Equal(map[string]int32{"vllm-gpt4-v1": 90, "vllm-gpt4-v2": 10}))
	})

	It("refuses a webhook URL the egress policy does not allow, and says so", func() {
		op := startOperator() // no allowlist: loopback and link-local are refused
		DeferCleanup(op.stop)
		ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
		ro.Spec.Webhooks = []rolloutsv1.Webhook{{Name: "meta", Type: rolloutsv1.WebhookPreRollout,
			URL: "http://169.254.169.254/latest/meta-data/", FailureLimit: ptr.To[int32](1)}}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseRolledBack))
		msg := getRollout(ns, "gpt4").Status.Rollback.Message
		Expect(msg).To(ContainSubstring("refused by the operator's egress policy"))
		Expect(msg).To(ContainSubstring("169.254.169.254 is cloud instance metadata"))
	})

	It("holds before the last step until ConfirmPromotion answers 2xx, and notifies every transition", func() {
		confirm := newHookServer(http.StatusForbidden)
		notify := newHookServer(http.StatusOK)
		op := startOperator(withLoopbackEgress)
		DeferCleanup(op.stop)

		ro := newRollout(ns, step(10, "1s"), step(50, "1s"), step(100, "1s"))
		ro.Spec.Webhooks = []rolloutsv1.Webhook{
			{Name: "approve", Type: rolloutsv1.WebhookConfirmPromotion, URL: confirm.URL},
			{Name: "slack", Type: rolloutsv1.WebhookOnTransition, URL: notify.URL, Metadata: map[string]string{"channel": "#models"}},
		}
		Expect(k8sClient.Create(suiteCtx, ro)).To(Succeed())

		Eventually(confirm.calls, time.Minute).Should(BeNumerically(">=", 2))
		got := getRollout(ns, "gpt4")
		Expect(got.Status.Step).To(Equal("2/3"))
		Expect(got.Status.Message).To(ContainSubstring(`waiting for ConfirmPromotion webhook "approve"`))
		Expect(conditionReason(ns, "gpt4", rolloutsv1.ConditionWebhooksPassing)).To(Equal(rolloutsv1.ReasonWebhookPending))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 50, "vllm-gpt4-v2": 50}))
		Expect(confirm.payloads()[0].Step).To(Equal("2/3"))
		Expect(confirm.payloads()[0].CanaryWeight).To(BeEquivalentTo(50))

		confirm.code.Store(http.StatusOK)
		Eventually(phaseOf(ns, "gpt4"), time.Minute).Should(Equal(rolloutsv1.PhaseSucceeded))
		Expect(routeWeights(ns, "model-header-routing", "gpt4")()).To(Equal(map[string]int32{"vllm-gpt4-v1": 0, "vllm-gpt4-v2": 100}))

		// Waiting -> Progressing at the start, Progressing -> Succeeded at
		// the end: each change of phase is one notification.
		Eventually(func() []string {
			var out []string
			for _, p := range notify.payloads() {
				out = append(out, string(p.PreviousPhase)+">"+string(p.Phase))
			}
			return out
		}).Should(ContainElement("Progressing>Succeeded"))
		for _, p := range notify.payloads() {
			Expect(p.Type).To(Equal(rolloutsv1.WebhookOnTransition))
			Expect(p.Metadata).To(Equal(map[string]string{"channel": "#models"}))
			Expect(p.Reason).NotTo(BeEmpty())
			if p.Phase == rolloutsv1.PhaseSucceeded {
				Expect(p.Reason).To(Equal("Succeeded"))
				Expect(p.CanaryWeight).To(BeEquivalentTo(100))
			}
		}
	})
})
