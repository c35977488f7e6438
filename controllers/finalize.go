package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// deletionWeights is what a deleted rollout leaves in its routes: its
// canary's traffic (and any retiring backend's) back on stable while the
// canary holds traffic mid-rollout and spec.deletionPolicy is
// ReturnToStable; nothing otherwise. An Idle, Succeeded or RolledBack
// rollout, or one that holds a finished canary at 100% (waiting for
// spec.stable to move), changes no weight.
func deletionWeights(ro *rolloutsv1.ModelRollout) plan.Weights {
	st := &ro.Status
	if ro.Spec.DeletionPolicy == rolloutsv1.DeletionKeepWeights || st.Stable == nil {
		return plan.Weights{}
	}
	switch st.Phase {
	case rolloutsv1.PhaseWaiting, rolloutsv1.PhaseProgressing, rolloutsv1.PhasePaused:
	default:
		return plan.Weights{}
	}
	if c := meta.FindStatusCondition(st.Conditions, rolloutsv1.ConditionStalled); c != nil && c.Reason == rolloutsv1.ReasonCanaryHoldsAllTraffic {
		return plan.Weights{}
	}
	retire := append([]rolloutsv1.BackendRef(nil), st.Retiring...)
	if st.Canary != nil && st.CurrentStepIndex != nil && !plan.SameRef(*st.Canary, *st.Stable) {
		retire = append(retire, *st.Canary)
	}
	if len(retire) == 0 {
		return plan.Weights{}
	}
	return plan.Weights{Stable: *st.Stable, HoldStable: true, Retire: retire}
}

// finalize runs when a rollout is deleted: it returns the canary's traffic
// to stable (see deletionWeights), releases the rules the rollout owns, and
// removes the finalizer. It never blocks when the routes are gone or the
// namespace is being deleted; it does wait, with a condition, while the API
// server rejects the patch.
func (r *ModelRolloutReconciler) finalize(ctx context.Context, ro *rolloutsv1.ModelRollout) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(ro, rolloutsv1.FinalizerRoutes) {
		return ctrl.Result{}, nil
	}
	logger := log.FromContext(ctx)
	// A deleted rollout's gate round and blocking webhook calls are
	// superseded: nothing will take their answers.
	key := client.ObjectKeyFromObject(ro)
	r.background.cancel(key)
	r.hooks.forget(key)
	terminating, err := r.namespaceTerminating(ctx, ro.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !terminating {
		if err := r.releaseRoutes(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
		// The garbage collector would delete them too (ownerReference),
		// but only once the rollout is gone: a deleted rollout sends no
		// request to its canary by match from now on.
		if err := r.deleteHeaderRoutes(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.patchFinalizers(ctx, ro, func() { controllerutil.RemoveFinalizer(ro, rolloutsv1.FinalizerRoutes) }); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logger.Info("Finalized deleted ModelRollout", "namespaceTerminating", terminating)
	r.writes.forget(key)
	return ctrl.Result{}, nil
}

// namespaceTerminating says whether the rollout's namespace is being deleted
// (or is gone), when the routes go with it.
func (r *ModelRolloutReconciler) namespaceTerminating(ctx context.Context, name string) (bool, error) {
	if r.APIReader == nil {
		return false, nil
	}
	ns := &corev1.Namespace{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("get Namespace %s: %w", name, err)
	}
	return !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating, nil
}

// releaseRoutes writes the deletion weights and removes the rollout from
// the rule-owners annotations of its routes.
func (r *ModelRolloutReconciler) releaseRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout) error {
	routes, err := r.observeRoutes(ctx, ro)
	if err != nil {
		return err
	}
	w := deletionWeights(ro)
	if routes.Conflict != nil {
		w = plan.Weights{} // another rollout owns a rule: only release
	}
	var patches []routePatch
	for _, m := range routes.Found {
		p := routePatch{route: m.Route}
		if w.Holds() {
			p.ops, p.changes = plan.WeightOps(m.Route, m.Rules, w)
		}
		p.ops = append(p.ops, plan.OwnerOps(m.Route, ro.Name, nil, "")...)
		patches = append(patches, p)
	}
	// Routes removed from spec.routes whose release had not landed yet.
	dropped, err := r.observeDropped(ctx, ro)
	if err != nil {
		return err
	}
	patches = append(patches, droppedPatches(ro, dropped)...)
	patched, rejections, errs := r.patchRoutes(ctx, client.ObjectKeyFromObject(ro), patches)
	for _, p := range patched {
		if len(p.changes) > 0 {
			log.FromContext(ctx).Info("Returned the deleted rollout's traffic to stable", "route", p.route.Name, "changes", plan.DescribeChanges(p.changes))
			r.event(ro, plan.Event{Warning: true, Reason: "TrafficReturnedOnDelete", Message: fmt.Sprintf("Rollout deleted mid-rollout: HTTPRoute %s set to %s", p.route.Name, plan.DescribeIntent(w))})
		}
	}
	if len(rejections) > 0 {
		msg := "Deletion waits: returning the canary's traffic to stable was rejected: " + strings.Join(rejections, "; ")
		st := ro.Status.DeepCopy()
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: rolloutsv1.ConditionRoutesApplied, Status: metav1.ConditionFalse,
			Reason: rolloutsv1.ReasonPatchRejected, Message: plan.Truncate(msg, plan.MaxConditionMessage), ObservedGeneration: ro.Generation})
		st.Message = plan.Truncate(msg, plan.MaxMessage)
		if err := r.patchStatus(ctx, ro, *st); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}
