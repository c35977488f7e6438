package workloads

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "wl-" + rand.String(6)}}
	Expect(k8sClient.Create(suiteCtx, ns)).To(Succeed())
	return ns.Name
}

// model creates a vLLM-like Deployment of the given replicas, each pod
// asking for one GPU, and its Service on port 8000.
func model(ns, name string, replicas int32) {
	labels := map[string]string{"app": name}
	Expect(k8sClient.Create(suiteCtx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:                     nodeName,
					AutomountServiceAccountToken: ptr.To(false),
					Containers: []corev1.Container{{
						Name: "vllm", Image: "vllm/vllm-openai:v0.11.0",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8000}},
						Resources: corev1.ResourceRequirements{
							Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")},
						},
					}},
				},
			},
		},
	})).To(Succeed())
	Expect(k8sClient.Create(suiteCtx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8000, TargetPort: intstr.FromInt32(8000)}}},
	})).To(Succeed())
}

// readyEndpoints counts the ready endpoints the EndpointSlice controller
// wrote for a Service.
func readyEndpoints(ns, svc string) func() int {
	return func() int {
		slices := &discoveryv1.EndpointSliceList{}
		Expect(k8sClient.List(suiteCtx, slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: svc})).To(Succeed())
		n := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					n++
				}
			}
		}
		return n
	}
}

func route(ns string) {
	Expect(k8sClient.Create(suiteCtx, &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "llm", Namespace: ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "inference-gateway"}}},
			Rules: []gatewayv1.HTTPRouteRule{{
				Name: ptr.To[gatewayv1.SectionName]("chat"),
				BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{Name: "vllm-v1", Port: ptr.To[gatewayv1.PortNumber](8000)},
				}}},
			}},
		},
	})).To(Succeed())
}

func weights(ns string) func() map[string]int32 {
	return func() map[string]int32 {
		r := &gatewayv1.HTTPRoute{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "llm"}, r)).To(Succeed())
		out := map[string]int32{}
		for _, b := range r.Spec.Rules[0].BackendRefs {
			out[string(b.Name)] = ptr.Deref(b.Weight, 1)
		}
		return out
	}
}

func rollout(ns, name string) func() *rolloutsv1.ModelRollout {
	return func() *rolloutsv1.ModelRollout {
		ro := &rolloutsv1.ModelRollout{}
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: name}, ro)).To(Succeed())
		return ro
	}
}

func eventReasons(ns string) func() []string {
	return func() []string {
		list := &eventsv1.EventList{}
		Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "ModelRollout" {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

var _ = Describe("Capacity-aware steps", func() {
	It("holds each step until the canary Deployment has ready pods for its share, and moves when it is scaled", func() {
		ns := newNamespace()
		model(ns, "vllm-v1", 4)
		model(ns, "vllm-v2", 1)
		route(ns)
		Eventually(readyEndpoints(ns, "vllm-v1")).Should(Equal(4), "the ReplicaSet controller, kwok and the EndpointSlice controller bring 4 stable pods up")
		Eventually(readyEndpoints(ns, "vllm-v2")).Should(Equal(1))

		Expect(k8sClient.Create(suiteCtx, &rolloutsv1.ModelRollout{
			ObjectMeta: metav1.ObjectMeta{Name: "llama", Namespace: ns},
			Spec: rolloutsv1.ModelRolloutSpec{
				Routes:         []rolloutsv1.RouteTarget{{Name: "llm"}},
				Stable:         rolloutsv1.BackendRef{Name: "vllm-v1", Port: ptr.To[int32](8000)},
				Canary:         &rolloutsv1.BackendRef{Name: "vllm-v2", Port: ptr.To[int32](8000)},
				Steps:          []rolloutsv1.Step{{Weight: 25, Pause: dur("1s")}, {Weight: 50, Pause: dur("1s")}, {Weight: 100, Pause: dur("1s")}},
				CapacityFactor: ptr.To(1.0),
			},
		})).To(Succeed())

		By("25% needs ceil(4 × 25%) = 1 ready canary pod: it has one, so step 1 starts; 50% needs 2: it holds")
		Eventually(weights(ns)).Should(Equal(map[string]int32{"vllm-v1": 75, "vllm-v2": 25}))
		Eventually(func() *rolloutsv1.CapacityStatus { return rollout(ns, "llama")().Status.Capacity }).ShouldNot(BeNil())
		ro := rollout(ns, "llama")()
		Expect(*ro.Status.Capacity).To(Equal(capacityOf(ro.Status.Capacity.Since, 50, 4, 1, 2)))
		Expect(ro.Status.Message).To(Equal("Step 1/3: canary at 25%, waiting for capacity: 50% needs 2 ready canary endpoints (ceil(4 ready stable × 50% × 1)), 1 ready"))
		Expect(ro.Status.Phase).To(Equal(rolloutsv1.PhaseProgressing))
		Consistently(weights(ns), "3s").Should(Equal(map[string]int32{"vllm-v1": 75, "vllm-v2": 25}))

		By("kubectl scale: a second canary pod becomes ready, and the next step starts")
		kubectl("scale", "deployment/vllm-v2", "-n", ns, "--replicas=2")
		Eventually(weights(ns)).Should(Equal(map[string]int32{"vllm-v1": 50, "vllm-v2": 50}))
		Eventually(func() string { return rollout(ns, "llama")().Status.Message }).Should(ContainSubstring("100% needs 4 ready canary endpoints"))

		kubectl("scale", "deployment/vllm-v2", "-n", ns, "--replicas=4")
		Eventually(func() rolloutsv1.Phase { return rollout(ns, "llama")().Status.Phase }).Should(Equal(rolloutsv1.PhaseSucceeded))
		Expect(weights(ns)()).To(Equal(map[string]int32{"vllm-v1": 0, "vllm-v2": 100}))
		Expect(rollout(ns, "llama")().Status.Capacity).To(BeNil())
		Eventually(eventReasons(ns)).Should(ContainElements(rolloutsv1.ReasonWaitingForCapacity, "CapacityMet"))
	})
})

func dur(s string) *rolloutsv1.Duration { d := rolloutsv1.Duration(s); return &d }

// capacityOf is the CapacityStatus expected.
func capacityOf(since metav1.Time, weight, stable, canary, required int32) rolloutsv1.CapacityStatus {
	return rolloutsv1.CapacityStatus{Since: since, Weight: weight, ReadyStable: stable, ReadyCanary: canary, Required: required}
}
