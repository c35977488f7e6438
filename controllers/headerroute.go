package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Header-routed steps. While a step has a match, the rollout owns one
// HTTPRoute per route in spec.routes (its header route). It is derived from
// status.headerRoute and the user's route alone, never from memory, so a
// restarted operator writes the same one:
//
//   - the user's parentRefs and hostnames;
//   - one rule per managed rule of the user's route, with the same name,
//     filters and timeouts, whose matches are the user's rule's matches each
//     with the step's headers and query params added (ANDed);
//   - the canary as the only backendRef.
//
// A request that the user's rule matches and that carries the step's match
// has, in the header route, the same path and method match and one more
// header (or query param) match, so Gateway API precedence (HTTPRouteRule
// .matches: Exact path, longest prefix, method, most headers, most query
// params, then oldest route, then namespace/name) gives it to the header
// route; every other request goes where it went before. A user match that
// already tests one of the step's headers or query params is left out of the
// header route: the gateway would count only its first entry of that name,
// and the two routes would tie.

// headerRouteManagedBy is the app.kubernetes.io/managed-by value of a header
// route.
const headerRouteManagedBy = "modelrollout"

// headerRouteName names the header route of a user's route: "<route>-<rollout>-match",
// cut with a hash when it would exceed the 253 characters of a name.
func headerRouteName(rollout, route string) string {
	name := route + "-" + rollout + "-match"
	if len(name) <= 253 {
		return name
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return strings.TrimRight(name[:240], "-.") + fmt.Sprintf("-%08x", h.Sum32())
}

// headerRouteNames names the header routes of every route of the rollout.
func headerRouteNames(ro *rolloutsv1.ModelRollout) []string {
	names := make([]string, 0, len(ro.Spec.Routes))
	for _, t := range ro.Spec.Routes {
		names = append(names, headerRouteName(ro.Name, t.Name))
	}
	return names
}

// headerRouteFor builds the header route for one user route, with every
// default the API server would fill in written out, so that a stored route
// compares equal to it. It returns nil when no managed match can take the
// step's match, and names the matches it left out.
func headerRouteFor(ro *rolloutsv1.ModelRollout, hr *rolloutsv1.HeaderRouteStatus, canary rolloutsv1.BackendRef, m managedRoute) (*gatewayv1.HTTPRoute, []string) {
	user := m.Route
	out := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{
			Name:      headerRouteName(ro.Name, user.Name),
			Namespace: ro.Namespace,
			Labels: map[string]string{
				rolloutsv1.LabelHeaderRouteOf:  ro.Name,
				"app.kubernetes.io/managed-by": headerRouteManagedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         rolloutsv1.GroupVersion.String(),
				Kind:               "ModelRollout",
				Name:               ro.Name,
				UID:                ro.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
	}
	out.Spec.ParentRefs = slices.Clone(user.Spec.ParentRefs)
	out.Spec.Hostnames = slices.Clone(user.Spec.Hostnames)
	var skipped []string
	for _, i := range m.Rules {
		src := user.Spec.Rules[i]
		rule := *src.DeepCopy()
		rule.Matches = nil
		matches := src.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
				Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")}}}
		}
		for j, um := range matches {
			if overlaps(um, hr.Match) {
				skipped = append(skipped, fmt.Sprintf("%s match %d of HTTPRoute %s", ruleLabel(user, i), j, user.Name))
				continue
			}
			nm := *um.DeepCopy()
			for _, h := range hr.Match.Headers {
				h.Type = ptr.To(ptr.Deref(h.Type, gatewayv1.HeaderMatchExact))
				nm.Headers = append(nm.Headers, h)
			}
			for _, q := range hr.Match.QueryParams {
				q.Type = ptr.To(ptr.Deref(q.Type, gatewayv1.QueryParamMatchExact))
				nm.QueryParams = append(nm.QueryParams, q)
			}
			rule.Matches = append(rule.Matches, nm)
		}
		if len(rule.Matches) == 0 {
			continue
		}
		rule.BackendRefs = []gatewayv1.HTTPBackendRef{canaryBackendRef(user, src, canary)}
		out.Spec.Rules = append(out.Spec.Rules, rule)
	}
	if len(out.Spec.Rules) == 0 {
		return nil, skipped
	}
	return out, skipped
}

// overlaps says whether a user's match already tests a header or query
// param that the step's match names.
func overlaps(um gatewayv1.HTTPRouteMatch, sm rolloutsv1.StepMatch) bool {
	for _, h := range sm.Headers {
		if slices.ContainsFunc(um.Headers, func(u gatewayv1.HTTPHeaderMatch) bool { return strings.EqualFold(string(u.Name), string(h.Name)) }) {
			return true
		}
	}
	for _, q := range sm.QueryParams {
		if slices.ContainsFunc(um.QueryParams, func(u gatewayv1.HTTPQueryParamMatch) bool { return u.Name == q.Name }) {
			return true
		}
	}
	return false
}

// canaryBackendRef is the header route's only backendRef: the canary's
// backendRef of the user's rule when it has one (its filters included), a
// new one otherwise, at weight 1.
func canaryBackendRef(user *gatewayv1.HTTPRoute, rule gatewayv1.HTTPRouteRule, canary rolloutsv1.BackendRef) gatewayv1.HTTPBackendRef {
	for _, ref := range rule.BackendRefs {
		if refMatches(ref.BackendObjectReference, user.Namespace, canary) {
			out := *ref.DeepCopy()
			out.Weight = ptr.To[int32](1)
			return out
		}
	}
	ref := gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{
			Group: ptr.To(gatewayv1.Group(canary.Group)),
			Kind:  ptr.To(gatewayv1.Kind(canary.KindOrDefault())),
			Name:  gatewayv1.ObjectName(canary.Name),
		},
		Weight: ptr.To[int32](1),
	}}
	if canary.Port != nil {
		ref.Port = ptr.To(gatewayv1.PortNumber(*canary.Port))
	}
	return ref
}

// desiredHeaderRoutes are the header routes the status asks for, by name,
// and a problem when some user route has no match that can take the step's
// match.
func desiredHeaderRoutes(ro *rolloutsv1.ModelRollout, st *rolloutsv1.ModelRolloutStatus, found []managedRoute) (map[string]*gatewayv1.HTTPRoute, *problem) {
	want := map[string]*gatewayv1.HTTPRoute{}
	hr := st.HeaderRoute
	if hr == nil || st.Canary == nil {
		return want, nil
	}
	var none []string
	for _, m := range found {
		route, _ := headerRouteFor(ro, hr, *st.Canary, m)
		if route == nil {
			if len(m.Rules) > 0 {
				none = append(none, m.Route.Name)
			}
			continue
		}
		want[route.Name] = route
	}
	if len(none) > 0 {
		return want, &problem{Reason: rolloutsv1.ReasonNoMatchForHeaderRoute, Message: fmt.Sprintf(
			"every managed match of HTTPRoute %s already tests a header or query parameter of the step's match (%s), so no header route can take it and those requests stay on the weights; use a header name the route does not test",
			strings.Join(none, ", "), hr.Match.String())}
	}
	return want, nil
}

// headerRouteUpToDate says whether a stored header route is what the
// rollout wants: its labels, its controller and its spec.
func headerRouteUpToDate(live, want *gatewayv1.HTTPRoute) bool {
	for k, v := range want.Labels {
		if live.Labels[k] != v {
			return false
		}
	}
	if !equality.Semantic.DeepEqual(live.OwnerReferences, want.OwnerReferences) {
		return false
	}
	return equality.Semantic.DeepEqual(live.Spec, want.Spec)
}

// observeHeaderRoutes lists the header routes of the rollout in the cache.
func (r *ModelRolloutReconciler) observeHeaderRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout) ([]*gatewayv1.HTTPRoute, error) {
	list := &gatewayv1.HTTPRouteList{}
	// By a field index of the label, not a label selector: the cache
	// would scan every route of the namespace for each rollout.
	if err := r.List(ctx, list, client.InNamespace(ro.Namespace), client.MatchingFields{indexHeaderRouteOf: ro.Name}); err != nil {
		return nil, fmt.Errorf("list header routes of ModelRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	out := make([]*gatewayv1.HTTPRoute, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// applyHeaderRoutes brings the rollout's header routes to what the status
// asks for: it creates the missing ones, restores those someone changed,
// and deletes those no longer wanted. A route of the same name that the
// rollout does not own is left alone. A problem is kept for the next
// decision (observation.HeaderRoute); retry says when to try again.
func (r *ModelRolloutReconciler) applyHeaderRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout, st *rolloutsv1.ModelRolloutStatus, found []managedRoute, owned []*gatewayv1.HTTPRoute) (retry time.Duration, err error) {
	logger := log.FromContext(ctx)
	key := client.ObjectKeyFromObject(ro)
	want, prob := desiredHeaderRoutes(ro, st, found)
	var errs []error
	var rejections []string

	for _, live := range owned {
		if _, ok := want[live.Name]; ok {
			continue
		}
		if err := r.deleteHeaderRoute(ctx, live); err != nil {
			errs = append(errs, err)
			continue
		}
		logger.Info("Deleted header route", "route", live.Name)
	}

	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w := want[name]
		i := slices.IndexFunc(owned, func(o *gatewayv1.HTTPRoute) bool { return o.Name == name })
		if i < 0 {
			other := &gatewayv1.HTTPRoute{}
			err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, other)
			switch {
			case err == nil && metav1.IsControlledBy(other, ro):
				// Ours, with its label removed: restored below.
				owned = append(owned, other)
				i = len(owned) - 1
			case err == nil:
				prob = &problem{Reason: rolloutsv1.ReasonHeaderRouteConflict, Message: fmt.Sprintf(
					"HTTPRoute %s exists and is not this rollout's header route (no label %s=%s); it is left alone and requests with %s stay on the weights: rename or delete it",
					name, rolloutsv1.LabelHeaderRouteOf, ro.Name, st.HeaderRoute.Match.String())}
				continue
			case !apierrors.IsNotFound(err):
				errs = append(errs, fmt.Errorf("get HTTPRoute %s/%s: %w", ro.Namespace, name, err))
				continue
			}
		}
		if i < 0 {
			created := w.DeepCopy()
			err := r.Create(ctx, created, client.FieldOwner(FieldOwner))
			switch {
			case err == nil:
				r.writes.wroteHeader(key, name, created.Generation, r.now())
				logger.Info("Created header route", "route", name, "match", st.HeaderRoute.Match.String())
			case apierrors.IsAlreadyExists(err):
				// The cache has not seen it yet: decide again once it has.
				retry = cacheLagRetry
			case patchRejected(err):
				rejections = append(rejections, fmt.Sprintf("HTTPRoute %s: %s", name, apiMessage(err)))
			default:
				errs = append(errs, fmt.Errorf("create HTTPRoute %s/%s: %w", ro.Namespace, name, err))
			}
			continue
		}
		live := owned[i]
		if headerRouteUpToDate(live, w) {
			continue
		}
		labels := map[string]string{}
		for k, v := range live.Labels {
			labels[k] = v
		}
		for k, v := range w.Labels {
			labels[k] = v
		}
		body, err := patchBody(live.ResourceVersion, []patchOp{
			{Op: "add", Path: "/metadata/labels", Value: labels},
			{Op: "add", Path: "/metadata/ownerReferences", Value: w.OwnerReferences},
			{Op: "add", Path: "/spec", Value: w.Spec},
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		patched := live.DeepCopy()
		err = r.Patch(ctx, patched, client.RawPatch(types.JSONPatchType, body), client.FieldOwner(FieldOwner))
		switch {
		case err == nil:
			r.writes.wroteHeader(key, name, patched.Generation, r.now())
			logger.Info("Restored header route", "route", name)
			r.event(ro, event{Warning: true, Reason: "HeaderRouteRestored", Message: fmt.Sprintf(
				"HTTPRoute %s, the header route of this rollout, differed from what the managed rules and the step's match make it (an edit of it, or of them); rewritten to send every request with %s to the canary", name, st.HeaderRoute.Match.String())})
		case apierrors.IsNotFound(err):
			// Deleted meanwhile: its delete event brings the rollout back.
		case patchRejected(err):
			rejections = append(rejections, fmt.Sprintf("HTTPRoute %s: %s", name, apiMessage(err)))
		default:
			errs = append(errs, fmt.Errorf("patch HTTPRoute %s/%s: %w", ro.Namespace, name, err))
		}
	}

	if len(rejections) > 0 {
		prob = &problem{Reason: rolloutsv1.ReasonPatchRejected, Message: "the API server rejected the header route: " + strings.Join(rejections, "; ")}
	}
	if d := r.writes.setHeaderProblem(key, prob); d > 0 {
		retry = minDuration(retry, d)
	}
	return retry, errors.Join(errs...)
}

// deleteHeaderRoute deletes a header route, only the version read (UID).
func (r *ModelRolloutReconciler) deleteHeaderRoute(ctx context.Context, route *gatewayv1.HTTPRoute) error {
	err := r.Delete(ctx, route.DeepCopy(), client.Preconditions{UID: ptr.To(route.UID)})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete HTTPRoute %s/%s: %w", route.Namespace, route.Name, err)
	}
	return nil
}

// deleteHeaderRoutes deletes every header route of a rollout (deletion of
// the rollout).
func (r *ModelRolloutReconciler) deleteHeaderRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout) error {
	owned, err := r.observeHeaderRoutes(ctx, ro)
	if err != nil {
		return err
	}
	var errs []error
	for _, route := range owned {
		if err := r.deleteHeaderRoute(ctx, route); err != nil {
			errs = append(errs, err)
			continue
		}
		log.FromContext(ctx).Info("Deleted header route of the deleted rollout", "route", route.Name)
	}
	return errors.Join(errs...)
}

// minDuration is the smaller positive duration; 0 counts as none.
func minDuration(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}
