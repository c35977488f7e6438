package plan

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// withPromptGate adds a PromQL gate judged at every step and a prompt gate
// judged before the first step (the prompt gate's default).
func withPromptGate(ro *rolloutsv1.ModelRollout) *rolloutsv1.ModelRollout {
	ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1m", Gates: []rolloutsv1.Gate{
		{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05), NoData: rolloutsv1.NoDataHold, FailureLimit: 1}},
		{Name: "answers", GateSpec: rolloutsv1.GateSpec{Min: ptr.To(1.0), NoData: rolloutsv1.NoDataHold, FailureLimit: 1, Prompt: &rolloutsv1.PromptGate{
			Prompts: []rolloutsv1.PromptCase{{Prompt: "Capital of France?", Expect: rolloutsv1.PromptExpectation{Contains: "Paris"}}},
		}}},
	}}
	return ro
}

// beforeFirstStep puts the rollout where it waits for its first step,
// started the given time ago.
func beforeFirstStep(ro *rolloutsv1.ModelRollout, ago time.Duration) *rolloutsv1.ModelRollout {
	ro.Status.Revision = ro.Spec.Revision()
	stable := ro.Spec.Stable
	ro.Status.Stable = &stable
	ro.Status.Canary = ro.Spec.Canary.DeepCopy()
	ro.Status.Phase = rolloutsv1.PhaseWaiting
	ro.Status.StartedAt = mt(t0.Add(-ago))
	return ro
}

func answers(v rolloutsv1.GateVerdict, at time.Time, msg string) rolloutsv1.GateStatus {
	return rolloutsv1.GateStatus{Name: "answers", Verdict: v, Message: msg, LastEvaluatedAt: mt(at)}
}

func TestPlanPreTrafficGates(t *testing.T) {
	tests := []planCase{
		{
			name: "a new rollout with a prompt gate waits at weight 0 for its pre-traffic round",
			ro:   withPromptGate(testRollout()),
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseWaiting)
				expect(t, st.CurrentStepIndex == nil, true)
				expect(t, st.CanaryWeight, int32(0))
				expect(t, st.Revision, "Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v2:8000")
				expect(t, st.Message, `Before step 1, canary at 0%: waiting for pre-traffic gate "answers" to be evaluated`)
				expect(t, d.RequeueAfter, time.Second)
				expect(t, hasEvent(d, "StepStarted"), false)
				expect(t, d.Routes.Canary == nil || d.Routes.CanaryWeight == 0, true)
			},
		},
		{
			name: "no data before the first step holds at weight 0 and is evaluated again after the interval",
			ro:   withPromptGate(beforeFirstStep(testRollout(), 10*time.Second)),
			obs: Observation{Gates: &GateRound{
				Gates:   []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictError, t0, "request failed: connection refused")},
				Holding: &Problem{Reason: rolloutsv1.ReasonGateError, Message: `gate "answers" holds the step: request failed`},
			}},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseWaiting)
				expect(t, st.CurrentStepIndex == nil, true)
				expect(t, st.CanaryWeight, int32(0))
				expect(t, strings.HasPrefix(st.Message, `Before step 1, canary at 0%: pre-traffic gate "answers" holds: request failed`), true)
				expect(t, d.RequeueAfter, time.Minute)
				expect(t, condStatus(st, "GatesPassing"), "False/GateError")
				expect(t, condStatus(st, "Stalled"), "absent")
				expect(t, len(st.Gates), 1)
			},
		},
		{
			name: "passing pre-traffic gates start step 1",
			ro:   withPromptGate(beforeFirstStep(testRollout(), 10*time.Second)),
			obs: Observation{Gates: &GateRound{
				Gates: []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictPass, t0, "1 of 1 prompts passed (1), within >= 1")},
			}},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseProgressing)
				expect(t, *st.CurrentStepIndex, int32(0))
				expect(t, st.CanaryWeight, int32(10))
				expect(t, hasEvent(d, "PreTrafficChecksPassed"), true)
				expect(t, hasEvent(d, "StepStarted"), true)
				expect(t, condStatus(st, "GatesPassing"), "True/GatesPassed")
				expect(t, st.Gates[0].Name, "answers") // kept in status at the steps
			},
		},
		{
			name: "a failing pre-traffic gate rolls back with no weight moved",
			ro:   withPromptGate(beforeFirstStep(testRollout(), 10*time.Second)),
			obs: Observation{Gates: &GateRound{
				Gates:    []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictFail, t0, "0 of 1 prompts passed (0), outside >= 1")},
				Rollback: &Problem{Reason: rolloutsv1.ReasonGateFailed, Message: `gate "answers" value 0 outside >= 1: 0 of 1 prompts passed`},
			}},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, st.CurrentStepIndex == nil, true)
				expect(t, st.CanaryWeight, int32(0))
				expect(t, st.Rollback.Reason, rolloutsv1.ReasonGateFailed)
				expect(t, st.Rollback.FromWeight, int32(0))
				expect(t, st.Rollback.Message, `canary failed its pre-traffic checks, before any user traffic: gate "answers" value 0 outside >= 1: 0 of 1 prompts passed`)
				expect(t, len(st.StepHistory), 0)
				expect(t, hasEvent(d, "RolledBack"), true)
				expect(t, hasEvent(d, "StepStarted"), false)
				expect(t, strings.Contains(d.Events[0].Message, "canary failed its pre-traffic checks"), true)
				expect(t, d.Routes.CanaryWeight, int32(0))
				expect(t, condStatus(st, "GatesPassing"), "False/GateFailed")
				expect(t, condStatus(st, "Stalled"), "True/GateFailed")
			},
		},
		{
			name: "a pass from before this rollout started does not count",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withPromptGate(beforeFirstStep(testRollout(), 10*time.Second))
				ro.Status.Gates = []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictPass, t0.Add(-time.Hour), "")}
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CurrentStepIndex == nil, true)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, strings.Contains(d.Status.Message, "to be evaluated"), true)
			},
		},
		{
			name: "an unavailable canary waits before any pre-traffic round",
			ro:   withPromptGate(beforeFirstStep(testRollout(), 10*time.Second)),
			obs:  Observation{Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "canary Service vllm-gpt4-v2 has no ready endpoints"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.Message, "canary Service vllm-gpt4-v2 has no ready endpoints")
			},
		},
		{
			name: "at a step, a gate that runs only pre-traffic does not hold it",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withPromptGate(atStep(testRollout(), 0, 31*time.Minute))
				ro.Status.Gates = []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictPass, t0.Add(-40*time.Minute), "")}
				return ro
			}(),
			obs: Observation{Gates: &GateRound{Gates: []rolloutsv1.GateStatus{
				{Name: "errors", Verdict: rolloutsv1.VerdictPass, Value: "0.01", LastEvaluatedAt: mt(t0)},
				answers(rolloutsv1.VerdictPass, t0.Add(-40*time.Minute), ""),
			}}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.CanaryWeight, int32(50))
			},
		},
	}
	runPlanCases(t, tests)
}

func TestPreTrafficDue(t *testing.T) {
	ro := withPromptGate(beforeFirstStep(testRollout(), 10*time.Second))
	expect(t, PreTrafficDue(ro, t0), true)
	expect(t, GatesDue(ro, t0), false)

	// Held: due again one interval after the last round.
	ro.Status.Gates = []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictNoData, t0, "")}
	expect(t, PreTrafficDue(ro, t0.Add(30*time.Second)), false)
	expect(t, PreTrafficDue(ro, t0.Add(time.Minute)), true)

	// Passed: not due again.
	ro.Status.Gates = []rolloutsv1.GateStatus{answers(rolloutsv1.VerdictPass, t0, "")}
	expect(t, PreTrafficDue(ro, t0.Add(time.Hour)), false)

	// Not before the rollout recorded its revision, nor once a step started.
	fresh := withPromptGate(testRollout())
	expect(t, PreTrafficDue(fresh, t0), false)
	started := withPromptGate(atStep(testRollout(), 0, time.Minute))
	expect(t, PreTrafficDue(started, t0), false)

	// PromQL gates run at the steps only, unless marked.
	promql := withGates(beforeFirstStep(testRollout(), 10*time.Second))
	expect(t, PreTrafficDue(promql, t0), false)
	promql.Spec.Analysis.Gates[0].PreTraffic = ptr.To(true)
	expect(t, PreTrafficDue(promql, t0), true)

	// A rollout whose only gate runs pre-traffic has nothing to evaluate at
	// its steps.
	only := withPromptGate(atStep(testRollout(), 0, 5*time.Minute))
	only.Spec.Analysis.Gates = only.Spec.Analysis.Gates[1:]
	expect(t, GatesDue(only, t0), false)
	only.Spec.Analysis.Gates[0].EveryStep = ptr.To(true)
	expect(t, GatesDue(only, t0), true)
}

func TestRoundKeyKeepsPreTrafficApart(t *testing.T) {
	// A first step of weight 0 whose clock has not started looks like the
	// pre-traffic state in every other field.
	ro := withPromptGate(beforeFirstStep(testRollout(), 10*time.Second))
	pre := RoundKeyOf(ro)
	ro.Spec.Steps[0].Weight = 0
	ro = atStep(ro, 0, 0)
	ro.Status.StepStartedAt = nil
	ro.Status.StartedAt = mt(t0.Add(-10 * time.Second))
	if k := RoundKeyOf(ro); k == pre {
		t.Fatalf("step 1 and pre-traffic rounds share the key %+v", k)
	}
	// A retry of the same revision starts again: an older pre-traffic
	// round is not taken.
	retried := withPromptGate(beforeFirstStep(testRollout(), 1*time.Second))
	if RoundKeyOf(retried) == pre {
		t.Fatal("a retried rollout takes the pre-traffic round of its previous start")
	}
}
