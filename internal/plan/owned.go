package plan

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// AIGatewayRouteKind is the kind of Envoy AI Gateway's route object, whose
// controller generates HTTPRoutes and rewrites them whole.
const AIGatewayRouteKind = "AIGatewayRoute"

// ControlledRoute returns the problem of a managed route that another
// controller owns (an ownerReference with controller: true, such as
// Envoy AI Gateway's AIGatewayRoute, KServe's LLMInferenceService or
// Knative): that controller rewrites the route whole and would put its own
// weights back over any the rollout writes, so the rollout never patches
// it. A route controlled by the rollout itself (same UID) is not refused; a
// route with owners that are not its controller (controller unset or false,
// as Argo CD or Helm-like tools record) neither. Nil when the rollout may
// manage the route.
func ControlledRoute(route *gatewayv1.HTTPRoute, rollout *rolloutsv1.ModelRollout) *Problem {
	owner := metav1.GetControllerOf(route)
	if owner == nil || (rollout.UID != "" && owner.UID == rollout.UID) {
		return nil
	}
	instead := fmt.Sprintf("target the %s's own traffic split instead", owner.Kind)
	if owner.Kind == AIGatewayRouteKind {
		instead = fmt.Sprintf("target the %s's own weights instead", owner.Kind)
	}
	return &Problem{Reason: rolloutsv1.ReasonRouteOwnedByController, Message: fmt.Sprintf(
		"HTTPRoute %s/%s is managed by %s %s/%s (its controller): the operator does not patch routes another controller rewrites; %s",
		route.Namespace, route.Name, owner.Kind, route.Namespace, owner.Name, instead)}
}

// OwnedByController says whether a problem is a route another controller
// owns (ControlledRoute).
func OwnedByController(p *Problem) bool {
	return p != nil && p.Reason == rolloutsv1.ReasonRouteOwnedByController
}

// SplitControlled separates the routes a rollout may write from those
// another controller owns (ControlledRoute), whose problems it returns.
func SplitControlled(found []ManagedRoute, rollout *rolloutsv1.ModelRollout) ([]ManagedRoute, []*Problem) {
	var writable []ManagedRoute
	var controlled []*Problem
	for _, m := range found {
		if c := ControlledRoute(m.Route, rollout); c != nil {
			controlled = append(controlled, c)
			continue
		}
		writable = append(writable, m)
	}
	return writable, controlled
}

// DeletionLeftToController is the Event of a deleted rollout's route that
// another controller owns: the finalizer does not patch it, so whatever
// weights it carries stay until its controller rewrites them.
func DeletionLeftToController(c *Problem) Event {
	return Event{Warning: true, Reason: rolloutsv1.ReasonRouteOwnedByController,
		Message: c.Message + ". The rollout was deleted: its weights in this route are not returned to stable but left to that controller"}
}
