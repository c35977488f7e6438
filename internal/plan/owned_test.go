package plan

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// withOwner gives the first found route one ownerReference.
func withOwner(found []ManagedRoute, apiVersion, kind, name string, uid types.UID, controller *bool) []ManagedRoute {
	found[0].Route.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: controller}}
	return found
}

func TestControlledRoute(t *testing.T) {
	const self = types.UID("rollout-uid")
	tests := []struct {
		name       string
		apiVersion string
		kind       string
		uid        types.UID
		controller *bool
		want       string // the message; empty for no problem
	}{
		{name: "no owner"},
		{name: "an AIGatewayRoute controls the route", apiVersion: "aigateway.envoyproxy.io/v1alpha1", kind: "AIGatewayRoute", uid: "ai-uid", controller: ptr.To(true),
			want: "HTTPRoute ai/route-0 is managed by AIGatewayRoute ai/foo (its controller): the operator does not patch routes another controller rewrites; target the AIGatewayRoute's own weights instead"},
		{name: "an LLMInferenceService controls the route", apiVersion: "serving.kserve.io/v1alpha1", kind: "LLMInferenceService", uid: "kserve-uid", controller: ptr.To(true),
			want: "HTTPRoute ai/route-0 is managed by LLMInferenceService ai/foo (its controller): the operator does not patch routes another controller rewrites; target the LLMInferenceService's own traffic split instead"},
		{name: "an owner that is not the controller (Argo CD, Helm-like)", apiVersion: "argoproj.io/v1alpha1", kind: "Application", uid: "argo-uid", controller: ptr.To(false)},
		{name: "an owner with controller unset", apiVersion: "argoproj.io/v1alpha1", kind: "Application", uid: "argo-uid"},
		{name: "the rollout itself controls the route", apiVersion: rolloutsv1.GroupVersion.String(), kind: "ModelRollout", uid: self, controller: ptr.To(true)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			found := routesAt(10)
			if tc.kind != "" {
				found = withOwner(found, tc.apiVersion, tc.kind, "foo", tc.uid, tc.controller)
			}
			p := ControlledRoute(found[0].Route, &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{UID: self}})
			if tc.want == "" {
				if p != nil {
					t.Fatalf("got problem %q, want none", p.Message)
				}
				return
			}
			if p == nil {
				t.Fatal("got no problem")
			}
			expect(t, p.Reason, rolloutsv1.ReasonRouteOwnedByController)
			expect(t, p.Message, tc.want)
			expect(t, OwnedByController(p), true)
		})
	}
}

func TestSplitControlled(t *testing.T) {
	found := routesAt(10, 10)
	found[1].Route.OwnerReferences = []metav1.OwnerReference{{Kind: "AIGatewayRoute", Name: "foo", UID: "ai-uid", Controller: ptr.To(true)}}
	writable, left := SplitControlled(found, &rolloutsv1.ModelRollout{ObjectMeta: metav1.ObjectMeta{UID: "rollout-uid"}})
	expect(t, len(writable), 1)
	expect(t, writable[0].Route.Name, "route-0")
	expect(t, len(left), 1)
	e := DeletionLeftToController(left[0])
	expect(t, e.Reason, rolloutsv1.ReasonRouteOwnedByController)
	expect(t, strings.Contains(e.Message, "AIGatewayRoute ai/foo") && strings.Contains(e.Message, "not returned to stable"), true)
}

// ownedConflict is the problem the reconciler observes for a route an
// AIGatewayRoute controls.
func ownedConflict() *Problem {
	found := withOwner(routesAt(10), "aigateway.envoyproxy.io/v1alpha1", "AIGatewayRoute", "foo", "ai-uid", ptr.To(true))
	return ControlledRoute(found[0].Route, testRollout())
}

func TestPlanRouteOwnedByController(t *testing.T) {
	runPlanCases(t, []planCase{
		{
			name: "before the first step: waits, writes nothing, claims no weight",
			ro:   testRollout(),
			obs:  Observation{Found: routesAt(0), Conflict: ownedConflict()},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, d.WriteRoutes, false)
				expect(t, st.Phase, rolloutsv1.PhaseWaiting)
				expect(t, st.CanaryWeight, int32(0))
				expect(t, st.CurrentStepIndex == nil, true)
				expect(t, condStatus(st, "Ready"), "False/Waiting")
				expect(t, condStatus(st, "RoutesApplied"), "False/RouteOwnedByController")
				expect(t, strings.Contains(st.Message, "AIGatewayRoute ai/foo"), true)
				expect(t, hasEvent(d, rolloutsv1.ReasonRouteOwnedByController), true)
			},
		},
		{
			name: "mid-rollout, past the step's pause: writes stop, the step does not advance and its clock stops",
			ro:   atStep(testRollout(), 0, 31*time.Minute),
			obs:  Observation{Conflict: ownedConflict(), OwnsAny: true},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, d.WriteRoutes, false)
				expect(t, st.Phase, rolloutsv1.PhaseWaiting)
				expect(t, *st.CurrentStepIndex, int32(0))
				expect(t, st.CanaryWeight, int32(10))
				expect(t, d.Routes.CanaryWeight, int32(10))
				expect(t, st.StepStartedAt == nil, true)
				expect(t, condStatus(st, "RoutesApplied"), "False/RouteOwnedByController")
				expect(t, strings.Contains(st.Message, "Writes stopped at step 1/3 (canary weight 10)"), true)
				expect(t, hasEvent(d, rolloutsv1.ReasonRouteOwnedByController), true)
			},
		},
		{
			name: "mid-rollout, past the progress deadline: no rollback the routes would not carry; Stalled at the step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.Phase = rolloutsv1.PhaseWaiting
				ro.Status.StepStartedAt = nil
				ro.Status.WaitingSince = mt(t0.Add(-rolloutsv1.DefaultProgressDeadline - time.Minute))
				return ro
			}(),
			obs: Observation{Conflict: ownedConflict(), OwnsAny: true},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, d.WriteRoutes, false)
				expect(t, st.Phase, rolloutsv1.PhaseWaiting)
				expect(t, st.Rollback == nil, true)
				expect(t, st.CanaryWeight, int32(10))
				expect(t, condStatus(st, "Stalled"), "True/ProgressDeadlineExceeded")
				expect(t, strings.Contains(st.Message, "Writes stopped at step 1/3 (canary weight 10)"), true)
			},
		},
		{
			name: "an abort while a route is owned: the rollback says it is not written to the routes",
			ro:   atStep(testRollout(), 0, time.Minute),
			obs:  Observation{Conflict: ownedConflict(), OwnsAny: true, Requests: Requests{Abort: "t1", AbortReason: "bad outputs"}},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, d.WriteRoutes, false)
				expect(t, st.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, strings.Contains(st.Rollback.Message, "not written to the routes yet: "), true)
				expect(t, strings.Contains(st.Message, "AIGatewayRoute ai/foo"), true)
			},
		},
		{
			name: "handed back after waiting: the step stays and bakes its full pause again",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.Phase = rolloutsv1.PhaseWaiting
				ro.Status.StepStartedAt = nil
				ro.Status.WaitingSince = mt(t0.Add(-time.Minute))
				return ro
			}(),
			obs: Observation{OwnsAny: true},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, d.WriteRoutes, true)
				expect(t, st.Phase, rolloutsv1.PhaseProgressing)
				expect(t, *st.CurrentStepIndex, int32(0))
				expect(t, st.CanaryWeight, int32(10))
				expect(t, st.StepStartedAt != nil && st.StepStartedAt.Equal(&metav1.MicroTime{Time: t0}), true)
				expect(t, d.RequeueAfter, 30*time.Minute)
			},
		},
	})
}
