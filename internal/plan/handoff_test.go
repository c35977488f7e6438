package plan

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func handoffTestRollout() *rolloutsv1.ModelRollout {
	ro := atStep(testRollout(), 2, 5*time.Hour)
	ro.Spec.Stable.WorkloadRef = &rolloutsv1.WorkloadRef{Group: "apps", Kind: "Deployment", Name: "v1"}
	ro.Spec.Canary.WorkloadRef = &rolloutsv1.WorkloadRef{Group: "apps", Kind: "Deployment", Name: "v2"}
	return ro
}

func TestPlanHandoff(t *testing.T) {
	// Success schedules the old stable's scale-down after the delay.
	ro := handoffTestRollout()
	d := Plan(ro, Observation{Now: t0, Found: routesAt(100)})
	expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
	expect(t, len(d.Status.Workloads), 1)
	a := d.Status.Workloads[0]
	expect(t, a.WorkloadRef.Name, "v1")
	expect(t, a.Action, rolloutsv1.WorkloadScaleDown)
	expect(t, a.At.Time.Equal(t0.Add(rolloutsv1.DefaultScaleDownDelay)), true)
	expect(t, d.RequeueAfter, rolloutsv1.DefaultScaleDownDelay)

	// The finish keeps it: it outlives the rollout.
	ro.Status = d.Status
	ro.Spec.Stable = *ro.Spec.Canary
	ro.Spec.Canary = nil
	d = Plan(ro, Observation{Now: t0.Add(time.Minute), Found: routesAt(100)})
	expect(t, len(d.Status.Workloads), 1)
	expect(t, d.RequeueAfter, rolloutsv1.DefaultScaleDownDelay-time.Minute)

	// Done: it leaves the list, with one Event.
	ro.Status = d.Status
	d = Plan(ro, Observation{Now: t0.Add(rolloutsv1.DefaultScaleDownDelay), Handoff: []HandoffResult{{Action: a, Done: true, Replicas: 3}}})
	expect(t, len(d.Status.Workloads), 0)
	expect(t, hasEvent(d, "WorkloadScaledDown"), true)

	// Forbidden: a condition naming the fix and one Warning, not one per try.
	ro = handoffTestRollout()
	ro.Status.Phase = rolloutsv1.PhaseSucceeded
	ro.Status.CanaryWeight = 100
	ro.Status.Workloads = []rolloutsv1.WorkloadAction{a}
	forbidden := HandoffResult{Action: a, Problem: &Problem{Reason: rolloutsv1.ReasonWorkloadHandoffForbidden, Message: "the operator may not read it"}}
	d = Plan(ro, Observation{Now: t0.Add(rolloutsv1.DefaultScaleDownDelay), Found: routesAt(100), Handoff: []HandoffResult{forbidden}})
	expect(t, len(d.Status.Workloads), 1)
	expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
	expect(t, condStatus(d.Status, rolloutsv1.ConditionWorkloadHandoff), "False/"+rolloutsv1.ReasonWorkloadHandoffForbidden)
	expect(t, hasEvent(d, rolloutsv1.ReasonWorkloadHandoffForbidden), true)
	expect(t, d.RequeueAfter, handoffRetry)
	ro.Status = d.Status
	d = Plan(ro, Observation{Now: t0.Add(rolloutsv1.DefaultScaleDownDelay + handoffRetry), Found: routesAt(100), Handoff: []HandoffResult{forbidden}})
	expect(t, hasEvent(d, rolloutsv1.ReasonWorkloadHandoffForbidden), false)
	expect(t, meta.IsStatusConditionTrue(d.Status.Conditions, rolloutsv1.ConditionReady), true)

	// Rollback schedules the canary's; a retry restores it at once.
	ro = atStep(handoffTestRollout(), 0, time.Minute)
	ro.Spec.ScaleDownDelay = Dur("1m")
	ro.Status.LastHandledAbort = ""
	ro.Annotations = map[string]string{rolloutsv1.AnnotationAbort: "now"}
	d = Plan(ro, Observation{Now: t0, Found: routesAt(10), Requests: Requests{Abort: "now"}})
	expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
	expect(t, len(d.Status.Workloads), 1)
	expect(t, d.Status.Workloads[0].WorkloadRef.Name, "v2")
	expect(t, d.Status.Workloads[0].At.Time.Equal(t0.Add(time.Minute)), true)
	ro.Status = d.Status
	d = Plan(ro, Observation{Now: t0.Add(2 * time.Minute), Found: routesAt(0), Requests: Requests{Abort: "now", Retry: "again"}})
	expect(t, d.Status.Phase != rolloutsv1.PhaseRolledBack, true)
	expect(t, len(d.Status.Workloads), 1)
	expect(t, d.Status.Workloads[0].Action, rolloutsv1.WorkloadRestore)

	// A scale-down of a workload that may get traffic is dropped: the
	// canary's while it is not rolled back.
	ro = atStep(handoffTestRollout(), 0, time.Minute)
	ro.Status.Workloads = []rolloutsv1.WorkloadAction{{WorkloadRef: *ro.Spec.Canary.WorkloadRef, Action: rolloutsv1.WorkloadScaleDown}}
	d = Plan(ro, Observation{Now: t0, Found: routesAt(10)})
	expect(t, len(d.Status.Workloads), 0)
}

// The reconciler carries out what DueWorkloads names, and nothing else: an
// action before its time, or one that became unsafe (the workload it
// would scale down serves as stable again), waits.
func TestDueWorkloads(t *testing.T) {
	ro := handoffTestRollout()
	d := Plan(ro, Observation{Now: t0, Found: routesAt(100)})
	ro.Status = d.Status
	expect(t, len(DueWorkloads(ro, t0)), 0)
	due := DueWorkloads(ro, t0.Add(rolloutsv1.DefaultScaleDownDelay))
	expect(t, len(due), 1)
	expect(t, due[0].WorkloadRef.Name, "v1")
	// The old stable named as stable again, before the rollout succeeded:
	// scaling it down would take away the traffic's only home.
	ro.Status.Phase = rolloutsv1.PhaseProgressing
	expect(t, len(DueWorkloads(ro, t0.Add(rolloutsv1.DefaultScaleDownDelay))), 0)
}
