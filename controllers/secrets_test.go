package controllers

import (
	"context"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/modelrollout/modelrollout/analysis"
	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// throttledSecrets answers the first reads of Secrets with 429 Too Many
// Requests, as a busy API server does, then reads through.
type throttledSecrets struct {
	client.Reader
	throttle atomic.Int32
	reads    atomic.Int32
}

func (t *throttledSecrets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		t.reads.Add(1)
		if t.throttle.Add(-1) >= 0 {
			return apierrors.NewTooManyRequests("the server is busy", 1)
		}
	}
	return t.Reader.Get(ctx, key, obj, opts...)
}

func authRollout(ns string) *rolloutsv1.ModelRollout {
	ro := newRollout(ns, step(10, "1h"), step(100, "1h"))
	ro.Spec.Analysis = &rolloutsv1.Analysis{
		Interval: "1m",
		// Nothing listens here: the gates are never due before the step's
		// first interval, so only the Secret is read.
		Prometheus: &rolloutsv1.PrometheusSource{Address: "http://127.0.0.1:9", AuthSecretRef: &rolloutsv1.LocalObjectReference{Name: "prom-auth"}},
		Gates:      []rolloutsv1.Gate{{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05), NoData: rolloutsv1.NoDataHold, FailureLimit: 1}}},
	}
	return ro
}

func createAuthSecret(ns string) {
	Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "prom-auth", Namespace: ns},
		Data:       map[string][]byte{"token": []byte("t0ken")},
	})).To(Succeed())
}

var _ = Describe("Prometheus auth Secrets", func() {
	var (
		ns      string
		op      *operator
		secrets *throttledSecrets
	)
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})
	withSecrets := func(throttle int32) func(*ModelRolloutReconciler, ctrl.Manager) {
		return func(r *ModelRolloutReconciler, mgr ctrl.Manager) {
			secrets = &throttledSecrets{Reader: mgr.GetAPIReader()}
			secrets.throttle.Store(throttle)
			r.Gates = &PrometheusGates{Secrets: secrets, Clients: analysis.NewClientCache(4), Egress: loopbackEgress}
		}
	}

	It("retries a throttled Secret read with backoff instead of stalling", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		createAuthSecret(ns)
		op = startOperator(withSecrets(3))
		Expect(k8sClient.Create(suiteCtx, authRollout(ns))).To(Succeed())

		Eventually(routeWeights(ns, "model-header-routing", "gpt4")).Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Expect(secrets.reads.Load()).To(BeNumerically(">=", 4), "three throttled reads, then one that went through")
		Expect(eventReasons(ns, "gpt4")()).NotTo(ContainElement(rolloutsv1.ReasonInvalidConfig), "a throttled read is not a configuration problem")
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(BeNil(), "the status follows the routes")
	})

	It("stalls on a missing Secret and resumes by itself once it exists", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		op = startOperator(withSecrets(0))
		Expect(k8sClient.Create(suiteCtx, authRollout(ns))).To(Succeed())
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(And(Not(BeNil()), HaveField("Reason", rolloutsv1.ReasonInvalidConfig)))
		Expect(getRollout(ns, "gpt4").Status.Message).To(ContainSubstring("Prometheus auth Secret prom-auth not found"))
		Consistently(routeWeights(ns, "model-header-routing", "gpt4")).Should(Equal(map[string]int32{"vllm-gpt4-v1": 1}))

		createAuthSecret(ns)
		// No watch on Secrets: the rollout rechecks every few seconds.
		Eventually(routeWeights(ns, "model-header-routing", "gpt4"), "20s").Should(HaveKeyWithValue("vllm-gpt4-v2", int32(10)))
		Eventually(conditionOf(ns, "gpt4", rolloutsv1.ConditionStalled)).Should(BeNil(), "the status follows the routes")
	})
})
