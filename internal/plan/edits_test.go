package plan

import (
	"slices"
	"strings"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// fiveSteps is the default schedule, 10/25/50/75/100, with 30m pauses.
func fiveSteps() []rolloutsv1.Step {
	return []rolloutsv1.Step{
		{Weight: 10, Pause: Dur("30m")}, {Weight: 25, Pause: Dur("30m")}, {Weight: 50, Pause: Dur("30m")},
		{Weight: 75, Pause: Dur("30m")}, {Weight: 100, Pause: Dur("30m")},
	}
}

// at25 is a rollout at step 2/5 (25%), whose routes carry 25%, 10 minutes
// into its 30m pause, with its history and the schedule it walks recorded.
func at25() *rolloutsv1.ModelRollout {
	ro := testRollout()
	ro.Spec.Steps = fiveSteps()
	atStep(ro, 1, 10*time.Minute)
	ro.Status.StepWeights = stepWeights(ro.Spec.Steps)
	ro.Status.StepPause = Dur("30m")
	ro.Status.StepHistory = []rolloutsv1.StepRecord{
		{Weight: 10, StartedAt: *umt(t0.Add(-50 * time.Minute)), EndedAt: umt(t0.Add(-10 * time.Minute))},
		{Weight: 25, StartedAt: *umt(t0.Add(-10 * time.Minute))},
	}
	return ro
}

// edited returns the rollout with new steps (weight/pause pairs), as a user
// would edit spec.steps.
func edited(ro *rolloutsv1.ModelRollout, steps ...rolloutsv1.Step) *rolloutsv1.ModelRollout {
	ro.Spec.Steps = steps
	ro.Generation++
	return ro
}

func s(w int32, pause string) rolloutsv1.Step { return rolloutsv1.Step{Weight: w, Pause: Dur(pause)} }

// next runs plan on the status of d, at now, with the routes carrying what
// d's status says.
func next(ro *rolloutsv1.ModelRollout, d Decision, now time.Time) Decision {
	ro = ro.DeepCopy()
	ro.Status = d.Status
	return Plan(ro, Observation{Now: now, Found: routesAt(d.Status.CanaryWeight)})
}

func eventMessage(d Decision, reason string) string {
	for _, e := range d.Events {
		if e.Reason == reason {
			return e.Message
		}
	}
	return ""
}

func expectSchedule(t *testing.T, st rolloutsv1.ModelRolloutStatus, weight int32, step string, ws ...int32) {
	t.Helper()
	expect(t, st.CanaryWeight, weight)
	expect(t, st.Step, step)
	if !slices.Equal(st.StepWeights, ws) {
		t.Fatalf("stepWeights %v, want %v", st.StepWeights, ws)
	}
	i := int(*st.CurrentStepIndex)
	expect(t, st.StepWeights[i], weight)
	if n := len(st.StepHistory); n == 0 || st.StepHistory[n-1].Weight != weight || st.StepHistory[n-1].EndedAt != nil {
		t.Fatalf("stepHistory %v does not end with an open record at %d%%", st.StepHistory, weight)
	}
}

func TestPlanStepEdits(t *testing.T) {
	start := t0.Add(-10 * time.Minute)
	carry := func(ro *rolloutsv1.ModelRollout) Decision {
		return Plan(ro, Observation{Now: t0, Found: routesAt(ro.Status.CanaryWeight)})
	}

	t.Run("steps shortened to 50/100 at 25%: 25% bakes its pause, then 50%, never 100% first", func(t *testing.T) {
		ro := edited(at25(), s(50, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "1/3", 25, 50, 100)
		expect(t, d.Routes.CanaryWeight, int32(25))
		expect(t, d.Status.StepStartedAt.Time, start) // the bake goes on
		expect(t, eventMessage(d, "StepsChanged"), "spec.steps changed from 10/25/50/75/100 to 50/100: canary stays at 25% (step 1/3 of 25/50/100) until it has baked its pause and gates; then the rollout goes on with step 1/2 (50%)")
		expect(t, hasEvent(d, "StepStarted"), false)

		// Announced once: the next decisions hold quietly.
		d = next(ro, d, t0.Add(time.Minute))
		expectSchedule(t, d.Status, 25, "1/3", 25, 50, 100)
		expect(t, len(d.Events), 0)
		expect(t, strings.HasPrefix(d.Status.Message, "Step 1/3: canary at 25%, next step at"), true)

		// The pause ends 30m after the start: 50%, as step 1/2.
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 50, "1/2", 50, 100)
		expect(t, d.Routes.CanaryWeight, int32(50))
		expect(t, *d.Status.CurrentStepIndex, int32(0))
		expect(t, len(d.Status.StepHistory), 3)
		expect(t, d.Status.StepHistory[1].Weight, int32(25))
		expect(t, d.Status.StepHistory[1].EndedAt != nil, true)
	})

	t.Run("the step that held the weight waits for its gates, as any step", func(t *testing.T) {
		ro := withGates(edited(at25(), s(50, "30m"), s(100, "30m")))
		d := carry(ro)
		d = next(ro, d, start.Add(31*time.Minute))
		expectSchedule(t, d.Status, 25, "1/3", 25, 50, 100)
		expect(t, d.Status.Message, `Step 1/3: canary at 25%, waiting for gate "errors" to be evaluated at this step`)
		ro2 := ro.DeepCopy()
		ro2.Status = d.Status
		ro2.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictPass, LastEvaluatedAt: mt(start.Add(31 * time.Minute))}}
		d = Plan(ro2, Observation{Now: start.Add(32 * time.Minute), Found: routesAt(25)})
		expectSchedule(t, d.Status, 50, "1/2", 50, 100)
	})

	t.Run("a promote ends the pause of a step that held the weight and waits for one", func(t *testing.T) {
		ro := at25()
		ro.Status.StepPause = nil // step 2 waited for a promote
		ro.Spec.Steps[1].Pause = nil
		ro.Status.Phase = rolloutsv1.PhasePaused
		ro = edited(ro, s(50, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "1/3", 25, 50, 100)
		expect(t, d.Status.Phase, rolloutsv1.PhasePaused)
		ro.Status = d.Status
		d = Plan(ro, Observation{Now: t0.Add(time.Minute), Found: routesAt(25), Requests: Requests{Promote: "p1"}})
		expectSchedule(t, d.Status, 50, "1/2", 50, 100)
	})

	t.Run("steps lengthened: the weight in force is a step of the new list and goes on baking as that step", func(t *testing.T) {
		ro := edited(at25(), s(10, "30m"), s(25, "30m"), s(40, "30m"), s(50, "30m"), s(75, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "2/6", 10, 25, 40, 50, 75, 100)
		expect(t, d.Status.StepStartedAt.Time, start)
		expect(t, eventMessage(d, "StepsChanged"), "spec.steps changed from 10/25/50/75/100 to 10/25/40/50/75/100: canary stays at 25%, now step 2/6, until it has baked; then step 3/6 (40%)")
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 40, "3/6", 10, 25, 40, 50, 75, 100)
	})

	t.Run("steps before the one in force removed: it keeps its weight and clock under its new index", func(t *testing.T) {
		ro := edited(at25(), s(25, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "1/2", 25, 100)
		expect(t, d.Status.StepStartedAt.Time, start)
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 100, "2/2", 25, 100)
	})

	t.Run("pauses moved between steps (the weights are strictly increasing, so a reorder moves pauses and matches): the step in force bakes its new pause", func(t *testing.T) {
		ro := edited(at25(), s(10, "30m"), s(25, "1h"), s(50, "30m"), s(75, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 50, 75, 100)
		expect(t, hasEvent(d, "StepsChanged"), false)
		expect(t, string(*d.Status.StepPause), "1h")
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 50, 75, 100)
		d = next(ro, d, start.Add(time.Hour))
		expectSchedule(t, d.Status, 50, "3/5", 10, 25, 50, 75, 100)
	})

	t.Run("re-weighted without the weight in force: held until baked, then the first step above it", func(t *testing.T) {
		ro := edited(at25(), s(10, "30m"), s(30, "5m"), s(60, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 30, 60, 100)
		// It bakes the pause it started with (30m), not the 5m of the step after it.
		d = next(ro, d, start.Add(10*time.Minute))
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 30, 60, 100)
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 30, "2/4", 10, 30, 60, 100)
		expect(t, string(*d.Status.StepPause), "5m")
	})

	t.Run("the current step's weight raised: held until baked, then the raised step", func(t *testing.T) {
		ro := edited(at25(), s(10, "30m"), s(40, "30m"), s(50, "30m"), s(75, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "2/6", 10, 25, 40, 50, 75, 100)
		expect(t, d.Routes.CanaryWeight, int32(25))
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 40, "2/5", 10, 40, 50, 75, 100)
	})

	t.Run("the current step's weight lowered: applies at once, and the step bakes its full pause", func(t *testing.T) {
		ro := edited(at25(), s(10, "30m"), s(20, "30m"), s(50, "30m"), s(75, "30m"), s(100, "30m"))
		d := Plan(ro, Observation{Now: t0, Found: routesAt(25)})
		expectSchedule(t, d.Status, 20, "2/5", 10, 20, 50, 75, 100)
		expect(t, d.Routes.CanaryWeight, int32(20))
		expect(t, len(d.Status.StepHistory), 3)
		expect(t, d.Status.StepHistory[1].Weight, int32(25))
		expect(t, d.Status.StepHistory[1].EndedAt != nil, true)
		expect(t, eventMessage(d, "StepsChanged"), "spec.steps changed from 10/25/50/75/100 to 10/20/50/75/100: canary lowered from 25% to 20% at once, as step 2/5, which bakes its full pause")
		// Its clock starts anew once the routes carry 20%.
		d = next(ro, d, t0.Add(time.Second))
		expect(t, d.Status.StepStartedAt.Time.After(start), true)
		d = next(ro, d, start.Add(30*time.Minute))
		expectSchedule(t, d.Status, 20, "2/5", 10, 20, 50, 75, 100)
	})

	t.Run("at the last step, a shortened list keeps 100% as its last step", func(t *testing.T) {
		ro := testRollout()
		ro.Spec.Steps = fiveSteps()
		atStep(ro, 4, 10*time.Minute)
		ro.Status.StepWeights = stepWeights(ro.Spec.Steps)
		ro.Status.StepHistory = []rolloutsv1.StepRecord{{Weight: 100, StartedAt: *umt(t0.Add(-10 * time.Minute))}}
		ro = edited(ro, s(50, "30m"), s(100, "30m"))
		d := carry(ro)
		expectSchedule(t, d.Status, 100, "2/2", 50, 100)
		expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
	})

	t.Run("a status without stepWeights (an earlier version) adopts the schedule quietly", func(t *testing.T) {
		ro := at25()
		ro.Status.StepWeights = nil
		d := carry(ro)
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 50, 75, 100)
		expect(t, len(d.Events), 0)
	})

	t.Run("gates added mid-step: the step waits for their first evaluation at this step", func(t *testing.T) {
		ro := withGates(at25())
		d := Plan(ro, Observation{Now: start.Add(31 * time.Minute), Found: routesAt(25)})
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 50, 75, 100)
		expect(t, d.Status.Message, `Step 2/5: canary at 25%, waiting for gate "errors" to be evaluated at this step`)
	})

	t.Run("gates removed mid-step: a step held by a gate advances once its pause is over", func(t *testing.T) {
		ro := withGates(at25())
		ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictNoData, Message: "no data", LastEvaluatedAt: mt(start.Add(30 * time.Minute))}}
		d := Plan(ro, Observation{Now: start.Add(31 * time.Minute), Found: routesAt(25)})
		expectSchedule(t, d.Status, 25, "2/5", 10, 25, 50, 75, 100)
		ro.Spec.Analysis = nil
		d = Plan(ro, Observation{Now: start.Add(31 * time.Minute), Found: routesAt(25)})
		expectSchedule(t, d.Status, 50, "3/5", 10, 25, 50, 75, 100)
	})

	t.Run("the analysis interval changed: the next evaluation follows the new interval", func(t *testing.T) {
		ro := withGates(at25())
		ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictPass, LastEvaluatedAt: mt(t0.Add(-30 * time.Second))}}
		d := carry(ro)
		expect(t, d.RequeueAfter, 30*time.Second)
		ro.Spec.Analysis.Interval = "5m"
		d = carry(ro)
		expect(t, d.RequeueAfter, 4*time.Minute+30*time.Second)
	})

	t.Run("the match of the step in force changed: the step bakes its full pause again", func(t *testing.T) {
		ro := withHeaderRoute(atStep(headerRollout(), 0, 5*time.Minute))
		ro.Status.StepWeights = stepWeights(ro.Spec.Steps)
		ro.Spec.Steps[0].Match = &rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-ab-test-group", Value: "beta"}}}
		d := Plan(ro, Observation{Now: t0, Found: routesAt(0), Owned: ownedAt(0)})
		expect(t, d.Status.HeaderRoute.Match.String(), ro.Spec.Steps[0].Match.String())
		expect(t, d.Status.StepStartedAt != nil && d.Status.StepStartedAt.Time.After(t0.Add(-5*time.Minute)), true)
		expect(t, d.Status.StepStartedAt.Time.Before(t0), false)
	})

	t.Run("the match of the step in force removed: fewer requests reach the canary, at once, and the clock goes on", func(t *testing.T) {
		// Step 2 of headerRollout has no match; the status still has one.
		ro := atStep(headerRollout(), 1, 5*time.Minute)
		ro.Status.HeaderRoute = &rolloutsv1.HeaderRouteStatus{Routes: headerRouteNames(ro), Match: rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x", Value: "y"}}}}
		d := Plan(ro, Observation{Now: t0, Found: routesAt(10), Owned: ownedAt(0)})
		expect(t, d.Status.HeaderRoute == nil, true)
		expect(t, d.Status.StepStartedAt.Time, t0.Add(-5*time.Minute))
	})

	t.Run("an edit before the routes carry the step in force changes nothing of the rule", func(t *testing.T) {
		ro := at25()
		ro.Status.StepStartedAt = nil
		ro = edited(ro, s(50, "30m"), s(100, "30m"))
		d := Plan(ro, Observation{Now: t0, Found: routesAt(10)})
		expectSchedule(t, d.Status, 25, "1/3", 25, 50, 100)
		expect(t, d.Routes.CanaryWeight, int32(25))
	})
}

// A write the API server refused leaves the rollout Waiting where its routes
// are, with the reason, before and after its first step.
func TestPlanRefusedWrite(t *testing.T) {
	refused := &Problem{Reason: rolloutsv1.ReasonPatchRejected, Message: "HTTPRoute r: canary weight is capped at 49% by policy"}

	d := Plan(testRollout(), Observation{Now: t0, Found: routesAt(0), Refused: true, Rejected: refused})
	expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
	expect(t, d.Status.CurrentStepIndex == nil, true)
	expect(t, d.Status.Step, "")
	expect(t, d.Status.CanaryWeight, int32(0))
	expect(t, d.Status.Message, refused.Message)
	expect(t, condStatus(d.Status, "RoutesApplied"), "False/PatchRejected")

	ro := atStep(testRollout(), 0, time.Hour) // its pause is over: the next step is 50%
	d = Plan(ro, Observation{Now: t0, Found: routesAt(10), Refused: true, Rejected: refused})
	expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
	expect(t, d.Status.Step, "1/3")
	expect(t, d.Status.CanaryWeight, int32(10))
	expect(t, d.Status.Message, refused.Message)
	expect(t, d.Routes.CanaryWeight, int32(10))

	conflict := &Problem{Reason: rolloutsv1.ReasonRouteConflict, Message: "rule gpt4 of HTTPRoute r is managed by ModelRollout other"}
	d = Plan(testRollout(), Observation{Now: t0, Found: routesAt(0), Conflict: conflict})
	expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
	expect(t, d.Status.CurrentStepIndex == nil, true)
	expect(t, d.Status.CanaryWeight, int32(0))
}

// An abort raised for one revision (an alert about the previous canary,
// landed once the next one runs) never rolls another revision back; one
// for this revision, or for none named, does.
func TestAbortForAnotherRevision(t *testing.T) {
	ro := atStep(testRollout(), 1, time.Minute)
	old := "Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v3:8000"
	d := Plan(ro, Observation{Now: t0, Found: routesAt(50), Requests: Requests{Abort: "alert-1", AbortReason: "alert HighErrorRate firing", AbortRevision: old}})
	expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
	expect(t, d.Status.LastHandledAbort, "alert-1")
	expect(t, hasEvent(d, "AbortIgnored"), true)
	expect(t, d.Status.CanaryWeight, int32(50))

	d = Plan(ro, Observation{Now: t0, Found: routesAt(50), Requests: Requests{Abort: "alert-2", AbortRevision: ro.Status.Revision}})
	expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
	d = Plan(ro, Observation{Now: t0, Found: routesAt(50), Requests: Requests{Abort: "manual"}})
	expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)

	// The same alert token pending when the spec names a new canary: the
	// new revision starts, untouched.
	next := atStep(testRollout(), 1, time.Minute)
	next.Spec.Canary.Name = "vllm-gpt4-v3"
	d = Plan(next, Observation{Now: t0, Found: routesAt(50), Requests: Requests{Abort: "alert-3", AbortRevision: next.Status.Revision}})
	expect(t, d.Status.Revision, next.Spec.Revision())
	expect(t, d.Status.Phase == rolloutsv1.PhaseRolledBack, false)
	expect(t, hasEvent(d, "AbortIgnored"), true)
}
