package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func Dur(s string) *rolloutsv1.Duration { d := rolloutsv1.Duration(s); return &d }

func mt(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

// umt is t as status.stepStartedAt holds it.
func umt(t time.Time) *rolloutsv1.MicroTime {
	m := rolloutsv1.NewMicroTime(metav1.NewMicroTime(t))
	return &m
}

func testRollout() *rolloutsv1.ModelRollout {
	return &rolloutsv1.ModelRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "gpt4", Namespace: "ai", Generation: 1},
		Spec: rolloutsv1.ModelRolloutSpec{
			Routes: []rolloutsv1.RouteTarget{{Name: "model-header-routing"}},
			Stable: rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v1", Port: ptr.To[int32](8000)},
			Canary: &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v2", Port: ptr.To[int32](8000)},
			Steps: []rolloutsv1.Step{
				{Weight: 10, Pause: Dur("30m")},
				{Weight: 50, Pause: Dur("1h")},
				{Weight: 100, Pause: Dur("1h")},
			},
			ProgressDeadline: Dur("10m"),
		},
	}
}

// atStep puts the rollout at step i, started the given time ago.
func atStep(ro *rolloutsv1.ModelRollout, i int, ago time.Duration) *rolloutsv1.ModelRollout {
	idx := int32(i)
	ro.Status.Revision = ro.Spec.Revision()
	ro.Status.Canary = ro.Spec.Canary.DeepCopy()
	ro.Status.Phase = rolloutsv1.PhaseProgressing
	ro.Status.CurrentStepIndex = &idx
	ro.Status.Step = fmt.Sprintf("%d/%d", i+1, len(ro.Spec.Steps))
	ro.Status.CanaryWeight = ro.Spec.Steps[i].Weight
	ro.Status.StepStartedAt = umt(t0.Add(-ago))
	ro.Status.StartedAt = mt(t0.Add(-2 * time.Hour))
	return ro
}

func withGates(ro *rolloutsv1.ModelRollout) *rolloutsv1.ModelRollout {
	ro.Spec.Analysis = &rolloutsv1.Analysis{Interval: "1m", Gates: []rolloutsv1.Gate{
		{Name: "errors", GateSpec: rolloutsv1.GateSpec{Preset: "vllm-error-ratio", Max: ptr.To(0.05), NoData: rolloutsv1.NoDataHold, FailureLimit: 1}},
	}}
	return ro
}

func hasEvent(d Decision, reason string) bool {
	for _, e := range d.Events {
		if e.Reason == reason {
			return true
		}
	}
	return false
}

func condStatus(st rolloutsv1.ModelRolloutStatus, t string) string {
	c := meta.FindStatusCondition(st.Conditions, t)
	if c == nil {
		return "absent"
	}
	return string(c.Status) + "/" + c.Reason
}

func TestPlan(t *testing.T) {
	tests := []planCase{
		{
			name: "new rollout with preconditions met starts the first step",
			ro:   testRollout(),
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseProgressing)
				expect(t, st.CanaryWeight, int32(10))
				expect(t, st.Step, "1/3")
				// The routes are written before this status: its clock
				// starts when that write lands (Landed).
				expect(t, d.WriteRoutes, true)
				expect(t, d.ClockOnLanding, true)
				expect(t, st.StepStartedAt != nil, true)
				expect(t, st.Revision, "Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v2:8000")
				expect(t, d.RequeueAfter, 30*time.Minute) // the step's pause
				// One transition, one Event: the rollout's start rides on
				// its first step's.
				expect(t, len(d.Events), 1)
				expect(t, d.Events[0].Reason, "StepStarted")
				expect(t, d.Events[0].Message, "Step 1/3: canary vllm-gpt4-v2 at 10%; rollout of Service/vllm-gpt4-v1:8000 -> Service/vllm-gpt4-v2:8000 started")
				expect(t, condStatus(st, "Ready"), "False/Progressing")
				expect(t, condStatus(st, "Reconciling"), "True/Progressing")
				expect(t, condStatus(st, "Stalled"), "absent")
				expect(t, d.Routes.Canary != nil && d.Routes.CanaryWeight == 10, true)
			},
		},
		{
			name: "missing canary endpoints keep the rollout waiting with no weight",
			ro:   testRollout(),
			obs:  Observation{Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "canary Service vllm-gpt4-v2 has no ready endpoints for port 8000"}},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseWaiting)
				expect(t, st.CanaryWeight, int32(0))
				expect(t, st.CurrentStepIndex == nil, true)
				expect(t, st.WaitingSince.Time, t0)
				expect(t, d.RequeueAfter, 10*time.Minute)
				expect(t, condStatus(st, "CanaryAvailable"), "False/NoReadyEndpoints")
				expect(t, condStatus(st, "Reconciling"), "True/Waiting")
				expect(t, st.Message, "canary Service vllm-gpt4-v2 has no ready endpoints for port 8000")
			},
		},
		{
			name: "a missing InferencePool, which no watch announces, is checked again every few seconds",
			ro:   testRollout(),
			obs: Observation{Canary: &Problem{Reason: rolloutsv1.ReasonBackendNotFound, Unwatched: true,
				Message: "canary InferencePool pool-v2 not found in namespace prod"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.RequeueAfter, unwatchedRecheck)
				expect(t, condStatus(d.Status, "CanaryAvailable"), "False/BackendNotFound")
			},
		},
		{
			name: "waiting past the progress deadline is Stalled but moves no traffic",
			ro: func() *rolloutsv1.ModelRollout {
				ro := testRollout()
				ro.Status.Revision = ro.Spec.Revision()
				ro.Status.Canary = ro.Spec.Canary
				ro.Status.Phase = rolloutsv1.PhaseWaiting
				ro.Status.WaitingSince = mt(t0.Add(-11 * time.Minute))
				return ro
			}(),
			obs: Observation{Routes: &Problem{Reason: rolloutsv1.ReasonRouteNotFound, Message: "HTTPRoute model-header-routing not found in namespace ai"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, condStatus(d.Status, "Stalled"), "True/ProgressDeadlineExceeded")
				expect(t, condStatus(d.Status, "Reconciling"), "absent")
				expect(t, condStatus(d.Status, "RoutesResolved"), "False/RouteNotFound")
			},
		},
		{
			name: "a waiting rollout recovers by itself when the problem is fixed",
			ro: func() *rolloutsv1.ModelRollout {
				ro := testRollout()
				ro.Status.Revision = ro.Spec.Revision()
				ro.Status.Canary = ro.Spec.Canary
				ro.Status.Phase = rolloutsv1.PhaseWaiting
				ro.Status.WaitingSince = mt(t0.Add(-20 * time.Minute))
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, d.Status.WaitingSince == nil, true)
				expect(t, condStatus(d.Status, "Stalled"), "absent")
				expect(t, hasEvent(d, "PreconditionsMet"), true)
			},
		},
		{
			name: "a restarted controller keeps the remaining pause",
			ro:   atStep(testRollout(), 1, 10*time.Minute),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.RequeueAfter, 50*time.Minute)
				expect(t, len(d.Events), 0)
			},
		},
		{
			name: "an elapsed pause advances exactly one step",
			ro:   atStep(testRollout(), 0, 31*time.Minute),
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, d.ClockOnLanding, true) // the routes carry 10% until the write lands
				expect(t, len(d.Status.StepHistory), 1)
			},
		},
		{
			name: "a step's clock starts when the routes carry its weight",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.StepStartedAt = nil
				ro.Status.StepHistory = []rolloutsv1.StepRecord{{Weight: 10, StartedAt: *umt(t0.Add(-time.Minute))}}
				return ro
			}(),
			obs: Observation{Found: routesAt(10, 10)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.StepStartedAt.Time, t0)
				expect(t, d.Status.StepHistory[0].StartedAt.Time, t0)
				expect(t, d.RequeueAfter, 30*time.Minute)
				expect(t, d.Status.Message, "Step 1/3: canary at 10%, next step at 12:30:00Z")
			},
		},
		{
			name: "a step's start is when the routes carry it, to the microsecond",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.StepStartedAt = nil
				return ro
			}(),
			obs: Observation{Now: t0.Add(200 * time.Millisecond), Found: routesAt(10)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.StepStartedAt.Time, t0.Add(200*time.Millisecond))
				expect(t, d.RequeueAfter, 30*time.Minute)
			},
		},
		{
			name: "a step whose route patch precedes the status write starts its clock in that one write (the reconciler sets it to when the patch landed)",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 31*time.Minute)
				ro.Status.StepHistory = []rolloutsv1.StepRecord{{Weight: 10, StartedAt: *umt(t0.Add(-31 * time.Minute))}}
				return ro
			}(),
			obs: Observation{Now: t0.Add(200 * time.Millisecond), Found: routesAt(10)},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, d.Status.StepStartedAt.Time, t0.Add(200*time.Millisecond))
				expect(t, d.Status.StepHistory[1].StartedAt.Time, t0.Add(200*time.Millisecond))
				expect(t, condStatus(d.Status, "RoutesApplied"), "True/Applied")
				expect(t, d.RequeueAfter, time.Hour)
				// The status the step holds until its pause ends, written once.
				expect(t, d.Status.Message, "Step 2/3: canary at 50%, next step at 13:00:00Z")
				expect(t, len(d.Events), 1)
			},
		},
		{
			name: "a step without pause, started with its route patch, waits for promote in the same decision",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 31*time.Minute)
				ro.Spec.Steps[1].Pause = nil
				return ro
			}(),
			obs: Observation{Found: routesAt(10)},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.Phase, rolloutsv1.PhasePaused)
				expect(t, d.Status.Message, "Step 2/3: canary at 50%, waiting for promote")
				expect(t, hasEvent(d, "StepStarted") && hasEvent(d, "AwaitingPromote"), true)
			},
		},
		{
			name: "a step with no pause and no gates is still written before the next one starts",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 31*time.Minute)
				ro.Spec.Steps[1].Pause = Dur("0s")
				return ro
			}(),
			obs: Observation{Found: routesAt(10)},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Routes.CanaryWeight, int32(50))
			},
		},
		{
			name: "no clock starts ahead of a patch that will not go out (rejected, contended or conflicting)",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.StepStartedAt = nil
				return ro
			}(),
			obs: Observation{Found: routesAt(0), Refused: true, Rejected: &Problem{Reason: rolloutsv1.ReasonPatchRejected, Message: "denied by policy"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.StepStartedAt == nil, true)
				expect(t, condStatus(d.Status, "RoutesApplied"), "False/PatchRejected")
			},
		},
		{
			name: "a running clock stops when the routes do not carry the step, even with a patch on its way",
			ro:   atStep(testRollout(), 0, 10*time.Minute),
			obs:  Observation{Found: routesAt(0)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.StepStartedAt == nil, true)
				expect(t, condStatus(d.Status, "RoutesApplied"), "True/Applied")
			},
		},
		{
			name: "a step whose weight never reached the routes does not count its pause",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.StepStartedAt = nil
				ro.Status.StepHistory = []rolloutsv1.StepRecord{{Weight: 10, StartedAt: *umt(t0.Add(-5 * time.Hour))}}
				return ro
			}(),
			obs: Observation{Found: routesAt(10, -1)},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				// Its clock starts when this write lands, not 5 h ago.
				expect(t, d.ClockOnLanding, true)
				Landed(&d, t0.Add(time.Second))
				expect(t, d.Status.StepStartedAt.Time, t0.Add(time.Second))
				expect(t, d.Status.StepHistory[0].StartedAt.Time, t0.Add(time.Second))
				expect(t, d.RequeueAfter, 30*time.Minute)
			},
		},
		{
			name: "the last step ends Succeeded at 100",
			ro:   atStep(testRollout(), 2, 61*time.Minute),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, d.RequeueAfter, time.Duration(0))
				expect(t, condStatus(d.Status, "Ready"), "True/Succeeded")
				expect(t, condStatus(d.Status, "Reconciling"), "absent")
			},
		},
		{
			name: "a succeeded rollout stays succeeded",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, len(d.Events), 0)
			},
		},
		{
			name: "a step without pause waits for a promote",
			ro: func() *rolloutsv1.ModelRollout {
				ro := testRollout()
				ro.Spec.Steps[0].Pause = nil
				return atStep(ro, 0, 5*time.Hour)
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhasePaused)
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, hasEvent(d, "AwaitingPromote"), true)
			},
		},
		{
			name: "a promote ends a pause once",
			ro: func() *rolloutsv1.ModelRollout {
				ro := testRollout()
				ro.Spec.Steps[0].Pause = nil
				ro = atStep(ro, 0, time.Minute)
				ro.Status.Phase = rolloutsv1.PhasePaused
				return ro
			}(),
			obs: Observation{Requests: Requests{Promote: "2026-11-25T12:00:00Z"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.LastHandledPromote, "2026-11-25T12:00:00Z")
				expect(t, d.Status.Promoted, false)
			},
		},
		{
			name: "an already handled promote does nothing",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, time.Minute)
				ro.Status.LastHandledPromote = "x"
				return ro
			}(),
			obs: Observation{Requests: Requests{Promote: "x"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, len(d.Events), 0)
			},
		},
		{
			name: "spec.paused holds an elapsed step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, time.Hour)
				ro.Spec.Paused = true
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhasePaused)
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, condStatus(d.Status, "Reconciling"), "True/Paused")
			},
		},
		{
			name: "the paused annotation holds like spec.paused",
			ro:   atStep(testRollout(), 0, time.Hour),
			obs:  Observation{Requests: Requests{Paused: true}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhasePaused)
				expect(t, d.Status.CanaryWeight, int32(10))
			},
		},
		{
			name: "abort rolls back to 0 with the reason",
			ro:   atStep(testRollout(), 1, time.Minute),
			obs:  Observation{Requests: Requests{Abort: "t1", AbortReason: "bad outputs"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonAborted)
				expect(t, d.Status.Rollback.Message, "bad outputs")
				expect(t, d.Status.Rollback.FromWeight, int32(50))
				expect(t, condStatus(d.Status, "Stalled"), "True/Aborted")
				expect(t, condStatus(d.Status, "Ready"), "False/RolledBack")
				expect(t, len(d.Status.StepHistory) == 0 || d.Status.StepHistory[len(d.Status.StepHistory)-1].EndedAt != nil, true)
			},
		},
		{
			name: "an alert token rolls back with reason AlertFiring",
			ro:   atStep(testRollout(), 0, time.Minute),
			obs:  Observation{Requests: Requests{Abort: "alert-abc", AbortReason: `alert HighErrorRate{model="gpt-4"} firing`}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonAlertFiring)
				expect(t, d.Status.CanaryWeight, int32(0))
			},
		},
		{
			name: "abort does not revert a succeeded rollout",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				return ro
			}(),
			obs: Observation{Requests: Requests{Abort: "t1"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, d.Status.LastHandledAbort, "t1")
				expect(t, hasEvent(d, "AbortIgnored"), true)
			},
		},
		{
			name: "retry restarts a rolled-back rollout at step 1",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseRolledBack
				ro.Status.CanaryWeight = 0
				ro.Status.Rollback = &rolloutsv1.RollbackStatus{Reason: "GateFailed", Message: "x", At: *mt(t0)}
				return ro
			}(),
			obs: Observation{Requests: Requests{Retry: "r1"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.Rollback == nil, true)
				expect(t, d.Status.LastHandledRetry, "r1")
				expect(t, condStatus(d.Status, "Stalled"), "absent")
			},
		},
		{
			name: "retry of a progressing rollout is ignored",
			ro:   atStep(testRollout(), 1, time.Minute),
			obs:  Observation{Requests: Requests{Retry: "r1"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, hasEvent(d, "RetryIgnored"), true)
			},
		},
		{
			name: "a rolled-back rollout stays rolled back",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseRolledBack
				ro.Status.CanaryWeight = 0
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Routes.Canary != nil && d.Routes.CanaryWeight == 0, true)
			},
		},
		{
			name: "a new canary mid-rollout retires the old one and starts over",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, time.Minute)
				ro.Spec.Canary = &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v3", Port: ptr.To[int32](8000)}
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, len(d.Status.Retiring), 1)
				expect(t, d.Status.Retiring[0].Name, "vllm-gpt4-v2")
				expect(t, len(d.Routes.Retire), 1)
				expect(t, d.Status.Canary.Name, "vllm-gpt4-v3")
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, hasEvent(d, "CanaryReplaced"), true)
			},
		},
		{
			name: "no canary is Idle and leaves routes alone",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				ro.Spec.Stable.Name = "vllm-gpt4-v2"
				ro.Spec.Canary = nil
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseIdle)
				expect(t, d.Routes.Holds(), false)
				expect(t, condStatus(d.Status, "Ready"), "True/Idle")
				expect(t, condStatus(d.Status, "RoutesResolved"), "absent")
			},
		},
		{
			name: "a canary that loses its endpoints mid-step holds, then rolls back past the deadline",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, time.Hour)
				ro.Status.WaitingSince = mt(t0.Add(-10 * time.Minute))
				return ro
			}(),
			obs: Observation{Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "canary Service vllm-gpt4-v2 has no ready endpoints for port 8000"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonProgressDeadlineExceeded)
				expect(t, d.Status.CanaryWeight, int32(0))
			},
		},
		{
			name: "a canary that loses its endpoints mid-step holds for its grace",
			ro:   atStep(testRollout(), 0, time.Hour),
			obs:  Observation{Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "no endpoints"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.CanaryUnavailableSince.Time, t0)
				expect(t, d.RequeueAfter, 30*time.Second)
				expect(t, hasEvent(d, rolloutsv1.ReasonCanaryUnavailable), true)
			},
		},
		{
			name: "a canary unavailable past its grace is rolled back",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, time.Hour)
				ro.Spec.CanaryUnavailableGrace = Dur("10s")
				ro.Status.CanaryUnavailableSince = mt(t0.Add(-10 * time.Second))
				return ro
			}(),
			obs: Observation{Canary: &Problem{Reason: rolloutsv1.ReasonNoReadyEndpoints, Message: "no endpoints"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonCanaryUnavailable)
				expect(t, d.Status.Rollback.FromWeight, int32(50))
				expect(t, d.Routes.Canary != nil && d.Routes.CanaryWeight == 0, true)
				expect(t, d.Status.CanaryUnavailableSince == nil, true)
			},
		},
		{
			name: "a canary that recovers within its grace keeps its step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, 10*time.Minute)
				ro.Status.CanaryUnavailableSince = mt(t0.Add(-20 * time.Second))
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.CanaryUnavailableSince == nil, true)
			},
		},
		{
			name: "a new canary while the old one holds 100% moves nothing and says what to change",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Spec.Canary = &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v3", Port: ptr.To[int32](8000)}
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.Canary.Name, "vllm-gpt4-v2")
				expect(t, d.Routes.Canary.Name, "vllm-gpt4-v2")
				expect(t, d.Routes.CanaryWeight, int32(100))
				expect(t, len(d.Routes.Retire), 0)
				expect(t, condStatus(d.Status, "Stalled"), "True/CanaryHoldsAllTraffic")
				expect(t, strings.Contains(d.Status.Message, "set spec.stable to vllm-gpt4-v2"), true)
			},
		},
		{
			name: "with allowStableSwing a new canary retires the one that holds 100%",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Spec.AllowStableSwing = true
				ro.Spec.Canary = &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v3", Port: ptr.To[int32](8000)}
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Canary.Name, "vllm-gpt4-v3")
				expect(t, len(d.Status.Retiring), 1)
				expect(t, d.Status.Retiring[0].Name, "vllm-gpt4-v2")
			},
		},
		{
			name: "moving stable to the finished canary starts the next rollout without a swing",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 2, 5*time.Hour)
				ro.Status.Phase = rolloutsv1.PhaseSucceeded
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Spec.Stable.Name = "vllm-gpt4-v2"
				ro.Spec.Canary = &rolloutsv1.BackendRef{Kind: rolloutsv1.BackendKindService, Name: "vllm-gpt4-v3", Port: ptr.To[int32](8000)}
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Stable.Name, "vllm-gpt4-v2")
				expect(t, d.Status.Canary.Name, "vllm-gpt4-v3")
				expect(t, d.Status.CanaryWeight, int32(10))
				// The old stable is at 0 in the routes already: nothing to retire.
				expect(t, len(d.Status.Retiring), 0)
			},
		},
		{
			name: "removing the canary mid-rollout returns its share before going Idle",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 1, 5*time.Minute)
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Spec.Canary = nil
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, len(d.Status.Retiring), 1)
				expect(t, d.Routes.HoldStable, true)
				expect(t, d.Routes.Retire[0].Name, "vllm-gpt4-v2")
				expect(t, hasEvent(d, "CanaryRemoved"), true)
			},
		},
		{
			name: "a removed canary whose share is back on stable goes Idle",
			ro: func() *rolloutsv1.ModelRollout {
				ro := testRollout()
				ro.Spec.Canary = nil
				ro.Status.Phase = rolloutsv1.PhaseWaiting
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Status.Retiring = []rolloutsv1.BackendRef{canaryRef}
				return ro
			}(),
			obs: Observation{Found: routesAt(0)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseIdle)
				expect(t, len(d.Status.Retiring), 0)
				expect(t, d.Routes.Holds(), false)
			},
		},
		{
			name: "a rollout that lost the race for a rule goes back to waiting for its first step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := atStep(testRollout(), 0, 0)
				ro.Status.StepStartedAt = nil
				return ro
			}(),
			obs: Observation{Found: routesAt(0), Conflict: &Problem{Reason: rolloutsv1.ReasonRouteConflict, Message: "owned by other"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.CurrentStepIndex == nil, true)
				expect(t, d.Routes.Holds(), false)
				expect(t, condStatus(d.Status, "RoutesApplied"), "False/RouteConflict")
			},
		},
		{
			name: "a step stops its clock when the routes no longer carry its weight and the correction waits",
			ro:   atStep(testRollout(), 1, 50*time.Minute),
			obs:  Observation{Found: routesAt(10), Contended: &Problem{Reason: rolloutsv1.ReasonContended, Message: "changed back"}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.StepStartedAt == nil, true)
				expect(t, d.WriteRoutes, false)
				expect(t, condStatus(d.Status, "RoutesApplied"), "False/Contended")
			},
		},
		{
			name: "a rejected patch holds the step and counts toward the deadline",
			ro:   atStep(testRollout(), 0, time.Hour),
			obs:  Observation{Refused: true, Rejected: &Problem{Reason: rolloutsv1.ReasonPatchRejected, Message: "HTTPRoute r: denied by policy"}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.WaitingSince.Time, t0)
				expect(t, condStatus(d.Status, "RoutesApplied"), "False/PatchRejected")
			},
		},
		{
			name: "an invalid gate stalls the rollout before any traffic moves",
			ro:   withGates(testRollout()),
			obs:  Observation{Analysis: &Problem{Reason: rolloutsv1.ReasonInvalidQuery, Message: `gate "errors": parse error`}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, condStatus(d.Status, "Stalled"), "True/InvalidQuery")
				expect(t, condStatus(d.Status, "GatesPassing"), "False/InvalidQuery")
			},
		},
		{
			name: "a failed gate rolls back at once",
			ro:   withGates(atStep(testRollout(), 1, time.Minute)),
			obs: Observation{Gates: &GateRound{
				Gates:    []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictFail, Value: "0.2", LastEvaluatedAt: mt(t0)}},
				Rollback: &Problem{Reason: rolloutsv1.ReasonGateFailed, Message: `gate "errors" value 0.2 outside <= 0.05`},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonGateFailed)
				expect(t, condStatus(d.Status, "GatesPassing"), "False/GateFailed")
				expect(t, d.Status.Gates[0].Value, "0.2")
			},
		},
		{
			name: "an elapsed step waits for gates evaluated in this step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withGates(atStep(testRollout(), 0, 31*time.Minute))
				ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictPass, LastEvaluatedAt: mt(t0.Add(-40 * time.Minute))}}
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.CanaryWeight, int32(10))
			},
		},
		{
			name: "an elapsed step with passing gates advances",
			ro:   withGates(atStep(testRollout(), 0, 31*time.Minute)),
			obs: Observation{Gates: &GateRound{
				Gates: []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictPass, Value: "0.01", LastEvaluatedAt: mt(t0)}},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, condStatus(d.Status, "GatesPassing"), "True/GatesPassed")
			},
		},
		{
			name: "a holding gate never promotes",
			ro:   withGates(atStep(testRollout(), 0, 31*time.Minute)),
			obs: Observation{Gates: &GateRound{
				Gates:   []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictNoData, Message: "empty result", LastEvaluatedAt: mt(t0)}},
				Holding: &Problem{Reason: rolloutsv1.ReasonGateNoData, Message: `gate "errors": empty result`},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, condStatus(d.Status, "GatesPassing"), "False/GateNoData")
				expect(t, d.RequeueAfter, time.Minute)
			},
		},
		{
			name: "a failing dry-run gate neither holds nor rolls back, and says what it would have done",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withGates(atStep(testRollout(), 0, 31*time.Minute))
				ro.Spec.Analysis.Gates[0].DryRun = true
				return ro
			}(),
			obs: Observation{Gates: &GateRound{
				Gates:  []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictFail, Value: "0.2", DryRun: true, LastEvaluatedAt: mt(t0)}},
				DryRun: []Problem{{Reason: rolloutsv1.ReasonGateFailed, Message: `gate "errors" value 0.2 outside <= 0.05`}},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, d.Status.Gates[0].Verdict, rolloutsv1.VerdictFail)
				var reasons []string
				for _, e := range d.Events {
					reasons = append(reasons, e.Reason)
					if e.Reason == "DryRunGateFailed" {
						expect(t, strings.Contains(e.Message, `gate "errors" value 0.2`), true)
					}
				}
				expect(t, strings.Join(reasons, ","), "DryRunGateFailed,StepStarted")
			},
		},
		{
			name: "a dry-run gate never evaluated does not hold an elapsed step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withGates(atStep(testRollout(), 0, 31*time.Minute))
				ro.Spec.Analysis.Gates[0].DryRun = true
				return ro
			}(),
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
			},
		},
		{
			name: "a promote does not bypass a holding gate",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withGates(atStep(testRollout(), 0, time.Minute))
				ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictNoData, LastEvaluatedAt: mt(t0.Add(-10 * time.Second))}}
				return ro
			}(),
			obs: Observation{Requests: Requests{Promote: "p"}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.Promoted, true)
			},
		},
	}
	runPlanCases(t, tests)
}

func TestGatesDue(t *testing.T) {
	ro := withGates(atStep(testRollout(), 0, 5*time.Minute))
	expect(t, GatesDue(ro, t0), true)
	ro.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", LastEvaluatedAt: mt(t0.Add(-30 * time.Second))}}
	expect(t, GatesDue(ro, t0), false)
	expect(t, GatesDue(ro, t0.Add(30*time.Second)), true)
	ro.Status.Phase = rolloutsv1.PhaseRolledBack
	expect(t, GatesDue(ro, t0.Add(time.Hour)), false)
	waiting := withGates(testRollout())
	expect(t, GatesDue(waiting, t0), false)

	// A fresh step is first judged one interval in, on its own traffic.
	fresh := withGates(atStep(testRollout(), 1, 30*time.Second))
	fresh.Status.Gates = []rolloutsv1.GateStatus{{Name: "errors", LastEvaluatedAt: mt(t0.Add(-5 * time.Minute))}}
	expect(t, GatesDue(fresh, t0), false)
	expect(t, GatesDue(fresh, t0.Add(30*time.Second)), true)

	// A step written in status whose weight the routes do not carry yet has
	// no clock and no traffic of its own: not due, whatever the canary
	// served before the rollout started.
	unstarted := withGates(atStep(testRollout(), 0, 0))
	unstarted.Status.StepStartedAt = nil
	expect(t, GatesDue(unstarted, t0), false)
	expect(t, GatesDue(unstarted, t0.Add(time.Hour)), false)
}

// routesAt returns one found route per weight, whose one managed rule gives
// the canary w and the stable 100 - w; w < 0 gives a rule in no rollout
// state (stable 100, canary 5).
func routesAt(ws ...int32) []ManagedRoute {
	out := []ManagedRoute{}
	for i, w := range ws {
		stable, canary := 100-w, w
		if w < 0 {
			stable, canary = 100, 5
		}
		route := &gatewayv1.HTTPRoute{}
		route.Name = fmt.Sprintf("route-%d", i)
		route.Namespace = "ai"
		route.Spec.Rules = []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{
			backendRef("vllm-gpt4-v1", stable), backendRef("vllm-gpt4-v2", canary),
		}}}
		out = append(out, ManagedRoute{Route: route, Rules: []int{0}})
	}
	return out
}

func backendRef(name string, weight int32) gatewayv1.HTTPBackendRef {
	ref := gatewayv1.HTTPBackendRef{}
	ref.Name = gatewayv1.ObjectName(name)
	ref.Port = ptr.To[gatewayv1.PortNumber](8000)
	ref.Weight = ptr.To(weight)
	return ref
}

func expect[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// headerRollout is a rollout whose first step is a dark launch: weight 0,
// and every request with x-ab-test-group: canary to the canary.
func headerRollout() *rolloutsv1.ModelRollout {
	ro := testRollout()
	ro.Spec.Steps = []rolloutsv1.Step{
		{Weight: 0, Pause: Dur("10m"), Match: &rolloutsv1.StepMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-ab-test-group", Value: "canary"}}}},
		{Weight: 10, Pause: Dur("30m")},
		{Weight: 100, Pause: Dur("1h")},
	}
	return ro
}

// withHeaderRoute gives a status at a match step its header route.
func withHeaderRoute(ro *rolloutsv1.ModelRollout) *rolloutsv1.ModelRollout {
	ro.Status.HeaderRoute = &rolloutsv1.HeaderRouteStatus{Routes: headerRouteNames(ro), Match: *ro.Spec.Steps[*ro.Status.CurrentStepIndex].Match.DeepCopy()}
	return ro
}

// ownedAt is the header route of route-i (see routesAt), as cached.
func ownedAt(i int) []*gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{}
	r.Name = headerRouteName("gpt4", fmt.Sprintf("route-%d", i))
	r.Namespace = "ai"
	return []*gatewayv1.HTTPRoute{r}
}

func TestPlanHeaderRoutedSteps(t *testing.T) {
	tests := []struct {
		name  string
		ro    *rolloutsv1.ModelRollout
		obs   Observation
		check func(t *testing.T, d Decision)
	}{
		{
			name: "a dark-launch step starts: weight 0 in the user's route, the header route in status",
			ro:   headerRollout(),
			obs:  Observation{Found: routesAt(0)},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseProgressing)
				expect(t, *st.CurrentStepIndex, int32(0))
				expect(t, st.CanaryWeight, int32(0))
				expect(t, d.Routes.Canary != nil && d.Routes.CanaryWeight == 0, true)
				expect(t, st.HeaderRoute != nil, true)
				expect(t, strings.Join(st.HeaderRoute.Routes, ","), "model-header-routing-gpt4-match")
				expect(t, st.HeaderRoute.Match.String(), "header x-ab-test-group=canary")
				expect(t, d.Events[0].Reason, "StepStarted")
				expect(t, strings.HasPrefix(d.Events[0].Message, "Step 1/3: canary vllm-gpt4-v2 at 0%, and every request with header x-ab-test-group=canary"), true)
				// The route patch and the header route precede this status
				// write: the reconciler sets the start to when they landed.
				expect(t, st.StepStartedAt.Time, t0)
				expect(t, condStatus(st, "HeaderRouted"), "True/Applied")
				expect(t, st.Message, "Step 1/3: canary at 0% and every request with header x-ab-test-group=canary, next step at 12:10:00Z")
			},
		},
		{
			name: "the clock of a match step waits for the header route when nothing is being written",
			ro:   headerRollout(),
			obs:  Observation{Found: routesAt(0), Contended: &Problem{Reason: rolloutsv1.ReasonContended, Message: "changed back"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.HeaderRoute != nil, true)
				expect(t, d.Status.StepStartedAt == nil, true)
				expect(t, condStatus(d.Status, "HeaderRouted"), "False/Pending")
			},
		},
		{
			name: "a header route whose name is taken holds the step's clock with a condition",
			ro:   headerRollout(),
			obs: Observation{Found: routesAt(0), HeaderRoute: &Problem{Reason: rolloutsv1.ReasonHeaderRouteConflict,
				Message: "HTTPRoute route-0-gpt4-match exists and is not this rollout's header route"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.StepStartedAt == nil, true)
				expect(t, condStatus(d.Status, "HeaderRouted"), "False/HeaderRouteConflict")
			},
		},
		{
			name: "a header route that cannot be written holds a running match step, and rolls it back past the progress deadline",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withHeaderRoute(atStep(headerRollout(), 0, 0))
				ro.Status.StepStartedAt = nil
				ro.Status.WaitingSince = mt(t0.Add(-11 * time.Minute))
				return ro
			}(),
			obs: Observation{Found: routesAt(0), HeaderRoute: &Problem{Reason: rolloutsv1.ReasonHeaderRouteConflict,
				Message: "HTTPRoute route-0-gpt4-match exists and is not this rollout's header route"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonProgressDeadlineExceeded)
				expect(t, strings.Contains(d.Status.Rollback.Message, "is not this rollout's header route"), true)
				expect(t, d.Status.HeaderRoute == nil, true)
			},
		},
		{
			name: "a header route that can no longer be written stops the step's clock and waits",
			ro:   withHeaderRoute(atStep(headerRollout(), 0, 5*time.Minute)),
			obs: Observation{Found: routesAt(0), HeaderRoute: &Problem{Reason: rolloutsv1.ReasonPatchRejected,
				Message: "the API server rejected the header route: denied"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.StepStartedAt == nil, true)
				expect(t, d.Status.WaitingSince.Time, t0)
				expect(t, d.Status.Message, "the API server rejected the header route: denied")
				expect(t, condStatus(d.Status, "HeaderRouted"), "False/PatchRejected")
			},
		},
		{
			name: "a header route problem left from a match step does not hold a step without a match",
			ro:   atStep(headerRollout(), 1, time.Minute),
			obs: Observation{Found: routesAt(10), HeaderRoute: &Problem{Reason: rolloutsv1.ReasonHeaderRouteConflict,
				Message: "HTTPRoute route-0-gpt4-match exists and is not this rollout's header route"}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, d.Status.WaitingSince == nil, true)
				expect(t, condStatus(d.Status, "HeaderRouted"), "absent")
			},
		},
		{
			name: "a running match step with its header route in place bakes",
			ro:   withHeaderRoute(atStep(headerRollout(), 0, 5*time.Minute)),
			obs:  Observation{Found: routesAt(0), Owned: ownedAt(0)},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, *st.CurrentStepIndex, int32(0))
				expect(t, st.StepStartedAt.Time, t0.Add(-5*time.Minute))
				expect(t, st.HeaderRoute != nil, true)
				expect(t, d.RequeueAfter, 5*time.Minute)
				expect(t, len(d.Events), 0)
				expect(t, condStatus(st, "HeaderRouted"), "True/Applied")
			},
		},
		{
			name: "a header route deleted by hand mid-step restarts the step's pause once it is back",
			ro:   withHeaderRoute(atStep(headerRollout(), 0, 5*time.Minute)),
			obs:  Observation{Found: routesAt(0)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.HeaderRoute != nil, true) // still wanted: the reconciler recreates it
				expect(t, d.Status.StepStartedAt == nil, true)
			},
		},
		{
			name: "the next step without a match ends the header route",
			ro:   withHeaderRoute(atStep(headerRollout(), 0, 11*time.Minute)),
			obs:  Observation{Found: routesAt(0), Owned: ownedAt(0)},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, *st.CurrentStepIndex, int32(1))
				expect(t, st.CanaryWeight, int32(10))
				expect(t, st.HeaderRoute == nil, true)
				expect(t, hasEvent(d, "HeaderRouteRemoved"), true)
				expect(t, condStatus(st, "HeaderRouted"), "absent")
				want, _ := DesiredHeaderRoutes(headerRollout(), &st, routesAt(0))
				expect(t, len(want), 0)
			},
		},
		{
			name: "an abort with a header route present ends it with the rollback",
			ro:   withHeaderRoute(atStep(headerRollout(), 0, time.Minute)),
			obs:  Observation{Found: routesAt(0), Owned: ownedAt(0), Requests: Requests{Abort: "now"}},
			check: func(t *testing.T, d Decision) {
				st := d.Status
				expect(t, st.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, st.HeaderRoute == nil, true)
				expect(t, hasEvent(d, "HeaderRouteRemoved"), true)
				expect(t, condStatus(st, "HeaderRouted"), "absent")
			},
		},
		{
			name: "a gate failure at a dark-launch step rolls back and ends the header route",
			ro: func() *rolloutsv1.ModelRollout {
				return withGates(withHeaderRoute(atStep(headerRollout(), 0, 2*time.Minute)))
			}(),
			obs: Observation{Found: routesAt(0), Owned: ownedAt(0), Gates: &GateRound{
				Gates:    []rolloutsv1.GateStatus{{Name: "errors", Verdict: rolloutsv1.VerdictFail, LastEvaluatedAt: mt(t0)}},
				Rollback: &Problem{Reason: rolloutsv1.ReasonGateFailed, Message: `gate "errors" failed`},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.HeaderRoute == nil, true)
			},
		},
		{
			name: "removing the canary during a match step ends the header route",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withHeaderRoute(atStep(headerRollout(), 0, time.Minute))
				ro.Status.Stable = ro.Spec.Stable.DeepCopy()
				ro.Spec.Canary = nil
				return ro
			}(),
			obs: Observation{Found: routesAt(0), Owned: ownedAt(0)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.HeaderRoute == nil, true)
			},
		},
		{
			name: "a match on the last step ends with success",
			ro: func() *rolloutsv1.ModelRollout {
				ro := headerRollout()
				ro.Spec.Steps[2].Match = ro.Spec.Steps[0].Match.DeepCopy()
				return withHeaderRoute(atStep(ro, 2, 2*time.Hour))
			}(),
			obs: Observation{Found: routesAt(100), Owned: ownedAt(0)},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseSucceeded)
				expect(t, d.Status.HeaderRoute == nil, true)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.obs.Now.IsZero() {
				tc.obs.Now = t0
			}
			d := Plan(tc.ro, tc.obs)
			tc.check(t, d)
		})
	}
}

func TestGatesDueAtADarkLaunchStep(t *testing.T) {
	ro := withGates(withHeaderRoute(atStep(headerRollout(), 0, 5*time.Minute)))
	expect(t, GatesDue(ro, t0), true)
	ro.Status.HeaderRoute = nil
	expect(t, GatesDue(ro, t0), false) // weight 0 and no header route: nothing to judge
}

// planCase is one decision of a table test: the rollout, what was observed
// (Now defaults to t0, Found to routes that carry what the status says)
// and the checks of the decision.
type planCase struct {
	name  string
	ro    *rolloutsv1.ModelRollout
	obs   Observation
	check func(t *testing.T, d Decision)
}

// runPlanCases plans every case and checks that Plan left its input alone.
func runPlanCases(t *testing.T, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.obs.Now.IsZero() {
				tc.obs.Now = t0
			}
			if tc.obs.Found == nil {
				tc.obs.Found = routesAt(tc.ro.Status.CanaryWeight)
			}
			before := tc.ro.DeepCopy()
			d := Plan(tc.ro, tc.obs)
			tc.check(t, d)
			if !equality.Semantic.DeepEqual(before, tc.ro) {
				t.Fatal("Plan changed the rollout it was given")
			}
		})
	}
}
