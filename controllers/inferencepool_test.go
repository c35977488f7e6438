package controllers

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// createInferencePool creates an InferencePool of the Inference Extension's
// v1 API (its real CRD is installed in the suite) selecting pods app=name.
func createInferencePool(ns, name string) {
	createPool(ns, name)
	createPoolPod(ns, name+"-0", name, true)
}

// createPool creates the InferencePool alone, selecting no pod yet.
func createPool(ns, name string) {
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": rolloutsv1.InferenceGroup + "/v1",
		"kind":       "InferencePool",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"selector":          map[string]any{"matchLabels": map[string]any{"app": name}},
			"targetPorts":       []any{map[string]any{"number": int64(8000)}},
			"endpointPickerRef": map[string]any{"name": name + "-epp", "port": map[string]any{"number": int64(9002)}},
		},
	}}
	Expect(k8sClient.Create(suiteCtx, pool)).To(Succeed())
}

// createPoolPod creates a pod labelled app=<app>, Running and, when ready,
// Ready: what a kubelet would report. No scheduler or kubelet runs in this
// suite (test/workloads runs real ones).
func createPoolPod(ns, name, app string, ready bool) *corev1.Pod {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	Expect(client.IgnoreAlreadyExists(k8sClient.Create(suiteCtx, sa))).To(Succeed())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: "gpu-node-0", AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}
	Expect(k8sClient.Create(suiteCtx, pod)).To(Succeed())
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	Expect(k8sClient.Status().Update(suiteCtx, pod)).To(Succeed())
	return pod
}

// setPoolParentStatus writes the status a gateway would: one parent, with
// ResolvedRefs as given.
func setPoolParentStatus(ns, name string, resolved metav1.ConditionStatus, reason, message string) {
	pool := &unstructured.Unstructured{}
	pool.SetAPIVersion(rolloutsv1.InferenceGroup + "/v1")
	pool.SetKind("InferencePool")
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, pool)).To(Succeed())
	now := metav1.Now().UTC().Format(time.RFC3339)
	cond := func(t string, s metav1.ConditionStatus, reason, message string) map[string]any {
		return map[string]any{"type": t, "status": string(s), "reason": reason, "message": message,
			"lastTransitionTime": now, "observedGeneration": pool.GetGeneration()}
	}
	Expect(unstructured.SetNestedSlice(pool.Object, []any{map[string]any{
		"parentRef": map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ai-inference-gateway"},
		"conditions": []any{
			cond("Accepted", metav1.ConditionTrue, "Accepted", ""),
			cond("ResolvedRefs", resolved, reason, message),
		},
	}}, "status", "parents")).To(Succeed())
	Expect(k8sClient.Status().Update(suiteCtx, pool)).To(Succeed())
}

// poolRefs returns the llama rule's backendRefs as group/kind/name -> weight
// (port, if any, appended).
func poolRefs(ns string) func() map[string]int32 {
	return func() map[string]int32 {
		route := &gatewayv1.HTTPRoute{}
		Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: "llm-pools"}, route)).To(Succeed())
		out := map[string]int32{}
		for _, r := range route.Spec.Rules {
			if r.Name == nil || *r.Name != "llama" {
				continue
			}
			for _, b := range r.BackendRefs {
				key := fmt.Sprintf("%s/%s/%s", ptrOr(b.Group, ""), ptrOr(b.Kind, "Service"), b.Name)
				if b.Port != nil {
					key += fmt.Sprintf(":%d", *b.Port)
				}
				w := int32(1)
				if b.Weight != nil {
					w = *b.Weight
				}
				out[key] = w
			}
		}
		return out
	}
}

func ptrOr[T ~string](p *T, def string) string {
	if p == nil {
		return def
	}
	return string(*p)
}

// poolRollout moves the llm-pools route's llama rule from InferencePool
// llama3-v1 to llama3-v2 in 10/50/100, each step held until promoted.
func poolRollout(ns string) *rolloutsv1.ModelRollout {
	pool := func(name string) rolloutsv1.BackendRef {
		return rolloutsv1.BackendRef{Group: rolloutsv1.InferenceGroup, Kind: rolloutsv1.BackendKindInferencePool, Name: name}
	}
	canary := pool("llama3-v2")
	return &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "llama3", Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "llm-pools"}},
			Stable: pool("llama3-v1"),
			Canary: &canary,
			Steps:  []rolloutsv1.Step{step(10, ""), step(50, ""), step(100, "")},
		},
	}
}

var _ = Describe("InferencePool backends", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() { ns = newNamespace() })
	AfterEach(func() {
		if op != nil {
			op.stop()
			op = nil
		}
	})

	It("waits for the canary pool, then walks the pool weights of one rule, leaving the other rule alone", func() {
		before := createRoute(ns, "inference-pool.yaml")
		before = getRoute(ns, before.Name)
		createInferencePool(ns, "llama3-v1")
		op = startOperator()

		Expect(k8sClient.Create(suiteCtx, poolRollout(ns))).To(Succeed())

		By("the canary pool does not exist yet: Waiting, no traffic moved")
		Eventually(func() string { return conditionReason(ns, "llama3", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonBackendNotFound))
		Expect(getRollout(ns, "llama3").Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(getRollout(ns, "llama3").Status.Message).To(ContainSubstring("canary InferencePool llama3-v2 not found"))
		Expect(poolRefs(ns)()).To(Equal(map[string]int32{"inference.networking.k8s.io/InferencePool/llama3-v1": 1}))

		By("creating the pool: no watch announces it, the rollout's own recheck finds it")
		createInferencePool(ns, "llama3-v2")
		Eventually(poolRefs(ns)).Should(Equal(map[string]int32{
			"inference.networking.k8s.io/InferencePool/llama3-v1": 90,
			"inference.networking.k8s.io/InferencePool/llama3-v2": 10,
		}), "the canary pool is added to the rule as an InferencePool backendRef, without a port")
		Eventually(phaseOf(ns, "llama3")).Should(Equal(rolloutsv1.PhasePaused))

		By("promoting through the schedule")
		for _, w := range []int32{50, 100} {
			annotate(ns, "llama3", map[string]string{rolloutsv1.AnnotationPromote: fmt.Sprintf("to-%d", w)})
			Eventually(poolRefs(ns)).Should(Equal(map[string]int32{
				"inference.networking.k8s.io/InferencePool/llama3-v1": 100 - w,
				"inference.networking.k8s.io/InferencePool/llama3-v2": w,
			}))
		}
		annotate(ns, "llama3", map[string]string{rolloutsv1.AnnotationPromote: "done"})
		Eventually(phaseOf(ns, "llama3")).Should(Equal(rolloutsv1.PhaseSucceeded))

		By("the other rule and the llama rule's matches and timeouts are as written")
		after := getRoute(ns, before.Name)
		Expect(after.Spec.Rules).To(HaveLen(2))
		Expect(after.Spec.Rules[1]).To(Equal(before.Spec.Rules[1]))
		Expect(after.Spec.Rules[0].Matches).To(Equal(before.Spec.Rules[0].Matches))
		Expect(after.Spec.Rules[0].Timeouts).To(Equal(before.Spec.Rules[0].Timeouts))
		Expect(after.Spec.ParentRefs).To(Equal(before.Spec.ParentRefs))
	})

	It("holds while the canary pool selects no ready pod, and moves once one is Ready", func() {
		createRoute(ns, "inference-pool.yaml")
		createInferencePool(ns, "llama3-v1")
		createPool(ns, "llama3-v2")
		pod := createPoolPod(ns, "llama3-v2-0", "llama3-v2", false)
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, poolRollout(ns))).To(Succeed())

		Eventually(func() string { return conditionReason(ns, "llama3", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonNoReadyEndpoints))
		ro := getRollout(ns, "llama3")
		Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(ro.Status.Message).To(Equal("canary InferencePool llama3-v2 selects no ready pods"))
		Expect(poolRefs(ns)()).To(Equal(map[string]int32{"inference.networking.k8s.io/InferencePool/llama3-v1": 1}))

		pod.Status.Conditions[0].Status = corev1.ConditionTrue
		Expect(k8sClient.Status().Update(suiteCtx, pod)).To(Succeed())
		Eventually(poolRefs(ns)).Should(Equal(map[string]int32{
			"inference.networking.k8s.io/InferencePool/llama3-v1": 90,
			"inference.networking.k8s.io/InferencePool/llama3-v2": 10,
		}), "no watch announces the pod; the rollout's own recheck finds it")
	})

	It("holds while a gateway reports the canary pool's references unresolved, and moves once they resolve", func() {
		createRoute(ns, "inference-pool.yaml")
		createInferencePool(ns, "llama3-v1")
		createInferencePool(ns, "llama3-v2")
		setPoolParentStatus(ns, "llama3-v2", metav1.ConditionFalse, "InvalidExtensionRef", "endpoint picker llama3-v2-epp not found")
		op = startOperator()
		Expect(k8sClient.Create(suiteCtx, poolRollout(ns))).To(Succeed())

		Eventually(func() string { return conditionReason(ns, "llama3", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonBackendNotAccepted))
		ro := getRollout(ns, "llama3")
		Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseWaiting))
		Expect(ro.Status.Message).To(Equal("canary InferencePool llama3-v2 is not usable: parent ai-inference-gateway reports ResolvedRefs=False (InvalidExtensionRef): endpoint picker llama3-v2-epp not found"))
		Consistently(poolRefs(ns)).Should(Equal(map[string]int32{"inference.networking.k8s.io/InferencePool/llama3-v1": 1}), "no traffic moves while the gateway refuses the pool")

		setPoolParentStatus(ns, "llama3-v2", metav1.ConditionTrue, "ResolvedRefs", "")
		Eventually(poolRefs(ns)).Should(Equal(map[string]int32{
			"inference.networking.k8s.io/InferencePool/llama3-v1": 90,
			"inference.networking.k8s.io/InferencePool/llama3-v2": 10,
		}))
		Eventually(func() string { return conditionReason(ns, "llama3", rolloutsv1.ConditionCanaryAvailable) }).Should(Equal(rolloutsv1.ReasonAvailable), "the status follows the routes")
	})
})
