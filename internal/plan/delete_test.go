package plan

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func midRollout() *rolloutsv1.ModelRollout {
	ro := atStep(testRollout(), 1, 0)
	ro.Status.Stable = ro.Spec.Stable.DeepCopy()
	return ro
}

func TestDelete(t *testing.T) {
	mid := midRollout()
	d := Delete(mid, false, nil)
	expect(t, d.WriteRoutes, true)
	expect(t, d.DeleteHeaderRoutes, true)
	expect(t, d.Routes.Holds(), true)
	expect(t, d.Routes.HoldStable, true)
	expect(t, len(d.Routes.Retire), 1) // the canary

	// Another rollout owns a rule: the deleted one only releases its own.
	d = Delete(mid, false, &Problem{Reason: rolloutsv1.ReasonRouteConflict})
	expect(t, d.WriteRoutes, true)
	expect(t, d.Routes.Holds(), false)

	// The namespace goes, and the routes with it: nothing is written.
	d = Delete(mid, true, nil)
	expect(t, d.WriteRoutes || d.DeleteHeaderRoutes || d.Routes.Holds(), false)

	// KeepWeights and a rollout that is not mid-rollout leave the weights.
	keep := midRollout()
	keep.Spec.DeletionPolicy = rolloutsv1.DeletionKeepWeights
	expect(t, Delete(keep, false, nil).Routes.Holds(), false)
	done := midRollout()
	done.Status.Phase = rolloutsv1.PhaseSucceeded
	expect(t, Delete(done, false, nil).Routes.Holds(), false)
}

func TestDeletionWaits(t *testing.T) {
	ro := atStep(testRollout(), 1, 0)
	st, msg := DeletionWaits(ro, []string{"HTTPRoute r: denied", "HTTPRoute s: denied"})
	expect(t, msg, "Deletion waits: returning the canary's traffic to stable was rejected: HTTPRoute r: denied; HTTPRoute s: denied")
	expect(t, st.Message, msg)
	c := meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionRoutesApplied)
	expect(t, c != nil && c.Reason == rolloutsv1.ReasonPatchRejected, true)
	expect(t, ro.Status.Message == msg, false) // the input is left alone
}
