package plan

import (
	"time"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// roundKey identifies what a round judged: a round is used only for the
// step (and weight) it was started for, and the spec it read. A pre-traffic
// round (before the first step) is never taken for step 1, nor for another
// start of the same revision (a retry).
type RoundKey struct {
	revision   string
	generation int64
	started    time.Time
	preTraffic bool
	step       int32
	weight     int32
	stepStart  time.Time
}

func RoundKeyOf(ro *rolloutsv1.ModelRollout) RoundKey {
	return RoundKeyFor(ro.Generation, &ro.Status)
}

func RoundKeyFor(generation int64, st *rolloutsv1.ModelRolloutStatus) RoundKey {
	k := RoundKey{revision: st.Revision, generation: generation, weight: st.CanaryWeight, preTraffic: st.CurrentStepIndex == nil}
	if st.StartedAt != nil {
		k.started = st.StartedAt.Time
	}
	if st.CurrentStepIndex != nil {
		k.step = *st.CurrentStepIndex
	}
	if st.StepStartedAt != nil {
		k.stepStart = st.StepStartedAt.Time
	}
	return k
}
