package plan

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

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
func headerRouteFor(ro *rolloutsv1.ModelRollout, hr *rolloutsv1.HeaderRouteStatus, canary rolloutsv1.BackendRef, m ManagedRoute) (*gatewayv1.HTTPRoute, []string) {
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
				skipped = append(skipped, fmt.Sprintf("%s match %d of HTTPRoute %s", RuleLabel(user, i), j, user.Name))
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
func DesiredHeaderRoutes(ro *rolloutsv1.ModelRollout, st *rolloutsv1.ModelRolloutStatus, found []ManagedRoute) (map[string]*gatewayv1.HTTPRoute, *Problem) {
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
		return want, &Problem{Reason: rolloutsv1.ReasonNoMatchForHeaderRoute, Message: fmt.Sprintf(
			"every managed match of HTTPRoute %s already tests a header or query parameter of the step's match (%s), so no header route can take it and those requests stay on the weights; use a header name the route does not test",
			strings.Join(none, ", "), hr.Match.String())}
	}
	return want, nil
}

// headerRouteUpToDate says whether a stored header route is what the
// rollout wants: its labels, its controller and its spec.
func HeaderRouteUpToDate(live, want *gatewayv1.HTTPRoute) bool {
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

// noDataPassed says whether a gate's NoData verdict was counted as a pass:
// the evaluation records the policy it applied in status. A status written
// before it did: for a gate with a templateRef the counts say it (only a
// pass resets both, while Hold and Fail raise one of them).
func NoDataPassed(g rolloutsv1.Gate, gs rolloutsv1.GateStatus) bool {
	if gs.NoData != "" {
		return gs.NoData == rolloutsv1.NoDataPass
	}
	if g.TemplateRef == nil {
		return g.NoData == rolloutsv1.NoDataPass
	}
	return gs.ConsecutiveFailures == 0 && gs.ConsecutiveInconclusive == 0
}
