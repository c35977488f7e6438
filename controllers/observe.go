package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// routeObservation is what the reconciler saw of the rollout's routes.
type routeObservation struct {
	// Found holds every route that exists, with its managed rules that
	// resolve.
	Found []plan.ManagedRoute
	// Problem names every missing route and every managed rule that does
	// not resolve; nil when all resolve.
	Problem *plan.Problem
	// Conflict names the controller that owns a route (plan.ControlledRoute),
	// or else RuleConflict.
	Conflict *plan.Problem
	// RuleConflict names a live rollout that owns a rule this one would
	// manage.
	RuleConflict *plan.Problem
	// OwnsAny is true when this rollout owns a rule of a found route.
	OwnsAny bool
}

// observeRoutes reads every route of the rollout from the cache. Routes that
// exist are returned with the rules that resolve even when other routes or
// rules have a problem, so a rollback still reaches them.
func (r *ModelRolloutReconciler) observeRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout) (routeObservation, error) {
	var out routeObservation
	var problems []plan.Problem
	var controlled *plan.Problem
	for _, t := range ro.Spec.Routes {
		route := &gatewayv1.HTTPRoute{}
		err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: t.Name}, route)
		if apierrors.IsNotFound(err) {
			problems = append(problems, plan.Problem{Reason: rolloutsv1.ReasonRouteNotFound,
				Message: fmt.Sprintf("HTTPRoute %s not found in namespace %s", t.Name, ro.Namespace)})
			continue
		}
		if err != nil {
			return out, fmt.Errorf("get HTTPRoute %s/%s: %w", ro.Namespace, t.Name, err)
		}
		if c := plan.ControlledRoute(route, ro); c != nil && controlled == nil {
			// Another controller generates this route: it would write its
			// own weights back over the rollout's, forever.
			controlled = c
		}
		rules, ps := plan.ManagedRules(route, t, ro.Spec.Stable, ro.Name)
		problems = append(problems, ps...)
		out.Found = append(out.Found, plan.ManagedRoute{Route: route, Rules: rules})

		owners := plan.RuleOwners(route)
		for _, i := range rules {
			holder := owners[plan.RuleKey(route, i)]
			switch {
			case holder == ro.Name:
				out.OwnsAny = true
			case holder == "" || out.RuleConflict != nil:
			default:
				live, err := r.ownerLive(ctx, ro.Namespace, holder)
				if err != nil {
					return out, err
				}
				if live {
					out.RuleConflict = &plan.Problem{Reason: rolloutsv1.ReasonRouteConflict,
						Message: fmt.Sprintf("%s of HTTPRoute %s is managed by ModelRollout %s (annotation %s); this rollout writes nothing until that rollout is Idle or deleted",
							plan.RuleLabel(route, i), route.Name, holder, rolloutsv1.AnnotationRuleOwners)}
				}
			}
		}
	}
	if len(problems) > 0 {
		msgs := make([]string, 0, len(problems))
		for _, p := range problems {
			msgs = append(msgs, p.Message)
		}
		out.Problem = &plan.Problem{Reason: problems[0].Reason, Message: strings.Join(msgs, "; ")}
	}
	// A route another controller owns outranks a rule conflict with
	// another rollout: no handover between rollouts makes it writable.
	out.Conflict = out.RuleConflict
	if controlled != nil {
		out.Conflict = controlled
	}
	return out, nil
}

// ownerLive says whether the rollout named in a rule-owners annotation still
// holds the rule: it exists and is not Idle. A claim of a deleted or Idle
// rollout is void, so a crash between a rollout's last write and its
// release never locks a rule for good.
func (r *ModelRolloutReconciler) ownerLive(ctx context.Context, ns, name string) (bool, error) {
	holder := &rolloutsv1.ModelRollout{}
	err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, holder)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		// The cache may not have seen a rollout created a moment ago.
		err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, holder)
	}
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("get ModelRollout %s/%s named in a rule-owners annotation: %w", ns, name, err)
	}
	idle := holder.Spec.Canary == nil && (holder.Status.Phase == rolloutsv1.PhaseIdle || holder.Status.Phase == "") && len(holder.Status.Retiring) == 0
	return !idle, nil
}

// inferencePoolGVK is the InferencePool kind of the Gateway API Inference
// Extension, read as unstructured so that the operator does not depend on its
// Go module.
func inferencePoolGVK(group string) schema.GroupVersionKind {
	version := "v1"
	if group == rolloutsv1.InferenceGroupAlpha {
		version = "v1alpha2"
	}
	return schema.GroupVersionKind{Group: group, Version: version, Kind: "InferencePool"}
}

// inferencePoolRefused says why a gateway cannot send to the pool: a parent
// (Gateway) in status.parents that reports Accepted or ResolvedRefs False,
// e.g. an endpoint picker that does not exist. A pool no gateway has written
// status for yet is not refused: not every implementation writes it.
func inferencePoolRefused(pool *unstructured.Unstructured) string {
	// Read in place: pool is this call's own object and is not kept.
	raw, _, _ := unstructured.NestedFieldNoCopy(pool.Object, "status", "parents")
	parents, _ := raw.([]any)
	for _, p := range parents {
		parent, ok := p.(map[string]any)
		if !ok {
			continue
		}
		name, _, _ := unstructured.NestedString(parent, "parentRef", "name")
		conds, _ := parent["conditions"].([]any)
		for _, c := range conds {
			cond, ok := c.(map[string]any)
			if !ok {
				continue
			}
			t, _ := cond["type"].(string)
			status, _ := cond["status"].(string)
			if (t != "Accepted" && t != "ResolvedRefs") || status != string(metav1.ConditionFalse) {
				continue
			}
			reason, _ := cond["reason"].(string)
			msg, _ := cond["message"].(string)
			out := fmt.Sprintf("is not usable: parent %s reports %s=False (%s)", name, t, reason)
			if msg != "" {
				out += ": " + msg
			}
			return out
		}
	}
	return ""
}

// observeCanary checks that the canary exists and can serve: a Service with
// the port and at least one ready endpoint, or an existing InferencePool that
// no gateway refuses.
func (r *ModelRolloutReconciler) observeCanary(ctx context.Context, ro *rolloutsv1.ModelRollout) (*plan.Problem, error) {
	c := ro.Spec.Canary
	key := types.NamespacedName{Namespace: ro.Namespace, Name: c.Name}
	if c.KindOrDefault() == rolloutsv1.BackendKindInferencePool {
		pool := &unstructured.Unstructured{}
		pool.SetGroupVersionKind(inferencePoolGVK(c.Group))
		err := r.Get(ctx, key, pool)
		switch {
		case apierrors.IsNotFound(err):
			return &plan.Problem{Reason: rolloutsv1.ReasonBackendNotFound, Unwatched: true,
				Message: fmt.Sprintf("canary InferencePool %s not found in namespace %s", c.Name, ro.Namespace)}, nil
		case meta.IsNoMatchError(err):
			return &plan.Problem{Reason: rolloutsv1.ReasonBackendNotFound, Unwatched: true,
				Message: fmt.Sprintf("canary InferencePool %s: the InferencePool CRD (%s) is not installed", c.Name, c.Group)}, nil
		case err != nil:
			return nil, fmt.Errorf("get InferencePool %s: %w", key, err)
		}
		if why := inferencePoolRefused(pool); why != "" {
			return &plan.Problem{Reason: rolloutsv1.ReasonBackendNotAccepted, Unwatched: true,
				Message: fmt.Sprintf("canary InferencePool %s %s", c.Name, why)}, nil
		}
		n, err := r.readyPoolPods(ctx, pool)
		if err != nil && !errors.Is(err, errNoPoolSelector) {
			return nil, err
		}
		if n == 0 {
			return &plan.Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Unwatched: true,
				Message: fmt.Sprintf("canary InferencePool %s selects no ready pods", c.Name)}, nil
		}
		return nil, nil
	}

	svc := &corev1.Service{}
	if err := r.Get(ctx, key, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return &plan.Problem{Reason: rolloutsv1.ReasonBackendNotFound,
				Message: fmt.Sprintf("canary Service %s not found in namespace %s", c.Name, ro.Namespace)}, nil
		}
		return nil, fmt.Errorf("get Service %s: %w", key, err)
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if c.Port != nil && svc.Spec.Ports[i].Port == *c.Port {
			port = &svc.Spec.Ports[i]
		}
	}
	if port == nil {
		return &plan.Problem{Reason: rolloutsv1.ReasonBackendNotFound,
			Message: fmt.Sprintf("canary Service %s has no port %d", c.Name, plan.DerefPort(c.Port))}, nil
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}

	slices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, slices, client.InNamespace(ro.Namespace), client.MatchingFields{indexEndpointSliceService: c.Name}); err != nil {
		return nil, fmt.Errorf("list EndpointSlices of Service %s: %w", key, err)
	}
	if plan.ReadyEndpoints(slices.Items, port) == 0 {
		return &plan.Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints,
			Message: fmt.Sprintf("canary Service %s has no ready endpoints for port %d", c.Name, port.Port)}, nil
	}
	return nil, nil
}

// readRequests reads the manual actions from the annotations. Tokens are
// cut to the bound of the status fields that record them, so that a long
// token is recognised as handled once recorded.
func readRequests(ro *rolloutsv1.ModelRollout) plan.Requests {
	a := ro.GetAnnotations()
	req := plan.Requests{
		Promote:     plan.Truncate(a[rolloutsv1.AnnotationPromote], plan.MaxToken),
		Abort:       plan.Truncate(a[rolloutsv1.AnnotationAbort], plan.MaxToken),
		AbortReason: a[rolloutsv1.AnnotationAbortReason],

		Retry:  plan.Truncate(a[rolloutsv1.AnnotationRetry], plan.MaxToken),
		Paused: a[rolloutsv1.AnnotationPaused] == "true",

		PromoteFull:   plan.Truncate(a[rolloutsv1.AnnotationPromoteFull], plan.MaxToken),
		SkipGates:     plan.Truncate(a[rolloutsv1.AnnotationSkipGates], plan.MaxToken),
		PromoteReason: strings.TrimSpace(a[rolloutsv1.AnnotationPromoteReason]),
		RequestedBy:   strings.TrimSpace(a[rolloutsv1.AnnotationRequestedBy]),
	}
	if plan.IsAlertToken(req.Abort) {
		// The receiver writes the revision with every alert token; a later
		// abort of a person's replaces the token and leaves it stale.
		req.AbortRevision = plan.Truncate(a[rolloutsv1.AnnotationAbortRevision], 1024)
	}
	return req
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=list

// readyPoolPods counts the Ready, not terminating pods an InferencePool
// selects. It lists them from the API server with the pool's label
// selector: the operator caches no pods.
func (r *ModelRolloutReconciler) readyPoolPods(ctx context.Context, pool *unstructured.Unstructured) (int, error) {
	sel, err := poolSelector(pool)
	if err != nil {
		return 0, err
	}
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	pods := &corev1.PodList{}
	if err := reader.List(ctx, pods, client.InNamespace(pool.GetNamespace()), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return 0, fmt.Errorf("list pods of InferencePool %s/%s: %w", pool.GetNamespace(), pool.GetName(), err)
	}
	n := 0
	for i := range pods.Items {
		if podReady(&pods.Items[i]) {
			n++
		}
	}
	return n, nil
}

// errNoPoolSelector: an InferencePool without a pod selector selects no pod.
var errNoPoolSelector = errors.New("no pod selector")

// poolSelector reads an InferencePool's pod selector: spec.selector.matchLabels
// (inference.networking.k8s.io/v1) or spec.selector as a label map
// (inference.networking.x-k8s.io/v1alpha2).
func poolSelector(pool *unstructured.Unstructured) (labels.Selector, error) {
	m, found, _ := unstructured.NestedStringMap(pool.Object, "spec", "selector", "matchLabels")
	if !found {
		m, found, _ = unstructured.NestedStringMap(pool.Object, "spec", "selector")
	}
	if !found || len(m) == 0 {
		return nil, fmt.Errorf("InferencePool %s/%s: %w", pool.GetNamespace(), pool.GetName(), errNoPoolSelector)
	}
	return labels.SelectorFromSet(m), nil
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// observeCapacity counts the ready endpoints of stable and canary for
// spec.capacityFactor. A backend that cannot be counted (missing, no such
// port) counts as 0; the canary's own problems are reported by
// observeCanary.
func (r *ModelRolloutReconciler) observeCapacity(ctx context.Context, ro *rolloutsv1.ModelRollout) (*plan.Capacity, error) {
	stable, err := r.readyCount(ctx, ro.Namespace, ro.Spec.Stable)
	if err != nil {
		return nil, err
	}
	canary, err := r.readyCount(ctx, ro.Namespace, *ro.Spec.Canary)
	if err != nil {
		return nil, err
	}
	return &plan.Capacity{ReadyStable: stable, ReadyCanary: canary}, nil
}

// readyCount counts a backend's ready endpoints: a Service's ready endpoints
// on its port, or the Ready pods of an InferencePool.
func (r *ModelRolloutReconciler) readyCount(ctx context.Context, ns string, b rolloutsv1.BackendRef) (int, error) {
	key := types.NamespacedName{Namespace: ns, Name: b.Name}
	if b.KindOrDefault() == rolloutsv1.BackendKindInferencePool {
		pool := &unstructured.Unstructured{}
		pool.SetGroupVersionKind(inferencePoolGVK(b.Group))
		if err := r.Get(ctx, key, pool); err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return 0, nil
			}
			return 0, fmt.Errorf("get InferencePool %s: %w", key, err)
		}
		n, err := r.readyPoolPods(ctx, pool)
		if errors.Is(err, errNoPoolSelector) {
			return 0, nil
		}
		return n, err
	}
	svc := &corev1.Service{}
	if err := r.Get(ctx, key, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("get Service %s: %w", key, err)
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if b.Port != nil && svc.Spec.Ports[i].Port == *b.Port {
			port = &svc.Spec.Ports[i]
		}
	}
	if port == nil {
		return 0, nil
	}
	slices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, slices, client.InNamespace(ns), client.MatchingFields{indexEndpointSliceService: b.Name}); err != nil {
		return 0, fmt.Errorf("list EndpointSlices of Service %s: %w", key, err)
	}
	return plan.ReadyEndpoints(slices.Items, port), nil
}
