package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
	"github.com/modelrollout/modelrollout/internal/plan"
)

// finalize runs when a rollout is deleted: it carries out plan.Delete (the
// canary's traffic back to stable, the rules the rollout owns released, its
// header routes deleted) and removes the finalizer. It never blocks when the
// routes are gone, another controller owns them (they are left to it) or
// the namespace is being deleted; it does wait, with a condition, while the
// API server rejects the patch.
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
	var routes routeObservation
	if !terminating {
		if routes, err = r.observeRoutes(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
	}
	del := plan.Delete(ro, terminating, routes.RuleConflict)
	if del.WriteRoutes {
		// A route another controller owns is treated as a missing one:
		// never patched, so it cannot hold the deletion; its weights are
		// its controller's.
		writable, left := plan.SplitControlled(routes.Found, ro)
		for _, c := range left {
			r.event(ro, plan.DeletionLeftToController(c))
		}
		if err := r.releaseRoutes(ctx, ro, writable, del.Routes); err != nil {
			return ctrl.Result{}, err
		}
	}
	if del.DeleteHeaderRoutes {
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

// releaseRoutes writes the deletion's weights and removes the rollout from
// the rule-owners annotations of its routes.
func (r *ModelRolloutReconciler) releaseRoutes(ctx context.Context, ro *rolloutsv1.ModelRollout, found []plan.ManagedRoute, w plan.Weights) error {
	var patches []routePatch
	for _, m := range found {
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
			r.event(ro, plan.DeletionReturned(p.route.Name, w))
		}
	}
	if len(rejections) > 0 {
		st, msg := plan.DeletionWaits(ro, rejections)
		if err := r.patchStatus(ctx, ro, st); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}
