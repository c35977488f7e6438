package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
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
func (r *ModelRolloutReconciler) applyHeaderRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout, d *plan.Decision, owned []*gatewayv1.HTTPRoute) (retry time.Duration, err error) {
	logger := log.FromContext(ctx)
	key := client.ObjectKeyFromObject(ro)
	st := &d.Status
	want, prob := d.HeaderRoutes, d.HeaderRouteProblem
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
				prob = &plan.Problem{Reason: rolloutsv1.ReasonHeaderRouteConflict, Message: fmt.Sprintf(
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
		if plan.HeaderRouteUpToDate(live, w) {
			continue
		}
		labels := map[string]string{}
		for k, v := range live.Labels {
			labels[k] = v
		}
		for k, v := range w.Labels {
			labels[k] = v
		}
		body, err := plan.PatchBody(live.ResourceVersion, []plan.PatchOp{
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
			r.event(ro, plan.Event{Warning: true, Reason: "HeaderRouteRestored", Message: fmt.Sprintf(
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
		prob = &plan.Problem{Reason: rolloutsv1.ReasonPatchRejected, Message: "the API server rejected the header route: " + strings.Join(rejections, "; ")}
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
