package controllers

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// The manager caches every Service, EndpointSlice, HTTPRoute and
// ModelRollout it may read, cluster-wide or in --watch-namespaces. Most of
// those objects belong to other workloads, so CacheTransform keeps of each
// only what the controller reads:
//   - every object loses its managedFields (read from the API server, only
//     when a drift must name its writer) and kubectl's last-applied
//     annotation, often the largest part of an object;
//   - a Service keeps its type and ports (name, port), nothing of its status;
//   - an EndpointSlice keeps its ports and each endpoint's conditions, none
//     of its addresses, topology or target references.
//
// Patches never build on what is dropped: a route patch names only weights
// and the operator's annotations, and an annotations map that had only the
// dropped key is kept, empty, so that a patch adds a key to the live map
// instead of replacing it.

// lastApplied is the annotation kubectl apply (and Argo CD) keep the
// applied object in.
const lastApplied = corev1.LastAppliedConfigAnnotation

// CacheTransform trims objects before they enter the manager's cache.
func CacheTransform() toolscache.TransformFunc {
	return func(in any) (any, error) {
		switch o := in.(type) {
		case *corev1.Service:
			trimMeta(&o.ObjectMeta, true)
			ports := make([]corev1.ServicePort, len(o.Spec.Ports))
			for i, p := range o.Spec.Ports {
				ports[i] = corev1.ServicePort{Name: p.Name, Port: p.Port}
			}
			o.Spec = corev1.ServiceSpec{Type: o.Spec.Type, Ports: ports}
			o.Status = corev1.ServiceStatus{}
		case *discoveryv1.EndpointSlice:
			trimMeta(&o.ObjectMeta, true)
			for i, e := range o.Endpoints {
				o.Endpoints[i] = discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready, Terminating: e.Conditions.Terminating}}
			}
			for i := range o.Ports {
				o.Ports[i].AppProtocol = nil
			}
		case *gatewayv1.HTTPRoute:
			trimMeta(&o.ObjectMeta, false)
		case *rolloutsv1.ModelRollout:
			trimMeta(&o.ObjectMeta, false)
		case metav1.Object:
			o.SetManagedFields(nil)
		}
		return in, nil
	}
}

// trimMeta drops managedFields and the last-applied annotation; with
// annotations, every annotation and the owner references too.
func trimMeta(m *metav1.ObjectMeta, annotations bool) {
	m.ManagedFields = nil
	switch {
	case annotations:
		m.Annotations = nil
		m.OwnerReferences = nil
	default:
		// Kept non-nil when it empties: see above.
		delete(m.Annotations, lastApplied)
	}
}
