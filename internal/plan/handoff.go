package plan

import (
	"fmt"
	"slices"
	"time"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// handoffRetry is how soon a handoff that failed is tried again.
const handoffRetry = 30 * time.Second

// handoffResult is what the reconciler did for a due action.
type HandoffResult struct {
	Action rolloutsv1.WorkloadAction
	// Done is set when the action is complete (or had nothing to do).
	Done bool
	// Replicas is the count recorded (ScaleDown) or restored (Restore).
	Replicas int32
	// Note says why nothing was done, when so.
	Note    string
	Problem *Problem
}

func sameWorkload(a, b *rolloutsv1.WorkloadRef) bool {
	return a != nil && b != nil && a.Group == b.Group && a.Kind == b.Kind && a.Name == b.Name
}

func workloadString(w rolloutsv1.WorkloadRef) string {
	gk := w.Kind
	if w.Group != "" {
		gk += "." + w.Group
	}
	return gk + "/" + w.Name
}

// workloadOf is the workload of a backend of this rollout: spec's when spec
// still names the backend (workloadRef may have been added since the
// start), else the copy in status.
func workloadOf(spec *rolloutsv1.ModelRolloutSpec, b *rolloutsv1.BackendRef) *rolloutsv1.WorkloadRef {
	if b == nil {
		return nil
	}
	if SameRef(spec.Stable, *b) && spec.Stable.WorkloadRef != nil {
		return spec.Stable.WorkloadRef
	}
	if spec.Canary != nil && SameRef(*spec.Canary, *b) && spec.Canary.WorkloadRef != nil {
		return spec.Canary.WorkloadRef
	}
	return b.WorkloadRef
}

// handoffSafe says whether an action may run. A scale-down never hits a
// workload that may get traffic: the workload of spec.stable only while the
// rollout is Succeeded (its canary holds all traffic, and without
// spec.allowStableSwing nothing sends traffic back to it until the finish
// names another stable), the workload of spec.canary only while the rollout
// is RolledBack.
func HandoffSafe(ro *rolloutsv1.ModelRollout, phase rolloutsv1.Phase, a rolloutsv1.WorkloadAction) bool {
	if a.Action != rolloutsv1.WorkloadScaleDown {
		return true
	}
	if sameWorkload(ro.Spec.Stable.WorkloadRef, &a.WorkloadRef) && (phase != rolloutsv1.PhaseSucceeded || ro.Spec.AllowStableSwing) {
		return false
	}
	if ro.Spec.Canary != nil && sameWorkload(ro.Spec.Canary.WorkloadRef, &a.WorkloadRef) && phase != rolloutsv1.PhaseRolledBack {
		return false
	}
	return true
}

func (p *planner) scaleDownDelay() time.Duration {
	return p.ro.Spec.ScaleDownDelay.Or(rolloutsv1.DefaultScaleDownDelay)
}

func (p *planner) schedule(a rolloutsv1.WorkloadAction) {
	st := p.st
	st.Workloads = slices.DeleteFunc(st.Workloads, func(o rolloutsv1.WorkloadAction) bool {
		return sameWorkload(&o.WorkloadRef, &a.WorkloadRef)
	})
	st.Workloads = append(st.Workloads, a)
	if n := len(st.Workloads); n > 8 {
		st.Workloads = st.Workloads[n-8:]
	}
}

// handoff schedules the workload actions of this decision's transition,
// folds the results of the actions the reconciler ran, drops actions that
// became unsafe, and asks to come back when the next one is due.
func (p *planner) handoff() {
	st := p.st
	spec := &p.ro.Spec
	before, after := p.ro.Status.Phase, st.Phase
	now := p.now()
	due := metav1.NewTime(p.obs.Now.Add(p.scaleDownDelay()))
	switch {
	case after == rolloutsv1.PhaseSucceeded && before != rolloutsv1.PhaseSucceeded:
		old, canary := workloadOf(spec, st.Stable), workloadOf(spec, st.Canary)
		if old != nil && !sameWorkload(old, canary) {
			p.schedule(rolloutsv1.WorkloadAction{WorkloadRef: *old, Action: rolloutsv1.WorkloadScaleDown, At: due,
				Why: "old stable " + st.Stable.Name + " after success"})
		}
	case after == rolloutsv1.PhaseRolledBack && before != rolloutsv1.PhaseRolledBack:
		canary, stable := workloadOf(spec, st.Canary), workloadOf(spec, st.Stable)
		if canary != nil && !sameWorkload(canary, stable) {
			p.schedule(rolloutsv1.WorkloadAction{WorkloadRef: *canary, Action: rolloutsv1.WorkloadScaleDown, At: due,
				Why: "failed canary " + st.Canary.Name + " after rollback"})
		}
	case before == rolloutsv1.PhaseRolledBack && after != rolloutsv1.PhaseRolledBack &&
		st.Revision != "" && st.Revision == p.ro.Status.Revision:
		// A retry: the canary gets its replicas back at once.
		if canary := workloadOf(spec, st.Canary); canary != nil {
			p.schedule(rolloutsv1.WorkloadAction{WorkloadRef: *canary, Action: rolloutsv1.WorkloadRestore, At: now,
				Why: "canary " + st.Canary.Name + " retried"})
		}
	}

	var trouble *HandoffResult
	for _, res := range p.obs.Handoff {
		i := slices.IndexFunc(st.Workloads, func(a rolloutsv1.WorkloadAction) bool {
			return sameWorkload(&a.WorkloadRef, &res.Action.WorkloadRef) && a.Action == res.Action.Action
		})
		if i < 0 {
			continue
		}
		switch {
		case res.Done:
			st.Workloads = slices.Delete(st.Workloads, i, i+1)
			w := workloadString(res.Action.WorkloadRef)
			switch {
			case res.Note != "":
				p.emit(false, "WorkloadHandoff", "%s (%s): %s", w, res.Action.Why, res.Note)
			case res.Action.Action == rolloutsv1.WorkloadScaleDown:
				p.emit(false, "WorkloadScaledDown", "Scaled %s (%s) from %d replicas to 0; %s records %d", w, res.Action.Why, res.Replicas, rolloutsv1.AnnotationReplicasBeforeScaleDown, res.Replicas)
			default:
				p.emit(false, "WorkloadRestored", "Restored %s (%s) to %d replicas", w, res.Action.Why, res.Replicas)
			}
		case res.Problem != nil && trouble == nil:
			trouble = &res
		}
	}
	st.Workloads = slices.DeleteFunc(st.Workloads, func(a rolloutsv1.WorkloadAction) bool { return !HandoffSafe(p.ro, st.Phase, a) })
	if len(st.Workloads) == 0 {
		st.Workloads = nil
	}

	if trouble != nil {
		msg := fmt.Sprintf("%s of %s (%s) not done: %s", trouble.Action.Action, workloadString(trouble.Action.WorkloadRef), trouble.Action.Why, trouble.Problem.Message)
		if c := meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionWorkloadHandoff); c == nil || c.Message != Truncate(msg, 32768) {
			p.emit(true, trouble.Problem.Reason, "%s", msg)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: rolloutsv1.ConditionWorkloadHandoff, Status: metav1.ConditionFalse,
			Reason: trouble.Problem.Reason, Message: Truncate(msg, 32768), ObservedGeneration: p.ro.Generation})
		p.requeue(handoffRetry)
	} else if len(p.obs.Handoff) > 0 || len(st.Workloads) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionWorkloadHandoff)
	}
	for _, a := range st.Workloads {
		// A due action that failed is retried after handoffRetry, not
		// at once.
		if a.At.After(p.obs.Now) || trouble == nil {
			p.requeue(a.At.Sub(p.obs.Now))
		}
	}
}

// DueWorkloads is the workload actions of status.workloads to carry out
// now: those whose time has come and that are still safe in the rollout's
// phase (HandoffSafe).
func DueWorkloads(ro *rolloutsv1.ModelRollout, now time.Time) []rolloutsv1.WorkloadAction {
	var due []rolloutsv1.WorkloadAction
	for _, a := range ro.Status.Workloads {
		if !a.At.After(now) && HandoffSafe(ro, ro.Status.Phase, a) {
			due = append(due, a)
		}
	}
	return due
}
