package gateway

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// LoopbackHost is the only host the gateway dials; see the package doc.
const LoopbackHost = "127.0.0.1"

// ClusterName returns the Envoy cluster name of a Service port, used as the
// envoy_cluster_name label of every metric. It follows Kgateway, which names
// the cluster of a Kubernetes Service backend
// "kube_<namespace>_<service>_<port>" (for example
// "kube_default_httpbin_8000"), so gate presets written against this gateway
// also work against Kgateway's Envoy. Note that Envoy Gateway names clusters
// per route rule ("httproute/<ns>/<name>/rule/<i>") instead.
func ClusterName(namespace, service string, port int32) string {
	return fmt.Sprintf("kube_%s_%s_%d", namespace, service, port)
}

// NewResolver returns a [Resolver] over a snapshot of Services and
// EndpointSlices, implementing the convention of the package doc: the Service
// port is found by number, the EndpointSlice port by the Service port's name
// (then numeric targetPort, then named targetPort), and the gateway dials
// 127.0.0.1:<slice port> for every slice with a ready endpoint. The
// addresses in the slices are ignored. A missing Service, a missing port or an
// ExternalName Service is an error (invalid backend, 500); no ready endpoint is
// an empty result (503).
func NewResolver(services []corev1.Service, endpointSlices []discoveryv1.EndpointSlice) Resolver {
	type key struct{ ns, name string }
	svcs := make(map[key]*corev1.Service, len(services))
	for i := range services {
		s := &services[i]
		svcs[key{s.Namespace, s.Name}] = s
	}
	bySvc := map[key][]*discoveryv1.EndpointSlice{}
	for i := range endpointSlices {
		es := &endpointSlices[i]
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := key{es.Namespace, name}
		bySvc[k] = append(bySvc[k], es)
	}
	return func(namespace, service string, port int32) ([]string, error) {
		svc, ok := svcs[key{namespace, service}]
		if !ok {
			return nil, fmt.Errorf("Service not found")
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return nil, fmt.Errorf("ExternalName Services are not supported")
		}
		var sp *corev1.ServicePort
		for i := range svc.Spec.Ports {
			if svc.Spec.Ports[i].Port == port {
				sp = &svc.Spec.Ports[i]
				break
			}
		}
		if sp == nil {
			return nil, fmt.Errorf("Service has no port %d", port)
		}
		var addrs []string
		for _, es := range bySvc[key{namespace, service}] {
			p, ok := slicePort(es, sp)
			if !ok || !hasReadyEndpoint(es) {
				continue
			}
			addr := net.JoinHostPort(LoopbackHost, strconv.Itoa(int(p)))
			if !slices.Contains(addrs, addr) {
				addrs = append(addrs, addr)
			}
		}
		slices.Sort(addrs)
		return addrs, nil
	}
}

// slicePort finds the port of an EndpointSlice that serves the Service port.
func slicePort(es *discoveryv1.EndpointSlice, sp *corev1.ServicePort) (int32, bool) {
	usable := func(p discoveryv1.EndpointPort) bool {
		return p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP)
	}
	name := func(p discoveryv1.EndpointPort) string {
		if p.Name == nil {
			return ""
		}
		return *p.Name
	}
	for _, p := range es.Ports {
		if usable(p) && name(p) == sp.Name {
			return *p.Port, true
		}
	}
	for _, p := range es.Ports {
		if !usable(p) {
			continue
		}
		switch sp.TargetPort.Type {
		case intstr.Int:
			if sp.TargetPort.IntVal != 0 && *p.Port == sp.TargetPort.IntVal {
				return *p.Port, true
			}
		case intstr.String:
			if sp.TargetPort.StrVal != "" && name(p) == sp.TargetPort.StrVal {
				return *p.Port, true
			}
		}
	}
	return 0, false
}

func hasReadyEndpoint(es *discoveryv1.EndpointSlice) bool {
	for _, ep := range es.Endpoints {
		if len(ep.Addresses) > 0 && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
			return true
		}
	}
	return false
}

// AttachedRoutes returns the routes that attach to gw (see "Attachment" in the
// package doc). A nil gw attaches nothing.
func AttachedRoutes(gw *gatewayv1.Gateway, routes []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
	if gw == nil {
		return nil
	}
	var out []gatewayv1.HTTPRoute
	for i := range routes {
		if attached(gw, &routes[i]) {
			out = append(out, routes[i])
		}
	}
	return out
}

func attached(gw *gatewayv1.Gateway, route *gatewayv1.HTTPRoute) bool {
	for _, ref := range route.Spec.ParentRefs {
		if ref.Group != nil && *ref.Group != gatewayv1.GroupName {
			continue
		}
		if ref.Kind != nil && *ref.Kind != "Gateway" {
			continue
		}
		ns := route.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if ns != gw.Namespace || string(ref.Name) != gw.Name {
			continue
		}
		for li := range gw.Spec.Listeners {
			l := &gw.Spec.Listeners[li]
			if ref.SectionName != nil && *ref.SectionName != l.Name {
				continue
			}
			if ref.Port != nil && *ref.Port != l.Port {
				continue
			}
			if listenerAllows(gw, l, route) {
				return true
			}
		}
	}
	return false
}

func listenerAllows(gw *gatewayv1.Gateway, l *gatewayv1.Listener, route *gatewayv1.HTTPRoute) bool {
	if l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
		return false
	}
	from := gatewayv1.NamespacesFromSame
	if ar := l.AllowedRoutes; ar != nil {
		if ar.Namespaces != nil && ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		if len(ar.Kinds) > 0 && !slices.ContainsFunc(ar.Kinds, func(k gatewayv1.RouteGroupKind) bool {
			return k.Kind == "HTTPRoute" && (k.Group == nil || *k.Group == gatewayv1.GroupName)
		}) {
			return false
		}
	}
	switch from {
	case gatewayv1.NamespacesFromAll, gatewayv1.NamespacesFromSelector:
		return true
	case gatewayv1.NamespacesFromSame:
		return route.Namespace == gw.Namespace
	}
	return false
}
