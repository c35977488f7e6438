package plan

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// The decisions about lifecycle webhooks. The planner never calls a webhook:
// it records in status that a call is due (calls, lastCallAt) and asks the
// reconciler for it (decision.Calls); the call runs off the workers, and its
// answer comes back in a later observation (observation.Hooks), matched by
// revision and call number. A result lost to a crash is not counted: the
// webhook is called again once its answer is overdue.

// hookCall asks the reconciler to call a blocking webhook once.
type HookCall struct {
	Webhook  rolloutsv1.Webhook
	Revision string
	// Call numbers the call within the rollout's attempt (status calls).
	Call int32
}

// hookResult is the answer to one call.
type HookResult struct {
	Name     string
	Revision string
	Call     int32
	// Passed: a 2xx answer other than 202.
	Passed bool
	// NotYet: 202 Accepted, "ask again later"; neither pass nor failure.
	NotYet bool
	// Message is the status code and a short sanitised excerpt, or the
	// error.
	Message string
	At      time.Time
}

const (
	// defaultWebhookFailureLimit is a PreRollout webhook's failureLimit when
	// unset.
	defaultWebhookFailureLimit = 3
	// webhookRetryMin and webhookRetryMax bound the delay between calls of a
	// pending webhook: it doubles from the first to the second after every
	// call that did not pass.
	webhookRetryMin = 2 * time.Second
	webhookRetryMax = 30 * time.Second
	// webhookAnswerGrace is how long past its timeout a call's answer may
	// take before the webhook is called again (the answer was lost, e.g. to
	// a restart).
	webhookAnswerGrace = 10 * time.Second
)

func WebhookTimeout(h rolloutsv1.Webhook) time.Duration {
	if d := h.Timeout.Or(rolloutsv1.DefaultWebhookTimeout); d > 0 {
		return d
	}
	return rolloutsv1.DefaultWebhookTimeout
}

func webhookFailureLimit(h rolloutsv1.Webhook) int32 {
	if h.FailureLimit != nil && *h.FailureLimit > 0 {
		return *h.FailureLimit
	}
	return defaultWebhookFailureLimit
}

// webhookRetry is the delay after the n-th call that did not pass.
func webhookRetry(n int32) time.Duration {
	d := webhookRetryMin
	for i := int32(1); i < n && d < webhookRetryMax; i++ {
		d *= 2
	}
	return min(d, webhookRetryMax)
}

// webhooksOf lists the rollout's webhooks of one type.
func WebhooksOf(ro *rolloutsv1.ModelRollout, t rolloutsv1.WebhookType) []rolloutsv1.Webhook {
	var out []rolloutsv1.Webhook
	for _, h := range ro.Spec.Webhooks {
		if h.Type == t {
			out = append(out, h)
		}
	}
	return out
}

func hasBlockingWebhooks(ro *rolloutsv1.ModelRollout) bool {
	return len(WebhooksOf(ro, rolloutsv1.WebhookPreRollout))+len(WebhooksOf(ro, rolloutsv1.WebhookConfirmPromotion)) > 0
}

// webhookStatus returns the status entry of a webhook, creating a pending
// one when there is none (or the spec changed the webhook's type).
func (p *planner) webhookStatus(h rolloutsv1.Webhook) *rolloutsv1.WebhookStatus {
	st := p.st
	for i := range st.Webhooks {
		if st.Webhooks[i].Name == h.Name {
			if st.Webhooks[i].Type != h.Type {
				st.Webhooks[i] = rolloutsv1.WebhookStatus{Name: h.Name, Type: h.Type, State: rolloutsv1.WebhookPending}
			}
			return &st.Webhooks[i]
		}
	}
	st.Webhooks = append(st.Webhooks, rolloutsv1.WebhookStatus{Name: h.Name, Type: h.Type, State: rolloutsv1.WebhookPending})
	return &st.Webhooks[len(st.Webhooks)-1]
}

// foldWebhookResults records the answers of this rollout's calls. An answer
// to an older call, or of another revision, is dropped.
func (p *planner) foldWebhookResults() {
	st := p.st
	for _, r := range p.obs.Hooks {
		if r.Revision != st.Revision {
			continue
		}
		var hook *rolloutsv1.Webhook
		for i := range p.ro.Spec.Webhooks {
			if p.ro.Spec.Webhooks[i].Name == r.Name {
				hook = &p.ro.Spec.Webhooks[i]
			}
		}
		if hook == nil || hook.Type == rolloutsv1.WebhookOnTransition {
			continue
		}
		ws := p.webhookStatus(*hook)
		if ws.Calls != r.Call || ws.State != rolloutsv1.WebhookPending {
			continue
		}
		ws.Message = Truncate(r.Message, 256)
		switch {
		case r.Passed:
			ws.State = rolloutsv1.WebhookPassed
			ws.ConsecutiveFailures = 0
			ws.NextCallAt = nil
			p.emit(false, "WebhookPassed", "%s webhook %q passed: %s", hook.Type, hook.Name, ws.Message)
		default:
			if !r.NotYet {
				ws.ConsecutiveFailures++
			}
			next := metav1.NewTime(r.At.Add(webhookRetry(ws.Calls)))
			ws.NextCallAt = &next
			if !r.NotYet && hook.Type == rolloutsv1.WebhookPreRollout {
				p.emit(true, "WebhookFailed", "%s webhook %q failed (%d of %d in a row): %s", hook.Type, hook.Name, ws.ConsecutiveFailures, webhookFailureLimit(*hook), ws.Message)
			}
		}
	}
}

// webhooksHold calls the rollout's webhooks of type t that have not passed
// in this attempt, when due, and says whether they hold the rollout. A
// PreRollout webhook that reached its failureLimit rolls the rollout back
// (and holds).
func (p *planner) webhooksHold(t rolloutsv1.WebhookType) bool {
	hooks := WebhooksOf(p.ro, t)
	if len(hooks) == 0 {
		return false
	}
	st := p.st
	now := p.now()
	hold := ""
	for _, h := range hooks {
		ws := p.webhookStatus(h)
		if ws.State == rolloutsv1.WebhookPassed {
			continue
		}
		if t == rolloutsv1.WebhookPreRollout && ws.ConsecutiveFailures >= webhookFailureLimit(h) {
			ws.State = rolloutsv1.WebhookFailed
			p.hookHold = &Problem{Reason: rolloutsv1.ReasonWebhookFailed,
				Message: fmt.Sprintf("PreRollout webhook %q failed %d times in a row: %s", h.Name, ws.ConsecutiveFailures, ws.Message)}
			p.rollback(rolloutsv1.ReasonWebhookFailed, p.hookHold.Message)
			return true
		}
		if ws.Calls == 0 {
			p.emit(false, "WebhookPending", "Waiting for %s webhook %q", t, h.Name)
		}
		if ws.NextCallAt == nil || !p.obs.Now.Before(ws.NextCallAt.Time) {
			ws.Calls++
			ws.LastCallAt = &now
			answerBy := metav1.NewTime(now.Add(WebhookTimeout(h) + webhookAnswerGrace))
			ws.NextCallAt = &answerBy
			p.calls = append(p.calls, HookCall{Webhook: h, Revision: st.Revision, Call: ws.Calls})
		}
		p.requeue(ws.NextCallAt.Sub(p.obs.Now))
		if hold == "" {
			hold = fmt.Sprintf("waiting for %s webhook %q", t, h.Name)
			if ws.Message != "" {
				hold += " (latest answer: " + ws.Message + ")"
			}
		}
	}
	if hold == "" {
		return false
	}
	p.hookHold = &Problem{Reason: rolloutsv1.ReasonWebhookPending, Message: hold}
	return true
}

// setWebhooksCondition says whether a blocking webhook holds the rollout.
func (p *planner) setWebhooksCondition(set func(string, metav1.ConditionStatus, string, string)) {
	st := p.st
	switch {
	case !hasBlockingWebhooks(p.ro):
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionWebhooksPassing)
	case st.Rollback != nil && st.Rollback.Reason == rolloutsv1.ReasonWebhookFailed:
		set(rolloutsv1.ConditionWebhooksPassing, metav1.ConditionFalse, rolloutsv1.ReasonWebhookFailed, st.Rollback.Message)
	case p.hookHold != nil:
		set(rolloutsv1.ConditionWebhooksPassing, metav1.ConditionFalse, p.hookHold.Reason, p.hookHold.Message)
	case len(st.Webhooks) > 0:
		set(rolloutsv1.ConditionWebhooksPassing, metav1.ConditionTrue, rolloutsv1.ReasonWebhooksPassed, "Every blocking webhook due so far answered 2xx")
	default:
		meta.RemoveStatusCondition(&st.Conditions, rolloutsv1.ConditionWebhooksPassing)
	}
}

// capitalize upper-cases the first letter of a message.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
