package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// What the controller keeps in memory per rollout, and when it goes, is in
// docs/performance/memory.md: every map has a bound or is pruned when its rollout (or
// route) goes, and a superseded gate round or webhook call is cancelled.

// forgetRollout drops what is known of a deleted rollout, and cancels its
// gate round and blocking webhook calls. A cancelled round that recorded
// gate series before it returned has them deleted once it returns.
func (r *ModelRolloutReconciler) forgetRollout(key types.NamespacedName) {
	r.Metrics.forget(key.Namespace, key.Name)
	r.writes.forget(key)
	r.background.forget(key, func() { r.Metrics.forget(key.Namespace, key.Name) })
	r.hooks.forget(key)
	r.direct.forget(key)
}

// notificationDropped counts and announces an OnTransition notification
// dropped from a full queue.
func (r *ModelRolloutReconciler) notificationDropped(n notification, waiting int) {
	if r.Metrics != nil {
		r.Metrics.NotificationsDropped.WithLabelValues(n.ro.Namespace, n.ro.Name, n.hook.Name).Inc()
	}
	r.event(n.ro, plan.Event{Warning: true, Reason: "WebhookNotificationDropped", Message: fmt.Sprintf(
		"OnTransition webhook %q: dropped the notification of %s -> %s (%s): %d later notifications wait behind the one being sent (at most %d)",
		n.hook.Name, phaseOrNone(n.payload.PreviousPhase), n.payload.Phase, n.payload.Reason, waiting, notifyQueueMax)})
}

func phaseOrNone(p rolloutsv1.Phase) string {
	if p == "" {
		return "(none)"
	}
	return string(p)
}

// memorySizes counts the entries of every in-memory map of the controller,
// by name (see docs/performance/memory.md).
func (r *ModelRolloutReconciler) memorySizes() map[string]int {
	out := map[string]int{}
	r.writes.sizes(out)
	r.background.sizes(out)
	r.hooks.sizes(out)
	r.direct.sizes(out)
	r.Metrics.sizes(out)
	return out
}
