package plan

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// Deletion is what the finalizer of a deleted rollout does, in order: write
// Routes to the rollout's routes and release its rules, delete its header
// routes, then remove the finalizer.
type Deletion struct {
	// WriteRoutes is unset when the namespace is being deleted: the routes
	// go with it, and nothing is written.
	WriteRoutes bool
	// Routes is what the routes carry once the rollout is gone (see
	// DeletionWeights); nothing when another rollout owns a rule, which
	// the deleted rollout then only releases.
	Routes Weights
	// DeleteHeaderRoutes is set with WriteRoutes: the garbage collector
	// would delete them too (ownerReference), but only once the rollout is
	// gone; a deleted rollout sends no request to its canary by match.
	DeleteHeaderRoutes bool
}

// Delete decides a deleted rollout's last writes, from whether its
// namespace is being deleted and whether another rollout owns a rule of its
// routes.
func Delete(ro *rolloutsv1.ModelRollout, namespaceTerminating bool, conflict *Problem) Deletion {
	if namespaceTerminating {
		return Deletion{}
	}
	d := Deletion{WriteRoutes: true, DeleteHeaderRoutes: true, Routes: DeletionWeights(ro)}
	if conflict != nil {
		d.Routes = Weights{}
	}
	return d
}

// DeletionWeights is what a deleted rollout leaves in its routes: its
// canary's traffic (and any retiring backend's) back on stable while the
// canary holds traffic mid-rollout and spec.deletionPolicy is
// ReturnToStable; nothing otherwise. An Idle, Succeeded or RolledBack
// rollout, or one that holds a finished canary at 100% (waiting for
// spec.stable to move), changes no weight.
func DeletionWeights(ro *rolloutsv1.ModelRollout) Weights {
	st := &ro.Status
	if ro.Spec.DeletionPolicy == rolloutsv1.DeletionKeepWeights || st.Stable == nil {
		return Weights{}
	}
	switch st.Phase {
	case rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
	default:
		return Weights{}
	}
	if c := meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionStalled); c != nil && c.Reason == rolloutsv1.ReasonCanaryHoldsAllTraffic {
		return Weights{}
	}
	retire := append([]rolloutsv1.BackendRef(nil), st.Retiring...)
	if st.Canary != nil && st.CurrentStepIndex != nil && !SameRef(*st.Canary, *st.Stable) {
		retire = append(retire, *st.Canary)
	}
	if len(retire) == 0 {
		return Weights{}
	}
	return Weights{Stable: *st.Stable, HoldStable: true, Retire: retire}
}

// DeletionReturned is the Event of a route whose canary traffic the
// deletion returned to stable.
func DeletionReturned(route string, w Weights) Event {
	return Event{Warning: true, Reason: "TrafficReturnedOnDelete", Message: fmt.Sprintf("Rollout deleted mid-rollout: HTTPRoute %s set to %s", route, DescribeIntent(w))}
}

// DeletionWaits is the status of a deleted rollout whose routes refused the
// deletion's patch: the finalizer stays, and the status says why.
func DeletionWaits(ro *rolloutsv1.ModelRollout, rejections []string) (rolloutsv1.ModelRolloutStatus, string) {
	msg := "Deletion waits: returning the canary's traffic to stable was rejected: " + strings.Join(rejections, "; ")
	st := ro.Status.DeepCopy()
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: rolloutsv1.ConditionRoutesApplied, Status: metav1.ConditionFalse,
		Reason: rolloutsv1.ReasonPatchRejected, Message: Truncate(msg, MaxConditionMessage), ObservedGeneration: ro.Generation})
	st.Message = Truncate(msg, MaxMessage)
	return *st, msg
}

// RouteReleased is the Event of a route removed from spec.routes once the
// patch that released it landed, with the weight changes it made.
func RouteReleased(route string, changes []string) Event {
	msg := fmt.Sprintf("HTTPRoute %s left spec.routes: its rules are released", route)
	if len(changes) > 0 {
		msg = fmt.Sprintf("HTTPRoute %s left spec.routes: its traffic returns to stable (%s) and its rules are released", route, DescribeChanges(changes))
	}
	return Event{Reason: "RouteReleased", Message: msg}
}
