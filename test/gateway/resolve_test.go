package gateway_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/modelrollout/modelrollout/test/gateway"
)

func service(ns, name string, ports ...corev1.ServicePort) corev1.Service {
	return corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

type ep struct {
	addr  string
	ready *bool
}

func slice(ns, name, svc string, ports []discoveryv1.EndpointPort, eps ...ep) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}})
	}
	return es
}

func port(name string, p int32) discoveryv1.EndpointPort {
	var n *string
	if name != "" {
		n = &name
	}
	return discoveryv1.EndpointPort{Name: n, Port: &p}
}

func TestResolverEndpointSliceConvention(t *testing.T) {
	services := []corev1.Service{
		service("llm", "vllm", corev1.ServicePort{Name: "http", Port: 8000, TargetPort: intstr.FromInt32(8000)},
			corev1.ServicePort{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090)}),
		service("llm", "single", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}),
		service("llm", "by-target", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromInt32(31001)}),
		service("llm", "by-target-name", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("api")}),
		service("llm", "not-ready", corev1.ServicePort{Name: "http", Port: 80}),
		service("llm", "no-slices", corev1.ServicePort{Name: "http", Port: 80}),
		service("other", "vllm", corev1.ServicePort{Name: "http", Port: 8000}),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "llm", Name: "external"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
	}
	epSlices := []discoveryv1.EndpointSlice{
		// Two slices for vllm (two local processes); the addresses are
		// documentation addresses and are never dialled.
		slice("llm", "vllm-a", "vllm", []discoveryv1.EndpointPort{port("http", 31000), port("metrics", 32000)},
			ep{"192.0.2.10", nil}, ep{"192.0.2.11", ptr.To(true)}),
		slice("llm", "vllm-b", "vllm", []discoveryv1.EndpointPort{port("http", 31002)}, ep{"192.0.2.12", nil}),
		// Not ready: ignored.
		slice("llm", "vllm-c", "vllm", []discoveryv1.EndpointPort{port("http", 31003)}, ep{"192.0.2.13", ptr.To(false)}),
		// Same Service name, other namespace: ignored for llm/vllm.
		slice("other", "vllm-x", "vllm", []discoveryv1.EndpointPort{port("http", 31009)}, ep{"192.0.2.19", nil}),
		slice("llm", "single-a", "single", []discoveryv1.EndpointPort{port("", 31004)}, ep{"192.0.2.14", nil}),
		slice("llm", "by-target-a", "by-target", []discoveryv1.EndpointPort{port("other", 31001)}, ep{"192.0.2.15", nil}),
		slice("llm", "by-target-name-a", "by-target-name", []discoveryv1.EndpointPort{port("api", 31005)}, ep{"192.0.2.16", nil}),
		slice("llm", "not-ready-a", "not-ready", []discoveryv1.EndpointPort{port("http", 31006)}, ep{"192.0.2.17", ptr.To(false)}),
	}
	resolve := gateway.NewResolver(services, epSlices)
	for _, tc := range []struct {
		ns, svc string
		port    int32
		want    []string
		err     string
	}{
		{"llm", "vllm", 8000, []string{"127.0.0.1:31000", "127.0.0.1:31002"}, ""},
		{"llm", "vllm", 9090, []string{"127.0.0.1:32000"}, ""},
		{"other", "vllm", 8000, []string{"127.0.0.1:31009"}, ""},
		{"llm", "single", 80, []string{"127.0.0.1:31004"}, ""},
		{"llm", "by-target", 80, []string{"127.0.0.1:31001"}, ""},
		{"llm", "by-target-name", 80, []string{"127.0.0.1:31005"}, ""},
		{"llm", "not-ready", 80, nil, ""},
		{"llm", "no-slices", 80, nil, ""},
		{"llm", "vllm", 8080, nil, "no port 8080"},
		{"llm", "missing", 80, nil, "not found"},
		{"llm", "external", 80, nil, "ExternalName"},
	} {
		got, err := resolve(tc.ns, tc.svc, tc.port)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s/%s:%d: error %v, want %q", tc.ns, tc.svc, tc.port, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s/%s:%d: %v, %v; want %v", tc.ns, tc.svc, tc.port, got, err, tc.want)
		}
	}
}

func TestAttachedRoutes(t *testing.T) {
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "gw", Name: "llm-gateway"},
		Spec: gatewayv1.GatewaySpec{Listeners: []gatewayv1.Listener{
			{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}, // allowedRoutes default: Same
			{Name: "all", Port: 8080, Protocol: gatewayv1.HTTPProtocolType, AllowedRoutes: &gatewayv1.AllowedRoutes{
				Namespaces: &gatewayv1.RouteNamespaces{From: ptr.To(gatewayv1.NamespacesFromAll)},
			}},
			{Name: "grpc-only", Port: 9000, Protocol: gatewayv1.HTTPProtocolType, AllowedRoutes: &gatewayv1.AllowedRoutes{
				Namespaces: &gatewayv1.RouteNamespaces{From: ptr.To(gatewayv1.NamespacesFromAll)},
				Kinds:      []gatewayv1.RouteGroupKind{{Kind: "GRPCRoute"}},
			}},
		}},
	}
	route := func(ns, name string, refs ...gatewayv1.ParentReference) gatewayv1.HTTPRoute {
		return gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: refs}},
		}
	}
	ref := func(ns, name, section string) gatewayv1.ParentReference {
		r := gatewayv1.ParentReference{Name: gatewayv1.ObjectName(name)}
		if ns != "" {
			r.Namespace = ptr.To(gatewayv1.Namespace(ns))
		}
		if section != "" {
			r.SectionName = ptr.To(gatewayv1.SectionName(section))
		}
		return r
	}
	routes := []gatewayv1.HTTPRoute{
		route("gw", "same-ns", ref("", "llm-gateway", "")),                       // yes: namespace defaults to the route's
		route("gw", "other-gw", ref("", "other", "")),                            // no
		route("llm", "other-ns", ref("gw", "llm-gateway", "")),                   // yes through listener "all"
		route("llm", "other-ns-http", ref("gw", "llm-gateway", "http")),          // no: "http" allows Same only
		route("llm", "other-ns-grpc", ref("gw", "llm-gateway", "grpc-only")),     // no: kinds
		route("llm", "wrong-ns", ref("", "llm-gateway", "")),                     // no: llm/llm-gateway
		route("gw", "two-parents", ref("", "x", ""), ref("", "llm-gateway", "")), // yes
		route("gw", "no-parents"),                                                // no
	}
	routes = append(routes, route("gw", "service-parent", ref("", "llm-gateway", "")))
	routes[len(routes)-1].Spec.ParentRefs[0].Kind = ptr.To(gatewayv1.Kind("Service"))

	var got []string
	for _, r := range gateway.AttachedRoutes(gw, routes) {
		got = append(got, r.Name)
	}
	if want := []string{"same-ns", "other-ns", "two-parents"}; !slices.Equal(got, want) {
		t.Fatalf("attached %v, want %v", got, want)
	}
	if len(gateway.AttachedRoutes(nil, routes)) != 0 {
		t.Fatal("a missing Gateway must attach nothing")
	}
}
