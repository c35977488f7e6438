package controllers

import (
	"context"
	"fmt"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// Routes are changed with RFC 6902 JSON patches that name only the weight of
// each managed backendRef (and, when a rule has no canary yet, append one
// backendRef) and the rule-owners annotation. Every other field is left
// exactly as stored, including fields this controller's Gateway API types do
// not know. The first operation sets metadata.resourceVersion to the version
// the patch was computed from, so a patch from a stale copy fails with a
// conflict instead of overwriting a concurrent edit.

// indexRuleOwner indexes HTTPRoutes by the rollouts their rule-owners
// annotation names.
const indexRuleOwner = "metadata.annotations.rule-owners"

// ruleOwnerKeys lists the rollouts a route's rule-owners annotation names.
func ruleOwnerKeys(o client.Object) []string {
	route, ok := o.(*gatewayv1.HTTPRoute)
	if !ok {
		return nil
	}
	var out []string
	for _, v := range plan.RuleOwners(route) {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// observeDropped returns the routes of the rollout's namespace whose rules
// it still owns although spec.routes no longer names them, with those
// rules: a route removed from spec.routes mid-rollout, whose traffic must
// return to stable (see droppedWeights) and whose rules must be released.
// A route another controller owns is left out: it is never patched.
func (r *ModelRolloutReconciler) observeDropped(ctx context.Context, ro *rolloutsv1.ModelRollout) ([]plan.ManagedRoute, error) {
	list := &gatewayv1.HTTPRouteList{}
	if err := r.List(ctx, list, client.InNamespace(ro.Namespace), client.MatchingFields{indexRuleOwner: ro.Name}); err != nil {
		return nil, fmt.Errorf("list HTTPRoutes owned by ModelRollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	var out []plan.ManagedRoute
	for i := range list.Items {
		route := &list.Items[i]
		if slices.ContainsFunc(ro.Spec.Routes, func(t rolloutsv1.RouteTarget) bool { return t.Name == route.Name }) ||
			route.Labels[rolloutsv1.LabelHeaderRouteOf] != "" {
			continue
		}
		if plan.ControlledRoute(route, ro) != nil {
			// Another controller took the route over: it is its
			// controller's to write, not this rollout's to release.
			continue
		}
		owners := plan.RuleOwners(route)
		var rules []int
		for j := range route.Spec.Rules {
			if owners[plan.RuleKey(route, j)] == ro.Name {
				rules = append(rules, j)
			}
		}
		out = append(out, plan.ManagedRoute{Route: route, Rules: rules})
	}
	return out, nil
}

// droppedPatches returns the patches that bring routes removed from
// spec.routes back to stable and release their rules.
func droppedPatches(ro *rolloutsv1.ModelRollout, dropped []plan.ManagedRoute) []routePatch {
	w := plan.DroppedWeights(&ro.Status)
	var patches []routePatch
	for _, m := range dropped {
		p := routePatch{route: m.Route, dropped: true}
		if w.Holds() {
			p.ops, p.changes = plan.WeightOps(m.Route, m.Rules, w)
		}
		p.ops = append(p.ops, plan.OwnerOps(m.Route, ro.Name, nil, "")...)
		patches = append(patches, p)
	}
	return patches
}
