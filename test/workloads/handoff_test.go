package workloads

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// scaled is a Deployment's replicas and its replicas-before-scale-down
// annotation.
type scaled struct {
	Replicas int32
	Before   string
}

func deployment(ns, name string) func() scaled {
	return func() scaled {
		d := &appsv1.Deployment{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(Succeed())
		return scaled{ptr.Deref(d.Spec.Replicas, 1), d.Annotations[rolloutsv1.AnnotationReplicasBeforeScaleDown]}
	}
}

// pods counts the pods of a model, whatever their state.
func pods(ns, name string) func() int {
	return func() int {
		list := &corev1.PodList{}
		Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns), client.MatchingLabels{"app": name})).To(Succeed())
		return len(list.Items)
	}
}

func annotateRollout(ns, name, key, value string) {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Patch(suiteCtx, rollout(ns, name)(), client.RawPatch(types.MergePatchType, body))).To(Succeed())
}

func handoffRollout(ns string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	return &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "llama", Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes:         []rolloutsv1.RouteTarget{{Name: "llm"}},
			Stable:         rolloutsv1.BackendRef{Name: "vllm-v1", Port: ptr.To[int32](8000), WorkloadRef: &rolloutsv1.WorkloadRef{Name: "vllm-v1"}},
			Canary:         &rolloutsv1.BackendRef{Name: "vllm-v2", Port: ptr.To[int32](8000), WorkloadRef: &rolloutsv1.WorkloadRef{Name: "vllm-v2"}},
			Steps:          steps,
			ScaleDownDelay: dur("2s"),
		},
	}
}

var _ = Describe("Workload handoff", func() {
	It("scales the old stable Deployment to zero after success and the grace period, through a finish, and its pods go away", func() {
		ns := newNamespace()
		model(ns, "vllm-v1", 3)
		model(ns, "vllm-v2", 2)
		route(ns)
		Eventually(readyEndpoints(ns, "vllm-v1")).Should(Equal(3))
		Eventually(readyEndpoints(ns, "vllm-v2")).Should(Equal(2))
		Expect(k8sClient.Create(suiteCtx, handoffRollout(ns, rolloutsv1.Step{Weight: 100, Pause: dur("1s")}))).To(Succeed())
		Eventually(func() rolloutsv1.Phase { return rollout(ns, "llama")().Status.Phase }).Should(Equal(rolloutsv1.PhaseSucceeded))

		By("the finish, right away: the scale-down of the old stable stays scheduled")
		body, _ := json.Marshal(map[string]any{"spec": map[string]any{"canary": nil,
			"stable": map[string]any{"name": "vllm-v2", "port": 8000, "workloadRef": map[string]any{"name": "vllm-v2"}}}})
		Expect(k8sClient.Patch(suiteCtx, rollout(ns, "llama")(), client.RawPatch(types.MergePatchType, body))).To(Succeed())
		Eventually(func() rolloutsv1.Phase { return rollout(ns, "llama")().Status.Phase }).Should(Equal(rolloutsv1.PhaseIdle))
		Expect(weights(ns)()).To(Equal(map[string]int32{"vllm-v2": 100}))

		By("after the grace the Deployment is scaled to 0 through its scale subresource; the ReplicaSet controller removes the pods")
		Eventually(deployment(ns, "vllm-v1")).Should(Equal(scaled{0, "3"}))
		Eventually(pods(ns, "vllm-v1")).Should(Equal(0))
		Eventually(readyEndpoints(ns, "vllm-v1")).Should(Equal(0))
		Eventually(eventReasons(ns)).Should(ContainElement("WorkloadScaledDown"))
		Eventually(func() []rolloutsv1.WorkloadAction { return rollout(ns, "llama")().Status.Workloads }).Should(BeEmpty())
		Expect(deployment(ns, "vllm-v2")()).To(Equal(scaled{2, ""}), "the new stable keeps its replicas")
		Expect(readyEndpoints(ns, "vllm-v2")()).To(Equal(2))
	})

	It("scales the failed canary to zero after a rollback, and a retry restores its replicas and Ready pods", func() {
		ns := newNamespace()
		model(ns, "vllm-v1", 1)
		model(ns, "vllm-v2", 2)
		route(ns)
		Eventually(readyEndpoints(ns, "vllm-v2")).Should(Equal(2))
		// The first step waits for a promote.
		Expect(k8sClient.Create(suiteCtx, handoffRollout(ns, rolloutsv1.Step{Weight: 50}, rolloutsv1.Step{Weight: 100, Pause: dur("1h")}))).To(Succeed())
		Eventually(weights(ns)).Should(Equal(map[string]int32{"vllm-v1": 50, "vllm-v2": 50}))

		annotateRollout(ns, "llama", rolloutsv1.AnnotationAbort, time.Now().UTC().Format(time.RFC3339Nano))
		Eventually(func() rolloutsv1.Phase { return rollout(ns, "llama")().Status.Phase }).Should(Equal(rolloutsv1.PhaseRolledBack))
		Expect(weights(ns)()).To(Equal(map[string]int32{"vllm-v1": 100, "vllm-v2": 0}))

		By("after the grace the canary Deployment is at 0, its count in the annotation, its pods gone")
		Eventually(deployment(ns, "vllm-v2")).Should(Equal(scaled{0, "2"}))
		Eventually(pods(ns, "vllm-v2")).Should(Equal(0))
		Expect(deployment(ns, "vllm-v1")()).To(Equal(scaled{1, ""}), "the stable is never scaled down")

		By("a retry restores the 2 replicas, the pods come back Ready, and the rollout starts again")
		annotateRollout(ns, "llama", rolloutsv1.AnnotationRetry, time.Now().UTC().Format(time.RFC3339Nano))
		Eventually(deployment(ns, "vllm-v2")).Should(Equal(scaled{2, ""}))
		Eventually(readyEndpoints(ns, "vllm-v2")).Should(Equal(2))
		Eventually(eventReasons(ns)).Should(ContainElement("WorkloadRestored"))
		Eventually(weights(ns)).Should(Equal(map[string]int32{"vllm-v1": 50, "vllm-v2": 50}))
		Expect(rollout(ns, "llama")().Status.Workloads).To(BeEmpty())
	})
})
