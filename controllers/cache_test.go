package controllers

import (
	"testing"

	"github.com/modelrollout/modelrollout/internal/plan"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestCacheTransform(t *testing.T) {
	tr := CacheTransform()
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "x", Namespace: "ai", Labels: map[string]string{discoveryv1.LabelServiceName: "vllm"},
			Annotations:     map[string]string{lastApplied: `{"big":"json"}`, "team": "ml"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences: []metav1.OwnerReference{{Name: "owner"}}}
	}

	svc := &corev1.Service{ObjectMeta: meta(), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "vllm"},
		ClusterIP: "10.0.0.1", Ports: []corev1.ServicePort{{Name: "http", Port: 8000, Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To("http")}}},
		Status: corev1.ServiceStatus{Conditions: []metav1.Condition{{Type: "x"}}}}
	if _, err := tr(svc); err != nil {
		t.Fatal(err)
	}
	if svc.Annotations != nil || svc.ManagedFields != nil || svc.OwnerReferences != nil || svc.Spec.Selector != nil || svc.Spec.ClusterIP != "" || len(svc.Status.Conditions) != 0 {
		t.Errorf("Service not trimmed: %+v", svc)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 8000 || svc.Labels == nil {
		t.Errorf("Service lost what the controller reads: %+v", svc)
	}

	slice := &discoveryv1.EndpointSlice{ObjectMeta: meta(), AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.1.1"}, Hostname: ptr.To("pod"), NodeName: ptr.To("gpu-1"),
			TargetRef:  &corev1.ObjectReference{Name: "pod"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8000), AppProtocol: ptr.To("http")}}}
	if _, err := tr(slice); err != nil {
		t.Fatal(err)
	}
	e := slice.Endpoints[0]
	if e.Addresses != nil || e.Hostname != nil || e.NodeName != nil || e.TargetRef != nil || slice.Annotations != nil || slice.Ports[0].AppProtocol != nil {
		t.Errorf("EndpointSlice not trimmed: %+v", slice)
	}
	if !*e.Conditions.Ready || *e.Conditions.Terminating || *slice.Ports[0].Name != "http" || slice.Labels[discoveryv1.LabelServiceName] != "vllm" {
		t.Errorf("EndpointSlice lost what the controller reads: %+v", slice)
	}
	if plan.ReadyEndpoints([]discoveryv1.EndpointSlice{*slice}, &corev1.ServicePort{Name: "http", Port: 8000}) != 1 {
		t.Error("a trimmed slice must still count its ready endpoint")
	}

	route := &gatewayv1.HTTPRoute{ObjectMeta: meta(), Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{}}}}
	route.Annotations = map[string]string{lastApplied: "{}"}
	if _, err := tr(route); err != nil {
		t.Fatal(err)
	}
	if route.Annotations == nil || len(route.Annotations) != 0 || route.ManagedFields != nil || route.OwnerReferences == nil {
		t.Errorf("route: want an empty, non-nil annotations map (a patch then adds keys instead of replacing the live map), owner references kept: %+v", route.ObjectMeta)
	}
	if ops := plan.OwnerOps(route, "gpt4", []int{0}, "w"); len(ops) != 2 || ops[0].Path == "/metadata/annotations" || ops[1].Path == "/metadata/annotations" {
		t.Errorf("a route whose only annotation was dropped must get per-key adds: %+v", ops)
	}
	ro := newRollout("ai")
	ro.Annotations = map[string]string{lastApplied: "{}", "rollouts.modelrollout.io/abort": "t1"}
	if _, err := tr(ro); err != nil {
		t.Fatal(err)
	}
	if len(ro.Annotations) != 1 || ro.Annotations["rollouts.modelrollout.io/abort"] != "t1" {
		t.Errorf("rollout annotations: %v", ro.Annotations)
	}
}
