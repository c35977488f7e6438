package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// newNamespace creates a namespace with a random name for one test.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mr-" + rand.String(8)}}
	Expect(k8sClient.Create(suiteCtx, ns)).To(Succeed())
	return ns.Name
}

// createBackend creates a Service on port 8000 and, when ready is true, an
// EndpointSlice with one ready endpoint. Addresses are in 192.0.2.0/24, a
// documentation range that nothing dials.
func createBackend(ns, name string, ready bool) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}},
	}
	Expect(k8sClient.Create(suiteCtx, svc)).To(Succeed())
	if ready {
		setEndpoints(ns, name, true)
	}
}

// setEndpoints creates or updates the Service's EndpointSlice with one
// endpoint in the given readiness.
func setEndpoints(ns, svc string, ready bool) {
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-eps", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"192.0.2.10"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000)}},
	}
	existing := &discoveryv1.EndpointSlice{}
	err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(eps), existing)
	if err == nil {
		existing.Endpoints = eps.Endpoints
		Expect(k8sClient.Update(suiteCtx, existing)).To(Succeed())
		return
	}
	Expect(client.IgnoreNotFound(err)).To(Succeed())
	Expect(k8sClient.Create(suiteCtx, eps)).To(Succeed())
}

// createRoute creates an HTTPRoute from controllers/testdata/routes.
func createRoute(ns, file string) *gatewayv1.HTTPRoute {
	raw, err := os.ReadFile(filepath.Join("testdata", "routes", file))
	Expect(err).NotTo(HaveOccurred())
	route := &gatewayv1.HTTPRoute{}
	Expect(yaml.Unmarshal(raw, route)).To(Succeed())
	route.Namespace = ns
	Expect(k8sClient.Create(suiteCtx, route)).To(Succeed())
	return route
}

func getRoute(ns, name string) *gatewayv1.HTTPRoute {
	route := &gatewayv1.HTTPRoute{}
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, route)).To(Succeed())
	return route
}

// ruleWeights returns name=weight of every backendRef of the named rule.
func ruleWeights(route *gatewayv1.HTTPRoute, rule string) map[string]int32 {
	out := map[string]int32{}
	for _, r := range route.Spec.Rules {
		if r.Name == nil || string(*r.Name) != rule {
			continue
		}
		for _, b := range r.BackendRefs {
			w := int32(1)
			if b.Weight != nil {
				w = *b.Weight
			}
			out[string(b.Name)] = w
		}
	}
	return out
}

// routeWeights reads the weights of the named rule from the API server.
func routeWeights(ns, route, rule string) func() map[string]int32 {
	return func() map[string]int32 { return ruleWeights(getRoute(ns, route), rule) }
}

// newRollout returns a rollout of vllm-gpt4-v1 -> vllm-gpt4-v2 on the
// header-routing route, with the given steps.
func newRollout(ns string, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	return &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "gpt4", Namespace: ns},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "model-header-routing", Rules: []rolloutsv1.RuleName{"gpt4"}}},
			Stable: rolloutsv1.BackendRef{Name: "vllm-gpt4-v1", Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Name: "vllm-gpt4-v2", Port: ptr.To[int32](8000)},
			Steps:  steps,
		},
	}
}

func step(weight int32, pause string) rolloutsv1.Step {
	s := rolloutsv1.Step{Weight: weight}
	if pause != "" {
		s.Pause = durationOf(pause)
	}
	return s
}

func getRollout(ns, name string) *rolloutsv1.ModelRollout {
	ro := &rolloutsv1.ModelRollout{}
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, ro)).To(Succeed())
	return ro
}

func phaseOf(ns, name string) func() rolloutsv1.Phase {
	return func() rolloutsv1.Phase { return getRollout(ns, name).Status.Phase }
}

// annotate sets annotations on a rollout, as the kubectl plugin does.
func annotate(ns, name string, kv map[string]string) {
	ro := getRollout(ns, name)
	patch := map[string]any{"metadata": map[string]any{"annotations": kv}}
	body, err := json.Marshal(patch)
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Patch(suiteCtx, ro, client.RawPatch(types.MergePatchType, body))).To(Succeed())
}

// eventReasons lists the reasons of the events recorded for a rollout.
func eventReasons(ns, name string) func() []string {
	return func() []string {
		list := &eventsv1.EventList{}
		Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Regarding.Kind == "ModelRollout" {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

// weightRecorder watches a route and records every distinct canary weight of
// one rule, in order, so a test sees every step the route went through.
type weightRecorder struct {
	mu      sync.Mutex
	weights []int32
	stop    context.CancelFunc
}

func recordWeights(ns, route, rule, canary string) *weightRecorder {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(suiteCtx)
	w, err := wc.Watch(ctx, &gatewayv1.HTTPRouteList{}, client.InNamespace(ns),
		client.MatchingFields{"metadata.name": route})
	Expect(err).NotTo(HaveOccurred())
	rec := &weightRecorder{stop: cancel}
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			r, ok := ev.Object.(*gatewayv1.HTTPRoute)
			if !ok {
				continue
			}
			wt, has := ruleWeights(r, rule)[canary]
			if !has {
				wt = 0
			}
			rec.mu.Lock()
			if n := len(rec.weights); n == 0 || rec.weights[n-1] != wt {
				rec.weights = append(rec.weights, wt)
			}
			rec.mu.Unlock()
		}
	}()
	return rec
}

func (r *weightRecorder) seen() []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int32(nil), r.weights...)
}

func (r *weightRecorder) String() string { return fmt.Sprint(r.seen()) }
