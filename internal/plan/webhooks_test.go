package plan

import (
	"testing"
	"time"

	"k8s.io/utils/ptr"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

func withHooks(ro *rolloutsv1.ModelRollout, hooks ...rolloutsv1.Webhook) *rolloutsv1.ModelRollout {
	ro.Spec.Webhooks = hooks
	return ro
}

var (
	preHook     = rolloutsv1.Webhook{Name: "eval", Type: rolloutsv1.WebhookPreRollout, URL: "http://eval.ml.svc/run", FailureLimit: ptr.To[int32](2)}
	confirmHook = rolloutsv1.Webhook{Name: "approve", Type: rolloutsv1.WebhookConfirmPromotion, URL: "http://approve.ml.svc/"}
)

// starting is a rollout of the current revision before its first step.
func starting(ro *rolloutsv1.ModelRollout) *rolloutsv1.ModelRollout {
	ro.Status.Revision = ro.Spec.Revision()
	ro.Status.Stable = ro.Spec.Stable.DeepCopy()
	ro.Status.Canary = ro.Spec.Canary.DeepCopy()
	ro.Status.Phase = rolloutsv1.PhaseWaiting
	ro.Status.StartedAt = mt(t0.Add(-time.Minute))
	return ro
}

func hookEntry(d Decision, name string) rolloutsv1.WebhookStatus {
	for _, w := range d.Status.Webhooks {
		if w.Name == name {
			return w
		}
	}
	return rolloutsv1.WebhookStatus{}
}

func TestPlanWebhooks(t *testing.T) {
	rev := starting(testRollout()).Spec.Revision()
	pending := func(ro *rolloutsv1.ModelRollout, calls, failures int32) *rolloutsv1.ModelRollout {
		ro.Status.Webhooks = []rolloutsv1.WebhookStatus{{Name: "eval", Type: rolloutsv1.WebhookPreRollout, State: rolloutsv1.WebhookPending,
			Calls: calls, ConsecutiveFailures: failures, LastCallAt: mt(t0.Add(-5 * time.Second)), NextCallAt: mt(t0.Add(15 * time.Second))}}
		return ro
	}
	tests := []planCase{
		{
			name: "a PreRollout webhook is called before any traffic moves, and holds the start",
			ro:   withHooks(testRollout(), preHook),
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.Status.CurrentStepIndex == nil, true)
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, len(d.Calls), 1)
				expect(t, d.Calls[0].Call, int32(1))
				expect(t, d.Calls[0].Webhook.Name, "eval")
				w := hookEntry(d, "eval")
				expect(t, w.State, rolloutsv1.WebhookPending)
				expect(t, w.Calls, int32(1))
				expect(t, condStatus(d.Status, rolloutsv1.ConditionWebhooksPassing), "False/WebhookPending")
				expect(t, d.Status.Message, `Waiting for PreRollout webhook "eval"`)
				expect(t, d.RequeueAfter, 20*time.Second) // the answer's timeout plus its grace
				expect(t, hasEvent(d, "WebhookPending"), true)
			},
		},
		{
			name: "a pending webhook whose answer is not due yet is not called again",
			ro:   pending(withHooks(starting(testRollout()), preHook), 1, 0),
			check: func(t *testing.T, d Decision) {
				expect(t, len(d.Calls), 0)
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, d.RequeueAfter, 15*time.Second)
			},
		},
		{
			name: "a passed PreRollout webhook starts the first step",
			ro:   pending(withHooks(starting(testRollout()), preHook), 1, 0),
			obs:  Observation{Hooks: []HookResult{{Name: "eval", Revision: rev, Call: 1, Passed: true, Message: "HTTP 200: ok", At: t0}}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, d.Status.CanaryWeight, int32(10))
				expect(t, hookEntry(d, "eval").State, rolloutsv1.WebhookPassed)
				expect(t, hasEvent(d, "WebhookPassed"), true)
				expect(t, condStatus(d.Status, rolloutsv1.ConditionWebhooksPassing), "True/WebhooksPassed")
				expect(t, len(d.Calls), 0)
			},
		},
		{
			name: "a failed call counts, and the webhook is called again after a backoff",
			ro:   pending(withHooks(starting(testRollout()), preHook), 1, 0),
			obs:  Observation{Hooks: []HookResult{{Name: "eval", Revision: rev, Call: 1, Message: "HTTP 500: boom", At: t0}}},
			check: func(t *testing.T, d Decision) {
				w := hookEntry(d, "eval")
				expect(t, w.ConsecutiveFailures, int32(1))
				expect(t, w.NextCallAt.Time, t0.Add(webhookRetryMin))
				expect(t, len(d.Calls), 0)
				expect(t, d.Status.Phase, rolloutsv1.PhaseWaiting)
				expect(t, hasEvent(d, "WebhookFailed"), true)
				expect(t, d.Status.Message, `Waiting for PreRollout webhook "eval" (latest answer: HTTP 500: boom)`)
			},
		},
		{
			name: "202 Accepted is neither a pass nor a failure",
			ro:   pending(withHooks(starting(testRollout()), preHook), 1, 1),
			obs:  Observation{Hooks: []HookResult{{Name: "eval", Revision: rev, Call: 1, NotYet: true, Message: "HTTP 202: running", At: t0}}},
			check: func(t *testing.T, d Decision) {
				w := hookEntry(d, "eval")
				expect(t, w.ConsecutiveFailures, int32(1))
				expect(t, w.State, rolloutsv1.WebhookPending)
				expect(t, hasEvent(d, "WebhookFailed"), false)
			},
		},
		{
			name: "failureLimit failed calls in a row roll back before any traffic moved",
			ro:   pending(withHooks(starting(testRollout()), preHook), 2, 1),
			obs:  Observation{Hooks: []HookResult{{Name: "eval", Revision: rev, Call: 2, Message: "HTTP 422: eval score 0.41 < 0.8", At: t0}}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseRolledBack)
				expect(t, d.Status.Rollback.Reason, rolloutsv1.ReasonWebhookFailed)
				expect(t, d.Status.Rollback.FromWeight, int32(0))
				expect(t, d.Status.Rollback.Message, `PreRollout webhook "eval" failed 2 times in a row: HTTP 422: eval score 0.41 < 0.8`)
				expect(t, hookEntry(d, "eval").State, rolloutsv1.WebhookFailed)
				expect(t, condStatus(d.Status, rolloutsv1.ConditionWebhooksPassing), "False/WebhookFailed")
				expect(t, d.Status.CanaryWeight, int32(0))
				expect(t, d.Status.CurrentStepIndex == nil, true)
			},
		},
		{
			name: "an answer to an older call or another revision is dropped",
			ro:   pending(withHooks(starting(testRollout()), preHook), 2, 0),
			obs: Observation{Hooks: []HookResult{
				{Name: "eval", Revision: rev, Call: 1, Passed: true, At: t0},
				{Name: "eval", Revision: "other", Call: 2, Passed: true, At: t0},
			}},
			check: func(t *testing.T, d Decision) {
				expect(t, hookEntry(d, "eval").State, rolloutsv1.WebhookPending)
				expect(t, d.Status.CurrentStepIndex == nil, true)
			},
		},
		{
			name: "an answer that never came is asked for again once overdue",
			ro:   pending(withHooks(starting(testRollout()), preHook), 1, 0),
			obs:  Observation{Now: t0.Add(16 * time.Second)},
			check: func(t *testing.T, d Decision) {
				expect(t, len(d.Calls), 1)
				expect(t, d.Calls[0].Call, int32(2))
				expect(t, hookEntry(d, "eval").ConsecutiveFailures, int32(0))
			},
		},
		{
			name: "ConfirmPromotion holds the step before the last until it answers 2xx",
			ro:   withHooks(atStep(testRollout(), 1, 2*time.Hour), confirmHook),
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, d.Status.CanaryWeight, int32(50))
				expect(t, len(d.Calls), 1)
				expect(t, d.Status.Message, `Step 2/3: canary at 50%, waiting for ConfirmPromotion webhook "approve"`)
				expect(t, condStatus(d.Status, rolloutsv1.ConditionWebhooksPassing), "False/WebhookPending")
			},
		},
		{
			name: "ConfirmPromotion is not called before an earlier step",
			ro:   withHooks(atStep(testRollout(), 0, 2*time.Hour), confirmHook),
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(1))
				expect(t, len(d.Calls), 0)
			},
		},
		{
			name: "ConfirmPromotion never rolls back, however often it says no",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withHooks(atStep(testRollout(), 1, 2*time.Hour), confirmHook)
				ro.Status.Webhooks = []rolloutsv1.WebhookStatus{{Name: "approve", Type: rolloutsv1.WebhookConfirmPromotion, State: rolloutsv1.WebhookPending,
					Calls: 50, ConsecutiveFailures: 49, NextCallAt: mt(t0.Add(time.Minute))}}
				return ro
			}(),
			obs: Observation{Hooks: []HookResult{{Name: "approve", Revision: atStep(testRollout(), 1, 0).Spec.Revision(), Call: 50, Message: "HTTP 403: not approved", At: t0}}},
			check: func(t *testing.T, d Decision) {
				expect(t, d.Status.Phase, rolloutsv1.PhaseProgressing)
				expect(t, hookEntry(d, "approve").ConsecutiveFailures, int32(50))
				expect(t, hookEntry(d, "approve").NextCallAt.Time, t0.Add(webhookRetryMax))
			},
		},
		{
			name: "a confirmed promotion starts the last step",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withHooks(atStep(testRollout(), 1, 2*time.Hour), confirmHook)
				ro.Status.Webhooks = []rolloutsv1.WebhookStatus{{Name: "approve", Type: rolloutsv1.WebhookConfirmPromotion, State: rolloutsv1.WebhookPending, Calls: 3}}
				return ro
			}(),
			obs: Observation{Hooks: []HookResult{{Name: "approve", Revision: atStep(testRollout(), 1, 0).Spec.Revision(), Call: 3, Passed: true, Message: "HTTP 200", At: t0}}},
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(2))
				expect(t, d.Status.CanaryWeight, int32(100))
				expect(t, condStatus(d.Status, rolloutsv1.ConditionWebhooksPassing), "True/WebhooksPassed")
			},
		},
		{
			name: "a retry calls the webhooks afresh",
			ro: func() *rolloutsv1.ModelRollout {
				ro := withHooks(starting(testRollout()), preHook)
				ro.Status.Phase = rolloutsv1.PhaseRolledBack
				ro.Status.Rollback = &rolloutsv1.RollbackStatus{Reason: rolloutsv1.ReasonWebhookFailed}
				ro.Status.Webhooks = []rolloutsv1.WebhookStatus{{Name: "eval", Type: rolloutsv1.WebhookPreRollout, State: rolloutsv1.WebhookFailed, Calls: 2, ConsecutiveFailures: 2}}
				return ro
			}(),
			obs: Observation{Requests: Requests{Retry: "r1"}},
			check: func(t *testing.T, d Decision) {
				w := hookEntry(d, "eval")
				expect(t, w.State, rolloutsv1.WebhookPending)
				expect(t, w.Calls, int32(1))
				expect(t, len(d.Calls), 1)
			},
		},
		{
			name: "an OnTransition webhook never holds",
			ro:   withHooks(testRollout(), rolloutsv1.Webhook{Name: "slack", Type: rolloutsv1.WebhookOnTransition, URL: "http://n.svc/"}),
			check: func(t *testing.T, d Decision) {
				expect(t, *d.Status.CurrentStepIndex, int32(0))
				expect(t, len(d.Calls), 0)
				expect(t, condStatus(d.Status, rolloutsv1.ConditionWebhooksPassing), "absent")
			},
		},
	}
	runPlanCases(t, tests)
}

func TestWebhookRetry(t *testing.T) {
	for n, want := range map[int32]time.Duration{1: 2 * time.Second, 2: 4 * time.Second, 3: 8 * time.Second, 4: 16 * time.Second, 5: 30 * time.Second, 100: 30 * time.Second} {
		if got := webhookRetry(n); got != want {
			t.Errorf("webhookRetry(%d) = %s, want %s", n, got, want)
		}
	}
}
