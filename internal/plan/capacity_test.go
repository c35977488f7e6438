package plan

import (
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func TestRequiredCanary(t *testing.T) {
	cases := []struct {
		stable int
		weight int32
		factor float64
		want   int
	}{
		{8, 10, 1, 1}, {8, 25, 1, 2}, {8, 50, 1, 4}, {8, 100, 1, 8},
		{10, 30, 1, 3}, // 10 × 30 / 100 is 3, not 3.0000000000000004 → 4
		{8, 50, 0.5, 2}, {3, 50, 1, 2}, {0, 50, 1, 0}, {4, 100, 1.5, 6},
	}
	for _, c := range cases {
		if got := requiredCanary(c.stable, c.weight, c.factor); got != c.want {
			t.Errorf("requiredCanary(%d, %d, %g) = %d, want %d", c.stable, c.weight, c.factor, got, c.want)
		}
	}
}

func TestPlanCapacity(t *testing.T) {
	withFactor := func(ro *rolloutsv1.ModelRollout, f float64) *rolloutsv1.ModelRollout {
		ro.Spec.CapacityFactor = ptr.To(f)
		return ro
	}
	tests := []planCase{
		{
			name: "the first step waits until the canary can serve its share",
			ro:   withFactor(testRollout(), 1),
			obs:  Observation{Capacity: &Capacity{ReadyStable: 20, ReadyCanary: 1}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.CurrentStepIndex == nil, true)
				expect(t, d.Status.Message, "Waiting for capacity: 10% needs 2 ready canary endpoints (ceil(20 ready stable × 10% × 1)), 1 ready")
				expect(t, d.Status.Capacity.Required, int32(2))
				expect(t, d.Status.Capacity.Weight, int32(10))
				expect(t, hasEvent(d, rolloutsv1.ReasonWaitingForCapacity), true)
				expect(t, d.RequeueAfter, 10*time.Minute)
			},
		},
		{
			name: "enough capacity starts the step",
			ro:   withFactor(testRollout(), 1),
			obs:  Observation{Capacity: &Capacity{ReadyStable: 20, ReadyCanary: 2}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.Capacity == nil, true)
			},
		},
		{
			name: "an elapsed step holds at its weight while the next one lacks capacity",
			ro:   withFactor(atStep(testRollout(), 0, 31*time.Minute), 1),
			obs:  Observation{Capacity: &Capacity{ReadyStable: 8, ReadyCanary: 2}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.Message, "Step 1/3: canary at 10%, waiting for capacity: 50% needs 4 ready canary endpoints (ceil(8 ready stable × 50% × 1)), 2 ready")
				expect(t, d.Status.Capacity.Since.Time, t0)
			},
		},
		{
			name: "the hold counts toward progressDeadline: past it, a canary with traffic rolls back",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withFactor(atStep(testRollout(), 0, 2*time.Hour), 1)
				ro.Status.Capacity = &rolloutsv1.CapacityStatus{Since: *mt(t0.Add(-11 * time.Minute)), Weight: 50, Required: 4, ReadyCanary: 2, ReadyStable: 8}
				return ro
			}(),
			obs: Observation{Capacity: &Capacity{ReadyStable: 8, ReadyCanary: 2}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonProgressDeadlineExceeded)
				expect(t, d.Status.Rollback.FromWeight, int32(10))
				expect(t, d.Status.CanaryWeight, int32(0))
			},
		},
		{
			name: "past the deadline before any traffic moved, the rollout is Stalled, not rolled back",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withFactor(testRollout(), 1)
				ro.Status.Revision = ro.Spec.Revision()
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Status.Canary = ro.Spec.Canary.DeepCopy()
				ro.Status.Phase = rolloutsv1.PhaseWaiting
				ro.Status.Capacity = &rolloutsv1.CapacityStatus{Since: *mt(t0.Add(-11 * time.Minute)), Weight: 10, Required: 1}
				return ro
			}(),
			obs: Observation{Capacity: &Capacity{ReadyStable: 8, ReadyCanary: 0}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, condStatus(d.Status, "Stalled"), "True/WaitingForCapacity")
			},
		},
		{
			name: "capacity that arrives ends the wait with an Event and the step starts",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withFactor(atStep(testRollout(), 0, 2*time.Hour), 1)
				ro.Status.Capacity = &rolloutsv1.CapacityStatus{Since: *mt(t0.Add(-3 * time.Minute)), Weight: 50, Required: 4}
				return ro
			}(),
			obs: Observation{Capacity: &Capacity{ReadyStable: 8, ReadyCanary: 4}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.Capacity == nil, true)
				expect(t, hasEvent(d, "CapacityMet"), true)
			},
		},
		{
			name: "without capacityFactor the counts do not matter",
			ro:   atStep(testRollout(), 0, 31*time.Minute),
			obs:  Observation{Capacity: &Capacity{ReadyStable: 8, ReadyCanary: 0}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
			},
		},
	}
	runPlanCases(t, tests)
}
