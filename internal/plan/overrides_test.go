package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// eventOf returns the decision's event with the reason, failing the test
// when there is none.
func eventOf(t *testing.T, d Decision, reason string) Event {
	t.Helper()
	for _, e := range d.Events {
		if e.Reason == reason {
			return e
		}
	}
	t.Fatalf("no %s event in %+v", reason, d.Events)
	return Event{}
}

func contains(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

// failingBelowLimit is a gate that failed once of a failureLimit of 3 in
// this step: it holds the step, it has not rolled back.
func failingBelowLimit(ro *rolloutsv1.ModelRollout) *rolloutsv1.ModelRollout {
	ro = withGates(ro)
	ro.Spec.Analysis.Gates[0].FailureLimit = 3
	ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictFail, Value: "0.2",
		ConsecutiveFailures: 1, LastEvaluatedAt: mt(t0.Add(-10 * time.Second)),
		Message: "value 0.2 outside <= 0.05 (failure 1 of 3 in a row)"}}
	return ro
}

func overrideRequests(full, skip string) Requests {
	return Requests{PromoteFull: full, SkipGates: skip, PromoteReason: "eval harness checked v2 offline", RequestedBy: "alice@example.com"}
}

func TestPlanOverrides(t *testing.T) {
	tests := []planCase{
		{
			name: "a full promote from step 1 goes to the last step's weight at once",
			ro: func() *rolloutsv1.ModelRollout {
				ro := failingBelowLimit(atStep(testRollout(), 0, 5*time.Minute))
				ro.Status.StepHistory = []rolloutsv1.StepRecord{{Weight: 10, StartedAt: *umt(t0.Add(-5 * time.Minute))}}
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("f1", "")},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, *st.CurrentStepIndex, int32(2))
				expect(t, st.Step, "3/3")
				expect(t, st.CanaryWeight, int32(100))
				expect(t, d.Routes.CanaryWeight, int32(100))
				expect(t, st.Phase, rolloutsv1.PhaseProgressing)
				expect(t, st.LastHandledPromoteFull, "f1")
				// The last step bakes as usual.
				expect(t, len(st.StepHistory), 2)
				expect(t, st.StepHistory[0].EndedAt.Time, t0)
				expect(t, st.StepHistory[1].Weight, int32(100))
				expect(t, st.Gates[0].ConsecutiveFailures, int32(0))
				expect(t, len(st.Overrides), 1)
				o := st.Overrides[0]
				expect(t, o.Kind, rolloutsv1.OverridePromoteFull)
				expect(t, o.Token, "f1")
				expect(t, o.Step, "1/3")
				expect(t, o.FromWeight, int32(10))
				expect(t, o.ToWeight, int32(100))
				expect(t, o.Reason, "eval harness checked v2 offline")
				expect(t, o.RequestedBy, "alice@example.com")
				expect(t, o.At.Time, t0)
				expect(t, o.Revision, st.Revision)
				expect(t, o.Message, `canary weight 10 -> 100 (step 3/3); passed over: pause of 30m with 25m0s left; gate "errors" holds: value 0.2 outside <= 0.05 (failure 1 of 3 in a row); step 2/3`)
				e := eventOf(t, d, "PromotedFull")
				expect(t, e.Warning, false)
				expect(t, e.Message, `Full promote at step 1/3 requested by alice@example.com: "eval harness checked v2 offline": `+o.Message)
				expect(t, hasEvent(d, "StepStarted"), true)
			},
		},
		{
			name: "skip-gates advances a step held by a gate that failed below its failureLimit, without rolling back",
			ro:   failingBelowLimit(atStep(testRollout(), 0, 31*time.Minute)),
			obs:  Observation{Requests: overrideRequests("", "s1")},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseProgressing)
				expect(t, st.Rollback == nil, true)
				expect(t, *st.CurrentStepIndex, int32(1))
				expect(t, st.CanaryWeight, int32(50))
				expect(t, st.LastHandledSkipGates, "s1")
				// The next step is judged afresh: its first failure is
				// failure 1 of 3, not 2.
				expect(t, st.Gates[0].ConsecutiveFailures, int32(0))
				expect(t, len(st.Overrides), 1)
				expect(t, st.Overrides[0].Kind, rolloutsv1.OverrideSkipGates)
				expect(t, st.Overrides[0].Token, "s1")
				expect(t, st.Overrides[0].ToWeight, int32(50))
				expect(t, st.Overrides[0].Message, `canary weight 10 -> 50 (step 2/3); passed over: gate "errors" holds: value 0.2 outside <= 0.05 (failure 1 of 3 in a row)`)
				contains(t, eventOf(t, d, "GatesSkipped").Message, `Skip of the gates at step 1/3 requested by alice@example.com: "eval harness checked v2 offline"`)
			},
		},
		{
			name: "skip-gates advances a step held by a gate without data, and ends its pause",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withGates(atStep(testRollout(), 1, 10*time.Minute))
				ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictNoData, ConsecutiveInconclusive: 4,
					Message: "canary served 3 of minRequests 50", LastEvaluatedAt: mt(t0.Add(-20 * time.Second))}}
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, d.Status.Step, "3/3")
				expect(t, d.Status.Gates[0].ConsecutiveInconclusive, int32(0))
				expect(t, d.Status.Overrides[0].Message, `canary weight 50 -> 100 (step 3/3); passed over: pause of 1h with 50m0s left; gate "errors" holds: canary served 3 of minRequests 50`)
			},
		},
		{
			name: "skip-gates passes over a gate not yet evaluated in this step and a step that waits for a promote",
			ro: func() *rolloutsv1.ModelRollout {
				ro := testRollout()
				ro.Spec.Steps[0].Pause = nil
				ro = withGates(atStep(ro, 0, 30*time.Second))
				ro.Status.Phase = rolloutsv1.PhasePaused
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, d.Status.Overrides[0].Message, `canary weight 10 -> 50 (step 2/3); passed over: the step waited for a promote; waiting for gate "errors" to be evaluated at this step`)
			},
		},
		{
			name: "skip-gates at the last step ends the rollout Succeeded",
			ro:   failingBelowLimit(atStep(testRollout(), 2, 2*time.Hour)),
			obs:  Observation{Requests: overrideRequests("", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, d.Status.Overrides[0].Message, `the rollout Succeeded at canary weight 100; passed over: gate "errors" holds: value 0.2 outside <= 0.05 (failure 1 of 3 in a row)`)
				expect(t, hasEvent(d, "Succeeded"), true)
				expect(t, hasEvent(d, "GatesSkipped"), true)
			},
		},
		{
			name: "handled tokens do nothing",
			ro: func() *rolloutsv1.ModelRollout {
				ro := failingBelowLimit(atStep(testRollout(), 0, 31*time.Minute))
				ro.Status.LastHandledPromoteFull, ro.Status.LastHandledSkipGates = "f1", "s1"
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("f1", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, len(d.Status.Overrides), 0)
				expect(t, len(d.Events), 0)
			},
		},
		{
			name: "both on a RolledBack rollout are ignored with a Warning event",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseRolledBack
				ro.Status.CanaryWeight = 0
				ro.Status.Rollback = &rolloutsv1.RollbackStatus{Reason: "GateFailed", Message: "x", At: *mt(t0)}
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("f1", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Status.LastHandledPromoteFull, "f1")
				expect(t, d.Status.LastHandledSkipGates, "s1")
				expect(t, len(d.Status.Overrides), 0)
				full := eventOf(t, d, "PromoteFullIgnored")
				expect(t, full.Warning, true)
				expect(t, full.Message, `Full promote requested by alice@example.com: "eval harness checked v2 offline" ignored: the rollout is RolledBack`)
				skip := eventOf(t, d, "SkipGatesIgnored")
				expect(t, skip.Warning, true)
				contains(t, skip.Message, "ignored: the rollout is RolledBack")
			},
		},
		{
			name: "a Succeeded rollout ignores a skip",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				return ro
			}(),
			obs: Observation{Requests: Requests{SkipGates: "s1"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
				expect(t, eventOf(t, d, "SkipGatesIgnored").Message,
					"Skip of the gates requested by an unnamed requester (no rollouts.modelrollout.io/requested-by annotation) (no reason given) ignored: the rollout is Succeeded")
			},
		},
		{
			name: "a gate that reaches its failureLimit in the same decision rolls back; the skip is ignored",
			ro:   failingBelowLimit(atStep(testRollout(), 0, 31*time.Minute)),
			obs: Observation{Requests: overrideRequests("", "s1"), Gates: &GateRound{
				Gates:    []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictFail, Value: "0.3", ConsecutiveFailures: 3, LastEvaluatedAt: mt(t0)}},
				Rollback: &Problem{Reason: rolloutsv1.ReasonGateFailed, Message: `gate "errors" value 0.3 outside <= 0.05 (3 failures in a row, failureLimit 3)`},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Status.LastHandledSkipGates, "s1")
				expect(t, len(d.Status.Overrides), 0)
				contains(t, eventOf(t, d, "SkipGatesIgnored").Message, `ignored: the rollout rolled back: gate "errors" value 0.3`)
			},
		},
		{
			name: "an override does not lift the paused annotation",
			ro:   failingBelowLimit(atStep(testRollout(), 0, 31*time.Minute)),
			obs:  Observation{Requests: func() Requests { r := overrideRequests("f1", ""); r.Paused = true; return r }()},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhasePaused)
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, d.Status.LastHandledPromoteFull, "f1")
				contains(t, eventOf(t, d, "PromoteFullIgnored").Message, "paused by the rollouts.modelrollout.io/paused annotation")
			},
		},
		{
			name: "an override does not lift spec.paused",
			ro: func() *rolloutsv1.ModelRollout {
				ro := failingBelowLimit(atStep(testRollout(), 0, 31*time.Minute))
				ro.Spec.Paused = true
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(10))
				contains(t, eventOf(t, d, "SkipGatesIgnored").Message, "paused by spec.paused")
			},
		},
		{
			name: "an override does not move traffic to an unavailable canary",
			ro:   atStep(testRollout(), 0, 31*time.Minute),
			obs: Observation{Requests: overrideRequests("f1", ""),
				Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "Service vllm-gpt4-v2 has no ready endpoints"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(10))
				contains(t, eventOf(t, d, "PromoteFullIgnored").Message, "ignored: a precondition is unmet: Service vllm-gpt4-v2 has no ready endpoints")
			},
		},
		{
			name: "a full promote at the last step is ignored and says what would help",
			ro:   atStep(testRollout(), 2, 10*time.Minute),
			obs:  Observation{Requests: overrideRequests("f1", "")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				contains(t, eventOf(t, d, "PromoteFullIgnored").Message, "already at the last step 3/3 (100%)")
			},
		},
		{
			name: "a full promote and a skip asked at once make a full promote",
			ro:   atStep(testRollout(), 0, time.Minute),
			obs:  Observation{Requests: overrideRequests("f1", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, len(d.Status.Overrides), 1)
				expect(t, hasEvent(d, "PromotedFull"), true)
				contains(t, eventOf(t, d, "SkipGatesIgnored").Message, "a full promote was requested at the same time")
			},
		},
		{
			name: "a rollout waiting for its first step ignores an override",
			ro:   testRollout(),
			obs: Observation{Requests: overrideRequests("", "s1"),
				Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "no endpoints"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Status.CurrentStepIndex == nil, true)
				contains(t, eventOf(t, d, "SkipGatesIgnored").Message, "ignored: the rollout is Waiting")
			},
		},
		{
			name: "status keeps the last 10 overrides",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, time.Minute)
				for i := range 10 {
					ro.Status.Overrides = append(ro.Status.Overrides, rolloutsv1.OverrideRecord{Kind: rolloutsv1.OverrideSkipGates, Reason: fmt.Sprint(i)})
				}
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("", "s1")},
			check: func(t *testing.T, d Decision) {
				expect(t, len(d.Status.Overrides), 10)
				expect(t, d.Status.Overrides[0].Reason, "1")
				expect(t, d.Status.Overrides[9].Reason, "eval harness checked v2 offline")
			},
		},
		{
			name: "a new canary that cannot start because the old one holds 100% ignores an override",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Spec.Canary = &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v3", Port: ptr.To[int32](8000)}
				return ro
			}(),
			obs: Observation{Requests: overrideRequests("f1", "")},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.LastHandledPromoteFull, "f1")
				contains(t, eventOf(t, d, "PromoteFullIgnored").Message, "ignored: spec.stable must name the canary")
			},
		},
	}
	runPlanCases(t, tests)
}
